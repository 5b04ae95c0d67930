"""The pipeline's [alarms] table: defaults that resolve from the windowing, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdm.alarms.rules import rules_from
from pdm.config import load_pipeline
from pdm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEMO = (
    (REPO / "pipelines" / "demo.toml")
    .read_text()
    .replace('path = "../models/demo-pump"', 'path = "none"')
    .split("\n[alarms]")[0]  # the demo's own [alarms] (its score trip): each test writes its own
)


def _load(tmp_path: Path, alarms: str, text: str = DEMO):
    p = tmp_path / "p.toml"
    p.write_text(text + "\n[alarms]\n" + alarms + "\n")
    return load_pipeline(p)


def test_on_delay_resolves_from_the_overlap(tmp_path: Path) -> None:
    r = rules_from(_load(tmp_path, ""))
    assert (r.on_windows, r.of_windows) == (5, 8)  # 75 %: a sample is in 4 windows
    half = DEMO.replace("overlap = 0.75", "overlap = 0.5")
    r = rules_from(_load(tmp_path, "", half))
    assert (r.on_windows, r.of_windows) == (3, 6)


def test_the_score_trips_only_when_a_pipeline_opts_in_and_then_only_corroborated(
    tmp_path: Path,
) -> None:
    r = rules_from(_load(tmp_path, ""))
    assert r.score_trip is None  # the default: the score never trips
    assert r.trip_requires == ("iso", "limit", "diagnosis") and r.trip_diagnosis_confidence == 0.7
    r = rules_from(_load(tmp_path, 'score_trip = 10.0\ntrip_requires = ["diagnosis"]'))
    assert (r.score_trip, r.trip_requires) == (10.0, ("diagnosis",))
    r = rules_from(_load(tmp_path, 'score_trip = 10.0\ntrip_requires = ["none"]'))
    assert r.trip_requires == ()  # alone: explicit, and check says it is not recommended
    # the demo pipeline opts in, corroborated
    demo = rules_from(load_pipeline(REPO / "pipelines" / "demo.toml"))
    assert demo.score_trip == 10.0 and set(demo.trip_requires) == {"iso", "limit", "diagnosis"}


def test_zero_and_none_turn_sources_off(tmp_path: Path) -> None:
    r = rules_from(_load(tmp_path, 'score_trip = 0.0\niso_trip = 0.0\niso_alert_zone = "none"'))
    assert r.score_trip is None and r.iso_trip is None and r.iso_alert_zone is None


@pytest.mark.parametrize(
    ("alarms", "message"),
    [
        ("on_windows = 4", "alarms.on_windows: must exceed 4, the windows one sample falls in"),
        ("score_trip = 0.5", "alarms.score_trip: must be above the alert threshold 1.0"),
        (
            '[[alarms.limits]]\nfeature = "env_bpof_g"\nalert = 0.2',
            "alarms.limits[0].feature: not a feature of this pipeline, did you mean 'env_bpfo_g'?",
        ),
        (
            '[[alarms.limits]]\nfeature = "env_bpfo_g"\nchannel = "z_g"\nalert = 0.2',
            "alarms.limits[0].channel: not a channel of this pipeline (x_g, y_g)",
        ),
        (
            '[[alarms.limits]]\nfeature = "env_bpfo_g"\nalert = 0.5\ndanger = 0.2',
            "levels must increase",
        ),
        ('relay = "modbus://plc:502?coil=x"', "alarms.relay: relay URL"),
        ('relay = "http://plc"', "alarms.relay: must start with modbus://, gpio:// or log:"),
        ('webhooks = [{ url = "ftp://x" }]', "alarms.webhooks[0].url: must be an http"),
        ('trip_requires = ["none", "iso"]', 'alarms.trip_requires: "none" (the score trips alone)'),
        (
            'trip_requires = ["iso", "iso"]',
            "alarms.trip_requires: each kind of evidence at most once",
        ),
        ("trip_requires = []", "alarms.trip_requires"),
        ('trip_requires = ["vibes"]', "alarms.trip_requires[0]"),
        ("trip_diagnosis_confidence = 0.3", "alarms.trip_diagnosis_confidence"),
    ],
)
def test_bad_alarm_settings_are_one_line_errors(tmp_path: Path, alarms: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, alarms)
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith(str(tmp_path / "p.toml"))


@pytest.mark.relay
def test_loading_a_pipeline_never_touches_its_relay(tmp_path: Path, modbus_server) -> None:
    """Checking a file must not stop a machine: the relay URL is parsed, never connected."""
    modbus_server.set_coil(0, True)
    pl = _load(tmp_path, f'relay = "modbus://127.0.0.1:{modbus_server.port}?coil=0"')
    import gc

    del pl
    gc.collect()
    assert modbus_server.coil(0) is True
