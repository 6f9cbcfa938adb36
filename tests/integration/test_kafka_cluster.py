"""The local three-broker cluster (``airgrid kafka run --brokers 3``): every node lists the three
brokers, the quorum names its leader, airgrid's topics get replication factor 3 and
``min.insync.replicas=2`` there, and a replication factor above the brokers is a one-line error."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from airgrid.config.settings import load_settings
from airgrid.kafka.cluster import LocalKafkaCluster, quorum_leader
from airgrid.kafka.local import PID_FILE, broker_count
from airgrid.kafka.topics import TopicNames, TopicsError, changelog_topics, ensure_topics
from tests.helpers import REPO, Worker, airgrid_cli, clean_env, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


def test_every_node_lists_three_brokers_and_one_leader(kafka_cluster: LocalKafkaCluster) -> None:
    for node in kafka_cluster.nodes.values():
        assert broker_count(node.bootstrap, 5) == 3
    leaders = {quorum_leader(node.bootstrap) for node in kafka_cluster.nodes.values()}
    assert len(leaders) == 1 and leaders <= {1, 2, 3}
    assert kafka_cluster.active_controller() in leaders


async def test_topics_are_replicated_three_times_with_two_in_sync(
    kafka_cluster: LocalKafkaCluster, uid: str, tmp_path: Path
) -> None:
    broker = "kafka://" + kafka_cluster.bootstrap.replace(",", ";")
    settings = load_settings(
        broker=broker, topic_prefix=f"t{uid}.", app_id=f"a{uid}", data_dir=tmp_path, topic_replication=3
    )
    assert settings.min_insync_replicas == 2
    await ensure_topics(settings)
    topics = [*TopicNames.of(settings).all(), *changelog_topics(settings)]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_cluster.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        assert {t["topic"] for t in described} == set(topics)
        for topic in described:
            assert {len(p["replicas"]) for p in topic["partitions"]} == {3}, topic["topic"]
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        isr = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}["min.insync.replicas"]
            for response in configs
            for resource in response.resources
        }
        assert isr == dict.fromkeys(topics, "2")
    finally:
        await admin.close()
    too_many = load_settings(broker=broker, topic_prefix=f"u{uid}.", data_dir=tmp_path, topic_replication=4)
    with pytest.raises(TopicsError, match=r"AIRGRID_TOPIC_REPLICATION is 4 but the cluster .* has 3 broker"):
        await ensure_topics(too_many)


async def test_topics_are_checked_while_a_broker_is_down(
    kafka_cluster: LocalKafkaCluster, uid: str, tmp_path: Path
) -> None:
    """A worker (re)started while a broker of the cluster is down: its topics exist, and the
    check that every broker shows them must not wait for the one that cannot answer. It asked
    that broker too, still listed until the controller fences it, and the worker exited 1
    ("cannot reach Kafka ... NodeNotReadyError"; found by the cluster fault campaign)."""
    broker = "kafka://" + kafka_cluster.bootstrap.replace(",", ";")
    settings = load_settings(
        broker=broker, topic_prefix=f"t{uid}.", app_id=f"a{uid}", data_dir=tmp_path, topic_replication=3
    )
    await ensure_topics(settings)
    node = kafka_cluster.node(3)
    node.kill()
    try:
        began = time.monotonic()
        assert await asyncio.wait_for(ensure_topics(settings), 60) == []
        print(f"\ntopics checked in {time.monotonic() - began:.1f} s with broker 3 down")
    finally:
        await asyncio.to_thread(node.start, 120)
        await asyncio.to_thread(kafka_cluster.wait_brokers, 60)


def test_a_worker_starts_while_a_broker_is_down_and_not_yet_fenced(uid: str, tmp_path: Path) -> None:
    """One broker of three killed and still registered (its session, 30 s here, not expired): a
    worker starting then must not exit. Its topic check asked every broker in the metadata, the
    killed one too, and the start failed with NodeNotReadyError (found by the cluster fault
    campaign, with Faust's own topic creation failing the same way once: it is off now)."""
    unfenced = {"broker.session.timeout.ms": "30000"}
    cluster = LocalKafkaCluster(3, data_dir=tmp_path / "k", extra_props=unfenced)
    cluster.start(240)
    try:
        env = worker_env(
            cluster.bootstrap,
            uid,
            tmp_path / "state",
            AIRGRID_BROKER="kafka://" + cluster.bootstrap.replace(",", ";"),
            AIRGRID_TOPIC_REPLICATION="3",
        )
        made = airgrid_cli(env, "topics")
        assert made.returncode == 0, made.stderr
        cluster.node(1).kill()  # the first broker of the metadata: Faust asked it first
        worker = Worker(env, tmp_path / "worker.log")
        try:
            print(f"\nhealthy {worker.start(150):.1f} s after its start with broker 1 down")
        finally:
            assert worker.stop(60) == 0, worker.tail()
    finally:
        cluster.close()


def test_kafka_run_brokers_3_starts_a_cluster_and_stop_ends_it(tmp_path: Path) -> None:
    data = tmp_path / "cluster"
    args = ["--brokers", "3", "--port", "0", "--data-dir", str(data)]  # free ports, controllers too
    run = subprocess.Popen(
        [sys.executable, "-m", "airgrid", "kafka", "run", *args, "--timeout", "240"],
        env=clean_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        deadline, lines = time.monotonic() + 300, []
        while time.monotonic() < deadline and not any("ready on" in line for line in lines):
            if select.select([run.stdout], [], [], 1)[0]:
                lines.append(run.stdout.readline())
            assert run.poll() is None, "".join(lines)
        ready = next(line for line in lines if "ready on" in line)
        assert ready.startswith("Kafka cluster of 3 brokers ready on 127.0.0.1:")
        bootstrap = ready.split(" ready on ")[1].split(" ")[0]
        assert len(bootstrap.split(",")) == 3 and broker_count(bootstrap, 5) == 3
        # the worker's setting, ready to paste (AIRGRID_BROKER separates brokers with ';')
        said = run.stdout.readline()
        assert said == f"AIRGRID_BROKER='kafka://{bootstrap.replace(',', ';')}'\n", said
        assert load_settings(broker=said.split("'")[1]).bootstrap_servers == bootstrap
        assert sorted(p.parent.name for p in data.glob(f"node*/{PID_FILE}")) == ["node1", "node2", "node3"]
        stop = subprocess.run(
            [sys.executable, "-m", "airgrid", "kafka", "stop", "--data-dir", str(data)],
            env=clean_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (stop.returncode, stop.stdout) == (0, "Kafka stopped\n"), stop.stderr
        assert run.wait(60) == 0
        assert broker_count(bootstrap, 1) == 0
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(60)
