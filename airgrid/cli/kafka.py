"""``airgrid kafka run|fetch|check|stop``: the local development broker (airgrid.kafka.local)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from airgrid.cli.base import UNREACHABLE, OpsError, group


@group("kafka")
def kafka() -> None:
    """A real Apache Kafka broker (KRaft, single node, or a cluster with --brokers) on 127.0.0.1
    without Docker: its jars come from Maven Central on the first run and are cached in
    .cache/kafka (AIRGRID_KAFKA_CACHE_DIR)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@kafka.command("run")
@click.option("--port", type=click.IntRange(0, 65535), default=9092, show_default=True, help="0: a free port")
@click.option(
    "--controller-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="default: --port + 1 (with --brokers N: --port + N); 0 (the default with --port 0): free ports",
)
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="nodes of a KRaft cluster in combined mode (each broker and controller), on --port, "
    "--port + 1, ... (controllers from --controller-port); topics there want "
    "AIRGRID_TOPIC_REPLICATION=3",
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="default: a temp dir"
)
@click.option(
    "--timeout", type=float, default=90.0, show_default=True, help="seconds to wait until it answers"
)
def run(port: int, controller_port: int | None, brokers: int, data_dir: Path | None, timeout: float) -> int:
    """Start a broker (or a cluster of --brokers) and block until SIGINT or SIGTERM (or `airgrid
    kafka stop`), then stop it."""
    from airgrid.kafka.cluster import LocalKafkaCluster
    from airgrid.kafka.local import PID_FILE, DevKafkaError, LocalKafka, free_port

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    if port == 0 and controller_port is None:
        controller_port = 0  # free ports for the controllers too, not ports after a free one
    broker: LocalKafka | LocalKafkaCluster
    if brokers == 1:
        broker = LocalKafka(
            port=port or free_port(),
            controller_port=None if controller_port is None else controller_port or free_port(),
            data_dir=data_dir,
        )
        pid_files = [broker.data_dir / PID_FILE]
        what = "Kafka"
    else:
        ports = [free_port() for _ in range(brokers)] if port == 0 else [port + i for i in range(brokers)]
        first = port + brokers if controller_port is None else controller_port
        cports = [free_port() for _ in range(brokers)] if first == 0 else [first + i for i in range(brokers)]
        broker = LocalKafkaCluster(brokers, ports=ports, controller_ports=cports, data_dir=data_dir)
        pid_files = [node.data_dir / PID_FILE for node in broker.nodes.values()]
        what = f"Kafka cluster of {brokers} brokers"
    try:
        elapsed = broker.start(timeout=timeout)
        print(f"{what} ready on {broker.bootstrap} (started in {elapsed:.1f}s)", flush=True)
        print(f"AIRGRID_BROKER='kafka://{broker.bootstrap.replace(',', ';')}'", flush=True)
        print(f"data dir {broker.data_dir}", flush=True)
        while not done.wait(0.5):
            if not broker.is_running():
                print("Kafka exited", flush=True)
                return 1 if any(f.exists() for f in pid_files) else 0
        return 0
    except DevKafkaError as exc:
        raise OpsError(str(exc), UNREACHABLE) from None
    finally:
        broker.close()


@kafka.command("fetch")
def fetch() -> int:
    """Resolve the Kafka jars into the cache (Maven; nothing to do when they are there)."""
    from airgrid.kafka.local import DevKafkaError, fetch_jars

    try:
        print(f"Kafka jars in {fetch_jars()}")
    except DevKafkaError as exc:
        raise OpsError(str(exc), UNREACHABLE) from None
    return 0


@kafka.command("check")
@click.option(
    "--bootstrap",
    default=None,
    metavar="HOST:PORT[,HOST:PORT]",
    help="default: AIRGRID_BROKER, else 127.0.0.1:9092",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="seconds per server")
def check(bootstrap: str | None, timeout: float) -> int:
    """Exit 0 if a broker answers a Kafka Metadata request, 1 if none does."""
    import os

    from airgrid.kafka.local import broker_answers

    if bootstrap is None:  # kafka://host:port;host:port, as the worker reads it
        broker = os.environ.get("AIRGRID_BROKER", "127.0.0.1:9092")
        bootstrap = broker.removeprefix("kafka://").replace(";", ",")

    ok = broker_answers(bootstrap, timeout)
    print(f"Kafka {'answers' if ok else 'does not answer'} on {bootstrap}")
    return 0 if ok else 1


@kafka.command("stop")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def stop(data_dir: Path) -> int:
    """Stop a broker (or every node of a cluster) that `airgrid kafka run --data-dir DIR` started."""
    from airgrid.kafka.local import stop_pidfile

    print("Kafka stopped" if stop_pidfile(data_dir) else f"no running Kafka for {data_dir}")
    return 0
