"""A real Prometheus (Debian's package) scrapes a running worker that has seen readings, alarms,
tasks, reminders, escalations, feedback and dead letters, and a running gateway that has seen
stations' frames, good and refused; every PromQL expression of the shipped Grafana dashboard then
returns data."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.demo import wait_http
from airgrid.domain.directory import Directory
from airgrid.gateway.frame import encode_frame
from airgrid.kafka.local import free_port
from airgrid.models.readings import Reading
from airgrid.sim.hj212 import data_frame, qn_of
from tests.helpers import Collector, Worker, produce, short_policy, worker_env
from tests.integration.gateway_support import GatewayProcess, Station, gateway_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "airgrid.json"
# Grafana's variables, as a person looking at the dashboard right after the activity would set them
VARIABLES = {
    "$__rate_interval": "20s",
    "$__range": "5m",
    "$alarm_kind": ".*",
    "$instance": ".*",
    "$grid_l1": ".*",
    "$gateway": ".*",
}


def dashboard_exprs() -> list[tuple[str, str]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in walk(doc["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def reading(station: str, at: datetime, pm25: float) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "station_id": station,
            "observed_at": at.isoformat(),
            "interval_s": 600,
            "values": {"pm25": pm25, "pm10": pm25 * 1.5},
        }
    )


def feedback(fid: str, task: str, worker: str, action: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "feedback_id": fid,
            "task_id": task,
            "worker_id": worker,
            "action": action,
            "at": datetime.now(UTC).isoformat(),
            **extra,
        }
    )


async def test_every_dashboard_expression_returns_data(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: run scripts/ensure_prometheus.sh"
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(short_policy(tmp_path / "p.toml", 3, 1.5, 2)),
    )
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    gateway = GatewayProcess(gateway_env(env), tmp_path / "gateway.log")
    gateway.start()
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: airgrid\n    static_configs: [{{targets: ['127.0.0.1:{env['AIRGRID_WEB_PORT']}']}}]\n"
        "  - job_name: airgrid-gateway\n"
        f"    static_configs: [{{targets: ['{gateway.env['AIRGRID_GATEWAY_WEB']}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert await asyncio.to_thread(wait_http, base + "/-/ready", 60), "prometheus not ready"
        hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
        msgs: list[tuple[bytes | None, bytes]] = [(b"ST001", b"{broken")]
        for i in range(1, 7):
            at = hour + timedelta(minutes=10 * i)
            msgs += [(b"ST001", reading("ST001", at, 120.0)), (b"ST003", reading("ST003", at, 125.0))]
        async with Collector(kafka_bootstrap, [p + "task-events"]) as seen:
            await produce(kafka_bootstrap, p + "readings", msgs)
            first = await seen.wait_for(
                p + "task-events",
                lambda e: e["type"] == "dispatched" and e["station_id"] == "ST001",
                30,
                "a dispatched task",
            )
            l3, l2 = first["lineage"]["l3"], first["lineage"]["l2"]
            tid = first["task_id"]
            await produce(
                kafka_bootstrap,
                p + "feedback",
                [
                    (b"k", feedback("f1", tid, f"W-{l3}-1", "acknowledge")),
                    (
                        b"k",
                        feedback(
                            "f2",
                            tid,
                            f"W-{l3}-1",
                            "submit",
                            findings={"source_found": True, "source_type": "coal_burning"},
                        ),
                    ),
                    (b"k", feedback("f3", tid, f"W-{l2}", "approve")),
                ],
            )
            # the other task is left alone: reminded, then escalated
            await seen.wait_for(p + "task-events", lambda e: e["type"] == "escalated", 30, "an escalation")
        await stations_talk(gateway)
        await asyncio.sleep(6)  # a few more scrapes after the activity
        empty = [(title, expr) for title, expr in dashboard_exprs() if not query(base, expr)]
        assert empty == [], f"dashboard expressions without data: {empty}"
        assert len(dashboard_exprs()) >= 15
    finally:
        prom.terminate()
        prom.wait(20)
        gateway.stop()
        worker.stop()


async def stations_talk(gateway: GatewayProcess) -> None:
    """A station of the shipped directory sends a minute's data frame (published, answered) and a
    broken one (refused), then hangs up; an impostor is refused too."""
    st = Directory.load(DATA_DIR / "grids.json").stations["ST002"]
    assert st.mn and st.pw
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    reading = Reading(station_id="ST002", observed_at=at, interval_s=600, values={"pm25": 30.0})
    station = await Station.connect(gateway.port)
    qn = qn_of(at, 1)
    await station.send(data_frame(st.mn, st.pw.get_secret_value(), reading, qn))
    await station.answer(qn)
    await station.send(data_frame(st.mn, "wrong1", reading, "2"))
    await station.send(encode_frame(b"QN=3;ST=22;CN=2051;MN=NOBODY;Flag=4;CP=&&&&", "modbus"))
    await asyncio.sleep(1)
    await station.close()
