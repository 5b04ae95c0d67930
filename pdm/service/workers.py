"""``pdm-edge run --workers N``: a process per core, and the supervisor that ties them together.

Python runs one thread of Python at a time; a service that is one process uses about
1.3 of this machine's two cores however many machines it runs (numpy and pocketfft
release the lock, the rest does not). So the machines are split across worker
processes, each a complete :class:`~pdm.service.app.Service` for its share (its own
runners, alarm engines, relays, webhook outboxes, history writer and spool), and a
supervisor process owns what the outside world sees:

* **the stream port.** The supervisor accepts each TCP connection, looks at (does not
  read) the first frame's sensor id, and hands the connection itself to the worker
  that runs that machine (``SCM_RIGHTS`` over a Unix socket): samples never pass
  through the supervisor. A connection carries one worker's machines (a DAQ per
  machine, or ``pdm-edge send`` per recording); a frame on it for a machine of
  another worker is rejected by that worker, with a one-line event naming both.
* **the control API.** ``/status`` and ``/health`` gather every worker's answer (a
  worker that is down shows as such); ``/ack``, model uploads, promotions and
  rollbacks go to the worker that runs the machine; ``/metrics`` merges the workers'
  expositions (each family declared once, a ``worker`` label on every sample) with
  the supervisor's own ``pdm_workers_up`` and ``pdm_worker_restarts_total``.
* **the workers' lives.** A worker that dies is started again (after 1 s, doubling to
  30 s while it keeps dying); on start it drives its relays from the stored alarm
  states at once, as any restart does. A worker whose supervisor dies stops itself
  (relays dropped). SIGTERM to the supervisor stops every worker within the service's
  stop budget, relays first.

Machines are assigned greedily by load (samples per second × channels), the same way
on every start, so each worker finds its own history spool (``…-wK.db``) and the
alarm states of its machines (one state database, shared: SQLite with WAL). Spools
left by a different worker count are moved into worker 0's spool before the workers
start: nothing queued for the store is lost when N changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pdm.actions.relay import relay_from_url
from pdm.appliance import appliance_id
from pdm.config import Pipeline
from pdm.core.net import ACCEPT_PAUSE_S, OUT_OF_RESOURCES
from pdm.errors import ConfigError, InputError
from pdm.history.spool import Spool
from pdm.loglimit import LogLimiter
from pdm.publish.config import build_publishers, machine_infos
from pdm.publish.feed import PREFIX, decode
from pdm.publish.hub import PublishHub
from pdm.publish.model import Snapshot, TransitionEvent
from pdm.secrets import api_token
from pdm.service.api import APIError, Readable, health_report
from pdm.service.app import run_until_stopped, start_control_api
from pdm.service.inputs import parse_hostport
from pdm.service.limits import (
    InputLimits,
    fit_open_files,
    raise_open_files_limit,
    service_surface_fds,
)
from pdm.sources.codec import PEEK_BYTES, peek_sensor_id
from pdm.sources.tcp import peer_host, peer_name

__all__ = [
    "MAX_HANDSHAKES",
    "Supervisor",
    "WorkerSpec",
    "adopt_orphan_spools",
    "merge_expositions",
    "plan_workers",
    "unix_request",
]

log = logging.getLogger("pdm.service")

_RESTART_FIRST_S = 1.0
_RESTART_MAX_S = 30.0
_CALL_TIMEOUT_S = 10.0
#: Connections waiting for their first frame's header at once, at least (more when the
#: configured sensors need more, :func:`pdm.service.limits.connection_limit`); one more
#: pushes the oldest out. How long one may wait, and how many from one address, are sized
#: from the pipelines too (:class:`pdm.service.limits.InputLimits`).
MAX_HANDSHAKES = 1024
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass
class _Handshake:
    """A connection of the public port waiting for its first frame's header."""

    peer: str
    host: str
    deadline: float  # monotonic s
    head: bytearray = field(default_factory=bytearray)


def plan_workers(pipelines: Sequence[Pipeline], n: int) -> list[list[int]]:
    """Pipeline indices per worker: heaviest first onto the least loaded worker (stable)."""

    def load(p: Pipeline) -> float:
        acq = p.acquisition
        return (
            float(acq.sample_rate_hz or 0)
            * len(p.columns)
            / max(1, acq.hop_samples)
            * (acq.window_samples)
        )

    order = sorted(range(len(pipelines)), key=lambda i: (-load(pipelines[i]), i))
    plan: list[list[int]] = [[] for _ in range(n)]
    totals = [0.0] * n
    for i in order:
        k = min(range(n), key=lambda w: (totals[w], w))
        plan[k].append(i)
        totals[k] += load(pipelines[i])
    return [sorted(p) for p in plan if p]


def adopt_orphan_spools(base: Path, keep: Sequence[Path], into: Path) -> int:
    """Move the rows of a store's spool files that no worker will open into ``into``.

    ``base``: the store's one-process spool (``spool_path`` without a worker), whose
    directory and name the workers' ``-wK`` files share; ``keep``: the spool files of the
    workers about to start (``into`` among them). Returns the rows moved; an orphan is
    deleted once empty.
    """
    names = {p.name for p in keep}
    stem = base.stem
    moved = 0
    orphans = [
        p
        for p in sorted(base.parent.glob(f"{stem}*.db"))
        if p.name not in names and re.fullmatch(rf"{re.escape(stem)}(-w\d+)?\.db", p.name)
    ]
    if not orphans:
        return 0
    with Spool(into) as target:
        for path in orphans:
            with Spool(path) as src:
                while True:
                    batch = src.peek(5000)
                    if not batch:
                        break
                    target.push([rec for _, rec, _, _ in batch if rec is not None])
                    src.delete([seq for seq, _, _, _ in batch])
                    moved += len(batch)
                left = len(src)
            if left == 0:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{path}{suffix}")
    if moved:
        log.warning("moved %d spooled row(s) of an earlier worker layout into %s", moved, into)
    return moved


_FAMILY = re.compile(r"^# (HELP|TYPE) (\S+) ?(.*)$")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?( .*)$")


def merge_expositions(parts: Sequence[tuple[str, str]]) -> str:
    """Prometheus texts of several workers as one: ``parts`` = ``(worker label, text)``.

    Each family's HELP and TYPE appear once, before all of its samples; every sample
    gets ``worker="K"`` so series of different workers never collide.
    """
    order: list[str] = []
    meta: dict[str, dict[str, str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in parts:
        family = ""
        for line in text.splitlines():
            m = _FAMILY.match(line)
            if m:
                family = m[2]
                if family not in meta:
                    order.append(family)
                    meta[family], samples[family] = {}, []
                meta[family].setdefault(m[1], m[3])
                continue
            s = _SAMPLE.match(line)
            if not s or not family:
                continue
            labels = s[2][1:-1] if s[2] else ""
            wl = f'worker="{worker}"'
            samples[family].append(f"{s[1]}{{{wl}{',' if labels else ''}{labels}}}{s[3]}")
    out = []
    for fam in order:
        if "HELP" in meta[fam]:
            out.append(f"# HELP {fam} {meta[fam]['HELP']}")
        if "TYPE" in meta[fam]:
            out.append(f"# TYPE {fam} {meta[fam]['TYPE']}")
        out += samples[fam]
    return "\n".join(out) + "\n"


def drop_relays(pipelines: Sequence[Pipeline], timeout_s: float = 3.0) -> dict[str, str]:
    """The fail-safe backstop for a worker that had to be killed at stop: drop its machines'
    relays from the supervisor, all at once (a thread each, ``timeout_s`` in all), so that no
    relay stays energised with nothing left to decide it. A worker drops its relays first
    when it stops (app.Service.stop); a killed one may not have finished, and a Modbus coil
    keeps its last state. Returns machine → what happened (``dropped`` or why not)."""
    out: dict[str, str] = {}

    def drop(p: Pipeline) -> None:
        try:
            with relay_from_url(p.alarms.relay_url) as relay:
                result = relay.set_permissive(False)
            out[p.machine.id] = "dropped" if result.ok else f"not dropped: {result.detail}"
        except Exception as exc:  # a bad URL cannot be here (checked at load); say what
            out[p.machine.id] = f"not dropped: {type(exc).__name__}: {exc}"

    threads = [
        threading.Thread(target=drop, args=(p,), name=f"pdm-drop-{p.machine.id}", daemon=True)
        for p in pipelines
    ]
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for p in pipelines:
        out.setdefault(p.machine.id, f"not dropped within {timeout_s:g} s")
    return out


@dataclass
class WorkerSpec:
    """One worker process: what it runs and how it is doing."""

    index: int
    files: list[str]
    machines: list[str]
    sensors: set[str]
    proc: subprocess.Popen[bytes] | None = None
    ctl: socket.socket | None = None
    #: The worker's control API: a Unix socket in the supervisor's private directory.
    api_path: str | None = None
    #: Why the worker could not start (its one-line error), once it said so.
    error: str = ""
    restarts: int = 0
    backoff_s: float = _RESTART_FIRST_S
    next_start: float = 0.0
    started: float = 0.0
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """The parent of the worker processes (see the module docstring).

    ``worker_argv(k)``: the ``pdm-edge run`` options every worker gets (sources, store,
    data directory, limits), to which the supervisor adds the worker's pipeline files
    and its ``--worker K --control-fd FD --parent-pid PID``.
    """

    def __init__(
        self,
        files: Sequence[str],
        pipelines: Sequence[Pipeline],
        n: int,
        *,
        common_argv: Sequence[str],
        listen: str | None,
        api: str | None,
        stop_budget_s: float = 9.0,
        stop_event: threading.Event | None = None,
        max_connections: int | None = None,
        max_per_peer: int | None = None,
        publish: Any = None,
        actions: str = "live",
    ) -> None:
        if len(files) != len(pipelines):
            raise ValueError("one pipeline per file")
        plan = plan_workers(pipelines, n)
        self.workers = [
            WorkerSpec(
                k,
                [str(files[i]) for i in idx],
                [pipelines[i].machine.id for i in idx],
                {pipelines[i].machine.id for i in idx}
                | {s.id for i in idx for s in pipelines[i].sensors},
            )
            for k, idx in enumerate(plan)
        ]
        self.names = {p.machine.id: p.machine.name for p in pipelines}
        self.common_argv = list(common_argv)
        self.listen = listen
        self.api_addr = api
        #: How long stop() waits for the workers (each stops within its own 8 s budget,
        #: app.STOP_BUDGET_S, all at once) before it kills what is left.
        self.stop_budget_s = stop_budget_s
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        #: The door's bounds, sized from every pipeline (``--max-connections``,
        #: ``--max-per-peer`` when given): connections waiting for their header at once, from
        #: one address, and how long each may wait.
        self.limits = InputLimits.sized(
            pipelines, max_connections=max_connections, max_per_peer=max_per_peer
        )
        # Within the open-files budget (pdm/service/limits.py): a connection waiting here is
        # a descriptor of this process, beside the API's and the publishers' clients.
        door, cut = fit_open_files(
            dataclasses.replace(
                self.limits, max_connections=max(MAX_HANDSHAKES, self.limits.max_connections)
            ),
            pipelines,
            others=service_surface_fds(api, publish),
            open_files=raise_open_files_limit(),
            what="stream input: the door's {n} connections waiting for a first header",
        )
        self.max_waiting = door.max_connections
        self.limits = dataclasses.replace(
            self.limits, max_per_peer=min(self.limits.max_per_peer, self.max_waiting)
        )
        #: Said once at start when the open-files limit cut the configured connections.
        self.limits_cut = cut if self.max_waiting < self.limits.max_connections else None
        self.started = time.monotonic()
        self.rundir = ""
        self._token: str | None = None
        self.api: Any = None
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        #: Connections of the stream port refused, by cause (pdm_input_refused_total).
        self.refused: dict[str, int] = {}
        self._log_limit = LogLimiter(60.0)
        #: The ``[publish]`` table: this process serves MQTT, OPC UA and Modbus for every
        #: worker's machines (one session, one endpoint, one port), fed by their states.
        self.publish = publish
        self.pipelines = list(pipelines)
        #: ``live``: the workers drive real relays, and a worker killed at stop has its
        #: relays dropped from here (:func:`drop_relays`).
        self.actions = actions
        self.hub: Any = None
        self.appliance = appliance_id()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Supervisor:
        """Start the workers and wait until each is ready; raises :class:`ConfigError` (and
        stops them all) when one cannot start: its pipeline fails to load, say. A service
        that would run some machines and silently not others must not start."""
        self._token = api_token()  # ConfigError now rather than at the first request
        if self.publish is not None:
            self._start_hub()  # its ports taken (or refused) before any worker starts
        # The workers' APIs: Unix sockets in a directory only this user can enter.
        self.rundir = tempfile.mkdtemp(prefix="pdm-edge-")
        os.chmod(self.rundir, 0o700)
        if self.listen:
            host, port = parse_hostport(self.listen, "--listen")
            try:
                # Room for every connection allowed to arrive at once (a gateway opening its
                # sensors' connections together); the kernel caps it at somaxconn.
                backlog = self.limits.max_connections
                lst = socket.create_server((host, port), reuse_port=False, backlog=backlog)
            except OSError as exc:
                raise InputError(f"cannot listen on {self.listen}: {exc.strerror or exc}") from exc
            lst.settimeout(0.5)
            self._listener = lst
            self.port = int(lst.getsockname()[1])
            log.warning("stream input on %s:%d: %s", host, self.port, self.limits.describe())
            if self.limits_cut is not None:
                log.warning("%s", self.limits_cut)
        for w in self.workers:
            self._spawn(w)
        deadline = time.monotonic() + 120.0
        failed = None
        for w in self.workers:
            while not w.ready.wait(0.1):
                if not w.running or w.error or time.monotonic() > deadline:
                    break
                if self.stop_event.is_set():  # SIGTERM while starting: run_forever stops
                    return self
            if not w.ready.is_set() or w.error:
                failed = w
                break
        if failed is not None:
            code = failed.proc.poll() if failed.proc is not None else None
            why = failed.error or (
                f"worker {failed.index} ({', '.join(failed.machines)}) "
                + (f"ended with status {code}" if code is not None else "did not start in 120 s")
                + " before it was ready"
            )
            self.stop()
            raise ConfigError(why)
        if self._listener is not None:
            self._thread(self._accept, "accept")
        self._thread(self._monitor, "monitor")
        if self.api_addr:
            self.api = start_control_api(self, self.api_addr)
            log.warning("control API on %s", self.api.url)
        log.warning(
            "%d worker process(es): %s",
            len(self.workers),
            "; ".join(f"{w.index}: {', '.join(w.machines)}" for w in self.workers),
        )
        return self

    def _start_hub(self) -> None:
        pubs = build_publishers(
            self.publish,
            appliance=self.appliance,
            data_dir=Path(self._data_dir()),
            acknowledge=self.acknowledge,
        )
        self.hub = PublishHub(pubs, machine_infos(self.pipelines)).start()

    def _data_dir(self) -> str:
        argv = self.common_argv
        return argv[argv.index("--data-dir") + 1] if "--data-dir" in argv else "var"

    def _published(self, w: WorkerSpec, msg: bytes) -> None:
        """A worker's states and transitions, into the hub (only its own machines)."""
        if self.hub is None:
            return
        try:
            pairs, states = decode(msg)
            transitions = [
                (Snapshot.from_status(self.appliance, d), TransitionEvent.from_payload(e))
                for d, e in pairs
            ]
            snaps = [Snapshot.from_status(self.appliance, d) for d in states]
        except ValueError as exc:
            self._refuse("publish", f"worker {w.index}: a bad publish message: {exc}")
            return
        own = set(w.machines)
        self.hub.offer(
            [(s, e) for s, e in transitions if s.machine in own and e.machine in own],
            [s for s in snaps if s.machine in own],
        )

    def _down_entries(self, w: WorkerSpec, message: str) -> list[dict[str, Any]]:
        """``/status`` of the machines of a worker that does not answer: state unknown."""
        return [
            {
                "id": m,
                "name": self.names.get(m, m),
                "state": "unknown",
                "appliance_fault": message,
                "error": message,
                "worker": w.index,
            }
            for m in w.machines
        ]

    def _thread(self, target: Any, name: str, *args: Any) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=f"pdm-sup-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _spawn(self, w: WorkerSpec) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child.set_inheritable(True)
        siblings = sorted(set().union(*(o.sensors for o in self.workers if o is not w)))
        cmd = [
            sys.executable, "-m", "pdm.cli", "run", *w.files, *self.common_argv,
            "--worker", str(w.index), "--control-fd", str(child.fileno()),
            "--parent-pid", str(os.getpid()), "--sibling-ids", ",".join(siblings),
        ]  # fmt: skip
        w.ready.clear()
        w.error = ""
        w.api_path = os.path.join(self.rundir, f"w{w.index}.sock")
        cmd += ["--api", f"unix:{w.api_path}"]
        try:
            w.proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),))
        finally:
            child.close()
        w.ctl = parent
        w.started = time.monotonic()
        self._thread(self._control, f"ctl-{w.index}", w, parent)

    def _control(self, w: WorkerSpec, ctl: socket.socket) -> None:
        """Read the worker's messages (ready, an error, its published states); EOF: it ended."""
        while True:
            try:
                msg = ctl.recv(65536)
            except OSError:
                return
            if not msg:
                return
            if msg.startswith(PREFIX):
                self._published(w, msg)
                continue
            text = msg.decode(errors="replace").strip()
            if text == "ready":
                w.ready.set()
            elif text.startswith("error "):
                w.error = text[len("error ") :].splitlines()[0][:1000]

    def _monitor(self) -> None:
        while not self.stop_event.wait(0.25):
            now = time.monotonic()
            for w in self.workers:
                if w.proc is None or w.running:
                    if w.running and now - w.started > 60.0:
                        w.backoff_s = _RESTART_FIRST_S  # it lived: the next death restarts fast
                    continue
                if w.proc.returncode == 0:
                    continue  # it finished (a finite source ended): nothing to restart
                if w.next_start == 0.0:
                    code = w.proc.returncode
                    log.error(
                        "worker %d (%s) ended with status %s; starting it again in %.0f s",
                        w.index,
                        ", ".join(w.machines),
                        code,
                        w.backoff_s,
                    )
                    w.next_start = now + w.backoff_s
                    w.backoff_s = min(_RESTART_MAX_S, w.backoff_s * 2)
                    if w.ctl is not None:
                        w.ctl.close()
                    if self.hub is not None:  # published as /status shows it: unknown
                        why = f"worker {w.index} ({', '.join(w.machines)}) is not running"
                        down = self._down_entries(w, why)
                        self.hub.offer(
                            states=[Snapshot.from_status(self.appliance, d) for d in down]
                        )
                elif now >= w.next_start and not self.stop_event.is_set():
                    w.next_start = 0.0
                    w.restarts += 1
                    self._spawn(w)

    def run_forever(self) -> int:
        def finished() -> bool:  # every worker ended by itself (finite sources)
            return all(w.proc is not None and w.proc.poll() == 0 for w in self.workers)

        return run_until_stopped(self.stop_event, finished, self.stop)

    def stop(self) -> None:
        """SIGTERM every worker (each drops its relays first), wait for them, then stop."""
        self.stop_event.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for w in self.workers:
            if w.running:
                assert w.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_budget_s
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time; killing it", w.index)
                w.proc.kill()
                w.proc.wait()
                if self.actions == "live":  # it may not have dropped them all: fail safe
                    mine = [p for p in self.pipelines if p.machine.id in w.machines]
                    for machine, outcome in drop_relays(mine).items():
                        log.error("worker %d killed: %s relay %s", w.index, machine, outcome)
            if w.ctl is not None:
                w.ctl.close()
        if self.api is not None:
            self.api.stop()
        if self.hub is not None:
            self.hub.close()
        if self.rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)

    # -- the stream port ------------------------------------------------------------------------
    def _accept(self) -> None:
        """Accept on the public port, read each connection's first frame header (at most
        :data:`~pdm.sources.tcp.PEEK_BYTES`) and hand the connection, with those bytes, to
        the worker that runs the machine it names — all on this one thread.

        Bounded (:attr:`limits`, sized from the pipelines): a connection must name its
        sensor within ``first_frame_s`` of connecting; at most :attr:`max_waiting` wait at
        once (a new one past that pushes the oldest waiting out: a sender that writes its
        header at once is handed over within milliseconds, so idle connections cannot hold
        the door shut) and ``max_per_peer`` from one address. Refusals are counted by
        cause and logged at most once a minute per cause."""

        assert self._listener is not None
        sel = selectors.DefaultSelector()
        self._listener.setblocking(False)
        sel.register(self._listener, selectors.EVENT_READ, None)
        waiting: dict[socket.socket, _Handshake] = {}  # in arrival order
        per_host: dict[str, int] = {}
        wait_s, max_waiting, per_peer = (
            self.limits.first_frame_s,
            self.max_waiting,
            self.limits.max_per_peer,
        )

        def drop(conn: socket.socket, cause: str = "", why: str = "") -> None:
            hs = waiting.pop(conn, None)
            if hs is not None:
                sel.unregister(conn)
                left = per_host.get(hs.host, 1) - 1
                if left > 0:
                    per_host[hs.host] = left
                else:
                    per_host.pop(hs.host, None)
            if cause:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                self._refuse(cause, f"{hs.peer if hs else '?'}: refused: {why}")
            conn.close()

        paused_until = 0.0  # accepting failed (out of descriptors): resume then
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if paused_until and now >= paused_until:
                    paused_until = 0.0
                    sel.register(self._listener, selectors.EVENT_READ, None)
                for conn, old in list(waiting.items()):
                    if now >= old.deadline:
                        drop(conn, "no_header", f"no frame header within {wait_s:g} s")
                    else:
                        break  # in arrival order: the rest are younger
                for key, _ in sel.select(0.25):
                    if key.data is None:
                        while True:
                            try:
                                conn, addr = self._listener.accept()
                            except (BlockingIOError, InterruptedError):
                                break
                            except OSError as exc:  # EMFILE: serve what we have
                                if not self.stop_event.is_set():
                                    why = f"accept failed: {exc.strerror or exc}"
                                    self._refuse("accept", why)
                                if exc.errno in OUT_OF_RESOURCES:
                                    # Still readable: selected again at once, it spun a core.
                                    sel.unregister(self._listener)
                                    paused_until = time.monotonic() + ACCEPT_PAUSE_S
                                break
                            peer = peer_name(addr)
                            host = peer_host(peer)
                            if len(waiting) >= max_waiting:
                                oldest = next(iter(waiting))
                                drop(oldest, "too_many", f"{max_waiting} connections waiting")
                            if per_host.get(host, 0) >= per_peer:
                                # The oldest waiting from that address goes, as for the
                                # total: refusing the newcomer let idle connections from a
                                # gateway's address keep its sensors out for good.
                                oldest = next(c for c, h in waiting.items() if h.host == host)
                                why = f"{per_peer} connections from {host} waiting"
                                drop(oldest, "per_peer", why)
                            waiting[conn] = _Handshake(peer, host, time.monotonic() + wait_s)
                            per_host[host] = per_host.get(host, 0) + 1
                            sel.register(conn, selectors.EVENT_READ, conn)
                            conn.setblocking(False)
                        continue
                    conn = key.data
                    hs = waiting.get(conn)
                    if hs is None:
                        continue
                    try:
                        data = conn.recv(PEEK_BYTES - len(hs.head))
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        drop(conn)
                        continue
                    if not data:
                        drop(conn)  # closed before naming a sensor
                        continue
                    hs.head += data
                    try:
                        sid = peek_sensor_id(bytes(hs.head))
                        if sid is None:
                            continue
                        w = next((w for w in self.workers if sid in w.sensors), None)
                        if w is None:
                            raise InputError(f"no pipeline watches {sid!r}")
                        if not w.running or w.ctl is None or not w.ready.is_set():
                            raise InputError(f"worker {w.index} of {sid!r} is not running")
                        msg = hs.peer.encode() + b"\n" + bytes(hs.head)
                        socket.send_fds(w.ctl, [msg], [conn.fileno()], socket.MSG_DONTWAIT)
                    except InputError as exc:
                        drop(conn, "rejected", str(exc))
                    except OSError as exc:  # the worker's socket full or gone
                        drop(conn, "worker", f"cannot hand over: {exc.strerror or exc}")
                    else:
                        drop(conn)  # the worker has its own descriptor now
        finally:
            for conn in list(waiting):
                drop(conn)
            sel.close()

    def _refuse(self, cause: str, detail: str) -> None:
        """Count a refusal of the stream port; log it at most once a minute per cause."""
        self.refused[cause] = self.refused.get(cause, 0) + 1
        held = self._log_limit.check(cause)
        if held is not None:
            more = f" ({held} more like this in the last minute)" if held else ""
            log.warning("stream input: %s%s", detail, more)

    # -- the control API's backend --------------------------------------------------------------
    def _owner(self, machine: str) -> WorkerSpec:
        for w in self.workers:
            if machine in w.machines:
                return w
        raise KeyError(machine)

    def _call(
        self,
        w: WorkerSpec,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        if not w.running or w.api_path is None or not w.ready.is_set():
            raise APIError(503, f"worker {w.index} ({', '.join(w.machines)}) is not running")
        headers = dict(headers or {})
        if self._token is not None:  # the workers' APIs ask for it too
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            return unix_request(w.api_path, method, path, body, headers)
        except (httpx.TransportError, OSError) as exc:  # OSError: reading an upload's body
            raise APIError(503, f"worker {w.index} did not answer: {exc}") from exc

    def _json(self, w: WorkerSpec, method: str, path: str, doc: Any = None) -> Any:
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, raw = self._call(w, method, path, body, headers)
        try:
            out = json.loads(raw)
        except ValueError:
            out = {"error": raw.decode(errors="replace")[:200]}
        if status >= 400 and not path.startswith("/health"):
            message = out.get("error", f"HTTP {status}") if isinstance(out, dict) else str(out)
            if status == 404 and "unknown machine" in message:
                raise KeyError(message)
            if status == 400:
                raise ValueError(message)
            raise APIError(status, message)
        return out

    def status(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for w in self.workers:
            try:
                out += self._json(w, "GET", "/status")
            except APIError as exc:
                out += self._down_entries(w, exc.message)
        return out

    def health(self) -> dict[str, Any]:
        checks: dict[str, tuple[bool, str]] = {}
        for w in self.workers:
            try:
                rep = self._json(w, "GET", "/health")
                for name, c in rep.get("checks", {}).items():
                    key = name if name in w.machines else f"{name} (worker {w.index})"
                    checks[key] = (bool(c.get("ok")), str(c.get("detail", "")))
                checks[f"worker {w.index}"] = (
                    True,
                    f"pid {w.proc.pid if w.proc else '-'}, {w.restarts} restart(s)",
                )
            except APIError as exc:
                checks[f"worker {w.index}"] = (False, exc.message)
        report = health_report(checks)
        report["uptime_s"] = round(time.monotonic() - self.started, 1)
        report["workers"] = len(self.workers)
        return report

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        w = self._owner(machine)
        return str(
            self._json(w, "POST", f"/ack/{machine}", {"by": by, "comment": comment})["message"]
        )

    def metrics(self) -> str:
        parts = []
        for w in self.workers:
            try:
                status, raw = self._call(w, "GET", "/metrics")
                if status == 200:
                    parts.append((str(w.index), raw.decode()))
            except APIError:
                pass
        up = sum(1 for w in self.workers if w.running and w.ready.is_set())
        app = 'appliance="' + self.appliance + '"'  # an id of [A-Za-z0-9_.-]: no escaping
        own = (
            "# HELP pdm_workers_up Worker processes running and answering.\n"
            "# TYPE pdm_workers_up gauge\n"
            f"pdm_workers_up{{{app}}} {up}\n"
            "# HELP pdm_worker_restarts_total Times a worker process was started again.\n"
            "# TYPE pdm_worker_restarts_total counter\n"
            f"pdm_worker_restarts_total{{{app}}} {sum(w.restarts for w in self.workers)}\n"
            "# HELP pdm_door_refused_total Connections the supervisor's stream port refused "
            "before handing them to a worker, by cause.\n"
            "# TYPE pdm_door_refused_total counter\n"
            + "".join(
                f'pdm_door_refused_total{{{app},cause="{cause}"}} {n}\n'
                for cause, n in sorted(self.refused.items())
            )
        )
        return own + (merge_expositions(parts) if parts else "")

    def promote(
        self, machine: str, by: str, comment: str = "", force: bool = False
    ) -> dict[str, Any]:
        w = self._owner(machine)
        out: dict[str, Any] = self._json(
            w,
            "POST",
            f"/models/{machine}/promote",
            {"by": by, "comment": comment, **({"force": True} if force else {})},
        )
        return out

    def rollback(self, machine: str, by: str, comment: str = "") -> dict[str, Any]:
        w = self._owner(machine)
        out: dict[str, Any] = self._json(
            w, "POST", f"/models/{machine}/rollback", {"by": by, "comment": comment}
        )
        return out

    def teach_in(self, machine: str, decision: str, by: str, comment: str = "") -> dict[str, Any]:
        w = self._owner(machine)
        out: dict[str, Any] = self._json(
            w, "POST", f"/models/{machine}/teach-in-{decision}", {"by": by, "comment": comment}
        )
        return out

    def upload_candidate(self, machine: str, body: Readable) -> dict[str, Any]:
        w = self._owner(machine)
        length = getattr(body, "left", None)
        data: Any = body if isinstance(length, int) else body.read()
        size = length if isinstance(length, int) else len(data)
        status, raw = self._call(
            w,
            "PUT",
            f"/models/{machine}/candidate",
            data,
            {"Content-Type": "application/gzip", "Content-Length": str(size)},
        )
        out = json.loads(raw)
        if status >= 400:
            if status == 400:
                raise ValueError(out.get("error", "refused"))
            raise APIError(status, out.get("error", f"HTTP {status}"))
        return dict(out)


def unix_request(
    socket_path: str,
    method: str,
    path: str,
    body: bytes | Readable | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = _CALL_TIMEOUT_S,
) -> tuple[int, bytes]:
    """One request to an HTTP server on a Unix socket (a worker's control API): its status
    and body. A ``body`` stream is sent as it is read, with the ``Content-Length`` the caller
    gives (no chunked encoding: the API refuses it). Raises ``httpx.TransportError`` and
    what reading ``body`` raises."""
    content: bytes | Iterator[bytes] | None = None
    if isinstance(body, bytes) or body is None:
        content = body
    else:
        stream = body
        content = iter(lambda: stream.read(1 << 16), b"")
    # Plain HTTP on a Unix socket: no TLS, so no certificates to load (verify=True reads
    # the CA bundle, ~0.3 s a client).
    transport = httpx.HTTPTransport(uds=socket_path, verify=False)
    with httpx.Client(transport=transport, timeout=timeout_s) as client:
        r = client.request(
            method, f"http://localhost{path}", content=content, headers=dict(headers or {})
        )
        return r.status_code, r.content


def default_workers(pipelines: Sequence[Pipeline]) -> int:
    """``--workers auto``: one per core, no more than there are machines."""
    return max(1, min(os.cpu_count() or 1, len(pipelines)))


def check_workers(text: str, pipelines: Sequence[Pipeline]) -> int:
    if text == "auto":
        return default_workers(pipelines)
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ConfigError(f"--workers {text!r}: expected auto or a number of processes, 1 to 64")
    return min(int(text), len(pipelines))
