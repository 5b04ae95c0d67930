"""``pdm-edge run``: the appliance service — live streams to alarms, actions and history.

One :class:`~pdm.service.runner.MachineRunner` per pipeline (its own thread
and bounded queue), one history writer (queue + disk spool) for all, one
alarm state store, the control API on localhost, and a watchdog. Sources:

* ``--listen HOST:PORT`` — the TCP stream input (docs/stream-protocol.md);
  frames are routed to the pipeline whose machine id or one of whose sensor
  ids the frame names; a machine silent for ``--silence-s`` is a
  ``sensor_fault`` of its sensors;
* ``--simulate`` — the seeded simulator, paced to real time, with faults on a
  schedule (``--fault bpfo:0.3@120+600``: kind, amplitude in g, onset s, ramp s);
* ``--replay FILE`` — a CSV recording paced to real time × ``--speed``.

Shutdown (SIGTERM, Ctrl-C): sources stop, runners finish their queues, every
relay drops (fail-safe), webhooks get a few seconds, history is delivered or
spooled. A restart continues from the stored alarm states.

The watchdog: a runner with work waiting whose heartbeat has not moved for
``--stall-s`` holds its relay dropped and raises ``appliance_fault`` until it
moves again.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdm.alarms.store import AlarmStore
from pdm.config import Pipeline
from pdm.errors import ConfigError, InputError
from pdm.history import open_store, spool_path
from pdm.history.base import StoreURL
from pdm.history.records import Event, StateChange
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.service.runner import MachineRunner
from pdm.sources.base import Chunk

__all__ = ["Service", "ServiceOptions", "parse_fault"]

log = logging.getLogger("pdm.service")


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


def parse_fault(text: str) -> Any:
    """``KIND:AMP_G@ONSET_S[+RAMP_S]`` → a simulator FaultSpec (e.g. ``bpfo:0.3@120+600``)."""
    from pdm.sources.simulator import FaultSpec

    try:
        kind, rest = text.split(":", 1)
        amp, _, when = rest.partition("@")
        onset, _, ramp = (when or "0").partition("+")
        return FaultSpec(kind.strip(), float(amp), float(onset), float(ramp or 0))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"--fault {text!r}: expected KIND:AMP_G@ONSET_S[+RAMP_S] ({exc})"
        ) from exc


def _hostport(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag} {text!r}: expected HOST:PORT")
    return host or "127.0.0.1", int(port)


class Service:
    """The running appliance (see the module docstring)."""

    def __init__(self, pipelines: Sequence[Pipeline], opts: ServiceOptions) -> None:
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
                from pdm.scoring.update import verify_bundle

                verify_bundle(p.model_dir, p.model_public_keys)  # ModelError: refuse to start
        self.pipelines = list(pipelines)
        self.opts = opts
        self.stop_event = threading.Event()
        self.runners: dict[str, MachineRunner] = {}
        self._threads: list[threading.Thread] = []
        self._watchdog_faults: set[str] = set()
        self._silent: set[str] = set()
        self.started = time.monotonic()
        self.api: Any = None
        self.tcp: Any = None
        self.m: Any = None  # ServiceMetrics

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Service:
        o = self.opts
        o.data_dir.mkdir(parents=True, exist_ok=True)
        with open_store(o.store) as probe:
            try:
                probe.ping()
            except Exception as exc:
                log.warning("%s; history is spooled until it answers", exc)
        self.spool = Spool(spool_path(o.data_dir, o.store))
        self.writer = HistoryWriter(lambda: open_store(o.store), self.spool, label="appliance")
        self.alarm_store = AlarmStore(o.data_dir / "alarms.db")
        try:
            from pdm.service.metrics import ServiceMetrics

            self.m = ServiceMetrics()
        except ImportError:  # pragma: no cover — metrics module absent in a partial install
            self.m = None
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
        if o.listen:
            self._start_tcp(*_hostport(o.listen, "--listen"))
        if o.simulate:
            for p in self.pipelines:
                self._spawn(self._simulate, p, name=f"sim-{p.machine.id}")
        for path in o.replay:
            self._spawn(self._replay, self.pipelines[0], path, name="replay")
        self._spawn(self._watchdog, name="watchdog")
        self._model_seen = {m: self._model_stamp(r) for m, r in self.runners.items()}
        self._spawn(self._models, name="models")
        if o.api:
            from pdm.service.api import ControlAPI, api_token

            host, port = _hostport(o.api, "--api")
            self.api = (
                ControlAPI(self, host=host, port=port, token=api_token()).start()
                if host not in ("127.0.0.1", "::1", "localhost")
                else ControlAPI(self, host=host, port=port).start()
            )
            log.warning("control API on http://%s:%d", host, self.api.port)
        return self

    def _spawn(self, target: Any, *args: Any, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=f"pdm-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT (or the sources end); then stop cleanly."""
        got: list[str] = []

        def on_signal(signum: int, frame: Any) -> None:
            got.append(signal.Signals(signum).name)
            self.stop_event.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self.stop_event.wait(0.5):
                sources = [
                    t for t in self._threads if t.name.startswith(("pdm-sim-", "pdm-replay"))
                ]
                if sources and not any(t.is_alive() for t in sources) and not self.opts.listen:
                    break  # finite sources ended
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def stop(self) -> None:
        self.stop_event.set()
        if self.tcp is not None:
            self.tcp.stop()
        for runner in self.runners.values():
            runner.stop(timeout=10.0)
        self.writer.submit(
            Event("appliance", time.time_ns(), "service_stop", "info", "pdm-edge run stopped")
        )
        self.writer.drain(10.0)  # the store gets what it can; the rest stays in the spool
        self.writer.close(timeout=5.0)
        self.spool.close()
        self.alarm_store.close()
        if self.api is not None:
            self.api.stop()

    # -- sources ------------------------------------------------------------------------------
    def route(self, sensor_id: str, chunk: Chunk) -> None:
        """A chunk from the network: to the machine it names (machine id or a sensor id)."""
        for p in self.pipelines:
            if sensor_id == p.machine.id or sensor_id in {s.id for s in p.sensors}:
                runner = self.runners[p.machine.id]
                if tuple(chunk.channels) != tuple(p.columns):
                    raise InputError(
                        f"{sensor_id}: channels {list(chunk.channels)} are not the pipeline's "
                        f"{list(p.columns)} ({p.source_path})"
                    )
                runner.offer(chunk)
                return
        raise InputError(f"no pipeline watches {sensor_id!r} (a machine id or sensor id)")

    def _start_tcp(self, host: str, port: int) -> None:
        from pdm.sources.tcp import SilenceWatch, TcpStreamServer

        def on_chunk(sensor_id: str, chunk: Chunk) -> None:
            self.route(sensor_id, chunk)  # InputError: rejected, and no sign of life
            self._seen.seen(self._machine_of(sensor_id))

        def on_event(kind: str, detail: str) -> None:
            self.writer.submit(
                Event("appliance", time.time_ns(), f"stream_{kind}", "warning", detail)
            )

        # Expected from the start: a machine that never connects goes silent too.
        self._seen = SilenceWatch(self.opts.silence_s, expected=list(self.runners))
        self.tcp = TcpStreamServer(host, port, on_chunk=on_chunk, on_event=on_event).start()
        log.warning("stream input on %s:%d", host, self.tcp.port)
        self._spawn(self._silence, name="silence")

    def _machine_of(self, sensor_id: str) -> str:
        for p in self.pipelines:
            if sensor_id == p.machine.id or sensor_id in {s.id for s in p.sensors}:
                return p.machine.id
        return sensor_id

    def _silence(self) -> None:
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            silent = set(self._seen.silent(now)) & set(self.runners)
            for machine in silent - self._silent:
                runner = self.runners[machine]
                sensors = [s.id for s in runner.pipeline.sensors]
                reason = f"source silent for more than {self.opts.silence_s:g} s"
                self.writer.submit(*runner.engine.source_silent(sensors, reason))
            self._silent = silent

    def _simulate(self, p: Pipeline) -> None:
        import dataclasses

        from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

        base = SimSpec()
        bearing = next((p.bearing_for(c) for c in p.columns if p.bearing_for(c)), None)
        speed = p.machine.speed
        spec = dataclasses.replace(
            base,
            fs=float(p.acquisition.sample_rate_hz or base.fs),
            duration_s=self.opts.duration_s,
            rpm=speed.nominal if speed is not None else base.rpm,
            bearing=bearing or base.bearing,
            channels=tuple(p.columns),
            faults=(FaultSpec("unbalance", 0.05), *self.opts.faults),
            start_time=time.time(),
            seed=self.opts.seed,
        )
        self._paced(p, Simulator(spec, chunk_samples=max(256, int(spec.fs // 10))).chunks())

    def _replay(self, p: Pipeline, path: str) -> None:
        from pdm.processing import open_recording

        rec, _ = open_recording(path, p, start_time=time.time())
        with rec:
            self._paced(p, rec.chunks())

    def _paced(self, p: Pipeline, chunks: Any) -> None:
        runner = self.runners[p.machine.id]
        wall0 = time.monotonic()
        t_first: float | None = None
        for chunk in chunks:
            if self.stop_event.is_set():
                return
            t_first = chunk.t0 if t_first is None else t_first
            due = (chunk.t0 + chunk.n_samples / chunk.fs - t_first) / self.opts.speed
            ahead = due - (time.monotonic() - wall0)
            if ahead > 0 and self.stop_event.wait(ahead):
                return
            runner.offer(chunk)

    # -- safe model updates ---------------------------------------------------------------------
    @staticmethod
    def _model_stamp(runner: MachineRunner) -> tuple[int, ...]:
        d = runner.pipeline.model_dir
        if d is None:
            return ()
        out: list[int] = []
        for name in ("model.json", "model.onnx", "model.sig"):
            try:
                st = (d / name).stat()
                out += [st.st_mtime_ns, st.st_size, st.st_ino]
            except OSError:
                out += [0, 0, 0]
        return tuple(out)

    def _models(self) -> None:
        """A model dropped into a pipeline's model directory: checked, then swapped in.

        The check (:func:`pdm.scoring.update.check_candidate`): the card against the pipeline,
        the ONNX hash, the signature when ``[model] public_keys`` are set, and finite scores on
        the card's reference window. A model that fails is rejected (an event, one log line)
        and the old one keeps scoring; it is looked at again only when its files change.
        """
        from pdm.errors import ModelError
        from pdm.scoring.update import check_candidate

        while not self.stop_event.wait(self.opts.extra.get("model_poll_s", 1.0)):
            for machine, runner in self.runners.items():
                stamp = self._model_stamp(runner)
                if stamp == self._model_seen.get(machine) or runner.pipeline.model_dir is None:
                    continue
                self._model_seen[machine] = stamp
                if not (runner.pipeline.model_dir / "model.json").exists():
                    continue
                keys = runner.pipeline.model_public_keys or None
                try:
                    report = check_candidate(
                        runner.pipeline.model_dir, runner.pipeline, runner.fs, public_keys=keys
                    )
                except (ModelError, ConfigError, OSError) as exc:
                    log.error("%s: new model rejected, the old one keeps scoring: %s", machine, exc)
                    self.writer.submit(
                        Event(machine, time.time_ns(), "model_rejected", "warning", str(exc))
                    )
                    continue
                old = (
                    runner.scores.scorer.model.version
                    if runner.scores and runner.scores.scorer
                    else ""
                )
                if report.version == old:
                    continue
                runner.swap_model(report.model)
                msg = f"model {old or '(none)'} → {report.version} ({report.summary()})"
                log.warning("%s: %s", machine, msg)
                self.writer.submit(Event(machine, time.time_ns(), "model_swapped", "info", msg))

    # -- watchdog -------------------------------------------------------------------------------
    def _watchdog(self) -> None:
        while not self.stop_event.wait(0.25):
            now = time.monotonic()
            for machine, runner in self.runners.items():
                stalled = (
                    runner.busy or not runner.alive
                ) and now - runner.heartbeat > self.opts.stall_s
                if stalled and machine not in self._watchdog_faults:
                    self._watchdog_faults.add(machine)
                    reason = (
                        f"processing stalled for {now - runner.heartbeat:.1f} s "
                        f"(watchdog, limit {self.opts.stall_s:g} s)"
                    )
                    log.error("%s: %s: relay dropped", machine, reason)
                    if self.m is not None:
                        self.m.watchdog_stalls_total.inc()
                    # From the watchdog's thread: the runner's own thread is stuck.
                    self.writer.submit(
                        StateChange(
                            machine,
                            time.time_ns(),
                            "ok",
                            "appliance_fault",
                            reason,
                            sensor="appliance",
                        ),
                        *runner.engine.force_safe(True, reason, source="watchdog"),
                    )
                elif not stalled and machine in self._watchdog_faults:
                    self._watchdog_faults.discard(machine)
                    self.writer.submit(
                        StateChange(
                            machine,
                            time.time_ns(),
                            "appliance_fault",
                            "ok",
                            "processing moves again",
                            sensor="appliance",
                        ),
                        *runner.engine.force_safe(False, "", source="watchdog"),
                    )
            self._update_gauges()

    # -- the control API's backend --------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        from pdm.service.api import machine_status

        out = []
        for machine, r in self.runners.items():
            st = r.engine.state
            assert st is not None
            model = r.scores.scorer.model if r.scores is not None and r.scores.scorer else None
            fault = " ; ".join(
                x
                for x in (
                    "behind real time" if r.backlog_fault else "",
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
            d.update(
                learning=bool(r.scores is not None and r.scores.learning),
                windows=r.stats.windows,
                samples_dropped=r.stats.samples_dropped,
                error=r.error or None,
            )
            out.append(d)
        return out

    def health(self) -> dict[str, Any]:
        from pdm.service.api import health_report, history_health

        checks: dict[str, tuple[bool, str]] = {}
        for machine, r in self.runners.items():
            ok = r.alive and machine not in self._watchdog_faults and not r.backlog_fault
            detail = (
                "processing thread stopped"
                if not r.alive
                else "processing stalled"
                if machine in self._watchdog_faults
                else "behind real time"
                if r.backlog_fault
                else f"{r.stats.windows} windows, lag {r.stats.lag_s:.2f} s"
            )
            checks[machine] = (ok, detail)
        checks["history"] = history_health(self.writer.snapshot(), max_spool_rows=10_000_000)
        report = health_report(checks)
        report["uptime_s"] = round(time.monotonic() - self.started, 1)
        return report

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        runner = self.runners[machine]  # KeyError: unknown machine
        if not by.strip():
            raise ValueError("an acknowledgement needs a name")
        recs, msg = runner.engine.acknowledge(by, comment)
        self.writer.submit(*recs)
        return msg

    def metrics(self) -> str:
        """Prometheus text exposition of the service's metrics."""
        self._update_gauges()
        return self.m.render() if self.m is not None else ""

    def _observe(self, stage: str, seconds: float) -> None:
        m = self.m
        if m is not None:
            m.stage_seconds.labels(stage=stage).observe(seconds)

    def _update_gauges(self) -> None:
        m = self.m
        if m is None:
            return
        snap = self.writer.snapshot()
        m.history_spool_rows.set(snap.spool_rows)
        m.history_store_up.set(1 if snap.store_up else 0)
        for machine, r in self.runners.items():
            m.windows_total.labels(machine=machine).set_total(r.stats.windows)
            m.lag_seconds.labels(machine=machine).set(r.stats.lag_s)
            m.queue_depth.labels(machine=machine).set(r.queue.qsize())
