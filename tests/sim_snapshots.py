"""Short simulated recordings of one machine, as ``pdm-edge simulate`` writes them: what the
few-snapshot tests of tests/scoring train and score on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pdm.dsp.bearings import lookup_bearing
from pdm.sources.simulator import FaultSpec, SimSpec, simulate


def write_snapshot(
    path: Path,
    *,
    fs: float,
    rpm: float,
    bearing: str,
    noise_g: float,
    resonance_hz: float,
    seconds: float,
    seed: int,
    fault: FaultSpec | None = None,
) -> Path:
    """A two-channel CSV recording (``x_g``, ``y_g``) of a machine running with 1 mm/s rms of
    unbalance at 1× (zone A), plus ``fault``; returns ``path``."""
    unbalance = 1.0 * math.sqrt(2) * 2 * math.pi * (rpm / 60) / 9806.65  # 1 mm/s rms at 1×
    faults = [FaultSpec("unbalance", unbalance)] + ([fault] if fault else [])
    spec = SimSpec(fs=fs, duration_s=seconds, rpm=rpm, bearing=lookup_bearing(bearing),
                   noise_rms_g=noise_g, resonance_hz=resonance_hz, faults=tuple(faults),
                   seed=seed)  # fmt: skip
    np.savetxt(path, simulate(spec), fmt="%.6g", delimiter=",",
               header=f"# sample_rate_hz={fs:g}\nx_g,y_g", comments="")  # fmt: skip
    return path
