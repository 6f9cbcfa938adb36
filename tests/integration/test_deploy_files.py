"""The local deploy stack's files: compose, Prometheus config and alerts, Grafana provisioning.

No Kafka and no Docker engine needed. Checks that need a tool run where the tool exists, next to
static checks that always run:

* ``docker compose -f docker-compose.kafka.yml config`` where the docker client has the compose
  plugin (``docker compose config`` validates and renders without a running engine);
* ``promtool check config|rules`` and ``promtool test rules`` where ``promtool`` is on PATH
  (``scripts/ensure_prometheus.sh`` installs it).

PyYAML parses the YAML files when it is installed; without it a small line scanner reads the few
facts the static checks need from the compose file, and plain text checks cover the rest.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.kafka.yml"
PROM_DIR = REPO / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "airgrid.yml"
DASHBOARD = GRAFANA / "dashboards" / "airgrid.json"
METRICS_PY = REPO / "airgrid" / "sinks" / "metrics.py"
GATEWAY_METRICS_PY = REPO / "airgrid" / "gateway" / "metrics.py"

SERVICES = {"kafka", "prometheus", "grafana"}
DS_UID = "prometheus"

# --- metric names and labels from airgrid/sinks/metrics.py and airgrid/gateway/metrics.py ---------

_STR = r'"(?:[^"\\]|\\.)*"'
_METRIC_CALL = re.compile(
    rf"\b(?P<kind>Counter|Gauge|Histogram|Summary)\(\s*\"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\"\s*,"
    rf"\s*{_STR}\s*(?:,\s*\[(?P<labels>[^\]]*)\])?"
)


def _metric_series() -> dict[str, frozenset[str]]:
    """Series name -> label names, for every metric the worker and the gateway define (as exposed)."""
    series: dict[str, frozenset[str]] = {}
    for m in _METRIC_CALL.finditer(METRICS_PY.read_text() + GATEWAY_METRICS_PY.read_text()):
        name, kind = m["name"], m["kind"]
        labels = frozenset(re.findall(r'"([^"]+)"', m["labels"] or ""))
        if kind == "Counter":
            series[name if name.endswith("_total") else f"{name}_total"] = labels
        elif kind == "Gauge":
            series[name] = labels
        else:  # Histogram / Summary
            series[f"{name}_bucket"] = labels | {"le"} if kind == "Histogram" else labels
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
            if kind == "Summary":
                series[name] = labels | {"quantile"}
    return series


SERIES = _metric_series()
# Series that Prometheus itself adds for every target; allowed in alerts, not on the dashboard.
SYNTHETIC = {"up": frozenset({"job", "instance", "service"})}
TARGET_LABELS = frozenset({"job", "instance", "service"})

# --- a small PromQL reader: metric names, functions, label names ---------------------------------

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_week", "delta", "deriv", "exp", "floor", "histogram_quantile",
    "holt_winters", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln",
    "log10", "log2", "max_over_time", "min_over_time", "predict_linear", "quantile_over_time", "rate",
    "resets", "round", "scalar", "sort", "sort_desc", "sqrt", "stddev_over_time", "sum_over_time",
    "time", "timestamp", "vector",
}  # fmt: skip
AGGREGATIONS = {
    "avg", "bottomk", "count", "count_values", "group", "max", "min", "quantile", "stddev", "stdvar",
    "sum", "topk",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)


def promql_names(expr: str) -> tuple[set[str], set[str], set[str], dict[str, set[str]]]:
    """(metric names, functions used, grouping label names, matcher label names by metric)."""
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", _strip_strings(expr))  # Grafana variables
    grouping: set[str] = set()
    for m in _GROUPING.finditer(text):
        grouping |= {x.strip() for x in m[2].split(",") if x.strip()}
    text = _GROUPING.sub(" ", text)
    matchers: dict[str, set[str]] = {}
    for m in _SELECTOR.finditer(text):
        names = {x.split("=")[0].split("!")[0].strip() for x in m[2].split(",") if x.strip()}
        matchers.setdefault(m[1] or "", set()).update(names)
    text = _SELECTOR.sub(lambda m: f" {m[1] or ''} ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?[smhdwy]?\b", " ", text)  # numbers, durations
    metrics: set[str] = set()
    functions: set[str] = set()
    for m in _IDENT.finditer(text):
        word = m[0]
        if word.lower() in KEYWORDS:
            continue
        if text[m.end() :].lstrip().startswith("("):
            functions.add(word)
        else:
            metrics.add(word)
    return metrics, functions, grouping, matchers


def check_expr(expr: str, allowed: dict[str, frozenset[str]]) -> list[str]:
    """Problems of one PromQL expression against the allowed series and their labels."""
    problems = []
    if not expr.strip():
        return ["empty expr"]
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        problems.append(f"unbalanced brackets in {expr!r}")
    metrics, functions, grouping, matchers = promql_names(expr)
    if not metrics:
        problems.append(f"no metric in {expr!r}")
    for name in sorted(metrics - allowed.keys()):
        problems.append(f"unknown metric {name!r} in {expr!r}")
    for name in sorted(functions - FUNCTIONS - AGGREGATIONS):
        problems.append(f"unknown function {name!r} in {expr!r}")
    known_labels = set(TARGET_LABELS)
    for name in metrics & allowed.keys():
        known_labels |= allowed[name]
    for name in sorted(grouping - known_labels):
        problems.append(f"label {name!r} (by/without) is on none of the metrics of {expr!r}")
    for metric, labels in matchers.items():
        have = allowed.get(metric, frozenset()) | TARGET_LABELS if metric else known_labels
        for label in sorted(labels - have):
            problems.append(f"label {label!r} is not a label of {metric or 'the metrics'} in {expr!r}")
    return problems


# --- the compose file: PyYAML when installed, else a line scanner -------------------------------


def _scan_compose(text: str) -> dict[str, dict[str, Any]]:
    """services -> {key: scalar | list of scalars} for keys at 4 spaces whose value is a scalar
    or a block/flow list of scalars. Enough for images, volumes, ports, extra_hosts, profiles."""
    services: dict[str, dict[str, Any]] = {}
    section = service = key = None
    for raw in text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw) if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if indent == 0:
            section, service, key = body.rstrip(":"), None, None
        elif section == "services" and indent == 2 and body.endswith(":"):
            service, key = body[:-1], None
            services[service] = {}
        elif service and indent == 4:
            key, _, value = body.partition(":")
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                services[service][key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
            elif value:
                services[service][key] = _unquote(value)
            else:
                services[service][key] = []
        elif service and key and indent == 6 and body.startswith("- "):
            entry = services[service][key]
            if isinstance(entry, list):
                entry.append(_unquote(body[2:]))
    return services


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def compose_services() -> dict[str, dict[str, Any]]:
    if yaml is not None:
        return dict(yaml.safe_load(COMPOSE.read_text())["services"])
    return _scan_compose(COMPOSE.read_text())


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """host path (relative, as written) -> container path, for ./ bind mounts."""
    mounts = {}
    for entry in service.get("volumes", []):
        parts = str(entry).split(":")
        if parts[0].startswith("./"):
            mounts[parts[0]] = parts[1]
    return mounts


# --- the dashboard ----------------------------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


# =====================================================================================================
# (a) compose: services, pinned images, mounts
# =====================================================================================================


def test_metric_names_are_parsed_from_metrics_py() -> None:
    assert len(SERIES) >= 20
    for name in (
        "airgrid_readings_total",
        "airgrid_dlq_total",
        "airgrid_alarms_total",
        "airgrid_open_tasks",
        "airgrid_sweeper_lag_seconds",
        "airgrid_feedback_latency_seconds_bucket",
        "airgrid_detection_latency_seconds_count",
        "airgrid_projection_write_seconds_sum",
        "airgrid_consumer_lag_messages",
    ):
        assert name in SERIES, name
    assert SERIES["airgrid_alarms_total"] == {"kind", "rule", "pollutant", "severity"}
    assert SERIES["airgrid_open_tasks"] == {"grid_l1", "state"}
    assert SERIES["airgrid_detection_latency_seconds_bucket"] == {"le"}
    assert SERIES["airgrid_gateway_frames_total"] == {"cn", "outcome"}
    assert SERIES["airgrid_gateway_publish_seconds_bucket"] == {"le"}


def test_compose_services_images_pinned_and_mounts() -> None:
    services = compose_services()
    assert set(services) >= SERVICES
    for name, service in services.items():
        image = service.get("image")
        if "build" in service:
            continue  # built locally (the optional worker)
        assert image, f"{name}: no image"
        repo, sep, tag = str(image).rpartition(":")
        assert sep and repo and tag and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: tag {tag!r} is not a full version"
    assert str(services["kafka"]["image"]).startswith("apache/kafka:3.9.1")
    assert str(services["prometheus"]["image"]).startswith("prom/prometheus:")
    assert str(services["grafana"]["image"]).startswith("grafana/grafana:")

    # Prometheus gets deploy/prometheus (prometheus.yml + alerts.yml) and reaches the host's worker.
    prom_mounts = _bind_mounts(services["prometheus"])
    assert prom_mounts.get("./deploy/prometheus") == "/etc/prometheus", prom_mounts
    assert "host.docker.internal:host-gateway" in services["prometheus"].get("extra_hosts", [])

    # Grafana gets the data source, the dashboard provider and the dashboard itself.
    graf_mounts = _bind_mounts(services["grafana"])
    assert graf_mounts.get("./deploy/grafana/provisioning/datasources") == (
        "/etc/grafana/provisioning/datasources"
    )
    assert graf_mounts.get("./deploy/grafana/provisioning/dashboards") == (
        "/etc/grafana/provisioning/dashboards"
    )
    dash_target = graf_mounts.get("./deploy/grafana/dashboards")
    assert dash_target, graf_mounts
    provider = PROVIDER.read_text()
    assert re.search(rf"^\s*path:\s*{re.escape(dash_target)}\s*$", provider, re.M), (
        f"the dashboard provider must read {dash_target}, where the dashboards are mounted"
    )

    # Optional worker: only behind a profile, so `up` starts the three infrastructure services.
    for name, service in services.items():
        if name not in SERVICES:
            assert service.get("profiles"), f"{name}: extra services need a profile"
            if "build" in service:
                assert (REPO / "Dockerfile").is_file()


def test_compose_kafka_listeners_for_containers_and_host() -> None:
    text = COMPOSE.read_text()
    advertised = re.search(r"KAFKA_ADVERTISED_LISTENERS:\s*\"?([^\"\n]+)", text)
    assert advertised, "KAFKA_ADVERTISED_LISTENERS missing"
    listeners = dict(item.split("://", 1) for item in advertised[1].split(","))
    assert "kafka:9092" in listeners.values(), listeners  # inside the compose network
    host_side = [v for v in listeners.values() if v.split(":")[0] in ("localhost", "127.0.0.1")]
    assert host_side, listeners  # from the host
    host_port = host_side[0].rsplit(":", 1)[1]
    assert re.search(rf"[\"\s-]+(127\.0\.0\.1:)?{host_port}:{host_port}\b", text), "host port not published"
    assert re.search(r"KAFKA_PROCESS_ROLES:\s*\"?broker,controller", text), "not a KRaft single node"
    assert "ZOOKEEPER" not in text.upper()


def test_compose_line_scanner_agrees_with_pyyaml() -> None:
    """The fallback scanner reads the same facts as PyYAML (kept honest where PyYAML is installed)."""
    assert yaml is not None
    parsed = yaml.safe_load(COMPOSE.read_text())["services"]
    scanned = _scan_compose(COMPOSE.read_text())
    assert set(scanned) == set(parsed)
    for name, service in parsed.items():
        for key in ("image", "volumes", "ports", "extra_hosts", "profiles"):
            if key in service:
                assert scanned[name].get(key) == service[key], (name, key)


# =====================================================================================================
# (b) docker compose config where the compose plugin exists; static equivalents always
# =====================================================================================================


def _docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def test_compose_config(record_property: Any) -> None:
    text = COMPOSE.read_text()
    services = compose_services()

    # Static: what `docker compose config` would reject or resolve.
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for var in re.findall(r"\$\{([^}]*)\}", line):
            assert re.search(r"^\w+:?-", var), f"${{{var}}} has no default: `config` would need it set"
        for source in re.findall(r"-\s*\"?(\./[^:\"\s]+):", line):
            assert (REPO / source).exists(), f"bind-mount source {source} does not exist"
    top_volumes = re.split(r"\n(?=\S)", text.split("\nvolumes:", 1)[1], maxsplit=1)[0]
    declared = set(re.findall(r"^  ([a-z0-9_-]+):\s*$", top_volumes, re.M))
    for name, service in services.items():
        for entry in service.get("volumes", []):
            source = str(entry).split(":")[0]
            if not source.startswith(("./", "/", "~")):
                assert source in declared, f"{name}: named volume {source!r} is not declared"
        depends = service.get("depends_on", [])
        for dep in depends if isinstance(depends, list) else list(depends):
            assert dep in services, f"{name}: depends on unknown service {dep!r}"

    if not _docker_compose_available():
        record_property("docker_compose_config", "not run: no docker client with the compose plugin")
        print("docker compose config: not run (no docker client with the compose plugin); static only")
        return

    # The compose plugin validates the file against the Compose spec; no engine needed.
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--profile", "worker", "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert set(rendered["services"]) >= SERVICES
    for name in SERVICES:
        assert ":latest" not in rendered["services"][name]["image"]
    record_property("docker_compose_config", "ran")
    print("docker compose config: ran and passed")


# =====================================================================================================
# (c) the dashboard: every target is PromQL over airgrid's metrics, on the provisioned data source
# =====================================================================================================


def test_promql_reader_catches_mistakes() -> None:
    ok = 'sum by (rule, severity) (rate(airgrid_alarms_total{kind=~"$alarm_kind"}[$__rate_interval]))'
    assert check_expr(ok, SERIES) == []
    assert check_expr("histogram_quantile(0.95, sum by (le) (rate(airgrid_x_bucket[5m])))", SERIES)
    assert check_expr("sum by (grid) (airgrid_open_tasks)", SERIES)  # no such label
    assert check_expr('airgrid_readings_total{result="ok"}', SERIES)  # no such label
    assert check_expr("rated(airgrid_readings_total[5m])", SERIES)  # no such function
    assert check_expr("up == 0", SERIES)  # not an airgrid metric
    assert check_expr("up == 0", {**SERIES, **SYNTHETIC}) == []
    assert check_expr("", SERIES)


def test_dashboard_targets_use_only_airgrid_metrics() -> None:
    board = dashboard()
    assert board["uid"] == "airgrid"
    assert 36 <= board["schemaVersion"] <= 41
    panels = list(_panels(board["panels"]))
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Intake", "Alarms", "Tasks", "Health", "Gateway"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"

    used: set[str] = set()
    problems: list[str] = []
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_UID}, panel["title"]
        assert panel.get("targets"), f"{panel['title']}: no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds"
        for target in panel["targets"]:
            assert target.get("datasource", {}).get("uid") == DS_UID, panel["title"]
            problems += [f"{panel['title']}: {p}" for p in check_expr(target.get("expr", ""), SERIES)]
            used |= promql_names(target.get("expr", ""))[0]
    assert problems == []

    # The families the brief asks for are all on the board.
    for family in (
        "airgrid_readings_total",
        "airgrid_dlq_total",
        "airgrid_alarms_total",
        "airgrid_detection_latency_seconds_bucket",
        "airgrid_open_tasks",
        "airgrid_reminders_total",
        "airgrid_escalations_total",
        "airgrid_feedback_submitted_total",
        "airgrid_feedback_latency_seconds_bucket",
        "airgrid_sweeper_lag_seconds",
        "airgrid_consumer_lag_messages",
        "airgrid_projection_write_seconds_bucket",
        "airgrid_projection_errors_total",
        "airgrid_gateway_open_connections",
        "airgrid_gateway_frames_total",
        "airgrid_gateway_refused_total",
        "airgrid_gateway_crc_total",
        "airgrid_gateway_publish_seconds_bucket",
    ):
        assert family in used, f"{family} is on no panel"


def test_dashboard_on_time_ratio_and_quantiles() -> None:
    exprs = [t["expr"] for p in _panels(dashboard()["panels"]) for t in p.get("targets", [])]
    ratio = [e for e in exprs if "airgrid_feedback_submitted_total" in e]
    assert ratio
    for expr in ratio:
        numerator, _, denominator = expr.partition(" / ")
        assert 'on_time="true"' in numerator and "on_time" not in denominator, expr
    for histogram, quantiles in (
        ("airgrid_detection_latency_seconds_bucket", {"0.5", "0.95", "0.99"}),
        ("airgrid_feedback_latency_seconds_bucket", {"0.5", "0.95"}),
        ("airgrid_projection_write_seconds_bucket", {"0.95"}),
    ):
        found = {
            m[1]
            for e in exprs
            if histogram in e and "by (le)" in e
            for m in [re.match(r"histogram_quantile\((0\.\d+),", e)]
            if m
        }
        assert quantiles <= found, (histogram, found)


def test_grafana_datasource_provisioning() -> None:
    text = DATASOURCE.read_text()
    if yaml is not None:
        sources = yaml.safe_load(text)["datasources"]
        assert [s["uid"] for s in sources] == [DS_UID]
        assert sources[0]["type"] == "prometheus"
        assert sources[0]["url"] == "http://prometheus:9090"
    else:
        assert re.search(rf"^\s*uid:\s*{DS_UID}\s*$", text, re.M)
        assert re.search(r"^\s*url:\s*http://prometheus:9090\s*$", text, re.M)
    assert re.search(r"^\s*type:\s*file\s*$", PROVIDER.read_text(), re.M)


# =====================================================================================================
# (d) Prometheus config and alerting rules: promtool where installed; static checks always
# =====================================================================================================

ALERTS_WANTED = {
    "AirgridWorkerDown",
    "AirgridDLQRateHigh",
    "AirgridEscalationsRising",
    "AirgridSweeperLagging",
    "AirgridProjectionErrors",
    "AirgridConsumerLagHigh",
    "AirgridGatewayDown",
    "AirgridGatewayRefusedRateHigh",
}


def _alert_rules_text(text: str) -> dict[str, str]:
    """alert name -> expr, read line by line (single-line or folded ``>-`` exprs)."""
    rules: dict[str, str] = {}
    lines = text.splitlines()
    name = None
    for i, line in enumerate(lines):
        m = re.match(r"^\s*-\s*alert:\s*(\S+)", line)
        if m:
            name = m[1]
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m and name:
            indent, value = len(m[1]), m[2].strip()
            if value in (">-", ">", "|", "|-"):
                parts = []
                for cont in lines[i + 1 :]:
                    if cont.strip() and len(cont) - len(cont.lstrip()) <= indent:
                        break
                    parts.append(cont.strip())
                value = " ".join(p for p in parts if p)
            rules[name] = _unquote(value)
    return rules


def alert_rules() -> dict[str, str]:
    if yaml is not None:
        groups = yaml.safe_load(ALERTS.read_text())["groups"]
        return {r["alert"]: " ".join(str(r["expr"]).split()) for g in groups for r in g["rules"]}
    return _alert_rules_text(ALERTS.read_text())


def test_prometheus_config_scrapes_worker_every_5s() -> None:
    text = PROM_CONFIG.read_text()
    if yaml is not None:
        config = yaml.safe_load(text)
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        job = jobs["airgrid"]
        assert job["scrape_interval"] == "5s"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets == ["host.docker.internal:6066"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert config["rule_files"] == ["alerts.yml"]
        gateway = jobs["airgrid-gateway"]
        assert [t for sc in gateway["static_configs"] for t in sc["targets"]] == ["host.docker.internal:6067"]
    else:
        block = text.split("job_name: airgrid", 1)[1].split("job_name:", 1)[0]
        assert re.search(r"^\s*scrape_interval:\s*5s\s*$", block, re.M)
        assert '"host.docker.internal:6066"' in block
        assert re.search(r"^rule_files:\s*\n\s*-\s*alerts\.yml\s*$", text, re.M)


def test_alert_rules_cover_the_command_centre() -> None:
    rules = alert_rules()
    assert set(rules) >= ALERTS_WANTED
    allowed = {**SERIES, **SYNTHETIC}
    problems = [f"{name}: {p}" for name, expr in rules.items() for p in check_expr(expr, allowed)]
    assert problems == []
    assert 'up{job="airgrid"}' in rules["AirgridWorkerDown"]
    assert 'up{job="airgrid-gateway"}' in rules["AirgridGatewayDown"]
    assert "> 60" in rules["AirgridSweeperLagging"]


def test_alert_line_reader_agrees_with_pyyaml() -> None:
    assert _alert_rules_text(ALERTS.read_text()) == alert_rules()


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )


def test_promtool_checks_config_and_rules(record_property: Any) -> None:
    assert ALERTS_TEST.is_file()
    assert shutil.which("promtool"), "promtool missing: run scripts/ensure_prometheus.sh"
    for args in (
        ("check", "config", str(PROM_CONFIG)),  # also checks the rule files it names
        ("check", "rules", str(ALERTS)),
        ("test", "rules", str(ALERTS_TEST)),
    ):
        result = _promtool(*args)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    record_property("promtool", "ran")
