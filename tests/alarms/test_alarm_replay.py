"""Replays of simulated recordings with exact alarm expectations.

Each expectation is computed independently of the state machine: from the
per-window scores of ``pdm-edge score`` and the on-delay rule (N of the last
M windows at or above a level), so the test checks the integration — health,
debouncing, latching, the replay's bookkeeping — against the plain rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdm.config import load_pipeline
from pdm.history import open_store
from pdm.history.records import ActionResult, StateChange
from pdm.scoring.runtime import Model
from pdm.sources.simulator import FaultSpec, SimSpec, TransientSpec, write_recording

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipelines" / "demo.toml"
FIX = REPO / "fixtures"
HEALTHY = FaultSpec("unbalance", 0.05)  # the demo machine's own running (as the fixtures)


def _cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pdm.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _replay(recording: Path, data: Path, *extra: str) -> dict[str, Any]:
    code, out, err = _cli(
        "replay", str(recording), "-p", str(PIPELINE), "--data-dir", str(data), *extra
    )
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _scores(recording: Path) -> list[float]:
    code, out, err = _cli("score", str(recording), "-p", str(PIPELINE))
    assert code == 0, err
    return [json.loads(line)["score"] for line in out.splitlines()]


def _first_n_of_m(scores: list[float], threshold: float, n: int, m: int, start: int = 0) -> int:
    """The first window from ``start`` where n of the last m scores reach ``threshold``."""
    for i in range(start, len(scores)):
        if sum(s >= threshold for s in scores[max(0, i - m + 1) : i + 1]) >= n:
            return i
    raise AssertionError(f"no window reaches {threshold}")


@pytest.fixture(scope="module")
def growing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bearing outer-race defect from 2 s, growing linearly to 0.4 g over 16 s (0.15 g until
    2026-12-07: the demo model regenerated with the least alert and danger, docs/models.md,
    puts danger at 5.5, which 0.15 g reached on no window)."""
    path = tmp_path_factory.mktemp("rec") / "growing.csv.gz"
    spec = SimSpec(
        duration_s=20.0,
        lsb_g=0.002,
        faults=(HEALTHY, FaultSpec("bpfo", 0.4, onset_s=2.0, ramp_s=16.0)),
        seed=201,
    )
    write_recording(path, spec)
    return path


def test_a_growing_bearing_fault_goes_ok_alert_danger_trip_at_the_expected_windows(
    growing: Path, tmp_path: Path
) -> None:
    pl = load_pipeline(PIPELINE)
    model = Model.load(REPO / "models" / "demo-pump")
    scores = _scores(growing)
    n, m = 5, 8  # the demo pipeline's resolved on-delay (75 % overlap: a sample is in 4 windows)
    alert = _first_n_of_m(scores, 1.0, n, m)
    danger = _first_n_of_m(scores, model.danger, n, m, alert + 1)
    trip = _first_n_of_m(scores, pl.alarms.score_trip or 10.0, n, m, danger + 1)
    assert alert < danger < trip  # the recording was made to cross the levels one by one

    summary = _replay(growing, tmp_path)
    got = [(t["window"], t["from"], t["to"]) for t in summary["transitions"]]
    assert got == [(alert, "ok", "alert"), (danger, "alert", "danger"), (trip, "danger", "trip")]
    assert summary["alarm_state"] == "trip" and summary["captures"] == 3

    with open_store(summary["store"]) as st:
        log = st.log("demo-pump", limit=1000)
    changes = [r for r in log if isinstance(r, StateChange)]
    assert [(c.old, c.new) for c in reversed(changes)] == [
        ("ok", "alert"),
        ("alert", "danger"),
        ("danger", "trip"),
    ]
    assert all(c.capture for c in changes)  # each with the windows behind it
    relay = [r for r in log if isinstance(r, ActionResult) and r.action == "relay"]
    # Permissive at start, dropped on the trip (dry run: a log relay), dropped again at the end.
    assert [("drop" in r.detail, r.outcome) for r in reversed(relay)][:2] == [
        (False, "ok"),
        (True, "ok"),
    ]


def test_sensor_faults_give_sensor_fault_and_no_alarm(tmp_path: Path) -> None:
    # The fixture: flatline 3–4 s, clipping at ±16 g 6–7 s (with 40 g knocks), zeros 9–10 s.
    summary = _replay(FIX / "sensor_faults.csv.gz", tmp_path)
    got = [
        (t.get("sensor"), t["from"], t["to"], t["reason"].split(":")[1].strip())
        for t in summary["transitions"]
        if t["to"] == "sensor_fault"
    ]
    assert got == [
        ("motor_de", "ok", "sensor_fault", "flatline"),
        ("motor_de", "ok", "sensor_fault", "clipping"),
        ("motor_de", "ok", "sensor_fault", "flatline"),  # zeros: flatline and dropout
    ]
    assert "dropout" in summary["transitions"][-2]["reason"]
    assert {t["to"] for t in summary["transitions"]} == {"sensor_fault", "ok"}
    assert summary["alarm_state"] == "ok"  # never alert, danger or trip
    # …although the anomaly score went far beyond the trip level while the sensor was broken.
    assert max(s for s in _scores(FIX / "sensor_faults.csv.gz") if s is not None) > 10


def test_a_single_knock_raises_nothing(tmp_path: Path) -> None:
    path = tmp_path / "knock.csv.gz"
    spec = SimSpec(
        duration_s=8.0,
        lsb_g=0.002,
        faults=(HEALTHY,),
        transients=(TransientSpec(4.0, 8.0),),
        seed=202,
    )
    write_recording(path, spec)
    scores = _scores(path)
    assert sum(s >= 10 for s in scores) >= 3  # the knock shows in the windows around it…
    summary = _replay(path, tmp_path / "data")
    assert summary["transitions"] == [] and summary["alarm_state"] == "ok"  # …and trips nothing


def test_ack_of_a_latch_that_is_not_clear_is_recorded_and_keeps_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Live actions (the demo's relay is a log line): the machine's own state is kept.
    summary = _replay(FIX / "outer_race.csv.gz", data, "--actions", "live")
    assert summary["alarm_state"] == "trip"
    # Still faulty at the end of the recording: acknowledged, but the latch stays.
    code, out, err = _cli(
        "ack", "demo-pump", "--by", "ana", "--comment", "seen", "--data-dir", str(data)
    )
    assert code == 0 and "acknowledged by ana; it ends when" in out
    code, out, err = _cli("ack", "nope", "--by", "ana", "--data-dir", str(data))
    assert code == 2 and "no alarm state for machine 'nope' (known: demo-pump)" in err
    with open_store(summary["store"]) as st:
        events = [e for e in st.log("demo-pump", kinds=("events",)) if e.type == "acknowledge"]
    assert events and "ana" in events[0].message and events[0].detail == "seen"


def test_a_gap_in_the_recording_is_a_sensor_fault(tmp_path: Path) -> None:
    import numpy as np

    fs = 25600
    t = np.arange(6 * fs) / fs
    t[3 * fs :] += 1.0  # one second of samples never arrived
    rng = np.random.default_rng(7)
    x = 0.05 * np.sin(2 * np.pi * 24.67 * t) + 0.02 * rng.standard_normal((2, t.size))
    path = tmp_path / "gap.csv"
    with path.open("w") as f:
        f.write("time,x_g,y_g\n")
        np.savetxt(f, np.column_stack([t, x.T]), delimiter=",", fmt="%.6f")
    summary = _replay(path, tmp_path / "data")
    gaps = [tr for tr in summary["transitions"] if tr["to"] == "sensor_fault"]
    assert len(gaps) == 1 and gaps[0]["reason"].startswith("gap: ")
    assert gaps[0]["t"].startswith("1970-01-01T00:00:04") and summary["alarm_state"] == "ok"


def test_a_dry_run_replay_never_touches_the_machines_live_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _replay(FIX / "outer_race.csv.gz", data, "--actions", "live")  # the machine tripped
    summary = _replay(FIX / "healthy.csv.gz", data)  # a commissioning re-analysis
    assert summary["alarm_state"] == "ok"
    code, out, _ = _cli("ack", "demo-pump", "--by", "ana", "--data-dir", str(data))
    assert code == 0 and "trip acknowledged" in out  # the live trip is still there
    # Live again: continues the stored trip (acknowledged, and now clear → ok).
    summary = _replay(FIX / "healthy.csv.gz", data, "--actions", "live")
    assert [(t["from"], t["to"]) for t in summary["transitions"]] == [("trip", "ok")]
