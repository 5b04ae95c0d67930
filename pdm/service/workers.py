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
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdm.config import Pipeline
from pdm.errors import ConfigError, InputError
from pdm.service.api import APIError, Readable

__all__ = ["Supervisor", "WorkerSpec", "adopt_orphan_spools", "merge_expositions", "plan_workers"]

log = logging.getLogger("pdm.service")

_RESTART_FIRST_S = 1.0
_RESTART_MAX_S = 30.0
_HANDSHAKE_S = 10.0
_MAX_HANDSHAKES = 1024
_CALL_TIMEOUT_S = 10.0


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
    from pdm.history.spool import Spool

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


@dataclass
class WorkerSpec:
    """One worker process: what it runs and how it is doing."""

    index: int
    files: list[str]
    machines: list[str]
    sensors: set[str]
    proc: subprocess.Popen[bytes] | None = None
    ctl: socket.socket | None = None
    api_port: int | None = None
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
        stop_budget_s: float = 20.0,
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
        self.stop_budget_s = stop_budget_s
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.api: Any = None
        self._listener: socket.socket | None = None
        self._handshakes = threading.BoundedSemaphore(_MAX_HANDSHAKES)
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Supervisor:
        if self.listen:
            from pdm.service.app import _hostport

            host, port = _hostport(self.listen, "--listen")
            try:
                lst = socket.create_server((host, port), reuse_port=False, backlog=128)
            except OSError as exc:
                raise InputError(f"cannot listen on {self.listen}: {exc.strerror or exc}") from exc
            lst.settimeout(0.5)
            self._listener = lst
            self.port = int(lst.getsockname()[1])
            log.warning("stream input on %s:%d", host, self.port)
        for w in self.workers:
            self._spawn(w)
        deadline = time.monotonic() + 120.0
        for w in self.workers:
            if not w.ready.wait(max(0.1, deadline - time.monotonic())) and not w.running:
                log.error("worker %d did not start", w.index)
        if self._listener is not None:
            self._thread(self._accept, "accept")
        self._thread(self._monitor, "monitor")
        if self.api_addr:
            from pdm.service.app import start_control_api

            self.api = start_control_api(self, self.api_addr)
            log.warning("control API on %s", self.api.url)
        log.warning(
            "%d worker process(es): %s",
            len(self.workers),
            "; ".join(f"{w.index}: {', '.join(w.machines)}" for w in self.workers),
        )
        return self

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
        w.api_port = None
        try:
            w.proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),))
        finally:
            child.close()
        w.ctl = parent
        w.started = time.monotonic()
        self._thread(self._control, f"ctl-{w.index}", w, parent)

    def _control(self, w: WorkerSpec, ctl: socket.socket) -> None:
        """Read the worker's messages (its API port); EOF: it ended."""
        while True:
            try:
                msg = ctl.recv(256)
            except OSError:
                return
            if not msg:
                return
            text = msg.decode(errors="replace").strip()
            if text.startswith("api "):
                w.api_port = int(text.split()[1])
                w.ready.set()

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
                elif now >= w.next_start and not self.stop_event.is_set():
                    w.next_start = 0.0
                    w.restarts += 1
                    self._spawn(w)

    def run_forever(self) -> int:
        from pdm.service.app import run_until_stopped

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
        deadline = time.monotonic() + self.stop_budget_s + 3.0
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time; killing it", w.index)
                w.proc.kill()
                w.proc.wait()
            if w.ctl is not None:
                w.ctl.close()
        if self.api is not None:
            self.api.stop()

    # -- the stream port ------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while not self.stop_event.is_set():
            try:
                conn, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stop_event.is_set():
                    return
                time.sleep(0.1)
                continue
            if not self._handshakes.acquire(blocking=False):
                conn.close()
                log.warning("stream input: too many connections opening at once; refused one")
                continue
            self._thread(self._handshake, "handshake", conn, addr)

    def _handshake(self, conn: socket.socket, addr: Any) -> None:
        from pdm.sources.tcp import _peer_name, peek_sensor_id

        peer = _peer_name(addr)
        try:
            conn.settimeout(1.0)
            deadline = time.monotonic() + _HANDSHAKE_S
            seen = -1
            sid = None
            while sid is None:
                if time.monotonic() > deadline or self.stop_event.is_set():
                    raise InputError(f"no frame header within {_HANDSHAKE_S:g} s")
                try:
                    head = conn.recv(128, socket.MSG_PEEK)
                except TimeoutError:
                    continue
                if not head:
                    return  # closed before sending anything
                sid = peek_sensor_id(head)
                if sid is None:
                    if len(head) == seen:
                        time.sleep(0.005)
                    seen = len(head)
            w = next((w for w in self.workers if sid in w.sensors), None)
            if w is None:
                raise InputError(f"no pipeline watches {sid!r} (a machine id or sensor id)")
            if not w.running or w.ctl is None or not w.ready.is_set():
                raise InputError(f"worker {w.index} of {sid!r} is not running; try again")
            conn.settimeout(None)
            socket.send_fds(w.ctl, [peer.encode()], [conn.fileno()])
        except (InputError, OSError) as exc:
            log.warning("stream input: %s: refused: %s", peer, exc)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        finally:
            conn.close()
            self._handshakes.release()

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
        if not w.running or w.api_port is None:
            raise APIError(503, f"worker {w.index} ({', '.join(w.machines)}) is not running")
        conn = http.client.HTTPConnection("127.0.0.1", w.api_port, timeout=_CALL_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        except OSError as exc:
            raise APIError(503, f"worker {w.index} did not answer: {exc}") from exc
        finally:
            conn.close()

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
                out += [
                    {
                        "id": m,
                        "name": self.names.get(m, m),
                        "state": "unknown",
                        "appliance_fault": exc.message,
                        "error": exc.message,
                        "worker": w.index,
                    }
                    for m in w.machines
                ]
        return out

    def health(self) -> dict[str, Any]:
        from pdm.service.api import health_report

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
        own = (
            "# HELP pdm_workers_up Worker processes running and answering.\n"
            "# TYPE pdm_workers_up gauge\n"
            f"pdm_workers_up {up}\n"
            "# HELP pdm_worker_restarts_total Times a worker process was started again.\n"
            "# TYPE pdm_worker_restarts_total counter\n"
            f"pdm_worker_restarts_total {sum(w.restarts for w in self.workers)}\n"
        )
        return own + (merge_expositions(parts) if parts else "")

    def promote(self, machine: str, by: str, comment: str = "") -> dict[str, Any]:
        w = self._owner(machine)
        out: dict[str, Any] = self._json(
            w, "POST", f"/models/{machine}/promote", {"by": by, "comment": comment}
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


def default_workers(pipelines: Sequence[Pipeline]) -> int:
    """``--workers auto``: one per core, no more than there are machines."""
    return max(1, min(os.cpu_count() or 1, len(pipelines)))


def check_workers(text: str, pipelines: Sequence[Pipeline]) -> int:
    if text == "auto":
        return default_workers(pipelines)
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ConfigError(f"--workers {text!r}: expected auto or a number of processes, 1 to 64")
    return min(int(text), len(pipelines))
