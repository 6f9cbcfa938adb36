"""Benchmark of the pure rule engine: readings evaluated per second on one core.

Not a test: it prints figures (JSON, then a markdown table). The engine runs exactly as in the
ingest agent (``engine.evaluate`` with the shipped rules compiled for warning level "none"),
without Kafka, JSON or table I/O, over readings built beforehand: a diurnal PM pattern with one
pollution episode per station, so alarms open, update and clear during the run.

    .venv/bin/python bench/bench_rules.py [--stations 200] [--hours 72] [--repeat 3]

Readings every 60 s (HJ 212 real-time data), 10 minutes and one hour: the cost of a reading is
its own checks plus, once per hour and station, the hour's averages and rules.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from airgrid.config.settings import DATA_DIR
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import compile_rules
from airgrid.domain.detection.state import StationState
from airgrid.domain.rules import load_rules
from airgrid.models.readings import Reading

START = datetime(2026, 12, 1, tzinfo=UTC)


def make_readings(
    stations: int, hours: int, interval: int, episodes: bool = True, seed: int = 7
) -> list[Reading]:
    rng = random.Random(seed)
    out: list[Reading] = []
    steps = hours * 3600 // interval
    for k in range(steps):
        at = START + timedelta(seconds=interval * (k + 1))
        h = at.hour + at.minute / 60
        diurnal = 1 + 0.3 * math.cos((h - 8) / 24 * 2 * math.pi)
        for s in range(stations):
            polluted = episodes and (k * interval // 3600 + s) % 48 in range(20, 30)
            episode = 150.0 if polluted else 0.0
            pm25 = 35 * diurnal + episode + rng.uniform(-5, 5)
            values = {
                "pm25": round(pm25, 1),
                "pm10": round(pm25 * rng.uniform(1.3, 1.8), 1),
                "so2": round(rng.uniform(4, 15), 1),
                "no2": round(rng.uniform(20, 60), 1),
                "co": round(rng.uniform(0.4, 1.2), 2),
                "o3": round(rng.uniform(30, 110), 1),
            }
            out.append(
                Reading.model_construct(
                    station_id=f"ST{s:04d}", observed_at=at, interval_s=interval, values=values, flags={}
                )
            )
    return out


def run(readings: list[Reading], grace_s: float) -> tuple[float, int, int]:
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"), "none", grace_s=grace_s)
    states: dict[str, StationState] = {}
    events = 0
    evaluate = engine.evaluate
    now = (START + timedelta(days=30)).timestamp()
    gc.collect()
    began = time.perf_counter()
    for r in readings:
        st = states.get(r.station_id)
        if st is None:
            st = states[r.station_id] = StationState()
        _, out, _ = evaluate(st, r, rs, now)
        events += len(out)
    return time.perf_counter() - began, events, len(states)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stations", type=int, default=200)
    p.add_argument("--hours", type=int, default=72)
    p.add_argument("--repeat", type=int, default=3, help="best of N runs")
    a = p.parse_args()
    rows = []
    cases = [(60, True), (600, True), (3600, True), (60, False), (600, False), (3600, False)]
    for interval, episodes in cases:
        # about the same number of readings per case: an hourly reading closes an hour, a
        # 1-minute reading does one sixtieth of that work
        hours = {60: a.hours // 8, 600: a.hours, 3600: a.hours * 4}[interval]
        print(f"building readings: {a.stations} stations x {hours} h at {interval} s ...", file=sys.stderr)
        readings = make_readings(a.stations, hours, interval, episodes)
        best = None
        for _ in range(a.repeat):
            secs, events, n = run(readings, 900)
            if best is None or secs < best[0]:
                best = (secs, events, n)
        assert best is not None
        secs, events, n = best
        rows.append(
            {
                "interval_s": interval,
                "air": "an episode 10 h in 48" if episodes else "clean",
                "stations": n,
                "readings": len(readings),
                "alarm_events": events,
                "seconds": round(secs, 3),
                "readings_per_s": round(len(readings) / secs),
                "us_per_reading": round(secs / len(readings) * 1e6, 2),
            }
        )
    report = {
        "benchmark": "rule engine, one core",
        "python": sys.version.split()[0],
        "target_per_s": 200_000,
        "runs": rows,
    }
    print(json.dumps(report, indent=2))
    print("\n| reading interval | air | stations | readings | alarm events | readings/s | µs/reading |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r['interval_s']} s", r["air"], r["stations"], f"{r['readings']:,}"]
        cells += [f"{r['alarm_events']:,}", f"{r['readings_per_s']:,}", r["us_per_reading"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
