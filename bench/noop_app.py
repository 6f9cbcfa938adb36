"""A tiny Faust app with one agent that only counts events: the framework's own cost.

Run by ``bench.run`` as a subprocess; environment: BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_N,
BENCH_OUT (a JSON file written once N events were seen), BENCH_PARTITIONS, BENCH_DATADIR; with
BENCH_TABLE_WRITE=1 the agent also writes one small row per event to a changelogged table (memory
store), as airgrid's detection writes a station's state per reading: Faust's cost of a table write.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import faust


def build() -> faust.App:
    env = os.environ
    n = int(env["BENCH_N"])
    out = env["BENCH_OUT"]
    app = faust.App(
        f"bench-noop-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{env['BENCH_BOOTSTRAP']}",
        store="memory://",
        datadir=env["BENCH_DATADIR"],
        topic_partitions=int(env["BENCH_PARTITIONS"]),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    topic = app.topic(env["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw")
    table = app.Table("bench-rows", default=None, key_type=str) if env.get("BENCH_TABLE_WRITE") else None

    async def count(stream: Any) -> None:
        seen = 0
        first = 0.0
        async for event in stream.events():  # the same loop shape as airgrid's agents
            seen += 1
            if table is not None:
                table[event.key.decode()] = {"seen": seen}
            if seen == 1:
                first = time.time()
            if seen == n:
                result = {"first": first, "last": time.time(), "count": seen}
                Path(out + ".tmp").write_text(json.dumps(result))  # noqa: ASYNC240 (once, after timing)
                os.replace(out + ".tmp", out)

    app.agent(topic, name="bench.noop", concurrency=1)(count)
    return app


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    build().main()
