"""The reliability auditor fails a run on an alarm that became no task, and on any refusal for an
internal error (issue 18), beside what it checked before."""

from __future__ import annotations

from typing import Any

from tests.reliability.auditor import audit


def alarm(station: str, n: int, kind: str = "opened", route: str = "grid") -> dict[str, Any]:
    aid = f"{station}:pm25_1h_exceedance:{n}"
    return {
        "event_id": f"{aid}:{kind}",
        "alarm_id": aid,
        "kind": kind,
        "rule_id": "pm25_1h_exceedance",
        "station_id": station,
        "value": 100.0,
        "route": route,
    }


def event(task: str, version: int, kind: str, alarm_id: str | None) -> dict[str, Any]:
    return {"task_id": task, "version": version, "type": kind, "level": 3, "alarm_id": alarm_id}


def test_every_opened_grid_alarm_must_become_or_join_a_task() -> None:
    alarms = [alarm("ST001", 1), alarm("ST001", 2), alarm("ST002", 1), alarm("ST003", 1, route="operations")]
    expected = {a["event_id"]: a for a in alarms}
    events = [
        event("T-ST001-1", 1, "dispatched", "ST001:pm25_1h_exceedance:1"),
        event("T-ST001-1", 2, "alarm_joined", "ST001:pm25_1h_exceedance:2"),
    ]
    result = audit(expected, alarms, events, set())
    assert result.untasked == ["ST002:pm25_1h_exceedance:1"] and not result.clean
    events.append(event("T-ST002-1", 1, "dispatched", "ST002:pm25_1h_exceedance:1"))
    assert audit(expected, alarms, events, set()).clean


def test_a_refusal_for_an_internal_error_fails_the_audit() -> None:
    refused = {"reason_code": "unknown_task", "reason": "no task T-X", "origin": None}
    internal = {"reason_code": "internal", "reason": "internal error: PartitionsMismatch", "origin": "a/0@1"}
    assert audit({}, [], [], set(), [refused]).clean
    result = audit({}, [], [], set(), [refused, internal])
    assert not result.clean and result.internal == ["a/0@1: internal error: PartitionsMismatch"]
    assert "internal 1" in result.explain()
