"""The peers' job as a Quix Streams app: a stateful ``apply`` (RocksDB store, changelog topic on),
``filter``, ``to_topic``; at-least-once, the default commit interval.

Run by ``bench.run`` as a subprocess with the interpreter of the Quix Streams venv
(``scripts/bench_quix_venv.sh``): Quix Streams caps pydantic below the version airgrid pins, so it
cannot share airgrid's venv. Environment: BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_ALARMS, BENCH_N,
BENCH_OUT, BENCH_DATADIR, BENCH_APP_ID (the consumer group). SIGTERM stops it cleanly (Quix
commits its last checkpoint: the alarms and changelog records it still holds are produced).
"""

from __future__ import annotations

import os
from typing import Any

from quixstreams import Application

from bench.peers import job


def main() -> None:
    env = os.environ
    tally = job.Tally(int(env["BENCH_N"]), env["BENCH_OUT"])
    app = Application(
        broker_address=env["BENCH_BOOTSTRAP"],
        consumer_group=env["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        state_dir=env["BENCH_DATADIR"],
        processing_guarantee="at-least-once",
        use_changelog_topics=True,
        loglevel="WARNING",
    )
    readings = app.topic(env["BENCH_TOPIC"], key_deserializer="bytes", value_deserializer="bytes")
    alarms = app.topic(env["BENCH_ALARMS"], key_serializer="bytes", value_serializer="bytes")

    def handle(value: bytes, state: Any) -> bytes | None:
        new, alarm = job.process(state.get("station"), value)
        if new is not None:
            state.set("station", new)
        tally.add(new, alarm)
        tally.finish_if_done()
        return alarm

    sdf = app.dataframe(readings)
    sdf = sdf.apply(handle, stateful=True).filter(lambda alarm: alarm is not None)
    sdf.to_topic(alarms)
    app.run()


if __name__ == "__main__":
    main()
