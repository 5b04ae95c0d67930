"""Decision latency for ``pdm-edge bench``: from a window's features to the relay command.

What is timed, per decision: the service's window path
(:meth:`pdm.supervision.window.WindowPipeline.process`) up to the relay command — scoring the
window (onnxruntime, the demo model), its history records, sensor health, the alarm state
machine, saving the new state (fsynced SQLite, as the engine does before it acts) and issuing
the relay command — the call
into the relay, here a relay that only records the time (the Modbus round
trip itself is measured in ``tests/actions/test_relay.py``: ~0.3 ms on loopback).

Each decision is a real trip: the engine starts every round one window short
of its on-delay with the outer-race fixture's windows, and the next window
trips it. The DSP benchmark's load runs meanwhile in a second process
(feature extraction of the bench window in a loop), so the figure includes the
contention a busy appliance sees. Reported: median and 99th percentile, µs.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pdm.actions.relay import RelayResult
from pdm.history.records import Record

__all__ = ["bench_decision"]

REPO = Path(__file__).resolve().parents[2]


class _StopwatchRelay:
    """A relay that records when it was commanded."""

    target = "stopwatch"

    def __init__(self) -> None:
        self.t: float | None = None

    def set_permissive(self, permissive: bool) -> RelayResult:
        self.t = time.perf_counter()
        return RelayResult(True, permissive, 1, "stopwatch", 0.0)

    def read_back(self) -> bool | None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> _StopwatchRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _Discard:
    """A history writer that keeps nothing (the records are made, as in the service)."""

    def submit(self, *records: Record, mark: int | None = None) -> None:
        pass


def _dsp_load(stop: Any) -> None:
    """The DSP benchmark's extraction, in a loop, until told to stop."""
    from pdm.dsp.bearings import BEARINGS
    from pdm.dsp.features import ChannelSpec, FeatureExtractor
    from pdm.tools.bench_signal import CHANNELS, ENVELOPE_BAND, FS, RPM, N, synthetic_window

    chans = [ChannelSpec(f"c{i}", BEARINGS["6205"]) for i in range(CHANNELS)]
    ex = FeatureExtractor(FS, N, chans, rpm=RPM, envelope_band_hz=ENVELOPE_BAND)
    xs = np.stack([synthetic_window(s) for s in range(8)])
    while not stop.is_set():
        ex.extract_batch(xs)


def bench_decision(*, quick: bool = False) -> dict[str, Any]:
    from pdm.alarms.state import MachineAlarm
    from pdm.config import load_pipeline
    from pdm.history.recorder import Recorder
    from pdm.processing import FeatureStream, open_recording
    from pdm.scoring.stream import ScoreStream
    from pdm.supervision.engine import AlarmEngine
    from pdm.supervision.store import AlarmStore
    from pdm.supervision.window import WindowPipeline

    pl = load_pipeline(REPO / "pipelines" / "demo.toml")
    rec, pl = open_recording(REPO / "fixtures" / "outer_race.csv.gz", pl)
    with rec:
        fs = FeatureStream(pl, rec.sample_rate_hz)
        windows = list(fs.feed(rec.chunks()))
    assert pl.model_dir is not None
    scores = ScoreStream(pl, rec.sample_rate_hz, pl.model_dir, fs.extractor.names)
    faulty = windows[60:]  # well inside the fault: every window is at trip level
    rounds = 60 if quick else 400
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    load = ctx.Process(target=_dsp_load, args=(stop,), daemon=True)
    load.start()
    times: list[float] = []
    try:
        time.sleep(0.5 if quick else 1.0)  # let the load process start extracting
        with tempfile.TemporaryDirectory(prefix="pdm-bench-") as tmp:
            relay = _StopwatchRelay()
            store = AlarmStore(Path(tmp) / "alarms.db")
            recorder = Recorder(pl)
            engine = AlarmEngine(
                pl, store, lambda *r: None, recorder, Path(tmp), relay_override=relay
            )
            window_path = WindowPipeline(fs, scores, recorder, engine, _Discard())
            on = engine.rules.on_windows
            brink = MachineAlarm(recent=(3,) * (on - 1))  # one trip-level window short
            for i in range(rounds):
                wf = faulty[i % len(faulty)]
                engine.state = brink
                relay.t = None
                engine._permissive = True
                t0 = time.perf_counter()
                window_path.process([wf])
                assert relay.t is not None and engine.state.state == "trip"
                times.append(relay.t - t0)
            store.close()
    finally:
        stop.set()
        load.join(5)
        if load.is_alive():
            load.terminate()
    us = sorted(t * 1e6 for t in times)
    return {
        "decision_us_p50": round(statistics.median(us), 1),
        "decision_us_p99": round(us[min(len(us) - 1, int(0.99 * len(us)))], 1),
        "decision_rounds": rounds,
    }
