"""What a diagnosis's confidence means, and the map from evidence margin to it.

The confidence ``c`` of a named verdict is the probability that the verdict is right *and
holds*: that another recording of the same machine in the same state would be given the
same label. It is a logistic function of the label's *margin* ``m`` in dB,
``c = 1 / (1 + exp(−(a + b·m)))``, where the margin
(:attr:`pdm.diagnosis.evidence.ChannelVerdict.margin_db`) is

* for a named bearing defect, the smaller of its fundamental's prominence over its
  threshold and its score's lead over the next family; a cage named on a bare FTF comb
  (no other line modulated at ± FTF) is read on the same map but never above
  :data:`BARE_CAGE_MAX`: every bearing's cage turns at ≈ 0.4 × shaft, and another bearing's
  on the same shaft would look the same — which the simulator's one-bearing machines cannot
  show, so this is a limit, not a fit (``bearing_cage_bare``);
* for a named bearing defect while another family is *present* too (its own fundamental
  and characteristic lines), the smaller of the prominence over its threshold and its lead
  beyond the point where the two would be ``bearing_uncertain`` (its own map,
  ``bearing_contested``: two families in one spectrum are a weaker case than one);
* for ``bearing_uncertain``, the best fundamental's prominence over its threshold (``c``
  is then the probability that *some* bearing defect is there);
* for a running-speed fault, the velocity of its lines over the severity gate.

``unknown`` names nothing and has confidence 0.

``a`` and ``b`` per kind are fitted by logistic regression on the simulator sweep: each
case is simulated twice with different seeds, and a verdict counts as confirmed when it is
right and the second recording gets the same label (``python -m pdm.tools.diagnosis_sweep
--cases 1080 --calibrate``; the table of how often verdicts of each confidence were right
is in docs/diagnosis.md). They are never fitted on real recordings. Too few
``bearing_uncertain`` verdicts occur in the sweep to fit; its map is the prior 0.5 at
0 dB, 0.95 at 10 dB.
"""

from __future__ import annotations

import math

__all__ = ["BARE_CAGE_MAX", "CALIBRATION", "confidence"]

#: The most a cage named on a bare FTF comb may claim: even.
BARE_CAGE_MAX = 0.5

#: (a, b) of the logistic map per kind of label; see the module docstring.
CALIBRATION: dict[str, tuple[float, float]] = {
    "bearing": (-0.243, 0.543),
    "bearing_contested": (0.0, 0.2944),
    "bearing_uncertain": (0.0, 0.2944),
    "speed": (4.297, 0.1965),
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


def confidence(label: str, margin_db: float, calibration: str = "") -> float:
    """Probability (0–1) that ``label`` is right given its margin in dB (module docstring);
    ``calibration`` names another map than the label's own (``"bearing_contested"``)."""
    kind = _KIND.get(label)
    cap = 1.0
    if calibration == "below_floor":  # named below the floor: bearing_uncertain's own map
        kind = "bearing_uncertain"
    elif kind is not None and calibration == "bearing_cage_bare":
        cap = BARE_CAGE_MAX
    elif kind is not None and calibration:
        kind = calibration
    if kind is None or math.isnan(margin_db):
        return 0.0
    a, b = CALIBRATION[kind]
    z = a + b * min(max(margin_db, -100.0), 100.0)
    return min(cap, 1.0 / (1.0 + math.exp(-z)))
