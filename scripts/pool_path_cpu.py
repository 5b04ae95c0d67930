"""CPU per window of the service's pool thread, in process, without the network or a clock.

The bench's mixed fleet (``pdm.tools.bench_run.fleet``, its models trained as the bench
trains them), each machine's healthy signal cut into the bench's wire frames
(``FRAME_SAMPLES`` float32 samples, encoded with ``encode_frame``), machines taking turns
frame by frame as the bench's DAQs send them. Each frame is decoded (``FrameDecoder``, CRC
included), made a chunk, offered to its ``MachineRunner`` and taken by a
``RunnerPool._round`` on this thread — the service's path from a frame in the receive buffer
to the history writer, without the socket, the selector and the paced clock — with a real
``HistoryWriter`` (SQLite) and ``AlarmStore`` behind it, actions live.

Prints, per run, this thread's CPU µs per window (``time.thread_time``): all of it, the
extraction (``_extract_cuts``), the rest, and the stages by thread CPU time (the service's
``pdm_stage_seconds`` stages with ``perf_counter`` read as ``thread_time``; ``decode``,
``to_chunk`` and ``offer`` timed around the calls). Run it from the checkout under test
(``cd <checkout> && PYTHONPATH=<checkout> .venv/bin/python scripts/pool_path_cpu.py 32 60``);
docs/benchmarks.md ("The service's CPU per window outside the DSP") has the figures.

    .venv/bin/python scripts/pool_path_cpu.py MACHINES FRAMES_PER_MACHINE [RIG_DIR] [--together]

``RIG_DIR`` keeps the trained models and signals between runs (trained there when absent).
``--sleep-ms=X``: this thread sleeps X ms after each frame's round, as a paced service's
waits for its next frame (its caches meanwhile go to whatever else runs). ``--together``: every machine's frame of a step is offered before the rounds run, so rounds
hold up to ``RunnerPool.max_windows`` windows (what gathering makes of them) instead of
the one a paced service's rounds mostly hold.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

import pdm.service.runner as runner_mod
import pdm.supervision.window as window_mod
from pdm.config import load_pipeline
from pdm.history import open_store, parse_store_url, spool_path
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.service.runner import MachineRunner, RunnerPool
from pdm.sources.codec import FrameDecoder, encode_frame
from pdm.supervision.store import AlarmStore
from pdm.tools import bench_run as br


def _rig(folder: Path, machines: list[br.Machine]) -> None:
    """The models (one per shape and speed) and healthy signals the machines need."""
    folder.mkdir(parents=True, exist_ok=True)
    for m in machines:
        model = folder / f"model-{m.shape.name}-{m.rpm:.0f}"
        if not (model / "model.onnx").exists():
            br.train_model(br.Machine(0, m.shape, m.rpm, False), folder, 60.0, model)
        signal = folder / f"signal-{m.shape.name}-{m.rpm:.0f}-0.npy"
        if not signal.exists():
            np.save(signal, br.machine_signal(m.shape, m.rpm, False, br.LOOP_S, seed=2))


def main() -> None:
    sleep_s = 0.0
    for a in sys.argv[1:]:
        if a.startswith("--sleep-ms="):
            sleep_s = float(a.split("=", 1)[1]) / 1e3
    args = [a for a in sys.argv[1:] if a != "--together" and not a.startswith("--sleep-ms=")]
    together = "--together" in sys.argv[1:]
    n_machines, n_frames = int(args[0]), int(args[1])
    tmp = Path(tempfile.mkdtemp(prefix="pool-path-"))
    rig = Path(args[2]) if len(args) > 2 else tmp / "rig"
    machines = br.fleet(n_machines)
    _rig(rig, machines)
    os.environ.setdefault("PDM_WEBHOOK_SECRET", "0" * 64)  # the webhooks' signing key
    pipelines = []
    for m in machines:
        f = tmp / f"{m.id}.toml"
        model = rig / f"model-{m.shape.name}-{m.rpm:.0f}"
        f.write_text(br.pipeline_toml(m, model, "http://127.0.0.1:9/unused", "log:"))
        pipelines.append(load_pipeline(f))
    data = tmp / "var"
    data.mkdir()
    store = parse_store_url(f"sqlite:///{data / 'history.db'}")
    writer = HistoryWriter(
        lambda: open_store(store), Spool(spool_path(data, store)), label="appliance"
    )
    alarms = AlarmStore(data / "alarms.db")
    stage: dict[str, float] = {}

    def observe(name: str, seconds: float) -> None:
        stage[name] = stage.get(name, 0.0) + seconds

    # The stages' perf_counter read as this thread's CPU clock.
    clock = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if k[0] != "_"})
    clock.perf_counter = time.thread_time
    runner_mod.time = window_mod.time = clock  # type: ignore[assignment]
    pool = RunnerPool()
    runners = [
        MachineRunner(
            p,
            br.FS,
            writer=writer,
            alarm_store=alarms,
            data_dir=data,
            max_lag_s=1e9,
            observe=observe,
            pool=pool,
        )
        for p in pipelines
    ]
    frames: list[list[bytes]] = []
    t0 = time.time()
    n = br.FRAME_SAMPLES
    for i, m in enumerate(machines):
        signal = np.load(rig / f"signal-{m.shape.name}-{m.rpm:.0f}-0.npy")
        frames.append(
            [
                encode_frame(
                    m.id,
                    signal[(k * n) % (len(signal) - n) :][:n],
                    fs=br.FS,
                    t0_ns=round((t0 + (k + i / n_machines) * n / br.FS) * 1e9),
                    channels=m.shape.channels,
                )
                for k in range(n_frames)
            ]
        )
    decoders = [FrameDecoder(m.id) for m in machines]
    extract = runner_mod._extract_cuts  # (timed in place)

    def timed(cuts: Any) -> None:
        t = time.thread_time()
        extract(cuts)
        stage["extract"] = stage.get("extract", 0.0) + time.thread_time() - t

    runner_mod._extract_cuts = timed

    def run(k0: int, k1: int) -> None:
        for k in range(k0, k1):
            for i in range(n_machines):
                t = time.thread_time()
                got = decoders[i].feed(frames[i][k])
                t1 = time.thread_time()
                stage["decode"] = stage.get("decode", 0.0) + t1 - t
                for frame in got:
                    chunk = frame.to_chunk(time.monotonic())
                    t2 = time.thread_time()
                    runners[i].offer(chunk)
                    stage["to_chunk"] = stage.get("to_chunk", 0.0) + t2 - t1
                    stage["offer"] = stage.get("offer", 0.0) + time.thread_time() - t2
                if not together:
                    drain()
                if sleep_s:
                    time.sleep(sleep_s)  # a paced service's thread waits between frames
            drain()

    def drain() -> None:
        r = pool.ready.get_nowait() if not pool.ready.empty() else None
        while r is not None:
            pool._round(r)
            r = pool.ready.get_nowait() if not pool.ready.empty() else None

    warm = min(12, n_frames // 3)
    run(0, warm)
    w0 = sum(r.stats.windows for r in runners)
    stage.clear()
    c0 = time.thread_time()
    run(warm, n_frames)
    cpu = time.thread_time() - c0
    w = sum(r.stats.windows for r in runners) - w0
    ext = stage.pop("extract", 0.0)
    per = {k: round(v / w * 1e6) for k, v in sorted(stage.items())}
    print(
        f"machines {n_machines} windows {w}: thread CPU µs/window {cpu / w * 1e6:.0f}, "
        f"{'(together) ' if together else ''}{f'(sleep {sleep_s * 1e3:g} ms) ' if sleep_s else ''}extraction {ext / w * 1e6:.0f}, the rest {(cpu - ext) / w * 1e6:.0f}; stages {per}"
    )


if __name__ == "__main__":
    main()
    os._exit(0)  # (the runners' webhook threads and the writer need no orderly stop here)
