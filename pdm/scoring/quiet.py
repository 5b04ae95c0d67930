"""A machine quieter than its healthy baseline: an information hint, never an alarm.

The model counts only rises of amplitude features (:func:`pdm.scoring.vector.direction`),
so a window below the baseline scores as the baseline. That a machine runs much
quieter than when it was learnt is still worth a look: a lighter load or a slower
speed, or a sensor that lost contact with the machine (a loose magnet, a cracked
stud, a cable that picks up less than it should). :func:`below_baseline` says so when
most of a window's amplitude features are far below their baseline.

Rule: at least :data:`QUIET_SHARE` of the finite amplitude features (``*_g``,
``*_mm_s``: not the shape factors) have a robust z-score of at most −:data:`QUIET_Z`.
Three robust standard deviations below the median is rarer than 1 in 700 for one
Gaussian feature on its own; half of them at once does not happen by chance, and
a 6 dB quieter machine puts nearly all of them there (tests/scoring/test_direction.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["QUIET_SHARE", "QUIET_Z", "QuietScreen", "amplitude_mask", "below_baseline"]

#: Robust standard deviations below the baseline median from which a feature counts as quiet.
QUIET_Z = 3.0
#: Share of the amplitude features that must be quiet at once.
QUIET_SHARE = 0.5


def amplitude_mask(names: Sequence[str]) -> npt.NDArray[np.bool_]:
    """(d,) True for amplitude features (unit g or mm/s in the name; not ``mean_g``)."""
    out = []
    for n in names:
        feat = n.rsplit(".", 1)[-1]
        out.append(feat != "mean_g" and feat.endswith(("_g", "_mm_s")))
    return np.array(out, dtype=bool)


def below_baseline(
    z: npt.ArrayLike, amplitude: npt.NDArray[np.bool_]
) -> list[dict[str, Any] | None]:
    """The quiet-machine hint of each window, or None where there is none.

    Parameters
    ----------
    z : array_like, shape (n, d)
        Robust z-scores of n windows (not clipped).
    amplitude : (d,) bool
        :func:`amplitude_mask` of the feature names.

    Returns
    -------
    list of (dict or None), length n
        ``{"features": k, "of": m, "median_z": float, "message": str}`` for a window
        where k of its m finite amplitude features are at most −QUIET_Z.
    """
    zz = np.asarray(z)
    if zz.ndim != 2 or zz.shape[1] != amplitude.size:
        raise ValueError(f"z must have shape (n, {amplitude.size}), got {zz.shape}")
    out: list[dict[str, Any] | None] = [None] * len(zz)
    a = zz[:, amplitude]
    # Almost every window of a service has no amplitude feature that low, and then no hint
    # (k = 0 < QUIET_SHARE · m whenever m > 0): one comparison settles it. (float32 to
    # float64 is exact, so comparing before the conversion changes nothing.)
    if not (a <= -QUIET_Z).any():
        return out
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    m = finite.sum(axis=1)
    k = (finite & (a <= -QUIET_Z)).sum(axis=1)
    quiet = (m > 0) & (k >= QUIET_SHARE * m)
    for i in np.flatnonzero(quiet).tolist():
        med = float(np.median(a[i][finite[i]]))
        out[i] = {
            "features": int(k[i]),
            "of": int(m[i]),
            "median_z": round(med, 2),
            "message": (
                f"{int(k[i])} of {int(m[i])} amplitude features more than {QUIET_Z:g} robust sd "
                f"below the healthy baseline (median z {med:+.1f}): a lighter load or a slower "
                "speed, or check the sensor and its mounting"
            ),
        }
    return out


class QuietScreen:
    """:func:`below_baseline` for one model's features, worked out once per model.

    A scorer calls it for every window and almost never finds a hint; two screens settle
    most windows without the column selection, conversions and checks of
    :func:`below_baseline` (which decides the rest, so the results are the same):

    * no amplitude feature at or below −:data:`QUIET_Z` (one comparison of the row with a
      per-feature floor: −QUIET_Z on amplitude features, NaN — never true — on the others):
      no hint;
    * one window whose z-scores are all finite, with fewer than :data:`QUIET_SHARE` of its
      amplitude features that low: no hint (its ``m`` is every amplitude feature).

    Parameters
    ----------
    names : the model's qualified feature names (:func:`amplitude_mask` of them)
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.amplitude = amplitude_mask(names)
        self._floor = np.where(self.amplitude, -QUIET_Z, np.nan).astype(np.float32)
        self._few = QUIET_SHARE * int(self.amplitude.sum())

    def __call__(self, z: npt.NDArray[np.floating]) -> list[dict[str, Any] | None]:
        """The hint of each row of ``z`` (n, d), or None (:func:`below_baseline`)."""
        if z.ndim == 2 and z.shape[1] == self._floor.size:
            low = z <= self._floor
            if not low.any():
                return [None] * len(z)
            if len(z) == 1 and np.count_nonzero(low) < self._few and np.isfinite(z).all():
                return [None]
        return below_baseline(z, self.amplitude)
