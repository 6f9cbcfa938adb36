"""A wrong setting stops the real ``airgrid worker`` at start with a message that names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRGRID_")}
    return subprocess.run(
        [sys.executable, "-m", "airgrid", "worker"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AIRGRID_WEB_PORT": "abc"}, "AIRGRID_WEB_PORT"),
        ({"AIRGRID_STORE": "redis"}, "AIRGRID_STORE: Input should be 'memory' or 'rocksdb'"),
        ({"AIRGRID_BROKER": "localhost:9092"}, "AIRGRID_BROKER: must start with kafka://"),
        ({"AIRGRID_GRID_FILE": "/nowhere/grids.json"}, "AIRGRID_GRID_FILE: file /nowhere/grids.json"),
        ({"AIRGRID_BROKER_SECURITY_PROTOCOL": "SASL_SSL"}, "AIRGRID_BROKER_USERNAME"),
    ],
)
def test_wrong_setting_stops_the_worker_naming_it(env: dict[str, str], named: str) -> None:
    result = run_worker(**env)
    assert result.returncode == 2
    assert named in result.stderr
    assert result.stderr.count("\n") <= 2, result.stderr  # one line, not a traceback
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_one_clear_line() -> None:
    result = run_worker(AIRGRID_BROKER="kafka://127.0.0.1:1")
    assert result.returncode == 1
    assert "cannot reach Kafka at kafka://127.0.0.1:1 (AIRGRID_BROKER)" in result.stderr
    assert "Traceback" not in result.stderr
