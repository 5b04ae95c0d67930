"""Reading spectral lines: the strongest bin of a search range, its prominence over a local
floor and whether it is significant (the statistics of :func:`line_threshold_db`).

The rules that use them are in :mod:`pdm.diagnosis.rules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import gammainccinv

__all__ = ["F64", "TINY", "LinesRead", "line_threshold_db", "over_floor_db", "read_lines"]

F64 = npt.NDArray[np.float64]
#: Σ|W(k)|² / |W(0)|² of a Hann window's main lobe: the energy of ±2 bins is 1.5 × the
#: peak bin's for a tone on a bin centre, and the same sum holds between bins.
_HANN_LOBE_ENERGY = 1.5
#: Power at or below this (the smallest normal float64) is numerical zero: the spectra are
#: of float32 samples, whose smallest non-zero power is some 1e-90.
TINY = float(np.finfo(np.float64).tiny)


def over_floor_db(power: F64 | float, floor: F64 | float) -> F64:
    """``10·log10(power / floor)``, dB; 0 where the power or the floor is numerical zero
    (at or below :data:`TINY`). A line of no power stands over nothing, and over a floor of
    no power no ratio measures anything: a dead channel's zeros read +76.5 dB everywhere
    when the line was taken as at least 1e-300 and the floor as at least TINY.

    >>> over_floor_db(np.array([10.0, 0.0, 5.0]), np.array([1.0, 0.0, 0.0])).tolist()
    [10.0, 0.0, 0.0]
    """
    p = np.asarray(power, dtype=np.float64)
    f = np.asarray(floor, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        db = 10.0 * np.log10(p / f)
    return np.where((p > TINY) & (f > TINY), db, 0.0)


@lru_cache(maxsize=1024)
def line_threshold_db(k_eff: float, bins: int, p_false: float) -> float:
    """Prominence (dB over a median floor) that averaged noise passes with probability
    ``p_false`` somewhere among ``bins`` bins.

    The power of a noise bin averaged over ``k_eff`` independent windows is
    Gamma(k, 1/k) distributed (χ² with 2k degrees of freedom, mean 1); the floor is its
    median. ``k_eff`` is rounded to a quarter so the cache stays small.
    """
    k = max(0.25, round(4.0 * k_eff) / 4.0)
    q = max(p_false / max(1, bins), 1e-12)
    tail = float(gammainccinv(k, q)) / k
    median = float(gammainccinv(k, 0.5)) / k
    return 10.0 * math.log10(tail / median)


@dataclass(frozen=True, slots=True)
class LinesRead:
    """Lines read from (C, n) spectra at (C, L) positions: every field (C, L)."""

    expected: F64
    found: F64
    amp: F64
    prom: F64
    thr: F64
    sig: npt.NDArray[np.bool_]
    #: The bin found's own prominence (dB) where it is a local maximum — a line —, 0 where it
    #: is no peak (the skirt of a stronger line beside the range). ``prom`` is the range's
    #: strongest bin's, which a skirt at the range's edge may be.
    line_db: F64

    def part(self, a: int, b: int) -> LinesRead:
        """Lines ``a … b−1``."""
        return LinesRead(
            self.expected[:, a:b],
            self.found[:, a:b],
            self.amp[:, a:b],
            self.prom[:, a:b],
            self.thr[:, a:b],
            self.sig[:, a:b],
            self.line_db[:, a:b],
        )


def read_lines(
    p: F64,
    df: float,
    hz: F64,
    base: F64,
    lo_b: F64,
    hi_b: F64,
    half: F64,
    floor: F64,
    k_eff: F64,
    p_false: float,
    min_db: F64,
    healthy: F64 | None = None,
) -> LinesRead:
    """Read lines at ``hz`` (C, L) ± ``half`` (L,) bins (≥ 1) in every row of ``p`` (C, n).

    ``base`` (L,): the bin where each line's spectrum starts in ``p`` (spectra are
    concatenated); ``lo_b``, ``hi_b`` (L,): the bins it may be read in; ``floor`` (C, L):
    its local floor; ``k_eff`` (L,): independent windows behind its spectrum. ``healthy``
    (C, n), the machine's healthy power on the same bins (:mod:`pdm.diagnosis.baseline`):
    a line is then the bin that stands most over ``max(floor, healthy)``, and its
    prominence is over that.
    """
    n = p.shape[-1]
    centre = hz / df + base
    h = np.maximum(half, 1.0)
    lo = np.maximum(np.rint(centre - h), lo_b)
    hi = np.minimum(np.rint(centre + h), hi_b - 2)
    width = int(np.max(hi - lo)) + 1
    # Flat indices into p: a 1-D take is much cheaper than broadcast 2-D fancy indexing.
    flat = p.reshape(-1)
    row0 = (np.arange(p.shape[0]) * n)[:, None]
    cand = (lo + row0)[..., None] + np.arange(width)  # (C, L, W)
    idx = cand.astype(np.intp)
    vals = flat.take(idx, mode="clip")
    vals[cand > (hi + row0)[..., None]] = -1.0

    # A line is a peak: the strongest bin of the range that is a local maximum, not the skirt
    # of a stronger line beside the range (its main lobe spills ± 2 bins into it and would
    # hide a weaker line there: a blade pass 2.4 bins from an outer race's BPFO).
    def strongest_peak(v: F64, left: F64, right: F64) -> npt.NDArray[np.intp]:
        """The strongest local maximum of each range (the strongest bin when none is)."""
        peak = (v >= left) & (v >= right)
        return np.argmax(np.where(peak, v, v - np.max(v, axis=-1, keepdims=True) - 1.0), axis=-1)

    if healthy is None:
        j = strongest_peak(vals, flat.take(idx - 1, mode="clip"), flat.take(idx + 1, mode="clip"))
        k = (lo + j).astype(np.intp)  # bin within the row
        kf = k + row0.astype(np.intp)
        peak = vals.max(axis=-1)
        ref = floor
        # A peak, not the skirt of a stronger line next to the range: a local maximum.
        local = (peak >= flat.take(kf - 1, mode="clip")) & (peak >= flat.take(kf + 1, mode="clip"))
        own = flat.take(kf, mode="clip")
        is_line = (own >= flat.take(kf - 1, mode="clip")) & (own >= flat.take(kf + 1, mode="clip"))
        line_db = np.where(is_line, over_floor_db(own, floor), 0.0)
    else:
        hflat = healthy.reshape(-1)

        def over_at(at: npt.NDArray[np.intp]) -> F64:
            return flat.take(at, mode="clip") / np.maximum(
                floor[..., None], hflat.take(at, mode="clip")
            )

        over = vals / np.maximum(floor[..., None], hflat.take(idx, mode="clip"))
        j = strongest_peak(over, over_at(idx - 1), over_at(idx + 1))
        k = (lo + j).astype(np.intp)
        kf = k + row0.astype(np.intp)
        peak = np.take_along_axis(vals, j[..., None], axis=-1)[..., 0]
        ref = np.maximum(floor, hflat.take(kf, mode="clip"))

        def excess(at: npt.NDArray[np.intp]) -> F64:
            return flat.take(at, mode="clip") / np.maximum(floor, hflat.take(at, mode="clip"))

        top = peak / ref
        local = (top >= excess(kf - 1)) & (top >= excess(kf + 1))
        line_db = np.where(local, over_floor_db(peak, ref), 0.0)
    prom = over_floor_db(peak, ref)
    lobe = flat.take(kf[..., None] + np.arange(-2, 3), mode="clip")
    amp = np.sqrt(lobe.sum(axis=-1) / _HANN_LOBE_ENERGY)
    bins = (hi - lo + 1).astype(np.intp)
    thr = np.maximum(_thresholds(k_eff, bins, p_false), min_db)
    found = ((k - base) * df).astype(np.float64)
    return LinesRead(hz, found, amp, prom, thr, (prom >= thr) & local, line_db)


def _thresholds(k_eff: F64, bins: npt.NDArray[np.intp], p_false: float) -> F64:
    """:func:`line_threshold_db` of every (C, L) line, from a table per distinct ``k_eff``
    (one per spectrum) indexed by the bins searched."""
    out = np.empty(bins.shape)
    top = int(bins.max()) + 1
    for kk in set(k_eff.tolist()):
        lut = np.array([line_threshold_db(kk, b, p_false) for b in range(top)])
        sel = k_eff == kk
        out[:, sel] = lut[bins[:, sel]]
    return out
