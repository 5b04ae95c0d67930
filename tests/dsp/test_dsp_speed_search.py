"""Known answers of the per-window speed search (issue 18): the speed the harmonic series
1×-3× agrees on, whatever else stands in a harmonic's search range.

Analytic windows: shaft harmonics, an interfering tone, white noise, at sample rates of
10-100 kHz and windows of 4096-65536 samples, the range ±5 % of a nominal speed (the quick
flag ``--nominal-rpm``). A speed is right when it is within half a bin of the 3rd harmonic
(``df / 6``, Hz): every order and defect line read from it then falls in its own bin.

Which fail on the strategy before (the strongest of 1×-3× wins; commit 80959fc): every
2×LF and blade-pass case (the 2×LF line or the blade pass wins); the 1×-only, 2×-dominant
and noise-only cases and the simulator grid pass on both. Where no speed stands out of the
noise (noise alone, or a shaft line too weak to tell from it), the search reads the
strongest harmonic's peak as before, not the nominal speed: on the CWRU drive end at 48 kHz
most windows are so, and the nominal the extractor knows is the middle of the range, not
the machine's (tests/diagnosis/test_cwru.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

#: (sample rate Hz, window samples)
SHAPES = [(10000.0, 4096), (12000.0, 8192), (25600.0, 16384), (48000.0, 16384), (100000.0, 65536)]


def found_rpm(
    fs: float,
    n: int,
    nominal_rpm: float,
    tones: list[tuple[float, float]],
    n_ch: int = 1,
    noise_g: float = 0.01,
    seed: int = 0,
) -> float:
    """The speed (r/min) found in one window of ``tones`` ((Hz, amplitude g), each at a
    random phase on every channel) plus white noise, searched within ±5 % of nominal."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = noise_g * rng.standard_normal((n_ch, n))
    for f, a in tones:
        x += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (n_ch, 1)))
    fx = FeatureExtractor(
        fs,
        n,
        [ChannelSpec(f"c{c}", None) for c in range(n_ch)],
        rpm_range=(0.95 * nominal_rpm, 1.05 * nominal_rpm),
        envelope_band_hz=(1000.0, 3000.0),
    )
    return fx.extract(x.astype(np.float32)).shaft_speed_rpm


def assert_within_half_a_3x_bin(got_rpm: float, true_rpm: float, fs: float, n: int) -> None:
    err_hz = abs(got_rpm - true_rpm) / 60.0
    assert err_hz <= fs / n / 6, (got_rpm, true_rpm, f"{err_hz * 6 * n / fs:.2f} bins of 3x")


@pytest.mark.parametrize(("fs", "n"), SHAPES)
@pytest.mark.parametrize(("rpm", "line_hz"), [(2960.0, 50.0), (3560.0, 60.0)])
@pytest.mark.parametrize("n_ch", [1, 3])
def test_a_2lf_line_stronger_than_the_shafts_2x_does_not_move_the_speed(
    fs: float, n: int, rpm: float, line_hz: float, n_ch: int
) -> None:
    """A 2-pole motor: 2× at 98.7 Hz (118.7 Hz), the electrical line at 2×LF = 100 Hz
    (120 Hz) in the 2× range, ten times the shaft's 2×; the nominal speed is synchronous."""
    f0 = rpm / 60
    tones = [(f0, 0.1), (2 * f0, 0.05), (3 * f0, 0.05), (2 * line_hz, 0.5)]
    got = found_rpm(fs, n, 60 * line_hz, tones, n_ch=n_ch)
    assert_within_half_a_3x_bin(got, rpm, fs, n)


def _blade_cases() -> list[tuple[float, int, float]]:
    # (fs, n, rpm): the shaft 2 % above nominal, a blade pass three bins below its 3× and
    # still inside the 3× range (2.85-3.15 × nominal); where the range is narrower than
    # that at this resolution, a tone there cannot be told from the 3× by any method.
    cases = []
    for fs, n in SHAPES:
        for rpm in (600.0, 1480.0, 3000.0, 6000.0):
            f0 = 1.02 * rpm / 60
            if 3 * f0 - 3 * fs / n >= 2.85 * rpm / 60:
                cases.append((fs, n, rpm))
    return cases


@pytest.mark.parametrize(("fs", "n", "rpm"), _blade_cases())
def test_a_blade_pass_in_the_3x_range_does_not_move_the_speed(
    fs: float, n: int, rpm: float
) -> None:
    """A fan: 1× and 2× of the shaft, and a blade pass (or a structural resonance) in the
    3× range four times stronger than the 1×; no 3× of the shaft."""
    f0 = 1.02 * rpm / 60
    tones = [(f0, 0.1), (2 * f0, 0.04), (3 * f0 - 3 * fs / n, 0.4)]
    assert_within_half_a_3x_bin(found_rpm(fs, n, rpm, tones), 60 * f0, fs, n)


@pytest.mark.parametrize(("fs", "n"), SHAPES)
@pytest.mark.parametrize("rpm", [600.0, 1480.0, 3000.0, 6000.0])
@pytest.mark.parametrize("kind", ["1x only", "2x dominant"])
def test_a_machine_with_one_dominant_harmonic(fs: float, n: int, rpm: float, kind: str) -> None:
    """Unbalance (1× alone) and misalignment (2× twice the 1×), the shaft 2 % above nominal."""
    f0 = 1.02 * rpm / 60
    tones = [(f0, 0.1)] if kind == "1x only" else [(f0, 0.05), (2 * f0, 0.1)]
    assert_within_half_a_3x_bin(found_rpm(fs, n, rpm, tones), 60 * f0, fs, n)


@pytest.mark.parametrize(("fs", "n"), SHAPES)
@pytest.mark.parametrize("rpm", [600.0, 1480.0, 6000.0])
def test_noise_alone_gives_a_speed_in_the_range(fs: float, n: int, rpm: float) -> None:
    """No speed stands out of noise: the strongest harmonic's peak, as before (within 2 % of
    the range), not a speed outside it."""
    for seed in range(3):
        got = found_rpm(fs, n, rpm, [], noise_g=0.1, seed=seed)
        assert 0.95 * 0.98 * rpm <= got <= 1.05 * 1.02 * rpm


@pytest.mark.parametrize(("fs", "n"), SHAPES)
def test_a_window_says_whether_its_speed_was_measured(fs: float, n: int) -> None:
    """``FeatureFrame.speed_measured``: True where the shaft's 1×-3× stand out (the speed
    found), False in noise alone (the strongest peak's, no measurement: the diagnosis's
    averages take such a window at the segment's speed), True for a speed given; the
    nominal speed (the searched range's middle) goes with every searched window."""
    rpm = 1480.0
    rng = np.random.default_rng(5)
    t = np.arange(n) / fs
    f0 = 1.01 * rpm / 60
    shaft = 0.1 * np.sin(2 * np.pi * f0 * t) + 0.05 * np.sin(2 * np.pi * 2 * f0 * t + 1.0)
    noise = 0.01 * rng.standard_normal(n)
    searched = FeatureExtractor(fs, n, [ChannelSpec("c0", None)], rpm_range=(0.95 * rpm, 1.05 * rpm),
                                envelope_band_hz=(1000.0, 3000.0))  # fmt: skip
    given = FeatureExtractor(fs, n, [ChannelSpec("c0", None)], rpm=rpm,
                             envelope_band_hz=(1000.0, 3000.0))  # fmt: skip
    lines = searched.extract((shaft + noise).astype(np.float32)[None, :])
    alone = searched.extract(noise.astype(np.float32)[None, :])
    fixed = given.extract(noise.astype(np.float32)[None, :])
    assert (lines.speed_measured, alone.speed_measured, fixed.speed_measured) == (True, False, True)
    assert lines.nominal_speed_rpm == alone.nominal_speed_rpm == rpm
    assert np.isnan(fixed.nominal_speed_rpm)
    assert_within_half_a_3x_bin(lines.shaft_speed_rpm, 60 * f0, fs, n)


def test_simulated_machines_across_a_wide_grid() -> None:
    """The simulator (pdm/sources/simulator): speeds 600-6000 r/min, rates 10-100 kHz,
    windows 4096-32768, 1-3 channels, unbalance, misalignment or looseness (1×-10× and ½×),
    half of them with a bearing fault ringing a resonance, noise 0.01-0.1 g; the nominal
    speed up to 4 % off the true one. Windows holding at least four revolutions (fewer put
    the ½× of looseness within a Hann main lobe of the 1×, and the 1× within two bins of
    DC): the speed within half a bin of the 3rd harmonic on ≥ 99 %."""
    rng = np.random.default_rng(18)
    errors = []
    while len(errors) < 240:
        fs = float(rng.choice([10000.0, 12000.0, 20000.0, 25600.0, 48000.0, 51200.0, 100000.0]))
        n = int(rng.choice([4096, 8192, 16384, 32768]))
        rpm = float(rng.uniform(600.0, 6000.0))
        if rpm / 60 * n / fs < 4:
            continue
        shaft = str(rng.choice(["unbalance", "misalignment", "looseness"]))
        faults = [FaultSpec(shaft, float(rng.uniform(0.05, 0.5)))]
        if rng.random() < 0.5:
            kind = str(rng.choice(["bpfo", "bpfi", "bsf"]))
            faults.append(FaultSpec(kind, float(rng.uniform(0.2, 2.0))))
        n_ch = int(rng.integers(1, 4))
        spec = SimSpec(
            fs=fs,
            duration_s=3 * n / fs,
            rpm=rpm,
            channels=tuple(f"c{c}" for c in range(n_ch)),
            noise_rms_g=float(rng.uniform(0.01, 0.1)),
            resonance_hz=float(rng.uniform(0.15, 0.4)) * fs,
            faults=tuple(faults),
            seed=len(errors),
        )
        x = simulate(spec).T.astype(np.float32)
        nominal = rpm * (1 + rng.uniform(-0.04, 0.04))
        fx = FeatureExtractor(
            fs,
            n,
            [ChannelSpec(f"c{c}", lookup_bearing("6205")) for c in range(n_ch)],
            rpm_range=(0.95 * nominal, 1.05 * nominal),
            envelope_band_hz=(0.1 * fs, 0.3 * fs),
        )
        frames = fx.extract_batch(np.stack([x[:, k * n : (k + 1) * n] for k in range(3)]))
        errors += [abs(f.shaft_speed_rpm - rpm) / 60 / (fs / n / 3) for f in frames]
    within = np.mean(np.array(errors) <= 0.5)
    assert within >= 0.99, f"{within:.3f} of {len(errors)} windows within half a 3x bin"
