"""Patch: the worker's data directory is created with all its parents.

Defect (Faust 0.15): ``App._create_directories`` creates only the last level of the data dir; a
data dir whose parent did not exist failed every start with FileNotFoundError (issue 18: seen with
the projection off, which had been what created the parents).

Private names: Faust ``App._create_directories``, ``conf.datadir``.
Tests: tests/e2e/test_fresh_start.py (a data dir three levels deep that does not exist yet).
"""

from __future__ import annotations

from typing import Any


def create_parents(conf: Any) -> None:
    """Create the data dir and its parents before Faust creates its own directories in it."""
    conf.datadir.mkdir(parents=True, exist_ok=True)
