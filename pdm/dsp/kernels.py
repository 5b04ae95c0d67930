"""Compiled loops of the feature extractor (numba).

A window's time-domain features need its minimum, maximum, mean and central moments 2–4,
and its FFT needs the mean-removed, windowed copy ``w·(x − mean)``. As numpy calls that is
nine passes over every row (mean, min, max, ``d = x − mean``, ``d²``, three dot products,
``d·w``), each cheap but each a trip through the data and the interpreter: 0.7–0.8 of the
batched FFT itself (``pdm-edge bench --profile-dsp``). :func:`moments_windowed` does the
same in one loop per row, which also reads the next row: ~0.35 of the FFT with the batch read
cold, the time features (:func:`time_features`) included. :func:`tone_amplitudes` and :func:`shaft_speeds_hz` search a few bins per target and
window, where vectorised gathers cost more in plans and temporaries than in arithmetic; the
envelope's bins, magnitude and mean and its spectrum's parts come off in :func:`band_bins`,
:func:`envelope_pairs` and :func:`pair_spectra_parts`. The small steps between them
(:func:`window_time_features`, :func:`shaft_speeds_into`, :func:`squares_into`,
:func:`rms_columns`, :func:`tone_amplitudes_at`) are compiled for another reason: after
the pass's two streams (the moments' pass and the FFT, ~3 MB each through a 2 MB L2)
every numpy call ran from cold caches, at several times its warm cost (docs/benchmarks.md).

Numerics (float32 data, as the FFT's):

* Sums run in float32 in SIMD lanes (``fastmath`` reassociation, as BLAS's ``sdot`` sums):
  each lane adds ``n / lanes`` terms, the lanes are added at the end.
* The mean of the first pass is only as exact as a float32 sum (~1e-7 of ``|mean|``); a
  moment taken about a mean off by δ is off by ``δ²`` (m2) or ``3δ·m2`` (m3), which for a
  1 g bias under 1 mg of vibration is 1e-2 of the skewness. The second pass therefore also
  sums ``d = x − mean₁`` itself and the moments are re-centred on the exact mean (in
  float64, where the correction ``δ = Σd/n`` is tiny against the spread).
* ``min``/``max`` compare the samples' bit patterns as ordered integers, which vectorises
  where float comparisons under ``fastmath`` do not, and keep NaN: a NaN's pattern sorts
  beyond ±inf, so a row holding one has a NaN minimum or maximum, and fails the
  extractor's validity check as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "band_bins",
    "envelope_pairs",
    "median_into",
    "moments_windowed",
    "pair_spectra_parts",
    "rms_columns",
    "shaft_speeds_hz",
    "shaft_speeds_into",
    "squares_into",
    "time_features",
    "tone_amplitudes",
    "tone_amplitudes_at",
    "window_time_features",
]

_F = TypeVar("_F", bound=Callable[..., Any])
# Reassociation (SIMD sums), contraction (FMA), and no care for the sign of zero; NOT
# "no NaNs/infs": a NaN sample must stay NaN through the sums.
_FAST = {"reassoc", "contract", "nsz", "arcp", "afn"}
_SIGN = np.int32(0x7FFFFFFF)
_31 = np.int32(31)  # shifts and min/max kept int32: see _moments
_EXPONENT = np.int32(0x7F800000)  # a float32's exponent bits


def _jit(**options: Any) -> Callable[[_F], _F]:
    """``numba.njit(**options)`` with its machine code kept on disk (``cache=True``): the
    first run compiles (seconds), later processes load it (milliseconds).

    numba keeps it beside this file, or where ``NUMBA_CACHE_DIR`` says, or under the user's
    cache directory, whichever it can write. Where it can write none of them (a read-only
    install run by a user without a writable home) it refuses ``cache=True`` when the
    function is decorated, that is when this module is imported: the kernels are then
    compiled in memory, once per process, instead.
    """

    def wrap(fn: _F) -> _F:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available ..."
            return numba.njit(**options)(fn)

    return wrap


@_jit(fastmath=_FAST, nogil=True, boundscheck=False)
def _moments(  # pragma: no cover - compiled
    x: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    d: npt.NDArray[np.float32],
    stats: npt.NDArray[np.float64],
    bits: npt.NDArray[np.int32],
    spare: npt.NDArray[np.float32],
) -> None:
    n = x.shape[1]
    rows = x.shape[0]
    xb = x.view(np.int32)
    total = np.float32(0.0)
    kmin = np.int32(0)
    kmax = np.int32(0)
    mu = np.float32(0.0)
    # One loop per row does the second pass of row r (in cache: its first pass just read
    # it) and the first pass of row r + 1 (from memory), so that reading memory overlaps
    # the arithmetic (a quarter less time than two loops a row, with the batch cold). Every
    # row goes through the same loop, so its sums are the same wherever it sits in a
    # batch: r = -1 only reads row 0, the last row's second read is discarded.
    for r in range(-1, rows):
        cur = x[max(r, 0)]
        following = min(r + 1, rows - 1)
        nxt = x[following]
        nxb = xb[following]
        dr = d[r] if r >= 0 else spare
        if r >= 0:
            bits[r, 0] = kmin ^ ((kmin >> 31) & _SIGN)  # the key's own inverse
            bits[r, 1] = kmax ^ ((kmax >> 31) & _SIGN)
            # A flat row's mean is its value, exactly (a float32 sum of n copies may round).
            mu = cur[0] if kmin == kmax else np.float32(total / n)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        a4 = np.float32(0.0)
        total = np.float32(0.0)
        kmin = np.int32(2147483647)
        kmax = np.int32(-2147483648)
        for i in range(n):
            v = cur[i] - mu
            q = v * v
            a1 += v
            a2 += q
            a3 += q * v
            a4 += q * q
            dr[i] = v * w[i]
            total += nxt[i]
            b = nxb[i]
            # Ordered like the float it encodes. Kept int32 throughout: numba widens int32
            # arithmetic with a plain int to int64, which halved the loop's vector width
            # (4 floats a register instead of 8: the pass took 1.3x as long with the batch cold).
            k = np.int32(b ^ ((b >> _31) & _SIGN))
            kmin = np.int32(min(kmin, k))
            kmax = np.int32(max(kmax, k))
        if r >= 0:
            # Moments about mu + c (the exact mean), from those about mu, in float64.
            c = np.float64(a1) / n
            m2 = np.float64(a2) / n
            m3 = np.float64(a3) / n
            m4 = np.float64(a4) / n
            c2 = c * c
            stats[r, 0] = np.float64(mu) + c
            stats[r, 1] = max(m2 - c2, 0.0)  # a flat row's may come out a rounding below 0
            stats[r, 2] = m3 - 3.0 * c * m2 + 2.0 * c * c2
            stats[r, 3] = m4 - 4.0 * c * m3 + 6.0 * c2 * m2 - 3.0 * c2 * c2


def moments_windowed(
    blocks: Sequence[npt.NDArray[np.float32]],
    w: npt.NDArray[np.float32],
    d: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """Each row's mean, central moments, min and max; ``d = w·(x − mean)`` written.

    Parameters
    ----------
    blocks : (rows_b, n) float32 arrays, C-contiguous: the samples (g), their rows in order
    w : (n,) float32: the window
    d : (rows, n) float32, C-contiguous, ``rows`` the blocks' rows together: receives
        ``w·(x − m)``, ``m`` the mean within ~1e-7 of ``|mean|`` (what remains is a DC of
        that size, which a Hann window keeps in bins 0 and 1)

    Returns
    -------
    (rows, 4) float64: mean, ``E(x−mean)²``, ``E(x−mean)³``, ``E(x−mean)⁴``; and (rows, 2)
    float32: min, max. A row holding NaN has a NaN min or max (and meaningless moments:
    the caller discards it); one holding ±inf, an infinite min or max.
    """
    stats = np.empty((d.shape[0], 4), dtype=np.float64)
    bits = np.empty((d.shape[0], 2), dtype=np.int32)
    spare = np.empty(d.shape[1], dtype=np.float32)
    r = 0
    for b in blocks:
        k = r + b.shape[0]
        _moments(b, w, d[r:k], stats[r:k], bits[r:k], spare)
        r = k
    return stats, bits.view(np.float32)


@_jit(nogil=True, boundscheck=False)
def _time_features(  # pragma: no cover - compiled
    m: npt.NDArray[np.float64],
    minmax: npt.NDArray[np.float32],
    n: int,
    max_abs: float,
    values: npt.NDArray[np.float64],
    stats: npt.NDArray[np.float64],
    finite: npt.NDArray[np.bool_],
    win_rows: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
) -> int:
    nan = np.nan
    bad = 0
    for r in range(m.shape[0]):
        lo = np.float64(minmax[r, 0])
        hi = np.float64(minmax[r, 1])
        ok = hi <= max_abs and -lo <= max_abs  # False for NaN and inf
        finite[r] = ok
        if not ok:
            bad += 1
            for j in range(7):
                values[r, j] = nan
            stats[r, 0] = stats[r, 1] = stats[r, 2] = nan
            continue
        mean, m2, m3, m4 = m[r, 0], m[r, 1], m[r, 2], m[r, 3]
        peak = max(hi - mean, mean - lo)
        values[r, 0] = mean
        values[r, 1] = np.sqrt(m2)
        values[r, 2] = peak
        values[r, 3] = hi - lo
        if m2 > 0.0:  # a flat window has no crest, kurtosis or skewness
            values[r, 4] = peak / np.sqrt(m2)
            values[r, 5] = m4 / (m2 * m2)
            values[r, 6] = m3 / (m2 * np.sqrt(m2))
        else:
            values[r, 4] = values[r, 5] = values[r, 6] = nan
        stats[r, 0] = lo
        stats[r, 1] = hi
        stats[r, 2] = mean * n
    r = 0
    for w in range(win_rows.shape[0]):
        whole = True
        for _ in range(win_rows[w]):
            whole = whole and bool(finite[r])
            r += 1
        valid[w] = whole
    return bad


def time_features(
    m: npt.NDArray[np.float64],
    minmax: npt.NDArray[np.float32],
    n: int,
    max_abs: float,
    values: npt.NDArray[np.float64],
    stats: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """The time-domain features of each row from :func:`moments_windowed`'s results, in one
    compiled loop (as fifteen numpy calls on arrays of a few dozen rows they cost more in
    calls than in arithmetic: 0.08 of the batched FFT).

    Parameters
    ----------
    m, minmax : (rows, 4) and (rows, 2), as :func:`moments_windowed` returns them
    n : samples a row
    max_abs : a row with a sample beyond ± this (or NaN, or inf) is not a measurement
    values : (rows, ≥ 7) float64: columns 0–6 receive mean, rms, peak, peak to peak (all in
        the samples' unit), crest, kurtosis, skewness; NaN for a row that is not a
        measurement, and crest, kurtosis and skewness NaN for a flat row
    stats : (rows, 3) float64: receives min, max and sum of the samples (NaN when not a
        measurement)

    Returns
    -------
    (rows,) bool: the rows that are measurements
    """
    rows = m.shape[0]
    finite = np.empty(rows, dtype=np.bool_)
    valid = np.empty(rows, dtype=np.bool_)
    _time_features(m, minmax, n, max_abs, values, stats, finite, np.ones(rows, np.int64), valid)
    return finite


def window_time_features(
    m: npt.NDArray[np.float64],
    minmax: npt.NDArray[np.float32],
    n: int,
    max_abs: float,
    values: npt.NDArray[np.float64],
    stats: npt.NDArray[np.float64],
    win_rows: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], int]:
    """:func:`time_features`, and which windows are measurements: a window is when every
    one of its rows is. (One compiled loop: after the moments' pass over the batch, numpy's
    reductions ran cold — ``finite.all()`` and its like cost ~3 µs a window in the pass.)

    Parameters
    ----------
    m, minmax, n, max_abs, values, stats : as for :func:`time_features`
    win_rows : (n_windows,) int64: each window's rows, in order, summing to ``rows``

    Returns
    -------
    (rows,) bool: the rows that are measurements; (n_windows,) bool: the windows that are;
    and the number of rows that are not
    """
    finite = np.empty(m.shape[0], dtype=np.bool_)
    valid = np.empty(win_rows.shape[0], dtype=np.bool_)
    bad = _time_features(m, minmax, n, max_abs, values, stats, finite, win_rows, valid)
    return finite, valid, bad


@_jit(nogil=True, boundscheck=False)
def _squares(  # pragma: no cover - compiled
    v: npt.NDArray[np.float32], lo: int, hi: int, out: npt.NDArray[np.float32]
) -> None:
    for r in range(out.shape[0]):
        row = v[r]
        o = out[r]
        for j in range(hi - lo):
            a = row[lo + j]
            o[j] = a * a


def squares_into(
    v: npt.NDArray[np.float32], lo: int, hi: int, out: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``out[r] = v[r, lo:hi]²`` for each of ``out``'s rows (float32, as numpy squares them):
    :func:`pdm.dsp.spectrum.squared_parts` of a spectrum's bins ``lo/2 … hi/2`` into a buffer
    the caller holds. ``v`` is (≥ rows, ≥ hi) float32 with unit stride along its rows (a
    complex64 spectrum viewed as float32); ``out`` (rows, hi − lo) float32, C-contiguous.
    Returns ``out``."""
    _squares(v, lo, hi, out)
    return out


@_jit(nogil=True, boundscheck=False)
def _rms_columns(  # pragma: no cover - compiled
    sums: npt.NDArray[np.float32], scale: float, values: npt.NDArray[np.float64], col: int
) -> None:
    for r in range(sums.shape[0]):
        for j in range(sums.shape[1]):
            values[r, col + j] = np.sqrt(np.float64(sums[r, j]) * scale)


def rms_columns(
    sums: npt.NDArray[np.float32], scale: float, values: npt.NDArray[np.float64], col: int
) -> None:
    """``values[:, col:col + bands] = sqrt(float64(sums) · scale)``: mean squares from
    weighted sums of squared parts (:func:`pdm.dsp.spectrum.band_mean_square`'s scaling),
    as RMS, in one compiled loop (the numpy expression's four calls ran cold after the FFT).

    ``sums`` is (rows, bands) float32; ``values`` (rows, ≥ col + bands) float64.
    """
    _rms_columns(sums, scale, values, col)


@_jit(nogil=True, boundscheck=False)
def _band_bins(  # pragma: no cover - compiled
    spec: npt.NDArray[np.complex64], k1: int, k2: int, out: npt.NDArray[np.complex64]
) -> None:
    for r in range(spec.shape[0]):
        o = out[r]
        x = spec[r]
        for j in range(k2 - k1):
            o[j] = x[k1 + j]
        for j in range(k2 - k1, o.shape[0]):
            o[j] = 0
    for r in range(spec.shape[0], out.shape[0]):  # zero rows after spec's
        out[r, :] = 0


def band_bins(
    spec: npt.NDArray[np.complex64], k1: int, k2: int, m: int, rows: int | None = None
) -> npt.NDArray[np.complex64]:
    """Each row's bins ``k1 … k2−1`` from bin 0 on, zero-padded to ``m``: the input of the
    envelope's inverse FFT (:func:`pdm.dsp.envelope.envelope_power`), gathered in one
    sequential pass over each row (the spectrum is cold in cache after its FFT).

    ``spec`` is (spec_rows, bins) complex64, C-contiguous; returns (rows, m) complex64
    (``rows`` ≥ spec_rows, default spec_rows: rows after spec's are zeros).
    """
    rows = spec.shape[0] if rows is None else rows
    if rows < spec.shape[0]:
        raise ValueError(f"{rows=} < the spectrum's {spec.shape[0]} rows")
    out = np.empty((rows, m), dtype=np.complex64)
    _band_bins(spec, k1, k2, out)
    return out


@_jit(fastmath=_FAST, nogil=True, boundscheck=False)
def _envelope_pairs(  # pragma: no cover - compiled
    z: npt.NDArray[np.complex64],
    hann: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    totals: npt.NDArray[np.float32],
    finite: npt.NDArray[np.bool_],
) -> int:
    rows, m = z.shape
    a = np.empty(m, dtype=np.float32)
    # The sums' bit patterns: NaN and ±inf have every exponent bit set. (Compared as
    # integers: under fastmath LLVM took np.isfinite of a NaN sum for true.)
    bits = totals.view(np.int32)
    bad = 0
    for r in range(rows):
        zr = z[r]
        total = np.float32(0.0)
        for i in range(m):
            v = np.sqrt(zr[i].real * zr[i].real + zr[i].imag * zr[i].imag)
            a[i] = v
            total += v
        totals[r] = total
        o = out[r // 2]
        part = r % 2  # real parts of a pair's first row, imaginary of its second
        ok = (bits[r] & _EXPONENT) != _EXPONENT
        finite[r] = ok
        if not ok:
            # It would spread NaN through its pair's transform: it goes in as zeros.
            bad += 1
            for i in range(m):
                o[2 * i + part] = 0.0
            continue
        mean2 = total * np.float32(2.0 / m)
        for i in range(m):
            o[2 * i + part] = a[i] - mean2 * hann[i]
    if rows % 2:
        o = out[rows // 2]
        for i in range(m):
            o[2 * i + 1] = 0.0
    return bad


def envelope_pairs(
    z: npt.NDArray[np.complex64], hann: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.complex64], npt.NDArray[np.bool_]]:
    """``|z| − mean(|z|)·2·hann``: the envelope of each row of an analytic signal, without
    the Hann kernel its mean leaves in its spectrum (:func:`pdm.dsp.envelope.envelope_power`),
    two real rows a complex row, for one complex FFT of each pair
    (:func:`pair_spectra_parts` separates their spectra).

    Parameters
    ----------
    z : (rows, m) complex64, C-contiguous: the analytic band signal, Hann-weighted
    hann : (m,) float32: the periodic Hann window of length m (mean 1/2)

    Returns
    -------
    ((rows + 1) // 2, m) complex64: row ``2j``'s envelope in the real parts of row ``j``,
    row ``2j + 1``'s in the imaginary parts (zeros for a missing last row, and for a row
    that is not finite, which would spread NaN through its pair's transform); and (rows,)
    bool: the rows that are finite
    """
    rows, m = z.shape
    out = np.empty(((rows + 1) // 2, m), dtype=np.complex64)
    totals = np.empty(rows, dtype=np.float32)
    finite = np.empty(rows, dtype=np.bool_)
    _envelope_pairs(z, hann, out.view(np.float32), totals, finite)
    return out, finite


@_jit(nogil=True, boundscheck=False)
def _pair_parts(  # pragma: no cover - compiled
    c: npt.NDArray[np.complex64],
    finite: npt.NDArray[np.bool_],
    out: npt.NDArray[np.float32],
) -> None:
    m = c.shape[1]
    rows = out.shape[0]
    half = np.float32(0.5)
    for p in range(c.shape[0]):
        cp = c[p]
        first, second = 2 * p, 2 * p + 1
        # Out of the bins' loop: the test of the pair's second row, and C[−k]'s index as
        # m − k (0 for k = 0) instead of (m − k) % m — numba's Python-signed modulo per bin
        # had cost half the kernel.
        both = second < rows
        for k in range(out.shape[1] // 2):
            a = cp[k]
            b = cp[m - k if k else 0]
            # rfft(first)[k] = (C[k] + conj C[−k]) / 2, rfft(second)[k] = (C[k] − conj C[−k]) / 2i
            re1 = half * (a.real + b.real)
            im1 = half * (a.imag - b.imag)
            re2 = half * (a.imag + b.imag)
            im2 = half * (b.real - a.real)
            out[first, 2 * k] = re1 * re1
            out[first, 2 * k + 1] = im1 * im1
            if both:
                out[second, 2 * k] = re2 * re2
                out[second, 2 * k + 1] = im2 * im2
    for r in range(rows):
        if not finite[r]:
            out[r, :] = np.nan


def pair_spectra_parts(
    c: npt.NDArray[np.complex64], finite: npt.NDArray[np.bool_], n_bins: int
) -> npt.NDArray[np.float32]:
    """The squared real and imaginary parts of ``rfft`` of each real row, bins
    ``0 … n_bins−1``, from ``fft`` of the rows paired as :func:`envelope_pairs` pairs them
    (one complex FFT of m points costs less than two real ones when m has factors pocketfft's
    real transform has no pass for, as 7 in the envelope's 1568); NaN for rows not finite.

    Parameters
    ----------
    c : (pairs, m) complex64, C-contiguous: ``fft`` of the paired rows
    finite : (rows,) bool, as :func:`envelope_pairs` returns it
    n_bins : bins wanted (≤ m // 2 + 1)

    Returns
    -------
    (rows, 2·n_bins) float32, as :func:`pdm.dsp.spectrum.squared_parts` lays them out
    """
    out = np.empty((finite.shape[0], 2 * n_bins), dtype=np.float32)
    _pair_parts(c, finite, out)
    return out


@_jit(nogil=True, boundscheck=False)
def _tone(  # pragma: no cover - compiled
    row: npt.NDArray[np.float32],
    squared: bool,
    c: float,
    h: float,
    n_bins: int,
    half_cap: float,
    lobe_bins: int,
    scale: float,
) -> float:
    h = h if h > 1.0 or np.isnan(h) else 1.0
    h = h if h < half_cap or np.isnan(h) else half_cap  # NaN stays NaN
    lo = np.ceil(c - h)
    hi = np.floor(c + h)
    # NaN centres or halves fail both tests
    if not (lo >= 1 + lobe_bins and hi <= n_bins - 2 - lobe_bins):
        return np.nan
    best = np.float32(0.0)
    for k in range(int(lo), int(hi) + 1):
        lobe = np.float32(0.0)
        for j in range(k - lobe_bins, k + lobe_bins + 1):  # summed in this order
            a = row[2 * j]
            b = row[2 * j + 1]
            lobe += a + b if squared else a * a + b * b
        best = max(best, lobe)
    return np.sqrt(np.float64(best) * scale)


@_jit(nogil=True, boundscheck=False)
def _tones(  # pragma: no cover - compiled
    v: npt.NDArray[np.float32],
    squared: bool,
    centres: npt.NDArray[np.float64],
    halves: npt.NDArray[np.float64],
    n_bins: int,
    half_cap: float,
    lobe_bins: int,
    scale: float,
    out: npt.NDArray[np.float64],
) -> None:
    for r in range(centres.shape[0]):
        row = v[r]
        for t in range(centres.shape[1]):
            c, h = centres[r, t], halves[r, t]
            out[r, t] = _tone(row, squared, c, h, n_bins, half_cap, lobe_bins, scale)


@_jit(nogil=True, boundscheck=False)
def tone_amplitudes_at(  # pragma: no cover - compiled
    v: npt.NDArray[np.float32],
    squared: bool,
    table: npt.NDArray[np.float64],
    bins: npt.NDArray[np.float64],
    tolerance: float,
    n_bins: int,
    half_cap: float,
    lobe_bins: int,
    scale: float,
    out_scale: float,
    values: npt.NDArray[np.float64],
    col: int,
    row_cap: float,
) -> None:
    """:func:`tone_amplitudes` at multiples of each row's speed, times ``out_scale``, into
    ``values[:, col:col + targets]``: the targets' centres ``table[r % k] · bins[r]`` and
    half-widths ``min(centre · tolerance, row_cap)`` made in the loop, as numpy's
    ``np.tile(table) · bins``, ``· tolerance`` and ``np.minimum`` make them (the pass's order
    and defect lines: the arrays' numpy calls ran cold after the FFT).

    Parameters
    ----------
    v, squared, n_bins, half_cap, lobe_bins, scale : as for :func:`tone_amplitudes`
    table : (k, targets) float64, C-contiguous: row ``r`` of the spectrum reads row ``r % k``
        (multiples of the speed; NaN: no target)
    bins : (rows, 1) float64: each row's speed in bins
    tolerance : the half-width as a fraction of the centre
    out_scale : multiplies each amplitude
    values : (rows, ≥ col + targets) float64: receives the amplitudes
    row_cap : the rows' own cap on the half-widths, before ``half_cap`` (rows of a pass's
        part whose search is narrower than the one searching them: ≤ ``half_cap``, and
        ``half_cap`` itself changes nothing); a NaN half-width stays NaN, as ``np.minimum``
        keeps it
    """
    k = table.shape[0]
    for r in range(bins.shape[0]):
        row = v[r]
        for t in range(table.shape[1]):
            c = table[r % k, t] * bins[r, 0]
            h = c * tolerance
            if row_cap < h:
                h = row_cap
            a = _tone(row, squared, c, h, n_bins, half_cap, lobe_bins, scale)
            values[r, col + t] = a * out_scale


def tone_amplitudes(
    v: npt.NDArray[np.float32],
    squared: bool,
    centres: npt.NDArray[np.float64],
    halves: npt.NDArray[np.float64],
    n_bins: int,
    half_cap: float,
    lobe_bins: int,
    scale: float,
) -> npt.NDArray[np.float64]:
    """The largest main-lobe energy near each target, as an amplitude
    (:class:`pdm.dsp.spectrum.ToneSearch`, whose docstring states the method).

    Parameters
    ----------
    v : (rows, ≥ 2·n_bins) float32, C-contiguous: a spectrum's real and imaginary parts
        interleaved (a complex64 spectrum viewed as float32), or, with ``squared``, their
        squares (:func:`pdm.dsp.spectrum.squared_parts`)
    centres, halves : (rows, targets) the targets' centres and search half-widths, bins
        (NaN centres give NaN)
    n_bins : the bins searched (with their lobes) are below this
    half_cap : the largest half-width searched, bins
    lobe_bins : the lobe summed either side of a candidate bin, bins
    scale : amplitude² per unit of lobe energy

    Returns
    -------
    (rows, targets) float64; NaN where the search (and its lobe) leaves the spectrum
    """
    out = np.empty(centres.shape, dtype=np.float64)
    _tones(v, squared, centres, halves, n_bins, half_cap, lobe_bins, scale, out)
    return out


#: Integer multiples of these are electrical lines: twice the line frequency of 50 and
#: 60 Hz mains (a motor's magnetic pull) and its harmonics, as pdm.diagnosis.bearing reads
#: them; at most weak evidence of a shaft harmonic.
MAINS_BASES_HZ = np.array([100.0, 120.0])
#: A line's evidence is its height above its range's floor, dB, capped here: one line
#: alone, however strong, counts no more than two agreeing lines of half its height.
_CAP_DB = 20.0
#: A line lower than this above its floor supports a candidate speed not at all (a noise
#: bin reaches 6 dB above the median of its neighbours in 2^-4 of the bins).
_SUPPORT_DB = 6.0
#: The chance that noise alone makes lines that let a speed stand (in a window of noise
#: alone, the strongest peak's speed is then taken but this often).
_FALSE_LINE = 1e-3
#: Weight of a line on an electrical frequency, and of each harmonic order above the 1×
#: (a slight preference for the series whose evidence sits lower: equal evidence from a
#: lone 1× and a lone line in the 3× range is read as the 1×, which a shaft always has).
_MAINS_WEIGHT = 0.5
_ORDER_WEIGHT = 0.01


@_jit(nogil=True, boundscheck=False)
def _speeds(  # pragma: no cover - compiled
    v: npt.NDArray[np.float32],
    n_ch: int,
    ranges: npt.NDArray[np.int64],
    df: float,
    lo_hz: float,
    hi_hz: float,
    nominal_hz: float,
    mains: npt.NDArray[np.float64],
    valid: npt.NDArray[np.bool_],
    out: npt.NDArray[np.float64],
    bins: npt.NDArray[np.float64],
    stood: npt.NDArray[np.bool_],
) -> None:
    n_r = ranges.shape[0]
    n_bins = v.shape[1] // 2
    # Each range's floor is the median of its bins and twice as many (at least 24) either
    # side: the main lobes of the shaft's lines (4 bins each) and of any tone near them
    # then stay a minority of the bins, and the median the noise's.
    near = np.empty((n_r, 2), dtype=np.int64)
    searched = 0
    for i in range(n_r):
        k_lo, k_hi = ranges[i, 1], ranges[i, 2]
        pad = max(24, 2 * (k_hi - k_lo + 1))
        near[i, 0] = max(1, k_lo - pad)
        near[i, 1] = min(n_bins - 1, k_hi + pad)
        searched += k_hi - k_lo + 1
    k_top = max(near[:, 1].max(), ranges[:, 2].max() + 1)
    # A speed stands when noise alone makes its lines this rarely: a noise bin of one channel
    # (power ~ exponential) is r times the median or more with probability 2^-r, lines at
    # up to three harmonics all with 2^-(r1+r2+r3), so the linear heights of a speed's lines
    # (one per harmonic) must sum to log2(3·bins searched / _FALSE_LINE): one line of
    # 12-13 dB, or two of 9-10 dB that agree (summed channels: rarer still).
    admit = math.log2(3.0 * max(searched, 1) / _FALSE_LINE)
    total = np.empty(k_top + 1, dtype=np.float32)
    scratch = np.empty(k_top + 1, dtype=np.float32)  # the floors' selections work here
    floors = np.empty(n_r, dtype=np.float64)
    # The lines (local maxima ≥ _SUPPORT_DB above the floor) of a window: frequency (Hz),
    # harmonic, height above the floor (dB), on an electrical line or not.
    line_hz = np.empty(searched, dtype=np.float64)
    line_h = np.empty(searched, dtype=np.int64)
    line_db = np.empty(searched, dtype=np.float64)
    line_mains = np.empty(searched, dtype=np.bool_)
    for w in range(out.shape[0]):
        if not valid[w]:  # not a measurement: the nominal speed
            out[w] = nominal_hz
            stood[w] = False
            for c in range(n_ch):
                bins[w * n_ch + c, 0] = nominal_hz / df
            continue
        for k in range(k_top + 1):
            s = np.float32(0.0)
            for c in range(n_ch):  # the channels' powers added in row order
                a = v[w * n_ch + c, 2 * k]
                b = v[w * n_ch + c, 2 * k + 1]
                p = a * a + b * b
                s = p if c == 0 else s + p
            total[k] = s
        n_lines = 0
        for i in range(n_r):
            h, k_lo, k_hi = ranges[i, 0], ranges[i, 1], ranges[i, 2]
            floor = median_into(total, near[i, 0], near[i, 1] + 1, scratch)
            floors[i] = floor
            if not floor > 0.0:  # a flat (or NaN) spectrum holds no line
                continue
            for k in range(k_lo, k_hi + 1):  # a plateau's first bin is its peak
                pk = total[k]
                if not (pk > total[k - 1] and pk >= total[k + 1]):
                    continue
                db = 10.0 * math.log10(np.float64(pk) / floor)
                if db < _SUPPORT_DB:
                    continue
                below, above = np.float64(total[k - 1]), np.float64(total[k + 1])
                f = (k + _interpolate_peak(below, np.float64(pk), above)) * df
                on = False
                for base in mains:
                    m = round(f / base)
                    on = on or (m >= 1 and abs(f - m * base) <= 0.5 * df + 0.001 * f)
                line_hz[n_lines] = f
                line_h[n_lines] = h
                line_db[n_lines] = db
                line_mains[n_lines] = on
                n_lines += 1
        # Every line proposes the speed f/h. Per harmonic, the proposal's
        # evidence is its best line within half a bin of h·speed: the line's height
        # (capped, weighted) times 1 − (2Δ)², Δ its distance in bins (an interpolated
        # peak is good to a tenth of a bin; lines half a bin or more apart are two), so
        # that the series that agrees best wins, not one strong line.
        best_score = -1.0
        best_hz = _strongest_hz(total, ranges, df, lo_hz, hi_hz, nominal_hz)
        for c in range(n_lines):
            speed = line_hz[c] / line_h[c]
            if not lo_hz * 0.98 <= speed <= hi_hz * 1.02:
                continue
            score = 0.0
            height = 0.0
            ref_db = -math.inf
            ref_hz = speed
            ref_mains = True
            for i in range(n_r):
                h = ranges[i, 0]
                best_e = 0.0
                best_r = 0.0
                for j in range(n_lines):
                    off = abs(line_hz[j] - h * speed) / df
                    if line_h[j] != h or off >= 0.5:
                        continue
                    e = min(line_db[j], _CAP_DB) * (1.0 - 4.0 * off * off)
                    e *= 1.0 - _ORDER_WEIGHT * (h - 1)
                    if line_mains[j]:
                        e *= _MAINS_WEIGHT
                    if e > best_e:
                        best_e = e
                        best_r = 10.0 ** (line_db[j] / 10.0)
                    # The speed is read off the one of these lines that reads it best
                    # and is not electrical (an electrical one only when all are): an
                    # interpolated peak is off by ~1/√SNR of a bin, divided by h in the
                    # speed, so the line of highest h²·SNR (dB + 20·log10 h).
                    rank = line_db[j] + 20.0 * math.log10(h)
                    if (ref_mains and not line_mains[j]) or (
                        ref_mains == line_mains[j] and rank > ref_db
                    ):
                        ref_db, ref_hz, ref_mains = rank, line_hz[j] / h, line_mains[j]
                score += best_e
                height += best_r
            if height >= admit and score > best_score:
                best_score = score
                best_hz = ref_hz
        out[w] = best_hz
        stood[w] = best_score >= 0.0
        for c in range(n_ch):
            bins[w * n_ch + c, 0] = best_hz / df


@_jit(nogil=True, boundscheck=False)
def median_into(  # pragma: no cover - compiled
    a: npt.NDArray[np.float32], start: int, stop: int, work: npt.NDArray[np.float32]
) -> float:
    """``np.median(a[start:stop])`` of float32 ``a`` as numba's ``np.median`` gives it (the
    middle value, or the float32 sum of the middle two halved in float64), selected in
    ``work`` (≥ ``stop − start`` elements, overwritten) instead of a fresh copy: the speed
    search takes a floor per harmonic and window, and the copy's allocation cost more than
    the selection. ``a[start:stop]`` must hold no NaN and at least one value."""
    n = stop - start
    for j in range(n):
        work[j] = a[start + j]
    k = (n - 1) >> 1 if n & 1 else (n >> 1) - 1
    lo, hi = 0, n - 1
    while lo < hi:  # quickselect: work[k] the k-th smallest, those after it no smaller
        p = work[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while work[i] < p:
                i += 1
            while work[j] > p:
                j -= 1
            if i <= j:
                work[i], work[j] = work[j], work[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    below = work[k]
    if n & 1:
        return np.float64(below)
    above = work[k + 1]
    for j in range(k + 2, n):
        above = min(above, work[j])
    return np.float64(np.float32(below + above)) / 2.0


@_jit(nogil=True, boundscheck=False)
def _strongest_hz(  # pragma: no cover - compiled
    total: npt.NDArray[np.float32],
    ranges: npt.NDArray[np.int64],
    df: float,
    lo_hz: float,
    hi_hz: float,
    nominal_hz: float,
) -> float:
    # The search before issue 18, for windows where no speed stands: each harmonic's
    # highest bin in its range, interpolated; the strongest within 2 % of the range wins.
    best_power = -1.0
    best_hz = nominal_hz
    for i in range(ranges.shape[0]):
        h, k_lo, k_hi = ranges[i, 0], ranges[i, 1], ranges[i, 2]
        k = k_lo
        for j in range(k_lo + 1, k_hi + 1):  # the first of equal maxima
            if total[j] > total[k]:
                k = j
        power = np.float64(total[k])
        below, above = np.float64(total[k - 1]), np.float64(total[k + 1])
        f_h = (k + _interpolate_peak(below, power, above)) * df / h
        if power > best_power and lo_hz * 0.98 <= f_h <= hi_hz * 1.02:
            best_power = power
            best_hz = f_h
    return best_hz


@_jit(nogil=True)
def _interpolate_peak(p_km1: float, p_k: float, p_kp1: float) -> float:  # pragma: no cover
    # pdm.dsp.spectrum.interpolate_peak, compiled (the same operations in float64)
    if min(p_km1, p_k, p_kp1) <= 0.0:
        return 0.0
    a = math.log(p_km1)
    b = math.log(p_k)
    c = math.log(p_kp1)
    den = a - 2.0 * b + c
    if den >= 0.0:
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (a - c) / den))


def shaft_speeds_hz(
    spec: npt.NDArray[np.complex64],
    n_ch: int,
    ranges: npt.NDArray[np.int64],
    df: float,
    rpm_range_hz: tuple[float, float],
    nominal_hz: float,
) -> npt.NDArray[np.float64]:
    """The running speed of each window, Hz, from the summed power of its channels'
    spectra (:meth:`pdm.dsp.features.FeatureExtractor._find_speeds_hz` states the method).

    Parameters
    ----------
    spec : (n_windows·n_ch, n_bins) complex64, C-contiguous: ``n_ch`` rows a window
    ranges : (harmonics, 3) int64: the harmonic ``h`` and its first and last bin searched
    df : bin spacing, Hz
    rpm_range_hz : the speed range, Hz; a harmonic's estimate is kept within 2 % of it
    nominal_hz : the speed when no harmonic gives one (no peak within 2 % of the range)

    A speed stands when the 1×-3× lines that agree on it are unlikely from noise, and the
    best scored (lines capped at 20 dB, electrical ones halved) wins; none stands: the
    strongest harmonic's interpolated peak, as before issue 18.

    Returns
    -------
    (n_windows,) float64
    """
    n_win = spec.shape[0] // n_ch
    out = np.empty(n_win, dtype=np.float64)
    v = np.ascontiguousarray(spec, dtype=np.complex64).view(np.float32)
    ranges = np.ascontiguousarray(ranges, dtype=np.int64)
    valid = np.ones(n_win, dtype=np.bool_)
    bins = np.empty((n_win * n_ch, 1), dtype=np.float64)
    shaft_speeds_into(v, n_ch, ranges, df, rpm_range_hz, nominal_hz, valid, out, bins)
    return out


def shaft_speeds_into(
    v: npt.NDArray[np.float32],
    n_ch: int,
    ranges: npt.NDArray[np.int64],
    df: float,
    rpm_range_hz: tuple[float, float],
    nominal_hz: float,
    valid: npt.NDArray[np.bool_],
    out: npt.NDArray[np.float64],
    bins: npt.NDArray[np.float64],
    stood: npt.NDArray[np.bool_] | None = None,
) -> None:
    """:func:`shaft_speeds_hz` into arrays the caller holds, the checks left to it (the
    feature extractor's pass: after its FFT, each numpy call it saves ran cold).

    Parameters
    ----------
    v : (n_windows·n_ch, ≥ 2·n_bins) float32, C-contiguous: the spectra as float32 pairs
    n_ch, ranges, df, rpm_range_hz, nominal_hz : as for :func:`shaft_speeds_hz`
        (``ranges`` (harmonics, 3) int64, C-contiguous)
    valid : (n_windows,) bool: a window that is not a measurement is not searched; its
        speed is ``nominal_hz``
    out : (n_windows,) float64: receives each window's speed, Hz
    bins : (n_windows·n_ch, 1) float64: receives each row's window's speed in bins (÷ df)
    stood : (n_windows,) bool, or None: receives whether a speed stood in each window (its
        lines unlikely from noise); False where the speed is the strongest peak's or the
        nominal (not a measurement)
    """
    lo_hz, hi_hz = rpm_range_hz
    if stood is None:
        stood = np.empty(out.shape[0], dtype=np.bool_)
    _speeds(v, n_ch, ranges, df, lo_hz, hi_hz, nominal_hz, MAINS_BASES_HZ, valid, out, bins, stood)
