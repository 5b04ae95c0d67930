"""From a window's features to the fixed-order vector a model sees, and back to names.

A model input is one row per window: for each channel (in pipeline order), the
model features (in :data:`MODEL_FEATURES` order), named ``"<channel>.<feature>"``.
Amplitudes (``*_g``, ``*_mm_s``) are spread over decades and grow multiplicatively
with damage, so the model sees their logarithm, and so do crest and kurtosis
(≥ 1, multiplicative too); see :func:`log_floor`. Both the log and the robust scaling are part of the ONNX
graph, so the runtime feeds raw feature values.

Damage moves a feature one way or either way (:func:`direction`):

==========================================  ========  =====================================
family                                      counts    why
==========================================  ========  =====================================
acceleration amplitudes ``*_g`` (RMS,       ``up``    wear, impacts, unbalance, looseness
peak, band RMS, order lines, envelope                 and misalignment all add vibration
defect lines)                                         energy; less than the healthy level
                                                      is a lighter load, a slower machine
                                                      or a sensor that lost contact
velocity ``*_mm_s``                         ``up``    ISO 10816-3 severity is one-sided
``crest``, ``kurtosis``                     ``up``    impacts raise them; a fall means less
                                                      impulsive content, which alone is no
                                                      damage (a spreading defect that lowers
                                                      kurtosis raises RMS and envelope lines)
anything else (``skewness``, ``mean_g``,    ``both``  no physical reason to prefer a sign
speeds, frequency or speed ratios)
==========================================  ========  =====================================

An ``up`` feature's robust z-score is clipped at 0 (``max(z, 0)``: quieter than the
baseline median counts as the baseline) before the detector, in training,
calibration and the ONNX graph alike (:class:`pdm.scoring.preprocess.Preprocess`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm.dsp.features import FeatureFrame

__all__ = [
    "DIRECTIONS",
    "MODEL_FEATURES",
    "FeatureVectorizer",
    "direction",
    "log_floor",
    "vector_names",
]

#: A Gaussian signal's kurtosis: the least a model counts (:func:`log_floor`).
GAUSSIAN_KURTOSIS = 3.0

#: Directions a departure from the healthy baseline can count in (see :func:`direction`).
DIRECTIONS: tuple[str, ...] = ("up", "both")

#: Per-channel features a model uses by default (``band_*`` expands to every configured band).
MODEL_FEATURES: tuple[str, ...] = (
    "rms_g",
    "peak_g",
    "kurtosis",
    "velocity_rms_mm_s",
    "band_*",
    "order_0_5x_g",
    "order_1x_g",
    "order_2x_g",
    "order_3x_g",
    "env_bpfo_g",
    "env_bpfo_2x_g",
    "env_bpfi_g",
    "env_bpfi_2x_g",
    "env_bsf_2x_g",
    "env_ftf_g",
)


def log_floor(feature: str) -> float | None:
    """The floor below which a feature is clipped before its log; None: used as is.

    ``feature`` may be qualified (``"x_g.rms_g"``). Amplitudes are logged (1 µg
    and 0.1 µm/s are far below any sensor's noise floor, so the clip only guards
    log(0)); so are crest and kurtosis, which are ≥ 1 by definition and grow
    multiplicatively with impacts. Skewness, which can be negative, is not.

    Kurtosis is clipped at 3, a Gaussian's: between a sine's 1.5 and 3 it tells how much of
    the signal is tones (a shaft's 1×) and how much broadband noise, not impacts. A machine
    whose unbalance fell by 40 % — healthier — went from 2.43 to 2.55 and read z ≈ 17, every
    window in danger, with its model trained on snapshots of the same machine (simulated, a
    6205 at 1480 r/min, 2026-12-07); an impact train raises kurtosis above 3 whatever the
    tones, and that is what it counts now. (Crest has no such fixed point: a Gaussian's grows
    with the window's length.)

    >>> log_floor("x_g.kurtosis"), log_floor("crest"), log_floor("rms_g"), log_floor("skewness")
    (3.0, 0.001, 1e-06, None)
    """
    name = feature.rsplit(".", 1)[-1]
    if name.endswith("_g"):
        return 1e-6
    if name.endswith("_mm_s"):
        return 1e-4
    if name == "kurtosis":
        return GAUSSIAN_KURTOSIS
    if name == "crest":
        return 1e-3
    return None


def direction(feature: str) -> str:
    """``"up"`` when only a rise above the healthy baseline is damage, else ``"both"``.

    ``feature`` may be qualified (``"x_g.rms_g"``). See the module docstring for the
    table and the physics behind it.

    >>> direction("x_g.env_bpfo_g"), direction("kurtosis"), direction("skewness")
    ('up', 'up', 'both')
    """
    name = feature.rsplit(".", 1)[-1]
    if name == "mean_g":
        return "both"  # a DC offset is signed: not an amplitude
    if name.endswith(("_g", "_mm_s")) or name in ("crest", "kurtosis"):
        return "up"
    return "both"


def vector_names(
    channels: Sequence[str], available: Sequence[str], wanted: Sequence[str] = MODEL_FEATURES
) -> tuple[str, ...]:
    """Qualified model feature names for ``channels``, from the extractor's ``available`` names.

    ``band_*`` in ``wanted`` expands to every ``band_<name>_rms_g`` available.
    """
    per_channel: list[str] = []
    for w in wanted:
        if w == "band_*":
            per_channel += [a for a in available if a.startswith("band_")]
        elif w in available:
            per_channel.append(w)
        else:
            raise ValueError(
                f"model feature {w!r} is not computed (available: {', '.join(available)})"
            )
    return tuple(f"{ch}.{f}" for ch in channels for f in per_channel)


@dataclass(frozen=True)
class FeatureVectorizer:
    """Picks a model's vector out of :class:`~pdm.dsp.features.FeatureFrame` values.

    Parameters
    ----------
    names : qualified feature names, in model input order (from the model card)
    channels : the frames' channel order
    available : the frames' feature names (``FeatureFrame.names``)
    """

    names: tuple[str, ...]
    channels: tuple[str, ...]
    available: tuple[str, ...]

    def __post_init__(self) -> None:
        rows, cols = [], []
        for q in self.names:
            ch, _, feat = q.rpartition(".")
            if ch not in self.channels:
                raise ValueError(
                    f"model feature {q!r}: no channel {ch!r} (channels: {', '.join(self.channels)})"
                )
            if feat not in self.available:
                raise ValueError(
                    f"model feature {q!r}: feature {feat!r} is not computed by this pipeline"
                )
            rows.append(self.channels.index(ch))
            cols.append(self.available.index(feat))
        object.__setattr__(self, "_rows", np.array(rows, dtype=np.intp))
        object.__setattr__(self, "_cols", np.array(cols, dtype=np.intp))

    def vector(self, frame: FeatureFrame) -> npt.NDArray[np.float32]:
        """(n_features,) float32 model input of one window (NaN where a value is missing)."""
        return frame.values[self._rows, self._cols].astype(np.float32)  # type: ignore[attr-defined]

    def matrix(self, frames: Sequence[FeatureFrame]) -> npt.NDArray[np.float32]:
        """(n_windows, n_features) float32 model inputs."""
        if not frames:
            return np.empty((0, len(self.names)), dtype=np.float32)
        return np.stack([self.vector(f) for f in frames])
