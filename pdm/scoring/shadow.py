"""Shadow statistics: the active and a candidate model over the same live windows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STATES", "ShadowStats"]

#: Per-window states, in order of severity (:meth:`Model.state <pdm.scoring.runtime.Model.state>`).
STATES = ("ok", "alert", "danger")


def _confusion() -> dict[str, dict[str, int]]:
    return {a: dict.fromkeys(STATES, 0) for a in STATES}


@dataclass
class ShadowStats:
    """Active vs candidate model over the same windows: agreement and score differences.

    Feed one call of :meth:`add` per window both models scored. ``confusion[a][c]``
    counts windows the active model called ``a`` and the candidate ``c``. Windows where
    either score is not finite are counted in ``nonfinite`` and nothing else.

    >>> s = ShadowStats()
    >>> s.add(0.2, 0.3, "ok", "ok"); s.add(1.2, 0.9, "alert", "ok")
    >>> s.count, s.agreement, s.confusion["alert"]["ok"]
    (2, 0.5, 1)
    """

    count: int = 0
    agreed: int = 0
    nonfinite: int = 0
    sum_abs_diff: float = 0.0
    max_abs_diff: float = 0.0
    confusion: dict[str, dict[str, int]] = field(default_factory=_confusion)

    def add(
        self, active_score: float, candidate_score: float, active_state: str, candidate_state: str
    ) -> None:
        """One window: both normalised scores and both states (``Model.state(score)``)."""
        for s in (active_state, candidate_state):
            if s not in STATES:
                raise ValueError(f"state {s!r} is not one of {STATES}")
        a, c = float(active_score), float(candidate_score)
        if not (math.isfinite(a) and math.isfinite(c)):
            self.nonfinite += 1
            return
        self.count += 1
        self.agreed += active_state == candidate_state
        self.confusion[active_state][candidate_state] += 1
        d = abs(a - c)
        self.sum_abs_diff += d
        self.max_abs_diff = max(self.max_abs_diff, d)

    @property
    def agreement(self) -> float | None:
        """Fraction of windows with the same state; ``None`` before the first."""
        return self.agreed / self.count if self.count else None

    @property
    def mean_abs_diff(self) -> float | None:
        """Mean |active − candidate| score; ``None`` before the first window."""
        return self.sum_abs_diff / self.count if self.count else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: windows, agreement, confusion (active → candidate), score differences."""
        return {
            "windows": self.count,
            "agreement": self.agreement,
            "confusion": {a: dict(row) for a, row in self.confusion.items()},
            "mean_abs_diff": self.mean_abs_diff,
            "max_abs_diff": self.max_abs_diff if self.count else None,
            "nonfinite": self.nonfinite,
        }
