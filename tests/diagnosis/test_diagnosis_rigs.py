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
from pdm.diagnosis.evidence import FamilyEvidence, LineEvidence
from pdm.diagnosis.shaft_speed import refine_speed
from pdm.diagnosis.verdict import judge_channels
from pdm.dsp.bearings import lookup_bearing
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

REPO = Path(__file__).resolve().parents[2]
RACES = ("bearing_outer_race", "bearing_inner_race")
TRUTH = {"healthy": "", "bpfo": "bearing_outer_race", "bpfi": "bearing_inner_race",
         "bsf": "bearing_ball"}  # fmt: skip


def _script(name: str) -> ModuleType:
    """scripts/NAME.py as a module: the rigs and the sweep's cases, one definition each."""
    spec = importlib.util.spec_from_file_location(name, REPO / f"scripts/{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)
    spec.loader.exec_module(mod)
    return mod


OUT = _script("diagnosis_outside")


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


@pytest.mark.parametrize(
    ("n", "at", "sidebands", "named"),
    [
        (32768, "kinematics", True, True),
        (16384, "kinematics", True, True),  # score's window: 478.2 Hz in the 480.5 Hz bin
        (32768, "mains", True, True),
        (32768, "mains", False, False),
        (16384, "kinematics", False, False),
    ],
)
def test_a_mains_line_yields_to_a_train_turning_with_the_shaft(
    n: int, at: str, sidebands: bool, named: bool
) -> None:
    """A 6203 at 5800 r/min: its BPFI (478.2 Hz) is 1.8 Hz from 480 Hz (the 4th harmonic of a
    60 Hz motor's 2 × line pull): 0.6 of a 2.93 Hz bin, 0.3 of a 5.86 Hz bin (the window
    ``score``'s model used, where rig D's inner races were `unknown`, docs/diagnosis.md §13).
    The motor's pull is a stationary line whose harmonics fall on mains harmonics too; it is
    not modulated at shaft rate. A line there with a 2nd harmonic alone is the motor's
    (``on_mains``); with a sideband pair at ± 1× shaft about it, it is a train turning with
    the shaft — an inner race, named wherever the line sits."""
    fs, fr = 96000.0, 5800.0 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    f1 = m["bpfi"] * fr if at == "kinematics" else 480.0
    lines = [(f1, 0.05), (2 * f1, 0.02)]
    lines += [(f1 - fr, 0.01), (f1 + fr, 0.01)] if sidebands else []
    df = fs / n
    env = _power(fs, n, lines, 1e-8)[: int(1500 / df)]
    v = judge_channel(None, env, df, fr, m, 30.0)
    assert (v.label == "bearing_inner_race") is named, v.reasons
    if not named:
        inner = v.family("inner_race")
        assert inner is not None and inner.status == "on_mains", inner


@pytest.mark.parametrize(
    ("order", "baseline", "named"),
    [(9.0, False, False), (9.0, True, True), (None, False, True)],
)
def test_a_train_locked_to_the_shaft_is_no_race_without_a_reference(
    order: float | None, baseline: bool, named: bool
) -> None:
    """A 22205 at 740 r/min (BPFI 8.815 × shaft) beside a 9-tooth gear: the mesh's harmonics
    beat in the band at 9.000 × shaft, with ± 1× sidebands (8×, 10×) and a 2nd harmonic (18×)
    — an inner race's pattern, 2.1 % from kinematics, inside the 3 % slip (rig C of
    docs/diagnosis.md §13: an outer-race fault and healthy recordings read as inner race).
    Every line of it sits on a shaft order, as a source turning with the shaft puts them; a
    bearing's lines slip off them. Without the machine's healthy spectra it is not named
    (``shaft_locked``); with them the mesh is the reference's and the rule stands aside; the
    same pattern at 1 % off kinematics (8.903 ×, off every order) is an inner race."""
    fs, n, fr = 10000.0, 16384, 740.0 / 60.0
    m = lookup_bearing("22205").defect_multiples()
    f1 = (order if order is not None else 1.01 * m["bpfi"]) * fr
    lines = [(f1, 0.02), (2 * f1, 0.012), (f1 - fr, 0.008), (f1 + fr, 0.008)]
    df = fs / n
    env = _power(fs, n, lines, 1e-9)[: int(800 / df)]
    healthy = (None, np.full((1, env.size), 1e-9)) if baseline else None
    (v,) = judge_channels(None, env[None], df, fr, m, 30.0, healthy=healthy)
    assert (v.label == "bearing_inner_race") is named, v.reasons
    if not named:
        inner = v.family("inner_race")
        assert inner is not None
        assert inner.status == "shaft_locked", inner.note
        assert "9× shaft" in inner.note


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


def test_a_train_beside_a_stronger_line_of_the_machine_is_found() -> None:
    """A 6309 at 782 r/min, 20 kHz: an inner-race train (BPFI with its 2nd harmonic and ± 1×
    sidebands) and, 2 % above it, a line of the machine five times as strong (two tones beating
    in the band: no harmonic, no sidebands). The comb search settles on the stronger line, which
    is no impact train (``lone_line``); the inner race beside it was missed (sweep case 37 of
    scripts/diagnosis_rig_sweep.py). Looked at again with that line left out, it is named;
    the line alone is still no fault."""
    fs, n, fr = 20000.0, 65536, 782.0 / 60.0
    m = lookup_bearing("6309").defect_multiples()
    f1 = m["bpfi"] * fr
    train = [(f1, 0.01), (2 * f1, 0.006), (f1 - fr, 0.003), (f1 + fr, 0.003)]
    tone = [(1.02 * f1, 0.05)]
    df = fs / n
    for lines, label in ((train + tone, "bearing_inner_race"), (tone, "unknown")):
        env = _power(fs, n, lines, 1e-6)[: int(400 / df)]
        v = judge_channel(None, env, df, fr, m, 30.0)
        assert v.label == label, v.reasons


def test_a_family_that_does_not_lead_an_unexplained_line_is_not_named() -> None:
    """An NU206 at 2950 r/min: an outer race's train (BPFO and its 2nd harmonic) and a ball's
    lines five times as strong — 2×BSF with its 2nd harmonic but no FTF sideband, so no ball
    (``no_ftf_sideband``). The race's lines together do not lead the unexplained 2×BSF: below
    the confidence floor (a margin under 0 dB, 0.44) the type is uncertain, where a family was
    named at a confidence of a few per cent (rig B's ball at 0.02, docs/diagnosis.md §13). A
    line alone that strong, with no harmonic, is a stationary line of the machine (a train
    would show its 2nd harmonic): the race is named beside it; and named alone."""
    fs, n, fr = 51200.0, 32768, 2950.0 / 60.0
    m = lookup_bearing("NU206").defect_multiples()
    f_o, f_b = m["bpfo"] * fr, 2 * m["bsf"] * fr
    race = [(f_o, 0.004), (2 * f_o, 0.003)]
    df = fs / n
    for lines, label in (
        ([*race, (f_b, 0.02), (2 * f_b, 0.015)], "bearing_uncertain"),
        ([*race, (1.01 * m["bpfi"] * fr, 0.02)], "bearing_outer_race"),
        (race, "bearing_outer_race"),
    ):
        env = _power(fs, n, lines, 2e-8)[: int(1200 / df)]
        v = judge_channel(None, env, df, fr, m, 16.0)
        assert v.label == label, v.reasons
        if label == "bearing_uncertain":
            assert "do not lead 2×BSF" in v.reasons[0], v.reasons


def test_an_outer_race_slipped_onto_a_shaft_order_is_still_named() -> None:
    """A 6203's BPFO (3.05 ×) slips onto 3 × at 1.6 %, its harmonics onto 6 × and 9 ×: a
    line's harmonics on shaft orders prove nothing (any line on an order has them there), so
    without shaft-rate sidebands on orders it is no source turning with the shaft — the outer
    race is named (it was `shaft_locked`, sweep cases 127 and 154 of pdm.tools.diagnosis_sweep
    at 270 cases)."""
    fs, n, fr = 12000.0, 16384, 2249.0 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    f1 = 3.0 * fr
    df = fs / n
    env = _power(fs, n, [(f1, 0.02), (2 * f1, 0.012), (3 * f1, 0.01)], 1e-8)[: int(500 / df)]
    v = judge_channel(None, env, df, fr, m, 30.0)
    assert v.label == "bearing_outer_race", v.reasons


def test_the_unbalance_reason_never_reads_zero_mm_s() -> None:
    """With a model the 1× is judged over the machine's healthy 1× (docs/diagnosis.md §6): a
    steady 1 mm/s unbalance grew by nothing, and the reason read "1× 0.00 mm/s". It now says
    the line is not significant, and a velocity under 0.005 mm/s reads "below 0.01 mm/s"."""
    fr = 24.67
    for sig, amp, want, never in (
        (False, 0.0, "1× not significant (+1.0 dB", "0.00 mm/s"),
        (True, 1e-5, "1× below 0.01 mm/s", "0.00 mm/s"),
        (True, 0.0213, "1× 0.95 mm/s", "below"),
    ):
        one = LineEvidence("1×", "order", fr, fr, amp, 1.0 if not sig else 20.0, 4.0, sig)
        vel = amp * 9806.65 / (2 * np.pi * fr) / np.sqrt(2) if sig else 0.0
        f = FamilyEvidence(
            "unbalance", False, -np.inf, fr, 0.0, int(sig), 0, (one,), 0, "no_shape", vel, 2.8
        )
        assert want in f.note and never not in f.note, f.note


def test_a_seeded_sweep_of_machines_with_lines_near_defect_frequencies_holds_the_targets() -> None:
    """Issue 18's targets on a seeded draw of scripts/diagnosis_rig_sweep.py's machines (seed
    1, not the script's default 0): bearings of three types, 600–6000 r/min, 10–100 kHz,
    resonances and noise at random, faults at 4–15 × the noise, and on every recording a
    strong line of the machine placed near BPFO or BPFI on purpose (the motor's pull, a blade
    pass or a gear's mesh on a shaft order, two tones beating). The race named on ≥ 90 % and
    never the wrong one, a ball not called a race on ≥ 75 %, a healthy machine not called a
    bearing fault on ≥ 95 %. The larger sweep: ``python scripts/diagnosis_rig_sweep.py``
    (docs/diagnosis.md §13)."""
    sw = _script("diagnosis_rig_sweep")
    results = [sw.run_case(c) for c in sw.make_cases(15, seed=1)]
    wrong = [f"{r['case'].label}: {r['label']} — {r['reason']}" for r in results if sw.is_wrong(r)]
    t = sw.tally(results)
    race, n_race = t["race"]
    ball, n_ball = t["ball_not_race"]
    healthy, n_healthy = t["healthy_ok"]
    assert n_race >= 6 and n_ball >= 3 and n_healthy >= 6, t  # the draw holds every kind
    assert race >= 0.9 * n_race and t["wrong_race"][0] == 0, wrong
    assert ball >= 0.75 * n_ball, wrong
    assert healthy >= 0.95 * n_healthy, wrong


@pytest.mark.parametrize(
    ("prominence_db", "label"), [(6.1, "bearing_uncertain"), (8.0, "bearing_outer_race")]
)
def test_a_family_named_less_likely_right_than_not_is_uncertain(
    prominence_db: float, label: str
) -> None:
    """A 6203 (the CWRU fan end's bearing) at 1784 r/min: an outer race whose fundamental stands
    0.1 dB over its 6 dB minimum, with a harmonic as strong — a confidence of 0.45, less likely
    right than not. Below the floor (0.5) it is ``bearing_uncertain``, not named: the CWRU
    48 kHz ball fault B007 read so on the fan end (with the pipeline's automatic band) was the
    machine's `bearing_outer_race 0.45`. At 8 dB it is named."""
    fs, n, fr = 48000.0, 32768, 1784.0 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    df = fs / n
    f1 = round(m["bpfo"] * fr / df) * df  # on a bin: the line's peak is its amplitude²
    floor = 1e-8
    a = np.sqrt(floor * (10 ** (prominence_db / 10) - 1))
    env = _power(fs, n, [(f1, a), (2 * f1, a)], floor)[: int(400 / df)]
    v = judge_channel(None, env, df, fr, m, 30.0)
    assert v.label == label, v.reasons
    if label == "bearing_uncertain":
        assert "under the confidence floor" in v.reasons[0], v.reasons


# --- A race's series told from the machine's lines (issue 18's rig sweep, seed 0: 32/40 races
# named; docs/diagnosis.md §3 and §13). Each case below was a miss of the sweep, rebuilt from
# tones: before the rules changed it was `unknown` or `bearing_uncertain`.


def test_a_harmonic_of_another_series_is_not_the_familys() -> None:
    """A 6205 at 4634 r/min, 100 kHz (1.53 Hz bins): two tones beating 1.4 % above BPFO (no
    harmonic of note) and an inner race whose 2 × BPFI (836.5 Hz) sits 0.7 % from 3 × BPFO —
    within the comb's ± 1 bin of 3 × (1 + ε) BPFO, but 4 bins from 3 × the beat as found. The
    line is BPFI's exact 2nd harmonic, not the beat's 3rd: BPFO has no support, and the inner
    race is named (it was `bearing_uncertain`, "BPFO and BPFI both present": sweep case 77)."""
    fs, n, fr = 100000.0, 65536, 4634.0 / 60.0
    m = lookup_bearing("6205").defect_multiples()
    f_o, f_i = 1.014 * m["bpfo"] * fr, m["bpfi"] * fr
    lines = [(f_o, 0.02), (2 * f_o, 0.001), (f_i, 0.01), (2 * f_i, 0.008)]
    lines += [(f_i - fr, 0.003), (f_i + fr, 0.003)]
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-7)[: int(1000 / df)], df, fr, m, 10.0)
    assert v.label == "bearing_inner_race", v.reasons
    outer = v.family("outer_race")
    assert outer is not None and outer.status == "unsupported", outer


@pytest.mark.parametrize(
    ("series_hz", "named"), [(119.5, True), (120.0, False)]
)  # fmt: skip
def test_a_train_within_a_bin_of_a_mains_line_is_told_by_its_harmonics(
    series_hz: float, named: bool
) -> None:
    """A 6309 at 2363 r/min, 25.6 kHz (0.78 Hz bins): an outer race's BPFO at 119.5 Hz is within
    half a bin of 120 Hz (a 60 Hz motor's pull), where the fundamental alone cannot tell the two
    apart. Its 3rd harmonic, 358.5 Hz, is 1.9 bins from the pull's 360 Hz: the series is at its
    own rate, and the outer race is named (sweep case 96, `unknown` before). The same series
    exactly on 120, 240, 360 Hz is the pull's (`on_mains`)."""
    fs, n, fr = 25600.0, 32768, 2363.1 / 60.0
    m = lookup_bearing("6309").defect_multiples()
    f = series_hz
    lines = [(f, 0.02), (2 * f, 0.015), (3 * f, 0.012)]
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-8)[: int(450 / df)], df, fr, m, 10.0)
    assert (v.label == "bearing_outer_race") is named, v.reasons
    if not named:
        outer = v.family("outer_race")
        assert outer is not None and outer.status == "on_mains", outer


def test_a_train_within_a_bin_of_a_shaft_order_is_told_by_its_harmonics() -> None:
    """A 6309 at 1421 r/min, 10 kHz (0.61 Hz bins), a 9-tooth gear (9 × with ± 1×) and a
    running-speed comb in the envelope: BPFI (4.95 ×) is within a bin of 5 ×, where the
    fundamental alone cannot be told from the comb's line. Its 2nd harmonic is 1.2 Hz from
    10 × (two bins) and its ± 1× sidebands are a pair: a series at its own rate, the inner
    race (sweep case 32, `unknown` "sits on 5× shaft" before)."""
    fs, n, fr = 10000.0, 16384, 1421.0 / 60.0
    m = lookup_bearing("6309").defect_multiples()
    f = m["bpfi"] * fr
    lines = [(f, 0.02), (2 * f, 0.015), (f - fr, 0.006), (f + fr, 0.006)]
    lines += [(9 * fr, 0.03), (8 * fr, 0.01), (10 * fr, 0.01)]
    lines += [(5 * fr, 0.004), (4 * fr, 0.004), (3 * fr, 0.003)]
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-8)[: int(260 / df)], df, fr, m, 10.0)
    assert v.label == "bearing_inner_race", v.reasons


@pytest.mark.parametrize("with_race", [True, False])
def test_a_line_is_a_peak_not_the_skirt_of_a_stronger_one(with_race: bool) -> None:
    """A 6203 at 660 r/min, 48 kHz (0.18 Hz bins): a blade pass on 3 × (32.99 Hz) three bins
    under BPFO (33.58 Hz, with its 2nd and 3rd harmonics). The BPFO search range's strongest
    bin was the blade pass's skirt, no local maximum: BPFO "not significant" at +45 dB, and the
    outer race missed (sweep seed 1, case 26). The line is the strongest peak of the range: the
    outer race is named; the blade pass alone (with a weak 6 ×) is still no fault."""
    fs, n, fr = 48000.0, 262144, 659.8 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    f = m["bpfo"] * fr
    lines = [(3 * fr, 0.03), (6 * fr, 0.001)]
    lines += [(f, 0.01), (2 * f, 0.008), (3 * f, 0.006)] if with_race else []
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-8)[: int(120 / df)], df, fr, m, 10.0)
    assert v.label == ("bearing_outer_race" if with_race else "unknown"), v.reasons


@pytest.mark.parametrize("rpm", [3814.0, 4258.0, 4776.0, 5109.0])
def test_the_comb_sums_lines_not_the_skirts_beside_a_gears_mesh(rpm: float) -> None:
    """A 6006 (BPFO 4.588 ×) at 100 kHz, 3.05 Hz bins, and a 9-tooth gear whose mesh (9 ×, with
    ± 1×) sits 2 % under 2 × BPFO and is stronger than it. The comb search summed the mesh at
    2 × and, at the fundamental, the skirt of the real BPFO a bin and a half away: it settled
    there, BPFO read on a skirt was not significant, and the outer race was missed (sweep case
    91). Summing local maxima only, the comb settles on the train."""
    fs, n, fr = 100000.0, 32768, rpm / 60.0
    m = lookup_bearing("6006").defect_multiples()
    f = m["bpfo"] * fr
    lines = [(f, 0.01), (2 * f, 0.006), (9 * fr, 0.012), (8 * fr, 0.004), (10 * fr, 0.004)]
    df = fs / n
    env = _power(fs, n, lines, 1e-7)[: int(2.3 * f / df)]
    v = judge_channel(None, env, df, fr, m, 10.0)
    assert v.label == "bearing_outer_race", v.reasons


def test_a_ball_on_a_shaft_order_is_told_by_its_cage_sidebands() -> None:
    """A 6311 (2 × BSF = 4.01 ×) at 1413 r/min, 12 kHz, a 9-tooth gear in the envelope: the
    ball's 2 × BSF sits on 4 × where the envelope shows a running-speed comb, and was no
    family ("sits on 4× shaft"), so a few noise lines could make an inner race the only one
    present. A shaft harmonic is not modulated at the cage's rate: the ball's ± FTF pair about
    2 × BSF says the line is the ball's (sweep case 73, seeds 0 and 1)."""
    fs, n, fr = 12000.0, 32768, 1413.1 / 60.0
    m = lookup_bearing("6311").defect_multiples()
    f, ftf = 2 * m["bsf"] * fr, m["ftf"] * fr
    lines = [(f, 0.03), (2 * f, 0.02), (f - ftf, 0.01), (f + ftf, 0.01), (ftf, 0.01)]
    lines += [(9 * fr, 0.02), (8 * fr, 0.006), (10 * fr, 0.006)]
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-8)[: int(300 / df)], df, fr, m, 10.0)
    assert v.label == "bearing_ball", v.reasons


@pytest.mark.parametrize(
    ("race", "label"), [(True, "bearing_outer_race"), (False, "unknown")]
)  # fmt: skip
def test_a_train_behind_a_stronger_line_is_told_by_its_harmonics(race: bool, label: str) -> None:
    """A 6311 at 826 r/min, 51.2 kHz (0.39 Hz bins): a blade pass on 3 × (41.31 Hz) ten times
    an outer race's BPFO two bins above it (42.1 Hz). BPFO's main lobe merges with the blade
    pass: what is read there is the blade pass, against which the train's harmonics (84.2,
    126.3 Hz) are no impact train's — a lone line, and the race missed (sweep case 66). They are
    not the blade pass's harmonics (82.6, 123.9 Hz) but put a fundamental within its main
    lobe, standing out as a fundamental must: a train beneath the line, named. The blade pass
    with its own harmonics is still no fault."""
    fs, n, fr = 51200.0, 131072, 825.9 / 60.0
    m = lookup_bearing("6311").defect_multiples()
    f = m["bpfo"] * fr
    lines = [(3 * fr, 0.05)]
    lines += (
        [(f, 0.005), (2 * f, 0.004), (3 * f, 0.003)] if race else [(6 * fr, 0.004), (9 * fr, 0.003)]
    )
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-8)[: int(140 / df)], df, fr, m, 10.0)
    assert v.label == label, v.reasons


def test_a_train_merged_with_a_blade_pass_keeps_its_harmonics() -> None:
    """A 6203 at 2487 r/min, 20 kHz (1.22 Hz bins): BPFO (126.4 Hz) 1.7 bins above a blade pass
    on 3 × (124.35 Hz), its 2nd and 3rd harmonics as strong. The harmonics are 3 and 5 bins
    from 2 and 3 × the merged line found (not exact), but within its main lobe: still the
    outer race (sweep case 86, named before and after)."""
    fs, n, fr = 20000.0, 16384, 2487.0 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    f = m["bpfo"] * fr
    lines = [(3 * fr, 0.03), (f, 0.02), (2 * f, 0.02), (3 * f, 0.015)]
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-8)[: int(420 / df)], df, fr, m, 10.0)
    assert v.label == "bearing_outer_race", v.reasons


@pytest.mark.parametrize(
    ("outer_g", "label"), [(0.007, "bearing_uncertain"), (0.002, "bearing_inner_race")]
)  # fmt: skip
def test_both_races_present_within_6_db_are_uncertain(outer_g: float, label: str) -> None:
    """A 6205 at 1796 r/min, 12 kHz: an inner race (BPFI, 2×, ± 1× sidebands) and BPFO with its
    2nd harmonic 3 dB under it. One race's defect puts no line at the other's rate: both
    present within 6 dB of each other is `bearing_uncertain`, as when the other race only
    stands out (§3, *both races*) — the inner race's sidebands and support lifting its score
    6 dB over BPFO's named it (the CWRU 12 kHz ball fault B007's fan end, a 6203, read so after
    the comb summed lines: inner race 0.54). BPFO 14 dB under: the inner race."""
    fs, n, fr = 12000.0, 16384, 1796.0 / 60.0
    m = lookup_bearing("6205").defect_multiples()
    f_i, f_o = m["bpfi"] * fr, m["bpfo"] * fr
    lines = [(f_i, 0.01), (2 * f_i, 0.006), (f_i - fr, 0.008), (f_i + fr, 0.008)]
    lines += [(f_o, outer_g), (2 * f_o, 0.7 * outer_g)]
    df = fs / n
    v = judge_channel(None, _power(fs, n, lines, 1e-7)[: int(400 / df)], df, fr, m, 10.0)
    assert v.label == label, v.reasons
    if label == "bearing_uncertain":
        assert "stands out too" in v.reasons[0], v.reasons
