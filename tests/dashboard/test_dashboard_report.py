"""The commissioning report (dashboard download and ``pdm-edge report``) and the what-if grid.

The report must open offline (no http(s) resource, no script) and be complete: what
alarmed and when in readable times, the deciding window's spectra with the defect's
harmonics marked and their amplitudes, the diagnosis, and the what-if grid. The grid is
checked against a count by hand on a growing outer-race fault from the simulator.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdm.config import load_pipeline
from pdm.dashboard import commissioning as com
from pdm.dashboard.report import build_report
from pdm.dsp.bearings import lookup_bearing

pytest.importorskip("streamlit")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
DEMO = REPO / "pipelines" / "demo.toml"
BPFO = lookup_bearing("6205").defect_frequencies_hz(1480 / 60)["bpfo"]


@pytest.fixture(scope="module")
def runs() -> list[com.Run]:
    pl = load_pipeline(DEMO)
    fault = com.run_commissioning(FIXTURES / "outer_race.csv.gz", pl)
    healthy = com.run_commissioning(FIXTURES / "healthy.csv.gz", pl, analyse=False)
    return [com.Run(fault, "fault", 4.0), com.Run(healthy, "healthy")]


@pytest.fixture(scope="module")
def growing(tmp_path_factory: pytest.TempPathFactory) -> list[com.Run]:
    """A BPFO fault that grows from 6 s to 16 s (``pdm-edge simulate``), and a healthy run."""
    out = tmp_path_factory.mktemp("growing") / "growing.csv.gz"
    cmd = [sys.executable, "-m", "pdm.cli", "simulate", "--out", str(out), "--duration", "20"]
    cmd += ["--seed", "11", "--fault", "unbalance:0.05", "--fault", "bpfo:0.3@6+10"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, timeout=120)
    assert com.truth_onset_s(out) == 6.0  # from the simulator's truth sidecar
    pl = load_pipeline(DEMO)
    fault = com.run_commissioning(out, pl, analyse=False)
    healthy = com.run_commissioning(FIXTURES / "healthy.csv.gz", pl, analyse=False)
    return [com.Run(fault, "fault", 6.0), com.Run(healthy, "healthy")]


def _offline(html: str) -> None:
    low = html.lower()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for bad in ("http://", "https://", "<script", "<link", "@import", "src=", "url("):
        assert bad not in low, bad


def _text(html: str) -> str:
    """What a reader sees: tags and SVG coordinates removed."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"<svg.*?</svg>", " ", html, flags=re.S))


def test_the_deciding_window_is_the_one_that_tripped_and_shows_the_fault(
    runs: list[com.Run],
) -> None:
    res = runs[0].res
    assert res.deciding_window == 55 and "TRIP" in res.deciding_why
    ws = res.deciding
    assert ws is not None and ws.window == 55
    i = int(np.argmax(ws.env_g[0][ws.env_freqs_hz > 20])) + int((ws.env_freqs_hz <= 20).sum())
    assert ws.env_freqs_hz[i] == pytest.approx(BPFO, rel=0.04)  # the envelope peaks at BPFO
    assert ws.env_g[0][i] > 0.03
    # The stored spectrum is of window 0, before the fault: 30× smaller at BPFO.
    stored = next(s for s in res.spectra if s["type"] == "envelope" and s["channel"] == "x_g")
    f = stored["f0_hz"] + stored["df_hz"] * np.arange(len(stored["values"]))
    assert ws.env_g[0][i] > 10 * stored["values"][np.abs(f - BPFO) < 5].max()
    av = res.averaged
    assert av is not None and av.label == "bearing_outer_race" and av.confidence > 0.9
    assert av.window_samples > 8192  # chosen for the bearing's lines, finer than the pipeline's


def test_report_is_offline_and_complete(runs: list[com.Run]) -> None:
    res = runs[0].res
    setting = com.configured_setting(res)
    html = build_report(res, runs=runs, setting=setting)
    _offline(html)
    text = _text(html)
    for part in (
        "What alarmed, when and why",
        "Spectra of the deciding window",
        "Diagnosis",
        "What if",
        "Settings compared",
    ):
        assert part in text, part
    # Readable times and numbers: UTC to the ms and seconds from the start, never ns or e+03.
    assert "Window 55 at 2026-01-01 00:00:04.400 UTC" in text
    # …its start, not the alarm's time: the span says when the alarm was decided.
    assert "(4.4–4.72 s from the start, the alarm decided at its end)" in text
    assert "2026-01-01 00:00:04.400" in text and "4.72" in text  # trip decided at 4.4+0.32
    assert not re.search(r"\d{13,}", text), re.search(r"\d{13,}", text)
    assert "e+0" not in text
    assert "outer-race bearing defect" in text and "Motor DE · horizontal" in text
    # Spectra with markers: the envelope's BPFO harmonics labelled, in the SVG.
    envelope = re.findall(
        r"<svg[^>]*aria-label=\"Envelope spectrum, Motor DE[^\"]*\".*?</svg>", html, flags=re.S
    )
    assert len(envelope) == 2  # one per channel
    labels = re.findall(r'class="lb"[^>]*>([^<]+)</text>', envelope[0])
    assert {"BPFO", "2×BPFO", "3×BPFO", "1×"} <= set(labels)
    # …and the amplitudes at the marked lines: 1× BPFO found at BPFO, ~0.09 g.
    row = re.search(r"<td>1× BPFO</td><td>([\d.]+)</td><td>([\d.]+)</td><td>([\d.]+)</td>", html)
    assert row is not None
    assert float(row.group(2)) == pytest.approx(BPFO, rel=0.04) and float(row.group(3)) > 0.03
    # The what-if grid: 8 alert values × 4 on-delays, the tried setting highlighted; on the
    # healthy reference no false alarm, the fault detected.
    assert html.count('<tr class="now">') == 1
    grid = com.whatif_grid(runs, setting)
    assert len(grid) == 32 and sum(g["configured"] for g in grid) == 1
    now = next(g for g in grid if g["configured"])
    assert now["false_alarms"] == 0 and now["detected"] == 1 and now["faults"] == 1
    assert "False alarms (healthy recordings" in html and "First alarm after the fault" in html


def test_whatif_grid_matches_a_count_by_hand(growing: list[com.Run]) -> None:
    """1 of 1: the first alarm comes at the end of the first window (after the onset) whose
    score reaches the alert threshold; delays grow with the threshold and the on-delay."""
    fault = growing[0].res
    base = com.configured_setting(fault)
    grid = com.whatif_grid(growing, base)
    t_end = np.array([fault.seconds(int(t)) for t in fault.t_ns]) + fault.window_s
    checked = 0
    for g in grid:
        if (g["on"], g["of"]) != (1, 1):
            continue
        over = np.flatnonzero(np.isfinite(fault.score) & (fault.score >= g["alert"]))
        if np.any(t_end[over] < 6.0):  # a false alarm before the onset: counted as such
            assert g["false_alarms"] >= 1
            continue
        checked += 1
        after = over[t_end[over] >= 6.0]
        expected = t_end[after[0]] - 6.0 if after.size else None
        if expected is None:
            assert g["delay_s"] is None
        else:
            assert g["delay_s"] == pytest.approx(expected), g
        # On the healthy recording an alarm is raised exactly when some window reaches it.
        healthy = growing[1].res
        reached = bool(np.nanmax(healthy.score) >= g["alert"])
        assert (g["windows_over"] > 0) == reached
        assert (g["false_alarms"] > 0) == reached or bool(
            np.any(fault.score[t_end < 6.0] >= g["alert"])
        )
    assert checked >= 6  # most thresholds raise nothing before the onset: counted by hand
    by_delay: dict[tuple[int, int], list[dict[str, object]]] = {}
    for g in grid:
        by_delay.setdefault((g["on"], g["of"]), []).append(g)
    for rows in by_delay.values():
        delays = [r["delay_s"] for r in rows if r["delay_s"] is not None]
        assert delays == sorted(delays)  # a higher threshold never alarms sooner
        falses = [r["false_alarms"] for r in rows]
        assert falses == sorted(falses, reverse=True)  # …nor more often
    assert by_delay[(1, 1)][0]["delay_s"] is not None  # the growing fault is caught
    # A longer on-delay never alarms sooner at the same threshold.
    for v in {g["alert"] for g in grid}:
        ds = [g["delay_s"] for g in sorted(grid, key=lambda g: g["on"]) if g["alert"] == v]
        ds = [d for d in ds if d is not None]
        assert ds == sorted(ds)


def test_whatif_in_velocity_units(runs: list[com.Run]) -> None:
    """Thresholds in mm/s: the ISO zone rules are replaced by one velocity limit."""
    res = runs[0].res
    base = com.configured_setting(res, "velocity")
    assert (base.alert, base.danger) == (2.8, 4.5)  # group 2 rigid: B/C, C/D
    v = max(ch["velocity_rms_mm_s"] for w in res.features.values() for ch in w.values())
    low = com.whatif_setting(res, com.Setting("velocity", v * 0.9, None, None, 1, 1, 25))
    high = com.whatif_setting(res, com.Setting("velocity", v * 1.1, None, None, 1, 1, 25))
    assert low.alarms_raised >= 1 and high.alarms_raised == 0
