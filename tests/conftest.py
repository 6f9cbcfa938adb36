"""Session fixtures: the real Kafka broker (started once), and per-test isolated names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgrid.kafka.cluster import LocalKafkaCluster
from airgrid.kafka.local import LocalKafka, broker_answers, free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker for the whole session. AIRGRID_TEST_BOOTSTRAP points at one already running;
    otherwise a local KRaft broker is started. A broker that cannot start fails the tests."""
    given = os.environ.get("AIRGRID_TEST_BOOTSTRAP")
    if given:
        assert broker_answers(given, 10), f"AIRGRID_TEST_BOOTSTRAP={given}: no broker answers"
        yield given
        return
    kafka = LocalKafka(
        port=free_port(), controller_port=free_port(), data_dir=tmp_path_factory.mktemp("kafka")
    )
    kafka.start(timeout=180)
    try:
        yield kafka.bootstrap
    finally:
        kafka.close()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """A local three-broker KRaft cluster (combined mode) on free ports, started when a test first
    asks for it and kept for the session. A test that kills or stops a node starts it again before
    it ends (``LocalKafkaCluster.nodes``). A cluster that cannot start fails the tests."""
    cluster = LocalKafkaCluster(3, data_dir=tmp_path_factory.mktemp("kafka-cluster"))
    cluster.start(timeout=240)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def uid() -> str:
    """A short unique id for topic prefixes, app ids and consumer groups."""
    return uuid.uuid4().hex[:10]
