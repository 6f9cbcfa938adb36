"""Gateway settings (AIRGRID_GATEWAY_*) and station profiles; the worker's settings are not
disturbed by them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgrid.config.settings import SettingsError, load_settings
from airgrid.gateway.settings import GatewaySettings, build_profiles, load_gateway_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AIRGRID_"):
            monkeypatch.delenv(name)


def error_of() -> str:
    with pytest.raises(SettingsError) as err:
        load_gateway_settings()
    return str(err.value)


def test_defaults() -> None:
    gs = load_gateway_settings()
    assert isinstance(gs, GatewaySettings)
    assert (gs.listen_host, gs.listen_port, gs.web_port) == ("127.0.0.1", 9212, 6067)
    assert (gs.crc, gs.time_label, gs.reading_cns, gs.minute_interval_seconds) == (
        "any",
        "start",
        ("2051",),
        600,
    )
    assert gs.max_frame_bytes == 1024 and gs.units == {}


def test_gateway_variables_leave_the_worker_settings_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGRID_GATEWAY_LISTEN", "0.0.0.0:9300")
    monkeypatch.setenv("AIRGRID_GATEWAY_UNITS", "a21005=ug/m3")
    monkeypatch.setenv("AIRGRID_WEB_PORT", "6100")
    worker = load_settings()
    assert worker.web_port == 6100
    gs = load_gateway_settings()
    assert (gs.listen_host, gs.listen_port, gs.units) == ("0.0.0.0", 9300, {"a21005": "ug/m3"})


def test_lists_and_maps_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGRID_GATEWAY_READING_CNS", "2011, 2061")
    monkeypatch.setenv("AIRGRID_GATEWAY_UNITS", "a21026=ppb,a05024=ppb")
    gs = load_gateway_settings()
    assert gs.reading_cns == ("2011", "2061") and gs.units == {"a21026": "ppb", "a05024": "ppb"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "AIRGRID_GATEWAY_LISTEN",
            "9212",
            "AIRGRID_GATEWAY_LISTEN: must be host:port (e.g. 0.0.0.0:9212) (got '9212')",
        ),
        ("AIRGRID_GATEWAY_LISTEN", "h:99999", "must be host:port"),
        ("AIRGRID_GATEWAY_CRC", "crc32", "AIRGRID_GATEWAY_CRC: Input should be 'annex-a' or 'any'"),
        (
            "AIRGRID_GATEWAY_TIME_LABEL",
            "middle",
            "AIRGRID_GATEWAY_TIME_LABEL: Input should be 'start' or 'end'",
        ),
        (
            "AIRGRID_GATEWAY_MAX_FRAME_BYTES",
            "20000",
            "AIRGRID_GATEWAY_MAX_FRAME_BYTES: Input should be less than",
        ),
        (
            "AIRGRID_GATEWAY_READING_CNS",
            "2031",
            "AIRGRID_GATEWAY_READING_CNS: 2031: readings come from 2011, 2051, 2061",
        ),
        ("AIRGRID_GATEWAY_UNITS", "a21005", "must be code=unit pairs"),
        ("AIRGRID_GATEWAY_UNITS", "a34004=ppb", "particulate"),
        ("AIRGRID_GATEWAY_PROFILE_FILE", "/nonexistent.toml", "file /nonexistent.toml does not exist"),
        ("AIRGRID_GATEWAY_LISTN", "0.0.0.0:1", "AIRGRID_GATEWAY_LISTN: no such gateway setting"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    text = error_of()
    assert message in text and "\n" not in text and text.startswith("invalid setting: ")


PROFILES = """
[profiles.micro]
units = { a21026 = "ppb", a21005 = "ug/m3" }
minute_interval_seconds = 300
time_label = "end"
reading_cns = ["2011"]
timezone = "Asia/Urumqi"

[stations]
ST002 = "micro"
"""


def test_profiles_override_the_defaults_per_station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    monkeypatch.setenv("AIRGRID_GATEWAY_PROFILE_FILE", str(path))
    profiles = build_profiles(load_gateway_settings(), "Asia/Shanghai", {"ST001", "ST002"})
    default, micro = profiles.of("ST001"), profiles.of("ST002")
    assert (default.zone.key, default.time_label, default.minute_interval_s) == (
        "Asia/Shanghai",
        "start",
        600,
    )
    assert default.reading_cns == {"2051"} and default.factors["a21005"] == 1.0
    assert (micro.zone.key, micro.time_label, micro.minute_interval_s) == ("Asia/Urumqi", "end", 300)
    assert micro.reading_cns == {"2011"} and micro.factors["a21005"] == 0.001
    assert micro.factors["a21026"] == pytest.approx(64.066 / 24.45)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PROFILES.replace('ST002 = "micro"', 'ST002 = "macro"'), "not defined: macro"),
        (PROFILES.replace("ST002", "ST999"), "not in the grid directory: ST999"),
        (PROFILES.replace('"ppb"', '"kg"'), "not one of ug/m3"),
        (PROFILES.replace("Asia/Urumqi", "Mars/Base"), "unknown IANA time zone"),
        (PROFILES.replace("time_label", "time_lable"), "time_lable: Extra inputs are not permitted"),
        ("[profiles", "cannot read"),
    ],
)
def test_a_bad_profiles_file_names_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    monkeypatch.setenv("AIRGRID_GATEWAY_PROFILE_FILE", str(path))
    with pytest.raises(SettingsError) as err:
        build_profiles(load_gateway_settings(), "Asia/Shanghai", {"ST001", "ST002"})
    assert message in str(err.value) and "AIRGRID_GATEWAY_PROFILE_FILE" in str(err.value)


def test_the_command_stops_on_a_wrong_setting_with_one_line() -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRGRID_")}
    env["AIRGRID_GATEWAY_CRC"] = "crc32"
    done = subprocess.run(
        [sys.executable, "-m", "airgrid", "gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "airgrid: invalid setting: AIRGRID_GATEWAY_CRC: Input should be 'annex-a' or 'any' (got 'crc32')"
    ]
