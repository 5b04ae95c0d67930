"""End-to-end tests of the ``pdm-edge`` command: the real CLI as a subprocess.

Each test runs ``python -m pdm.cli ...`` from the repository root and checks
what a user sees: stdout (JSON Lines or text), the stderr summary or the
one-line ``pdm-edge: error: ...`` message, and the exit status.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm.cli import main
from pdm.config import load_pipeline
from pdm.dsp.features import feature_names

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
PIPELINES = REPO / "pipelines"
DEMO_PIPELINE = PIPELINES / "demo.toml"
TIMEOUT_S = 60

# The numeric features a row of the demo pipeline carries (it has one band, "high").
DEMO_FEATURES = feature_names(["high"])
ORDER_AND_ENV = [n for n in feature_names() if n.startswith(("order_", "env_"))]


def run_cli(*args: object, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pdm.cli ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", *(str(a) for a in args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """The command and what it printed, for assertion messages."""
    return (
        f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n"
        f"--- stdout (head)\n{proc.stdout[:2000]}\n--- stderr\n{proc.stderr[-4000:]}"
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    return proc


def jsonl(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """stdout parsed as JSON Lines: every line one JSON object."""
    rows = []
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        rows.append(obj)
    return rows


def user_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert the user-error contract; return the message after the prefix."""
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, describe(proc)
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith("pdm-edge: error: "), describe(proc)
    return lines[0].removeprefix("pdm-edge: error: ")


_DEMO_ACQ = load_pipeline(REPO / "pipelines" / "demo.toml").acquisition
WINDOW, HOP = _DEMO_ACQ.window_samples, _DEMO_ACQ.hop_samples


def n_windows(n_samples: int, window: int, hop: int) -> int:
    return 0 if n_samples < window else (n_samples - window) // hop + 1


def by_channel(rows: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["channel"] == channel]


def truth(stem: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{stem}.truth.json").read_text())
    return data


def write_pipeline(path: Path, **replace: str) -> Path:
    """A copy of pipelines/demo.toml with whole lines ``key = ...`` replaced."""
    text = DEMO_PIPELINE.read_text()
    for key, new in replace.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", new, text)
        assert n == 1, f"{key} not found once in {DEMO_PIPELINE}"
    path.write_text(text)
    return path


def write_noise_csv(
    path: Path, n: int, *, seed: int = 0, comments: tuple[str, ...] = ()
) -> list[str]:
    """A two-channel CSV of small random numbers; returns its lines (without newlines)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 0.02, (n, 2))
    lines = [*comments, "x_g,y_g", *(f"{a:.5f},{b:.5f}" for a, b in data)]
    path.write_text("\n".join(lines) + "\n")
    return lines


# --------------------------------------------------------------------------- features


@pytest.fixture(scope="module")
def outer_race_rows() -> list[dict[str, Any]]:
    proc = ok(
        run_cli("features", "fixtures/outer_race.csv.gz", "--pipeline", "pipelines/demo.toml")
    )
    rows = jsonl(proc)
    summary = proc.stderr.strip().splitlines()
    assert len(summary) == 1, describe(proc)
    assert "outer_race.csv.gz" in summary[0] and "windows" in summary[0], describe(proc)
    return rows


def test_features_outer_race_json_lines(outer_race_rows: list[dict[str, Any]]) -> None:
    t = truth("outer_race")
    expected = n_windows(t["n_samples"], WINDOW, HOP)
    assert expected == math.floor((t["n_samples"] - WINDOW) / HOP) + 1
    rows = outer_race_rows
    assert len(rows) == 2 * expected
    assert {r["channel"] for r in rows} == {"x_g", "y_g"}
    for ch in ("x_g", "y_g"):
        assert [r["window"] for r in by_channel(rows, ch)] == list(range(expected))
    assert rows[0]["t_start"].startswith("2026-01-01T00:00:00")
    starts = []
    for r in rows:
        for key in ("t_start", "channel", "window", *DEMO_FEATURES, "iso_zone", "shaft_speed_rpm"):
            assert key in r, (key, r)
        starts.append(dt.datetime.fromisoformat(r["t_start"]))  # ISO 8601
        assert r["valid"] is True
        assert r["shaft_speed_rpm"] == pytest.approx(1480.0)
        assert r["iso_zone"] in {"A", "B", "C", "D"}
    # One hop (HOP / 25600 Hz) between consecutive windows.
    x_starts = [starts[i] for i, r in enumerate(rows) if r["channel"] == "x_g"]
    assert (x_starts[1] - x_starts[0]).total_seconds() == pytest.approx(HOP / 25600, abs=1e-5)


def test_features_outer_race_bpfo_rises_after_onset(
    outer_race_rows: list[dict[str, Any]],
) -> None:
    t = truth("outer_race")
    onset = next(f["onset_sample"] for f in t["faults"] if f["kind"] == "bpfo")
    x = by_channel(outer_race_rows, "x_g")
    base = x[0]["env_bpfo_g"]
    assert isinstance(base, float) and base > 0
    after = [r for r in x if r["window"] * HOP >= onset]
    assert after, "no window starts after the fault onset"
    for r in after:
        assert r["env_bpfo_g"] > 5 * base, (r["window"], r["env_bpfo_g"], base)


QUICK = ("--columns", "x_g", "--rpm", "1480", "--window", "8192", "--overlap", "0.25")


@pytest.fixture(scope="module")
def healthy_6205_rows() -> list[dict[str, Any]]:
    proc = ok(run_cli("features", "fixtures/healthy.csv.gz", *QUICK, "--bearing", "6205"))
    return jsonl(proc)


def test_features_quick_flags(healthy_6205_rows: list[dict[str, Any]]) -> None:
    rows = healthy_6205_rows
    hop = 8192 - round(8192 * 0.25)
    assert hop == 6144
    assert {r["channel"] for r in rows} == {"x_g"}
    assert len(rows) == n_windows(truth("healthy")["n_samples"], 8192, hop)
    assert [r["window"] for r in rows] == list(range(len(rows)))
    for r in rows:
        assert isinstance(r["env_bpfo_g"], float)
        assert isinstance(r["order_1x_g"], float)
    # 1x of the healthy fixture: 0.05 g peak unbalance.
    assert np.median([r["order_1x_g"] for r in rows]) == pytest.approx(0.05, rel=0.1)


def test_features_bearing_geometry_matches_table(
    healthy_6205_rows: list[dict[str, Any]],
) -> None:
    proc = ok(
        run_cli(
            "features", "fixtures/healthy.csv.gz", *QUICK, "--bearing-geometry", "9,7.94,39.04,0"
        )
    )
    rows = jsonl(proc)
    assert len(rows) == len(healthy_6205_rows)
    env = [n for n in feature_names() if n.startswith("env_")]
    for a, b in zip(healthy_6205_rows, rows, strict=True):
        for name in env:
            # The table's 6205 is 0.3126 in / 1.537 in, within 0.01 % of 7.94 / 39.04 mm.
            assert b[name] == pytest.approx(a[name], rel=2e-2, abs=1e-9), (a["window"], name)


def test_features_without_rpm_has_null_orders_and_envelope() -> None:
    proc = ok(
        run_cli("features", "fixtures/healthy.csv.gz", "--columns", "x_g", "--window", "8192")
    )
    rows = jsonl(proc)
    assert rows
    assert ORDER_AND_ENV
    for r in rows:
        for name in ORDER_AND_ENV:
            assert name in r and r[name] is None, (name, r[name])
        assert isinstance(r["rms_g"], float) and r["rms_g"] > 0


# --------------------------------------------------------------------------- user errors


def test_error_pipeline_unknown_key(tmp_path: Path) -> None:
    bad = write_pipeline(tmp_path / "typo.toml", overlap="overlpa = 0.5")
    msg = user_error(run_cli("features", "fixtures/healthy.csv.gz", "--pipeline", bad))
    assert str(bad) in msg
    assert "overlpa" in msg


def test_error_check_bad_pipeline(tmp_path: Path) -> None:
    bad = write_pipeline(tmp_path / "typo.toml", overlap="overlpa = 0.5")
    msg = user_error(run_cli("check", bad))
    assert str(bad) in msg
    assert "overlpa" in msg


def test_error_csv_bad_cell_names_line_and_column(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("x_g,y_g\n0.1,0.2\n0.1,0.2\n0.1,0.2\n0.1,zz\n0.1,0.2\n")
    msg = user_error(run_cli("features", csv, "--fs", "1000"))
    assert f"{csv}:5" in msg
    assert "y_g" in msg


def test_error_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    msg = user_error(run_cli("features", missing, "--fs", "1000"))
    assert str(missing) in msg


def test_error_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    msg = user_error(run_cli("features", empty, "--fs", "1000"))
    assert str(empty) in msg


@pytest.mark.parametrize("rows", [1, 300])
@pytest.mark.parametrize("command", ["features", "train", "score"])
def test_error_shorter_than_one_window_names_the_file_its_length_and_the_window(
    tmp_path: Path, command: str, rows: int
) -> None:
    """A recording shorter than one window is refused on one line that says how long it is
    and what window it needed (``features`` and ``score`` printed nothing and exited 0;
    ``train`` said neither length)."""
    csv = tmp_path / "short.csv"
    write_noise_csv(csv, rows)
    extra: dict[str, list[object]] = {
        "features": ["--fs", "25600"],
        "train": ["--fs", "25600", "--out", tmp_path / "model"],
        "score": ["--model", REPO / "models" / "demo-pump"],
    }
    msg = user_error(run_cli(command, csv, *extra[command]))
    assert f"{csv}: {rows} sample" in msg and "at 25600 Hz" in msg, msg
    window = 8192 if command == "score" else 16384  # the model's, the default
    assert f"shorter than one window of {window} samples" in msg, msg
    assert ("record longer" in msg) == (rows < 256), msg


def test_score_says_how_many_windows_it_did_not_score(tmp_path: Path) -> None:
    """A dead channel has no crest or kurtosis, so no window of it is scored: the summary
    said '0/N windows alerting' as of a quiet machine, and now says N were not scored."""
    csv = tmp_path / "dead.csv"
    n = 25600 * 2
    x = np.random.default_rng(4).normal(0.0, 0.02, n)
    csv.write_text("x_g,y_g\n" + "".join(f"{a:.5f},0\n" for a in x))
    proc = ok(run_cli("score", "--model", REPO / "models" / "demo-pump", csv))
    rows = jsonl(proc)
    assert rows and all(r["valid"] is False and r["score"] is None for r in rows)
    assert f"0/{len(rows)} windows alerting; {len(rows)} not scored" in proc.stderr, proc.stderr


@pytest.mark.parametrize("dead", ["0", "0.73"])
def test_train_refuses_a_channel_with_no_signal(tmp_path: Path, dead: str) -> None:
    """A dead sensor is no healthy baseline: a column of zeros (or a constant) trained a
    model (its crest and kurtosis, undefined, were dropped, the rest learnt as healthy)."""
    csv = tmp_path / "dead.csv"
    x = np.random.default_rng(4).normal(0.0, 0.02, 25600 * 2)
    csv.write_text("x_g,y_g\n" + "".join(f"{a:.5f},{dead}\n" for a in x))
    msg = user_error(
        run_cli("train", csv, "--fs", "25600", "--window", "4096", "--out", tmp_path / "m")
    )
    assert f"{csv}: 'y_g' carries no signal in any of its" in msg, msg


def test_error_pipeline_with_quick_flag() -> None:
    msg = user_error(
        run_cli(
            "features",
            "fixtures/healthy.csv.gz",
            "--pipeline",
            "pipelines/demo.toml",
            "--rpm",
            "1000",
        )
    )
    assert "--rpm" in msg


def test_error_bearing_geometry_too_short() -> None:
    msg = user_error(
        run_cli(
            "features", "fixtures/healthy.csv.gz", "--rpm", "1480", "--bearing-geometry", "9,7.94"
        )
    )
    assert "--bearing-geometry" in msg


def test_error_fs_disagrees_with_sidecar(tmp_path: Path) -> None:
    csv = tmp_path / "rec.csv"
    write_noise_csv(csv, 100)
    (tmp_path / "rec.json").write_text(json.dumps({"sample_rate_hz": 48000}))
    msg = user_error(run_cli("features", csv, "--fs", "12000"))
    assert str(csv) in msg
    assert "12000" in msg and "48000" in msg


# --------------------------------------------------------------------------- bad data, gaps


BAD_ROW = 20000  # data row (0-based) holding "abc" in column x_g


@pytest.fixture
def csv_with_bad_cell(tmp_path: Path) -> Path:
    csv = tmp_path / "bad_cell.csv"
    lines = write_noise_csv(csv, 40000, comments=("# sample_rate_hz=25600",))
    i = 2 + BAD_ROW  # after the comment and the header
    lines[i] = "abc," + lines[i].split(",")[1]
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_invalidate_marks_windows_of_a_bad_sample(tmp_path: Path, csv_with_bad_cell: Path) -> None:
    pipeline = tmp_path / "demo.toml"
    pipeline.write_text(DEMO_PIPELINE.read_text())
    assert 'on_bad_data = "invalidate"' in pipeline.read_text()
    proc = ok(run_cli("features", csv_with_bad_cell, "--pipeline", pipeline))
    rows = jsonl(proc)
    n = n_windows(40000, WINDOW, HOP)
    assert len(rows) == 2 * n
    touched = {k for k in range(n) if k * HOP <= BAD_ROW < k * HOP + WINDOW}
    assert len(touched) == WINDOW // HOP
    for r in rows:
        if r["window"] in touched:
            assert r["valid"] is False, r
            for name in DEMO_FEATURES:
                assert r[name] is None, (r["window"], name, r[name])
        else:
            assert r["valid"] is True, r
            assert isinstance(r["rms_g"], float)
    m = re.search(r"(\d+) invalid", proc.stderr)
    assert m, describe(proc)
    assert int(m.group(1)) == len(touched)


def test_features_says_why_windows_with_no_bad_cell_are_invalid(tmp_path: Path) -> None:
    """Values no sensor gives (1e9 g: a unit read wrong) make every window invalid, with no
    cell unreadable: the summary said '23 invalid (0 bad samples)'."""
    csv = tmp_path / "huge.csv"
    x = np.random.default_rng(5).normal(0.0, 1e9, 8192)
    csv.write_text("x_g\n" + "".join(f"{a:.6g}\n" for a in x))
    proc = ok(run_cli("features", csv, "--fs", "25600", "--window", "4096"))
    assert ", 3 invalid (0 unreadable cells; a sample not finite or beyond ±1e+06 g" in proc.stderr


def test_bad_cell_with_on_bad_data_error(tmp_path: Path, csv_with_bad_cell: Path) -> None:
    pipeline = write_pipeline(tmp_path / "strict.toml", on_bad_data='on_bad_data = "error"')
    msg = user_error(run_cli("features", csv_with_bad_cell, "--pipeline", pipeline))
    line = 3 + BAD_ROW  # 1-based: comment, header, then data
    assert f"{csv_with_bad_cell}:{line}" in msg
    assert "x_g" in msg


def test_time_gap_resets_windowing(tmp_path: Path) -> None:
    fs, n, gap_at = 25600, 30000, 15000
    rng = np.random.default_rng(1)
    t = np.arange(n) / fs
    t[gap_at:] += 1.0
    data = rng.normal(0.0, 0.02, (n, 2))
    csv = tmp_path / "gap.csv"
    lines = [f"# sample_rate_hz={fs}", "time,x_g,y_g"]
    lines += [f"{ti:.7f},{a:.5f},{b:.5f}" for ti, (a, b) in zip(t, data, strict=True)]
    csv.write_text("\n".join(lines) + "\n")
    proc = ok(run_cli("features", csv, "--window", "4096"))
    assert "reset" in proc.stderr, describe(proc)
    x = by_channel(jsonl(proc), "x_g")
    before = [r for r in x if r["segment"] == x[0]["segment"]]
    after = [r for r in x if r["segment"] != x[0]["segment"]]
    assert before and after, describe(proc)
    assert after[0]["segment"] > before[-1]["segment"]
    assert after[0]["window"] > before[-1]["window"]
    t_before = dt.datetime.fromisoformat(before[-1]["t_start"])
    t_after = dt.datetime.fromisoformat(after[0]["t_start"])
    assert (t_after - t_before).total_seconds() > 1.0


# --------------------------------------------------------------------------- other commands


def test_check_pipelines() -> None:
    proc = ok(run_cli("check", "pipelines/demo.toml", "pipelines/cwru_drive_end.toml"))
    assert "BPFO" in proc.stdout
    assert "demo.toml" in proc.stdout and "cwru_drive_end.toml" in proc.stdout
    # what can trip each machine, and why
    demo, cwru = proc.stdout.split("cwru_drive_end.toml: OK")
    assert (
        "  - velocity RMS ≥ 5.62 mm/s (1.25 × C/D 4.5 mm/s, ISO 10816-3 group 2 rigid) on any "
        "channel (x_g, y_g) for 5 of 8 windows"
    ) in demo
    assert "the anomaly score ≥ 10 together, in the same window, with a diagnosed" in demo
    assert "the score never trips alone" in demo
    assert "the anomaly score never trips (score_trip not set)" in cwru
    assert "for 3 of 6 windows" in cwru


@pytest.mark.slow
def test_bench_json_quick() -> None:
    # The whole-service phases start `pdm-edge run` twice: ~60 s on a loaded 2-core machine.
    proc = ok(run_cli("bench", "--json", "--quick", timeout=300))
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, describe(proc)
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    # The DSP headline: the extractor against the bare FFT of the same windows (batched and
    # single), each explained in `notes`; the former mixed-base ratio only as a legacy key.
    for key in ("dsp_ratio_to_batched_rfft", "dsp_ratio_single"):
        ratio = result[key]
        assert isinstance(ratio, float) and 0.5 < ratio < 20, (key, ratio)
        assert key in result["notes"]
    assert "dsp_ratio_to_rfft" not in result
    assert "LEGACY" in result["notes"]["dsp_ratio_to_rfft_legacy_unbatched_base"]
    assert result["dsp_sensors_per_core"] > 0
    # The diagnosis engine per window of the same stream, and its share of the extraction.
    assert 0 < result["diagnosis_us_per_window"] and 0 < result["diagnosis_share_of_extract"] < 5
    # Later issues' keys: history write rates (a throwaway influxd when installed), decisions.
    assert result["history_rows_per_s_sqlite"] > 0 and result["history_target_rows_per_s"] > 0
    influx = result["history_rows_per_s_influx1"]
    assert (influx is None) == ("history_influx1_skipped" in result)
    assert 0 < result["decision_us_p50"] <= result["decision_us_p99"]
    # The whole service fed over TCP (pdm/tools/bench_run.py): a capacity and a real-time phase.
    assert result["run_capacity_windows_per_s"] > 0
    assert result["run_capacity_dropped_samples"] == 0  # flow control, not drops
    assert result["run_sensors"] >= 0 and len(result["run_tries"]) == 1
    rt = result["run_tries"][0]
    assert rt["windows_per_s"] > 0 and 0 < rt["service_cores"] <= (os.cpu_count() or 1) + 0.5
    # Per core used, against the DSP's one core; the all-cores ratio is marked as such.
    for key in ("run_sensors_per_core", "run_vs_dsp_per_core", "run_vs_dsp", "e2e_ms_p50"):
        assert key in result["notes"], key
    if rt["held"]:
        assert result["run_sensors_per_core"] == pytest.approx(
            result["run_sensors"] / result["run_service_cores"], rel=0.01
        )
        assert result["run_vs_dsp_per_core"] == pytest.approx(
            result["run_sensors_per_core"] / result["dsp_sensors_per_core"], rel=0.01
        )
        # Like with like: the DSP alone on the same fleet's machines.
        assert result["run_vs_dsp_fleet_per_core"] == pytest.approx(
            result["run_sensors_per_core"] / result["dsp_fleet_sensors_per_core"], rel=0.01
        )
    for key in ("dsp_fleet_sensors_per_core", "run_vs_dsp_fleet_per_core"):
        assert key in result["notes"], key
    assert (
        result["dsp_fleet_sensors_per_core"] > 0 and result["dsp_fleet_alone_sensors_per_core"] > 0
    )
    # Latency from the sensor's clock: never shorter than from the frame's arrival.
    assert result["e2e_clock"] == "sensor"
    if rt["e2e_ms_p50"] is not None:
        assert rt["e2e_ms_p50"] >= rt["e2e_ms_p50_from_arrival"] - 0.5
    # The mixed load: two shapes, four speeds, faults that made the actions act.
    load = result["run_load"]
    assert len(load["shapes"]) == 2 and len(load["speeds_rpm"]) == 4
    assert rt["load"]["faults_injected"] > 0 and rt["load"]["transitions"] > 0
    # --quick never searches the load that meets the latency target: reported as such.
    assert (
        result["e2e_target_ms"] == 20.0
        and 0 <= result["run_sensors_in_time"] <= (result["run_sensors"])
    )


def test_demo() -> None:
    proc = ok(run_cli("demo"))
    # the committed demo model finds the outer-race fault and says why
    assert "Diagnosis: bearing_outer_race" in proc.stdout
    assert "outer race: BPFO at " in proc.stdout and "zone" in proc.stdout


def test_demo_without_a_model_reads_the_features(tmp_path: Path) -> None:
    text = DEMO_PIPELINE.read_text().replace(
        'path = "../models/demo-pump"', 'path = "no-model-here"'
    )
    text = text.replace("teach_in_s = 60.0", "")
    pipeline = tmp_path / "demo.toml"
    pipeline.write_text(text)
    proc = ok(run_cli("demo", "--pipeline", str(pipeline)))
    assert "no model" in proc.stdout and "outer race (BPFO)" in proc.stdout


def test_simulate_then_features(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    ok(
        run_cli(
            "simulate",
            "--out",
            out,
            "--duration",
            "2",
            "--fault",
            "bpfo:0.5@1.0",
            "--seed",
            "3",
        )
    )
    assert out.is_file()
    proc = ok(run_cli("features", out, "--pipeline", "pipelines/demo.toml"))
    rows = jsonl(proc)
    assert len(rows) == 2 * n_windows(2 * 25600, WINDOW, HOP)


def test_simulator_module_output_readable_by_features(tmp_path: Path) -> None:
    """The same recording written by ``python -m pdm.sources.simulator`` directly."""
    out = tmp_path / "y.csv"
    sim = subprocess.run(
        [
            *(sys.executable, "-m", "pdm.sources.simulator", "--out", str(out)),
            *("--duration", "2", "--fault", "bpfo:0.5@1.0", "--seed", "3"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    ok(sim)
    proc = ok(run_cli("features", out, "--pipeline", "pipelines/demo.toml"))
    rows = jsonl(proc)
    assert len(rows) == 2 * n_windows(2 * 25600, WINDOW, HOP)
    x = by_channel(rows, "x_g")
    # Fault from 1.0 s: the last window (1.28-1.92 s) is all after the onset.
    assert x[-1]["env_bpfo_g"] > 5 * x[0]["env_bpfo_g"]


def test_features_reader_leaves_early() -> None:
    """``pdm-edge features ... | head -1``: no traceback, a clean exit."""
    cmd = [
        sys.executable,
        "-m",
        "pdm.cli",
        "features",
        "fixtures/healthy.csv.gz",
        # Small windows: about 1 MB of JSON, far more than a pipe buffer holds.
        "--window",
        "1024",
        "--rpm",
        "1480",
        "--bearing",
        "6205",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(first)["window"] == 0
    assert rc in (0, 141, -13), (rc, err)  # 141 / -13: killed by SIGPIPE, as `head` expects
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err


def test_tune_for_streaming_keeps_blas_to_one_thread_and_tells_child_processes() -> None:
    code = (
        "import os, numpy, threadpoolctl, pdm; pdm.tune_for_streaming(); "
        "print([i['num_threads'] for i in threadpoolctl.threadpool_info() "
        "if i['user_api'] == 'blas'], os.environ['OPENBLAS_NUM_THREADS'], "
        "os.environ['MALLOC_MMAP_THRESHOLD_'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out[0].strip("[],") == "1" and out[1:] == ["1", str(32 << 20)]


# --------------------------------------------------------------------------- speed flags


def test_score_model_with_another_speed() -> None:
    """`score --model M FILE --rpm R` keeps the model's own pipeline (its window, channels,
    bearings) and changes only the speed; so do --nominal-rpm and --rpm-range. (It was
    refused: the quick flags built a default pipeline the card did not match.)"""
    model = REPO / "models" / "demo-pump"
    for flags in (["--rpm", "1500"], ["--nominal-rpm", "1480"], ["--rpm-range", "1400,1560"]):
        proc = ok(run_cli("score", "--model", model, FIXTURES / "outer_race.csv.gz", *flags))
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(rows) > 100 and all(r["score"] is not None for r in rows), flags


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--window", "4096"], "--window: cannot be changed with --model"),
        (["--columns", "x_g"], "--columns: cannot be changed with --model"),
        (["--envelope-band", "auto"], "--envelope-band: cannot be changed with --model"),
        (["--bearing", "6309"], "--bearing: cannot be changed with --model"),
        (["--fs", "12000"], "--fs: 12000 Hz is not the 25600 Hz the model was trained at"),
        (["--rpm", "1500", "--nominal-rpm", "1480"], "--rpm, --nominal-rpm: give a fixed"),
    ],
)
def test_score_model_refuses_what_the_model_was_not_trained_on(flags, words) -> None:
    proc = run_cli(
        "score", "--model", REPO / "models" / "demo-pump", FIXTURES / "outer_race.csv.gz", *flags
    )
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, describe(proc)


def test_features_nominal_rpm_searches_and_bearing_suffix_works() -> None:
    proc = ok(
        run_cli(
            "features", FIXTURES / "outer_race.csv.gz", "--nominal-rpm", "1500",
            "--bearing", "6205-2RS JEM",
        )
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    speeds = [r["shaft_speed_rpm"] for r in rows]
    assert all(1425 <= s <= 1575 for s in speeds)  # searched within ±5 % of 1500
    assert abs(np.median(speeds) - 1480) < 15  # the fixture runs at 1480 r/min
    assert all(r["env_bpfo_g"] is not None for r in rows)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--rpm-range", "1500"], "--rpm-range: expected LO,HI in r/min (got '1500')"),
        (["--rpm-range", "1600,1400"], "--rpm-range: needs 0 < LO < HI r/min"),
        (["--bearing", "6305", "--rpm", "1480"], "closest known: 6304, 6306"),
    ],
)
def test_error_speed_and_bearing_flags(flags, words) -> None:
    proc = run_cli("features", FIXTURES / "outer_race.csv.gz", *flags)
    assert proc.returncode == 2 and proc.stderr.startswith("pdm-edge: error: "), describe(proc)
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, describe(proc)


# Every sub-command of the one argparse tree, and the tools' own sub-commands beneath it.
COMMANDS = [
    "check", "features", "train", "score", "diagnose", "report", "replay", "run", "send",
    "soak", "model", "dashboard", "operators", "ack", "evaluate", "bench", "simulate", "demo",
]  # fmt: skip
NESTED = [
    *(["model", c] for c in ("keygen", "sign", "verify", "check", "report")),
    *(["operators", c] for c in ("add", "remove", "unlock", "list")),
]


def test_the_command_table_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    listed = re.search(r"choose from (.*)\)", err)
    assert listed is not None, err
    assert re.findall(r"'([a-z]+)'", listed[1]) == COMMANDS


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + NESTED, ids=" ".join)
def test_help_is_the_trees_own(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (pdm.cli.main, what the console script calls): ``--help`` is the tree's,
    never a parser of the tool's own (``usage: python -m pdm.sources.simulator``)."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: pdm-edge {' '.join(argv)} ")


@pytest.mark.parametrize("argv", [[c] for c in COMMANDS] + NESTED, ids=" ".join)
def test_a_bad_option_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """What argparse finds first (a missing argument, else the unknown option), named by
    the command whose option it is."""
    assert main([*argv, "--no-such-option"]) == 2
    out = capsys.readouterr()
    where = " ".join(argv)
    assert out.out == "" and out.err.count("\n") == 1, out.err
    assert re.fullmatch(rf"pdm-edge: error: {where}: .+ \(see pdm-edge {where} --help\)\n", out.err)
    if "required" not in out.err:
        assert "unrecognized arguments: --no-such-option" in out.err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "fixtures/healthy.csv.gz", "--holdout", "nan"], "--holdout: must be"),
        (["train", "fixtures/healthy.csv.gz", "--holdout", "0.05"], "--holdout: must be >= 0.1"),
        (["train", "fixtures/healthy.csv.gz", "--alerts-per-week", "-1"], "must be > 0 (got -1)"),
        (["train", "fixtures/healthy.csv.gz", "--alerts-per-week", "nan"], "--alerts-per-week"),
        (["train", "fixtures/healthy.csv.gz", "--seed", "-1"], "--seed: expected a whole number"),
        (["run", str(DEMO_PIPELINE), "--simulate", "--duration", "nan"], "--duration: expected"),
        (["run", str(DEMO_PIPELINE), "--simulate", "--duration", "1e308"], "--duration: expected"),
        (["run", str(DEMO_PIPELINE), "--stall-s", "-1"], "--stall-s: expected seconds > 0"),
        (["run", str(DEMO_PIPELINE), "--max-lag-s", "inf"], "--max-lag-s: expected seconds"),
        (["run", str(DEMO_PIPELINE), "--silence-s", "nan"], "--silence-s: expected seconds"),
        (
            ["replay", "fixtures/healthy.csv.gz", "--drain-timeout", "nan"],
            "--drain-timeout: expected seconds >= 0",
        ),
        (["simulate", "--duration", "1e12"], "a recording holds at most 50,000,000"),
        (["simulate", "--fault", "bpfo:1e308"], "amplitude_g=1e+308 must be <= 1e+06"),
        (["simulate", "--dc", "1e7"], "dc_bias_g=1e+07 must be <= 1e+06"),
        (["evaluate", "--detectors", "foo"], "--detectors 'foo': expected distinct names"),
        (["evaluate", "--detectors", "gmm,gmm"], "--detectors 'gmm,gmm'"),
    ],
)
def test_numbers_out_of_range_are_one_line_before_any_work(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Odd numbers on the command line were tracebacks (``train --holdout nan``,
    ``--alerts-per-week -1``; ``run --duration nan`` killed the simulator's thread, ``1e308``
    overflowed; ``simulate --duration 1e12`` asked for 364 PiB; ``evaluate --detectors foo``
    a pydantic traceback), or were taken as given
    (``--alerts-per-week nan`` wrote NaN into model.json; ``--stall-s -1``)."""
    if argv[0] == "train":
        argv = [*argv, "-p", str(DEMO_PIPELINE), "--out", str(tmp_path / "m")]
    elif argv[0] == "replay":
        argv = [*argv, "-p", str(DEMO_PIPELINE), "--data-dir", str(tmp_path)]
    elif argv[0] == "simulate":
        argv = [*argv, "--out", str(tmp_path / "s.csv")]
    elif argv[0] == "evaluate":
        argv = [*argv, "--dataset", str(tmp_path)]
    else:
        argv = [*argv, "--data-dir", str(tmp_path), "--api", "off"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pdm-edge: error: "), err
    assert words in err, err
    assert not (tmp_path / "m").exists() and not (tmp_path / "s.csv").exists()


def test_simulate_runs_from_the_tree(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    proc = ok(run_cli("simulate", "--out", out, "--duration", "0.5", "--fault", "bpfo:0.2"))
    assert proc.stdout.split() == [str(out), str(tmp_path / "r.truth.json")]
    assert json.loads((tmp_path / "r.truth.json").read_text())["faults"][0]["kind"] == "bpfo"
