"""What is and is not an impact train (docs/diagnosis.md §3, "Lone lines" and "Both races"),
and the running speed read off the averaged spectra, against known answers.

Tables of simulated machines (``pdm.tools.diagnosis_sweep``'s cases, the project's window path):
healthy machines with a stationary line at a defect frequency are no bearing fault, real race
faults across bearings, speeds and rates are still named; the CWRU recordings in ../shared
with the quick flags (every column a 6205: the fan end's own 164 Hz line sits at the 6205's
BPFI). Nothing here is tuned to a recording.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from pdm.config import pipeline_from_flags
from pdm.diagnose import diagnose_files
from pdm.diagnosis import DiagnosisEngine, judge_channel
from pdm.diagnosis.shaft_speed import refine_speed
from pdm.diagnosis.verdict import judge_channels
from pdm.dsp.bearings import BEARINGS
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.processing import FeatureStream
from pdm.sources.base import Chunk
from pdm.sources.simulator import FaultSpec, SimSpec, simulate
from pdm.tools.diagnosis_sweep import Case, make_tone_cases, pipeline_for, run_case, tone_signal

REPO = Path(__file__).resolve().parents[2]
CWRU = REPO.parent / "shared" / "datasets" / "cwru"
RACES = {"bearing_outer_race", "bearing_inner_race"}


# --------------------------------------------------------------------------- speed


def _hann_line(n: int, k: float, amp2: float) -> np.ndarray:
    """Power of a Hann-windowed tone of power ``amp2`` at (fractional) bin ``k``."""
    x = np.arange(n) - k
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sinc(x) / (1.0 - x**2)
    w[np.abs(np.abs(x) - 1.0) < 1e-9] = 0.5
    return amp2 * w**2


def test_refine_speed_is_the_median_of_the_orders_not_the_strongest() -> None:
    """1×, 2×, 3× of a 29.93 Hz shaft at 1.465 Hz bins, and another line of the machine 1.1 bins
    under 2× (the healthy CWRU rig's 58.2 Hz beside its 59.9 Hz 2×), which makes 2× the most
    prominent and pulls its interpolated peak: the median of the three orders reads the shaft
    within 0.2 %; the most prominent alone read it 1 % low."""
    df, fr = 12000 / 8192, 1796.0 / 60.0
    n = 400
    p = np.full(n, 1e-9)
    for h, a2 in ((1, 1e-5), (2, 3e-5), (3, 1.5e-5)):
        p += _hann_line(n, h * fr / df, a2)
    p += _hann_line(n, 2 * fr / df - 1.1, 2.5e-5)
    got = refine_speed(p[None, :], df, 1797.0 / 60.0)
    assert got == pytest.approx(fr, rel=0.002)


def test_the_speed_reported_is_in_hertz_whatever_the_first_window_said() -> None:
    """The averages are in the first window's shaft orders; a first window whose tracked speed
    was 1 % low must not make the reported speed 1 % low."""
    spec = SimSpec(duration_s=16.0, faults=(FaultSpec("unbalance", 0.3),), seed=3)
    chans = [ChannelSpec(c, spec.bearing) for c in spec.channels]
    n = 65536
    x = simulate(spec).T.astype(np.float32)
    starts = range(0, x.shape[1] - n + 1, n // 2)
    engine = DiagnosisEngine(spec.fs, n, n // 2, chans)
    for i, s in enumerate(starts):
        rpm = spec.rpm * (0.99 if i == 0 else 1.0)  # the tracker's first estimate, 1 % off
        fx = FeatureExtractor(spec.fs, n, chans, rpm=rpm, envelope_band_hz=(2000.0, 6000.0))
        engine.update(fx.extract(x[:, s : s + n]))
    d = engine.judge()
    assert d.channels[0].shaft_speed_rpm == pytest.approx(spec.rpm, rel=0.002)


def test_a_line_beside_2x_does_not_pull_the_speed_on_the_simulator() -> None:
    """A 6205 machine at 1796 r/min (looseness: 1×, 2×, 3× …), 12 kHz, 8192-sample windows
    (1.46 Hz bins), the speed searched around it, and a stationary line of the machine 1.1
    bins under 2× (as the healthy CWRU rig's 58.2 Hz beside its 59.9 Hz): the speed reported
    is within 0.3 % (the most prominent order alone read 1769.5, −1.5 %)."""
    rpm, fs, n = 1796.0, 12000.0, 8192
    spec = SimSpec(fs=fs, duration_s=8.0, rpm=rpm, bearing=BEARINGS["6205"],
                   faults=(FaultSpec("looseness", 0.02),), seed=4)  # fmt: skip
    x = simulate(spec)
    t = np.arange(x.shape[0]) / fs
    x = x + 0.015 * np.sin(2 * np.pi * (2 * rpm / 60 - 1.1 * fs / n) * t)[:, None]
    c = _case("healthy", "6205", rpm, fs, 1.0)
    stream = FeatureStream(pipeline_for(c, n, (2000.0, 5000.0)), fs)
    for _wf in stream.feed([Chunk(x, fs, spec.start_time, spec.channels)]):
        pass
    assert stream.engine is not None
    d = stream.engine.judge()
    assert d.channels[0].shaft_speed_rpm == pytest.approx(rpm, rel=0.003)


# --------------------------------------------------------------------------- tones vs impacts


def _case(kind: str, bearing: str, rpm: float, fs: float, snr: float, **kw: object) -> Case:
    base = {
        "index": 0,
        "kind": kind,
        "bearing": bearing,
        "rpm": rpm,
        "fs": fs,
        "resonance_hz": round(min(max(0.25 * fs, 1500.0), 20000.0)),
        "noise_g": 0.02,
        "snr": snr,
        "slip": 0.01,
        "speed": "searched",
        "seed": 11,
    }
    base.update(kw)
    return Case(**base)  # type: ignore[arg-type]


#: Healthy machines with a stationary line at BPFI or BPFO: two tones in the band beating at
#: it, or the band's noise modulated sinusoidally at it. Five bearings, 600–6000 r/min,
#: 10–100 kHz, lines from barely to far above the floor.
TONES = [
    _case("tone", b, rpm, fs, snr, tone=t, tone_family=fam, tone_offset=off, slip=0.0)
    for b, rpm, fs, snr, t, fam, off in (
        ("6205", 1797.0, 12000.0, 1.0, "beat", "bpfi", 0.012),
        ("6203", 620.0, 25600.0, 2.5, "beat", "bpfi", -0.01),
        ("6309", 3000.0, 48000.0, 0.8, "am", "bpfi", 0.0),
        ("NU208", 5800.0, 100000.0, 2.0, "beat", "bpfo", 0.015),
        ("22210", 1200.0, 10240.0, 1.5, "am", "bpfo", -0.005),
        ("6003", 2400.0, 51200.0, 3.0, "am", "bpfi", 0.01),
        ("6205", 900.0, 48000.0, 2.9, "beat", "bpfo", 0.0),
        ("6309", 4500.0, 25600.0, 0.5, "beat", "bpfi", -0.015),
    )
]


@pytest.mark.parametrize(
    "case", TONES, ids=[f"{c.tone}-{c.tone_family}-{c.bearing}" for c in TONES]
)
def test_a_stationary_line_at_a_defect_frequency_is_no_bearing_fault(case: Case) -> None:
    r = run_case(case)
    assert r["outcome"] == "right", r


def test_the_tone_cases_of_the_sweep_are_no_bearing_fault() -> None:
    """The first 24 of ``python -m pdm.tools.diagnosis_sweep --tones N`` (drawn at random, seeded):
    none is called a fault (before the impact-train rule, 10 of them were)."""
    results = [run_case(c) for c in make_tone_cases(24)]
    wrong = [r for r in results if r["outcome"] != "right"]
    assert not wrong, wrong


def test_a_tone_case_puts_its_line_where_it_says() -> None:
    """The simulated line is at the family's frequency × (1 + offset): its envelope (here the
    beat of the two tones) peaks there."""
    c = TONES[0]
    x = tone_signal(c, int(c.fs * 2))[:, 0]
    env = np.abs(np.fft.rfft(np.abs(_analytic(x)) - np.abs(_analytic(x)).mean()))
    f = np.fft.rfftfreq(x.size, 1 / c.fs)
    want = BEARINGS["6205"].defect_multiples()["bpfi"] * (1 + c.tone_offset) * c.rpm / 60
    assert f[int(np.argmax(env[f < 1000]))] == pytest.approx(want, abs=1.0)


def _analytic(x: np.ndarray) -> np.ndarray:
    from scipy.signal import hilbert

    return np.asarray(hilbert(x))


#: Race faults that must still be named: five bearings, 600–6000 r/min, 10–100 kHz, impacts
#: 3–10 × the noise.
FAULTS = [
    _case(kind, b, rpm, fs, snr, seed=seed)
    for kind, b, rpm, fs, snr, seed in (
        ("bpfi", "6205", 1797.0, 12000.0, 4.0, 1),
        ("bpfi", "6203", 700.0, 25600.0, 6.0, 2),
        ("bpfi", "6309", 3000.0, 48000.0, 8.0, 3),
        ("bpfi", "NU208", 5500.0, 100000.0, 5.0, 4),
        ("bpfi", "22210", 1500.0, 51200.0, 10.0, 5),
        ("bpfi", "6003", 2400.0, 10240.0, 6.0, 6),
        ("bpfo", "6205", 1797.0, 48000.0, 4.0, 7),
        ("bpfo", "6309", 900.0, 12000.0, 6.0, 8),
        ("bpfo", "NU208", 4000.0, 25600.0, 8.0, 9),
        ("bpfo", "22210", 650.0, 100000.0, 5.0, 10),
    )
]


def test_real_race_faults_are_still_named() -> None:
    """At least 90 % named, none called the other race."""
    results = [run_case(c) for c in FAULTS]
    right = sum(r["outcome"] == "right" for r in results)
    assert right >= math.ceil(0.9 * len(results)), results
    assert not any(r["label"] in RACES and r["outcome"] == "wrong" for r in results), results


def test_tone_cases_differ_only_by_their_line() -> None:
    """A tone case is a healthy case plus its line: without it the machine is healthy too."""
    c = TONES[1]
    r = run_case(dataclasses.replace(c, tone=""))
    assert r["label"] == "unknown", r


# --------------------------------------------------------------------------- CWRU


@pytest.fixture(scope="module")
def cwru_dir() -> Path:
    if not (CWRU / "de12k").is_dir():
        pytest.skip(f"CWRU recordings not found at {CWRU} (see ../shared/datasets/cwru/README.md)")
    return CWRU


@pytest.mark.dataset
@pytest.mark.parametrize(
    ("folder", "stem"), [("de12k", "normal_0hp_part1of2_from48k"), ("de48k", "normal_0hp_part1of2")]
)
def test_cwru_healthy_with_the_quick_flags_is_no_fault(cwru_dir, folder, stem) -> None:
    """Every column read as a 6205: the fan end's 164 Hz line (no harmonic, sidebands not a
    symmetric pair) is a line of the machine, not an inner race; the speed is read within
    0.5 % of the 1796 r/min the recording states."""
    pl = pipeline_from_flags(nominal_rpm=1797.0, bearing="6205")
    (r,) = diagnose_files([str(cwru_dir / folder / f"{stem}.csv")], pl)
    assert r.diagnosis.label == "unknown", r.diagnosis.reasons
    fe = next(c for c in r.diagnosis.channels if c.channel == "FE_g")
    assert "not an impact train" in fe.reasons[0], fe.reasons
    assert fe.shaft_speed_rpm == pytest.approx(1796.0, rel=0.005)


@pytest.mark.dataset
@pytest.mark.parametrize("folder", ["de12k", "de48k"])
def test_cwru_ball_fault_is_not_a_confident_race_with_the_quick_flags(cwru_dir, folder) -> None:
    pl = pipeline_from_flags(nominal_rpm=1797.0, bearing="6205")
    (r,) = diagnose_files([str(cwru_dir / folder / "B007_0hp.csv")], pl)
    assert r.diagnosis.label not in RACES, r.diagnosis.reasons


# --------------------------------------------------------------------------- the rules alone


def _env(lines: list[tuple[float, float]], df: float, n: int = 1200) -> np.ndarray:
    """A flat 1e-6 g² envelope floor plus Hann-windowed lines (Hz, amplitude g)."""
    p = np.full(n, 1e-6)
    for f, amp in lines:
        k = f / df
        for b in range(int(k) - 3, int(k) + 4):
            d = b - k
            w = 1.0 if abs(d) < 1e-12 else np.sinc(d) / (1 - d * d)
            p[b] += (amp * w) ** 2
    return p


DF, FR = 0.5, 25.0
M6205 = BEARINGS["6205"].defect_multiples()
BPFI, BPFO = M6205["bpfi"] * FR, M6205["bpfo"] * FR


@pytest.mark.parametrize(
    ("lines", "label"),
    [
        # an impact train: 2× at half the fundamental (the bound 1/k), shaft sidebands
        ([(BPFI, 0.02), (2 * BPFI, 0.01)], "bearing_inner_race"),
        # a symmetric sideband pair, no harmonic: the shaft's modulation of a train
        ([(BPFI, 0.02), (BPFI - FR, 0.006), (BPFI + FR, 0.006)], "bearing_inner_race"),
        # a beat of two equal tones: 2× at a fifth of the fundamental (and its noise-level 3×)
        ([(BPFI, 0.02), (2 * BPFI, 0.004)], "unknown"),
        # one-sided "sidebands" 4 Hz off symmetry (the CWRU fan end's 164 Hz line)
        ([(BPFI, 0.02), (BPFI - FR - 4.0, 0.006), (BPFI + FR, 0.006)], "unknown"),
        # a one-sided sideband only
        ([(BPFI, 0.02), (BPFI + FR, 0.006)], "unknown"),
        # "sidebands" both 0.65 bins up: 1.3 bins askew, interpolated, and symmetric on the
        # bins found (tones beating in the band: the CWRU fan end's 164 Hz line is 1.5 bins
        # askew interpolated, 0 on its bins); a real modulation's pair is symmetric to
        # hundredths of a bin
        ([(BPFI, 0.02), (BPFI - FR + 0.65 * DF, 0.006), (BPFI + FR + 0.65 * DF, 0.006)], "unknown"),
        # an outer race: its 2nd harmonic as a train makes it
        ([(BPFO, 0.02), (2 * BPFO, 0.012)], "bearing_outer_race"),
        # an outer race with the inner race's line standing out too (within 6 dB): a rolling
        # element striking both races, or damage on both — no confident race
        ([(BPFO, 0.02), (2 * BPFO, 0.012), (BPFI, 0.01)], "bearing_uncertain"),
        # ... but far weaker (more than 6 dB under): the outer race
        ([(BPFO, 0.02), (2 * BPFO, 0.012), (BPFI, 0.004)], "bearing_outer_race"),
    ],
    ids=[
        "train",
        "pair",
        "beat",
        "asymmetric",
        "one-sided",
        "askew-interpolated",
        "outer",
        "both-races",
        "both-races-far",
    ],
)
def test_what_is_an_impact_train(lines: list[tuple[float, float]], label: str) -> None:
    v = judge_channel(None, _env(lines, DF), DF, FR, M6205, 30.0)
    assert v.label == label, v.reasons
    if label == "unknown":
        assert "not an impact train" in v.reasons[0], v.reasons
    if label == "bearing_uncertain":
        assert "a defect of one race puts no line at the other's rate" in v.reasons[0]


def test_a_sidebands_mirror_need_only_stand_out_of_the_floor() -> None:
    """Three windows averaged: a significant −1× sideband and its +1× mirror 3.9 dB over the
    floor, under the statistics' threshold for a line alone — the predicted twin of one
    found: a pair, the inner race named. Without the mirror: a lone line."""
    lines = [(BPFI, 0.02), (BPFI - FR, 0.006), (BPFI + FR, 0.0012)]
    v = judge_channel(None, _env(lines, DF), DF, FR, M6205, 3.0)
    inner = v.family("inner_race")
    assert inner is not None
    mirror = next(ln for ln in inner.lines if ln.name == "BPFI 1× + 1×shaft")
    assert 3.0 < mirror.prominence_db < mirror.threshold_db and not mirror.significant
    assert v.label == "bearing_inner_race", v.reasons
    alone = judge_channel(None, _env(lines[:2], DF), DF, FR, M6205, 3.0)
    assert alone.label == "unknown", alone.reasons


#: The carrier and the +1× sideband are found on the bins of 135.5 and 160.5 Hz (BPFI at
#: 270.76 bins of 0.5 Hz, the comb's offset +0.06 %): the −1× is expected at 110.46 Hz, its
#: search range ± 1.25 bins (the speed known to 0.5 %) reaching the bins 110.0–111.0 Hz. A
#: line 1.3 bins above the range's upper edge puts its Hann skirt on that edge bin, 6 dB over
#: the floor, rising out of the range: no local maximum, no line of the range's own. (Until
#: 2026-12-07 the comb's offset was the lowest of its tied run, −0.4 %, and the range
#: 109.5–110.5 Hz: the edge, and this test's line, were a bin lower.)
SKIRTED = 111.0
BESIDE = (SKIRTED + 1.3 * DF, 0.006)


def test_a_sideband_on_the_skirt_of_a_line_beside_its_range_is_no_pair() -> None:
    """Main took that skirt for the −1× mirror (3 dB, any line's minimum; symmetric on the
    bins found, interpolated clipped to half a bin: 0.74 bins askew) and named the inner
    race. A sideband must be a line: a local maximum standing out by itself."""
    v = judge_channel(
        None, _env([(BPFI, 0.02), (BPFI + FR, 0.006), BESIDE], DF), DF, FR, M6205, 30.0
    )
    inner = v.family("inner_race")
    assert inner is not None
    low = next(ln for ln in inner.lines if ln.name == "BPFI 1× − 1×shaft")
    assert low.found_hz == SKIRTED and low.prominence_db > 3.0 and not low.significant
    assert v.label == "unknown", v.reasons
    assert "not an impact train" in v.reasons[0], v.reasons


def test_a_real_pair_beside_a_line_is_still_a_pair() -> None:
    """The same line beside the −1× range, and the real −1× sideband 1.5 bins under it: a
    local maximum of its own, the pair symmetric — the inner race."""
    lines = [(BPFI, 0.02), (BPFI - FR, 0.006), (BPFI + FR, 0.006), BESIDE]
    v = judge_channel(None, _env(lines, DF), DF, FR, M6205, 30.0)
    assert v.label == "bearing_inner_race", v.reasons


@pytest.mark.parametrize("above_bins", [1.6, 1.7, 1.8, 1.9, 2.2, 2.4])
def test_a_real_pair_with_a_line_two_bins_beside_its_lower_sideband(above_bins: float) -> None:
    """The real −1× sideband (110.38 Hz) and a line as strong 1.6–2.4 bins above it (beside
    the symmetric bin 110.5 Hz): the pair is read on its own bins. A line's peak is the bin
    nearest it, so a range of ± h bins about the expected place is the bins nearest its ends
    (``np.rint``); taken outwards (floor and ceil) it reached half a bin further, took the
    neighbour's peak (111.5 Hz) for the −1× and lost the pair."""
    beside = (SKIRTED - DF + above_bins * DF, 0.006)
    lines = [(BPFI, 0.02), (BPFI - FR, 0.006), (BPFI + FR, 0.006), beside]
    v = judge_channel(None, _env(lines, DF), DF, FR, M6205, 30.0)
    assert v.label == "bearing_inner_race", v.reasons


def _healthy_env(lines: list[tuple[float, float]]) -> np.ndarray:
    """The machine's healthy envelope as a model's baseline hands it over: its lines only (no
    floor), widened by a bin (pdm.diagnosis.baseline)."""
    p = _env(lines, DF) - 1e-6
    return np.maximum(p, np.maximum(np.r_[0.0, p[:-1]], np.r_[p[1:], 0.0]))


#: A stationary line of the machine 1.6 bins above the BPFI, in its healthy spectra too.
MACHINE_LINE = [(BPFI + 1.6 * DF, 0.01)]


@pytest.mark.parametrize(
    ("extra", "label"),
    [
        # an inner race's carrier merged with the machine's line, its symmetric ± 1× pair
        ([(BPFI, 0.02), (BPFI - FR, 0.006), (BPFI + FR, 0.006)], "bearing_inner_race"),
        # the carrier alone, or with one sideband: no train
        ([(BPFI, 0.02)], "unknown"),
        ([(BPFI, 0.02), (BPFI + FR, 0.006)], "unknown"),
        # the machine's line alone
        ([], "unknown"),
    ],
    ids=["pair", "carrier", "one-sided", "machine"],
)
def test_a_carrier_merged_with_a_line_of_the_machine_is_read_at_its_sidebands_midpoint(
    extra: list[tuple[float, float]], label: str
) -> None:
    """Over the healthy spectra the carrier is found where it stands most over the line's
    skirt, a bin away from it (135.0 Hz, the train at 135.38): on the bins found its pair is
    2 bins askew, and main called the race a lone line — which it names without the model.
    Its sidebands' midpoint lies within the line's main lobe: the inner race."""
    healthy = (None, _healthy_env(MACHINE_LINE)[None])
    env = _env(MACHINE_LINE + extra, DF)[None]
    v = judge_channels(None, env, DF, FR, M6205, 30.0, healthy=healthy)[0]
    assert v.label == label, v.reasons
    if extra:
        alone = judge_channels(None, env, DF, FR, M6205, 30.0)[0]
        assert alone.label == label, alone.reasons
