"""What a replay puts in history: features, scores, spectra that keep their peaks, transitions
with the raw windows behind them, and a JSON summary on the last line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdm.cli import main
from pdm.config import pipeline_from_flags
from pdm.history import open_store
from pdm.history.provenance import load_capture
from pdm.history.recorder import Recorder, decimate_peak
from pdm.history.records import Capture, StateChange
from pdm.processing import FeatureStream
from pdm.scoring.runtime import Model
from pdm.sources.base import Chunk

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "fixtures"
PIPELINE = REPO / "pipelines" / "demo.toml"


def test_peak_hold_decimation_keeps_a_line_between_stored_lines() -> None:
    amp = np.zeros((1, 4097))
    amp[0, 1234] = 0.7  # a bearing line that falls inside a merged band
    vals, factor = decimate_peak(amp, 800)
    assert factor == 6 and vals.shape == (1, 683)
    assert vals[0, 1234 // 6] == pytest.approx(0.7) and vals.sum() == pytest.approx(0.7)


def _peak_reference(amp: np.ndarray, lines: int) -> tuple[np.ndarray, int]:
    """The plain definition: pad with zeros to a whole number of lines, max over each line."""
    bins = amp.shape[-1]
    factor = max(1, -(-bins // lines))
    pad = (-bins) % factor
    padded = np.concatenate([amp, np.zeros((*amp.shape[:-1], pad))], axis=-1)
    return padded.reshape(*amp.shape[:-1], -1, factor).max(axis=-1).astype(np.float32), factor


@pytest.mark.parametrize(
    ("shape", "lines"),
    [((6, 8193), 800), ((3, 4097), 800), ((2, 65537), 800), ((6, 500), 800), ((1, 801), 800),
     ((6, 1000), 10), ((4, 8193), 7), ((2, 1600), 800)],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_peak_hold_decimation_is_the_plain_definition_bit_for_bit(
    shape: tuple[int, int], lines: int, dtype: type
) -> None:
    """Strided passes (small factors) or a reduction (large ones), a last partial line and
    NaN included: the stored bytes are those of the plain definition."""
    amp = np.abs(np.random.default_rng(lines).normal(size=shape)).astype(dtype)
    amp[0, 3] = np.nan
    amp[-1, -1] = np.nan
    got, factor = decimate_peak(amp, lines)
    want, want_factor = _peak_reference(amp, lines)
    assert factor == want_factor and got.dtype == np.float32 and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def test_stored_spectrum_reads_a_sine_at_its_amplitude_and_frequency() -> None:
    fs, n, f, a = 25600.0, 8192, 1000.0, 0.25  # 1000 Hz is bin 320: bin-centred
    pl = pipeline_from_flags(fs=fs, columns=["x_g"], rpm=1480, window=n, overlap=0.0)
    pl = pl.model_copy(update={"history": pl.history.model_copy(update={"spectra_every_s": 0.0})})
    t = np.arange(2 * n) / fs
    stream = FeatureStream(pl, fs, batch=1)
    wins = list(stream.feed([Chunk((a * np.sin(2 * np.pi * f * t))[:, None], fs, 0.0, ("x_g",))]))
    spectra = [r for r in Recorder(pl).records(wins[:1]) if r.kind == "spectra"]
    power = next(s for s in spectra if s.type == "power")
    assert power.unit == "g" and power.df_hz == pytest.approx(fs / n * 6)
    k = int(np.argmax(power.values))
    assert power.freqs_hz[k] <= f < power.freqs_hz[k] + power.df_hz
    assert float(power.values[k]) == pytest.approx(a, rel=1e-3)
    env = next(s for s in spectra if s.type == "envelope")
    assert env.freqs_hz[-1] <= pl.history.envelope_max_hz + env.df_hz


def test_spectra_are_stored_first_then_on_a_grid_offset_per_machine() -> None:
    """The first valid window's spectra, then one set per interval at the first window at or
    after each grid point, the grid offset by the machine id: machines started together do not
    store theirs in the same round."""
    fs, n = 25600.0, 2560  # windows of 0.1 s, no overlap
    base = pipeline_from_flags(fs=fs, columns=["x_g"], rpm=1480, window=n, overlap=0.0)
    every = 1.0
    t = np.arange(round(12 * fs)) / fs
    x = (0.1 * np.sin(2 * np.pi * 100.0 * t))[:, None]
    times: dict[str, list[int]] = {}
    for machine in ("pump-1", "pump-2", "fan-7"):
        pl = base.model_copy(
            update={
                "machine": base.machine.model_copy(update={"id": machine}),
                "history": base.history.model_copy(update={"spectra_every_s": every}),
            }
        )
        wins = list(FeatureStream(pl, fs, batch=8).feed([Chunk(x, fs, 1000.0, ("x_g",))]))
        rec = Recorder(pl)
        spectra = [r for r in rec.records(wins) if r.kind == "spectra" and r.type == "power"]
        times[machine] = [s.t_ns for s in spectra]
    hop_ns = round(n / fs * 1e9)
    every_ns = round(every * 1e9)
    phases = set()
    for machine, ts in times.items():
        assert ts[0] == 1000 * 10**9  # the first window's
        assert 11 <= len(ts) <= 13
        later = ts[1:]
        offsets = {(t_ns % every_ns) // hop_ns for t_ns in later}
        assert len(offsets) == 1, (machine, offsets)  # always the window after the same point
        gaps = np.diff(later)
        assert ((gaps >= every_ns - hop_ns) & (gaps <= every_ns + hop_ns)).all()
        phases |= offsets
    assert len(phases) > 1  # not all machines at the same point of the interval


def _replay(tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "replay",
            str(FIX / "outer_race.csv.gz"),
            "-p",
            str(PIPELINE),
            "--data-dir",
            str(tmp_path / "data"),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_replay_records_the_transition_with_the_windows_behind_it(tmp_path: Path) -> None:
    code, summary, err = _replay(tmp_path, "--capture", "3")
    assert code == 0, err
    assert summary["windows"] == 147 and summary["all_delivered"]
    for key in ("windows", "rows_written", "rows_spooled", "rows_dropped"):
        assert key in summary
    # The outer-race fixture turns faulty at 3.75 s: window 47 is the first past it, and
    # with the demo's on-delay (5 of the last 8 windows) the alarm rises at window 51.
    # The simulated fault is severe (score ~4000): straight to danger. The score trips only
    # with a second kind of evidence in the same windows — the diagnosis engine, which names
    # the outer race from window 51 on (a new segment starts at the onset and needs four
    # windows of its own) — so the trip follows at window 55, when 5 of the last 8 windows
    # have both.
    tr, trip = summary["transitions"]
    assert (tr["from"], tr["to"]) == ("ok", "danger") and tr["window"] == 51
    assert tr["t"].startswith("2026-01-01T00:00:04.08") and "5 of the last 8" in tr["reason"]
    assert (trip["from"], trip["to"], trip["window"]) == ("danger", "trip", 55)
    assert "corroborated by diagnosis bearing_outer_race" in trip["reason"]
    assert summary["alarm_state"] == "trip"
    data_dir = tmp_path / "data"
    model = Model.load(REPO / "models" / "demo-pump")
    with open_store(summary["store"]) as st:
        assert st.count("features", "demo-pump") == 147 * 2
        assert st.count("scores", "demo-pump") == 147
        # The first window's, 2 ch x 2 kinds: demo-pump's next due time (every 60 s, on its
        # grid) falls after these 11.8 s.
        assert st.count("spectra", "demo-pump") == 2 * 2
        log = st.log("demo-pump")
        status = st.latest_status("demo-pump")[0]
    changes = {r.new: r for r in log if isinstance(r, StateChange)}
    state = changes["danger"]
    caps = {r.id: r for r in log if isinstance(r, Capture)}
    assert state.capture == tr["capture"] and state.capture in caps and len(caps) == 3
    assert changes["trip"].capture == trip["capture"] and trip["capture"] in caps
    on_demand = next(c for c in caps.values() if c.id not in (state.capture, trip["capture"]))
    assert "on demand" in on_demand.reason and summary["captures"] == 3
    assert [w["index"] for w in load_capture(data_dir, on_demand)[1]["windows"]] == [2, 3]
    cap = caps[state.capture]
    assert cap.model == model.version
    assert json.loads(cap.thresholds) == {"alert": 1.0, "danger": model.danger}
    windows, meta = load_capture(data_dir, cap)
    assert windows.shape == (2, 2, 8192) and windows.dtype == np.float32  # capture_windows = 2
    assert [w["index"] for w in meta["windows"]] == [50, 51]
    assert meta["context"]["score"] == pytest.approx(state.score)
    # The captured samples are the recording's: window 51 starts at sample 51·2048.
    raw = np.loadtxt(
        FIX / "outer_race.csv.gz",
        delimiter=",",
        comments="#",
        skiprows=3,
        max_rows=51 * 2048 + 8192,
    )
    np.testing.assert_allclose(windows[1].T, raw[51 * 2048 :], rtol=1e-6)
    assert status.state == "danger" and status.alarm_state == "trip"
    assert status.model == model.version and math.isfinite(status.score)


def test_replay_without_a_model_writes_features_only(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "replay",
            str(FIX / "healthy.csv.gz"),
            "--fs",
            "25600",
            "--columns",
            "x_g,y_g",
            "--rpm",
            "1480",
            "--store",
            f"sqlite:///{tmp_path}/h.db",
            "--data-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    assert summary["transitions"] == [] and summary["rows_dropped"] == 0
    with open_store(f"sqlite:///{tmp_path}/h.db") as st:
        assert st.count("scores") == 0 and st.count("features") == summary["windows"] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "0"], "--speed: must be > 0"),
        (["--capture", "x"], "--capture: window indices"),
        (["--model", "{tmp}/broken"], "model.json"),
    ],
)
def test_replay_option_errors_are_one_line(
    tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{ not json")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(
        [
            "replay",
            str(FIX / "healthy.csv.gz"),
            "-p",
            str(PIPELINE),
            "--data-dir",
            str(tmp_path),
            *args,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("influx1://admin:hunter2@db:8086/pdm", "no password in the URL"),
        ("influx3://db:8086", "unknown store"),
        ("influx2://db:8086?org=o", "?bucket= is required"),
    ],
)
def test_pipeline_history_store_is_checked_when_loaded_and_never_echoes_a_password(
    tmp_path: Path, capsys, store: str, message: str
) -> None:
    text = PIPELINE.read_text().replace('path = "../models/demo-pump"', 'path = "x"')
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(text + f'\n[history]\nstore = "{store}"\n')
    assert main(["check", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert f"{pipeline}:" in err and "history.store" in err and message in err
    assert "hunter2" not in err and len(err.strip().splitlines()) == 1


def test_check_shows_where_history_goes(capsys) -> None:
    assert main(["check", str(PIPELINE)]) == 0
    assert "history   sqlite:///<data dir>/history.db (embedded default); keeps 90 days" in (
        capsys.readouterr().out
    )


def test_unusable_data_dir_or_sqlite_folder_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    base = ["replay", str(FIX / "healthy.csv.gz"), "-p", str(PIPELINE)]
    assert main([*base, "--data-dir", str(blocker / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pdm-edge: error: ") and str(blocker / "data") in err
    assert len(err.splitlines()) == 1
    # The same with the store elsewhere: the data dir itself is refused.
    assert (
        main([*base, "--data-dir", str(blocker / "data"), "--store", f"sqlite:///{tmp_path}/h.db"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"pdm-edge: error: --data-dir {blocker / 'data'}: ")
    store = f"sqlite:///{blocker}/history.db"
    assert main([*base, "--data-dir", str(tmp_path / "d"), "--store", store]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and len(err.splitlines()) == 1 and "Traceback" not in err
