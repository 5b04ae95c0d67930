"""The compiled steps that took numpy calls out of the extractor's pass (pdm/dsp/kernels.py):
each gives what the numpy expression it replaced gave, to the bit, for valid and invalid rows."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from pdm.dsp.envelope import envelope_power, plan_envelope
from pdm.dsp.kernels import (
    band_bins,
    envelope_pairs,
    moments_windowed,
    rms_columns,
    shaft_speeds_hz,
    shaft_speeds_into,
    squares_into,
    time_features,
    window_time_features,
)
from pdm.dsp.spectrum import ToneSearch, hann

N = 4096
W = hann(N)


def test_window_time_features_are_the_row_features_and_each_windows_validity() -> None:
    """Windows of 3, 2 and 2 rows, one row of the second holding NaN: the rows' features as
    time_features gives them, and a window valid only when all its rows are (as
    np.logical_and.reduceat over the rows gave it)."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.1, 0.2, (7, N)).astype(np.float32)
    x[4, 17] = np.nan
    m, minmax = moments_windowed([x], W, np.empty_like(x))
    want_values, want_stats = np.full((7, 9), 5.0), np.empty((7, 3))
    want_finite = time_features(m, minmax, N, 1000.0, want_values, want_stats)
    values, stats = np.full((7, 9), 5.0), np.empty((7, 3))
    win_rows = np.array([3, 2, 2], dtype=np.int64)
    finite, valid, bad = window_time_features(m, minmax, N, 1000.0, values, stats, win_rows)
    assert_array_equal(finite, want_finite)
    assert_array_equal(values, want_values)
    assert_array_equal(stats, want_stats)
    assert (
        valid.tolist() == [True, False, True] == np.logical_and.reduceat(finite, [0, 3, 5]).tolist()
    )
    assert bad == 1


def _spectra(n_win: int, seed: int) -> np.ndarray:
    """``n_win`` windows of three channels at 25.6 kHz, shaft at 22–27 Hz, as float32 pairs."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / 25600.0
    wins = []
    for f in rng.uniform(22.5, 26.5, n_win):
        x = 0.05 * np.sin(2 * np.pi * f * t) + 0.03 * np.sin(2 * np.pi * 2 * f * t + 1.0)
        wins.append(x + rng.normal(0, 0.02, (3, N)))
    return np.fft.rfft(np.concatenate(wins) * W, axis=-1).astype(np.complex64)


def test_shaft_speeds_into_skips_invalid_windows_and_gives_each_rows_bins() -> None:
    """Valid windows read what shaft_speeds_hz finds, to the bit; an invalid window (its rows
    NaN, as the pass leaves them) the nominal speed; every row its window's speed ÷ df."""
    df = 25600.0 / N
    spec = _spectra(4, 2)
    spec[3:6] = np.nan  # window 1
    ranges = np.array(
        [[h, int(np.floor(h * 22.0 / df)), int(np.ceil(h * 27.5 / df))] for h in (1, 2, 3)]
    )
    nominal = 24.7
    found = shaft_speeds_hz(spec, 3, ranges, df, (22.0, 27.5), nominal)
    valid = np.array([True, False, True, True])
    hz, bins = np.empty(4), np.empty((12, 1))
    v = spec.view(np.float32)
    shaft_speeds_into(v, 3, ranges, df, (22.0, 27.5), nominal, valid, hz, bins)
    want = np.where(valid, found, nominal)
    assert_array_equal(hz, want)
    assert_array_equal(bins, np.repeat(want / df, 3)[:, None])
    assert hz[1] == nominal


@pytest.mark.parametrize(("lo", "hi"), [(0, 40), (13, 1000), (7, 7)])
def test_band_rms_steps_are_the_numpy_expression(lo: int, hi: int) -> None:
    """squares_into, the weighted sums, rms_columns: sqrt(float64((v·v) @ w) · scale) as
    numpy computes it, written into the given columns and no others."""
    rng = np.random.default_rng(3)
    spec = (rng.normal(0, 1, (6, 600)) + 1j * rng.normal(0, 1, (6, 600))).astype(np.complex64)
    v = spec.view(np.float32)
    weights = rng.uniform(0, 2, (hi - lo, 2)).astype(np.float32)
    scale = 2.0 / (N * float(np.sum(W.astype(np.float64) ** 2)))
    sq = squares_into(v, lo, hi, np.empty((6, hi - lo), dtype=np.float32))
    assert_array_equal(sq, v[:, lo:hi] * v[:, lo:hi])
    values = np.full((6, 5), 9.0)
    rms_columns(sq @ weights, scale, values, 2)
    want = np.sqrt(((v[:, lo:hi] * v[:, lo:hi]) @ weights).astype(np.float64) * scale)
    assert_array_equal(values[:, 2:4], want)
    assert_array_equal(values[:, [0, 1, 4]], 9.0)


def test_envelope_pairs_zero_a_row_that_is_not_finite() -> None:
    """NaN and inf rows go into their pair's transform as zeros and are reported; the finite
    rows' envelopes are those of the same rows alone, to the bit."""
    rng = np.random.default_rng(4)
    m = 96
    z = (rng.normal(0, 1, (5, m)) + 1j * rng.normal(0, 1, (5, m))).astype(np.complex64)
    h = hann(m)
    clean, ok = envelope_pairs(z, h)
    assert ok.all()
    z[1, 3] = np.nan
    z[4, 0] = np.inf
    pairs, finite = envelope_pairs(z, h)
    assert finite.tolist() == [True, False, True, True, False]
    parts = pairs.view(np.float32)
    assert_array_equal(parts[0, 1::2], 0.0)  # row 1
    assert_array_equal(parts[2, 0::2], 0.0)  # row 4
    assert_array_equal(parts[2, 1::2], 0.0)  # the missing sixth row
    assert_array_equal(parts[0, 0::2], clean.view(np.float32)[0, 0::2])  # row 0
    assert_array_equal(pairs[1], clean[1])  # rows 2 and 3


def _noise_spectrum(
    rng: np.random.Generator, rows: int, n_bins: int, squared: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A complex64 spectrum of Gaussian noise, (rows, n_bins), and what a tone search reads
    of it: its parts viewed as float32, or with ``squared`` their squares."""
    spec = (rng.normal(0, 1, (rows, n_bins)) + 1j * rng.normal(0, 1, (rows, n_bins))).astype(
        np.complex64
    )
    v = spec.view(np.float32)
    return spec, (np.ascontiguousarray(v * v) if squared else v)


@pytest.mark.parametrize("squared", [False, True])
def test_tones_at_multiples_are_the_search_at_tiled_centres(squared: bool) -> None:
    """ToneSearch.at_multiples: the search at centres np.tile(multiples) · speed bins and
    half-widths centre · tolerance, times a scale, to the bit; NaN multiples (a channel
    without a bearing) and lines off the spectrum give NaN; other columns are left alone."""
    rng = np.random.default_rng(5)
    rows, n_bins = 6, 300
    spec, sq = _noise_spectrum(rng, rows, n_bins, squared)
    multiples = np.array([[1.0, 2.0, 3.5, 40.0], [np.nan, 0.5, 2.0, 3.0]])
    bins = rng.uniform(8.0, 12.0, (rows, 1))
    search = ToneSearch(n_bins, 6.0, 2 * (n_bins - 1), 3 * (n_bins - 1) / 4)
    centres = np.tile(multiples, (rows // 2, 1)) * bins
    halves = centres * 0.03
    want = search(sq, centres, halves) if squared else search.in_spectrum(spec, centres, halves)
    values = np.full((rows, 7), 9.0)
    search.at_multiples(sq, squared, multiples, bins, 0.03, values, 2, 1.7)
    assert_array_equal(values[:, 2:6], want * 1.7)
    assert np.isnan(values[1::2, 2]).all() and np.isnan(values[0::2, 5]).all()  # NaN, 40×
    assert np.isfinite(values[0::2, 2:5]).all()
    assert_array_equal(values[:, [0, 1, 6]], 9.0)


@pytest.mark.parametrize("squared", [False, True])
def test_tones_at_multiples_capped_by_a_narrower_search_are_the_capped_search(
    squared: bool,
) -> None:
    """ToneSearch.at_multiples with ``narrower``: the rows of a pass's part read as the
    pass's widest search at half-widths np.minimum(centre · tolerance, the part's own cap)
    (what extract_many's parts gave before, from those arrays), to the bit, NaN kept; a
    wider search is refused. The widths are chosen so that the cap bites: some lines are
    searched ±8 bins wide, and the narrower search reaches ±3."""
    rng = np.random.default_rng(6)
    rows, n_bins = 6, 400
    spec, sq = _noise_spectrum(rng, rows, n_bins, squared)
    multiples = np.array([[1.0, 2.0, np.nan, 8.0], [0.5, 3.0, 4.0, 9.0]])
    bins = rng.uniform(20.0, 30.0, (rows, 1))
    wide = ToneSearch(n_bins, 8.0, 2 * (n_bins - 1), 3 * (n_bins - 1) / 4)
    narrow = ToneSearch(n_bins, 2.5, 2 * (n_bins - 1), 3 * (n_bins - 1) / 4)
    centres = np.tile(multiples, (rows // 2, 1)) * bins
    halves = np.minimum(centres * 0.03, (narrow.width - 1) / 2)
    assert np.nanmax(centres * 0.03) > (narrow.width - 1) / 2  # the cap bites
    want = wide(sq, centres, halves) if squared else wide.in_spectrum(spec, centres, halves)
    plain = wide(sq, centres, centres * 0.03) if squared else None
    values = np.full((rows, 6), 9.0)
    wide.at_multiples(sq, squared, multiples, bins, 0.03, values, 1, 0.5, narrower=narrow)
    assert_array_equal(values[:, 1:5], want * 0.5)
    assert np.isnan(values[0::2, 3]).all() and np.isfinite(values[:, [1, 2, 4]]).all()
    assert_array_equal(values[:, [0, 5]], 9.0)
    if plain is not None:  # and the cap changed something
        assert not np.array_equal(want, plain)
    # the search's own cap as the narrower one changes nothing
    same = np.full((rows, 6), 9.0)
    wide.at_multiples(sq, squared, multiples, bins, 0.03, same, 1, 0.5, narrower=wide)
    ref = np.full((rows, 6), 9.0)
    wide.at_multiples(sq, squared, multiples, bins, 0.03, ref, 1, 0.5)
    assert_array_equal(same, ref)
    with pytest.raises(ValueError, match="narrower"):
        narrow.at_multiples(sq, squared, multiples, bins, 0.03, values, 1, narrower=wide)


def test_envelope_of_rows_padded_with_zero_rows_is_that_of_the_padded_copy() -> None:
    """envelope_power(spec, plan, rows): the rows of a spectrum padded with zero rows where
    the band's bins are gathered give, to the bit, what the spectrum copied into a padded
    array gives (a shared pass's part of 3 or 6 rows, padded to fours); band_bins refuses
    fewer rows than the spectrum's."""
    rng = np.random.default_rng(7)
    fs, n = 25600.0, 4096
    plan = plan_envelope(fs, n, (2000.0, 5000.0), 400.0)
    for rows in (1, 3, 6):
        x = rng.normal(0, 1, (rows, n)).astype(np.float32)
        spec = np.fft.rfft(x * W, axis=-1).astype(np.complex64)
        rows4 = -(-rows // 4) * 4
        padded = np.zeros((rows4, spec.shape[1]), dtype=np.complex64)
        padded[:rows] = spec
        got = envelope_power(spec, plan, rows4)
        assert got.shape == (rows4, 2 * plan.n_env_bins)
        assert_array_equal(got, envelope_power(padded, plan))
        assert_array_equal(got[:rows], envelope_power(spec, plan))  # as unpadded
        gathered = band_bins(spec, plan.k1, plan.k2, plan.m, rows4)
        assert_array_equal(gathered[rows:], 0.0)
    with pytest.raises(ValueError, match="rows"):
        band_bins(spec, plan.k1, plan.k2, plan.m, rows - 1)
