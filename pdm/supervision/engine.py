"""The alarm engine of one machine: windows in, states, actions and audit records out.

The I/O around the pure state machine of :mod:`pdm.alarms`: the state store, the relay,
the webhooks' outboxes and the history records.

Per window: sensor health (:mod:`pdm.alarms.health`) → :func:`pdm.alarms.state.step`
→ on a transition, in this order: the state is saved (fsynced) *before* anything
acts on it; the relay follows the state (energised = the machine may run: it
drops on trip and on ``appliance_fault``, and when the engine closes); then a
capture of the raw windows and a ``StateChange`` go to history, and each
webhook gets the event through its durable outbox. Every relay attempt and
webhook outcome is an ``ActionResult`` in history.

Restart safety: the state store holds the state the actions were taken for, so
a restart (kill -9 included) sets the relay to what that state says and sends
nothing new; a webhook event already queued or delivered is never queued again
(its id is stable).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pdm.actions.outbox import Outbox
from pdm.actions.relay import LogRelay, Relay, RelayResult, relay_from_url
from pdm.actions.webhook import WebhookSender, WebhookSettings, webhook_secret
from pdm.alarms.health import HealthLimits, by_sensor, check_windows, full_scale_g
from pdm.alarms.rules import rules_from
from pdm.alarms.state import (
    Ack,
    MachineAlarm,
    Transition,
    acknowledge,
    check_operator_text,
    diagnosis_confidence,
    features_read,
    relay_permissive,
    step,
    window_result,
)
from pdm.appliance import appliance_id
from pdm.config import Pipeline
from pdm.core.events import AlarmEvent
from pdm.core.time import iso_ns
from pdm.dsp.windows import StreamEvent, Window
from pdm.history.recorder import Recorder
from pdm.history.records import ActionResult, Capture, Record, StateChange, to_ns
from pdm.processing import WindowFeatures
from pdm.scoring.result import WindowScore, written_score
from pdm.supervision.ack import ack_records
from pdm.supervision.store import AlarmStore

__all__ = ["AlarmEngine", "EngineTransition"]

log = logging.getLogger("pdm.alarms")

Submit = Callable[..., None]


@dataclass
class EngineTransition:
    """A transition as the replay summary lists it."""

    window: int
    t: str
    sensor: str
    old: str
    new: str
    reason: str
    capture: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "window": self.window,
            "t": self.t,
            "from": self.old,
            "to": self.new,
            "reason": self.reason,
        }
        if self.sensor:
            d["sensor"] = self.sensor
        if self.capture:
            d["capture"] = self.capture
        return d


@dataclass
class AlarmEngine:
    """One machine's alarms. ``actions``: ``live`` (the pipeline's relay and webhooks) or
    ``dry-run`` (a log relay, webhooks recorded as skipped)."""

    pipeline: Pipeline
    store: AlarmStore
    submit: Submit
    recorder: Recorder
    data_dir: Path
    actions: str = "dry-run"
    state: MachineAlarm | None = None
    #: A relay to use instead of the pipeline's (tests, the benchmark).
    relay_override: Relay | None = None
    #: The state store key: the machine id (the live state), or e.g. ``<id>#replay``.
    key: str = ""
    transitions: list[EngineTransition] = field(default_factory=list)
    #: Called with every transition's event after the webhooks have it (the publishers of
    #: pdm.publish: MQTT, OPC UA, Modbus). Each must return at once: it runs on the
    #: processing thread (the service's put it on a bounded queue).
    listeners: list[Callable[[AlarmEvent], None]] = field(default_factory=list)
    #: Writes a record to history durably before returning (HistoryWriter.submit_durable):
    #: each transition's state change goes there before its webhook event goes to the
    #: outbox, so kill -9 between the two cannot leave a delivered webhook with no state
    #: change in history. None: the records go only through ``submit``'s callers.
    submit_durable: Submit | None = None
    relay: Relay = field(init=False)
    webhooks: list[WebhookSender] = field(init=False, default_factory=list)
    _outboxes: list[Outbox] = field(init=False, default_factory=list)
    _appliance_fault: str = field(init=False, default="")
    _permissive: bool | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.machine = self.pipeline.machine.id
        self.key = self.key or self.machine
        self.rules = rules_from(self.pipeline)
        self._read = features_read(self.rules)
        self.appliance = appliance_id()
        self.fullscale = full_scale_g(self.pipeline)
        self.limits = HealthLimits()
        self._columns = self.pipeline.columns  # a property that builds the tuple anew
        self.sensor_of = {c: self.pipeline.channel(c)[0].id for c in self._columns}
        if self.state is None:
            self.state = self.store.load(self.key) or MachineAlarm()
        live = self.actions == "live"
        if self.relay_override is not None:
            self.relay = self.relay_override
        else:
            self.relay = relay_from_url(self.pipeline.alarms.relay_url) if live else LogRelay()
        if live:
            for i, hook in enumerate(self.pipeline.alarms.webhooks):
                settings = WebhookSettings(
                    url=hook.url,
                    secret=webhook_secret(hook.secret_env),
                    format=hook.format,
                    timeout_s=hook.timeout_s,
                    name=f"{self.machine}-{i}",
                )
                outbox = Outbox(self.data_dir / "outbox" / f"{self.machine}-{i}.db")
                self._outboxes.append(outbox)
                sender = WebhookSender(settings, outbox, on_result=self._webhook_result(settings))
                self.webhooks.append(sender.start())
        # Restart: the relay follows the stored state at once, and nothing is re-sent.
        self._last_t_ns: int | None = None
        self._relay_retry_at = 0.0
        self._forced_safe: dict[str, str] = {}  # reasons the service holds the relay down
        self._gaps: list[StreamEvent] = []
        self._pending: list[Record] = self._drive_relay(time.time_ns())

    # -- per window ----------------------------------------------------------------------------
    def process(
        self,
        group: Sequence[WindowFeatures],
        scores: Sequence[WindowScore],
        *,
        model: str,
        thresholds: dict[str, float],
        gaps: Sequence[StreamEvent] = (),
    ) -> list[Record]:
        """Step the state over a group of windows and their scores (none without a model;
        unrounded: the alarm step compares the model's own score); returns the history
        records to write.

        ``gaps``: stream resets (``gap``,
        ``time_backwards``) since the previous group; the first window after each is a
        sensor fault of every sensor (samples are missing), at once.
        """
        if not group:
            return []
        assert self.state is not None
        # Records made before the first window (the relay set at start) carry its time.
        out: list[Record] = []
        t_ns = [to_ns(wf.window.t_start) for wf in group]  # each window's time, once
        if self._pending:
            out = [dataclasses.replace(r, t_ns=t_ns[0]) for r in self._pending]  # type: ignore[arg-type]
            self._pending = []
        self._last_t_ns = t_ns[-1]
        by_window = {s.window: s for s in scores}
        # Resets may come before the group whose first window follows them: keep them.
        if gaps:
            self._gaps += [e for e in gaps if e.kind != "rate_change"]
        fs = group[0].window.fs
        data = (
            group[0].window.data[None]  # one window (the service): no copy
            if len(group) == 1
            else np.stack([wf.window.data for wf in group])
        )
        # The extraction's min, max and sum of the same float32 samples: not found again.
        known = [wf.features.stats for wf in group]
        stats: Any = None
        if data.dtype == np.float32 and all(k is not None for k in known):
            stats = known[0] if len(known) == 1 else np.concatenate(known)  # type: ignore[arg-type]
        health = check_windows(data, fs, self.fullscale, self.limits, stats=stats)
        for i, (wf, verdicts) in enumerate(zip(group, health, strict=True)):
            score = by_window.get(wf.window.index)
            faults, details = by_sensor(verdicts, self._columns, self.sensor_of)
            frame = wf.features
            gap = ""
            t_win = t_ns[i]
            if self._gaps:
                for ev in [e for e in self._gaps if to_ns(e.t) <= t_win]:
                    self._gaps.remove(ev)  # the first window after the reset carries it
                    gap = f"{ev.kind.replace('_', ' ')}: {ev.detail}"
            # The diagnosis may corroborate a score trip (docs/alarms.md, "What may trip").
            label, conf = (
                diagnosis_confidence(score.diagnosis, score.diagnosis_confidence)
                if score is not None
                else (None, 0.0)
            )
            win = window_result(
                t_win,
                wf.window.index,
                score.score if score is not None else None,
                thresholds,
                frame.channels,
                frame.names,
                frame.values,
                self.sensor_of,
                faults,
                details,
                gap,
                keep=self._read,
                diagnosis=label,
                diagnosis_confidence=conf,
                bearing_defect=score is not None and score.alert_by == "diagnosis",
            )
            self.state, trs = step(self.state, win, self.rules)
            if not trs:
                continue
            # Saved (fsynced) before acting on it; then the relay first — the captures,
            # history and webhooks of the transition come after the machine is safe.
            self.store.save(self.key, self.state, off_windows=self.rules.off_windows, now=True)
            relay = self._drive_relay(win.t_ns)
            upto = [w.window for w in group[: i + 1]]
            for tr in trs:
                out += self._transition(wf, upto, tr, score, model, thresholds)
            out += relay
        if self._appliance_fault and time.monotonic() >= self._relay_retry_at:
            # A failing relay is tried again about once a second (each try may take 1.5 s).
            self._relay_retry_at = time.monotonic() + 1.0
            out += self._drive_relay(self._last_t_ns or time.time_ns())
        self.store.save(self.key, self.state, off_windows=self.rules.off_windows)
        return out

    def _transition(
        self,
        wf: WindowFeatures,
        upto: list[Window],
        tr: Transition,
        score: WindowScore | None,
        model: str,
        thresholds: dict[str, float],
    ) -> list[Record]:
        recs = self.recorder.transition(
            wf, upto, tr.sensor, tr.old, tr.new, tr.reason, score, model, thresholds
        )
        capture = next((r.id for r in recs if isinstance(r, Capture)), "")
        self.transitions.append(
            EngineTransition(
                tr.window,
                iso_ns(tr.t_ns),
                tr.sensor,
                tr.old,
                tr.new,
                tr.reason,
                capture,
            )
        )
        log.info(
            "%s%s: %s → %s: %s",
            self.machine,
            f"/{tr.sensor}" if tr.sensor else "",
            tr.old,
            tr.new,
            tr.reason,
        )
        event = AlarmEvent(
            appliance=self.appliance,
            machine=self.machine,
            sensor=tr.sensor,
            old=tr.old,
            new=tr.new,
            reason=tr.reason,
            t_ns=tr.t_ns,
            created_ns=time.time_ns(),
            # The event leaves the appliance (webhooks, publishers): the score as written.
            score=written_score(score.score) if score is not None else None,
            thresholds={
                **thresholds,
                **({"trip": self.rules.score_trip} if self.rules.score_trip else {}),
            },
            top_features=score.top_features if score is not None else (),
            diagnosis=score.diagnosis if score is not None else None,
            capture=capture,
        )
        self._emit(event)  # webhooks: durable; delivery and its audit follow
        if not self.webhooks and self.pipeline.alarms.webhooks:
            recs += [
                ActionResult(
                    self.machine,
                    tr.t_ns,
                    "webhook",
                    hook.url,
                    "skipped",
                    0,
                    "dry run (replay without --actions live)",
                    event.id,
                )
                for hook in self.pipeline.alarms.webhooks
            ]
        return recs

    # -- relay -----------------------------------------------------------------------------------
    def _drive_relay(self, t_ns: int) -> list[Record]:
        """Set the relay to what the state says (if it changed or is failing); audit it."""
        assert self.state is not None
        want = relay_permissive(self.state) and not self._appliance_fault and not self._forced_safe
        if want == self._permissive and not self._appliance_fault:
            return []
        result = self.relay.set_permissive(want)
        recs: list[Record] = [self._relay_record(t_ns, result)]
        if result.ok:
            self._permissive = want
            if self._appliance_fault:
                recs += self._appliance(t_ns, "")
                if relay_permissive(self.state):  # allowed again now that the relay answers
                    r2 = self.relay.set_permissive(True)
                    recs.append(self._relay_record(t_ns + 1, r2))  # +1 ns: its own history key
                    self._permissive = True if r2.ok else self._permissive
        elif not self._appliance_fault:
            recs += self._appliance(t_ns, f"relay: {result.detail}")
        return recs

    def _relay_record(self, t_ns: int, r: RelayResult) -> ActionResult:
        what = "permissive (energised)" if r.permissive else "drop (de-energised)"
        return ActionResult(
            self.machine,
            t_ns,
            "relay",
            self.relay.target,
            "ok" if r.ok else "failed",
            r.attempts,
            f"{what}: {r.detail} ({r.elapsed_s * 1000:.0f} ms)",
        )

    def _appliance(self, t_ns: int, fault: str) -> list[Record]:
        old = "appliance_fault" if self._appliance_fault else "ok"
        new = "appliance_fault" if fault else "ok"
        self._appliance_fault = fault
        reason = fault or "relay answers again"
        (log.error if fault else log.warning)("%s: %s → %s: %s", self.machine, old, new, reason)
        return self._announce(t_ns, old, new, reason)

    def _announce(self, t_ns: int, old: str, new: str, reason: str) -> list[Record]:
        """An appliance transition: to every webhook (outbox) and, returned, to history."""
        self.transitions.append(EngineTransition(-1, iso_ns(t_ns), "appliance", old, new, reason))
        event = AlarmEvent(
            self.appliance, self.machine, "appliance", old, new, reason, t_ns, time.time_ns()
        )
        self._emit(event)
        return [StateChange(self.machine, t_ns, old, new, reason, sensor="appliance")]

    def force_safe(
        self, on: bool, reason: str, *, source: str = "backlog", announce: bool = True
    ) -> list[Record]:
        """The service holds the relay dropped (``on``) for ``source`` (backlog, watchdog,
        stop), or lets the alarm state drive it again; returns the history records.

        With ``announce``, a change is the transition ``ok → appliance_fault`` (or back;
        sensor ``appliance``, ``reason`` as its reason): a history record *and* a webhook
        event, as the relay's own faults are (the service wrote only the record, so a
        stalled or overloaded appliance told no receiver). Then the relay's audit records.
        """
        was = source in self._forced_safe
        if on:
            self._forced_safe[source] = reason
        else:
            self._forced_safe.pop(source, None)
        recs: list[Record] = []
        if announce and on != was:
            old, new = ("ok", "appliance_fault") if on else ("appliance_fault", "ok")
            recs = self._announce(time.time_ns(), old, new, reason)
        return recs + self._drive_relay(self._last_t_ns or time.time_ns())

    def source_silent(self, sensors: list[str], reason: str) -> list[Record]:
        """Sensors whose source went silent: ``sensor_fault`` at once (no window to judge).

        They clear like any sensor fault: after ``sensor_off_windows`` healthy windows once
        data flows again.
        """
        assert self.state is not None
        t_ns = self._last_t_ns or time.time_ns()
        faults = dict(self.state.sensor_faults)
        recs: list[Record] = []
        events: list[AlarmEvent] = []
        for sensor in sensors:
            if sensor in faults:
                continue
            faults[sensor] = reason
            tr = Transition(t_ns, -1, sensor, "ok", "sensor_fault", reason)
            self.transitions.append(
                EngineTransition(-1, iso_ns(t_ns), sensor, "ok", "sensor_fault", reason)
            )
            recs.append(StateChange(self.machine, t_ns, tr.old, tr.new, reason, sensor=sensor))
            event = AlarmEvent(
                self.appliance,
                self.machine,
                sensor,
                "ok",
                "sensor_fault",
                reason,
                t_ns,
                time.time_ns(),
            )
            events.append(event)
        if recs:
            runs = {**self.state.sensor_runs, **dict.fromkeys(sensors, 0)}
            self.state = dataclasses.replace(self.state, sensor_faults=faults, sensor_runs=runs)
            self.store.save(self.key, self.state, off_windows=self.rules.off_windows, now=True)
        for event in events:  # once the state says so: a listener reads it
            self._emit(event)
        return recs

    def retry_relay(self) -> list[Record]:
        """Called periodically by a service: try a failing relay again."""
        return self._drive_relay(time.time_ns()) if self._appliance_fault else []

    # -- acknowledgement -----------------------------------------------------------------------
    def acknowledge(
        self, by: str, comment: str, t_ns: int | None = None
    ) -> tuple[list[Record], str]:
        assert self.state is not None
        t_ns = time.time_ns() if t_ns is None else t_ns
        # Checked here too, before the state changes: text the store cannot take (a lone
        # surrogate) left the state acknowledged in memory and not in alarms.db.
        by, comment = check_operator_text(by, comment)
        new, trs, msg = acknowledge(self.state, by, t_ns, comment, self.rules)
        if new is self.state:
            return [], msg  # nothing to acknowledge, or acknowledged already: nothing written
        self.state = new
        self.store.save(self.key, self.state, off_windows=self.rules.off_windows, now=True)
        self.store.record_ack(self.key, Ack(by, t_ns, comment), self.state.state, msg)
        recs = ack_records(self.machine, t_ns, by, comment, msg, trs)
        for tr in trs:
            event = AlarmEvent(
                self.appliance, self.machine, "", tr.old, tr.new, tr.reason, t_ns, t_ns
            )
            self._emit(event)
        recs += self._drive_relay(t_ns)
        return recs, msg

    def _emit(self, event: AlarmEvent) -> None:
        """A transition's event to every webhook (its durable outbox), then to the listeners;
        its state change in history first (:attr:`submit_durable`)."""
        if self.webhooks and self.submit_durable is not None:
            self.submit_durable(
                StateChange(
                    event.machine,
                    event.t_ns,
                    event.old,
                    event.new,
                    event.reason,
                    sensor=event.sensor or "",
                    score=math.nan if event.score is None else float(event.score),
                    capture=event.capture or "",
                )
            )
        for sender in self.webhooks:
            sender.enqueue(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a publisher's fault must never stop the alarms
                log.exception("%s: a transition listener failed", self.machine)

    def _webhook_result(self, settings: WebhookSettings) -> Callable[[str, str, int, str], None]:
        def done(event_id: str, outcome: str, attempt: int, detail: str) -> None:
            self.submit(
                ActionResult(
                    self.machine,
                    time.time_ns(),
                    "webhook",
                    settings.safe_url,
                    outcome,
                    attempt,
                    detail,
                    event_id,
                )
            )

        return done

    def close(self, *, drop_relay: bool = True, timeout: float = 10.0) -> None:
        """Stop: webhooks get ``timeout`` in all to deliver; the relay drops (fail-safe) by
        default."""
        deadline = time.monotonic() + timeout
        for sender in self.webhooks:
            sender.drain(max(0.0, deadline - time.monotonic()))
            sender.close(timeout=max(0.05, min(2.0, deadline - time.monotonic())))
        for outbox in self._outboxes:
            outbox.close()
        if drop_relay:
            # Fail-safe: the appliance stops, the machine may not run on unsupervised.
            result = self.relay.set_permissive(False)
            t = self._last_t_ns if self._last_t_ns is not None else time.time_ns()
            self.submit(*self._pending, self._relay_record(t, result))
            self._pending = []
            self.relay.close()
        assert self.state is not None
        self.store.save(self.key, self.state, off_windows=self.rules.off_windows, now=True)
