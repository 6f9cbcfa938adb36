"""The committed JSON Schemas (schemas/) are exactly what the models generate, and they accept
real messages and refuse broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from airgrid.cli import run as airgrid
from airgrid.ops import schemas
from tests.helpers import REPO
from tests.sql_support import letters, week_story

COMMITTED = REPO / "schemas"


def test_committed_schemas_match_the_models() -> None:
    problems = schemas.drift(COMMITTED)
    assert not problems, "schemas drifted; run `airgrid schemas --out schemas`:\n" + "\n".join(problems)


def test_every_public_message_has_a_schema() -> None:
    assert {
        "reading",
        "alarm-event",
        "task-event",
        "feedback",
        "feedback-rejected",
        "dead-letter",
    } <= set(schemas.contracts())


def test_export_and_check_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["schemas", "--out", str(tmp_path)]) == 0
    assert airgrid(["schemas", "--out", str(tmp_path), "--check"]) == 0
    path = tmp_path / "task-event.schema.json"
    doc = json.loads(path.read_text())
    doc["properties"].pop("version")
    path.write_text(json.dumps(doc))
    assert airgrid(["schemas", "--out", str(tmp_path), "--check"]) == 1
    assert "task-event.schema.json: differs" in capsys.readouterr().out


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((COMMITTED / f"{name}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_schemas_accept_what_airgrid_writes_and_refuse_the_rest() -> None:
    story = week_story()
    events = _validator("task-event")
    for e in story.events:
        events.validate(json.loads(e.model_dump_json()))
    for a in story.alarms:
        _validator("alarm-event").validate(json.loads(a.model_dump_json()))
    for f in story.feedback:
        _validator("feedback").validate(json.loads(f.model_dump_json()))
    for x in letters():
        name = "dead-letter" if x.topic == "readings.dlq" else "feedback-rejected"
        _validator(name).validate(json.loads(x.message.model_dump_json()))
    bad = json.loads(story.events[0].model_dump_json())
    assert not list(events.iter_errors(bad)) and bad["type"] == "dispatched"
    for field, value in (("type", "exploded"), ("version", 0), ("task_id", "nope"), ("extra", 1)):
        broken = {**bad, field: value}
        assert list(events.iter_errors(broken)), field
