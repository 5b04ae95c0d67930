"""Why a window is anomalous: the features that moved most.

Input is one window's model vector: qualified feature names (``"<channel>.<feature>"``,
see :mod:`pdm.scoring.vector`), their raw values, and their robust z-scores
against the machine's own healthy baseline (:meth:`pdm.scoring.preprocess.Preprocess.transform`).
Any subset of features may be present; missing or non-finite ones are ignored.
Nothing here reads files or keeps state.

The diagnosis of a window is not made here from that one window: it is the machine's
diagnosis over the recent windows (:mod:`pdm.diagnosis`, rules in docs/diagnosis.md),
which the feature stream carries with every window. :data:`DIAGNOSES` lists its labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.diagnosis import DIAGNOSES

__all__ = ["DIAGNOSES", "top_features"]


def top_features(
    names: Sequence[str], values: npt.ArrayLike, z: npt.ArrayLike, k: int = 5
) -> list[dict[str, Any]]:
    """The ``k`` features furthest from the healthy baseline, largest ``|z|`` first.

    Parameters
    ----------
    names : sequence of str
        Qualified feature names, e.g. ``"x_g.env_bpfo_g"``.
    values : array_like, shape (d,)
        Raw feature values.
    z : array_like, shape (d,)
        Robust z-scores of the same features.
    k : int
        How many to return, 3 to 5.

    Returns
    -------
    list of dict
        ``{"feature": str, "value": float, "z": float}`` for at most ``k``
        features whose value and z-score are both finite (fewer when fewer are).

    Raises
    ------
    ValueError
        When ``k`` is not in 3..5 or the lengths differ.

    Examples
    --------
    >>> top_features(["a.x", "a.y", "a.z"], [1.0, 2.0, 3.0], [0.5, -6.0, float("nan")], k=3)
    [{'feature': 'a.y', 'value': 2.0, 'z': -6.0}, {'feature': 'a.x', 'value': 1.0, 'z': 0.5}]
    """
    if not 3 <= k <= 5:
        raise ValueError(f"{k=} must be in 3..5")
    v, zz = _check(names, values, z)
    ok = np.flatnonzero(np.isfinite(v) & np.isfinite(zz))
    order = ok[np.argsort(-np.abs(zz[ok]), kind="stable")][:k]
    return [{"feature": names[i], "value": float(v[i]), "z": float(zz[i])} for i in order]


# --------------------------------------------------------------------------- helpers


def _check(
    names: Sequence[str], values: npt.ArrayLike, z: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    if not len(names) == v.size == zz.size:
        raise ValueError(f"{len(names)} names, {v.size} values and {zz.size} z-scores differ")
    return v, zz
