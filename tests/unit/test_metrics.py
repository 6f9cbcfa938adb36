"""The metrics container: every known label combination exists at 0 from the start (so alerts see
the first increment after a restart), build info and process metrics, and the known label lists
cover every label value the code writes."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import airgrid
from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.domain.rules import load_rules
from airgrid.metrics import FEEDBACK_DLQ_REASONS, READING_DLQ_REASONS, Metrics

PACKAGE = Path(airgrid.__file__).parent
DIRECTORY = Directory.load(DATA_DIR / "grids.json")
RULES = load_rules(DATA_DIR / "rules.toml")


def started() -> Metrics:
    m = Metrics(CollectorRegistry())
    m.initialise(DIRECTORY, RULES)
    return m


def samples(m: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Exposed series: name -> {sorted labels: value}, parsed from what /metrics would serve."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_a_restarted_worker_exposes_the_series_its_alerts_need_at_zero() -> None:
    """AirgridEscalatedToLevel1 and AirgridIntakeStalled need these series before anything
    happens: without initialise() a fresh worker exposes neither."""
    fresh = samples(Metrics(CollectorRegistry()))
    assert "airgrid_escalations_total" not in fresh and "airgrid_readings_total" not in fresh
    got = samples(started())
    assert got["airgrid_escalations_total"] == {(("level", "1"),): 0.0, (("level", "2"),): 0.0}
    assert got["airgrid_readings_total"][(("outcome", "accepted"),)] == 0.0
    assert set(got["airgrid_readings_total"]) >= {(("outcome", o),) for o in ("rejected", "late", "replayed")}
    assert got["airgrid_dlq_total"][(("reason", "unreadable"), ("topic", "alarms"))] == 0.0
    assert got["airgrid_internal_errors_total"][(("stage", "owner"),)] == 0.0
    assert got["airgrid_dlq_total"][(("reason", "too_late"), ("topic", "readings"))] == 0.0
    assert got["airgrid_dlq_total"][(("reason", "wrong_grid"), ("topic", "feedback"))] == 0.0
    assert got["airgrid_feedback_submitted_total"] == {(("on_time", "false"),): 0, (("on_time", "true"),): 0}
    counted = {n: s for n, s in got.items() if n.startswith("airgrid_") and n != "airgrid_build_info"}
    assert len(counted) >= 10 and all(v == 0 for s in counted.values() for v in s.values())


def test_alarm_series_follow_the_rule_catalogue() -> None:
    alarms = samples(started())["airgrid_alarms_total"]
    labels = [dict(key) for key in alarms]
    by_rule = {(x["rule"], x["pollutant"], x["severity"]) for x in labels}
    assert ("pm25_1h_severe", "pm25", "critical") in by_rule
    assert ("aqi_heavy", "", "major") in by_rule and ("station_silent", "", "major") in by_rule
    assert {p for r, p, _ in by_rule if r == "flatline"} == {"pm25", "pm10", "no2", "o3"}
    assert {p for r, p, _ in by_rule if r == "impossible"} == {"pm25", "pm10", "so2", "no2", "co", "o3"}
    assert {r for r, _, _ in by_rule} == {r.id for r in RULES.rules}
    assert {x["kind"] for x in labels} == {"opened", "updated", "cleared"}
    assert len(alarms) == 3 * len(by_rule)


def test_open_tasks_show_zero_for_every_level1_grid_and_open_state() -> None:
    m = started()
    level1 = {g.id for g in DIRECTORY.grids.values() if g.level == 1}
    m.set_open_tasks({("L1-01", "dispatched"): 3})
    series = {dict(k)["grid_l1"]: 0 for k in samples(m)["airgrid_open_tasks"]}
    assert set(series) == level1 and len(level1) == 8
    got = samples(m)["airgrid_open_tasks"]
    assert got[(("grid_l1", "L1-01"), ("state", "dispatched"))] == 3
    assert got[(("grid_l1", "L1-02"), ("state", "dispatched"))] == 0
    assert {dict(k)["state"] for k in got} == {"dispatched", "acknowledged", "on_site", "feedback_submitted"}
    m.set_open_tasks({})
    assert samples(m)["airgrid_open_tasks"][(("grid_l1", "L1-01"), ("state", "dispatched"))] == 0


def test_build_info_and_process_metrics_on_the_injected_registry() -> None:
    got = samples(started())
    assert got["airgrid_build_info"] == {(("version", airgrid.__version__),): 1.0}
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"):
        assert name in got, name
    assert "python_info" in got
    # a second container on its own registry works (no process collector on a global registry)
    assert "process_cpu_seconds_total" in samples(Metrics(CollectorRegistry()))


def test_initialise_twice_changes_nothing() -> None:
    m = started()
    m.readings.labels("accepted").inc(5)
    before = samples(m)
    m.initialise(DIRECTORY, RULES)
    after = samples(m)
    before.pop("process_cpu_seconds_total"), after.pop("process_cpu_seconds_total")
    for name in [n for n in before if n.startswith("process_")]:
        before.pop(name), after.pop(name, None)
    assert after == before


# --- the known label lists cover what the code writes -----------------------------------------------


def _sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def test_every_literal_label_the_code_writes_is_initialised() -> None:
    """``<metric>.labels("x", ...)`` anywhere in airgrid with a literal value: that value must be
    among the ones initialise() creates, or its series would appear only on first use."""
    m = started()
    wrappers = {name: w for name, w in vars(m).items() if isinstance(w, MetricWrapperBase)}
    known: dict[str, list[set[str]]] = {}
    for name, wrapper in wrappers.items():
        names = list(wrapper._labelnames)
        values: list[set[str]] = [set() for _ in names]
        for family in wrapper.collect():
            for sample in family.samples:
                for i, label in enumerate(names):
                    if label in sample.labels:
                        values[i].add(sample.labels[label])
        known[name] = values
    checked = 0
    problems = []
    for path, tree in _sources().items():
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "labels"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in wrappers
            ):
                continue
            metric = node.func.value.attr
            for i, arg in enumerate(node.args):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    checked += 1
                    if arg.value not in known[metric][i]:
                        problems.append(f"{path.name}:{node.lineno}: {metric} label {arg.value!r}")
    assert checked >= 15
    assert problems == []


def _codes(tree: ast.Module, calls: set[str]) -> set[str]:
    """The reason codes a module passes: the first identifier-like string constant of a call to
    one of ``calls``, and ``code, reason = "x", ...`` assignments."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in calls:
                for arg in node.args:
                    if (
                        isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and arg.value.isidentifier()
                    ):
                        found.add(arg.value)
                        break
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            target = node.targets[0]
            if isinstance(target, ast.Tuple) and [getattr(t, "id", "") for t in target.elts][:1] == ["code"]:
                first = node.value.elts[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def test_the_dlq_reason_lists_cover_every_code() -> None:
    trees = _sources()
    intake = trees[PACKAGE / "domain" / "intake.py"]
    decode = next(n for n in ast.walk(intake) if isinstance(n, ast.FunctionDef) and n.name == "_decode")
    reading_codes = _codes(intake, {"Rejection"}) | _codes(
        trees[PACKAGE / "stages" / "ingest.py"], {"to_dlq"}
    )
    feedback_codes = (
        _codes(decode, {"Rejection"})  # type: ignore[arg-type]
        | _codes(trees[PACKAGE / "domain" / "tasks.py"], {"Refusal"})
        | _codes(trees[PACKAGE / "stages" / "owner.py"], {"reject"})
        | _codes(trees[PACKAGE / "stages" / "feedback.py"], {"reject"})
    )
    assert {"future", "unknown_station", "too_late"} <= reading_codes
    assert {"not_json", "unknown_task", "wrong_grid", "illegal_transition"} <= feedback_codes
    # an internal error is retried, never a refusal (issue 18)
    assert "internal" not in reading_codes | feedback_codes
    assert reading_codes <= set(READING_DLQ_REASONS), reading_codes - set(READING_DLQ_REASONS)
    assert feedback_codes <= set(FEEDBACK_DLQ_REASONS), feedback_codes - set(FEEDBACK_DLQ_REASONS)
