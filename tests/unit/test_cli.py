"""The one ``airgrid`` command tree (issue 13, item 5) and its errors a person can act on (issue 15,
section 3): one help, ``-h`` everywhere, ``usage: airgrid ...``, ``--version``, one-line errors,
a closed stdout, Kafka that does not answer. Real processes where the entry point matters."""

from __future__ import annotations

import importlib.metadata
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from airgrid.cli import COMMANDS, root, run
from airgrid.kafka.local import free_port
from tests.helpers import REPO, airgrid_cli, clean_env

CONSOLE_SCRIPT = Path(sys.executable).with_name("airgrid")


def command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand of the tree, as the words a person types."""
    paths: list[tuple[str, ...]] = [()]
    ctx = click.Context(root)
    for name in COMMANDS:
        cmd = root.get_command(ctx, name)
        assert cmd is not None, name
        paths.append((name,))
        if isinstance(cmd, click.Group):
            paths += [(name, sub) for sub in cmd.list_commands(ctx)]
    return paths


def airgrid(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m airgrid ARGS`` with a clean AIRGRID_* environment (plus ``env``)."""
    return airgrid_cli(clean_env(**(env or {})), *args, timeout=60)


@pytest.fixture
def silent_broker() -> Iterator[socket.socket]:
    """A port that accepts connections and never answers: a broker that hangs (or a firewall)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(50)
        yield squatter


def connected(squatter: socket.socket) -> bool:
    squatter.setblocking(False)
    try:
        conn, _ = squatter.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


# --- one tree, one help -------------------------------------------------------------------------


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "airgrid")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help_naming_airgrid(
    path: tuple[str, ...], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*path, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(['airgrid', *path])} "), out
    assert "-h, --help" in out


def test_the_root_help_lists_every_command_in_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.startswith("  ")]
    assert listed[: len(COMMANDS)] == list(COMMANDS)
    assert run([]) == 0  # `airgrid` alone shows the same help
    assert capsys.readouterr().out == out
    assert run(["help", "tasks", "list"]) == 0
    assert capsys.readouterr().out.startswith("usage: airgrid tasks list ")


def test_the_root_help_imports_no_command() -> None:
    """`airgrid --help` stays fast: no command's module (settings, pydantic, Faust) is imported."""
    code = (
        "import json, sys; from airgrid.cli import run; run(['--help']); print(json.dumps(list(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    loaded = {m for m in json.loads(out.splitlines()[-1]) if m.startswith("airgrid")}
    assert loaded == {"airgrid", "airgrid.cli", "airgrid.cli.base"}


def test_version_is_airgrid_s_own(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out == f"airgrid {importlib.metadata.version('airgrid')}\n"


@pytest.mark.parametrize(
    "program", [(sys.executable, "-m", "airgrid"), (str(CONSOLE_SCRIPT),)], ids=["python -m", "script"]
)
def test_both_entry_points_say_airgrid(program: tuple[str, ...]) -> None:
    done = subprocess.run([*program, "report", "-h"], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: airgrid report [OPTIONS] "), done
    version = subprocess.run([*program, "--version"], capture_output=True, text=True, check=False)
    assert version.stdout == f"airgrid {importlib.metadata.version('airgrid')}\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "airgrid: No such command 'nope' (see 'airgrid -h')"),
        (["tasks", "list", "--state", "late"], "airgrid: Invalid value for '--state': 'late' is not one of"),
        (["replay", "--topic", "alarms", "--from-offset", "1", "--from-time", "2026-11-01"], "exclude each"),
        (["report", "weekly"], "airgrid: Missing option '--period'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


# --- issue 15, section 3 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["db", "status"],
        ["tasks", "list"],
        ["report", "weekly", "--period", "2026-W47"],
        ["worker"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_database_url_that_is_no_url_is_one_line_naming_the_variable(argv: list[str]) -> None:
    done = airgrid(*argv, env={"AIRGRID_DATABASE_URL": "notaurl"})
    assert done.returncode == 2
    assert done.stderr.startswith(
        "airgrid: invalid setting: AIRGRID_DATABASE_URL: not a SQLAlchemy database URL"
    )
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_worker_help_works_offline_and_changes_nothing(silent_broker: socket.socket, tmp_path: Path) -> None:
    data = tmp_path / "state"
    env = {
        "AIRGRID_BROKER": f"kafka://127.0.0.1:{silent_broker.getsockname()[1]}",
        "AIRGRID_DATA_DIR": str(data),
    }
    began = time.monotonic()
    done = airgrid("worker", "--help", env=env)
    assert done.returncode == 0 and done.stdout.startswith("usage: airgrid worker [OPTIONS]"), done
    assert "--loglevel" in done.stdout and done.stderr == ""
    assert time.monotonic() - began < 20
    assert not connected(silent_broker)  # no Kafka connection, so no topic created
    assert not data.exists()


@pytest.mark.parametrize("argv", [["topics"], ["watch"]], ids=lambda a: a[0])
def test_a_closed_kafka_port_is_one_line(argv: list[str]) -> None:
    port = free_port()
    done = airgrid(*argv, env={"AIRGRID_BROKER": f"kafka://127.0.0.1:{port}"})
    assert done.returncode == 1
    assert done.stderr == (
        f"airgrid: cannot reach Kafka at kafka://127.0.0.1:{port} (AIRGRID_BROKER): Connection refused\n"
    )


@pytest.mark.parametrize("argv", [["topics"], ["watch"], ["replay", "--topic", "alarms"]], ids=lambda a: a[0])
def test_a_kafka_that_does_not_answer_says_so_and_times_out(
    argv: list[str], silent_broker: socket.socket, tmp_path: Path
) -> None:
    """Issue 15: 40 silent seconds, then a doubled `KafkaConnectionError: KafkaConnectionError:`,
    aiokafka's own error lines and an `Unclosed AIOKafkaProducer`."""
    broker = f"kafka://127.0.0.1:{silent_broker.getsockname()[1]}"
    env = {
        "AIRGRID_BROKER": broker,
        "AIRGRID_BROKER_CONNECT_TIMEOUT_SECONDS": "3",
        "AIRGRID_DATA_DIR": str(tmp_path),
        "PYTHONWARNINGS": "always",  # an unclosed client's ResourceWarning would show
    }
    began = time.monotonic()
    done = airgrid(*argv, env=env)
    took = time.monotonic() - began
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"airgrid: connecting to Kafka at {broker} (AIRGRID_BROKER)...",
        f"airgrid: cannot reach Kafka at {broker} (AIRGRID_BROKER): no answer within 3 s "
        "(AIRGRID_BROKER_CONNECT_TIMEOUT_SECONDS)",
    ], done.stderr
    assert 3 <= took < 15, took


def test_simulated_stations_without_a_gateway_say_so_and_give_up(tmp_path: Path) -> None:
    """A trial run: `simulate --hj212` with nothing listening waited silently forever."""
    port = free_port()
    env = {"AIRGRID_DATA_DIR": str(tmp_path), "AIRGRID_BROKER": "kafka://127.0.0.1:1"}  # not needed
    began = time.monotonic()
    done = airgrid(
        "simulate", "--hj212", f"127.0.0.1:{port}", "--ticks", "1", "--connect-timeout", "1", env=env
    )
    assert done.returncode == 1 and time.monotonic() - began < 30
    assert done.stderr.splitlines() == [
        f"airgrid: no gateway at 127.0.0.1:{port} after 1 s (Connection refused)"
    ], done.stderr


def test_a_closed_stdout_ends_quietly() -> None:
    """Issue 15: `airgrid aqi ... --json | head` ended in a BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "airgrid", "aqi", "pm25=80", "pm10=130", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before airgrid writes (as `head` after its lines)
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141  # 128 + SIGPIPE, as a program killed by the signal
    assert err == ""
