"""Compiled time-domain passes of the feature extractor (numba).

A window's time-domain features need its minimum, maximum, mean and central moments 2–4,
and its FFT needs the mean-removed, windowed copy ``w·(x − mean)``. As numpy calls that is
nine passes over every row (mean, min, max, ``d = x − mean``, ``d²``, three dot products,
``d·w``), each cheap but each a trip through the data and the interpreter: 0.7–0.8 of the
batched FFT itself (``pdm-edge bench --profile-dsp``). :func:`moments_windowed` does the
same in two passes per row, the second while the row is still in cache: 0.2 of the FFT.

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

from collections.abc import Sequence

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["envelope_less_mean", "moments_windowed"]

# Reassociation (SIMD sums), contraction (FMA), and no care for the sign of zero; NOT
# "no NaNs/infs": a NaN sample must stay NaN through the sums.
_FAST = {"reassoc", "contract", "nsz", "arcp", "afn"}
_SIGN = np.int32(0x7FFFFFFF)


@numba.njit(fastmath=_FAST, nogil=True, cache=True, boundscheck=False)
def _moments(  # pragma: no cover - compiled
    x: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    d: npt.NDArray[np.float32],
    out: npt.NDArray[np.float64],
) -> None:
    n = x.shape[1]
    bits = x.view(np.int32)
    for r in range(x.shape[0]):
        row = x[r]
        rb = bits[r]
        total = np.float32(0.0)
        kmin = np.int32(2147483647)
        kmax = np.int32(-2147483648)
        for i in range(n):
            total += row[i]
            b = rb[i]
            k = b ^ ((b >> 31) & _SIGN)  # ordered like the float it encodes
            kmin = min(kmin, k)
            kmax = max(kmax, k)
        # A flat row's mean is its value, exactly (a float32 sum of n copies may round).
        mu = row[0] if kmin == kmax else np.float32(total / n)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        a4 = np.float32(0.0)
        dr = d[r]
        for i in range(n):
            v = row[i] - mu
            q = v * v
            a1 += v
            a2 += q
            a3 += q * v
            a4 += q * q
            dr[i] = v * w[i]
        out[r, 0] = kmin
        out[r, 1] = kmax
        out[r, 2] = mu
        out[r, 3] = a1 / n
        out[r, 4] = a2 / n
        out[r, 5] = a3 / n
        out[r, 6] = a4 / n


def moments_windowed(
    blocks: Sequence[npt.NDArray[np.float32]],
    w: npt.NDArray[np.float32],
    d: npt.NDArray[np.float32],
) -> npt.NDArray[np.float64]:
    """Each row's min, max, mean and central moments; ``d = w·(x − mean)`` written.

    Parameters
    ----------
    blocks : (rows_b, n) float32 arrays, C-contiguous: the samples (g), their rows in order
    w : (n,) float32: the window
    d : (rows, n) float32, C-contiguous, ``rows`` the blocks' rows together: receives
        ``w·(x − m)``, ``m`` the mean within ~1e-7 of ``|mean|`` (what remains is a DC of
        that size, which a Hann window keeps in bins 0 and 1)

    Returns
    -------
    (rows, 6) float64: min, max, mean, ``E(x−mean)²``, ``E(x−mean)³``, ``E(x−mean)⁴``; a
    row holding NaN has a NaN min or max (and meaningless moments: the caller discards it).
    """
    raw = np.empty((d.shape[0], 7), dtype=np.float64)
    r = 0
    for b in blocks:
        k = r + b.shape[0]
        _moments(b, w, d[r:k], raw[r:k])
        r = k
    keys = raw[:, :2].astype(np.int32)
    out = np.empty((d.shape[0], 6), dtype=np.float64)
    out[:, :2] = (keys ^ ((keys >> 31) & _SIGN)).view(np.float32)
    c, m2, m3, m4 = raw[:, 3], raw[:, 4], raw[:, 5], raw[:, 6]
    # Moments about mean₁ + c (the exact mean), from those about mean₁; a flat row's
    # variance may come out a rounding below 0. Rows of inf or NaN give NaN quietly.
    with np.errstate(invalid="ignore", over="ignore"):
        out[:, 2] = raw[:, 2] + c
        c2 = c * c
        out[:, 3] = np.maximum(m2 - c2, 0.0)
        out[:, 4] = m3 - 3.0 * c * m2 + 2.0 * c * c2
        out[:, 5] = m4 - 4.0 * c * m3 + 6.0 * c2 * m2 - 3.0 * c2 * c2
    return out


@numba.njit(fastmath=_FAST, nogil=True, cache=True, boundscheck=False)
def _envelope(  # pragma: no cover - compiled
    z: npt.NDArray[np.complex64], hann: npt.NDArray[np.float32], env: npt.NDArray[np.float32]
) -> None:
    m = z.shape[1]
    for r in range(z.shape[0]):
        zr = z[r]
        er = env[r]
        total = np.float32(0.0)
        for i in range(m):
            a = np.sqrt(zr[i].real * zr[i].real + zr[i].imag * zr[i].imag)
            er[i] = a
            total += a
        mean2 = total * np.float32(2.0 / m)
        for i in range(m):
            er[i] -= mean2 * hann[i]


def envelope_less_mean(
    z: npt.NDArray[np.complex64], hann: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``|z| − mean(|z|)·2·hann``: the envelope of each row of an analytic signal, without
    the Hann kernel its mean leaves in its spectrum (:func:`pdm.dsp.envelope.envelope_power`).

    Parameters
    ----------
    z : (rows, m) complex64, C-contiguous: the analytic band signal, Hann-weighted
    hann : (m,) float32: the periodic Hann window of length m (mean 1/2)

    Returns
    -------
    (rows, m) float32
    """
    env = np.empty(z.shape, dtype=np.float32)
    _envelope(z, hann, env)
    return env
