"""From the command line: ``pdm-edge report``, ``--html`` plots, progress bars, readable output.

Every command runs as a real child process. Progress bars are checked on a real
pseudo-terminal (``os.openpty``, with a window size, as a terminal has): drawn there with a
total and whole seconds, and never when stderr is a pipe or in JSON output.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
DEMO = REPO / "pipelines" / "demo.toml"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def _on_a_terminal(*args: str, timeout: float = 120) -> str:
    """The command's stderr as a terminal shows it (``\\r`` turned into line breaks)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdm.cli", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, out.decode(errors="replace")[-2000:]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return out.decode(errors="replace").replace("\r", "\n")


def _offline(html: str) -> None:
    low = html.lower()
    assert html.startswith("<!DOCTYPE html>")
    for bad in ("http://", "https://", "<script", "<link", "@import", "src=", "url("):
        assert bad not in low, bad


# --- pdm-edge report ---------------------------------------------------------------------------


def test_report_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    got = _cli(
        "report",
        f"{FIXTURES / 'outer_race.csv.gz'}@4",
        "-p",
        str(DEMO),
        "--healthy",
        str(FIXTURES / "healthy.csv.gz"),
        "-o",
        str(out),
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == ""
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # no progress bar: stderr is not a terminal
    assert lines[0].startswith(f"{out}: outer_race.csv.gz: final state trip")
    assert "outer-race bearing defect" in lines[0] and "2 recording(s)" in lines[0]
    html = out.read_text()
    _offline(html)
    for part in ("Spectra of the deciding window", "Diagnosis", "Settings compared"):
        assert part in html
    assert "Window 55 at 2026-01-01 00:00:04.400 UTC" in html
    assert re.search(r'class="lb"[^>]*>2×BPFO</text>', html)  # a harmonic marked
    assert "<td>healthy.csv.gz</td><td>healthy</td>" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.csv", "-p", str(DEMO), "-o", "x.html"], "nope.csv"),
        ([f"{FIXTURES / 'healthy.csv.gz'}@soon", "-p", str(DEMO), "-o", "x.html"], "FILE@S"),
        (["@3", "-p", str(DEMO), "-o", "x.html"], "@3: expected FILE or FILE@S"),
        ([str(FIXTURES / "healthy.csv.gz"), "-p", str(DEMO), "-o", "/no/such/dir/x.html"], "-o"),
        (
            [str(FIXTURES / "healthy.csv.gz"), "-p", str(DEMO), "-m", "/tmp", "-o", "x.html"],
            "--model",
        ),
    ],
)
def test_report_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    got = subprocess.run(
        [sys.executable, "-m", "pdm.cli", "report", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert got.returncode == 2
    err = got.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pdm-edge: error: ") and message in err
    assert "Traceback" not in got.stderr


# --- --html of features and score ----------------------------------------------------------


def test_features_and_score_write_offline_plots(tmp_path: Path) -> None:
    page = tmp_path / "features.html"
    got = _cli(
        "features", str(FIXTURES / "outer_race.csv.gz"), "-p", str(DEMO), "--html", str(page)
    )
    assert got.returncode == 0, got.stderr
    assert len(got.stdout.splitlines()) == 147 * 2  # the JSON lines are unchanged
    html = page.read_text()
    _offline(html)
    assert "Velocity RMS (ISO 10816-3" in html and "ISO B/C 2.8" in html and "ISO C/D 4.5" in html
    assert "Motor DE · horizontal" in html and "BPFO envelope, g" in html
    assert "x_g" not in re.sub(r"<[^>]+>", "", html)  # channels named as people name them
    assert html.count("<svg") >= 6
    page = tmp_path / "score.html"
    got = _cli("score", str(FIXTURES / "outer_race.csv.gz"), "-p", str(DEMO), "--html", str(page))
    assert got.returncode == 0, got.stderr
    html = page.read_text()
    _offline(html)
    assert "Anomaly score per window" in html and "alert 1<" in html
    card = json.loads((REPO / "models" / "demo-pump" / "model.json").read_text())
    shown = re.search(r"danger ([\d.]+)<", html)
    assert shown and float(shown.group(1)) == pytest.approx(card["score"]["danger"], rel=1e-5)
    assert "147 windows" in html


# --- progress -------------------------------------------------------------------------------


def test_progress_bars_on_a_terminal_only(tmp_path: Path) -> None:
    rec = str(FIXTURES / "outer_race.csv.gz")
    for args in (
        ["replay", rec, "-p", str(DEMO), "--data-dir", str(tmp_path / "d"), "--restart"],
        ["features", rec, "-p", str(DEMO)],
        ["score", rec, "-p", str(DEMO)],
        ["diagnose", rec, "-p", str(DEMO)],
        ["report", rec, "-p", str(DEMO), "-o", str(tmp_path / "r.html")],
    ):
        shown = _on_a_terminal(*args)
        bars = [ln for ln in shown.splitlines() if "outer_race.csv.gz:" in ln and "%|" in ln]
        assert bars, (args[0], shown[-1500:])
        # A total (12 s, estimated before reading), whole seconds, a time left.
        assert all(re.search(r"\| \d+/12 s \[\d\d:\d\d<(\d\d:\d\d|\?)\]", ln) for ln in bars), bars
        assert not re.search(r"\d+\.\d{3,} s", shown)  # never 10.922666666666666 s
    # Not a terminal: no bar at all, and stdout stays pure JSON.
    got = _cli("score", rec, "-p", str(DEMO))
    assert "%|" not in got.stderr
    assert all(json.loads(ln) for ln in got.stdout.splitlines())


def test_recording_length_is_estimated_before_reading() -> None:
    from pdm.progress import estimate_seconds

    # gzip: from the trailer's uncompressed size; plain CSV: from the file's size.
    assert estimate_seconds(FIXTURES / "outer_race.csv.gz", 25600.0) == pytest.approx(12, rel=0.05)
    assert estimate_seconds(FIXTURES / "timed_iso8601.csv", 25600.0) == pytest.approx(1, rel=0.1)
    assert estimate_seconds(FIXTURES / "outer_race.csv.gz", 0.0) is None


# --- evaluate -------------------------------------------------------------------------------


def test_evaluate_prints_a_table_and_json_only_when_asked(cwru: Path, tmp_path: Path) -> None:
    page = tmp_path / "eval.html"
    got = _cli("evaluate", "--dataset", str(cwru), "--detectors", "gmm", "--html", str(page))
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].split()[:3] == ["rate", "detector", "false"] and len(lines) == 4
    assert lines[2].startswith("de12k") and "of 30 windows" in lines[2]
    assert not got.stdout.lstrip().startswith("[")  # not JSON
    html = page.read_text()
    _offline(html)
    assert "Detection on IR007_0hp.csv" in html and html.count("<svg") == 4
    js = _cli("evaluate", "--dataset", str(cwru), "--detectors", "gmm", "--json")
    assert js.returncode == 0, js.stderr
    results = json.loads(js.stdout)
    assert [r["rate"] for r in results] == ["de12k", "de48k"]
