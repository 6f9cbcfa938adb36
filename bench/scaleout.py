"""Scale-out: one worker, then two, on 8-partition topics; then one of the two leaves mid-drain.

Each case gets its own topics (prefix) and consumer group. The workers are started and healthy
before the backlog is produced, so the group is stable when the clock starts; the clock runs from
the first processed reading to the last (the sum of ``airgrid_readings_total`` over the workers).
In the leave case one of two workers is stopped (SIGTERM: it leaves the group) once a third of the
backlog is processed; the other takes over its partitions and finishes. At-least-once: a reading
the leaver had processed but not committed is read again and counted as ``replayed``.

    .venv/bin/python -m bench.scaleout [--readings 40000] [--stations 2000]

Also run as a phase of ``python -m bench.run``. On a 2-core machine two workers and the broker
share the cores: the combined rate shows what a second process buys there, not on a bigger host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common as c

PARTITIONS = 8
OUTCOMES = ("accepted", "duplicate", "late", "late_folded", "replayed", "rejected", "failed")


def _log(msg: str) -> None:
    print(f"[scaleout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _total(workers: list[c.Worker], **labels: str) -> float:
    return sum(w.metric("airgrid_readings_total", **labels) or 0.0 for w in workers)


async def _uncommitted(bootstrap: str, group: str, topic: str) -> int:
    """Readings of ``topic`` past the group's committed offsets (every partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        behind = 0
        for tp in tps:
            behind += ends[tp] - ((await consumer.committed(tp)) or 0)
        return behind
    finally:
        await consumer.stop()


def _behind(bootstrap: str, group: str, topic: str) -> int | None:
    """``_uncommitted``, or None when the probe does not answer within 10 s (one probe hung for
    12 minutes once; the next probe gets a fresh client)."""
    try:
        return asyncio.run(asyncio.wait_for(_uncommitted(bootstrap, group, topic), 10))
    except TimeoutError:
        _log("the commit probe timed out; trying again")
        return None


def _drain(
    k: Any,
    src: Path,
    work: Path,
    grid: Path,
    n: int,
    stations: int,
    count: int,
    leave_after: float | None = None,
) -> dict[str, Any]:
    name = f"s{uuid.uuid4().hex[:6]}"
    topic = f"{name}.readings"
    extra = {"AIRGRID_TOPIC_PARTITIONS": str(PARTITIONS)}
    workers = [
        c.Worker.make(
            src,
            k.bootstrap,
            name,
            work / f"{name}-w{i}",
            grid,
            c.free_port(),
            work / f"{name}-w{i}.log",
            **extra,
        )
        for i in range(count)
    ]
    for w in workers:
        w.spawn()
    try:
        for w in workers:
            w.wait_healthy(180)
        time.sleep(5)  # the group settles once every worker has joined
        asyncio.run(c.create_topic(k.bootstrap, topic, PARTITIONS))
        _, produce_s = asyncio.run(c.produce_all(k.bootstrap, topic, c.backlog(n, stations)))
        first = None
        leave: dict[str, Any] = {}
        before_leave: dict[str, float] = {}
        live = list(workers)
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            accepted = _total(live, outcome="accepted")
            now = time.monotonic()
            if accepted > 0 and first is None:
                first = now
            if leave_after is not None and not leave and accepted >= n * leave_after:
                leaver = live.pop()
                # what the leaver counted until now (it may process a few more before it exits)
                before_leave = {
                    o: leaver.metric("airgrid_readings_total", outcome=o) or 0.0 for o in OUTCOMES
                }
                leave = {"after_readings": int(accepted), "leaver_stop_s": round(leaver.stop(), 2), "at": now}
                _log(f"one worker left after {int(accepted)} readings")
            if not leave_after and accepted >= n:
                break
            # after a leave, done when the group has committed every reading
            if leave and _behind(k.bootstrap, f"airgrid-{name}", topic) == 0:
                break
            time.sleep(0.1 if not leave else 0.5)
        end = time.monotonic()
        start = first or end
        outcomes = {o: _total(live, outcome=o) + before_leave.get(o, 0.0) for o in OUTCOMES}
        result: dict[str, Any] = {
            "workers": count,
            "partitions": PARTITIONS,
            "readings": n,
            "produce_s": round(produce_s, 2),
            "seconds": round(end - start, 3),
            "readings_per_s": round(n / (end - start)) if end > start else None,
            "outcomes": {o: int(v) for o, v in outcomes.items() if v},
            "loadavg_1m_end": c.loadavg(),
        }
        if leave:
            result["leave"] = {
                "after_readings": leave["after_readings"],
                "leaver_stop_s": leave["leaver_stop_s"],
                # until every offset is committed: includes up to one commit interval (2.8 s)
                "rest_drained_s": round(end - leave["at"], 3),
                "outcomes_note": "the leaver's counts were read just before it stopped",
            }
        return result
    finally:
        for w in workers:
            w.stop()


def scaleout_phase(k: Any, src: Path, work: Path, grid: Path, n: int, stations: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, count, leave in (("one_worker", 1, None), ("two_workers", 2, None), ("two_then_one", 2, 1 / 3)):
        _log(f"{key}: {n} readings, {PARTITIONS} partitions")
        out[key] = _drain(k, src, work, grid, n, stations, count, leave)
        _log(f"{key}: {out[key]}")
    one, two = out["one_worker"]["readings_per_s"], out["two_workers"]["readings_per_s"]
    if one and two:
        out["two_over_one"] = round(two / one, 3)
    return out


def table_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for key, label in (("one_worker", "one worker"), ("two_workers", "two workers, combined")):
        if key in s:
            rows.append(
                (
                    f"scale-out, {label}, {PARTITIONS} partitions, readings/s",
                    f"{s[key]['readings_per_s']:,}",
                    "",
                )
            )
    if "two_over_one" in s:
        rows.append(("scale-out, two workers / one", f"x{s['two_over_one']:.2f}", ""))
    lv = s.get("two_then_one", {})
    if "leave" in lv:
        o = lv["outcomes"]
        rows.append(
            (
                "scale-out, one of two leaves after a third: s to drain the rest / outcomes",
                f"{lv['leave']['rest_drained_s']} / accepted {o.get('accepted', 0):,}, "
                f"replayed {o.get('replayed', 0):,}",
                "",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=40_000)
    ap.add_argument("--stations", type=int, default=2000)
    a = ap.parse_args(argv)
    from airgrid.kafka.local import LocalKafka, free_port

    report: dict[str, Any] = {"loadavg_1m_start": c.loadavg(), "versions": c.versions()}
    with tempfile.TemporaryDirectory(prefix="airgrid-scaleout-") as tmp:
        work = Path(tmp)
        src = work / "src"
        report["airgrid_snapshot"] = c.snapshot_airgrid(src)
        grid = c.make_grid_file(src, work / "grids-bench.json", a.stations)
        k = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=work / "kafka")
        k.start(120)
        try:
            report["scaleout"] = scaleout_phase(k, src, work, grid, a.readings, a.stations)
        finally:
            k.close()
    print(json.dumps(report, indent=2))
    print("\n| figure | value | target |\n|---|---|---|")
    for row in table_rows(report["scaleout"]):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
