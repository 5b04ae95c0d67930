"""What a diagnosis's confidence means, and the map from evidence margin to it.

The confidence of a label is the probability that it is right, estimated on the
project's simulator: ``c = 1 / (1 + exp(−(a + b·m)))`` of the label's *margin* ``m`` in dB
(:attr:`pdm.diagnosis.rules.ChannelVerdict.margin_db`: for a named bearing defect the
smaller of its fundamental's prominence over its threshold and its score's lead over the
next family; for ``bearing_uncertain`` the best fundamental's prominence over its
threshold, and ``c`` is then the probability that *some* bearing defect is there; for a
running-speed fault the velocity of its lines over the severity gate). ``unknown``
names nothing and has confidence 0.

``a`` and ``b`` per kind are fitted by logistic regression on the simulator sweep
(``python -m pdm.diagnosis_sweep --calibrate``; the table of how often verdicts of each
confidence were right is in docs/diagnosis.md). They are never fitted on real recordings.
"""

from __future__ import annotations

import math

__all__ = ["CALIBRATION", "confidence"]

#: (a, b) of the logistic map per kind of label; see the module docstring.
CALIBRATION: dict[str, tuple[float, float]] = {
    "bearing": (-1.0, 0.4),
    "bearing_uncertain": (-1.0, 0.3),
    "speed": (0.0, 0.5),
}

_KIND = {
    "bearing_outer_race": "bearing",
    "bearing_inner_race": "bearing",
    "bearing_ball": "bearing",
    "bearing_cage": "bearing",
    "bearing_uncertain": "bearing_uncertain",
    "unbalance": "speed",
    "misalignment": "speed",
    "looseness": "speed",
}


def confidence(label: str, margin_db: float) -> float:
    """Probability (0–1) that ``label`` is right given its margin in dB (module docstring)."""
    kind = _KIND.get(label)
    if kind is None or (not math.isfinite(margin_db) and margin_db < 0):
        return 0.0
    a, b = CALIBRATION[kind]
    z = a + b * min(margin_db, 100.0)
    return 1.0 / (1.0 + math.exp(-z))
