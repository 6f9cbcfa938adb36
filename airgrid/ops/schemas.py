"""JSON Schemas of the public messages, generated from the pydantic models (the topic contracts)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import DeadLetter
from airgrid.models.feedback import Feedback, FeedbackRejected
from airgrid.models.readings import Reading
from airgrid.models.regions import DispatchDecision, RegionHour
from airgrid.models.tasks import TaskEvent

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://airgrid.invalid/schemas/"

# name -> (model, topic, mode): inputs are validated as airgrid reads them; outputs are described
# as airgrid writes them (every field present).

CONTRACTS: dict[str, tuple[type[BaseModel], str, str]] = {
    "reading": (Reading, "readings", "validation"),
    "alarm-event": (AlarmEvent, "alarms", "serialization"),
    "task-event": (TaskEvent, "task-events", "serialization"),
    "feedback": (Feedback, "feedback", "validation"),
    "feedback-rejected": (FeedbackRejected, "feedback.rejected", "serialization"),
    "dead-letter": (DeadLetter, "readings.dlq", "serialization"),
    "region-hour": (RegionHour, "regions", "serialization"),
    "dispatch-decision": (DispatchDecision, "regions", "serialization"),
}


def _warning_model() -> type[BaseModel] | None:
    """The weather-warning message, once a models module defines it."""
    try:
        module = importlib.import_module("airgrid.models.warnings")
    except ImportError:
        return None
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__ == module.__name__
            and "schema_version" in value.model_fields
        ):
            return value
    return None


def contracts() -> dict[str, tuple[type[BaseModel], str, str]]:
    out = dict(CONTRACTS)
    warning = _warning_model()
    if warning is not None:
        out["warning"] = (warning, "warnings", "validation")
    return out


def schema_of(name: str) -> dict[str, Any]:
    model, topic, mode = contracts()[name]
    body = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    return {
        "$schema": DIALECT,
        "$id": f"{BASE_ID}{name}.schema.json",
        "x-airgrid-topic": topic,
        **body,
    }


def render(name: str) -> str:
    return json.dumps(schema_of(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(out: Path) -> list[Path]:
    """Write one ``<name>.schema.json`` per public message; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in contracts():
        path = out / f"{name}.schema.json"
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


def drift(committed: Path) -> list[str]:
    """Names whose committed schema differs from the models (or is missing, or is extra)."""
    problems = []
    names = contracts()
    for name in names:
        path = committed / f"{name}.schema.json"
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != render(name):
            problems.append(f"{path}: differs from the model {names[name][0].__name__}")
    for path in sorted(committed.glob("*.schema.json")):
        if path.name.removesuffix(".schema.json") not in names:
            problems.append(f"{path}: no model of that name")
    return problems
