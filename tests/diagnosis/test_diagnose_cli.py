"""``pdm-edge diagnose`` and the diagnosis that ``score`` carries, through the real command."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pdm.diagnosis.report import place_labels
from pdm.sources.simulator import FaultSpec, SimSpec, write_recording

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
PIPELINES = REPO / "pipelines"


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", *(str(a) for a in args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def user_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pdm-edge: error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """Short simulated recordings: a 6309 at 2950 r/min, 51.2 kHz, with slip."""
    d = tmp_path_factory.mktemp("rec")
    base = SimSpec(
        fs=51200.0,
        duration_s=6.0,
        rpm=2950.0,
        bearing=__import__("pdm.tools.diagnosis_sweep", fromlist=["GEOMETRIES"]).GEOMETRIES["6309"],
        resonance_hz=9000.0,
        defect_slip=0.01,
        faults=(FaultSpec("unbalance", 0.02),),
    )
    out = {}
    for name, faults in (
        ("healthy", ()),
        ("inner", (FaultSpec("bpfi", 0.2),)),
        ("ball", (FaultSpec("bsf", 0.25),)),
    ):
        spec = SimSpec(**{**base.__dict__, "faults": (*base.faults, *faults), "seed": len(out)})
        path = d / f"{name}.csv"
        write_recording(path, spec)
        out[name] = path
    return out


GEOMETRY = "8,17.462,72.5"  # the 6309 of the simulated recordings: N, d, D (mm)
MACHINE = ("--rpm", "2950", "--bearing-geometry", GEOMETRY, "--envelope-band", "5000,14000")


def test_diagnose_json_has_one_object_per_file_and_channel(recordings) -> None:
    proc = ok(
        run_cli(
            "diagnose",
            recordings["healthy"],
            recordings["inner"],
            recordings["ball"],
            *MACHINE,
            "--json",
        )
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 6 and {r["channel"] for r in rows} == {"x_g", "y_g"}
    for r in rows:
        assert {
            "file",
            "channel",
            "diagnosis",
            "confidence",
            "shaft_speed_rpm",
            "envelope_band_hz",
            "evidence",
            "families",
        } <= set(r)
        assert 0.0 <= r["confidence"] <= 1.0 and r["evidence"]
        assert set(r["families"]) == {
            "outer_race",
            "inner_race",
            "ball",
            "cage",
            "looseness",
            "misalignment",
            "unbalance",
        }
        assert r["shaft_speed_rpm"] == pytest.approx(2950, rel=0.005)
        # The window was chosen for the bearing: bins at most 1 % of BPFO.
        bpfo = r["families"]["outer_race"]["lines"][0]["expected_hz"]
        assert r["sample_rate_hz"] / r["window_samples"] <= 0.0101 * bpfo
    by = {(Path(r["file"]).stem, r["channel"]): r for r in rows}
    assert by[("healthy", "x_g")]["diagnosis"] == "unknown"
    assert by[("inner", "x_g")]["diagnosis"] == "bearing_inner_race"
    assert by[("ball", "x_g")]["diagnosis"] == "bearing_ball"
    inner = by[("inner", "x_g")]["families"]["inner_race"]
    assert inner["present"] and inner["harmonics"] >= 1 and inner["sidebands"] >= 1
    fund = inner["lines"][0]
    assert fund["significant"] and fund["prominence_db"] > 10 and fund["amplitude_g"] > 0
    assert -1.5 <= inner["offset_pct"] <= -0.5  # the simulator slipped 1 % below: found
    assert by[("inner", "x_g")]["confidence"] > 0.9


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, Any]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_diagnose_html_is_one_offline_page_with_the_spectra(recordings, tmp_path) -> None:
    out = tmp_path / "report.html"
    proc = ok(
        run_cli(
            "diagnose",
            recordings["inner"],
            *MACHINE,
            "--html",
            out,
        )
    )
    assert "bearing_inner_race" in proc.stdout
    text = out.read_text()
    parser = _Tags()
    parser.feed(text)
    tags = [t for t, _a in parser.tags]
    # Self-contained: nothing fetched, no script; the spectra are inline SVG.
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "<script" not in text and "@import" not in text
    assert tags.count("svg") >= 4 and tags.count("polyline") >= 4  # 2 channels × env, acc
    assert "Envelope spectrum" in text and "BPFI 1×" in text and "bearing_inner_race" in text
    # The labels drawn in one row of one plot never overlap.
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S):
        labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" class="lb"[^>]*>([^<]*)</text>', svg)
        rows: dict[str, list[tuple[float, float]]] = {}
        for x, y, s in labels:
            half = len(s) * 6.2 / 2
            rows.setdefault(y, []).append((float(x) - half, float(x) + half))
        for spans in rows.values():
            spans.sort()
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


def test_labels_are_placed_without_overlap() -> None:
    xs = [100.0, 105.0, 110.0, 300.0, 102.0]
    rows = place_labels(xs, [40.0] * 5, rows=3)
    assert rows[3] == 0  # far away: the top row
    placed = [(xs[i], r) for i, r in enumerate(rows) if r >= 0]
    for r in set(r for _x, r in placed):
        spans = sorted(x for x, rr in placed if rr == r)
        assert all(b - a >= 44 for a, b in itertools.pairwise(spans))
    assert rows.count(-1) == 1  # four labels within 10 px: one does not fit in three rows


def test_diagnose_user_errors(recordings, tmp_path) -> None:
    msg = user_error(run_cli("diagnose", recordings["inner"], "--bearing", "6205"))
    assert "shaft speed" in msg and "--rpm" in msg
    msg = user_error(run_cli("diagnose", tmp_path / "missing.csv", "--rpm", "1500"))
    assert "missing.csv" in msg
    msg = user_error(run_cli("diagnose", recordings["inner"], "--rpm", "2950", "--window", "100"))
    assert "--window" in msg
    msg = user_error(
        run_cli(
            "diagnose",
            recordings["inner"],
            "--rpm",
            "2950",
            "--window",
            str(2**21),
        )
    )
    assert "shorter than one window" in msg
    msg = user_error(
        run_cli(
            "diagnose", recordings["inner"], "--rpm", "2950", "--html", tmp_path / "no" / "x.html"
        )
    )
    assert "--html" in msg


def _csv(path: Path, columns: dict[str, Any]) -> Path:
    import numpy as np

    data = np.column_stack(list(columns.values()))
    path.write_text(
        ",".join(columns) + "\n" + "\n".join(",".join(f"{v:.6g}" for v in r) for r in data) + "\n"
    )
    return path


def test_diagnose_a_short_recording(tmp_path) -> None:
    """Shorter than the bearing's window: diagnose shortens the window it chose (to 256
    samples at the least) and says what the resolution lacks; shorter than 256 samples, or
    than a --window given, it refuses on one line with the file's length. 300 samples at
    20 kHz died on a shape error in the band scorer."""
    import numpy as np

    rng = np.random.default_rng(0)
    quick = ["--fs", "20000", "--rpm", "1500", "--bearing", "6205"]
    short = _csv(tmp_path / "short.csv", {"a": rng.normal(0.0, 0.1, 300)})
    out = ok(run_cli("diagnose", short, *quick)).stdout
    assert out.startswith(f"{short}: unknown (confidence 0.00); 1 windows of 256 samples"), out
    assert "fewer than 3.5 bins per shaft order" in out, out
    assert out.splitlines()[1] == (
        "  the recording is too short for the lines: 256-sample windows fit it, the bearing's "
        "lines want 32768 (1.64 s) and several of them"
    ), out
    msg = user_error(run_cli("diagnose", short, *quick, "--window", "512"))
    assert f"{short}: 300 samples" in msg and "one window of 512 samples" in msg, msg
    tiny = _csv(tmp_path / "tiny.csv", {"a": rng.normal(0.0, 0.1, 10)})
    msg = user_error(run_cli("diagnose", tiny, *quick))
    assert f"{tiny}: 10 samples" in msg and "256 samples at least: record longer" in msg, msg


def test_diagnose_a_dead_channel_says_no_signal(tmp_path) -> None:
    """An all-zero column and a constant one beside a live one: each dead column is
    ``unknown`` at confidence 0 with 'no signal' (the zeros were a cage fault at 0.50), and
    the live column is judged on its own."""
    import numpy as np

    n = 50000
    rec = _csv(
        tmp_path / "dead.csv",
        {
            "live": np.random.default_rng(1).normal(0.0, 0.1, n),
            "zero": np.zeros(n),
            "flat": np.full(n, 0.73),
        },
    )
    proc = ok(
        run_cli("diagnose", rec, "--fs", "20000", "--rpm", "1500", "--bearing", "6205", "--json")
    )
    rows = {r["channel"]: r for r in map(json.loads, proc.stdout.splitlines())}
    for ch in ("zero", "flat"):
        assert (rows[ch]["diagnosis"], rows[ch]["confidence"]) == ("unknown", 0.0), rows[ch]
        assert rows[ch]["evidence"][0].startswith(f"{ch}: no signal: "), rows[ch]["evidence"]
    assert "no signal" not in rows["live"]["evidence"][0]
    assert rows["live"]["machine_diagnosis"] == "unknown"


def test_diagnose_refuses_a_recording_of_no_measurement(tmp_path) -> None:
    """Every sample beyond ±1e6 g (a unit read wrong): every window is invalid, and diagnose
    said 'unknown (confidence 0.00)' with no reason (nothing at all with --json)."""
    import numpy as np

    rec = _csv(tmp_path / "huge.csv", {"a": np.random.default_rng(2).normal(0.0, 1e9, 50000)})
    for extra in ((), ("--json",)):
        msg = user_error(run_cli("diagnose", rec, "--fs", "20000", "--rpm", "1500", *extra))
        assert f"{rec}: every one of its" in msg and "not a measurement" in msg, msg


def test_a_diagnosis_with_nothing_judged_says_why() -> None:
    """No channel judged (no window of the segment had a speed): the text said only 'unknown
    (confidence 0.00)' and --json printed nothing; both now carry the engine's note."""
    import numpy as np

    from pdm.diagnose import FileDiagnosis, summary_text
    from pdm.diagnosis import Diagnosis

    note = "no window with a known shaft speed in this segment yet"
    d = Diagnosis("unknown", 0.0, None, (), 0, note)
    r = FileDiagnosis("f.csv", 20000.0, 8192, 3, d, ("a",), 2.44, np.zeros((1, 0)), None)
    assert summary_text(r).splitlines()[1] == f"  {note}"
    (row,) = r.rows()
    assert row["evidence"] == [note] and row["machine_diagnosis"] == "unknown"


def test_score_rows_carry_the_engines_diagnosis_and_a_summary(tmp_path) -> None:
    """score: every explained row's diagnosis is the engine's over the recent windows (with
    its confidence), and each recording ends with one summary line on stderr."""
    model = REPO / "models" / "demo-pump"
    proc = ok(run_cli("score", "--model", model, FIXTURES / "inner_race.csv.gz"))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all("diagnosis_confidence" in r for r in rows)
    late = rows[len(rows) // 2 :]
    assert all(r["diagnosis"] == "bearing_inner_race" for r in late)
    assert all(r["diagnosis_confidence"] > 0.9 for r in late)
    assert late[-1]["evidence"][0].startswith(("x_g: inner race", "y_g: inner race"))
    summary = proc.stderr.strip().splitlines()[-1]
    assert re.match(
        r".*inner_race\.csv\.gz: diagnosis bearing_inner_race \(confidence [01]\.\d\d, [xy]_g"
        r"( \(6205\))?\) "
        r"over the last \d+ windows at 14\d\d r/min; \d+/\d+ windows alerting$",
        summary,
    ), summary
