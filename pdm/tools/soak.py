"""``pdm-edge soak``: the service under load for a long time, faults on a schedule, and an
account of everything lost at the end.

What runs (all on 127.0.0.1, in a work directory of its own):

* the real service, ``pdm-edge run`` as a child process (its own process group), with one
  pipeline per machine (the demo pump's DSP and model, ``models/demo-pump``), a TCP stream
  input, the control API, an SQLite history store, a Modbus relay per machine (a coil
  each) and a signed webhook;
* simulated sensors: a thread per machine sending 0.1 s float32 frames of simulated
  vibration (:mod:`pdm.sources.simulator`) in real time, as a DAQ would, over its own TCP
  connection, reconnecting when the service is away;
* the peers the service acts on: a pymodbus server (:class:`pdm.tools.servers.ModbusServer`)
  and a webhook receiver process (:func:`pdm.tools.servers.webhook_main`).

The schedule repeats every ``--cycle`` (300 s), each fault at a fixed share of it:

=============== ======================================================================
history down    the SQLite store is held by another connection's exclusive lock for
                10 % of the cycle (the writer meets "database is locked", spools, and
                delivers the spool when the lock goes)
receiver down   the webhook receiver is stopped for 13 % of the cycle
machine fault   machine 1 streams an outer-race fault (bpfo 0.5 g) for 7 % of the cycle
                while the receiver is down; the latch is acknowledged through the API
relay down      the Modbus server is stopped for 10 % of the cycle (its coils keep their
                state: the module is unreachable, not powered off); machine 2 faults
                meanwhile, so the relay write fails and is retried
sensor silent   the last machine's sensor sends nothing for 5 % of the cycle
bad frames      garbage, a bad CRC, an impossible length, an unknown sensor; with
                ``--bad-frames all`` also a t0 of 2**63-1 and a wrong sample rate for a
                real sensor
SIGTERM         the service is stopped and started again
kill -9         the service's whole process group is killed and started again
=============== ======================================================================

Before each planned stop the sensors pause until the service has read and decided all
they sent (its windows counter stands still) and the history writer has flushed; the
counter is then the number of windows that run analysed. At the end everything is brought
up, latches are acknowledged, the webhook outboxes drain, the service is stopped with
SIGTERM, and the account is taken:

* **scores**: windows analysed (the sum of the runs' counters) against score rows in the
  store, and score rows stored twice;
* **webhooks**: every state change in history against the receiver's valid deliveries
  (event ids); a delivery without a state change in history counts as lost history;
* **relays**: each machine's coil against its state just before the final stop;
* **spool**: rows left in the history spools, rows the store rejected, rows dropped by the
  spool's overflow policy, and webhook events left in or rejected from the outboxes;
* **backlog**: samples the service discarded for being behind real time.

The sum is ``lost``; the summary is one JSON object on stdout and the exit status is 1 when
``lost`` is not 0 (or the service wrote a traceback, or did not stop cleanly), 0 otherwise.
Progress goes to stderr, one line per scheduled event.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pdm.errors import ConfigError, PdmError

__all__ = ["DESCRIPTION", "SoakOptions", "add_arguments", "parse_duration", "run", "run_soak"]

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "models" / "demo-pump"
DEMO_PIPELINE = REPO / "pipelines" / "demo.toml"
FS = 25600.0
FRAME_S = 0.1
FRAME_SAMPLES = round(FS * FRAME_S)
CHANNELS = ("x_g", "y_g")
#: The service's silence limit in the soak (s): a silent sensor becomes a sensor fault.
SILENCE_S = 3.0
#: How long the service may take to answer after a start, s (a few imports, the models).
START_TIMEOUT_S = 120.0
#: How long a SIGTERM may take before the soak calls it a failure (and kills), s.
STOP_TIMEOUT_S = 60.0
#: The service's history writer flushes every 0.5 s; a planned stop waits this long after
#: the last window so that no analysed row is only in memory.
FLUSH_WAIT_S = 2.0


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h``, ``1h30m`` → seconds; :class:`ConfigError` otherwise."""
    m = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not m or not any(m.groups()):
        raise ConfigError(f"--duration {text!r}: expected e.g. 90s, 10m, 1h or 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total = 3600 * h + 60 * mi + s
    if not 0 < total < 30 * 86400:
        raise ConfigError(f"--duration {text!r}: must be more than 0 and under 30 days")
    return total


@dataclass(frozen=True)
class SoakOptions:
    duration_s: float = 3600.0
    machines: int = 4
    cycle_s: float = 300.0
    workers: str = "auto"
    bad_frames: str = "all"  # "all", "protocol" or "none"
    work_dir: Path | None = None
    keep: bool = False
    model: Path = DEMO_MODEL
    seed: int = 7
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))


# --------------------------------------------------------------------------- small helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """One request to the control API; the JSON answer, or None when it cannot be reached."""
    import httpx

    try:
        r = httpx.request(method, url, json=body, timeout=timeout)
    except httpx.HTTPError:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM when the soak dies (Linux), so nothing is left."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pipeline(i: int, model: Path, relay_port: int, hook_url: str) -> str:
    """Machine i: the demo pump's pipeline (pipelines/demo.toml: its model's DSP) under its
    own ids, the model by absolute path, a coil of the relay, the webhook."""
    text = DEMO_PIPELINE.read_text()
    for old, new in (
        ('id = "demo-pump"', f'id = "soak-m{i:02d}"'),
        ('id = "motor_de"', f'id = "soak-m{i:02d}-de"'),
        ('path = "../models/demo-pump"', f"path = {json.dumps(str(model))}"),
    ):
        if old not in text:
            raise ConfigError(f"{DEMO_PIPELINE}: expected {old!r} (the soak builds on it)")
        text = text.replace(old, new, 1)
    relay = f'relay = "modbus://127.0.0.1:{relay_port}?coil={i}&timeout=0.4&retries=1"\n'
    # Into the demo's own [alarms] table when it has one (a second header is a TOML error).
    if "\n[alarms]\n" in text:
        text = text.replace("\n[alarms]\n", "\n[alarms]\n" + relay, 1)
    else:
        text += "\n[alarms]\n" + relay
    return text + f'\n[[alarms.webhooks]]\nurl = "{hook_url}"\n'


def _signal_data(seconds: float, seed: int, fault: bool) -> np.ndarray:
    """(samples, 2) float32 simulated vibration: healthy (slight unbalance) or an outer-race
    fault of 0.5 g; the simulator's, not a recording."""
    import dataclasses

    from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

    faults = [FaultSpec("unbalance", 0.05)]
    if fault:
        faults.append(FaultSpec("bpfo", 0.5))
    spec = dataclasses.replace(
        SimSpec(),
        fs=FS,
        duration_s=seconds,
        rpm=1480.0,
        channels=CHANNELS,
        faults=tuple(faults),
        start_time=0.0,
        seed=seed,
    )
    data = np.concatenate([c.data for c in Simulator(spec).chunks()])
    return np.ascontiguousarray(data, dtype=np.float32)


# --------------------------------------------------------------------------- the sensors


class Sensor(threading.Thread):
    """One machine's DAQ: a frame of 0.1 s every 0.1 s over its TCP connection; its clock
    runs on whatever happens (frames due while it cannot send are lost, as a DAQ's are)."""

    def __init__(self, sensor_id: str, port: int, healthy: np.ndarray, faulty: np.ndarray) -> None:
        super().__init__(name=f"soak-{sensor_id}", daemon=True)
        self.sensor_id = sensor_id
        self.port = port
        self.blocks = [
            [d[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] for k in range(len(d) // FRAME_SAMPLES)]
            for d in (healthy, faulty)
        ]
        self.t0_ns = 0  # the sensor clock's start (set when it starts: real time)
        self.fault = False
        self.silent_until = 0.0
        self.paused = threading.Event()
        self.stopping = threading.Event()
        self.frames_sent = 0
        self.frames_unsent = 0  # due while the service was away (or the sensor silent)
        self.reconnects = 0
        self.frame = 0  # the next frame's number on the sensor's clock
        self._sock: socket.socket | None = None

    def run(self) -> None:
        from pdm.sources.codec import encode_frame

        wall0 = time.monotonic()
        self.t0_ns = time.time_ns()
        while not self.stopping.is_set():
            due = wall0 + (self.frame + 1) * FRAME_S  # when its last sample is acquired
            if (wait := due - time.monotonic()) > 0:
                self.stopping.wait(wait)
                continue
            k = self.frame
            self.frame += 1
            # Paused (the soak settles the service's counters before a stop) or silent:
            # the DAQ's clock goes on, its frames are lost, as when a cable is pulled.
            if self.paused.is_set() or time.monotonic() < self.silent_until:
                self.frames_unsent += 1
                continue
            kind = 1 if self.fault else 0
            block = self.blocks[kind][k % len(self.blocks[kind])]
            frame = encode_frame(
                self.sensor_id,
                block,
                fs=FS,
                t0_ns=self.t0_ns + round(k * FRAME_S * 1e9),
                channels=CHANNELS,
                dtype="float32",
            )
            if self._send(frame):
                self.frames_sent += 1
            else:
                self.frames_unsent += 1
        self._close()

    def _send(self, frame: bytes) -> bool:
        for _ in range(2):
            if self._sock is None:
                try:
                    self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
                    self._sock.settimeout(5.0)
                    self.reconnects += 1
                except OSError:
                    return False
            try:
                self._sock.sendall(frame)
                return True
            except OSError:
                self._close()
        return False

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _bad_frames(port: int, real_sensor: str, kinds: str) -> list[str]:
    """Send hostile frames, each on a connection of its own; returns what was sent."""
    from pdm.sources.codec import encode_frame

    block = np.zeros((256, 2), dtype=np.float32)
    t_now = time.time_ns()
    good = encode_frame("soak-intruder", block, fs=FS, t0_ns=t_now, channels=CHANNELS)
    sends: list[tuple[str, bytes]] = [
        ("garbage", os.urandom(4096)),
        ("bad CRC", good[:-4] + bytes(b ^ 0xFF for b in good[-4:])),
        # a header claiming 2**32-1 samples per channel, then nothing
        ("impossible length", good[:24] + b"\xff\xff\xff\xff" + good[28:64]),
        ("unknown sensor", good),
    ]
    if kinds == "all":
        sends += [
            (
                "t0 = 2**63-1",
                encode_frame(real_sensor, block, fs=FS, t0_ns=2**63 - 1, channels=CHANNELS),
            ),
            (
                "wrong sample rate",
                encode_frame(real_sensor, block, fs=12000.0, t0_ns=t_now, channels=CHANNELS),
            ),
        ]
    done = []
    for what, data in sends:
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(2.0)
                with contextlib.suppress(OSError):
                    s.recv(1)  # until the service closes it (or 2 s)
            done.append(what)
    return done


# --------------------------------------------------------------------------- the service


class ServiceProcess:
    """``pdm-edge run`` of the soak's pipelines; stopped and started again on schedule."""

    def __init__(
        self, work: Path, pipelines: list[Path], workers: str, log: Callable[[str], None]
    ) -> None:
        self.work = work
        self.pipelines = pipelines
        self.workers = workers
        self.stream_port = _free_port()
        self.api_port = _free_port()
        self.data = work / "data"
        self.db = work / "history.db"
        self.log_path = work / "service.log"
        self.say = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs: list[dict[str, Any]] = []  # per run: windows analysed, how it ended

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, env: dict[str, str]) -> None:
        cmd = [
            sys.executable, "-m", "pdm.cli", "run", *map(str, self.pipelines),
            "--listen", f"127.0.0.1:{self.stream_port}", "--api", f"127.0.0.1:{self.api_port}",
            "--store", f"sqlite:///{self.db}", "--data-dir", str(self.data),
            "--silence-s", str(SILENCE_S), "--workers", self.workers,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.work, start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise PdmError(
                    f"the service exited with {self.proc.returncode} while starting; see {self.log_path}"
                )
            status = _http("GET", self.api + "/status", timeout=2.0)
            if isinstance(status, list) and len(status) == len(self.pipelines):
                self.runs.append({"windows": {}, "samples_dropped": 0, "ended": None})
                return
            if time.monotonic() > deadline:
                raise PdmError(
                    f"the service did not answer within {START_TIMEOUT_S:g} s; see {self.log_path}"
                )
            time.sleep(0.2)

    def status(self) -> list[dict[str, Any]]:
        got = _http("GET", self.api + "/status")
        return got if isinstance(got, list) else []

    def settle(self, timeout_s: float = 30.0) -> dict[str, int]:
        """Wait until the windows counters stand still (nothing more to analyse); record and
        return them. The sensors must be paused."""
        last: dict[str, int] | None = None
        deadline = time.monotonic() + timeout_s
        while True:
            time.sleep(0.5)
            st = self.status()
            now = {str(m["id"]): int(m.get("windows") or 0) for m in st if "id" in m}
            if now and now == last:
                break
            last = now
            if time.monotonic() > deadline:
                break
        run = self.runs[-1]
        run["windows"] = now
        run["samples_dropped"] = sum(int(m.get("samples_dropped") or 0) for m in st)
        return now

    def stop(self, how: str) -> dict[str, Any]:
        """Stop with ``SIGTERM`` (the supervisor) or ``SIGKILL`` (the whole process group)."""
        assert self.proc is not None
        t = time.monotonic()
        if how == "SIGKILL":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
            how += " (timed out: killed)"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no worker left behind
        ended = {"how": how, "exit": code, "stop_s": round(time.monotonic() - t, 2)}
        self.runs[-1]["ended"] = ended
        self.proc = None
        return ended


# --------------------------------------------------------------------------- the faults


class StoreLock:
    """History "down": another connection holds the write lock of the SQLite file and of
    every worker's file beside it (pdm/history/sqlite_files.py)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._cons: list[sqlite3.Connection] = []

    def hold(self) -> None:
        from pdm.history.sqlite_files import history_files

        for path in history_files(self.db):
            con = sqlite3.connect(path, timeout=30, isolation_level=None)
            con.execute("BEGIN EXCLUSIVE")
            self._cons.append(con)

    def release(self) -> None:
        for con in self._cons:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            con.close()
        self._cons = []


class Receiver:
    """The webhook receiver process (:func:`pdm.tools.servers.webhook_main`), same port
    across restarts, its log kept."""

    def __init__(self, work: Path, secret: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.log = work / "received.jsonl"
        self.secret = secret
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pdm.tools.servers", "webhook", str(self.port), str(self.log)],
            env={**os.environ, "PDM_WEBHOOK_SECRET": self.secret},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.1)
        raise PdmError("the webhook receiver did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def received(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@dataclass
class Step:
    at_s: float
    what: str
    machine: int = 0
    seconds: float = 0.0


def schedule(duration_s: float, cycle_s: float, machines: int) -> list[Step]:
    """The faults of every cycle that fits in ``duration_s`` (the end keeps a tail of
    quiet running), in time order."""
    last = machines - 1
    one = min(1, last)
    two = min(2, last)
    plan = [
        (0.05, "store_down", 0, 0.10),
        (0.20, "receiver_down", 0, 0.13),
        (0.22, "fault", one, 0.07),
        (0.36, "ack", one, 0.0),
        (0.40, "relay_down", 0, 0.10),
        (0.42, "fault", two, 0.05),
        (0.55, "ack", two, 0.0),
        (0.60, "silent", last, 0.05),
        (0.70, "bad_frames", 0, 0.0),
        (0.78, "SIGTERM", 0, 0.0),
        (0.90, "SIGKILL", 0, 0.0),
    ]
    steps = []
    n = max(1, int(duration_s // cycle_s))
    for c in range(n):
        for share, what, m, length in plan:
            seconds = length * cycle_s
            if what == "silent":
                seconds = max(seconds, 2 * SILENCE_S)
            steps.append(Step(c * cycle_s + share * cycle_s, what, m, seconds))
    return [s for s in steps if s.at_s + s.seconds < duration_s]


# --------------------------------------------------------------------------- the account


def _account(
    svc: ServiceProcess, rx: Receiver, relay_check: dict[str, Any], machines: list[str]
) -> dict[str, Any]:
    from pdm.history import open_store
    from pdm.history.records import StateChange, event_id
    from pdm.history.spool import Spool

    analysed = {m: 0 for m in machines}
    for run in svc.runs:
        for m, n in run["windows"].items():
            analysed[m] = analysed.get(m, 0) + n
    stored: dict[str, int] = {}
    duplicated = 0
    expected_ids: dict[str, tuple[str, str, str, str]] = {}
    events: dict[str, int] = {}
    with open_store(f"sqlite:///{svc.db}") as store:
        for m in machines:
            t = store.scores(m).t_ns
            stored[m] = len(t)
            duplicated += int(len(t) - len(np.unique(t)))
            for rec in store.log(m, kinds=("states",), limit=1_000_000):
                assert isinstance(rec, StateChange)
                eid = event_id(rec.machine, rec.t_ns, rec.sensor, rec.old, rec.new)
                expected_ids[eid] = (rec.machine, rec.sensor or "", rec.old, rec.new)
        for rec in store.log(None, kinds=("events",), limit=1_000_000):
            events[rec.type] = events.get(rec.type, 0) + 1  # type: ignore[union-attr]
    got = rx.received()
    valid = [r for r in got if r.get("valid") and 200 <= int(r.get("status", 0)) < 300]
    delivered = {str(r.get("id")) for r in valid}
    spool_rows = rejected = dropped = 0
    for path in sorted((svc.data / "spool").glob("*.db")):
        with Spool(path) as sp:
            spool_rows += sp.rows
            rejected += sp.rejected_rows()
            dropped += sum(sp.dropped().values())
    outbox_left = outbox_rejected = 0
    for path in sorted((svc.data / "outbox").glob("*.db")):
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            outbox_left += int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
            outbox_rejected += int(db.execute("SELECT count(*) FROM rejected").fetchone()[0])
    log_text = svc.log_path.read_text(errors="replace") if svc.log_path.exists() else ""
    missing_scores = sum(max(0, analysed[m] - stored.get(m, 0)) for m in machines)
    missing_hooks = sorted(set(expected_ids) - delivered)
    unknown_hooks = sorted(delivered - set(expected_ids))
    samples_dropped = sum(int(r["samples_dropped"]) for r in svc.runs)
    lost = {
        "scores_missing": missing_scores,
        "scores_duplicated": duplicated,
        "webhooks_missing": len(missing_hooks),
        "state_changes_missing_from_history": len(unknown_hooks),
        "relay_mismatches": len(relay_check["mismatches"]),
        "spool_rows_left": spool_rows,
        "rows_rejected_by_store": rejected,
        "rows_dropped_by_spool": dropped,
        "outbox_events_left": outbox_left,
        "outbox_events_rejected": outbox_rejected,
        "samples_dropped_behind_real_time": samples_dropped,
    }
    return {
        "windows_analysed": sum(analysed.values()),
        "scores_stored": sum(stored.values()),
        "per_machine": {m: {"analysed": analysed[m], "stored": stored.get(m, 0)} for m in machines},
        "transitions": len(expected_ids),
        "webhooks_received": len(got),
        "webhooks_delivered": len(delivered),
        "webhook_duplicates": len(valid) - len(delivered),
        "webhook_bad_signatures": sum(1 for r in got if not r.get("valid")),
        "webhooks_missing": [
            {
                "id": i,
                "machine": expected_ids[i][0],
                "sensor": expected_ids[i][1],
                "from": expected_ids[i][2],
                "to": expected_ids[i][3],
            }
            for i in missing_hooks[:20]
        ],
        "history_events": dict(sorted(events.items())),
        "relay": relay_check,
        "tracebacks_in_service_log": log_text.count("Traceback (most recent call last)"),
        "lost": lost,
    }


def _relay_check(relay: Any, svc: ServiceProcess, machines: list[str]) -> dict[str, Any]:
    """Each coil against its machine's state: energised unless trip or appliance_fault."""
    coils = relay.coils()
    states = {str(m["id"]): str(m.get("state")) for m in svc.status() if "id" in m}
    mismatches = []
    for i, m in enumerate(machines):
        want = states.get(m) not in ("trip", "appliance_fault")
        if coils[i] != want:
            mismatches.append({"machine": m, "state": states.get(m), "coil": coils[i]})
    return {"states": states, "coils": coils[: len(machines)], "mismatches": mismatches}


# --------------------------------------------------------------------------- the run


def run_soak(opts: SoakOptions) -> dict[str, Any]:
    """Run the soak; returns the summary (``summary["lost"]["total"]`` is 0 when nothing was
    lost). Raises :class:`PdmError` when it cannot run at all."""
    from pdm.tools.servers import ModbusServer

    if opts.machines < 1 or opts.machines > 15:
        raise ConfigError(f"--machines {opts.machines}: 1 to 15 (one Modbus coil each)")
    if opts.workers != "auto" and not (opts.workers.isdigit() and 1 <= int(opts.workers) <= 64):
        # checked here as the service checks it: the service would refuse it only after the
        # soak has trained its model and started its servers
        raise ConfigError(
            f"--workers {opts.workers!r}: expected auto or a number of processes, 1 to 64"
        )
    if opts.cycle_s < 30:
        raise ConfigError(f"--cycle {opts.cycle_s:g}: at least 30 s")
    if not (opts.model / "model.json").is_file():
        raise ConfigError(
            f"--model {opts.model}: no model.json (the demo pump's model is in models/)"
        )
    say = opts.log
    work = Path(opts.work_dir) if opts.work_dir else Path(tempfile.mkdtemp(prefix="pdm-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    machines = [f"soak-m{i:02d}" for i in range(opts.machines)]
    secret = secrets.token_hex(32)
    env = {**os.environ, "PDM_WEBHOOK_SECRET": secret, "PYTHONUNBUFFERED": "1"}
    relay = ModbusServer(keep_coils=True).start()
    rx = Receiver(work, secret)
    rx.start()
    pipelines = []
    for i, _m in enumerate(machines):
        p = work / f"m{i:02d}.toml"
        p.write_text(_pipeline(i, opts.model.resolve(), relay.port, rx.url))
        pipelines.append(p)
    svc = ServiceProcess(work, pipelines, opts.workers, say)
    lock = StoreLock(svc.db)
    say(
        f"soak: {opts.machines} machines, {opts.duration_s:g} s, cycle {opts.cycle_s:g} s, work dir {work}"
    )
    healthy = [_signal_data(20.0, opts.seed + i, False) for i in range(opts.machines)]
    faulty = _signal_data(5.0, opts.seed + 100, True)
    sensors = [
        Sensor(f"{m}-de", svc.stream_port, healthy[i], faulty) for i, m in enumerate(machines)
    ]
    steps = schedule(opts.duration_s, opts.cycle_s, opts.machines)
    faults: list[dict[str, Any]] = []
    problems: list[str] = []
    ends: list[tuple[float, Callable[[], object], str]] = []  # (when, undo, what)
    started = time.monotonic()
    summary: dict[str, Any] = {}
    try:
        svc.start(env)
        for s in sensors:
            s.start()
        started = time.monotonic()  # the schedule counts from the first frames

        def clock() -> float:
            return time.monotonic() - started

        def restart(how: str) -> None:
            for s in sensors:
                s.paused.set()
            svc.settle()
            time.sleep(FLUSH_WAIT_S)
            ended = svc.stop(how)
            if how == "SIGTERM" and ended["exit"] not in (0, 143):
                problems.append(f"SIGTERM: exit status {ended['exit']}")
            if ended["how"] != how:
                problems.append(f"{how}: {ended['how']} after {ended['stop_s']} s")
            svc.start(env)
            for s in sensors:
                s.paused.clear()
            faults[-1].update(stopped_in_s=ended["stop_s"], exit=ended["exit"])

        pending = list(steps)
        while pending or ends:
            now = clock()
            for end in [e for e in ends if e[0] <= now]:
                ends.remove(end)
                end[1]()
                say(f"soak: {now:7.1f} s  {end[2]} ends")
            if pending and pending[0].at_s <= now:
                step = pending.pop(0)
                m = machines[step.machine]
                say(
                    f"soak: {now:7.1f} s  {step.what} {m if step.what in ('fault', 'ack', 'silent') else ''}".rstrip()
                )
                faults.append({"at_s": round(now, 1), "what": step.what, "for_s": step.seconds})
                if step.what == "store_down":
                    lock.hold()
                    ends.append((now + step.seconds, lock.release, "store_down"))
                elif step.what == "receiver_down":
                    rx.stop()
                    ends.append((now + step.seconds, rx.start, "receiver_down"))
                elif step.what == "relay_down":
                    relay.stop()
                    ends.append((now + step.seconds, relay.start, "relay_down"))
                elif step.what == "fault":
                    sensor = sensors[step.machine]
                    sensor.fault = True
                    ends.append((now + step.seconds, _healed(sensor), f"fault {m}"))
                elif step.what == "silent":
                    sensors[step.machine].silent_until = time.monotonic() + step.seconds
                elif step.what == "ack":
                    got = _http(
                        "POST", f"{svc.api}/ack/{m}", {"by": "soak", "comment": "soak test"}
                    )
                    faults[-1]["answer"] = got
                elif step.what == "bad_frames":
                    faults[-1]["sent"] = (
                        _bad_frames(svc.stream_port, sensors[0].sensor_id, opts.bad_frames)
                        if opts.bad_frames != "none"
                        else []
                    )
                elif step.what in ("SIGTERM", "SIGKILL"):
                    restart(step.what)
                continue
            nxt = min([e[0] for e in ends] + ([pending[0].at_s] if pending else []), default=now)
            time.sleep(min(0.2, max(0.0, nxt - clock())))
        # Quiet running to the end of the duration.
        while clock() < opts.duration_s:
            time.sleep(min(1.0, opts.duration_s - clock()))
        say(f"soak: {clock():7.1f} s  final account: acknowledging, draining, stopping")
        for st in svc.status():
            if st.get("state") in ("danger", "trip"):
                _http("POST", f"{svc.api}/ack/{st['id']}", {"by": "soak", "comment": "end"})
        _wait_until(lambda: all(x.get("state") == "ok" for x in svc.status()), 60.0)
        drained = _wait_until(lambda: _outbox_waiting(svc.data) == 0, 180.0)
        if not drained:
            problems.append("the webhook outboxes did not drain within 180 s")
        relay_check = _relay_check(relay, svc, machines)
        for s in sensors:
            s.paused.set()
        svc.settle()
        time.sleep(FLUSH_WAIT_S)
        ended = svc.stop("SIGTERM")
        if ended["exit"] not in (0, 143) or ended["how"] != "SIGTERM":
            problems.append(f"final SIGTERM: {ended}")
        for s in sensors:
            s.stopping.set()
        for s in sensors:
            s.join(5)
        account = _account(svc, rx, relay_check, machines)
        lost = account["lost"]
        lost["total"] = sum(lost.values())
        if account["tracebacks_in_service_log"]:
            problems.append(
                f"{account['tracebacks_in_service_log']} traceback(s) in the service log"
            )
        summary = {
            "duration_s": round(clock(), 1),
            "machines": opts.machines,
            "workers": opts.workers,
            "cycle_s": opts.cycle_s,
            "store": "sqlite (outage: another connection's exclusive lock)",
            "bad_frames": opts.bad_frames,
            "frames_sent": sum(s.frames_sent for s in sensors),
            "frames_unsent": sum(s.frames_unsent for s in sensors),
            "sensor_reconnects": sum(s.reconnects for s in sensors),
            "restarts": [r["ended"] for r in svc.runs if r["ended"]],
            "faults": faults,
            **account,
            "problems": problems,
            "ok": lost["total"] == 0 and not problems,
            "work_dir": str(work),
        }
        return summary
    finally:
        for s in sensors:
            s.stopping.set()
        lock.release()
        if svc.proc is not None:
            with contextlib.suppress(Exception):
                svc.stop("SIGKILL")
        rx.stop()
        relay.stop()
        if not opts.keep and opts.work_dir is None and summary.get("ok"):
            shutil.rmtree(work, ignore_errors=True)


def _healed(sensor: Sensor) -> Callable[[], None]:
    def heal() -> None:
        sensor.fault = False

    return heal


def _wait_until(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return bool(cond())


def _outbox_waiting(data: Path) -> int:
    n = 0
    for path in (data / "outbox").glob("*.db"):
        with contextlib.suppress(sqlite3.Error):
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                n += int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    return n


#: ``pdm-edge soak --help``'s description.
DESCRIPTION = (
    "Run the service under simulated load with faults on a schedule; print a JSON account of "
    "everything lost (exit 1 when anything was). See docs/soak.md."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``pdm-edge soak [--duration 1h] [--machines N] …``'s options, on the CLI's sub-parser."""
    p.add_argument("--duration", default="1h", help="how long, e.g. 90s, 10m, 1h (default 1h)")
    p.add_argument("--machines", type=int, default=4, help="simulated machines (default 4)")
    p.add_argument("--cycle", default="300s", help="the fault schedule repeats this often (300s)")
    p.add_argument("--workers", default="auto", help="the service's --workers (default auto)")
    p.add_argument(
        "--bad-frames",
        choices=("all", "protocol", "none"),
        default="all",
        help="protocol: garbage, bad CRC, impossible length, unknown sensor; all: also a t0 of "
        "2**63-1 and a wrong sample rate for a real sensor (default)",
    )
    p.add_argument(
        "--work-dir", type=Path, help="keep everything here (default: a temp dir, removed when ok)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    p.add_argument(
        "--model", type=Path, default=DEMO_MODEL, help="the machines' model (the demo pump's)"
    )
    p.add_argument("--seed", type=int, default=7)


def run(args: argparse.Namespace) -> int:
    """``pdm-edge soak`` with its parsed options (:func:`add_arguments`); the exit status."""
    try:
        opts = SoakOptions(
            duration_s=parse_duration(args.duration),
            machines=args.machines,
            cycle_s=parse_duration(args.cycle),
            workers=args.workers,
            bad_frames=args.bad_frames,
            work_dir=args.work_dir,
            keep=args.keep,
            model=args.model,
            seed=args.seed,
        )
        summary = run_soak(opts)
    except PdmError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0 if summary["ok"] else 1
