"""The service's inputs: live data routed to its machines.

* **Push sources** (:class:`~pdm.sources.base.PushSource`): the TCP stream input
  (``--listen``, :class:`~pdm.sources.tcp.TcpInput`, docs/stream-protocol.md) and the MQTT
  input (``--mqtt``, :class:`~pdm.sources.mqtt.MqttInput`). Each chunk goes through
  :meth:`ServiceInputs.route` to the pipeline whose machine id or one of whose sensor ids it
  names; data that does not fit that pipeline is refused, counted per machine and cause
  (``/status``, ``/health``, the metrics). A machine silent for ``--silence-s`` is a
  ``sensor_fault`` of its sensors.
* **Pull sources**, paced to real time: the seeded simulator (``--simulate``, faults on a
  schedule: ``--fault bpfo:0.3@120+600``) and a CSV recording (``--replay FILE`` × ``--speed``).

Input events (connections, refusals) go to history, at most one per kind and peer a minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from pdm.config import Pipeline
from pdm.errors import ConfigError
from pdm.history.records import Event
from pdm.history.writer import HistoryWriter
from pdm.loglimit import LogLimiter
from pdm.processing import open_recording
from pdm.service.limits import (
    InputLimits,
    fit_open_files,
    raise_open_files_limit,
    service_surface_fds,
)
from pdm.service.runner import MachineRunner, RunnerPool
from pdm.sources.base import Chunk, PushSource
from pdm.sources.codec import FrameRefused, frame_limit
from pdm.sources.mqtt import MqttInput, default_client_id, parse_mqtt_url
from pdm.sources.silence import SilenceWatch
from pdm.sources.stream_keys import StreamKeys
from pdm.sources.tcp import TcpInput, peer_host

if TYPE_CHECKING:
    from pdm.service.metrics import ServiceMetrics
    from pdm.sources.simulator import FaultSpec

__all__ = [
    "INPUT_EVENT_INTERVAL_S",
    "REFUSAL_HEALTH_S",
    "InputOptions",
    "ServiceInputs",
    "parse_fault",
    "parse_hostport",
]

log = logging.getLogger("pdm.service")

#: Input events (connections, refusals) go to history at most once a minute per kind and
#: peer, with a count of those held back: a peer that connects or sends bad frames in a loop
#: must not fill the history.
INPUT_EVENT_INTERVAL_S = 60.0
#: ``/health`` shows a machine not ok while its data was refused this recently, s.
REFUSAL_HEALTH_S = 60.0


class InputOptions(Protocol):
    """The service's options its inputs read (``ServiceOptions``; see ``pdm-edge run --help``)."""

    listen: str | None  # --listen HOST:PORT
    mqtt: str | None  # --mqtt URL
    simulate: bool
    faults: tuple[Any, ...]  # the simulator's FaultSpecs
    replay: tuple[str, ...]
    speed: float  # of a replay (and the simulator), × real time
    duration_s: float  # of the simulation
    seed: int
    silence_s: float
    #: The stream input's limits (None: sized from the pipelines).
    max_frame_bytes: int | None
    max_input_bytes: int | None
    max_connections: int | None
    max_per_peer: int | None
    #: The surfaces beside it that take connections (their descriptors are budgeted).
    api: str | None  # --api HOST:PORT (or a worker's Unix socket)
    publish: Any  # the [publish] table (OPC UA, Modbus servers), or None
    #: A worker's number, its socket to its supervisor, its siblings' machine and sensor ids.
    worker: int | None
    control_fd: int | None
    sibling_ids: frozenset[str]


def parse_fault(text: str) -> FaultSpec:
    """``KIND:AMP_G@ONSET_S[+RAMP_S]`` → a simulator FaultSpec (e.g. ``bpfo:0.3@120+600``)."""
    from pdm.sources.simulator import FaultSpec  # (see _simulate)

    try:
        kind, rest = text.split(":", 1)
        amp, _, when = rest.partition("@")
        onset, _, ramp = (when or "0").partition("+")
        return FaultSpec(kind.strip(), float(amp), float(onset), float(ramp or 0))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"--fault {text!r}: expected KIND:AMP_G@ONSET_S[+RAMP_S] ({exc})"
        ) from exc


def parse_hostport(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` from a flag's value (no host: 127.0.0.1); ConfigError naming ``flag`` else."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag} {text!r}: expected HOST:PORT")
    return host or "127.0.0.1", int(port)


def _when(t: float) -> str:
    """POSIX seconds as ISO 8601 UTC, or as seconds when no calendar date fits."""
    if math.isfinite(t) and -62_135_596_800 <= t <= 253_402_300_799:  # years 1..9999
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")
    return f"{t:.4g} s since 1970"


class ServiceInputs:
    """The inputs of one service process (see the module docstring).

    Built with the service (the stream keys are read, and checked, before anything starts);
    :meth:`start` starts them in the service's start order, :meth:`stop` stops the push
    sources by a deadline. ``runners`` is the service's machine id → runner mapping (filled
    before :meth:`start`).
    """

    def __init__(
        self,
        pipelines: Sequence[Pipeline],
        opts: InputOptions,
        runners: dict[str, MachineRunner],
        stop_event: threading.Event,
    ) -> None:
        self.pipelines = list(pipelines)
        self.opts = opts
        self.runners = runners
        self.stop_event = stop_event
        # Read (and checked: ConfigError) before anything starts.
        self.stream_keys = StreamKeys.from_env() if opts.listen else None
        #: The stream input's limits, within the open-files budget (pdm/service/limits.py).
        open_files = raise_open_files_limit()
        self.limits, self._limits_cut = (
            fit_open_files(
                InputLimits.sized(
                    self.pipelines,
                    max_connections=opts.max_connections,
                    max_per_peer=opts.max_per_peer,
                ),
                self.pipelines,
                others=service_surface_fds(opts.api, opts.publish),
                open_files=open_files,
            )
            if opts.listen
            else (InputLimits.sized(self.pipelines), None)
        )
        # Stream id (a machine id or a sensor id) → its pipeline and columns: looked up for
        # every frame (a scan over the pipelines per frame was most of the network reader's
        # time with a hundred machines). The first pipeline naming an id has it.
        self._by_stream_id: dict[str, tuple[Pipeline, tuple[str, ...]]] = {}
        for p in self.pipelines:
            for key in (p.machine.id, *(s.id for s in p.sensors)):
                self._by_stream_id.setdefault(key, (p, tuple(p.columns)))
        #: The push sources started (the TCP input, if any, first).
        self.push: list[PushSource] = []
        self.tcp: TcpInput | None = None
        self._threads: list[threading.Thread] = []  # the pull sources'
        self._silent: set[str] = set()
        self._seen: SilenceWatch | None = None
        self._pool: RunnerPool | None = None
        self._writer: HistoryWriter | None = None
        #: Data refused by :meth:`route`: machine → cause → count, and the latest refusal.
        self._refusals: dict[str, dict[str, int]] = {}
        self._last_refusal: dict[str, tuple[float, str]] = {}
        self._refusals_lock = threading.Lock()
        #: Input events recorded in history: at most one per kind and peer a minute.
        self._input_events = LogLimiter(INPUT_EVENT_INTERVAL_S)

    @property
    def writer(self) -> HistoryWriter:
        assert self._writer is not None, "ServiceInputs.start() first"
        return self._writer

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, writer: HistoryWriter, pool: RunnerPool) -> None:
        """The silence watch, the push sources, then the pull sources (each a thread).

        Raises :class:`~pdm.errors.InputError` (an address in use) or
        :class:`~pdm.errors.ConfigError` (a malformed ``--listen`` or ``--mqtt``).
        """
        o = self.opts
        self._writer, self._pool = writer, pool
        if o.listen or o.mqtt:
            # Expected from the start: a machine that never connects goes silent too.
            self._seen = SilenceWatch(o.silence_s, expected=list(self.runners))
            self._spawn(self._silence, name="silence")
        if o.listen:
            self._start_tcp(*parse_hostport(o.listen, "--listen"))
        if o.mqtt:
            self._start_mqtt(o.mqtt)
        if o.simulate:
            for p in self.pipelines:
                self._spawn(self._simulate, p, name=f"sim-{p.machine.id}", pull=True)
        for path in o.replay:
            self._spawn(self._replay, self.pipelines[0], path, name="replay", pull=True)

    def finished(self) -> bool:
        """The pull sources have all ended and there is no push source (nothing more comes)."""
        live = self.opts.listen or self.opts.mqtt
        return bool(self._threads) and not any(t.is_alive() for t in self._threads) and not live

    def stop(self, deadline: float) -> None:
        """Stop every push source by ``deadline`` (``time.monotonic()`` s); the pull sources
        stop with the service's stop event."""
        for source in self.push:
            source.stop(deadline)
            if source is self.tcp and self._pool is not None:
                # A stopped receiver's poll returns at once: left as the pool's poller, the
                # processing thread spun on it holding the interpreter lock, and the stopping
                # thread's every return from I/O waited up to the switch interval for it (each
                # machine's stop took ~130 ms; 75 of them outlasted the budget and the worker
                # was killed).
                self._pool.poller = None  # the pool waits on its ready queue instead

    def adopt(self, sock: socket.socket, peer: str, received: bytes) -> None:
        """A connection the supervisor accepted for this worker (closed without ``--listen``)."""
        if self.tcp is not None:
            self.tcp.adopt(sock, peer, received)
        else:
            sock.close()

    def _spawn(self, target: Any, *args: Any, name: str, pull: bool = False) -> None:
        t = threading.Thread(target=target, args=args, name=f"pdm-{name}", daemon=True)
        t.start()
        if pull:
            self._threads.append(t)

    # -- routing ------------------------------------------------------------------------------
    def route(self, sensor_id: str, chunk: Chunk) -> str:
        """A chunk from the network: to the machine it names (machine id or a sensor id);
        returns that machine's id.

        Checked against the pipeline first: its channels, its sample rate (within 1 ppm;
        the pipeline's exact rate is used), and a first sample within
        ``[acquisition] max_clock_behind_s`` .. ``max_clock_ahead_s`` of the appliance's
        clock. Anything else raises :class:`~pdm.sources.codec.FrameRefused` (counted per
        machine and cause, shown in ``/status`` and ``/health``): never accepted.
        """
        found = self._by_stream_id.get(sensor_id)
        if found is None:
            raise FrameRefused(
                f"no pipeline watches {sensor_id!r} (a machine id or sensor id)", "unknown_sensor"
            )
        p, columns = found
        machine = p.machine.id
        if tuple(chunk.channels) != columns:
            self._refuse(
                machine,
                "channels",
                f"{sensor_id}: channels {list(chunk.channels)} are not the pipeline's "
                f"{list(columns)} ({p.source_path})",
            )
        acq = p.acquisition
        fs = float(acq.sample_rate_hz or 0.0)
        if chunk.fs != fs:
            if not abs(chunk.fs - fs) <= 1e-6 * fs:  # (NaN fails too)
                self._refuse(
                    machine,
                    "sample_rate",
                    f"{sensor_id}: sample rate {chunk.fs:.6g} Hz is not the pipeline's "
                    f"{fs:g} Hz ({p.source_path})",
                )
            chunk = dataclasses.replace(chunk, fs=fs)
        now = time.time()
        ahead = chunk.t0 - now
        if not -acq.max_clock_behind_s <= ahead <= acq.max_clock_ahead_s:
            side = "ahead of" if ahead > 0 else "behind"
            self._refuse(
                machine,
                "clock",
                f"{sensor_id}: the first sample's time {_when(chunk.t0)} is {abs(ahead):.4g} s "
                f"{side} the appliance's clock; a live input takes "
                f"{acq.max_clock_behind_s:g} s behind to {acq.max_clock_ahead_s:g} s ahead "
                "([acquisition] max_clock_behind_s, max_clock_ahead_s)",
            )
        self.runners[machine].offer(chunk)
        return machine

    def _refuse(self, machine: str, cause: str, message: str) -> NoReturn:
        """Count a refusal of ``machine``'s data and raise it (the input logs it, limited)."""
        with self._refusals_lock:
            counts = self._refusals.setdefault(machine, {})
            counts[cause] = counts.get(cause, 0) + 1
            self._last_refusal[machine] = (time.monotonic(), message)
        raise FrameRefused(message, cause)

    def refusals_of(self, machine: str) -> tuple[dict[str, int], str | None]:
        """``machine``'s data refused since start, by cause, and the latest refusal's message."""
        with self._refusals_lock:
            last = self._last_refusal.get(machine)
            return dict(self._refusals.get(machine, {})), last[1] if last else None

    def recent_refusal(self, machine: str, now: float) -> str:
        """Why the machine's data was refused in the last :data:`REFUSAL_HEALTH_S` ('' if not)."""
        with self._refusals_lock:
            last = self._last_refusal.get(machine)
            counts = dict(self._refusals.get(machine, {}))
        if last is None or now - last[0] > REFUSAL_HEALTH_S:
            return ""
        total = ", ".join(f"{cause} {n}" for cause, n in sorted(counts.items()))
        return f"data refused ({total} since start); latest: {last[1]}"

    def observe(self, m: ServiceMetrics) -> None:
        """The refusal counters into the metrics: per machine and cause, and per input."""
        with self._refusals_lock:
            refusals = {k: dict(v) for k, v in self._refusals.items()}
        for machine, counts in refusals.items():
            for cause, n in counts.items():
                m.frames_refused_total.labels(machine=machine, cause=cause).set_total(n)
        for source in self.push:
            for cause, n in source.refused().items():
                m.input_refused_total.labels(input=source.name, cause=cause).set_total(n)

    def frame_limit(self) -> int:
        """The stream input's largest frame, bytes: ``max_frame_bytes`` if given, else sized
        from the pipelines (:func:`~pdm.sources.codec.frame_limit`, the largest of theirs)."""
        if self.opts.max_frame_bytes is not None:
            return self.opts.max_frame_bytes
        return max(
            frame_limit(
                float(p.acquisition.sample_rate_hz or 0.0),
                p.acquisition.window_samples,
                len(p.columns),
            )
            for p in self.pipelines
        )

    def _input_event(self, kind: str, detail: str) -> Event | None:
        """The history event of an input's ``kind`` event, or None while that kind from that
        peer is held back (:data:`INPUT_EVENT_INTERVAL_S`); the next one counts them."""
        first = detail.removeprefix("stream from ").split(" ", 1)[0].rstrip(":,")
        held = self._input_events.check((kind, peer_host(first)))
        if held is None:
            return None
        more = f" ({held} more like this from this peer held back)" if held else ""
        level = "info" if kind in ("stream_connected", "mqtt_connected") else "warning"
        return Event("appliance", time.time_ns(), kind, level, detail + more)

    def _machine_of(self, sensor_id: str) -> str:
        found = self._by_stream_id.get(sensor_id)
        return found[0].machine.id if found is not None else sensor_id

    def _seen_now(self, sensor_id: str) -> None:
        assert self._seen is not None
        self._seen.seen(self._machine_of(sensor_id))

    # -- push sources -------------------------------------------------------------------------
    def _start_tcp(self, host: str, port: int) -> None:
        o, pool = self.opts, self._pool
        assert pool is not None

        seen = self._seen
        assert seen is not None

        def on_chunk(sensor_id: str, chunk: Chunk) -> None:
            seen.seen(self.route(sensor_id, chunk))  # InputError: rejected, no sign of life

        # Connection events are history events, spooled (fsynced) when submitted. Those of
        # one poll go in one submit: when a switch restarts, hundreds of connections close
        # at once, and an fsync each held the processing up (measured: 400 closing at once
        # delayed the windows waiting by 50-150 ms).
        pending: list[Event] = []

        def on_event(kind: str, detail: str) -> None:
            ev = self._input_event(kind, detail)
            if ev is None:
                pass
            elif pool.on_thread:
                pending.append(ev)  # submitted when the poll returns
            else:
                self.writer.submit(ev)

        limits = self.limits
        if self._limits_cut is not None:
            log.warning("%s", self._limits_cut)
        # Read by the processing thread between its rounds (RunnerPool.drive), not by a
        # thread of its own that would contend with it for the interpreter lock. A worker
        # listens on no port: its supervisor hands it the connections.
        tcp = self.tcp = TcpInput(
            host,
            port,
            driven=True,
            listen=o.control_fd is None,
            max_connections=limits.max_connections,
            max_per_peer=limits.max_per_peer,
            first_byte_timeout_s=limits.first_frame_s,
            max_frame_bytes=self.frame_limit(),
            max_input_bytes=o.max_input_bytes,
            keys=self.stream_keys,
        )
        tcp.start(on_chunk, on_event)
        self.push.append(tcp)

        def poll(timeout: float) -> None:
            try:
                tcp.poll(timeout)
            finally:
                if pending:
                    events = pending[:]
                    pending.clear()
                    self.writer.submit(*events)

        pool.drive(poll)
        if o.worker is None:
            log.warning("stream input on %s: %s", tcp.address, limits.describe())

    def _start_mqtt(self, url: str) -> None:
        worker = self.opts.worker

        def on_chunk(sensor_id: str, chunk: Chunk) -> None:
            if sensor_id in self.opts.sibling_ids:
                return  # another worker's machine: it gets the same message
            if worker not in (None, 0) and self._machine_of(sensor_id) not in self.runners:
                return  # unknown everywhere: worker 0 reports it, once
            self.route(sensor_id, chunk)  # InputError: rejected, and no sign of life
            self._seen_now(sensor_id)

        def on_event(kind: str, detail: str) -> None:
            ev = self._input_event(kind, detail)
            if ev is not None:
                self.writer.submit(ev)

        client_id = None
        if worker is not None:  # one persistent session per worker
            client_id = default_client_id(parse_mqtt_url(url))[:-3] + f"w{worker:02d}"
        mqtt = MqttInput(url, client_id=client_id)
        mqtt.start(on_chunk, on_event)
        self.push.append(mqtt)
        if worker is None:
            log.warning("MQTT input: %r", mqtt)

    def _silence(self) -> None:
        assert self._seen is not None
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            silent = set(self._seen.silent(now)) & set(self.runners)
            with self.writer.together():  # a switch that fails silences many at once
                for machine in silent - self._silent:
                    runner = self.runners[machine]
                    sensors = [s.id for s in runner.pipeline.sensors]
                    reason = f"source silent for more than {self.opts.silence_s:g} s"
                    self.writer.submit(*runner.engine.source_silent(sensors, reason))
            self._silent = silent

    # -- pull sources -------------------------------------------------------------------------
    def _simulate(self, p: Pipeline) -> None:
        # Imported here, for --simulate only: the simulator brings scipy.signal and scipy.stats,
        # a second and tens of MiB more in every service process (each worker) that has no use
        # for them (docs/benchmarks.md, "Why the service's constants have their values").
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
        rec, _ = open_recording(path, p, start_time=time.time())
        with rec:
            self._paced(p, rec.chunks())

    def _paced(self, p: Pipeline, chunks: Iterable[Chunk]) -> None:
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
