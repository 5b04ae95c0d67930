"""Log and robust scaling of model inputs: fitted on healthy windows, mirrored in ONNX.

``z = (y − center) / scale`` with ``y = log(max(x, floor))`` for amplitudes and
the positive shape factors, ``y = x`` otherwise (see :func:`pdm.scoring.vector.log_floor`); ``center`` is the median and ``scale`` the IQR/1.349
(the standard deviation for Gaussian data, but not dragged by outliers) of the
training windows. :meth:`Preprocess.transform` is the numpy reference the ONNX
graph is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.scoring.vector import log_floor

__all__ = ["Preprocess"]

# Smallest scale per kind: a log amplitude that moved less than 1 % over the
# training data, or a shape factor that moved less than 0.01, is treated as
# having moved that much, so a constant feature cannot make z explode.
_MIN_SCALE_LOG = 0.01
_MIN_SCALE_RAW = 0.01


@dataclass(frozen=True)
class Preprocess:
    """Fitted log + robust scaling for a fixed feature vector.

    Attributes
    ----------
    names : qualified feature names (input order)
    log_mask : (d,) bool, True where the log is taken
    floor : (d,) clip floor before the log (1.0 where unused)
    center, scale : (d,) robust center and scale of the transformed features
    """

    names: tuple[str, ...]
    log_mask: npt.NDArray[np.bool_]
    floor: npt.NDArray[np.float32]
    center: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32]

    @classmethod
    def fit(cls, x: npt.ArrayLike, names: Sequence[str]) -> Preprocess:
        """Fit on healthy training windows ``x`` (n_windows, d), raw feature values."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(f"x shape {x.shape} does not match {len(names)} feature names")
        floors = [log_floor(n) for n in names]
        log_mask = np.array([f is not None for f in floors])
        floor = np.array([f if f is not None else 1.0 for f in floors], dtype=np.float32)
        y = _transform64(x, log_mask, floor)
        center = np.median(y, axis=0)
        q75, q25 = np.percentile(y, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        scale = np.maximum(scale, np.where(log_mask, _MIN_SCALE_LOG, _MIN_SCALE_RAW))
        return cls(
            tuple(names), log_mask, floor, center.astype(np.float32), scale.astype(np.float32)
        )

    def transform(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """z-scores (n, d), float64, of raw feature values (the numpy reference of the graph)."""
        y = _transform64(np.asarray(x, dtype=np.float64), self.log_mask, self.floor)
        return (y - self.center.astype(np.float64)) / self.scale.astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "log": self.log_mask.tolist(),
            "floor": self.floor.tolist(),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(
            tuple(d["names"]),
            np.array(d["log"], dtype=bool),
            np.array(d["floor"], dtype=np.float32),
            np.array(d["center"], dtype=np.float32),
            np.array(d["scale"], dtype=np.float32),
        )


def _transform64(
    x: npt.NDArray[np.float64], log_mask: npt.NDArray[np.bool_], floor: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    logged = np.log(np.maximum(x, floor.astype(np.float64)))
    return np.where(log_mask, logged, x)
