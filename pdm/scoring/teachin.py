"""Teach-in: a pipeline starts in learning mode, learns its healthy baseline, then monitors.

While learning, windows are collected (valid ones only, and never a window in
alarm: before a model exists the only alarm is the ISO 10816-3 zone, so a
window with any channel in zone C or D is left out). Once the collected
windows span ``teach_in_s`` seconds (and are enough for the detector: learning
goes on until they are), they are tested for a trend or a step
(:func:`pdm.scoring.stationarity.find_departure`). Stationary windows are trained
and calibrated exactly as ``pdm-edge train`` does, written to the pipeline's model
directory, loaded back through every check, and from then on windows are scored.
After that nothing is learned: a model changes only by an explicit retrain or
model update, so a slowly developing fault cannot teach itself in.

A teach-in that cannot learn a fault
------------------------------------
When the windows trend or step, the teach-in does not train on them. It says so
(a log line, a ``teach_in`` note on the window's score row, which history turns into
an event, and :meth:`TeachIn.status` for ``/status``), and:

* **upward** (a feature higher after the change: a fault developing, or a load that
  rose): the windows from the change on are never learnt without an operator. When
  the windows before it are stationary and enough for the detector, the model is
  trained on those alone and the change is scored from then on, so a growing fault
  alerts instead of becoming "healthy"; the note says what was refused. Otherwise
  the stationary windows before the change are kept and learning goes on (a restart).
* **downward** (the machine settled, or the load fell: no damage): a step keeps the
  windows after it, a trend keeps none, and learning goes on (a restart).

After ``teach_in_restarts`` restarts the next departure asks for a decision:
the state is ``teach_in_needs_decision`` with the reason, windows go on being
collected (the newest ``4 × teach_in_s`` worth), and an operator either
**accepts** them (:meth:`TeachIn.decide` with ``"accept"``: trained as they are)
or **restarts** the teach-in (``"restart"``: everything collected is dropped and
the restart count begins again). The service takes the decision at
``POST /models/MACHINE/teach-in-accept`` or ``…/teach-in-restart`` (docs/service.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.processing import WindowFeatures, iso_time
from pdm.scoring.runtime import Model
from pdm.scoring.stationarity import Departure, find_departure, stationary_prefix
from pdm.scoring.train import TrainingSet, check_model_out, train, windows_needed
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names

__all__ = ["DECISIONS", "NEEDS_DECISION", "TeachIn"]

log = logging.getLogger("pdm.scoring")

ALARM_ZONES = frozenset({"C", "D"})
#: The teach-in's state while it waits for an operator.
NEEDS_DECISION = "teach_in_needs_decision"
#: What an operator may decide.
DECISIONS = ("accept", "restart")
# While waiting for a decision, windows of this many teach-in spans are kept (the newest).
_KEEP_SPANS = 4


@dataclass
class TeachIn:
    """Collects healthy windows until ``span_s`` is covered, checks them, then trains ``out``."""

    pipeline: Pipeline
    fs: float
    out: Path
    span_s: float
    seed: int = 0
    collected: list[npt.NDArray[np.float32]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    skipped_in_alarm: int = 0
    skipped_invalid: int = 0
    #: Restarts after a departure (reset by an operator's restart).
    restarts: int = 0
    #: Windows refused because they came after a change (never learnt).
    refused: int = 0
    #: ``"learning"`` or :data:`NEEDS_DECISION`.
    state: str = "learning"
    #: The latest departure, in words ('' while none was found).
    reason: str = ""
    #: Every verdict, in order (for the card).
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    _vectorizer: FeatureVectorizer | None = None
    _finite: npt.NDArray[np.bool_] | None = None
    _decision: tuple[str, str, str] | None = None
    _notes: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Where the model will go is judged now, not after span_s (up to 30 days) of
        # learning: a file there, or a directory of other things, was refused only then.
        check_model_out(self.out, force=False)

    # -- the operator ---------------------------------------------------------------------------
    def decide(self, decision: str, by: str, comment: str = "") -> str:
        """Take an operator's decision; it applies at the next window (thread-safe).

        Raises ``ValueError`` for an unknown decision, an empty ``by``, or ``accept``
        while no decision is asked for.
        """
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)} (got {decision!r})")
        if not by.strip():
            raise ValueError("a decision needs a name ('by')")
        if decision == "accept" and self.state != NEEDS_DECISION:
            raise ValueError(
                f"nothing to accept: the teach-in is {self.state}, it asks for no decision"
            )
        self._decision = (decision, by.strip(), comment)  # one assignment: read by offer()
        return (
            f"teach-in {decision} by {by.strip()}: takes effect at the next window"
            if decision == "restart"
            else f"teach-in accepted by {by.strip()}: trains on the next window"
        )

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows while learning."""
        covered = (self.times[-1] - self.times[0]) if len(self.times) > 1 else 0.0
        return {
            "state": self.state,
            "windows": len(self.collected),
            "covered_s": round(covered, 3),
            "span_s": self.span_s,
            "restarts": self.restarts,
            "refused_windows": self.refused,
            "reason": self.reason or None,
        }

    def pop_notes(self) -> dict[int, dict[str, Any]]:
        """Notes for the score rows of the windows where something happened (window → note)."""
        notes, self._notes = self._notes, {}
        return notes

    # -- the windows ----------------------------------------------------------------------------
    def offer(self, windows: Sequence[WindowFeatures]) -> tuple[Model | None, int]:
        """Learn from ``windows``; returns the trained model once learnt (else None) and how
        many of ``windows`` were used for learning."""
        for used, wf in enumerate(windows, start=1):
            decided = self._decision
            if decided is not None:
                self._decision = None
                model = self._apply(decided, wf)
                if model is not None:
                    return model, used - 1
            frame = wf.features
            if not frame.valid:
                self.skipped_invalid += 1
                continue
            if ALARM_ZONES & set(frame.iso_zones):
                self.skipped_in_alarm += 1
                continue
            if self._vectorizer is None:
                names = vector_names(frame.channels, frame.names, MODEL_FEATURES)
                self._vectorizer = FeatureVectorizer(names, frame.channels, frame.names)
            vec = self._vectorizer.vector(frame)
            self.collected.append(vec)
            self.times.append(wf.window.t_start)
            finite = np.isfinite(vec)
            self._finite = finite if self._finite is None else self._finite & finite
            if self.state == NEEDS_DECISION:
                self._bound()
                continue
            end = wf.window.t_start + self.pipeline.acquisition.window_samples / self.fs
            # The span is a minimum: learning goes on until the detector has enough windows.
            if end - self.times[0] >= self.span_s and len(self.collected) >= self._needed():
                model = self._check(wf)
                if model is not None:
                    return model, used
        return None, len(windows)

    # -- inside ---------------------------------------------------------------------------------
    def _needed(self) -> int:
        assert self._vectorizer is not None and self._finite is not None
        acq = self.pipeline.acquisition
        gap = max(0, math.ceil(acq.window_samples / acq.hop_samples) - 1)
        m = self.pipeline.model
        # Features missing in any window so far (no speed, a line off the spectrum) are dropped
        # at training, so they do not count here either.
        d = int(self._finite.sum())
        return windows_needed(m.detector, d, m.holdout, gap)

    def _matrix(self) -> tuple[npt.NDArray[np.float32], tuple[str, ...], npt.NDArray[np.bool_]]:
        assert self._vectorizer is not None
        x = np.stack(self.collected)
        keep = np.asarray(np.isfinite(x).all(axis=0), dtype=bool)
        names = tuple(n for n, k in zip(self._vectorizer.names, keep, strict=True) if k)
        return x[:, keep], names, keep

    def _check(self, last: WindowFeatures) -> Model | None:
        """Test the collection; train on what may be learnt, or restart, or ask."""
        x, names, _ = self._matrix()
        t = np.asarray(self.times)
        acq = self.pipeline.acquisition
        per_sample = acq.window_samples / acq.hop_samples
        dep = find_departure(x, t, names, windows_per_sample=per_sample)
        if dep is None:
            return self._train(len(x), last, how="stationary")
        self.reason = dep.reason()
        verdict = self._verdict(dep)
        log.warning("%s: teach-in: %s", self.pipeline.machine.id, self.reason)
        keep_from, keep_to = 0, len(x)
        if dep.direction == "up":
            n_ok = stationary_prefix(x, t, names, windows_per_sample=per_sample)
            if n_ok >= self._needed():
                self.refused += len(x) - n_ok
                covered = float(t[n_ok - 1] - t[0]) + acq.window_samples / self.fs
                verdict.update(
                    action="trained",
                    reason=f"learnt only the {n_ok} stationary windows ({covered:.1f} s) before "
                    f"a change, refused the {len(x) - n_ok} after it: {self.reason}",
                )
                return self._train(n_ok, last, how="before a change", note=verdict)
            keep_to = n_ok  # the stationary start (if any) stays; the change never is learnt
        elif dep.kind == "step":
            keep_from = dep.index  # the machine settled at a new, lower level: learn that
        else:
            keep_to = 0  # still settling: start again
        self.restarts += 1
        limit = self.pipeline.model.teach_in_restarts
        if self.restarts > limit:
            self.state = NEEDS_DECISION
            verdict.update(
                action="needs_decision",
                reason=f"{self.reason}; after {limit} restart(s) the teach-in asks for a "
                "decision: accept the windows collected, or restart",
            )
        else:
            dropped = len(x) - (keep_to - keep_from)
            self.refused += dropped if dep.direction == "up" else 0
            self.collected = self.collected[keep_from:keep_to]
            self.times = self.times[keep_from:keep_to]
            self._finite = (
                np.asarray(np.isfinite(np.stack(self.collected)).all(axis=0), dtype=bool)
                if self.collected
                else None
            )
            verdict.update(
                action="restarted",
                reason=f"{self.reason}; learning goes on ({dropped} windows dropped, "
                f"{len(self.collected)} kept; restart {self.restarts} of {limit})",
            )
        self._note(last, verdict)
        return None

    def _verdict(self, dep: Departure) -> dict[str, Any]:
        v: dict[str, Any] = {
            "verdict": dep.kind,
            "direction": dep.direction,
            "feature": dep.feature,
            "change": round(dep.change, 4),
            "factor": None if dep.factor is None else round(dep.factor, 3),
            "threshold": round(dep.threshold, 4),
            "at": iso_time(dep.t_change),
            "features": list(dep.features[:8]),
        }
        self.verdicts.append(v)
        return v

    def _note(self, wf: WindowFeatures, note: dict[str, Any]) -> None:
        self._notes[wf.window.index] = dict(note)

    def _bound(self) -> None:
        acq = self.pipeline.acquisition
        cap = max(self._needed(), round(_KEEP_SPANS * self.span_s * self.fs / acq.hop_samples))
        if len(self.collected) > cap:
            del self.collected[: len(self.collected) - cap]
            del self.times[: len(self.times) - cap]

    def _apply(self, decided: tuple[str, str, str], wf: WindowFeatures) -> Model | None:
        decision, by, comment = decided
        why = f" ({comment})" if comment else ""
        if decision == "restart":
            dropped = len(self.collected)
            self.collected, self.times = [], []
            self._finite = None
            self.restarts = 0
            self.state = "learning"
            self.reason = ""
            self._note(
                wf,
                {
                    "action": "decided",
                    "decision": "restart",
                    "by": by,
                    "reason": f"restarted by {by}{why}: {dropped} windows dropped",
                },
            )
            return None
        if not self.collected or len(self.collected) < self._needed():
            self._note(
                wf,
                {
                    "action": "decided",
                    "decision": "accept",
                    "by": by,
                    "reason": f"accepted by {by}{why}, but the {len(self.collected)} windows "
                    "held are too few for the detector: learning goes on",
                },
            )
            self.state = "learning"
            return None
        note = {
            "action": "trained",
            "decision": "accept",
            "by": by,
            "reason": f"accepted by {by}{why}: trained on the {len(self.collected)} windows "
            f"held, although {self.reason or 'they were not judged stationary'}",
        }
        return self._train(len(self.collected), wf, how=f"accepted by {by}", note=note)

    def _train(
        self, n: int, last: WindowFeatures, *, how: str, note: dict[str, Any] | None = None
    ) -> Model:
        x, names, _ = self._matrix()
        x = x[:n]
        t_end = self.times[n - 1]
        ts = TrainingSet(
            pipeline=self.pipeline,
            fs=self.fs,
            names=names,
            per_file=[x],
            files=[
                {
                    "file": "teach-in (live stream)",
                    "sha256": None,
                    "windows": len(x),
                    "skipped_in_alarm": self.skipped_in_alarm,
                    "skipped_invalid": self.skipped_invalid,
                    "t_start": iso_time(self.times[0]),
                    "t_end": iso_time(t_end),
                    "stationarity": {
                        "learnt": how,
                        "restarts": self.restarts,
                        "refused_windows": self.refused,
                        "verdicts": self.verdicts,
                    },
                }
            ],
        )
        m = self.pipeline.model
        train(
            ts,
            self.out,
            detector=m.detector,
            alerts_per_week=m.alerts_per_week,
            holdout=m.holdout,
            seed=self.seed,
            command=f"teach-in of {self.span_s:g} s by pipeline {self.pipeline.source_path}",
        )
        model = Model.load(self.out, self.pipeline, self.fs)
        self.state = "done"
        self._note(
            last,
            note
            or {
                "action": "trained",
                "reason": f"{len(x)} stationary windows learnt "
                f"({t_end - self.times[0]:.1f} s); monitoring from the next window",
            },
        )
        return model
