"""Loaded by a worker started with ``--gc-probe`` (on PYTHONPATH): logs every garbage collection
that pauses the process for 20 ms or more and every event-loop callback that runs for 50 ms or
more, to find event-loop stalls; with BENCH_GC_FREEZE_AFTER=S it
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


# Event-loop stalls that are not garbage collection: every callback (a task step, a timer) that
# holds the loop for 50 ms or more, with what it was.
import asyncio.events as _events  # noqa: E402

_handle_run = _events.Handle._run


def _timed_run(self: _events.Handle) -> None:
    began = time.perf_counter()
    _handle_run(self)
    ms = (time.perf_counter() - began) * 1000
    if ms >= 50:
        print(f"SLOWCALLBACK ms={ms:.1f} {self._callback!r}"[:400], file=sys.stderr, flush=True)


_events.Handle._run = _timed_run  # type: ignore[method-assign]
