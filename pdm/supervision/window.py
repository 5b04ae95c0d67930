"""A window's one path: score → history records → alarm state and actions → submit.

The service (:class:`pdm.service.runner.MachineRunner`, one window at a time, in the pool's
urgent-first turns) and ``pdm-edge replay`` (groups of windows as fast as the file reads)
both hand their windows, features done, to :meth:`WindowPipeline.process`; what differs
between them — the service's shedding and timings, the replay's resume after a
checkpoint — are the arguments, not a second copy of the sequence.

Per group of consecutive windows of one machine, in this order:

1. **score**: the model (and its teach-in) scores the windows (:class:`ScoreStream`),
   one typed :class:`~pdm.scoring.result.WindowScore` per window: the score unrounded, the
   time integer ns (rounding and ISO text happen where history and JSON write them);
2. **record**: the windows' feature, score and spectrum rows, a capture when asked, and the
   stream's resets since the last group become history records (:class:`Recorder`);
3. **decide**: the alarm engine steps the state over the windows
   (:meth:`AlarmEngine.process`): a transition is saved, the relay set and the webhooks'
   outboxes given its event (its state change durable in history first) before this returns;
4. **submit**: every record of the group to the history writer, marked with the group's
   last window (the replay's durable mark).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pdm.history.recorder import Recorder
from pdm.history.records import Record, StateChange, to_ns
from pdm.processing import FeatureStream, WindowFeatures
from pdm.scoring.result import WindowScore
from pdm.supervision.engine import AlarmEngine

if TYPE_CHECKING:
    from pdm.scoring.stream import ScoreStream

__all__ = ["Decision", "WindowPipeline"]


class Writer(Protocol):
    """Where the records go: :class:`pdm.history.writer.HistoryWriter`."""

    def submit(self, *records: Record, mark: int | None = None) -> None: ...


@dataclass(slots=True)
class Decision:
    """What one group of windows became.

    ``scores``: one per window (empty without a model); ``records``: every
    history record of the group, in the order submitted; ``decided``: those the alarm
    engine made (state changes, relay and webhook audits); ``detail``: whether the feature
    and score rows were kept (see ``keep_rows``); ``submitted``: False for the windows a
    resumed replay had written before its checkpoint (nothing decided or written).
    """

    scores: list[WindowScore] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    decided: list[Record] = field(default_factory=list)
    detail: bool = True
    submitted: bool = True

    @property
    def transition(self) -> bool:
        """Whether the alarm state changed in this group."""
        return any(isinstance(r, StateChange) for r in self.decided)


@dataclass
class WindowPipeline:
    """One machine's windows, features done, through scoring, history and the alarm engine.

    ``scores`` is None for a pipeline without a model (the alarms then go by feature limits
    and sensor health alone). ``observe(stage, seconds)`` gets the time of the stages
    ``score``, ``alarms`` and ``history`` (the service's per-stage histogram).
    """

    features: FeatureStream
    scores: ScoreStream | None
    recorder: Recorder
    engine: AlarmEngine
    writer: Writer
    observe: Callable[[str, float], None] | None = None

    def model(self) -> tuple[str, dict[str, float]]:
        """The version and alert/danger thresholds of the model scoring now ('' and {} for none)."""
        scorer = self.scores.scorer if self.scores is not None else None
        if scorer is None:
            return "", {}
        m = scorer.model
        return m.version, {"alert": m.alert, "danger": m.danger}

    def process(
        self,
        group: Sequence[WindowFeatures],
        *,
        spectra: bool = True,
        keep_rows: Callable[[list[WindowScore]], bool] | None = None,
        write: bool = True,
        on_scored: Callable[[list[WindowScore]], None] | None = None,
        on_decided: Callable[[], None] | None = None,
    ) -> Decision:
        """Score, record, decide and submit ``group`` (consecutive windows of this machine).

        ``spectra``: store the windows' spectra (the service sheds them under load).
        ``keep_rows(scores)``: whether the feature and score rows go to history (None: always);
        when not, a group with a transition keeps them anyway. ``write`` False: windows a
        resumed replay wrote before its checkpoint — scored and recorded (the streams'
        state moves on) but neither decided nor submitted. ``on_scored(scores)``: called with
        the scores before anything acts on them (the service's newest readings, which a
        transition's published state carries). ``on_decided``: called once the alarm engine
        has acted, before the records are submitted (the decision latency).
        """
        if not group:
            return Decision()
        observe = self.observe
        t0 = time.perf_counter()
        scores = self.scores.score(group) if self.scores is not None else []
        if on_scored is not None:
            on_scored(scores)
        t1 = time.perf_counter()
        if observe is not None:
            observe("score", t1 - t0)
        model, thresholds = self.model()
        detail = True if keep_rows is None else keep_rows(scores)
        recorder = self.recorder
        records = recorder.records(
            group, scores, model=model, thresholds=thresholds, spectra=spectra, detail=detail
        )
        gaps = self.features.events[recorder.events_seen :]
        records += recorder.stream_events(self.features.events)
        if not write:
            return Decision(scores, records, detail=detail, submitted=False)
        decided = self.engine.process(group, scores, model=model, thresholds=thresholds, gaps=gaps)
        records += decided
        decision = Decision(scores, records, decided, detail)
        if not detail and decision.transition:
            records += recorder.detail_records(group, scores)  # a transition's rows stay
        t2 = time.perf_counter()
        if observe is not None:
            observe("alarms", t2 - t1)
        if on_decided is not None:
            on_decided()
        self.writer.submit(*records, mark=to_ns(group[-1].window.t_start))
        if observe is not None:
            observe("history", time.perf_counter() - t2)
        return decision
