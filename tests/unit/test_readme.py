"""The README documents every setting and both commands it promises."""

from __future__ import annotations

from pathlib import Path

from airgrid.config.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [n for n in Settings.model_fields if f"`AIRGRID_{n.upper()}`" not in README]
    assert missing == []


def test_the_two_commands_exist() -> None:
    root = Path(__file__).resolve().parents[2]
    for script in ("scripts/run.sh", "scripts/test.sh"):
        assert f"bash {script}" in README
        assert (root / script).is_file()
    assert "scripts/test.sh" in (root / ".ci" / "run").read_text()
