"""A window's score as the window path carries it: typed, unrounded, time in integer ns.

:class:`WindowScore` is what scoring hands the recorder, the alarm step and the service
(:meth:`pdm.scoring.runtime.WindowScorer.score`, :meth:`pdm.scoring.stream.ScoreStream.score`).
Nothing in it is rounded or formatted: the score is the model's float, the diagnosis
confidence the engine's, the time the window's start in integer nanoseconds since the Unix
epoch on the sensor's clock (:func:`pdm.core.time.to_ns`, the instant history keys the
window by). Rounding (score to 6 decimals, confidence to 3) and ISO 8601 text happen where a
row is written out: :meth:`WindowScore.as_row` (``pdm-edge score``'s JSON lines), and the
history records and alarm events built from it (:data:`SCORE_DECIMALS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pdm.core.time import iso_ns

__all__ = ["CONFIDENCE_DECIMALS", "SCORE_DECIMALS", "WindowScore", "written_score"]

#: Decimals of a score where it is written (JSON rows, history, webhook events, /status).
SCORE_DECIMALS = 6
#: Decimals of a diagnosis confidence where it is written.
CONFIDENCE_DECIMALS = 3


def written_score(score: float | None) -> float | None:
    """A score as rows, history and events write it (:data:`SCORE_DECIMALS`); None stays None."""
    return None if score is None else round(score, SCORE_DECIMALS)


@dataclass(frozen=True, slots=True)
class WindowScore:
    """One window's score, its per-window state and its explanation.

    Attributes
    ----------
    t_ns : the window's start, integer ns since the Unix epoch (UTC) on the sensor's clock
    window : the window's index in its stream
    state : ``ok``, ``alert``, ``danger`` (the model's thresholds, no debouncing), ``learning``
        (teach-in still collecting), or None (an invalid window: not scored)
    score : the model's normalised score, unrounded (1.0 = alert threshold); None when not
        scored (invalid or learning)
    valid : False when the window held invalid samples or non-finite features
    model : the scoring model's version (``''`` while learning)
    top_features : the features that departed most (:func:`pdm.scoring.explain.top_features`
        dicts); empty when the window was not explained
    below_baseline : the quiet-machine hint (:func:`pdm.scoring.quiet.below_baseline`) or None
    diagnosis : the machine's diagnosis over the recent windows (``unknown`` for a stream that
        does not diagnose; None when the window was not explained)
    diagnosis_confidence : how sure the diagnosis is, 0–1, unrounded
    diagnosis_channel, diagnosis_bearing : the sensor channel whose evidence decided, and its
        bearing (None when none)
    evidence : the diagnosis's reasons, as text (empty when not explained)
    teach_in : what the teach-in did at this window (:mod:`pdm.scoring.teachin`), or None
    alert_by : ``"diagnosis"`` when the state is ``alert`` although the score is below the
        alert threshold: the diagnosis names a bearing defect over the machine's healthy
        spectra (:func:`pdm.diagnosis.names_bearing_defect`); else None
    """

    t_ns: int
    window: int
    state: str | None
    score: float | None = None
    valid: bool = True
    model: str = ""
    top_features: tuple[dict[str, Any], ...] = ()
    below_baseline: dict[str, Any] | None = None
    diagnosis: str | None = None
    diagnosis_confidence: float = 0.0
    diagnosis_channel: str | None = None
    diagnosis_bearing: str | None = None
    evidence: tuple[str, ...] = ()
    teach_in: dict[str, Any] | None = None
    alert_by: str | None = None

    @property
    def learning(self) -> bool:
        return self.state == "learning"

    def as_row(self) -> dict[str, Any]:
        """The JSON-ready ``pdm-edge score`` row: ``t_start`` in ISO 8601, the score to
        :data:`SCORE_DECIMALS`, the confidence to :data:`CONFIDENCE_DECIMALS` (the edge)."""
        row: dict[str, Any] = {"t_start": iso_ns(self.t_ns), "window": self.window}
        if self.learning:
            row.update(state="learning", score=None)
        else:
            row.update(
                valid=self.valid,
                score=written_score(self.score),
                state=self.state,
                top_features=list(self.top_features),
                below_baseline=self.below_baseline,
                diagnosis=self.diagnosis,
                diagnosis_confidence=round(self.diagnosis_confidence, CONFIDENCE_DECIMALS),
                diagnosis_channel=self.diagnosis_channel,
                diagnosis_bearing=self.diagnosis_bearing,
                evidence=list(self.evidence),
                model=self.model,
            )
        if self.teach_in is not None:
            row["teach_in"] = self.teach_in
        if self.alert_by is not None:
            row["alert_by"] = self.alert_by
        return row
