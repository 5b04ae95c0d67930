"""Log and robust scaling of model inputs: fitted on healthy windows, mirrored in ONNX.

``z = (y − center) / scale`` with ``y = log(max(x, floor))`` for amplitudes and
the positive shape factors, ``y = x`` otherwise (see :func:`pdm.scoring.vector.log_floor`); ``center`` is the median and ``scale`` the IQR/1.349
(the standard deviation for Gaussian data, but not dragged by outliers) of the
training windows. :meth:`Preprocess.transform` is the numpy reference the ONNX
graph is tested against.

The detector does not see ``z`` itself but :meth:`Preprocess.detector_input`:
``max(z, z_floor)``, where ``z_floor`` is 0 for every ``up`` feature
(:func:`pdm.scoring.vector.direction`) and −∞ for the others, so a window quieter
than the healthy baseline looks like the baseline and can raise no alarm.
Training, calibration and the graph all clip the same way. A preprocess from a
card written before directions existed has no floor
(:attr:`Preprocess.directions_known` is False): it scores as it always did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.scoring.vector import DIRECTIONS, direction, log_floor

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
    z_floor : (d,) float32, the detector sees ``max(z, z_floor)``: 0 where only a rise
        counts (``up``), −∞ where both directions do
    directions_known : False for a preprocess read from a card without directions
    """

    names: tuple[str, ...]
    log_mask: npt.NDArray[np.bool_]
    floor: npt.NDArray[np.float32]
    center: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32]
    z_floor: npt.NDArray[np.float32]
    directions_known: bool = True

    @property
    def up_mask(self) -> npt.NDArray[np.bool_]:
        """(d,) bool: True where only a rise above the baseline counts."""
        return np.asarray(np.isfinite(self.z_floor), dtype=bool)

    @property
    def directions(self) -> tuple[str, ...]:
        """``"up"`` or ``"both"`` per feature, input order."""
        return tuple("up" if u else "both" for u in self.up_mask.tolist())

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
        z_floor = np.array([0.0 if direction(n) == "up" else -np.inf for n in names])
        return cls(
            tuple(names),
            log_mask,
            floor,
            center.astype(np.float32),
            scale.astype(np.float32),
            z_floor.astype(np.float32),
        )

    def transform(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """z-scores (n, d), float64, of raw feature values (the numpy reference of the graph)."""
        y = _transform64(np.asarray(x, dtype=np.float64), self.log_mask, self.floor)
        return (y - self.center.astype(np.float64)) / self.scale.astype(np.float64)

    def clip(self, z: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``max(z, z_floor)`` (n, d): what the detector sees."""
        return np.maximum(np.asarray(z, dtype=np.float64), self.z_floor.astype(np.float64))

    def detector_input(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``clip(transform(x))``: the detector's input (n, d) for raw feature values."""
        return self.clip(self.transform(x))

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "log": self.log_mask.tolist(),
            "floor": self.floor.tolist(),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "direction": list(self.directions),
            "z_floor": [float(v) if np.isfinite(v) else None for v in self.z_floor.tolist()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Read :meth:`to_dict`'s form; a dict without ``"direction"`` (an older card)
        counts every departure, as that card's model was calibrated."""
        names = tuple(d["names"])
        dirs, floors = d.get("direction"), d.get("z_floor")
        if dirs is None:
            z_floor = np.full(len(names), -np.inf, dtype=np.float32)
        else:
            if (
                not isinstance(dirs, list)
                or not isinstance(floors, list)
                or not len(dirs) == len(floors) == len(names)
            ):
                raise ValueError(f"'direction' and 'z_floor' must have {len(names)} entries")
            z_floor = np.full(len(names), -np.inf, dtype=np.float32)
            for i, (dr, fl) in enumerate(zip(dirs, floors, strict=True)):
                if dr not in DIRECTIONS:
                    raise ValueError(f"direction {dr!r} is not one of {', '.join(DIRECTIONS)}")
                if (dr == "up") != (fl is not None):
                    raise ValueError(f"feature {names[i]!r}: an 'up' feature needs a z_floor")
                if fl is not None:
                    if not (isinstance(fl, int | float) and math.isfinite(fl)):
                        raise ValueError(f"feature {names[i]!r}: z_floor {fl!r} is not a number")
                    z_floor[i] = fl
        return cls(
            names,
            np.array(d["log"], dtype=bool),
            np.array(d["floor"], dtype=np.float32),
            np.array(d["center"], dtype=np.float32),
            np.array(d["scale"], dtype=np.float32),
            z_floor,
            directions_known=dirs is not None,
        )


def _transform64(
    x: npt.NDArray[np.float64], log_mask: npt.NDArray[np.bool_], floor: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    logged = np.log(np.maximum(x, floor.astype(np.float64)))
    return np.where(log_mask, logged, x)
