"""The DSP alone on the service load's own machines, for ``pdm-edge bench``: the like-for-like
denominator of the service's capacity per core.

``dsp_sensors_per_core`` (pdm/tools/bench.py) is the DSP on its friendliest work: one
3-channel pipeline at one fixed speed, windows extracted eight at a time. The service's load
(:func:`pdm.tools.bench_run.fleet`) is not that: two pipeline shapes (two tri-axial sensors
at a fixed speed; one with its speed searched ±10 %), four speeds, faults. Dividing the
service's sensors per core by the friendly figure mixes two things — what the service adds
to the DSP, and how much dearer the fleet's DSP is than the friendly one. This module
measures the second on its own, so the first can be read:

``dsp_fleet_sensors_per_core``
    tri-axial sensors one core extracts when the DSP alone runs the fleet's first
    :data:`MACHINES` machines exactly as their pipeline files say (the same TOML the
    service loads, the same simulated signals): per round each machine's next hop of
    samples through its windower (:meth:`pdm.processing.FeatureStream.cut`), then every
    window of the round in one :func:`pdm.dsp.features.extract_many` pass — the best
    batching a round of the service can get. No diagnosis, scoring, alarms or history.
``dsp_fleet_alone_sensors_per_core``
    the same windows, each machine's extracted alone (``extract_many`` of one job), as the
    service meets them when a round holds about one window.
``run_vs_dsp_fleet_per_core`` (in pdm/tools/bench.py)
    ``run_sensors_per_core`` over ``dsp_fleet_sensors_per_core``: the service against the
    DSP on the same machines, one core against one.

CPU time (``time.process_time``) of this process, one thread; median over rounds. A
tri-axial sensor produces ``FS / hop`` windows of 3 channels a second; a machine with two
sensors' window counts as two sensor-windows.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MACHINES", "fleet_dsp_figures"]

#: The fleet's first machines measured: both shapes at each of the four speeds, twice, with
#: the faulty ones of those indices (as the service's load).
MACHINES = 16


def fleet_dsp_figures(*, quick: bool = False, machines: int = MACHINES) -> dict[str, Any]:
    """``dsp_fleet_sensors_per_core`` and ``dsp_fleet_alone_sensors_per_core`` (module doc)."""
    from pdm.config import load_pipeline
    from pdm.core.chunk import Chunk
    from pdm.dsp.features import extract_many
    from pdm.processing import FeatureStream
    from pdm.tools import bench_run as br

    rounds = 6 if quick else 24
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_s:
        tmp = Path(tmp_s)
        streams: list[FeatureStream] = []
        signals: list[np.ndarray] = []
        hops: list[int] = []
        cache: dict[tuple[str, float, bool], np.ndarray] = {}
        fleet = br.fleet(machines)
        for m in fleet:
            path = tmp / f"{m.id}.toml"
            path.write_text(br.pipeline_toml(m, tmp / "no-model", "http://127.0.0.1:9/", "log://"))
            pl = load_pipeline(path)
            key = (m.shape.name, m.rpm, m.faulty)
            if key not in cache:
                cache[key] = br.machine_signal(m.shape, m.rpm, m.faulty, 4.0, 2)
            streams.append(FeatureStream(pl, br.FS, batch=1))
            signals.append(cache[key])
            hops.append(m.shape.hop)
        sensor_windows = sum(m.shape.sensors for m in fleet)
        pos = [0] * len(fleet)
        clock = [1.7e9] * len(fleet)

        def chunk(k: int, samples: int) -> Chunk:
            """Machine ``k``'s next ``samples`` samples (its loop repeated), as a DAQ sends them."""
            x, fs = signals[k], streams[k]
            idx = (pos[k] + np.arange(samples)) % x.shape[0]
            out = Chunk(data=x[idx], fs=br.FS, t0=clock[k], channels=tuple(fs.pipeline.columns))
            pos[k] = int((pos[k] + samples) % x.shape[0])
            clock[k] += samples / br.FS
            return out

        def cut(k: int, samples: int) -> list[Any]:
            return streams[k].cut(chunk(k, samples))

        # Fill each windower to one hop short of its first window.
        for k, m in enumerate(fleet):
            assert not cut(k, m.shape.window - m.shape.hop)

        def one_round(shared: bool) -> float:
            # The samples arrive (untimed: the DAQ's work), then the DSP's: windowers, extraction.
            chunks = [chunk(k, hops[k]) for k in range(len(fleet))]
            t0 = time.process_time()
            wins = [fs.cut(c) for fs, c in zip(streams, chunks, strict=True)]
            jobs = [
                (fs.extractor, [w.data for w in ws]) for fs, ws in zip(streams, wins, strict=True)
            ]
            if shared:
                extract_many(jobs)
            else:
                for job in jobs:
                    extract_many([job])
            return time.process_time() - t0

        one_round(True)  # warm: plans, kernels, caches
        one_round(False)
        together, alone = [], []
        for _ in range(rounds):  # alternating, so that the machine's noise falls on both
            together.append(one_round(True))
            alone.append(one_round(False))

    if len(set(hops)) != 1:
        raise ValueError(f"the fleet's shapes have other hops: {sorted(set(hops))}")
    windows_per_sensor_s = br.FS / hops[0]  # a round is one hop of every machine

    def per_core(seconds: float) -> float:
        return 1.0 / (seconds / sensor_windows * windows_per_sensor_s)

    t, a = statistics.median(together), statistics.median(alone)
    return {
        "dsp_fleet_machines": machines,
        "dsp_fleet_us_per_sensor_window": round(t / sensor_windows * 1e6, 1),
        "dsp_fleet_sensors_per_core": round(per_core(t), 1),
        "dsp_fleet_alone_us_per_sensor_window": round(a / sensor_windows * 1e6, 1),
        "dsp_fleet_alone_sensors_per_core": round(per_core(a), 1),
    }
