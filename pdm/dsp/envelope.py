"""Envelope (demodulation) analysis from the bins of the one FFT already taken.

A bearing defect strikes a structural resonance once per defect period; the
resonance rings at kHz, the strikes repeat at BPFO/BPFI/... Hz. Demodulating a
band around the resonance and taking the spectrum of its envelope shows the
strike rate. The plain method (band-pass filter, Hilbert transform, FFT of
the full-length envelope) costs several full-length transforms; here:

1. the band's bins ``X[k1:k2]`` of the window's ``rfft`` are the analytic
   band signal's spectrum, already shifted to base band by indexing them from 0;
2. an inverse FFT of only ``M >= (k2 − k1) + K_env`` points gives that
   analytic signal decimated to ``M`` samples across the same window (the
   envelope's magnitude does not care about the frequency shift), where
   ``K_env`` bins cover the envelope frequencies of interest, so the
   envelope spectrum there is free of aliasing from the band's own width;
3. ``|z|`` is the envelope, still carrying the Hann window as a slow
   amplitude weighting, which is exactly the windowing its own ``rfft`` needs.

The envelope spectrum has the same bin spacing ``fs/N`` as the main spectrum.
Its amplitude scaling follows :mod:`pdm.dsp.spectrum` with ``n = M`` and
``Σw² = 3M/8`` (a periodic Hann sampled at M points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from pdm.dsp.spectrum import squared_parts

__all__ = ["EnvelopePlan", "envelope_power", "plan_envelope", "spectral_kurtosis_band"]

# E[w⁴]/E[w²]² of a Hann window: the kurtosis a steady band gains from the
# window alone, divided out so that Gaussian noise reads SK ≈ 0.
_HANN_KURTOSIS_GAIN = (35 / 128) / (3 / 8) ** 2


@dataclass(frozen=True, slots=True)
class EnvelopePlan:
    """Bins and lengths for one envelope band at one (fs, N).

    Attributes
    ----------
    lo_hz, hi_hz : band edges actually used (snapped to bins), Hz
    k1, k2 : the band is ``X[:, k1:k2]``
    m : length of the decimated envelope (samples across the window)
    n_env_bins : envelope spectrum bins kept (``0 .. n_env_bins-1``, spacing fs/N)
    scale : multiply ``|ifft|`` by this to get the envelope in the signal's unit
    """

    lo_hz: float
    hi_hz: float
    k1: int
    k2: int
    m: int
    n_env_bins: int
    scale: float

    @property
    def sum_w2(self) -> float:
        """Σw² of the Hann weighting carried by the decimated envelope."""
        return 3.0 * self.m / 8.0


def plan_envelope(
    fs: float, n: int, band_hz: tuple[float, float], env_max_hz: float
) -> EnvelopePlan:
    """Plan the envelope of ``band_hz`` for windows of ``n`` samples at ``fs`` Hz.

    ``env_max_hz`` is the highest envelope frequency wanted (e.g. a bit over
    2 × the highest defect frequency). Raises ``ValueError`` naming the value
    when the band does not fit.
    """
    lo, hi = band_hz
    nyq = fs / 2
    if not 0 < lo < hi:
        raise ValueError(f"envelope band {band_hz} must satisfy 0 < low < high")
    if hi > nyq:
        raise ValueError(f"envelope band high edge {hi} Hz is above Nyquist ({nyq} Hz at fs={fs})")
    df = fs / n
    k1 = max(1, round(lo / df))
    k2 = min(n // 2, round(hi / df) + 1)
    nb = k2 - k1
    if nb < 4:
        raise ValueError(f"envelope band {band_hz} Hz spans only {nb} bins at fs={fs}, n={n}")
    n_env = min(int(np.ceil(env_max_hz / df)) + 1, nb)
    m = sfft.next_fast_len(nb + n_env)
    # ifft divides by m; the analytic band signal of the windowed window is 2/n · Σ X e^{...}.
    return EnvelopePlan(k1 * df, (k2 - 1) * df, k1, k2, m, n_env, 2.0 * m / n)


def envelope_power(
    x_spec: npt.NDArray[np.complexfloating], plan: EnvelopePlan
) -> npt.NDArray[np.float32]:
    """Unscaled envelope power spectrum ``|rfft(|z|)|²`` for bins ``0 .. n_env_bins-1``.

    Parameters
    ----------
    x_spec : (n_channels, n//2+1) complex, ``rfft(w·x)`` of the window
    plan : from :func:`plan_envelope`

    Returns
    -------
    (n_channels, 2·n_env_bins) float32, squared real and imaginary parts
    interleaved as :func:`pdm.dsp.spectrum.squared_parts` gives them; multiply
    by ``plan.scale²`` for the signal's unit squared, then read it like any
    power spectrum with ``n = plan.m`` and ``Σw² = plan.sum_w2``.
    """
    # never overwrite_x here: the slice is a view into the caller's spectrum.
    z = sfft.ifft(x_spec[:, plan.k1 : plan.k2], n=plan.m, axis=-1)
    env = np.abs(z)
    # The envelope is w·a(t): its mean shows as the Hann kernel at bins 0 and ±1, half
    # the mean envelope at bin 1, which would swamp the lowest defect lines (FTF).
    # Removing mean(a)·w takes exactly that out and leaves the modulation alone.
    hann_m = _hann_cache(plan.m)
    mean_a = env.sum(axis=-1, keepdims=True) * (2.0 / plan.m)
    env -= mean_a * hann_m
    e = sfft.rfft(env, axis=-1, overwrite_x=True)[:, : plan.n_env_bins]
    return squared_parts(np.ascontiguousarray(e, dtype=np.complex64))


_HANN: dict[int, npt.NDArray[np.float32]] = {}


def _hann_cache(m: int) -> npt.NDArray[np.float32]:
    """Periodic Hann of length ``m`` (the weighting the decimated envelope carries), cached."""
    w = _HANN.get(m)
    if w is None:
        w = _HANN[m] = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)).astype(np.float32)
    return w


def candidate_bands(
    fs: float, min_lo_hz: float, min_width_hz: float, levels: tuple[int, ...] = (2, 3, 4)
) -> list[tuple[float, float]]:
    """Candidate demodulation bands: dyadic widths ``fs/2 / 2**L``, half-overlapping.

    Bands starting below ``min_lo_hz`` or narrower than ``min_width_hz`` are left out.
    """
    nyq = fs / 2
    out: list[tuple[float, float]] = []
    for level in levels:
        width = nyq / 2**level
        if width < min_width_hz:
            continue
        step = width / 2
        lo = 0.0
        while lo + width <= nyq * 0.98:
            if lo >= min_lo_hz:
                out.append((lo, lo + width))
            lo += step
    return out


def spectral_kurtosis_band(
    x_spec: npt.NDArray[np.complexfloating],
    fs: float,
    n: int,
    candidates: list[tuple[float, float]],
) -> tuple[tuple[float, float], float]:
    """The candidate band whose envelope is most impulsive (highest spectral kurtosis).

    SK of a band is ``E|z|⁴ / (E|z|²)² − 2`` of its complex envelope ``z``
    (0 for Gaussian noise, > 0 for repetitive impacts), averaged over channels;
    ``z`` comes from the window's own bins at critical sampling, so this costs
    inverse FFTs only, no filtering. Used by ``envelope.band_hz = "auto"``.

    Returns ``((lo_hz, hi_hz), sk)``.
    """
    if not candidates:
        raise ValueError("no candidate bands for spectral kurtosis (sample rate too low?)")
    df = fs / n
    best: tuple[tuple[float, float], float] = (candidates[0], -np.inf)
    by_width: dict[int, list[tuple[int, tuple[float, float]]]] = {}
    for band in candidates:
        k1 = max(1, round(band[0] / df))
        nb = round((band[1] - band[0]) / df)
        by_width.setdefault(nb, []).append((k1, band))
    for nb, items in by_width.items():
        starts = np.array([k1 for k1, _ in items])
        idx = starts[:, None] + np.arange(nb)
        z = sfft.ifft(x_spec[:, idx], axis=-1)  # (channels, bands, nb)
        a2 = z.real * z.real + z.imag * z.imag
        m2 = a2.mean(axis=-1)
        m4 = (a2 * a2).mean(axis=-1)
        sk = (m4 / np.maximum(m2 * m2, np.finfo(np.float32).tiny)) / _HANN_KURTOSIS_GAIN - 2.0
        sk_mean = sk.mean(axis=0)
        i = int(np.argmax(sk_mean))
        if sk_mean[i] > best[1]:
            best = (items[i][1], float(sk_mean[i]))
    return best
