"""Run airgrid's peers on the pre-filled readings topic, check their work, compare their rates.

Each peer is a subprocess with its own consumer group, output topic and state, run one after
the other on the same topic. A peer counts as measured only if it processed all N readings and
produced the alarms the bench computed itself over the same readings (``job.Expected``), both by
its own count and on its output topic, and if its changelog holds a record for every station.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common as c

QUIX_VENV = c.REPO / ".cache" / "venv-quix"
QUIX_SCRIPT = c.REPO / "scripts" / "bench_quix_venv.sh"


@dataclass(frozen=True)
class Peer:
    key: str  # its entry in the report's ``throughput``
    label: str
    module: str
    env: dict[str, str] = field(default_factory=dict)
    quix: bool = False  # runs with the Quix Streams venv's interpreter
    aiokafka_changelog: bool = False  # the bench creates its changelog topic
    # a changelog key is the message key, then this separator and the state's own key (Quix: b"|")
    changelog_key_sep: bytes = b""


PEERS = {
    "faust-table": Peer(
        "peer_faust_table",
        "Faust, one changelogged table (memory store), one event at a time",
        "bench.peers.faust_app",
        {"BENCH_MODE": "plain"},
    ),
    "faust-batch": Peer(
        "peer_faust_batched",
        "Faust, one changelogged table (memory store), take_events(1000, 0.5 s)",
        "bench.peers.faust_app",
        {"BENCH_MODE": "batched", "BENCH_TAKE": "1000", "BENCH_TAKE_WITHIN": "0.5"},
    ),
    "quix": Peer(
        "peer_quix",
        "Quix Streams (RocksDB state, changelog, at-least-once, commit every 5 s)",
        "bench.peers.quix_app",
        quix=True,
        changelog_key_sep=b"|",
    ),
    "aiokafka": Peer(
        "peer_aiokafka",
        "hand-written aiokafka job (one changelog record per reading, commit after acks)",
        "bench.peers.aiokafka_app",
        aiokafka_changelog=True,
    ),
}

# the rows of the comparison, fastest kind first; the report keys of ``throughput``
ROWS = (
    ("raw_aiokafka", "raw aiokafka consumer, no work (the limit)"),
    ("peer_aiokafka", PEERS["aiokafka"].label),
    ("peer_quix", PEERS["quix"].label),
    ("noop_faust", "no-op Faust agent"),
    ("peer_faust_batched", PEERS["faust-batch"].label),
    ("noop_faust_table", "no-op Faust agent + one table write per event"),
    ("peer_faust_table", PEERS["faust-table"].label),
    ("full_pipeline", "airgrid worker (its own, larger job)"),
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quix_python() -> Path:
    """The Quix Streams venv's interpreter, the venv made or updated first (fast when it is current)."""
    subprocess.run(["bash", str(QUIX_SCRIPT)], check=True, cwd=c.REPO, stdout=sys.stderr)
    return QUIX_VENV / "bin" / "python"


def quix_version() -> str | None:
    out = subprocess.run(
        [str(QUIX_VENV / "bin" / "python"), "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


async def create_topics(bootstrap: str, names: list[str], partitions: int, compact: set[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    n, partitions, 1, topic_configs={"cleanup.policy": "compact"} if n in compact else {}
                )
                for n in names
            ]
        )
    finally:
        await admin.close()


async def records_in(bootstrap: str, containing: str) -> dict[str, int]:
    """Records produced to each topic whose name contains ``containing`` (the end offsets: nothing
    is deleted in the few minutes of a run, compaction leaves the active segment alone)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    tps = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if containing in t["topic"]
        for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for tp, end in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + end
    return out


async def key_partitions(bootstrap: str, topics: list[str]) -> dict[bytes, set[int]]:
    """Every key of ``topics`` with the partitions it was written to, read from start to end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[bytes, set[int]] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, records in (await consumer.getmany(*left, timeout_ms=500, max_records=20_000)).items():
                for rec in records:
                    out.setdefault(rec.key or b"", set()).add(tp.partition)
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return out


def misplaced(changelog: dict[bytes, set[int]], readings: dict[bytes, set[int]], sep: bytes = b"") -> int:
    """Stations whose changelog records are not all on the partition their readings are read from:
    a worker taking that partition over would not find their state."""
    return sum(
        1 for key, parts in changelog.items() if parts != readings.get(key.rpartition(sep)[0] if sep else key)
    )


def check(r: dict[str, Any], expected: dict[str, int], alarms_on_topic: int, changelog: int) -> str:
    problems = []
    if r["count"] != expected["readings"]:
        problems.append(f"processed {r['count']} of {expected['readings']} readings")
    if r["rejected"] != expected["rejected"]:
        problems.append(f"rejected {r['rejected']}, expected {expected['rejected']}")
    if r["alarms"] != expected["alarms"]:
        problems.append(f"counted {r['alarms']} alarms, expected {expected['alarms']}")
    if alarms_on_topic != expected["alarms"]:
        problems.append(f"{alarms_on_topic} alarms on its topic, expected {expected['alarms']}")
    if changelog < expected["stations"]:
        problems.append(f"{changelog} changelog records for {expected['stations']} stations")
    if r.get("changelog_keys_misplaced"):
        problems.append(f"the state of {r['changelog_keys_misplaced']} stations is on another partition")
    return "ok" if not problems else "FAILED: " + "; ".join(problems)


def run_peer(
    peer: Peer,
    bootstrap: str,
    topic: str,
    n: int,
    expected: dict[str, int],
    readings: dict[bytes, set[int]],
    work: Path,
    partitions: int,
) -> dict[str, Any]:
    uid = f"peer-{peer.key.removeprefix('peer_').replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    alarms, changelog = f"{uid}.alarms", f"{uid}.state-changelog"
    asyncio.run(
        create_topics(
            bootstrap,
            [alarms, changelog] if peer.aiokafka_changelog else [alarms],
            partitions,
            {changelog},
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env.update(
        BENCH_BOOTSTRAP=bootstrap,
        BENCH_TOPIC=topic,
        BENCH_ALARMS=alarms,
        BENCH_CHANGELOG=changelog,
        BENCH_N=str(n),
        BENCH_OUT=str(work / f"{uid}.json"),
        BENCH_PARTITIONS=str(partitions),
        BENCH_DATADIR=str(work / uid),
        BENCH_APP_ID=uid,
        PYTHONPATH=str(c.REPO),
        **peer.env,
    )
    python = quix_python() if peer.quix else Path(sys.executable)
    r = c.run_app(uid, [str(python), "-m", peer.module], env, work)
    counts = asyncio.run(records_in(bootstrap, uid))
    changelogs = {t: v for t, v in counts.items() if "changelog" in t}
    r["alarms_on_topic"] = counts.get(alarms, 0)
    r["changelog_records"] = sum(changelogs.values())
    r["changelog_topics"] = sorted(changelogs)
    if changelogs:
        r["changelog_keys_misplaced"] = misplaced(
            asyncio.run(key_partitions(bootstrap, list(changelogs))), readings, peer.changelog_key_sep
        )
    r["check"] = check(r, expected, r["alarms_on_topic"], r["changelog_records"])
    r["loadavg_1m_end"] = c.loadavg()
    if peer.quix:
        r["quixstreams"] = quix_version()
    return r


def peers_phase(
    bootstrap: str,
    topic: str,
    n: int,
    expected: dict[str, int],
    work: Path,
    partitions: int,
    which: list[str],
) -> dict[str, Any]:
    """Every peer named in ``which`` (keys of PEERS), in that order; report entries by their key."""
    out: dict[str, Any] = {}
    readings = asyncio.run(key_partitions(bootstrap, [topic]))
    for name in which:
        peer = PEERS[name]
        log(f"peer: {peer.label}")
        out[peer.key] = run_peer(peer, bootstrap, topic, n, expected, readings, work, partitions)
        log(f"{name}: {out[peer.key]}")
        if out[peer.key]["check"] != "ok":
            log(f"{name}: {out[peer.key]['check']}")
    return out


def ratios(phases: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each contender's rate over the raw consumer, the no-op Faust agent and the batched Faust app."""
    bases = {
        "over_raw": phases.get("raw_aiokafka", {}).get("readings_per_s"),
        "over_noop_faust": phases.get("noop_faust", {}).get("readings_per_s"),
        "over_faust_batched": phases.get("peer_faust_batched", {}).get("readings_per_s"),
    }
    out: dict[str, dict[str, float | None]] = {}
    for key, _label in ROWS:
        rate = phases.get(key, {}).get("readings_per_s")
        if rate is None:
            continue
        out[key] = {"readings_per_s": rate}
        for name, base in bases.items():
            out[key][name] = round(rate / base, 4) if base else None
    return out


def failed(phases: dict[str, Any]) -> list[str]:
    return [f"{k}: {v['check']}" for k, v in phases.items() if k.startswith("peer_") and v["check"] != "ok"]


def table(r: dict[str, Any]) -> str:
    """The comparison as markdown, or "" when no peer ran."""
    t = r.get("throughput", {})
    cmp = r.get("peer_ratios", {})
    if not any(k.startswith("peer_") for k in t):
        return ""

    def x(v: float | None) -> str:
        return "-" if v is None else (f"x{v:.2f}" if v >= 0.1 else f"x{v:.3f}")

    exp = r["peers_expected"]
    out = [
        f"Peers: the same job over the same {exp['readings']:,} readings "
        f"({exp['stations']:,} stations, {exp['alarms']:,} alarms expected)",
        "",
        "| contender | readings/s | / raw | / no-op Faust | / batched Faust | alarms (own / on topic) "
        "| changelog records | check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in ROWS:
        if key not in cmp:
            continue
        q = cmp[key]
        v = t[key]
        if key.startswith("peer_"):
            name = label + (f" {v['quixstreams']}" if v.get("quixstreams") else "")
            extra = f"{v['alarms']:,} / {v['alarms_on_topic']:,} | {v['changelog_records']:,} | {v['check']}"
        else:
            name, extra = label, "- | - | -"
        out.append(
            f"| {name} | {q['readings_per_s']:,} | {x(q['over_raw'])} | {x(q['over_noop_faust'])} "
            f"| {x(q['over_faust_batched'])} | {extra} |"
        )
    return "\n".join(out)
