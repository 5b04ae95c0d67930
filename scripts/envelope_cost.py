"""CPU time per window of the default extraction (the bench's speed-searched quick-flag
extractor: 25.6 kHz, 3 × 16384 samples, batches of 8, automatic band), for comparing two
checkouts of the envelope (docs/diagnosis.md §14):

    cd CHECKOUT && PYTHONPATH=. python scripts/envelope_cost.py [--reps 41]

Prints the median over ``reps`` batches of ``time.process_time`` per window, µs, and the
same for the batch's bare ``rfft`` (their ratio is what ``dsp_ratio_to_batched_rfft``
reports). Compare checkouts alternately, in one session: timing here is noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.fft as sfft

from pdm.dsp.bearings import lookup_bearing
from pdm.sources.simulator import FaultSpec, SimSpec, simulate
from pdm.tools.bench_dsp import BATCH, FS, N, speed_searched_extractor


def pool() -> np.ndarray:
    """(BATCH, 3, N) float32: an outer-race fault at 1480 r/min, three channels."""
    spec = SimSpec(fs=FS, duration_s=BATCH * N / FS, rpm=1480.0, bearing=lookup_bearing("6205"),
                   channels=("x_g", "y_g", "z_g"), faults=(FaultSpec("bpfo", 0.3),), seed=1)  # fmt: skip
    x = simulate(spec)[: BATCH * N].astype(np.float32)
    return np.ascontiguousarray(x.reshape(BATCH, N, 3).transpose(0, 2, 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    ex = speed_searched_extractor()
    windows = pool()
    band = ex.extract_batch(windows)[0].envelope_band_key  # compile, plan, choose the band
    times: dict[str, list[float]] = {"band in force": [], "band chosen": [], "rfft": []}
    for _ in range(args.reps):
        t0 = time.process_time()
        ex.extract_batch(windows, envelope_band_hz=band)  # what a stream does between choices
        t1 = time.process_time()
        ex.extract_batch(windows)  # a pass that chooses the band (every 64+ windows)
        t2 = time.process_time()
        sfft.rfft(windows, axis=-1)
        t3 = time.process_time()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[key].append(dt / BATCH * 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"band {band[0]:.0f}-{band[1]:.0f} Hz: extract {med['band in force']:.0f} us/window "
        f"(ratio to rfft {med['band in force'] / med['rfft']:.2f}), with the band chosen "
        f"{med['band chosen']:.0f} us/window, rfft {med['rfft']:.0f} us/window"
    )


if __name__ == "__main__":
    main()
