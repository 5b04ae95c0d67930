"""Issue 18's targets held on rigs unlike the CWRU one (docs/diagnosis.md, "Re-tested from
outside"; the full run is ``scripts/diagnosis_outside.py``): other bearings, sample rates,
speeds, resonances and noise, each rig with its own lines of the machine near its defect
frequencies, diagnosed through ``pdm-edge diagnose``'s path (:func:`diagnose_files` on CSV
recordings written by the simulator, the quick flags). A smaller set than the script's, so it
runs in well under a minute: the race named, the ball not called a race, healthy no bearing
fault — and the running speed, which a race line next to a shaft order must not pull.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pdm.config import pipeline_from_flags
from pdm.diagnose import diagnose_files
from pdm.diagnosis import judge_channel
from pdm.diagnosis.shaft_speed import refine_speed
from pdm.dsp.bearings import lookup_bearing
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

REPO = Path(__file__).resolve().parents[2]
RACES = ("bearing_outer_race", "bearing_inner_race")
TRUTH = {"healthy": "", "bpfo": "bearing_outer_race", "bpfi": "bearing_inner_race",
         "bsf": "bearing_ball"}  # fmt: skip


def _outside() -> ModuleType:
    """scripts/diagnosis_outside.py: the rigs and their lines of the machine, one definition."""
    spec = importlib.util.spec_from_file_location(
        "diagnosis_outside", REPO / "scripts/diagnosis_outside.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("diagnosis_outside", mod)
    spec.loader.exec_module(mod)
    return mod


OUT = _outside()


def _power(fs: float, n: int, lines: list[tuple[float, float]], floor: float) -> np.ndarray:
    """Amplitude² spectrum (g², Hann window, one-sided) of tones ``(Hz, g)`` over a flat
    ``floor``: what a window of ``n`` samples at ``fs`` reads of them."""
    t = np.arange(n) / fs
    x = sum((a * np.sin(2 * np.pi * f * t) for f, a in lines), np.zeros(n))
    w = np.hanning(n + 1)[:n]
    return np.abs(np.fft.rfft(x * w) / (w.sum() / 2)) ** 2 + floor


def test_a_race_line_beside_3x_does_not_pull_the_speed() -> None:
    """A 6309 at 1480 r/min (25.6 kHz, 32768 samples: 0.78 Hz bins): its 1× and its BPFO at
    3.037× — 1.2 % from 3×, inside the ±2 % where 3× is looked for — in the acceleration
    spectrum, no 2×. The median of two estimates is their mean, 0.6 % high, and put BPFO
    within a bin of 3× (the race then read as a shaft comb, the fault `unknown`); the orders
    disagree by more than a merged neighbour could pull, so 1× is believed."""
    fs, n, fr = 25600.0, 32768, 1480.0 / 60.0
    bpfo = lookup_bearing("6309").defect_multiples()["bpfo"]
    p = _power(fs, n, [(fr, 0.01), (bpfo * fr, 0.0017)], 1e-10)
    df = fs / n
    assert refine_speed(p[None, :], df, fr * 1.0002) == pytest.approx(fr, rel=0.001)


def test_without_1x_disagreeing_orders_are_still_their_median() -> None:
    """No 1× standing out, 2× pulled low by a neighbour (the CWRU 48 kHz ball fault's), 3×
    right: neither can be preferred on physics, so the speed is their median (the mean) — not
    the lower order, which read that recording 1.4 % low."""
    fs, n, fr = 800.0, 800, 30.0  # 1 Hz bins
    p = _power(fs, n, [(2 * fr - 0.9, 0.01), (3 * fr, 0.01)], 1e-10)
    got = refine_speed(p[None, :], 1.0, fr)
    assert (2 * fr - 0.9) / 2 < got < fr


def test_orders_that_agree_are_still_their_median() -> None:
    """1× and 3× of one shaft, both a quarter-bin off in opposite directions: within half a
    bin at 3×, they agree, and the speed is their mean."""
    fs, n, fr = 800.0, 800, 25.0  # 1 Hz bins
    p = _power(fs, n, [(fr - 0.05, 0.01), (3 * fr + 0.1, 0.003)], 1e-10)
    got = refine_speed(p[None, :], 1.0, fr)
    assert got == pytest.approx(fr, rel=0.002)


def _recording(tmp: Path, g: Any, kind: str, seed: int) -> Path:
    """The simulator's recording of ``rig`` (as ``pdm-edge simulate`` writes it) with the
    rig's lines of the machine added, as the script builds it."""
    fr = g.rpm / 60.0
    faults = [FaultSpec("unbalance", OUT.velocity_to_g(1.0, fr))]
    if kind != "healthy":
        faults.append(FaultSpec(kind, 10.0 * g.noise))
    spec = SimSpec(fs=g.fs, duration_s=g.duration, rpm=g.rpm, bearing=lookup_bearing(g.bearing),
                   channels=("x_g",), noise_rms_g=g.noise, resonance_hz=g.resonance,
                   faults=tuple(faults), seed=seed)  # fmt: skip
    x = simulate(spec)[:, 0]
    t = np.arange(x.size) / g.fs
    rng = np.random.default_rng([seed, 18])
    for make in g.structure:
        x = x + make(t, g.fs, fr, g.noise, rng)
    path = tmp / f"{g.name}_{kind}.csv"
    np.savetxt(path, x, fmt="%.6g", header=f"# sample_rate_hz={g.fs:g}\nx_g", comments="")
    return path


# Rig C's healthy machine is left out: its gear's mesh harmonics beating in the band are a
# train at 9× shaft with ± 1× sidebands and harmonics, 1.8 % from the 22205's BPFI; without a
# model (a healthy reference) it reads as an inner race on some seeds (docs/diagnosis.md §11,
# "Re-tested from outside").
CASES = [
    pytest.param(rig, kind, id=f"{rig.name}-{rig.bearing}-{rig.fs / 1000:g}kHz-{rig.rpm:g}rpm-{kind}")
    for rig in OUT.RIGS[:4]
    for kind in ("healthy", "bpfo", "bpfi", "bsf")
    if (rig.name, kind) != ("C", "healthy")
]  # fmt: skip


@pytest.mark.parametrize(("rig", "kind"), CASES)
def test_rigs_unlike_cwru_hold_the_targets(rig: Any, kind: str, tmp_path: Path) -> None:
    """Healthy (the rig's own lines near its defect frequencies) is no bearing fault, an outer
    and an inner race at 10 × the noise are named, a ball fault is not called a race; the speed
    is reported within 0.3 % of the rig's."""
    pl = pipeline_from_flags(nominal_rpm=rig.rpm, bearing=rig.bearing)
    path = _recording(tmp_path, rig, kind, 500 + len(kind))
    (res,) = diagnose_files([str(path)], pl)
    label = res.diagnosis.label
    speed = res.diagnosis.channels[0].shaft_speed_rpm
    assert speed == pytest.approx(rig.rpm, rel=0.003), (kind, speed)
    if kind == "healthy":
        assert not label.startswith("bearing_"), label
    elif kind == "bsf":
        assert label not in RACES, label
    else:
        assert label == TRUTH[kind], (kind, label)


@pytest.mark.parametrize(("at", "named"), [("kinematics", True), ("mains", False)])
def test_a_line_half_a_bin_from_a_mains_harmonic_is_not_the_mains(at: str, named: bool) -> None:
    """A 6203 at 5800 r/min, 2.93 Hz bins: its BPFI (478.2 Hz) is 0.6 bins from 480 Hz (the 4th
    harmonic of a 60 Hz motor's 2 × line pull). A tone's strongest bin is within half a bin of
    it, so an inner race there — harmonic, sidebands at ± 1× shaft — is named; the same family
    with its fundamental on 480 Hz is the motor's (it was `unknown` both ways: the tolerance
    was a whole bin)."""
    fs, n, fr = 96000.0, 32768, 5800.0 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    f1 = m["bpfi"] * fr if at == "kinematics" else 480.0
    lines = [(f1, 0.05), (2 * f1, 0.02), (f1 - fr, 0.01), (f1 + fr, 0.01)]
    env = _power(fs, n, lines, 1e-8)[:1200]
    df = fs / n
    v = judge_channel(None, env, df, fr, m, 30.0)
    assert (v.label == "bearing_inner_race") is named, v.reasons
    if not named:
        inner = v.family("inner_race")
        assert inner is not None and inner.status == "on_mains"


def test_a_mains_line_is_no_harmonic_of_a_race() -> None:
    """A 6311 at 990 r/min (BPFO 50.45 Hz): a stationary line at 50 Hz (two structural tones
    beating) and the motor's 2 × line pull at 100 Hz — as strong as an impact train's 2nd
    harmonic would be. The 100 Hz line is the motor's, whatever the bearing: no support, and
    the lone 50 Hz line is no outer race (it was named at confidence 1.00: rig E of
    docs/diagnosis.md §13, every healthy recording)."""
    fs, n, fr = 20000.0, 32768, 990.0 / 60.0
    m = lookup_bearing("6311").defect_multiples()
    env = _power(fs, n, [(50.0, 0.02), (100.0, 0.02)], 1e-8)[:1200]
    v = judge_channel(None, env, fs / n, fr, m, 30.0)
    assert v.label == "unknown", v.reasons
    # The same line with a 2nd harmonic off the mains (a real train at 51 Hz) is named.
    env = _power(fs, n, [(51.0, 0.02), (102.0, 0.02)], 1e-8)[:1200]
    assert judge_channel(None, env, fs / n, fr, m, 30.0).label == "bearing_outer_race"
