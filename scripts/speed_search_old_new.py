"""Issue 18, as a measurement: the per-window speed search (``shaft_speeds_hz``) of an older
checkout against this one's, in one process, and what it costs beside the whole extraction.

    git worktree add --detach /tmp/pdm-old 80959fc
    .venv/bin/python scripts/speed_search_old_new.py /tmp/pdm-old [ROUNDS]

The older ``pdm/dsp/kernels.py`` is loaded beside this one under another module name (numba
compiles or loads it there). Three shapes, a batch of 8 windows of 1×, 2×, 3× and white noise
each, the search range given: 25.6 kHz, 16384 samples, 3 channels, 1330–1630 r/min (the
bench's headline extractor); 12 kHz, 4096, 1 channel, 1797 r/min ± 5 % (``--nominal-rpm``);
100 kHz, 65536, 1 channel, 600–6000 r/min (a wide range: the most bins searched). Old, new
and this checkout's whole ``extract_batch`` of the same windows are timed in turn, ROUNDS
rounds (default 15), in CPU time (``time.process_time``); printed are the medians per window.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from pdm.dsp import kernels
from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.dsp.spectrum import hann

SHAPES = [
    ("25.6 kHz, 16384, 3 ch, 1330-1630 r/min", 25600.0, 16384, 3, (1330.0, 1630.0), 1480.0),
    ("12 kHz, 4096, 1 ch, 1797 r/min +-5 %", 12000.0, 4096, 1, (1707.0, 1887.0), 1797.0),
    ("100 kHz, 65536, 1 ch, 600-6000 r/min", 100000.0, 65536, 1, (600.0, 6000.0), 1480.0),
]
BATCH = 8


def cpu_s(fn: Callable[[], object], reps: int) -> float:
    t0 = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t0) / reps


def main(old_root: str, rounds: int) -> None:
    spec = importlib.util.spec_from_file_location(
        "old_kernels", Path(old_root) / "pdm" / "dsp" / "kernels.py"
    )
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    for name, fs, n, n_ch, rpm_range, rpm in SHAPES:
        rng = np.random.default_rng(1)
        t = np.arange(n) / fs
        x = rng.normal(0.0, 0.05, (BATCH, n_ch, n))
        for h, a in ((1, 0.1), (2, 0.05), (3, 0.03)):
            x += a * np.sin(2 * np.pi * h * rpm / 60 * t + 1.0)
        fx = FeatureExtractor(
            fs,
            n,
            [ChannelSpec(f"c{c}", lookup_bearing("6205")) for c in range(n_ch)],
            rpm_range=rpm_range,
            envelope_band_hz=(2000.0, 5000.0),
        )
        rows = (x * hann(n)).reshape(BATCH * n_ch, n)
        spectra = np.fft.rfft(rows, axis=-1).astype(np.complex64)
        # the bins each harmonic is searched in, as FeatureExtractor sizes them
        df = fs / n
        ranges = np.array(
            [
                (
                    h,
                    max(1, math.floor(h * rpm_range[0] / 60 / df)),
                    math.ceil(h * rpm_range[1] / 60 / df),
                )
                for h in (1, 2, 3)
            ],
            dtype=np.int64,
        )
        args = (spectra, n_ch, ranges, df, (rpm_range[0] / 60, rpm_range[1] / 60), rpm / 60)
        xs = x.astype(np.float32)
        times: dict[str, list[float]] = {"old": [], "new": [], "extraction": []}
        for _ in range(rounds):
            times["old"].append(cpu_s(partial(old.shaft_speeds_hz, *args), 200))
            times["new"].append(cpu_s(partial(kernels.shaft_speeds_hz, *args), 200))
            times["extraction"].append(cpu_s(partial(fx.extract_batch, xs), 5))
        us = {k: 1e6 * statistics.median(v) / BATCH for k, v in times.items()}
        print(
            f"{name}: speed search {us['old']:.1f} -> {us['new']:.1f} us/window; "
            f"whole extraction {us['extraction']:.0f} us/window "
            f"(the search {us['new'] / us['extraction']:.1%} of it)"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15)
