"""One-sided spectra from a single Hann-windowed real FFT, and what is read off them.

Scaling is stated once, here, and pinned by known-answer tests:

* ``X = rfft(w · (x − mean(x)))`` with a periodic Hann window ``w`` of length N.
* The **power spectrum** ``P[k] = |X[k]|²`` is kept unscaled. The mean square
  of the signal in a set of bins is ``2 · Σ P[k] / (N · Σw²)`` (Parseval for
  the windowed signal, one-sided; see :func:`band_mean_square`).
* The **amplitude spectrum** for display is ``2 |X[k]| / Σw``: a sine of
  amplitude A whose frequency falls on a bin centre reads A there. Between
  bins a Hann window reads up to 15 % (1.42 dB) low; that is why tone
  features do not read one bin but sum the energy of the main lobe
  (:class:`ToneSearch`), which gives A wherever the tone falls.

Arrays are channel-major: ``(n_channels, n_samples)`` in, ``(n_channels, n_bins)`` out.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from pdm.dsp.kernels import tone_amplitudes, tone_amplitudes_at

__all__ = [
    "HANN_LOBE_BINS",
    "ToneSearch",
    "band_mean_square",
    "band_weights",
    "hann",
    "interpolate_peak",
    "power_from_parts",
    "rfft_freqs",
    "squared_parts",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Half-width, in bins, of the part of a Hann main lobe summed for a tone's energy.
#: The main lobe is ±2 bins wide; ±2 around the strongest bin holds > 99.9 % of a
#: tone's energy wherever it falls between bins.
HANN_LOBE_BINS = 2


def hann(n: int) -> F32:
    """Periodic Hann window of length ``n`` (the DFT-even form), float32.

    Periodic, not symmetric: it makes Σw = n/2 and Σw² = 3n/8 exact.
    """
    if n < 4:
        raise ValueError(f"{n=} must be >= 4")
    k = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * np.pi * k / n)).astype(np.float32)


def rfft_freqs(n: int, fs: float) -> F64:
    """Bin frequencies (Hz) of ``rfft`` of ``n`` samples at ``fs`` Hz."""
    if fs <= 0:
        raise ValueError(f"{fs=} must be > 0")
    return np.arange(n // 2 + 1, dtype=np.float64) * (fs / n)


def band_weights(
    freqs: F64, lo_hz: float, hi_hz: float, weight: npt.NDArray[np.floating] | None = None
) -> F64:
    """A bin-weight vector that selects ``lo_hz <= f <= hi_hz`` (optionally weighted).

    ``P @ band_weights(...)`` sums power over the band; pass ``weight`` (same
    shape as ``freqs``) to integrate, e.g. ``1/(2πf)²`` for velocity.
    """
    mask = (freqs >= lo_hz) & (freqs <= hi_hz)
    out = mask.astype(np.float64)
    if weight is not None:
        out *= weight
    return out


def band_mean_square(
    p: npt.NDArray[np.floating], weights: npt.NDArray[np.floating], n: int, sum_w2: float
) -> F64:
    """Mean square in a band (or bands) from an unscaled one-sided power spectrum.

    Parameters
    ----------
    p : (n_channels, n_bins) ``|rfft(w·x)|²``
    weights : (n_bins,) or (n_bins, n_bands) bin weights (see :func:`band_weights`)
    n : window length in samples
    sum_w2 : Σw² of the window

    Returns
    -------
    (n_channels,) or (n_channels, n_bands) mean square, in the signal's unit squared
    (times the weights' unit).
    """
    return np.asarray(p @ weights, dtype=np.float64) * (2.0 / (n * sum_w2))


def interpolate_peak(p_km1: float, p_k: float, p_kp1: float) -> float:
    """Sub-bin offset (in [-0.5, 0.5]) of a peak from the powers of its bin and neighbours.

    Gaussian (log-parabolic) interpolation, nearly exact for a Hann main lobe.
    """
    if min(p_km1, p_k, p_kp1) <= 0.0:
        return 0.0
    a, b, c = math.log(p_km1), math.log(p_k), math.log(p_kp1)
    den = a - 2.0 * b + c
    if den >= 0.0:
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (a - c) / den))


def squared_parts(spec: npt.NDArray[np.complex64]) -> F32:
    """Squared real and imaginary parts, interleaved: ``(..., 2·n_bins)`` float32.

    ``|X[k]|² = sq[2k] + sq[2k+1]``. Weighted sums over bins read this directly
    with row-repeated weights (one BLAS call), and tone searches gather the few
    bins they need, so the full power spectrum is only formed for display.
    """
    v = spec.view(np.float32)
    return v * v


def power_from_parts(sq: npt.NDArray[np.float32]) -> F32:
    """``|X|²`` (…, n_bins) from :func:`squared_parts`."""
    return sq[..., 0::2] + sq[..., 1::2]


class ToneSearch:
    """Finds the strongest tone near each of several frequencies, and its amplitude.

    For each row of a power spectrum and each target, the main-lobe energy
    (sum over ±:data:`HANN_LOBE_BINS` bins) is maximised over the bins within
    ``centre ± half_width`` and turned into a peak amplitude
    ``A = sqrt(2 · mean square)``. A pure sine of amplitude A reads A to within
    0.1 %, on or between bins, which a single bin of a Hann spectrum does not
    (it reads up to 15 % low between bins).

    Built once per extractor with the widest search it will need; each call is one
    compiled loop over the targets (:func:`pdm.dsp.kernels.tone_amplitudes`), which
    squares only the bins the targets read.

    Parameters
    ----------
    n_bins : bins of the spectra to come
    max_half_width : the largest half-width (bins) any call will ask for
    n, sum_w2 : window length and Σw² of the window behind the spectra
    """

    def __init__(self, n_bins: int, max_half_width: float, n: int, sum_w2: float) -> None:
        self.n_bins = n_bins
        self.width = 2 * max(1, math.ceil(max_half_width)) + 1
        self._half_cap = (self.width - 1) / 2
        self._scale = 4.0 / (n * sum_w2)

    def __call__(
        self,
        sq: npt.NDArray[np.float32],
        centre_bins: npt.NDArray[np.float64],
        half_widths: npt.NDArray[np.float64],
    ) -> F64:
        """Amplitudes, (n_rows, n_targets), in the signal's unit; NaN for targets off the spectrum.

        ``sq`` is a spectrum as :func:`squared_parts` gives it, (n_rows, 2·n_bins) float32,
        C-contiguous. ``centre_bins`` and ``half_widths`` are (n_rows, n_targets)
        fractional bins; NaN centres give NaN.
        """
        return self._search(sq, True, centre_bins, half_widths)

    def in_spectrum(
        self,
        spec: npt.NDArray[np.complex64],
        centre_bins: npt.NDArray[np.float64],
        half_widths: npt.NDArray[np.float64],
    ) -> F64:
        """As calling the search on ``squared_parts(spec)`` (the same numbers, to the bit),
        squaring only the bins the targets read: ``spec`` is (n_rows, n_bins) complex64,
        C-contiguous."""
        # (a view of complex128 as float32 would read four parts a bin: converted first)
        v = np.ascontiguousarray(spec, dtype=np.complex64).view(np.float32)
        return self._search(v, False, centre_bins, half_widths)

    def at_multiples(
        self,
        sq: npt.NDArray[np.float32],
        squared: bool,
        multiples: npt.NDArray[np.float64],
        speed_bins: npt.NDArray[np.float64],
        tolerance: float,
        out: npt.NDArray[np.float64],
        col: int,
        out_scale: float = 1.0,
        narrower: ToneSearch | None = None,
    ) -> None:
        """Amplitudes at multiples of each row's speed, times ``out_scale``, into
        ``out[:, col:col + targets]``: the numbers of the search at centres
        ``np.tile(multiples, (rows // k, 1)) · speed_bins`` and half-widths ``centres ·
        tolerance``, to the bit, without those arrays.

        ``sq`` is (rows, ≥ 2·n_bins) float32, C-contiguous: a spectrum's parts, or with
        ``squared`` their squares; ``multiples`` (k, targets) float64, C-contiguous (row
        ``r`` reads row ``r % k``; NaN: no target); ``speed_bins`` (rows, 1) float64.
        With ``narrower`` (a search no wider than this one), the half-widths are capped at
        its cap first: the rows read what ``narrower`` would read (the rows of a pass's part
        whose own search is narrower than the one searching the pass).
        """
        self._check_width(sq)
        cap = self._half_cap if narrower is None else narrower._half_cap
        if cap > self._half_cap:
            raise ValueError(f"narrower search's cap {cap} > {self._half_cap}")
        tone_amplitudes_at(
            sq, squared, multiples, speed_bins, tolerance, self.n_bins, self._half_cap,
            HANN_LOBE_BINS, self._scale, out_scale, out, col, cap,
        )  # fmt: skip

    def _check_width(self, v: npt.NDArray[np.float32]) -> None:
        if v.shape[1] < 2 * self.n_bins:
            raise ValueError(f"spectrum of {v.shape[1] // 2} bins < n_bins={self.n_bins}")

    def _search(
        self,
        v: npt.NDArray[np.float32],
        squared: bool,
        centre_bins: npt.NDArray[np.float64],
        half_widths: npt.NDArray[np.float64],
    ) -> F64:
        self._check_width(v)
        return tone_amplitudes(
            np.ascontiguousarray(v, dtype=np.float32),
            squared,
            np.ascontiguousarray(centre_bins, dtype=np.float64),
            np.ascontiguousarray(half_widths, dtype=np.float64),
            self.n_bins,
            self._half_cap,
            HANN_LOBE_BINS,
            self._scale,
        )
