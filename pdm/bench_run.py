"""The whole service under load, for ``pdm-edge bench``: ``run_sensors``, ``e2e_ms_p50/p99``.

What runs: ``pdm-edge run`` as a child process (as installed: the same command a plant
runs), machines of ``SENSORS_PER_MACHINE`` tri-axial sensors each at 25.6 kHz, 16384-sample
windows at 50 % overlap, one GMM model trained here on simulated healthy running, history
to SQLite, actions live (the log relay: no relay is configured), the control API on
loopback. The data come over the TCP stream input from a second process playing the DAQs:
one connection per machine, float32 frames of ``FRAME_SAMPLES`` samples (0.1 s, as DAQs
streaming ten blocks a second send them), simulated healthy vibration with advancing
timestamps. The sender builds each frame's CRC from the header's CRC and a precomputed
operator (the samples repeat), so it costs little more than its ``sendmsg`` calls — it
still shares the machine's two cores with the service, which makes the figure
conservative.

Three phases, each on a fresh service:

1. **capacity**: a few machines sent as fast as the service reads them (TCP flow control
   paces the sender); windows processed per second in the steady part → sensors.
2. **real time**: 90 % of that many sensors, each frame sent when its last sample would
   have been acquired. It holds if the service ends with no backlog discarded, its lag
   behind real time under ``LAG_LIMIT_S`` and the sender never more than ``LAG_LIMIT_S``
   late; otherwise the load steps down 15 % and the phase runs again (at most
   ``MAX_TRIES`` times).

``run_sensors`` is the sensors the real-time phase held; ``e2e_ms_p50`` / ``e2e_ms_p99``
come from its ``pdm_decision_latency_seconds`` histogram over the steady part (the last
sample of a window received → its alarm decision, the relay command included when the
state changes), interpolated within the histogram's buckets (0.25 ms wide below 5 ms).

3. **in time**: when the load held decides slower than ``E2E_TARGET_MS`` at p99, the load
   steps down 5 % at a time (at most ``LATENCY_TRIES``) to the highest that is held *and*
   meets it: ``run_sensors_in_time`` and ``run_vs_dsp_in_time`` (0 when none does). Near
   saturation the tail is queueing; this is the load the service carries with its decisions
   in time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_run", "frame_crc_maker"]

FS = 25600.0
N = 16384
OVERLAP = 0.5
FRAME_SAMPLES = 2560
SENSORS_PER_MACHINE = 2
WINDOWS_PER_SENSOR_S = FS / (N * (1 - OVERLAP))
LAG_LIMIT_S = 2.0
MAX_TRIES = 5
#: The DAQs go on this long after the measured interval ends: when they stop, every
#: connection closes at once, and the service's handling of 500 disconnections (an event
#: each) delayed the last windows by 50-150 ms — the end of a phase, not the service's
#: steady state, which is what the figures are about.
SENDER_TAIL_S = 3.0
#: A real-time phase is measured from this long after the DAQs start: machines start up to
#: 3.2 s apart (so that their windows spread), the first window needs 0.64 s, and each
#: machine's first window spools its relay's initial state (an fsync each, ~700 a worker
#: at 460 machines); the measured interval is the steady state after that.
RT_WARMUP_S = 8.0
#: How long a real-time phase is measured, s. A p99 over 15 s (~21 000 decisions at 0.5)
#: was the 220th slowest: one hiccup of this shared VM's host (150 ms, every window of it
#: late) decided it; over 30 s a hiccup has to be twice as long to.
RT_SECONDS = 30.0
#: The decision-latency target (issue 6: e2e p99 <= 20 ms at the load held) and the tries,
#: 5 % lower each, to find the load that meets it when the load held does not (steps of
#: 10 % left the figure up to 10 % under the load that met it).
E2E_TARGET_MS = 20.0
LATENCY_STEP = 0.95
LATENCY_TRIES = 8
_MASK = 0xFFFFFFFF


def frame_crc_maker(tail_len: int, tail_crc_state: int) -> Any:
    """CRC32 of ``prefix + tail`` from the prefix alone, for a fixed tail.

    zlib's CRC is affine: after the prefix, the register is carried through the tail's
    bytes by a linear map (computed here once, column by column) and the tail adds a
    constant. ``tail_crc_state`` is ``~zlib.crc32(tail, 0xFFFFFFFF)``.
    """
    zeros = bytes(tail_len)
    cols = [(~zlib.crc32(zeros, ~(1 << i) & _MASK)) & _MASK for i in range(32)]

    def crc(prefix: bytes) -> int:
        x = (~zlib.crc32(prefix)) & _MASK
        y = tail_crc_state
        i = 0
        while x:
            if x & 1:
                y ^= cols[i]
            x >>= 1
            i += 1
        return (~y) & _MASK

    return crc


def _channels(s: int) -> list[str]:
    return [f"s{j}_{a}_g" for j in range(s) for a in ("x", "y", "z")]


def _pipeline(i: int, s: int, model: Path) -> str:
    chans = []
    for j in range(s):
        cols = ", ".join(
            f'{{ column = "s{j}_{a}_g", unit = "g", full_scale = 16.0, axis = "{axis}" }}'
            for a, axis in (("x", "horizontal"), ("y", "vertical"), ("z", "axial"))
        )
        chans.append(
            f'[[sensors]]\nid = "m{i:03d}-s{j}"\nlocation = "bearing {j}"\nbearing = "6205"\n'
            f"channels = [{cols}]\n"
        )
    return f"""schema_version = 1
[machine]
id = "m{i:03d}"
name = "bench machine {i}"
iso_group = 2
foundation = "rigid"
[machine.speed]
rpm = 1480
[acquisition]
sample_rate_hz = {FS}
window_samples = {N}
overlap = {OVERLAP}
on_bad_data = "invalidate"
# The capacity phase feeds as fast as flow control allows: its DAQs' clock runs ahead of the
# appliance's, which a live input refuses beyond 60 s by default.
max_clock_ahead_s = 86400.0
{"".join(chans)}
[envelope]
band_hz = [2000.0, 6000.0]
[[bands]]
name = "high"
low_hz = 1000.0
high_hz = 10000.0
[model]
path = "{model}"
detector = "gmm"
"""


def _healthy(s: int, seconds: float, seed: int = 7) -> np.ndarray:
    """(samples, 3 s) float32 simulated healthy running (the demo pump's signature)."""
    from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

    spec = dataclasses.replace(
        SimSpec(),
        fs=FS,
        duration_s=seconds,
        rpm=1480.0,
        channels=tuple(_channels(s)),
        faults=(FaultSpec("unbalance", 0.05),),
        start_time=0.0,
        seed=seed,
    )
    data = np.concatenate([c.data for c in Simulator(spec).chunks()])
    return np.ascontiguousarray(data, dtype=np.float32)


def _train(pipeline_file: Path, data: np.ndarray, out: Path) -> None:
    from pdm.config import load_pipeline
    from pdm.processing import FeatureStream
    from pdm.scoring.train import TrainingSet, train
    from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names
    from pdm.sources.base import Chunk

    pl = load_pipeline(pipeline_file)
    stream = FeatureStream(pl, FS)
    chunks = (
        Chunk(data[i : i + 25600].astype(np.float64), FS, i / FS, tuple(pl.columns))
        for i in range(0, len(data), 25600)
    )
    frames = [wf.features for wf in stream.feed(chunks) if wf.features.valid]
    names = vector_names(pl.columns, frames[0].names, MODEL_FEATURES)
    x = FeatureVectorizer(names, pl.columns, frames[0].names).matrix(frames)
    ts = TrainingSet(pl, FS, tuple(names), [x], [{"file": "simulated", "windows": len(x)}])
    train(ts, out, detector="gmm", alerts_per_week=1.0, holdout=0.3, force=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


# -- the DAQs ------------------------------------------------------------------------------------
def _sender(
    port: int, machines: list[str], channels: list[str], data: np.ndarray, paced: bool,
    duration_s: float, out: Any,
) -> None:  # fmt: skip
    """One connection per machine; frames of FRAME_SAMPLES from ``data`` in a loop."""
    from pdm.sources.tcp import HEAD as _HEAD
    from pdm.sources.tcp import MAGIC, VERSION
    from pdm.sources.tcp import U16 as _U16

    n_frames = len(data) // FRAME_SAMPLES
    blocks = [data[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes() for k in range(n_frames)]
    makers = [frame_crc_maker(len(b), (~zlib.crc32(b, _MASK)) & _MASK) for b in blocks]
    names = b"".join(_U16.pack(len(c)) + c.encode() for c in channels)
    socks = []
    for _m in machines:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        socks.append(s)
    sids = [m.encode() for m in machines]
    dt = FRAME_SAMPLES / FS
    # The DAQs' clock starts now, not when the bench started this process (a spawned
    # interpreter takes a second or two to get here: that would read as lag).
    out.put({"started": True})  # the bench's warm-up counts from here
    t_start = time.time()
    wall0 = time.monotonic()
    late_max = 0.0
    k = 0
    sent = 0
    error = ""
    m = len(socks)
    try:
        while True:
            if time.monotonic() - wall0 >= duration_s:
                break
            block, crc = blocks[k % n_frames], makers[k % n_frames]
            for i, (sock, sid) in enumerate(zip(socks, sids, strict=True)):
                # Machine i starts i % 32 frames late, so that their windows complete spread
                # over time; and its DAQ's clock runs i/m of a frame behind the first's: the
                # frames of unsynchronised DAQs arrive spread over each 0.1 s, not together.
                if k < i % 32:
                    continue
                phase = k + i / m
                if paced:
                    due = wall0 + (phase + 1) * dt  # its last sample has been acquired
                    now = time.monotonic()
                    if due > now + 0.001:
                        time.sleep(due - now)
                    else:
                        late_max = max(late_max, now - due)
                t0_ns = round((t_start + phase * dt) * 1e9)
                prefix = (
                    _HEAD.pack(MAGIC, VERSION, 1, len(channels), FS, t0_ns, FRAME_SAMPLES, len(sid))
                    + sid
                    + names
                )
                tail = crc(prefix).to_bytes(4, "little")
                done = sock.sendmsg([prefix, block, tail])  # one system call per frame
                if done < len(prefix) + len(block) + 4:
                    sock.sendall((prefix + block + tail)[done:])
                sent += 1
            k += 1
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        for s in socks:
            s.close()
        out.put(
            {
                "frames": sent,
                "late_max_s": late_max,
                "seconds": time.monotonic() - wall0,
                "error": error,
            }
        )


# -- the service ---------------------------------------------------------------------------------
def _term_with_parent() -> None:
    """In the child: SIGTERM when the bench dies (a killed bench leaves no service behind)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _service(tmp: Path, files: list[Path], workers: int | None) -> Iterator[tuple[int, str, int]]:
    port, api = _free_port(), _free_port()
    data = tmp / f"var-{port}"
    cmd = [
        sys.executable, "-m", "pdm.cli", "run", *map(str, files),
        "--listen", f"127.0.0.1:{port}", "--api", f"127.0.0.1:{api}",
        "--store", f"sqlite:///{data / 'history.db'}", "--data-dir", str(data),
        "--silence-s", "60", "--max-lag-s", "5",
        # (every simulated DAQ connects from 127.0.0.1, as behind one gateway: the default
        # limits are sized from the pipelines for that, pdm/service/limits.py)
    ]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    log = open(tmp / f"service-{port}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_term_with_parent)
    base = f"http://127.0.0.1:{api}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the service exited ({proc.returncode}): "
                    + (tmp / f"service-{port}.log").read_text()[-2000:]
                )
            try:
                _get(base + "/status", 1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "the service did not answer within 120 s: "
                        + (tmp / f"service-{port}.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield port, base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


_SAMPLE = re.compile(r"^(pdm_[a-z_]+)(\{[^}]*\})? (\S+)$")


def _scrape(base: str) -> dict[str, Any]:
    # The moment the counters were read: the middle of the request (under load the
    # supervisor gathering its workers' metrics takes a noticeable part of a second).
    t_ask = time.monotonic()
    text = _get(base + "/metrics")
    t_read = 0.5 * (t_ask + time.monotonic())
    windows = 0.0
    buckets: dict[float, float] = {}
    lag = 0.0
    refused: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m[1], m[2] or "", float(m[3])
        if name == "pdm_windows_total":
            windows += value
        elif name in ("pdm_door_refused_total", "pdm_input_refused_total"):
            # A connection the service refused: the DAQ behind it is lost to the phase.
            cause = re.search(r'cause="([^"]+)"', labels)
            key = cause[1] if cause else "?"
            refused[key] = refused.get(key, 0.0) + value
        elif name == "pdm_lag_seconds":
            lag = max(lag, value)
        elif name == "pdm_decision_latency_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            assert le is not None
            b = math.inf if le[1] == "+Inf" else float(le[1])
            buckets[b] = buckets.get(b, 0.0) + value
    return {"t": t_read, "windows": windows, "buckets": buckets, "lag": lag, "refused": refused}


def _quantile(b0: dict[float, float], b1: dict[float, float], q: float) -> float | None:
    """The q-quantile (s) of the observations between two scrapes, within buckets."""
    bounds = sorted(b1)
    counts = [b1[b] - b0.get(b, 0.0) for b in bounds]  # cumulative
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    target = q * total
    prev_b, prev_c = 0.0, 0.0
    for b, c in zip(bounds, counts, strict=True):
        if c >= target:
            if math.isinf(b):
                return prev_b
            frac = (target - prev_c) / (c - prev_c) if c > prev_c else 1.0
            return prev_b + frac * (b - prev_b)
        prev_b, prev_c = b, c
    return prev_b


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (reaped or not)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick
    return total


def _phase(
    tmp: Path, files: list[Path], data: np.ndarray, *, paced: bool, seconds: float,
    warmup: float, workers: int | None,
) -> dict[str, Any]:  # fmt: skip
    ctx = mp.get_context("spawn")
    machines = [f"m{i:03d}" for i in range(len(files))]
    with _service(tmp, files, workers) as (port, base, pid):
        out = ctx.Queue()
        sender = ctx.Process(
            target=_sender,
            args=(
                port,
                machines,
                _channels(SENSORS_PER_MACHINE),
                data,
                paced,
                warmup + seconds + SENDER_TAIL_S,
                out,
            ),
            daemon=True,
        )
        sender.start()
        # Warm-up from the sender's first frame, not from its spawn (a second or two of
        # interpreter start-up): the late-starting machines must be producing windows by the
        # first scrape, or the rate reads low by the part of the interval they missed.
        started = out.get(timeout=120)
        assert started == {"started": True}, started
        time.sleep(warmup)
        s0, c0 = _scrape(base), _cpu_s(pid)
        time.sleep(seconds)
        s1, c1 = _scrape(base), _cpu_s(pid)
        sent = out.get(timeout=60)
        sender.join(10)
        status = __import__("json").loads(_get(base + "/status"))
    dropped = sum(int(m.get("samples_dropped") or 0) for m in status)
    rate = (s1["windows"] - s0["windows"]) / (s1["t"] - s0["t"])
    p50 = _quantile(s0["buckets"], s1["buckets"], 0.50)
    p99 = _quantile(s0["buckets"], s1["buckets"], 0.99)
    return {
        "windows_per_s": rate,
        "sensors": rate * SENSORS_PER_MACHINE / WINDOWS_PER_SENSOR_S,
        "lag_s": s1["lag"],
        "service_cores": (c1 - c0) / (s1["t"] - s0["t"]),
        "dropped_samples": dropped,
        "sender_late_max_s": sent["late_max_s"],
        "sender_error": sent["error"] or None,
        # One TCP connection per machine (2 sensors each), all from 127.0.0.1.
        "connections": len(machines),
        "refused": {k: int(v) for k, v in sorted(s1["refused"].items())},
        "e2e_ms_p50": None if p50 is None else p50 * 1e3,
        "e2e_ms_p99": None if p99 is None else p99 * 1e3,
    }


def bench_run(
    dsp_sensors_per_core: float, *, quick: bool = False, workers: int | None = None
) -> dict[str, Any]:
    """The ``run_*`` and ``e2e_*`` figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pdm-bench-run-") as name:
        tmp = Path(name)
        data = _healthy(SENSORS_PER_MACHINE, 60.0)
        model = tmp / "model"
        first = tmp / "m000.toml"
        first.write_text(_pipeline(0, SENSORS_PER_MACHINE, model))
        _train(first, data, model)

        def files(m: int) -> list[Path]:
            out = []
            for i in range(m):
                f = tmp / f"m{i:03d}.toml"
                f.write_text(_pipeline(i, SENSORS_PER_MACHINE, model))
                out.append(f)
            return out

        sat_machines = 8 * max(1, workers or os.cpu_count() or 1)
        cap = _phase(
            tmp, files(sat_machines), data, paced=False,
            seconds=3.0 if quick else 10.0, warmup=3.0, workers=workers,
        )  # fmt: skip
        tries: list[dict[str, Any]] = []

        def attempt(sensors: float) -> dict[str, Any]:
            m = max(1, int(sensors // SENSORS_PER_MACHINE))
            rt = _phase(
                tmp, files(m), data, paced=True,
                seconds=3.0 if quick else RT_SECONDS, warmup=4.0 if quick else RT_WARMUP_S,
                workers=workers,
            )  # fmt: skip
            rt["machines"] = m
            rt["held"] = (
                not rt["sender_error"]
                and not rt["refused"]
                and rt["windows_per_s"] >= 0.97 * m * WINDOWS_PER_SENSOR_S
                and rt["dropped_samples"] == 0
                and rt["lag_s"] < LAG_LIMIT_S
                and rt["sender_late_max_s"] < LAG_LIMIT_S
            )
            tries.append(rt)
            return rt

        def in_time(rt: dict[str, Any] | None) -> bool:
            p99 = None if rt is None else rt["e2e_ms_p99"]
            return rt is not None and rt["held"] and p99 is not None and p99 <= E2E_TARGET_MS

        target = 0.9 * cap["sensors"]
        held: dict[str, Any] | None = None
        for _ in range(1 if quick else MAX_TRIES):
            rt = attempt(target)
            if rt["held"]:
                held = rt
                break
            target *= 0.85
        # Held, but slower than the decision-latency target: the load at which it is not.
        timely = held if in_time(held) else None
        if held is not None and timely is None and not quick:
            target = held["machines"] * SENSORS_PER_MACHINE
            for _ in range(LATENCY_TRIES):
                target *= LATENCY_STEP
                rt = attempt(target)
                if in_time(rt):
                    timely = rt
                    break
    sensors = held["machines"] * SENSORS_PER_MACHINE if held else 0
    timely_sensors = timely["machines"] * SENSORS_PER_MACHINE if timely else 0
    return {
        "run_sensors": sensors,
        "run_vs_dsp": round(sensors / dsp_sensors_per_core, 3) if dsp_sensors_per_core else None,
        "run_sensors_in_time": timely_sensors,
        "run_vs_dsp_in_time": round(timely_sensors / dsp_sensors_per_core, 3)
        if dsp_sensors_per_core
        else None,
        "e2e_target_ms": E2E_TARGET_MS,
        "e2e_ms_p50": None
        if not held or held["e2e_ms_p50"] is None
        else round(held["e2e_ms_p50"], 2),
        "e2e_ms_p99": None
        if not held or held["e2e_ms_p99"] is None
        else round(held["e2e_ms_p99"], 2),
        "run_capacity_sensors": round(cap["sensors"], 1),
        "run_capacity_windows_per_s": round(cap["windows_per_s"], 1),
        # Fed as fast as TCP's flow control lets the sender: nothing may be dropped.
        "run_capacity_dropped_samples": cap["dropped_samples"],
        "run_sensors_per_machine": SENSORS_PER_MACHINE,
        "run_frame_samples": FRAME_SAMPLES,
        "run_workers": workers if workers is not None else "auto",
        "run_tries": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items()} for t in tries
        ],
    }
