"""A local KRaft cluster of several brokers on 127.0.0.1 without Docker (``airgrid kafka run
--brokers 3``), for what one broker cannot show: leader elections, controller moves, a stalled
broker, rolling restarts, replication factor 3 with ``min.insync.replicas=2``.

Combined mode: every node is broker and controller (``process.roles=broker,controller``), the
three form the controller quorum. A separate quorum would be three more JVMs (six in all, about
1.5 GiB more heap) on a development machine of two cores that also runs the workers under test;
Kafka advises separate controllers for large production clusters, where a broker's load must not
slow the quorum. The faults that matter here still happen: killing the active controller moves
the quorum's leadership (and takes a broker down with it, as in any combined-mode cluster).
"""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from airgrid.kafka.local import KafkaStartError, LocalKafka, _recv_exact, free_port, new_cluster_id

METADATA_TOPIC = b"__cluster_metadata"


def cluster_props(node_id: int, voters: str, brokers: int) -> dict[str, str]:
    """What a node of a ``brokers``-node combined-mode cluster adds to a single broker's config:
    its id, the quorum, and Kafka's internal topics replicated like airgrid's (factor 3, at
    least 2 in sync) so a commit survives a broker."""
    replication = min(3, brokers)
    min_isr = max(1, min(2, brokers - 1))
    return {
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        # for topics created without explicit settings (auto-created, or by Faust itself)
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
    }


class LocalKafkaCluster:
    """``brokers`` combined-mode KRaft nodes (broker + controller each) bound to 127.0.0.1, each
    with its own ports and data dir (``<data dir>/node<id>``)."""

    def __init__(
        self,
        brokers: int = 3,
        *,
        ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        data_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        extra_props: dict[str, str] | None = None,
    ) -> None:
        if brokers < 1:
            raise ValueError("a cluster needs at least one broker")
        ports = list(ports or [free_port() for _ in range(brokers)])
        controller_ports = list(controller_ports or [free_port() for _ in range(brokers)])
        if len(ports) != brokers or len(controller_ports) != brokers:
            raise ValueError(f"{brokers} brokers need {brokers} ports and {brokers} controller ports")
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="airgrid-kafka-cluster-")).resolve()
        voters = ",".join(f"{i}@127.0.0.1:{cp}" for i, cp in enumerate(controller_ports, 1))
        cluster_id = new_cluster_id()
        self.nodes = {
            i: LocalKafka(
                port=port,
                controller_port=cport,
                data_dir=self.data_dir / f"node{i}",
                cache_dir=cache_dir,
                extra_props=cluster_props(i, voters, brokers) | dict(extra_props or {}),
                cluster_id=cluster_id,
            )
            for i, (port, cport) in enumerate(zip(ports, controller_ports, strict=True), 1)
        }

    @property
    def bootstrap(self) -> str:
        """``host:port`` of every broker, comma-separated (aiokafka, kcat); Faust's
        ``AIRGRID_BROKER`` takes them separated by ``;``."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    @property
    def log_files(self) -> list[Path]:
        return [node.log_file for node in self.nodes.values()]

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id]

    def start(self, timeout: float = 120.0) -> float:
        """Start every node and wait until each lists all the brokers; return seconds. Every node
        is launched before any is waited for: none answers until a majority of controllers runs."""
        started = time.monotonic()
        self.nodes[1].ensure_jars()
        try:
            for node in self.nodes.values():
                node.launch()
            for node in self.nodes.values():
                node.wait_ready(max(1.0, started + timeout - time.monotonic()), brokers=len(self.nodes))
        except KafkaStartError:
            self.stop()
            raise
        return time.monotonic() - started

    def wait_brokers(self, timeout: float = 60.0) -> None:
        """Wait until every running node lists every broker (after a node came back)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            if node.is_running():
                node.wait_ready(max(1.0, deadline - time.monotonic()), brokers=len(self.nodes))

    def is_running(self) -> bool:
        """True while any node runs."""
        return any(node.is_running() for node in self.nodes.values())

    def active_controller(self, timeout: float = 5.0) -> int | None:
        """The node id of the quorum's leader (the active controller) as a running node reports
        it, or None when none answers. Not the ``controller_id`` of a Metadata response: in KRaft
        brokers answer that with a random live broker (KIP-590)."""
        for node in self.nodes.values():
            if node.is_running():
                leader = quorum_leader(node.bootstrap, timeout)
                if leader is not None:
                    return leader
        return None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every node (SIGTERM, SIGKILL after ``timeout``); data dirs are kept. All are asked
        at once: the last of them stopped one by one waits for a quorum that is gone."""
        for node in self.nodes.values():
            node.terminate()
        for node in self.nodes.values():
            node.stop(timeout)

    def close(self) -> None:
        """Stop every node and delete the data dir if it is a temp dir we created."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """An unsigned varint of the flexible Kafka protocol: (value, next position)."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip_tags(buf: bytes, pos: int) -> int:
    count, pos = _varint(buf, pos)
    for _ in range(count):
        _tag, pos = _varint(buf, pos)
        size, pos = _varint(buf, pos)
        pos += size
    return pos


def quorum_leader(bootstrap: str, timeout: float = 5.0) -> int | None:
    """The leader of the KRaft quorum, asked of a broker with a DescribeQuorum v0 request
    (which brokers forward to the controllers); None when it does not answer."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    correlation_id = 0x51_55_4F  # "QUO"
    client_id = b"airgrid-devkafka"
    # header v2: api_key=55 (DescribeQuorum), api_version=0, correlation_id, client_id, no tags
    header = struct.pack(">hhih", 55, 0, correlation_id, len(client_id)) + client_id + b"\x00"
    # body v0 (flexible): topics=[{name, partitions=[{index 0, no tags}], no tags}], no tags
    body = bytes([2, len(METADATA_TOPIC) + 1]) + METADATA_TOPIC + bytes([2]) + struct.pack(">i", 0)
    body += b"\x00\x00\x00"
    payload = header + body
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 6 <= size <= 1_000_000:
                return None
            buf = _recv_exact(sock, size)
        (got_cid,) = struct.unpack_from(">i", buf, 0)
        pos = _skip_tags(buf, 4)  # response header v1
        (error,) = struct.unpack_from(">h", buf, pos)
        if got_cid != correlation_id or error != 0:
            return None
        n_topics, pos = _varint(buf, pos + 2)
        if n_topics < 2:  # compact array: length + 1
            return None
        name_len, pos = _varint(buf, pos)
        pos += name_len - 1
        n_parts, pos = _varint(buf, pos)
        if n_parts < 2:
            return None
        _index, p_error, leader = struct.unpack_from(">ihi", buf, pos)
    except (OSError, ValueError, IndexError, struct.error):
        return None
    return leader if p_error == 0 and leader >= 0 else None
