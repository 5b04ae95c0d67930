"""From the pipeline's windows and scores to history records.

One :class:`Recorder` per machine stream. It is the only place that decides
what goes into history for a window:

* a :class:`FeatureRows` row per (window, channel), every window;
* a :class:`ScoreRows` row per scored window (also ``learning``/``invalid`` ones);
* a decimated amplitude spectrum and envelope spectrum per channel: the first valid
  window's, then one every ``[history] spectra_every_s`` seconds of signal on a grid
  offset per machine (peak-hold, so a bearing line never vanishes between stored lines);
* an :class:`Event` per stream reset (gap, time going backwards, rate change);
* ``info`` events when the machine runs far below its healthy baseline
  (``below_baseline``: the score rows' hint held for the alarm on-delay's N
  windows in a row; ``below_baseline_cleared`` after ``off_windows`` windows
  without it), and the teach-in's verdicts (``teach_in_*``, from the rows'
  ``teach_in``);
* on every alarm transition (:meth:`Recorder.transition`, called by
  :class:`pdm.supervision.engine.AlarmEngine`) a :class:`StateChange` with a
  :class:`Capture` of the raw windows behind it (``[history] capture_windows``),
  the model version and thresholds in force; and captures on demand
  (:meth:`Recorder.capture_next`, ``--capture``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.dsp.features import FeatureFrame
from pdm.dsp.windows import StreamEvent, Window
from pdm.history.provenance import CaptureStore
from pdm.history.records import (
    Capture,
    Event,
    FeatureRows,
    Record,
    ScoreRows,
    Spectrum,
    StateChange,
    to_ns,
)
from pdm.scoring.result import WindowScore, written_score

__all__ = ["FeaturedWindow", "Recorder", "decimate_peak"]


class FeaturedWindow(Protocol):
    """What the recorder reads of a processed window: the window and its features
    (:class:`pdm.processing.WindowFeatures` is one; history does not import the pipeline)."""

    @property
    def window(self) -> Window: ...

    @property
    def features(self) -> FeatureFrame: ...


#: Up to this decimation factor, :func:`decimate_peak` takes the maximum of ``factor``
#: strided slices (a few vectorised passes); above it, numpy's reduction over the last axis.
_STRIDED_FACTOR_MAX = 32


def decimate_peak(amp: npt.NDArray[np.float64], lines: int) -> tuple[npt.NDArray[np.float32], int]:
    """Peak-hold decimation of (channels, bins) to at most ``lines`` lines; returns (values, factor).

    Line ``i`` is the maximum of bins ``i·factor … (i+1)·factor − 1``; a last, partial line
    also holds 0 (the bins beyond the end count as zeros). numpy's ``max`` over a short last
    axis costs ~4× the strided passes used here for the usual factors (~11 for 8193 bins
    into 800 lines: ~190 µs against ~50 for six channels); the values are the same.
    """
    bins = amp.shape[-1]
    factor = max(1, -(-bins // lines))
    if factor == 1:
        return amp.astype(np.float32), factor
    full = bins // factor
    head = amp[..., : full * factor]
    if factor <= _STRIDED_FACTOR_MAX:
        peak = head[..., 0::factor].copy()
        for k in range(1, factor):
            np.maximum(peak, head[..., k::factor], out=peak)
    else:
        peak = head.reshape(*amp.shape[:-1], full, factor).max(axis=-1)
    if full * factor < bins:
        tail = np.maximum(amp[..., full * factor :].max(axis=-1), 0.0)
        peak = np.concatenate([peak, tail[..., None]], axis=-1)
    return peak.astype(np.float32), factor


@functools.cache
def _flags(n: int, value: bool) -> npt.NDArray[np.bool_]:
    """``n`` times ``value``, read-only and shared: every window's feature rows carry one."""
    out = np.full(n, value, dtype=bool)
    out.flags.writeable = False
    return out


class Recorder:
    """Builds the history records of one machine's stream."""

    def __init__(
        self,
        pipeline: Pipeline,
        captures: CaptureStore | None = None,
        *,
        capture_windows: frozenset[int] = frozenset(),
    ) -> None:
        self.pipeline = pipeline
        self.machine = pipeline.machine.id
        self.captures = captures
        h = pipeline.history
        self._spectra_every_ns = round(h.spectra_every_s * 1e9)
        self._next_spectra_ns: int | None = None
        # Due times on a grid offset by a hash of the machine id: machines started together
        # (a service start) would otherwise all store theirs in the same second, a burst of
        # writes every interval (measured in the service: ~1.5 ms of CPU per machine's set).
        digest = hashlib.blake2b(self.machine.encode(), digest_size=8).digest()
        every = self._spectra_every_ns
        self._spectra_phase_ns = int.from_bytes(digest, "little") % every if every > 0 else 0
        self._recent: deque[Window] = deque(maxlen=h.capture_windows)
        self.events_seen = 0
        self._capture_next: str | None = None
        self._capture_windows = capture_windows
        self._before: list[Window] = []
        self.captures_made = 0
        #: Spectra sets the service shed: one for each interval of signal
        #: (``spectra_every_s``) in which a set fell due and was not stored.
        self.spectra_shed = 0
        self._spectra_shed_until: int | None = None
        cols = pipeline.columns
        self._sensor_of = {c: pipeline.channel(c)[0].id for c in cols}
        self._sensors: dict[tuple[str, ...], tuple[str, ...]] = {}  # per channels tuple
        # The quiet-machine hint: >0 windows in a row with it, <0 scored windows without.
        self._quiet_run = 0
        self._quiet_on = False
        self._quiet_after, _ = pipeline.alarms.delays(pipeline.acquisition)
        self._quiet_clear = pipeline.alarms.off_windows

    def capture_next(self, reason: str = "on demand") -> None:
        """Capture the next window (and those before it) whatever happens."""
        self._capture_next = reason

    def stream_events(self, events: Sequence[StreamEvent]) -> list[Record]:
        """Events for the stream resets not recorded yet (pass ``FeatureStream.events``)."""
        if len(events) == self.events_seen:
            return []  # every window asks; a reset is rare
        new = events[self.events_seen :]
        self.events_seen = len(events)
        return [
            Event(
                self.machine,
                to_ns(ev.t),
                f"stream_{ev.kind}",
                "warning",
                f"{ev.kind.replace('_', ' ')}: {ev.detail}",
            )
            for ev in new
        ]

    def records(
        self,
        group: Sequence[FeaturedWindow],
        scores: Sequence[WindowScore] = (),
        *,
        model: str = "",
        thresholds: dict[str, float] | None = None,
        spectra: bool = True,
        detail: bool = True,
    ) -> list[Record]:
        """Records for a group of windows and their scores (same order, or none).

        A busy service sheds (docs/service.md, "Overload"): ``spectra`` False stores no
        spectra (a set that falls due meanwhile is counted in :attr:`spectra_shed` and
        stored at the first window after); ``detail`` False leaves out the feature and
        score rows (:meth:`detail_records` makes them, should a transition need them).
        Events, transitions and captures are never left out.
        """
        if not group:
            return []
        out: list[Record] = self.detail_records(group, scores) if detail else []
        if scores:
            out += self._score_events(scores)
        self._before = list(self._recent)
        for i, wf in enumerate(group):
            out += self._spectra(wf, store=spectra)
            reason, self._capture_next = self._capture_next, None
            if wf.window.index in self._capture_windows:
                reason = f"on demand (window {wf.window.index})"
            if reason is not None:
                upto = [w.window for w in group[: i + 1]]
                score = next((s for s in scores if s.window == wf.window.index), None)
                cap = self._capture(wf, upto, reason, score, model, thresholds or {})
                if cap is not None:
                    out.append(cap)
                    out.append(
                        Event(
                            self.machine,
                            to_ns(wf.window.t_start),
                            "capture",
                            "info",
                            f"capture {cap.id}: {reason}",
                            detail=json.dumps({"capture": cap.id, "window": wf.window.index}),
                        )
                    )
        if len(group) == 1:
            self._recent.append(group[0].window)
        else:
            self._recent.extend(wf.window for wf in group)
        return out

    def detail_records(
        self, group: Sequence[FeaturedWindow], scores: Sequence[WindowScore] = ()
    ) -> list[Record]:
        """The feature rows of a group of windows and their score rows (by model)."""
        out: list[Record] = [self.features(group)]
        if scores:
            models = {s.model for s in scores} if len(scores) > 1 else ()
            if len(models) <= 1:
                out.append(ScoreRows.from_scores(self.machine, scores))
            else:  # a teach-in trained mid-group: learning rows, then the model's
                for m in sorted(models):
                    out.append(
                        ScoreRows.from_scores(self.machine, [s for s in scores if s.model == m])
                    )
        return out

    def _score_events(self, scores: Sequence[WindowScore]) -> list[Record]:
        """Events for the quiet-machine hint (debounced) and the teach-in's verdicts."""
        out: list[Record] = []
        for r in scores:
            t = r.t_ns
            verdict = r.teach_in
            if isinstance(verdict, dict) and verdict.get("action"):
                action = str(verdict["action"])
                out.append(
                    Event(
                        self.machine,
                        t,
                        f"teach_in_{action}",
                        # learnt on stationary windows: info; anything refused: warning
                        "info" if action == "trained" and "verdict" not in verdict else "warning",
                        str(verdict.get("reason", "")),
                        detail=json.dumps(verdict, default=str),
                    )
                )
            if r.score is None:
                continue  # not scored: neither quiet nor not
            hint = r.below_baseline
            run = self._quiet_run
            self._quiet_run = (max(run, 0) + 1) if hint else (min(run, 0) - 1)
            if hint and not self._quiet_on and self._quiet_run >= self._quiet_after:
                self._quiet_on = True
                out.append(
                    Event(
                        self.machine,
                        t,
                        "below_baseline",
                        "info",
                        f"{hint.get('message', 'below the healthy baseline')} "
                        f"({self._quiet_run} windows in a row)",
                        detail=json.dumps(hint, default=str),
                    )
                )
            elif not hint and self._quiet_on and -self._quiet_run >= self._quiet_clear:
                self._quiet_on = False
                out.append(
                    Event(
                        self.machine,
                        t,
                        "below_baseline_cleared",
                        "info",
                        f"amplitudes back near the healthy baseline for {self._quiet_clear} windows",
                    )
                )
        return out

    def features(self, group: Sequence[FeaturedWindow]) -> FeatureRows:
        frames = [wf.features for wf in group]
        first = frames[0]
        n_ch = len(first.channels)
        if len(frames) == 1:  # the service: a window at a time
            w = group[0].window
            sensors = self._sensors.get(first.channels)
            if sensors is None:
                sensors = self._sensors[first.channels] = tuple(
                    self._sensor_of.get(c, "") for c in first.channels
                )
            return FeatureRows(
                self.machine,
                np.array([to_ns(w.t_start)] * n_ch, dtype=np.int64),
                np.array([w.index] * n_ch, dtype=np.int64),
                sensors,
                first.channels,
                first.names,
                first.values.astype(np.float64, copy=False),
                first.iso_zones,
                _flags(n_ch, first.valid),
            )
        t = np.repeat([to_ns(wf.window.t_start) for wf in group], n_ch).astype(np.int64)
        idx = np.repeat([wf.window.index for wf in group], n_ch).astype(np.int64)
        chans = tuple(c for f in frames for c in f.channels)
        return FeatureRows(
            self.machine,
            t,
            idx,
            tuple(self._sensor_of.get(c, "") for c in chans),
            chans,
            first.names,
            np.concatenate([f.values for f in frames]).astype(np.float64, copy=False),
            tuple(z for f in frames for z in f.iso_zones),
            np.repeat([f.valid for f in frames], n_ch).astype(bool),
        )

    def _spectra(self, wf: FeaturedWindow, *, store: bool = True) -> list[Record]:
        t = to_ns(wf.window.t_start)
        if self._next_spectra_ns is not None and t < self._next_spectra_ns:
            return []
        if not wf.features.valid:
            return []
        if not store:  # still due: stored at the first window when shedding ends
            if self._spectra_shed_until is None or t >= self._spectra_shed_until:
                self.spectra_shed += 1  # one a due time, as many as would have been stored
                self._spectra_shed_until = t + self._spectra_every_ns
            return []
        self._spectra_shed_until = None
        every = self._spectra_every_ns
        self._next_spectra_ns = t + every - (t - self._spectra_phase_ns) % every if every > 0 else t
        h = self.pipeline.history
        out: list[Record] = []
        freqs, amp = wf.features.amplitude_spectrum()
        df = float(freqs[1] - freqs[0])
        vals, factor = decimate_peak(amp, h.spectrum_lines)
        efreqs, eamp = wf.features.envelope_spectrum()
        keep = max(2, int(np.searchsorted(efreqs, h.envelope_max_hz, side="right")))
        evals, efactor = decimate_peak(eamp[:, :keep], h.spectrum_lines)
        for c, ch in enumerate(wf.features.channels):
            sensor = self._sensor_of.get(ch, "")
            out.append(
                Spectrum(self.machine, sensor, ch, t, "power", 0.0, df * factor, "g", vals[c])
            )
            out.append(
                Spectrum(self.machine, sensor, ch, t, "envelope", 0.0, df * efactor, "g", evals[c])
            )
        return out

    def transition(
        self,
        wf: FeaturedWindow,
        upto: Sequence[Window],
        sensor: str,
        old: str,
        new: str,
        reason: str,
        score: WindowScore | None,
        model: str,
        thresholds: dict[str, float],
    ) -> list[Record]:
        """A state transition decided at ``wf`` (``score``: the window's, None without a
        model): its capture and its ``StateChange``, the score as history writes it.

        ``upto`` are the windows of the current group up to and including ``wf``
        (the capture also reaches back into the previous groups).
        """
        cap = self._capture(wf, upto, reason, score, model, thresholds)
        written = written_score(score.score) if score is not None else None
        change = StateChange(
            self.machine,
            to_ns(wf.window.t_start),
            old,
            new,
            reason,
            sensor=sensor,
            score=math.nan if written is None else written,
            capture=cap.id if cap is not None else "",
        )
        return [*([cap] if cap is not None else []), change]

    def _capture(
        self,
        wf: FeaturedWindow,
        upto: Sequence[Window],
        reason: str,
        score: WindowScore | None,
        model: str,
        thresholds: dict[str, float],
    ) -> Capture | None:
        if self.captures is None:
            return None
        windows = [*self._before, *upto][-self.pipeline.history.capture_windows :]
        self.captures_made += 1
        return self.captures.capture(
            self.machine,
            windows,
            channels=self.pipeline.columns,
            reason=reason,
            model=model,
            thresholds=thresholds,
            context={
                "window": wf.window.index,
                "score": written_score(score.score) if score is not None else None,
                "diagnosis": score.diagnosis if score is not None else None,
                "top_features": None
                if score is None or score.learning
                else list(score.top_features),
                "pipeline_file": self.pipeline.source_path,
                # Every DSP parameter the features depend on, to re-analyse the capture.
                "pipeline": self.pipeline.model_dump(mode="json"),
            },
        )
