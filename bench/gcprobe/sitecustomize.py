"""Loaded by a worker started with ``--gc-probe`` (on PYTHONPATH): logs every garbage collection
that pauses the process for 20 ms or more, to find event-loop stalls; with BENCH_GC_FREEZE_AFTER=S it
also calls gc.freeze() S seconds after start. No airgrid code changes."""

import gc
import os
import sys
import threading
import time

_started: list[float] = [0.0]


def _probe(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    if ms >= 20:
        print(
            f"GCPAUSE gen={info.get('generation')} ms={ms:.1f} collected={info.get('collected')}",
            file=sys.stderr,
            flush=True,
        )


gc.callbacks.append(_probe)


def _freeze() -> None:
    gc.collect()
    gc.freeze()  # objects alive now (grid directory, modules) leave the collector's scans
    print(f"GCFREEZE frozen={gc.get_freeze_count()}", file=sys.stderr, flush=True)


if os.environ.get("BENCH_GC_FREEZE_AFTER"):
    # an experiment without airgrid changes: freeze once the worker has started
    _timer = threading.Timer(float(os.environ["BENCH_GC_FREEZE_AFTER"]), _freeze)
    _timer.daemon = True
    _timer.start()
