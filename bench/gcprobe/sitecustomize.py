"""Loaded by a worker started with ``--gc-probe`` (on PYTHONPATH): logs every garbage collection
that pauses the process for 20 ms or more, to find event-loop stalls. No airgrid code changes."""

import gc
import sys
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
