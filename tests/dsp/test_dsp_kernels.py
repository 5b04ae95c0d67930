"""The compiled time-domain passes (pdm/dsp/kernels.py) against float64 numpy: known answers
for the moments, the windowed copy, min/max with NaN and inf, and the envelope's mean."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats as st
from numpy.testing import assert_allclose, assert_array_equal

from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.dsp.kernels import (
    band_bins,
    envelope_pairs,
    median_into,
    moments_windowed,
    pair_spectra_parts,
    shaft_speeds_hz,
    time_features,
    tone_amplitudes,
)
from pdm.dsp.spectrum import HANN_LOBE_BINS, ToneSearch, hann, interpolate_peak, squared_parts

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
    """(rows, 6) as :func:`reference`, and the windowed copy; the rows in two blocks."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    d = np.empty_like(x)
    stats, minmax = moments_windowed([x[:2], x[2:]], W, d)
    return np.concatenate([minmax, stats], axis=1), d


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


def test_time_features_match_numpy_to_the_bit() -> None:
    """The compiled time features are the numpy formulas they replaced, bit for bit: the
    features of a trained model do not move. A flat row has no crest, kurtosis or skewness;
    a row with NaN, inf or a sample beyond the limit is no measurement (all NaN)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.2, 0.3, (7, N)).astype(np.float32)
    x[1] = 0.75  # flat
    x[2, 100] = np.nan
    x[3, 5] = -np.inf
    x[4, 9] = 1e9  # absurd
    x[5] = rng.gamma(2.0, 1.0, N)  # skewed
    m, minmax = moments_windowed([x], W, np.empty_like(x))
    values = np.full((7, 9), 7.0)
    stats = np.empty((7, 3))
    ok = time_features(m, minmax, N, 1000.0, values, stats)
    assert ok.tolist() == [True, True, False, False, False, True, True]
    assert_array_equal(values[:, 7:], 7.0)  # the other columns are left alone
    lo, hi = minmax.astype(np.float64).T
    mean, m2, m3, m4 = m.T
    peak = np.maximum(hi - mean, mean - lo)
    with np.errstate(invalid="ignore"):
        safe = np.where(m2 > 0, m2, np.nan)
        want = np.stack(
            [mean, np.sqrt(m2), peak, hi - lo, peak / np.sqrt(safe), m4 / (safe * safe),
             m3 / (safe * np.sqrt(safe))], axis=1,
        )  # fmt: skip
    want[~ok] = np.nan
    assert_array_equal(values[:, :7], want)
    assert np.isnan(values[1, 4:7]).all() and values[1, 0] == np.float32(0.75)
    want_stats = np.stack([lo, hi, mean * N], axis=1)
    want_stats[~ok] = np.nan
    assert_array_equal(stats, want_stats)


def test_envelope_pairs_match_numpy() -> None:
    """Each row's envelope less its mean's Hann kernel, two rows a complex row (a missing
    last row and a row that is not finite as zeros, flagged)."""
    rng = np.random.default_rng(2)
    m = 1568
    z = (rng.normal(size=(5, m)) + 1j * rng.normal(size=(5, m))).astype(np.complex64)
    z[3, 7] = np.nan
    h = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)).astype(np.float32)
    a = np.abs(z.astype(np.complex128))
    want = a - a.mean(axis=1, keepdims=True) * 2.0 * h
    want[3] = 0.0
    pairs, finite = envelope_pairs(z, h)
    assert pairs.shape == (3, m) and finite.tolist() == [True, True, True, False, True]
    got = np.stack([pairs[0].real, pairs[0].imag, pairs[1].real, pairs[1].imag, pairs[2].real])
    assert_allclose(got, want, rtol=0, atol=2e-6 * np.nanmax(a))
    assert_array_equal(pairs[2].imag, 0.0)


@pytest.mark.parametrize("rows", [1, 4, 5])
def test_paired_spectra_are_each_rows_rfft(rows: int) -> None:
    """One complex FFT of two real rows, separated, is each row's rfft (float32 rounding of
    the larger row, here 1e-6 of the largest bin); a row that is not finite reads NaN and
    leaves its pair alone."""
    rng = np.random.default_rng(4)
    m, n_bins = 1568, 199
    x = rng.normal(size=(rows, m)) * np.array([1.0, 30.0, 0.01, 3.0, 1.0])[:rows, None]
    z = x.astype(np.complex64)  # |z| = |x|: real rows, whose envelope is their magnitude
    h = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)).astype(np.float32)
    finite_in = np.ones(rows, dtype=bool)
    if rows > 1:
        z[rows - 2, 3] = np.nan
        finite_in[rows - 2] = False
    pairs, finite = envelope_pairs(z, h)
    got = pair_spectra_parts(np.fft.fft(pairs, axis=-1).astype(np.complex64), finite, n_bins)
    assert finite.tolist() == finite_in.tolist()
    a = np.abs(x)
    env = a - a.mean(axis=1, keepdims=True) * 2.0 * h
    spec = np.fft.rfft(env, axis=-1)[:, :n_bins]
    want = np.empty((rows, 2 * n_bins))
    want[:, 0::2], want[:, 1::2] = spec.real**2, spec.imag**2
    want[~finite_in] = np.nan
    for r in range(rows):
        if finite_in[r]:
            assert_allclose(got[r], want[r], rtol=0, atol=1e-6 * want[r].max())
        else:
            assert np.isnan(got[r]).all()


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_paired_spectra_are_the_float32_expression_to_the_bit(rows: int) -> None:
    """The separation reads ``C[−k]`` as ``C[(m − k) mod m]`` (``C[0]`` at k = 0) and does
    its float32 arithmetic in numpy's order: equal to the bit, bin 0 and the missing last
    row's pair included."""
    rng = np.random.default_rng(5)
    pairs, m, n_bins = (rows + 1) // 2, 1568, 199
    c = (rng.normal(size=(pairs, m)) + 1j * rng.normal(size=(pairs, m))).astype(np.complex64)
    got = pair_spectra_parts(c, np.ones(rows, dtype=bool), n_bins)
    k = np.arange(n_bins)
    a, b = c[:, k], c[:, (m - k) % m]
    half = np.float32(0.5)
    parts = [
        (half * (a.real + b.real), half * (a.imag - b.imag)),  # the pair's first row
        (half * (a.imag + b.imag), half * (b.real - a.real)),  # its second
    ]
    for r in range(rows):
        re, im = (p[r // 2] for p in parts[r % 2])
        assert_array_equal(got[r, 0::2], re * re)
        assert_array_equal(got[r, 1::2], im * im)


def test_band_bins_start_at_zero_and_are_zero_padded() -> None:
    spec = (np.arange(40).reshape(2, 20) * (1 + 1j)).astype(np.complex64)
    got = band_bins(spec, 5, 12, 16)
    assert got.shape == (2, 16) and got.dtype == np.complex64
    assert_array_equal(got[:, :7], spec[:, 5:12])
    assert_array_equal(got[:, 7:], 0)


def test_a_rows_results_do_not_depend_on_where_it_sits() -> None:
    """The passes of one row overlap another's (the first pass of the next row runs in the
    second pass's loop): a row's sums are the same to the bit first, last, in the middle of
    a batch, or alone."""
    rng = np.random.default_rng(3)
    x = (rng.normal(0.1, 0.3, (7, N)) ** 3).astype(np.float32)
    whole, d_whole = run(x)
    for r in range(7):
        alone, d_alone = run(np.concatenate([x[r : r + 1]] * 3))  # first, middle and last
        for k in range(3):
            assert_array_equal(alone[k], whole[r])
            assert_array_equal(d_alone[k], d_whole[r])


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_the_kernels_work_where_numba_can_keep_its_cache_nowhere() -> None:
    """A read-only install run by a user without a writable home: numba finds no place for
    its cache and refuses ``cache=True`` when a kernel is decorated — at import. The module
    must then compile in memory instead. (numba's own switch stands in for the read-only
    file systems: it offers only the locator for zipped sources, which finds none.)"""
    code = (
        "import numpy as np\n"
        "from pdm.dsp.kernels import envelope_pairs\n"
        "z = np.ones((2, 64), np.complex64)\n"
        "print(float(envelope_pairs(z, np.full(64, 0.5, np.float32))[0].real.sum()))\n"
    )
    r = _python(code, NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout) == pytest.approx(0.0, abs=1e-4)


def test_compile_kernels_gives_every_kernel_the_types_a_pass_gives() -> None:
    """``compile_kernels`` (run by scripts/setup-venv.sh) must compile each kernel for the
    argument types of a real pass, or the first real pass compiles again (seconds): after
    it, a batch with the speed searched, bearings and the automatic band adds no signature."""
    code = (
        "import numpy as np\n"
        "from pdm.dsp import kernels\n"
        "from pdm.dsp.bearings import lookup_bearing\n"
        "from pdm.dsp.features import ChannelSpec, FeatureExtractor, compile_kernels\n"
        # the kernels called from Python (_interpolate_peak is compiled into _speeds)
        "names = ['_moments', '_time_features', '_band_bins', '_envelope_pairs', '_pair_parts',\n"
        "         'tone_amplitudes_at', '_speeds']\n"
        "compile_kernels()\n"
        "before = {n: len(getattr(kernels, n).signatures) for n in names}\n"
        "b = lookup_bearing('6205')\n"
        "ex = FeatureExtractor(25600.0, 16384, [ChannelSpec(c, b) for c in 'xyz'],\n"
        "                      rpm_range=(1330.0, 1630.0))\n"
        "xs = np.random.default_rng(1).normal(0, 0.1, (8, 3, 16384)).astype(np.float32)\n"
        "ex.extract_batch(xs)\n"
        "ex.extract_batch(xs, envelope_band_hz=ex.choose_band(\n"
        "    ex.extract(xs[0]).spectrum, 24.0).band)\n"
        "after = {n: len(getattr(kernels, n).signatures) for n in names}\n"
        "print(before, after)\n"
        "assert set(before.values()) == {1} and after == before\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


def _tones_reference(power, centres, halves, n_bins, half_cap, scale):
    """ToneSearch's method in plain Python over a (rows, n_bins) float32 power spectrum:
    the largest sum of 2·HANN_LOBE_BINS + 1 bins (added in bin order, in float32) centred
    on a bin within the half-width (at least 1, at most ``half_cap``) of the target."""
    out = np.full(centres.shape, np.nan)
    for r, t in np.ndindex(centres.shape):
        h = min(max(halves[r, t], 1.0), half_cap)
        lo, hi = np.ceil(centres[r, t] - h), np.floor(centres[r, t] + h)
        if not (lo >= 1 + HANN_LOBE_BINS and hi <= n_bins - 2 - HANN_LOBE_BINS):
            continue  # also for NaN
        best = np.float32(0.0)
        for k in range(int(lo), int(hi) + 1):
            lobe = np.float32(0.0)
            for j in range(k - HANN_LOBE_BINS, k + HANN_LOBE_BINS + 1):
                lobe = np.float32(lobe + power[r, j])
            best = max(best, lobe)
        out[r, t] = np.sqrt(np.float64(best) * scale)
    return out


def test_tone_amplitudes_match_a_plain_search_to_the_bit() -> None:
    """Tones on and between bins in noise; targets near the edges, off them, NaN; the
    squared parts and the complex spectrum read alike."""
    rng = np.random.default_rng(5)
    n = 4096
    w = hann(n)
    t = np.arange(n)
    x = rng.normal(0, 0.05, (3, n)) + np.sin(
        2 * np.pi * np.array([[100.0], [200.5], [1900.3]]) * t / n
    )
    spec = np.fft.rfft(x * w, axis=-1).astype(np.complex64)
    n_bins = spec.shape[1]
    sq = squared_parts(spec)
    power = sq[:, 0::2] + sq[:, 1::2]
    centres = np.array(
        [[100.0, 3.5, 2.0, np.nan], [200.2, 2046.0, 2040.0, 700.0], [1900.0, 1000.0, 1.0, 33.3]]
    )
    halves = np.array([[2.0, 1.0, 0.3, 2.0], [5.0, 1.0, 3.0, np.nan], [0.5, 40.0, 1.0, 9.0]])
    scale = 4.0 / (n * float(np.sum(w.astype(np.float64) ** 2)))
    ref = _tones_reference(power, centres, halves, n_bins, 20.0, scale)
    for v, squared in ((sq, True), (spec.view(np.float32), False)):
        got = tone_amplitudes(v, squared, centres, halves, n_bins, 20.0, HANN_LOBE_BINS, scale)
        assert_array_equal(got, ref)
    assert np.isnan(ref[0, 3]) and np.isnan(ref[1, 3]) and np.isnan(ref[0, 2])  # NaNs, edge
    assert ref[0, 0] == pytest.approx(1.0, rel=2e-3) and ref[1, 0] == pytest.approx(1.0, rel=2e-3)
    search = ToneSearch(n_bins, 20.0, n, float(np.sum(w.astype(np.float64) ** 2)))
    assert_array_equal(search.in_spectrum(spec, centres, halves), search(sq, centres, halves))


def _speeds_reference(spec, n_ch, ranges, df, lo_hz, hi_hz, nominal_hz):
    """The speed search in plain Python: the channels' powers summed (float32, row order);
    per harmonic range its floor (median of the range and twice its width, ≥ 24 bins,
    either side) and its lines (local maxima ≥ 6 dB above it, interpolated; on a multiple
    of 100 or 120 Hz: electrical); every line that puts the speed within 2 % of the range
    proposes it, scored per harmonic by its best line within half a bin,
    min(dB, 20)·(1 − (2Δ)²)·(1 − 0.01·(h − 1)), halved if electrical, and admitted when
    those lines' linear heights sum to log2(3·bins searched / 1e-3) (none admitted: the
    strongest harmonic's interpolated peak, as before issue 18); the best proposal's speed is read off its non-electrical line of highest dB + 20·log10 h."""
    p = (spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2).astype(np.float32)
    n_bins = spec.shape[1]
    ranges = ranges.tolist()
    near = [
        (max(1, lo - max(24, 2 * (hi - lo + 1))), min(n_bins - 1, hi + max(24, 2 * (hi - lo + 1))))
        for _h, lo, hi in ranges
    ]
    admit = np.log2(3 * sum(hi - lo + 1 for _h, lo, hi in ranges) / 1e-3)
    out = []
    for w in range(spec.shape[0] // n_ch):
        total = p[w * n_ch]
        for c in range(1, n_ch):
            total = (total + p[w * n_ch + c]).astype(np.float32)
        lines = []  # (Hz, harmonic, dB above the floor, electrical)
        for (h, lo, hi), (a, b) in zip(ranges, near, strict=True):
            floor = float(np.median(total[a : b + 1]))
            for k in range(lo, hi + 1):
                pk = float(total[k])
                if floor > 0 and total[k - 1] < pk >= total[k + 1]:
                    db = 10 * np.log10(pk / floor)
                    f = (k + interpolate_peak(float(total[k - 1]), pk, float(total[k + 1]))) * df
                    on = any(
                        round(f / m) >= 1 and abs(f - round(f / m) * m) <= 0.5 * df + 0.001 * f
                        for m in (100.0, 120.0)
                    )
                    if db >= 6.0:
                        lines.append((f, h, db, on))
        best_score, best_hz = -1.0, nominal_hz
        # no speed admitted: the search before issue 18 (the strongest harmonic's peak)
        best_power = -1.0
        for h, k_lo, k_hi in ranges:
            seg = total[k_lo : k_hi + 1].tolist()
            power = max(seg)
            k = k_lo + seg.index(power)
            f_h = (k + interpolate_peak(float(total[k - 1]), power, float(total[k + 1]))) * df / h
            if power > best_power and lo_hz * 0.98 <= f_h <= hi_hz * 1.02:
                best_power, best_hz = power, f_h
        for f_c, h_c, _db, _on in lines:
            speed = f_c / h_c
            if not lo_hz * 0.98 <= speed <= hi_hz * 1.02:
                continue
            score, height = 0.0, 0.0
            ref = (False, -np.inf, speed)  # (not electrical, dB + 20·log10 h, speed)
            for h, _lo, _hi in ranges:
                agree = [
                    (f, db, on, abs(f - h * speed) / df)
                    for f, hj, db, on in lines
                    if hj == h and abs(f - h * speed) / df < 0.5
                ]
                evidence = [
                    (
                        min(db, 20.0)
                        * (1 - 4 * off**2)
                        * (1 - 0.01 * (h - 1))
                        * (0.5 if on else 1),
                        db,
                    )
                    for _f, db, on, off in agree
                ]
                # the first line of the best evidence gives the harmonic's evidence and height
                e, db = max(evidence, key=lambda t: t[0], default=(0.0, None))
                if e > 0:
                    score += e
                    height += 10 ** (db / 10)
                for f, db, on, _off in agree:
                    if (not on, db + 20 * np.log10(h)) > ref[:2]:
                        ref = (not on, db + 20 * np.log10(h), f / h)
            if height >= admit and score > best_score:
                best_score, best_hz = score, ref[2]
        out.append(best_hz)
    return np.array(out)


def test_shaft_speeds_match_a_plain_search_to_the_bit() -> None:
    """Windows of three channels at speeds across the range, one with a stronger tone beside
    2×, one of noise alone (no speed stands: the strongest peak's), a flat one (powers 0)."""
    rng = np.random.default_rng(6)
    n, fs = 16384, 25600.0
    df = fs / n
    t = np.arange(n) / fs
    wins = []
    for f in (22.3, 24.667, 26.9):
        x = 0.05 * np.sin(2 * np.pi * f * t) + 0.03 * np.sin(2 * np.pi * 2 * f * t + 1.0)
        wins.append(x + rng.normal(0, 0.02, (3, n)))
    # a tone 3 bins above 2×, four times the 2× (not a shaft line: the speed stays 1×'s)
    f = 23.5
    x = 0.05 * np.sin(2 * np.pi * f * t) + 0.03 * np.sin(2 * np.pi * 2 * f * t + 1.0)
    wins.append(x + 0.12 * np.sin(2 * np.pi * (2 * f + 3 * df) * t) + rng.normal(0, 0.02, (3, n)))
    wins.append(rng.normal(0, 0.02, (3, n)))
    wins.append(np.zeros((3, n)))
    spec = np.fft.rfft(np.concatenate(wins) * hann(n), axis=-1).astype(np.complex64)
    lo, hi = 1330.0 / 60, 1630.0 / 60
    ranges = np.array(
        [[h, int(np.floor(h * lo / df)), int(np.ceil(h * hi / df))] for h in (1, 2, 3)]
    )
    got = shaft_speeds_hz(spec, 3, ranges, df, (lo, hi), 24.667)
    ref = _speeds_reference(spec, 3, ranges, df, lo, hi, 24.667)
    assert_array_equal(got, ref)
    assert_allclose(got[:4], [22.3, 24.667, 26.9, 23.5], atol=0.05)
    assert lo * 0.98 <= got[4] <= hi * 1.02  # no speed stands: the strongest peak's


@pytest.mark.parametrize("seed", range(4))
def test_median_into_is_numpy_median(seed: int) -> None:
    """The speed search's floor: the median of a slice, selected in a work buffer, is
    np.median's to the bit — odd and even counts, ties, repeated values, any slice."""
    rng = np.random.default_rng(seed)
    work = np.empty(200, dtype=np.float32)
    for n in [*range(1, 90), 150, 200]:
        for a in (
            rng.exponential(1.0, n + 7).astype(np.float32),
            rng.integers(0, 4, n + 7).astype(np.float32),  # many ties
            np.full(n + 7, 0.25, dtype=np.float32),
        ):
            start = int(rng.integers(0, 8))
            got = median_into(a, start, start + n, work)
            want = np.float64(np.median(a[start : start + n]))
            assert got == want, (n, start, got, want)
