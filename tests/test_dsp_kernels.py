"""The compiled time-domain passes (pdm/dsp/kernels.py) against float64 numpy: known answers
for the moments, the windowed copy, min/max with NaN and inf, and the envelope's mean."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
from numpy.testing import assert_allclose, assert_array_equal

from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.dsp.kernels import envelope_less_mean, moments_windowed
from pdm.dsp.spectrum import hann

N = 16384
W = hann(N)


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 6) min, max, mean, central moments 2–4 in float64, and w·(x − mean)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    d = x64 - mean
    stats = np.stack(
        [x64.min(1), x64.max(1), mean[:, 0], (d**2).mean(1), (d**3).mean(1), (d**4).mean(1)],
        axis=1,
    )
    return stats, d * W


def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    d = np.empty_like(x)
    return moments_windowed([x[:2], x[2:]], W, d), d


def test_moments_and_windowed_copy_match_float64() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(N) / 25600.0
    x = np.stack(
        [
            rng.normal(0.0, 0.3, N),  # Gaussian noise
            rng.gamma(2.0, 1.0, N),  # skewed
            0.5 * np.sin(2 * np.pi * 100.0 * t) + 0.2,  # a sine on a bias
            np.where(rng.random(N) < 0.002, 5.0, 0.0) + rng.normal(0, 0.05, N),  # impacts
            np.linspace(-1e4, 1e4, N),  # a large ramp
        ]
    ).astype(np.float32)
    got, d = run(x)
    ref, ref_d = reference(x)
    assert_array_equal(got[:, :2], ref[:, :2])  # min and max exact
    assert_allclose(got[:, 2], ref[:, 2], rtol=1e-6, atol=1e-7 * np.abs(x).max())
    # moments in units of the spread (a symmetric row's third moment is 0 to rounding)
    sd = np.sqrt(ref[:, 3])
    assert_allclose(got[:, 3], ref[:, 3], rtol=1e-5)
    assert_allclose(got[:, 4] / sd**3, ref[:, 4] / sd**3, rtol=0, atol=1e-5)
    assert_allclose(got[:, 5] / sd**4, ref[:, 5] / sd**4, rtol=1e-5)
    # the FFT's input: about the float32 mean, which is within float32 rounding of the mean
    assert_allclose(d, ref_d, rtol=0, atol=2e-7 * np.abs(x).max())


def test_a_large_bias_does_not_bias_the_moments() -> None:
    """1 g of gravity under 1 mg of vibration: a float32 sum's mean is off by ~1e-7 g, which
    biases the moments taken about it (skewness by 3δ/σ ≈ 3e-4 and more); the kernel
    re-centres them on the exact mean."""
    rng = np.random.default_rng(1)
    x = (1.0 + rng.gamma(2.0, 1e-3, (4, N))).astype(np.float32)
    got, _d = run(x)
    ref, _ = reference(x)
    skew = got[:, 4] / got[:, 3] ** 1.5
    kurt = got[:, 5] / got[:, 3] ** 2
    assert_allclose(skew, ref[:, 4] / ref[:, 3] ** 1.5, rtol=1e-4)
    assert_allclose(kurt, ref[:, 5] / ref[:, 3] ** 2, rtol=1e-5)
    assert_allclose(skew, st.skew(x.astype(np.float64), axis=1), rtol=1e-4)


def test_nan_and_inf_rows_show_in_min_or_max() -> None:
    x = np.zeros((5, N), dtype=np.float32)
    x[0, 7] = np.nan
    x[1, 9] = -np.nan  # sign bit set
    x[2, 3] = np.inf
    x[3, 4] = -np.inf
    x[4, 5] = -0.0
    got, _ = run(x)
    for r in range(4):
        assert not (np.maximum(got[r, 1], -got[r, 0]) <= 1e6), r  # fails the validity check
    assert got[4, 0] == 0.0 and got[4, 1] == 0.0


def test_a_flat_window_of_any_value_has_no_shape() -> None:
    """A stuck channel at −0.002 g (not a float32 sum's exact multiple): variance exactly 0,
    so crest, kurtosis and skewness are NaN as for any flat window (the BLAS sums of the
    former passes left a rounding's variance: crest 1.0, kurtosis 1.0, skewness −1.0)."""
    fx = FeatureExtractor(25600.0, N, [ChannelSpec("x")], rpm=1500.0, envelope_band_hz=(2e3, 5e3))
    for v in (-0.002, 0.1, 1.0 / 3.0, 9.81):
        with np.errstate(all="raise"):
            r = fx.extract(np.full((1, N), v, dtype=np.float32)).as_dicts()[0]
        assert r["rms_g"] == 0.0 and r["crest"] is None and r["kurtosis"] is None, v
        assert r["skewness"] is None and r["mean_g"] == pytest.approx(v, rel=1e-7), v


def test_envelope_less_mean_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    m = 1568
    z = (rng.normal(size=(3, m)) + 1j * rng.normal(size=(3, m))).astype(np.complex64)
    h = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)).astype(np.float32)
    a = np.abs(z.astype(np.complex128))
    want = a - a.mean(axis=1, keepdims=True) * 2.0 * h
    assert_allclose(envelope_less_mean(z, h), want, rtol=0, atol=2e-6 * a.max())
