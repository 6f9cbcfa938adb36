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
METRICS_PY = REPO / "airgrid" / "metrics.py"
RUNBOOK = REPO / "docs" / "runbook.md"
DOCKERFILE = REPO / "Dockerfile"
GATEWAY_METRICS_PY = REPO / "airgrid" / "gateway" / "metrics.py"

SERVICES = {"kafka", "prometheus", "grafana"}
DS_UID = "prometheus"  # the provisioned data source; the dashboard picks it through ${datasource}
DS_VAR = {"type": "prometheus", "uid": "${datasource}"}

# --- metric names and labels from airgrid/metrics.py and airgrid/gateway/metrics.py -----------------

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
TARGET_LABELS = frozenset({"job", "instance", "service"})
# Series that Prometheus itself adds for every target, and the process collector's of metrics.py.
SYNTHETIC = {"up": TARGET_LABELS}
PROCESS = {
    name: frozenset()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds")
}

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


def test_compose_secure_defaults() -> None:
    """Topic auto-creation is off (the worker creates its topics at start) and every published
    port, the worker's and the gateway's metrics included, binds to the host's loopback unless the
    user says otherwise; only the gateway's station port faces other machines (stations are
    elsewhere)."""
    services = compose_services()
    assert str(services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"
    published = [(name, str(port)) for name, svc in services.items() for port in svc.get("ports", [])]
    assert ("airgrid", "${AIRGRID_PUBLISH_ADDRESS:-127.0.0.1}:6066:6066") in published
    assert ("gateway", "${AIRGRID_PUBLISH_ADDRESS:-127.0.0.1}:6067:6067") in published
    published.remove(("gateway", "9212:9212"))
    for name, port in published:
        default = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", port)  # what compose uses when unset
        assert default.startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"


def test_dockerfile_installs_postgres_and_checks_liveness() -> None:
    """The image can use the README's postgresql+psycopg:// URL, and its health check asks for
    liveness: /health is readiness (503 during a rebalance), which is no reason to kill a worker."""
    text = DOCKERFILE.read_text()
    assert re.search(r'pip install "?\.\[postgres\]"?', text)
    assert re.search(
        r'^postgres = \["psycopg\[binary\]==[\d.]+"\]', (REPO / "pyproject.toml").read_text(), re.M
    )
    health = next(line for line in text.splitlines() if line.strip().startswith("CMD") and "health" in line)
    assert "/health/live" in health


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
    assert rows == ["Workers", "Intake", "Alarms", "Tasks", "Health", "Gateway"]
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
        assert panel["datasource"] == DS_VAR, panel["title"]
        assert panel.get("targets"), f"{panel['title']}: no targets"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds"
        for target in panel["targets"]:
            assert target.get("datasource") == DS_VAR, panel["title"]
            allowed = {**SERIES, **SYNTHETIC, **PROCESS}
            problems += [f"{panel['title']}: {p}" for p in check_expr(target.get("expr", ""), allowed)]
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


def test_dashboard_variables_scope_every_query() -> None:
    """A data source variable (no hard-coded uid), a worker (`instance`) variable that every
    query honours, a level-1 grid variable on the open tasks, percent panels fixed to 0-100 %."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["instance"]["query"] == 'label_values(up{job="airgrid"}, instance)'
    assert variables["grid_l1"]["query"] == "label_values(airgrid_open_tasks, grid_l1)"
    assert variables["gateway"]["query"] == 'label_values(up{job="airgrid-gateway"}, instance)'
    for name in ("instance", "grid_l1", "gateway"):
        v = variables[name]
        assert v["datasource"] == DS_VAR and v["includeAll"] and v["multi"] and v["allValue"] == ".*"
    assert f'"uid": "{DS_UID}"' not in json.dumps(board)  # no hard-coded data source uid
    grid_panels = 0
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            for m in _SELECTOR.finditer(target["expr"]):
                scope = "$gateway" if m[1].startswith("airgrid_gateway_") else "$instance"
                assert f'instance=~"{scope}"' in m[2], (panel["title"], target["expr"])
                if m[1] == "airgrid_open_tasks":
                    assert 'grid_l1=~"$grid_l1"' in m[2]
                    grid_panels += 1
            if not _SELECTOR.search(target["expr"]):
                raise AssertionError(f"{panel['title']}: an unscoped query {target['expr']!r}")
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if defaults.get("unit") == "percentunit":
            assert (defaults.get("min"), defaults.get("max")) == (0, 1), panel["title"]
    assert grid_panels >= 1
    titles = {p["title"]: p for p in _panels(board["panels"])}
    up = titles["Workers up"]["targets"][0]["expr"]
    assert up.startswith('up{job="airgrid"')
    assert {"Version", "Uptime", "Resident memory", "CPU (cores)"} <= set(titles)


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
    "AirgridIntakeStalled",
    "AirgridDLQRateHigh",
    "AirgridEscalationsRising",
    "AirgridEscalatedToLevel1",
    "AirgridSweeperLagging",
    "AirgridProjectionErrors",
    "AirgridProjectionLagging",
    "AirgridConsumerLagHigh",
    "AirgridInternalError",
    "AirgridTableUnusable",
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
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert config["rule_files"] == ["alerts.yml"]
        gateway = jobs["airgrid-gateway"]  # the compose service `gateway`, found by name
        assert [(sd["names"], sd["port"]) for sd in gateway["dns_sd_configs"]] == [(["gateway"], 6067)]
    else:
        block = text.split("job_name: airgrid", 1)[1].split("job_name:", 1)[0]
        assert re.search(r"^\s*scrape_interval:\s*5s\s*$", block, re.M)
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


def _slug(heading: str) -> str:
    """The anchor GitHub and GitLab give a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_its_runbook_section() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    anchors = {_slug(m[1]) for m in re.finditer(r"^## (.+)$", RUNBOOK.read_text(), re.M)}
    for rule in (r for g in groups for r in g["rules"]):
        url = rule["annotations"]["runbook_url"]
        template = '{{ or $externalLabels.runbook_base "docs/runbook.md" }}#'
        assert url == template + rule["alert"].lower(), rule["alert"]
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no section for {rule['alert']}"
    assert len(anchors) >= len([r for g in groups for r in g["rules"]])


def test_prometheus_scrapes_the_compose_worker_by_its_service_name() -> None:
    """dns_sd on the service name: every replica of the worker profile, and no target (so no
    AirgridWorkerDown) while the profile is off."""
    job = next(
        j for j in yaml.safe_load(PROM_CONFIG.read_text())["scrape_configs"] if j["job_name"] == "airgrid"
    )
    (sd,) = job["dns_sd_configs"]
    assert (sd["names"], sd["type"], sd["port"]) == (["airgrid"], "A", 6066)
    worker = compose_services()["airgrid"]
    assert worker["profiles"] == ["worker"] and worker["environment"]["AIRGRID_WEB_PORT"] == "6066"


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


def _restart_exposition(initialised: bool) -> dict[str, list[dict[str, str]]]:
    """The label sets of the counters a worker exposes right after its start."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from airgrid.config.settings import DATA_DIR
    from airgrid.domain.directory import Directory
    from airgrid.domain.rules import load_rules
    from airgrid.metrics import Metrics

    m = Metrics(CollectorRegistry())
    if initialised:
        m.initialise(Directory.load(DATA_DIR / "grids.json"), load_rules(DATA_DIR / "rules.toml"))
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in {**labels, "job": "airgrid", "instance": "w1:6066"}.items())
    return f"{name}{{{inner}}}"


def _expected(alert: str) -> dict[str, Any]:
    """The labels and annotations an alert without templated text fires with (runbook default)."""
    rule = next(
        r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if r["alert"] == alert
    )
    notes = dict(rule["annotations"]) | {"runbook_url": f"docs/runbook.md#{alert.lower()}"}
    assert not [v for v in notes.values() if "{{" in v], notes
    return {
        "exp_labels": dict(rule["labels"]),
        "exp_annotations": {k: " ".join(v.split()) for k, v in notes.items()},
    }


def test_alerts_fire_on_what_a_restarted_worker_exposes(tmp_path: Path) -> None:
    """Issue 15: AirgridEscalatedToLevel1 never fired for the first level-1 escalation after a
    restart, AirgridIntakeStalled never for a restarted worker that receives nothing: their
    counters appeared only on first use. promtool runs the shipped rules over the series a freshly
    started worker really exposes (Metrics.initialise), then one escalation / no reading at all."""
    exposed = _restart_exposition(initialised=True)
    escalation = [x for x in exposed.get("airgrid_escalations_total", []) if x == {"level": "1"}]
    readings = exposed.get("airgrid_readings_total", [])
    assert escalation and len(readings) >= 5, "a started worker must expose these counters at 0"
    assert not _restart_exposition(initialised=False).get("airgrid_escalations_total")
    series = [{"series": _series("airgrid_escalations_total", x), "values": "0x5 1x30"} for x in escalation]
    series += [{"series": _series("airgrid_readings_total", x), "values": "0x40"} for x in readings]
    test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "AirgridEscalatedToLevel1", "exp_alerts": []},
                    {
                        "eval_time": "8m",
                        "alertname": "AirgridEscalatedToLevel1",
                        "exp_alerts": [_expected("AirgridEscalatedToLevel1")],
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "AirgridIntakeStalled",
                        "exp_alerts": [_expected("AirgridIntakeStalled")],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "restart_test.yml"
    path.write_text(yaml.safe_dump(test))
    assert shutil.which("promtool"), "promtool missing: run scripts/ensure_prometheus.sh"
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
