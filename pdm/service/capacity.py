"""What the configured machines need of this machine, and whether it has it.

``pdm-edge check`` and ``pdm-edge run`` state it before anything starts, in one line:

    capacity: 300 machine(s) need 3750 windows/s, ~2.38 cores (1.4 × the extraction
    measured here, 132 µs a window, + 450 µs for the rest of the service); this machine
    sustains ~1.60 cores (2 usable × 0.8): WILL NOT FIT — the service will shed work
    (docs/service.md, "Overload"); deciding every window length instead of every hop it
    needs ~0.60 cores

**The cost model.** A window costs ``EXTRACTION_FACTOR × its feature extraction +
PER_WINDOW_US``. The extraction is **measured here, once, at start** — the pipeline's own
extractor on a few windows of noise of its shape, a batch of 4 as the service's rounds make
them, the median of 5; pipelines with the same DSP configuration are measured once. The two
coefficients come from the whole service under load on two window shapes (checked from
outside on the demo's shape only: docs/service.md, "Overload"): the extraction's share grows
with the window (the service extracts in rounds, with colder caches than a measurement in
a loop), the rest — reading the stream, scoring, the diagnosis, the alarm step, history,
the loop — is much the same for every window. Good to about ±25 %.

**What this machine sustains**: the cores this process may use (its CPU affinity, and a
cgroup v2 quota when there is one) × :data:`SUSTAINED_SHARE` — the share of a core at which
the service still holds real time (the bench's real-time phases held at 1.6–1.9 cores of 2)
— × the share the scheduler leaves the service's W processes (one per core, at most one per
machine) beside the work already running here: W / (W + L), L the 1-minute load average
measured before the service starts. On a shared 2-core VM at load 6–8 the service got ~0.5
cores of 2, and a capacity stated from the cores alone was 3× too high (docs/service.md,
"Overload").
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pdm.config import Pipeline
from pdm.processing import build_extractor
from pdm.service.shedding import max_skipped_run

__all__ = [
    "EXTRACTION_FACTOR",
    "PER_WINDOW_US",
    "SKIPPED_WINDOW_US",
    "SUSTAINED_SHARE",
    "Capacity",
    "estimate",
    "extraction_us",
    "fair_share",
    "other_load",
    "usable_cores",
]

#: A window's CPU in the service: this × its extraction measured here + PER_WINDOW_US.
EXTRACTION_FACTOR = 1.4
PER_WINDOW_US = 450.0
#: The share of each usable core at which the service still holds real time.
SUSTAINED_SHARE = 0.8
#: What a window the shedding skips still costs, µs: its samples are read and windowed, not
#: decided. Measured from outside at level 6 (docs/service.md, "Overload": 150 demo machines,
#: 459 decided and 1416 skipped windows a second in 0.47 cores, a decided window ~600 µs).
SKIPPED_WINDOW_US = 140.0


def usable_cores() -> float:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 ``cpu.max`` quota."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, float(quota) / float(period))
    except (OSError, ValueError):
        pass
    return max(cores, 0.01)


def extraction_us(pipeline: Pipeline, *, batch: int = 4, repeats: int = 5) -> float:
    """The pipeline's feature extraction on this machine, µs per window (see the module
    docstring)."""
    acq = pipeline.acquisition
    fs = float(acq.sample_rate_hz or 0.0)
    ex = build_extractor(pipeline, fs)
    rng = np.random.default_rng(0)
    shape = (len(pipeline.columns), acq.window_samples)  # (channels, samples), as windows are
    windows = [(0.1 * rng.standard_normal(shape)).astype(np.float32) for _ in range(batch)]
    ex.extract_windows(windows)  # warm: plans, buffers
    took = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ex.extract_windows(windows)
        took.append(time.perf_counter() - t0)
    return float(np.median(took)) / batch * 1e6


@dataclass(frozen=True)
class Capacity:
    """The configured machines' needs against this machine (see the module docstring)."""

    machines: int
    #: Windows the machines produce per second (each: sample rate / hop).
    windows_per_s: float
    #: ... and decided at the most shedding (every window length instead of every hop).
    windows_per_s_shedding: float
    #: Mean extraction per window over the machines, µs, measured here.
    extraction_us: float
    cores_needed: float
    cores_needed_shedding: float
    cores_usable: float
    cores_sustained: float
    #: The 1-minute load average of the other work on this machine when measured (0: none).
    load_avg: float = 0.0

    @property
    def fits(self) -> bool:
        return self.cores_needed <= self.cores_sustained

    def line(self) -> str:
        """One line: the need, what this machine sustains, and whether it fits."""
        head = (
            f"capacity: {self.machines} machine(s) need {self.windows_per_s:.0f} windows/s, "
            f"~{self.cores_needed:.2f} cores ({EXTRACTION_FACTOR:g} × the extraction measured "
            f"here, {self.extraction_us:.0f} µs a window, + {PER_WINDOW_US:.0f} µs for the rest "
            f"of the service); this machine sustains ~{self.cores_sustained:.2f} cores "
            f"({self.cores_usable:g} usable × {SUSTAINED_SHARE:g}"
            + (
                f" × {self.cores_sustained / (self.cores_usable * SUSTAINED_SHARE):.2f} left "
                f"beside a load average of {self.load_avg:.1f} from other work"
                if self.load_avg >= 0.05 and self.cores_usable > 0
                else ""
            )
            + ")"
        )
        if self.fits:
            return f"{head}: fits ({self.cores_needed / self.cores_sustained:.0%} of it)"
        shed = (
            f"; deciding every window length instead of every hop it needs "
            f"~{self.cores_needed_shedding:.2f} cores"
            + (
                ""
                if self.cores_needed_shedding <= self.cores_sustained
                else ", more than that too: machines will be parked (their relays dropped)"
            )
        )
        return (
            f'{head}: WILL NOT FIT — the service will shed work (docs/service.md, "Overload"){shed}'
        )


def estimate(pipelines: Sequence[Pipeline], *, load_avg: float | None = None) -> Capacity:
    """Measure and add up (pipelines without a sample rate are left out); ``load_avg``: the
    other work's load average, None to read it (:func:`other_load`)."""
    cost: dict[tuple[object, ...], float] = {}
    rate = rate_shed = cpu = cpu_shed = extracted = 0.0
    n = 0
    for p in pipelines:
        acq = p.acquisition
        if not acq.sample_rate_hz:
            continue
        n += 1
        key = _config_key(p)
        if key not in cost:
            cost[key] = extraction_us(p)
        w = float(acq.sample_rate_hz) / acq.hop_samples
        w_shed = w / (1 + max_skipped_run(acq.window_samples, acq.hop_samples))
        per = (EXTRACTION_FACTOR * cost[key] + PER_WINDOW_US) * 1e-6
        rate, rate_shed = rate + w, rate_shed + w_shed
        cpu += w * per
        cpu_shed += w_shed * per + (w - w_shed) * SKIPPED_WINDOW_US * 1e-6
        extracted += w * cost[key]
    cores = usable_cores()
    mean_us = extracted / rate if rate else math.nan
    load = other_load() if load_avg is None else load_avg
    sustained = cores * SUSTAINED_SHARE * fair_share(cores, n, load)
    return Capacity(n, rate, rate_shed, mean_us, cpu, cpu_shed, cores, sustained, load)


def other_load() -> float:
    """The 1-minute load average: runnable (and uninterruptible) tasks of the work already
    running here, before the service starts (0 where the platform has none)."""
    try:
        return max(0.0, float(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0.0


def fair_share(cores: float, machines: int, load: float) -> float:
    """The share of the usable cores the service's processes get beside ``load`` other
    runnable tasks when the scheduler shares the CPU fairly among tasks: W / (W + load), W
    its processes (one per core, at most one per machine). 1 with no other load."""
    w = max(1.0, min(math.floor(cores), float(machines)))
    return min(1.0, w / (w + max(0.0, load)))


def _config_key(p: Pipeline) -> tuple[object, ...]:
    """What the extraction's cost depends on (machines that differ only in their ids and
    bearings cost the same)."""
    acq = p.acquisition
    speed = p.machine.speed
    return (
        acq.sample_rate_hz,
        acq.window_samples,
        len(p.columns),
        None if speed is None else (speed.fixed_rpm, speed.search_rpm),
        str(p.envelope.band_hz),
        tuple((b.low_hz, b.high_hz) for b in p.bands),
    )
