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
    names: Sequence[str],
    values: npt.ArrayLike,
    z: npt.ArrayLike,
    k: int = 5,
    *,
    directions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` features furthest from the healthy baseline *in a direction that counts*.

    Parameters
    ----------
    names : sequence of str
        Qualified feature names, e.g. ``"x_g.env_bpfo_g"``.
    values : array_like, shape (d,)
        Raw feature values.
    z : array_like, shape (d,)
        Robust z-scores of the same features (not clipped).
    k : int
        How many to return, 3 to 5.
    directions : sequence of str, optional
        ``"up"`` or ``"both"`` per feature (the model card's, see
        :func:`pdm.scoring.vector.direction`). An ``up`` feature ranks by ``z`` and
        only when it rose (``z > 0``): a feature below its baseline is no evidence of
        damage and is left out; a ``both`` feature ranks by ``|z|``. Each entry then
        says its ``direction``. None (a model without directions): every feature
        ranks by ``|z|``, as before directions existed.

    Returns
    -------
    list of dict
        ``{"feature": str, "value": float, "z": float}`` (plus ``"direction"`` when
        ``directions`` is given), largest departure first, for at most ``k``
        features whose value and z-score are finite (fewer when fewer are, or fewer
        departed in a direction that counts).

    Raises
    ------
    ValueError
        When ``k`` is not in 3..5 or the lengths differ.

    Examples
    --------
    >>> top_features(["a.x", "a.y", "a.z"], [1.0, 2.0, 3.0], [0.5, -6.0, float("nan")], k=3)
    [{'feature': 'a.y', 'value': 2.0, 'z': -6.0}, {'feature': 'a.x', 'value': 1.0, 'z': 0.5}]
    >>> top_features(["a.x", "a.y"], [1.0, 2.0], [0.5, -6.0], k=3, directions=["up", "up"])
    [{'feature': 'a.x', 'value': 1.0, 'z': 0.5, 'direction': 'up'}]
    """
    if not 3 <= k <= 5:
        raise ValueError(f"{k=} must be in 3..5")
    v, zz = _check(names, values, z)
    ok = np.isfinite(v) & np.isfinite(zz)
    if directions is None:
        departure = np.abs(zz)
    else:
        if len(directions) != len(names):
            raise ValueError(f"{len(names)} names and {len(directions)} directions differ")
        up = np.array([d == "up" for d in directions], dtype=bool)
        departure = np.where(up, zz, np.abs(zz))
        ok &= ~up | (zz > 0)
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(-departure[idx], kind="stable")][:k]
    out = [{"feature": names[i], "value": float(v[i]), "z": float(zz[i])} for i in order]
    if directions is not None:
        for entry, i in zip(out, order.tolist(), strict=True):
            entry["direction"] = directions[i]
    return out


# --------------------------------------------------------------------------- helpers


def _check(
    names: Sequence[str], values: npt.ArrayLike, z: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    if not len(names) == v.size == zz.size:
        raise ValueError(f"{len(names)} names, {v.size} values and {zz.size} z-scores differ")
    return v, zz
