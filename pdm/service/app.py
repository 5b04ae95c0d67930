"""``pdm-edge run``: the appliance service — live streams to alarms, actions and history.

One :class:`~pdm.service.runner.MachineRunner` per pipeline (its own thread
and bounded queue), one history writer (queue + disk spool) for all, one
alarm state store, the control API on localhost, and a watchdog. The inputs
(``--listen``, ``--mqtt``, ``--simulate``, ``--replay``) are
:class:`~pdm.service.inputs.ServiceInputs`'s: it routes each chunk to its machine; this
module starts and stops them through it, in the service's order.

Shutdown (SIGTERM, Ctrl-C): sources stop, runners finish their queues, every
relay drops (fail-safe), webhooks get a few seconds, history is delivered or
spooled. A restart continues from the stored alarm states.

The watchdog: a runner with work waiting whose heartbeat has not moved for
``--stall-s`` holds its relay dropped and raises ``appliance_fault`` until it
moves again.

Model updates (the watcher, shadow, promote, rollback, uploads) are
:class:`~pdm.service.models.ModelManager`'s; an uploaded bundle is unpacked by
:func:`~pdm.service.bundles.extract_bundle`.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pdm.alarms.state import MachineAlarm, check_operator_text
from pdm.appliance import appliance_id
from pdm.config import Pipeline
from pdm.dsp.iso import iso_zone
from pdm.errors import ConfigError
from pdm.history import open_store, spool_path
from pdm.history.base import StoreURL
from pdm.history.records import Event
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.publish.config import build_publishers, machine_infos
from pdm.publish.feed import StateFeed, encode
from pdm.publish.hub import PublishHub
from pdm.publish.model import Snapshot, TransitionEvent
from pdm.scoring.signing import verify_bundle
from pdm.service.api import (
    UNIX_PREFIX,
    APIError,
    ControlAPI,
    Readable,
    api_token,
    health_report,
    history_health,
    machine_status,
)
from pdm.service.bundles import BUNDLE_LIMITS, clean_uploads, extract_bundle
from pdm.service.inputs import ServiceInputs, parse_hostport
from pdm.service.metrics import ServiceMetrics
from pdm.service.models import ModelManager
from pdm.service.runner import MachineRunner, RunnerPool
from pdm.service.shedding import LEVELS, ShedChange, ShedPolicy
from pdm.service.signals import stop_on_signals
from pdm.service.watchdog import stall_verdict, thread_cpu_s
from pdm.supervision.store import AlarmStore

__all__ = [
    "BUNDLE_LIMITS",
    "STOP_BUDGET_S",
    "Service",
    "ServiceOptions",
    "extract_bundle",
]

log = logging.getLogger("pdm.service")

#: CPU priority of the history writer thread (see ``HistoryWriter``): a store's batch is
#: tens of milliseconds of CPU once a second, and at full load it delayed the decisions of
#: the windows that arrived meanwhile (docs/benchmarks.md, "Why the service's constants
#: have their values").
WRITER_NICE = 10
#: The history writer's flush interval, s: half a second of rows a transaction, not a
#: second's: a shorter transaction delays fewer decisions, a still shorter one costs writer
#: CPU for no gain (docs/benchmarks.md, "Why the service's constants have their values");
#: also the most feature and score rows a kill -9 can lose.
WRITER_FLUSH_S = 0.5
#: SIGTERM to exit, at most, s (measured with the history store down or hanging: see
#: docs/service.md): under Docker's default 10 s before SIGKILL.
STOP_BUDGET_S = 8.0
#: Of that, kept for history at the end (drain while the store is up, spool the rest), s.
STOP_HISTORY_S = 3.0
STOP_DRAIN_S = 2.0
#: Of that, at most for the push inputs to let go of their connections, s (the processing
#: thread polls the stream input at least every 0.5 s).
STOP_INPUTS_S = 2.0


@dataclass
class ServiceOptions:
    store: StoreURL
    data_dir: Path
    api: str | None = "127.0.0.1:8470"
    listen: str | None = None
    simulate: bool = False
    faults: tuple[Any, ...] = ()
    replay: tuple[str, ...] = ()
    speed: float = 1.0
    silence_s: float = 5.0
    stall_s: float = 5.0
    max_lag_s: float = 10.0
    actions: str = "live"
    seed: int = 1
    duration_s: float = math.inf
    extra: dict[str, Any] = field(default_factory=dict)
    #: As worker K of a multi-process service (pdm/service/workers.py): its own spool, the
    #: Unix socket to its supervisor (connections handed over, the API port reported) and
    #: the supervisor's pid (gone: stop).
    worker: int | None = None
    control_fd: int | None = None
    parent_pid: int | None = None
    #: ``--mqtt mqtt://HOST:PORT/FILTER`` (pdm/sources/mqtt.py)
    mqtt: str | None = None
    #: A worker's view of the machine and sensor ids its siblings run (their MQTT messages
    #: reach every worker; each keeps its own and leaves the others' alone).
    sibling_ids: frozenset[str] = frozenset()
    #: Stream input limits (pdm/sources/tcp.py, TcpStreamServer): the largest frame (None:
    #: sized from the pipelines, ``ServiceInputs.frame_limit``), the bytes of incomplete frames across
    #: connections (None: 4 frames, at least 64 MiB), connections at once and per address
    #: (None: sized from the pipelines' sensors, pdm/service/limits.py).
    max_frame_bytes: int | None = None
    max_input_bytes: int | None = None
    max_connections: int | None = None
    max_per_peer: int | None = None
    #: Shadow windows a candidate must have scored before ``promote`` (unless forced).
    promote_min_windows: int = 100
    #: The ``[publish]`` table (pdm/publish: MQTT, OPC UA, Modbus), or None. A worker gets
    #: ``publish_feed`` instead: its machines' states go to the supervisor, which publishes.
    publish: Any = None
    publish_feed: bool = False


def run_until_stopped(
    stop_event: threading.Event, finished: Any, stop: Any, *, poll_s: float = 0.5
) -> int:
    """Wait for SIGTERM/SIGINT or ``finished()``; then ``stop()``; the old handlers back."""
    old = stop_on_signals(stop_event)
    try:
        while not stop_event.wait(poll_s):
            if finished():
                break
    finally:
        stop()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def start_control_api(backend: Any, address: str) -> Any:
    """The control API on ``HOST:PORT`` or ``unix:PATH``. A token set (``PDM_API_TOKEN`` or
    ``PDM_API_TOKEN_FILE``) is required on every request but ``/health``, whatever the
    address; without one, only loopback or a Unix socket may serve it."""
    token = api_token()
    if address.startswith(UNIX_PREFIX):
        return ControlAPI(backend, host=address, token=token).start()
    host, port = parse_hostport(address, "--api")
    return ControlAPI(backend, host=host, port=port, token=token).start()


def _hub_sender(hub: Any, appliance: str) -> Any:
    """The feed's ``send`` into a hub of the same process."""

    def send(transitions: list[Any], states: list[dict[str, Any]]) -> None:
        hub.offer(
            [
                (Snapshot.from_status(appliance, d), TransitionEvent.from_payload(e))
                for d, e in transitions
            ],
            [Snapshot.from_status(appliance, d) for d in states],
        )

    return send


def _window_readings(r: MachineRunner) -> dict[str, Any]:
    """``/status``'s readings of the newest window: the highest velocity RMS of the machine's
    channels (mm/s) and its ISO 10816-3 zone, the diagnosis confidence, the sensor ids."""
    velocity = zone = None
    values = getattr(r, "last_values", None)
    names = r.features.extractor.names
    if values is not None and "velocity_rms_mm_s" in names:
        col = np.asarray(values)[:, names.index("velocity_rms_mm_s")]
        finite = col[np.isfinite(col)]
        if finite.size:
            velocity = float(finite.max())
            m = r.pipeline.machine
            zone = iso_zone(velocity, group=m.iso_group, foundation=m.foundation)
    conf = getattr(r, "last_confidence", None)
    return {
        "velocity_rms_mm_s": velocity,
        "iso_zone": zone,
        "diagnosis_confidence": conf if isinstance(conf, int | float) else None,
        "sensors": [s.id for s in r.pipeline.sensors],
    }


class Service:
    """The running appliance (see the module docstring)."""

    def __init__(
        self,
        pipelines: Sequence[Pipeline],
        opts: ServiceOptions,
        *,
        stop_event: threading.Event | None = None,
    ) -> None:
        if not pipelines:
            raise ConfigError("run: give at least one pipeline file")
        ids = [p.machine.id for p in pipelines]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"run: two pipelines watch the same machine id ({ids})")
        for p in pipelines:
            if p.acquisition.sample_rate_hz is None:
                raise ConfigError(
                    f"{p.source_path}: acquisition.sample_rate_hz is required for a live service"
                )
            if p.columns_from_file:
                raise ConfigError(f"{p.source_path}: name the sensors and channels for a service")
        for p in pipelines:
            if (
                p.model.public_keys
                and p.model_dir is not None
                and (p.model_dir / "model.json").exists()
            ):
                verify_bundle(p.model_dir, p.model_public_keys)  # ModelError: refuse to start
        self.pipelines = list(pipelines)
        self.opts = opts
        #: Set by SIGTERM/SIGINT (the command installs the handler before it builds the
        #: service, so a signal during start stops it cleanly once started).
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.runners: dict[str, MachineRunner] = {}
        self._watchdog_faults: set[str] = set()
        self.started = time.monotonic()
        self.api: Any = None
        self.m: ServiceMetrics | None = None
        self.feed: Any = None  # pdm.publish.feed.StateFeed
        self.hub: Any = None  # pdm.publish.hub.PublishHub (not in a worker)
        self._ctl: Any = None  # a worker's socket to its supervisor
        self._ctl_lock = threading.Lock()
        self._stages: dict[str, Any] = {}  # stage -> its latency histogram series
        self.models = ModelManager(self.runners, self.opts, self.stop_event, self._event)
        # (reads the stream keys now: ConfigError before anything starts)
        self.inputs = ServiceInputs(self.pipelines, opts, self.runners, self.stop_event)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Service:
        o = self.opts
        o.data_dir.mkdir(parents=True, exist_ok=True)
        with open_store(o.store, worker=o.worker) as probe:
            try:
                probe.ping()
            except Exception as exc:
                log.warning("%s; history is spooled until it answers", exc)
        self.spool = Spool(spool_path(o.data_dir, o.store, worker=o.worker))
        # One store holds every machine: it keeps the longest retention any asks for
        # (0: everything).
        keep = [p.history.retention_days for p in self.pipelines]
        retention = None if not keep or 0 in keep else max(keep)
        self.writer = HistoryWriter(
            # (worker K writes a history file of its own: no two processes contend for one)
            lambda: open_store(o.store, retention_days=retention, worker=o.worker),
            self.spool,
            label="appliance",
            nice=WRITER_NICE,
            flush_interval_s=WRITER_FLUSH_S,
        )
        self.alarm_store = AlarmStore(o.data_dir / "alarms.db")
        # Every sample labelled with the appliance: many appliances, one Prometheus.
        self.m = ServiceMetrics(appliance=appliance_id())
        self.pool = RunnerPool()
        # The history writer binds its statements while the processing waits for work.
        self.writer.yield_to = self.pool.idle
        self.pool.shedder.on_change = self._shedding_changed
        # Shedding hurries once data waits a fifth of the time that faults a machine.
        self.pool.shedder.policy = ShedPolicy.for_deadline(o.max_lag_s)
        for p in self.pipelines:
            fs = float(p.acquisition.sample_rate_hz or 0)
            runner = MachineRunner(
                p,
                fs,
                writer=self.writer,
                alarm_store=self.alarm_store,
                data_dir=o.data_dir,
                actions=o.actions,
                max_lag_s=o.max_lag_s,
                observe=self._observe,
                on_decision=self._decided,
                pool=self.pool,
            )
            self.runners[p.machine.id] = runner.start()
        self.writer.submit(
            Event(
                "appliance",
                time.time_ns(),
                "service_start",
                "info",
                f"pdm-edge run: {len(self.runners)} machine(s): {', '.join(self.runners)}",
            )
        )
        self.inputs.start(self.writer, self.pool)
        self._spawn(self._watchdog, name="watchdog")
        self.models.note_live_models()
        for p in self.pipelines:
            if p.model_dir is not None:
                clean_uploads(p.model_dir.parent, p.model_dir.name)
        self._spawn(self.models.watch, name="models")
        if o.api:
            self.api = start_control_api(self, o.api)
            if o.control_fd is None:
                log.warning("control API on %s", self.api.url)
        if o.control_fd is not None:
            self._start_control(o.control_fd)
        if (o.publish is not None and o.publish.any) or o.publish_feed:
            self._start_publishing()
        # Everything built so far lives as long as the service: out of the collector's sight,
        # a full collection no longer walks it (measured: 35-65 ms pauses of the processing
        # thread every ~10 s with 150 machines a worker, ~3 ms after).
        gc.collect()
        gc.freeze()
        return self

    def _start_control(self, fd: int) -> None:
        """Worker of a supervisor: report the API port, then adopt the connections it
        hands over (SCM_RIGHTS) until it goes away — then stop."""
        ctl = self._ctl = socket.socket(fileno=fd)
        with self._ctl_lock:
            ctl.send(b"ready")

        def receive() -> None:
            while not self.stop_event.is_set():
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(ctl, 4096, 16)
                except OSError:
                    break
                if not msg and not fds:
                    break  # the supervisor closed its end
                # PEER, a newline, then the bytes the supervisor read (the first header)
                peer, _, received = msg.partition(b"\n")
                for fd in fds:
                    sock = socket.socket(fileno=fd)
                    self.inputs.adopt(sock, peer.decode(errors="replace") or "peer", received)
            if not self.stop_event.is_set():
                log.error("the supervisor went away; stopping")
                self.stop_event.set()

        self._spawn(receive, name="control")

    def _start_publishing(self) -> None:
        """The machines' states out to the plant (pdm/publish), off the processing thread: a
        feed of this process's machines, to a hub of its own or — in a worker — over the
        control socket to the supervisor's hub, which serves every worker's machines."""
        o = self.opts
        if o.publish_feed and self._ctl is not None:
            send = self._send_to_supervisor
        else:
            appliance = appliance_id()
            pubs = build_publishers(
                o.publish, appliance=appliance, data_dir=o.data_dir, acknowledge=self.acknowledge
            )
            self.hub = PublishHub(pubs, machine_infos(self.pipelines)).start()
            send = _hub_sender(self.hub, appliance)
        feed = self.feed = StateFeed(list(self.runners), self.status_of, send).start()

        def listener(engine: Any) -> Any:
            # The alarm state the transition left (an immutable value), read on the thread
            # that made it: the feed publishes it even when the next window moved on.
            return lambda event: feed.transition(event, engine.state)

        for runner in self.runners.values():
            runner.engine.listeners.append(listener(runner.engine))

    def _send_to_supervisor(self, transitions: list[Any], states: list[Any]) -> None:
        """A worker's feed: publish messages on the control socket (waits for room, never
        for more than a second a message: the supervisor reads them as they come)."""
        ctl = self._ctl
        for msg in encode(transitions, states):
            deadline = time.monotonic() + 1.0
            with self._ctl_lock:
                while True:
                    try:
                        ctl.send(msg, socket.MSG_DONTWAIT)
                        break
                    except BlockingIOError:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError("the supervisor does not read its socket") from None
                        select.select([], [ctl], [], left)

    def _spawn(self, target: Any, *args: Any, name: str) -> None:
        threading.Thread(target=target, args=args, name=f"pdm-{name}", daemon=True).start()

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT (or the sources end); then stop cleanly."""
        return run_until_stopped(self.stop_event, self._finished, self.stop)

    def _finished(self) -> bool:
        if self.opts.parent_pid and os.getppid() != self.opts.parent_pid:
            log.error("the supervisor (pid %d) is gone; stopping", self.opts.parent_pid)
            return True
        return self.inputs.finished()

    def stop(self, budget_s: float = STOP_BUDGET_S) -> None:
        """Stop within ``budget_s`` in all (:data:`STOP_BUDGET_S`, under Docker's default 10 s
        before SIGKILL): every relay drops first, the inputs let go of their connections (at
        most :data:`STOP_INPUTS_S`), then the machines finish their queues (their
        webhooks get what is left of a share of the budget; undelivered ones stay in their
        outboxes), then history goes to the store if it is up — for at most
        :data:`STOP_DRAIN_S` — and otherwise, or after that, stays in the spool for the next
        start. A store that is down is not waited for at all."""
        deadline = time.monotonic() + budget_s

        def left() -> float:
            return deadline - time.monotonic()

        self.stop_event.set()
        for runner in self.runners.values():  # fail-safe first, whatever happens next
            self.writer.submit(
                *runner.engine.force_safe(
                    True, "the appliance stops", source="stop", announce=False
                )
            )
        self.inputs.stop(min(deadline, time.monotonic() + STOP_INPUTS_S))
        runners = list(self.runners.values())
        for i, runner in enumerate(runners):  # each an equal share of what is left
            runner.stop(timeout=max(0.1, (left() - STOP_HISTORY_S) / (len(runners) - i)))
        if self.feed is not None:
            self.feed.close(timeout=min(1.0, max(0.1, left() - STOP_HISTORY_S)))
        if self.hub is not None:
            self.hub.close(timeout=min(1.0, max(0.1, left() - STOP_HISTORY_S)))
        self.writer.submit(
            Event("appliance", time.time_ns(), "service_stop", "info", "pdm-edge run stopped")
        )
        # The store gets what it can while it is up; the rest stays in the spool.
        if self.writer.snapshot().store_up:
            self.writer.drain(max(0.0, min(STOP_DRAIN_S, left() - 1.0)), while_up=True)
        self.writer.close(timeout=max(0.5, min(1.0, left())))
        self.spool.close()
        self.alarm_store.close()
        if self.api is not None:
            self.api.stop(timeout=max(0.2, min(1.0, left())))

    # -- safe model updates (pdm/service/models.py) ---------------------------------------------
    def _event(self, machine: str, kind: str, severity: str, msg: str, **detail: Any) -> None:
        self.writer.submit(
            Event(
                machine,
                time.time_ns(),
                kind,
                severity,
                msg,
                detail=json.dumps(detail, default=str) if detail else "",
            )
        )

    def promote(
        self, machine: str, by: str, comment: str = "", force: bool = False
    ) -> dict[str, Any]:
        """:meth:`ModelManager.promote <pdm.service.models.ModelManager.promote>`."""
        return self.models.promote(machine, by, comment, force)

    def rollback(self, machine: str, by: str, comment: str = "") -> dict[str, Any]:
        """:meth:`ModelManager.rollback <pdm.service.models.ModelManager.rollback>`."""
        return self.models.rollback(machine, by, comment)

    def upload_candidate(self, machine: str, body: Readable) -> dict[str, Any]:
        """:meth:`ModelManager.upload_candidate <pdm.service.models.ModelManager.upload_candidate>`."""
        return self.models.upload_candidate(machine, body)

    def teach_in(self, machine: str, decision: str, by: str, comment: str = "") -> dict[str, Any]:
        """An operator's decision on a teach-in that asks for one (``accept`` or ``restart``).

        Applied by the machine's processing at its next window (docs/models.md, Teach-in).
        Raises ``KeyError`` (unknown machine), ``ValueError`` (no name, an unknown decision,
        accept while nothing is asked) or :class:`APIError` 409 (the machine is not learning).
        """
        runner = self.runners[machine]
        scores = runner.scores
        teach = scores.teach if scores is not None and scores.scorer is None else None
        if teach is None:
            raise APIError(
                409, f"{machine}: not in teach-in (it has a model, or none is configured)"
            )
        msg = teach.decide(decision, by, comment)
        log.warning("%s: %s", machine, msg)
        self._event(
            machine,
            "teach_in_decision",
            "info",
            msg,
            decision=decision,
            by=by.strip(),
            comment=comment,
        )
        return {"machine": machine, "message": msg, "teach_in": teach.status()}

    # -- overload -------------------------------------------------------------------------------
    def _shedding_changed(self, change: ShedChange) -> None:
        """A new shedding level (pdm/service/shedding.py): one log line, one history event."""
        who = "" if self.opts.worker is None else f" (worker {self.opts.worker})"
        msg = change.message + who
        (log.warning if change.new else log.info)("%s", msg)
        detail = {
            "level": change.new,
            "name": LEVELS[change.new].name,
            "from": change.old,
            "delay_s": round(change.delay_s, 3),
            "busy": round(change.busy, 3),
            "parked": change.parked,
            "machines": change.machines,
            "worker": self.opts.worker,
        }
        self.writer.submit(
            Event(
                "appliance",
                time.time_ns(),
                "shedding",
                "warning" if change.new else "info",
                msg,
                detail=json.dumps(detail),
            )
        )

    def _shedding_status(self) -> dict[str, Any]:
        return {**self.pool.shedder.status(), "worker": self.opts.worker}

    # -- watchdog -------------------------------------------------------------------------------
    def _watchdog(self) -> None:
        """Every 0.25 s: is the processing loop moving? One that has not moved is stuck (no
        CPU: the machines with work waiting get ``appliance_fault`` after ``--stall-s``) or
        busy (computing: only after ``--max-lag-s``, the time within which each machine's
        data must be decided) — pdm/service/watchdog.py."""
        beat_seen = -1.0  # the heartbeat last seen, and the thread's CPU time then
        cpu_then: float | None = None
        said = ""
        while not self.stop_event.wait(0.25):
            now = time.monotonic()
            beat = self.pool.heartbeat
            cpu = thread_cpu_s(self.pool.native_id)
            if beat != beat_seen:
                beat_seen, cpu_then = beat, cpu
            stale = now - beat
            share = (
                None
                if cpu is None or cpu_then is None or not self.pool.alive
                else (cpu - cpu_then) / max(stale, 1e-3)
            )
            verdict = stall_verdict(stale, share, self.opts.stall_s, self.opts.max_lag_s)
            if verdict == "busy" and said != "busy":
                log.warning(
                    "processing busy: one round has run %.1f s, computing (%.0f%% of a core); "
                    "machines are put in appliance_fault only when their data waits %g s",
                    stale,
                    100 * (share or 0.0),
                    self.opts.max_lag_s,
                )
            said = verdict
            for machine, runner in self.runners.items():
                waiting = runner.busy or not runner.alive
                act = verdict in ("stuck", "late") or (
                    not runner.alive and stale > self.opts.stall_s
                )
                stalled = waiting and act
                if stalled and machine not in self._watchdog_faults:
                    self._watchdog_faults.add(machine)
                    reason = (
                        f"processing stuck for {stale:.1f} s (watchdog, limit {self.opts.stall_s:g} s)"
                        if verdict != "late"
                        else f"processing busy for {stale:.1f} s in one round: no decision "
                        f"within {self.opts.max_lag_s:g} s (watchdog)"
                    )
                    log.error("%s: %s: relay dropped", machine, reason)
                    if self.m is not None:
                        self.m.watchdog_stalls_total.inc()
                    # From the watchdog's thread: the runner's own thread is stuck. The
                    # engine records the transition and sends it to the webhooks.
                    self.writer.submit(*runner.engine.force_safe(True, reason, source="watchdog"))
                elif not stalled and machine in self._watchdog_faults:
                    self._watchdog_faults.discard(machine)
                    self.writer.submit(
                        *runner.engine.force_safe(
                            False, "processing moves again", source="watchdog"
                        )
                    )

    # -- the control API's backend --------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return [self.status_of(machine) for machine in self.runners]

    def status_of(self, machine: str, alarm: MachineAlarm | None = None) -> dict[str, Any]:
        """One machine's ``/status`` entry (KeyError: not one of this process's): what the
        publishers publish too (pdm/publish), with ``alarm`` as the alarm state when given
        (the state a transition left)."""
        r = self.runners[machine]
        st = alarm if alarm is not None else r.engine.state
        assert st is not None
        model = r.scores.scorer.model if r.scores is not None and r.scores.scorer else None
        fault = " ; ".join(
            x
            for x in (
                "behind real time" if r.backlog_fault else "",
                "parked: the appliance is overloaded" if r.is_parked else "",
                "processing stalled" if machine in self._watchdog_faults else "",
                r.engine._appliance_fault,
            )
            if x
        )
        last = r.stats.last_window_t
        d = machine_status(
            machine,
            r.pipeline.machine.name,
            st,
            score=r.last_score,
            thresholds={"alert": model.alert, "danger": model.danger} if model else None,
            diagnosis=r.last_diagnosis,
            appliance_fault=fault,
            model_version=model.version if model else None,
            last_window_ns=None if last is None else round(last * 1e9),
        )
        refused, last_refused = self.inputs.refusals_of(machine)
        d.update(
            learning=bool(r.scores is not None and r.scores.learning),
            teach_in=r.scores.teach_in_status() if r.scores is not None else None,
            hint=r.last_hint,
            windows=r.stats.windows,
            samples_dropped=r.stats.samples_dropped,
            error=r.error or None,
            shadow=r.shadow.as_dict() if r.shadow is not None else None,
            refused=refused,
            last_refused=last_refused,
            **_window_readings(r),
            # the worker's shedding level, and what it left out of this machine's work
            shedding={**self._shedding_status(), "shed": dict(r.stats.shed)},
        )
        return d

    def health(self) -> dict[str, Any]:
        checks: dict[str, tuple[bool, str]] = {}
        now = time.monotonic()
        for machine, r in self.runners.items():
            refused = self.inputs.recent_refusal(machine, now)
            ok = (
                r.alive
                and machine not in self._watchdog_faults
                and not r.backlog_fault
                and not r.is_parked
                and not refused
            )
            detail = (
                "processing thread stopped"
                if not r.alive
                else "processing stalled"
                if machine in self._watchdog_faults
                else "behind real time"
                if r.backlog_fault
                else "parked: the appliance is overloaded (shedding level 7)"
                if r.is_parked
                else refused or f"{r.stats.windows} windows, lag {r.stats.lag_s:.2f} s"
            )
            checks[machine] = (ok, detail)
        checks["history"] = history_health(self.writer.snapshot(), max_spool_rows=10_000_000)
        # Shedding is the appliance coping, not failing: shown, never a failed check.
        shed = self.pool.shedder.rules
        checks["shedding"] = (
            True,
            "nothing shed" if shed.level == 0 else f"level {shed.level} {shed.name}",
        )
        report = health_report(checks)
        report["uptime_s"] = round(time.monotonic() - self.started, 1)
        return report

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        runner = self.runners[machine]  # KeyError: unknown machine
        by, comment = check_operator_text(by, comment)  # ValueError: 400
        recs, msg = runner.engine.acknowledge(by, comment)
        self.writer.submit(*recs)
        return msg

    def metrics(self) -> str:
        """Prometheus text exposition of the service's metrics."""
        self._update_gauges()
        return self.m.render() if self.m is not None else ""

    def _observe(self, stage: str, seconds: float) -> None:
        series = self._stages.get(stage)  # a handful of stages, several times a window
        if series is None:
            if self.m is None:
                return
            series = self._stages[stage] = self.m.stage_seconds.labels(stage=stage)
        series.observe(seconds)

    def _decided(self, seconds: float, from_sensor_s: float | None) -> None:
        if self.m is not None:
            self.m.decision_latency_seconds.observe(seconds)
            if from_sensor_s is not None:
                self.m.decision_latency_from_sensor_seconds.observe(from_sensor_s)

    def _update_gauges(self) -> None:
        m = self.m
        if m is None:
            return
        snap = self.writer.snapshot()
        m.history_spool_rows.set(snap.spool_rows)
        m.history_store_up.set(1 if snap.store_up else 0)
        any_fault = False
        for machine, r in self.runners.items():
            m.windows_total.labels(machine=machine).set_total(r.stats.windows)
            m.lag_seconds.labels(machine=machine).set(r.stats.lag_s)
            m.queue_depth.labels(machine=machine).set(r.queue.qsize())
            if r.model_version:
                m.set_model(machine, r.model_version)
            st = r.engine.state
            if st is not None:
                m.set_alarm_state(machine, st.state)
                m.set_sensor_faults(
                    machine, [s.id for s in r.pipeline.sensors], list(st.sensor_faults)
                )
            any_fault = (
                any_fault
                or r.backlog_fault
                or r.is_parked
                or machine in self._watchdog_faults
                or bool(r.engine._appliance_fault)
            )
        m.appliance_fault.set(1.0 if any_fault else 0.0)
        m.observe_shedding(self.pool.shedder, [r.stats.shed for r in self.runners.values()])
        m.observe_history(snap)
        self.inputs.observe(m)
