"""The benchmarks' stream and its test signal: one shape and one window every phase measures."""

from __future__ import annotations

import numpy as np

__all__ = ["CHANNELS", "ENVELOPE_BAND", "FS", "OVERLAP", "RPM", "N", "synthetic_window"]

FS = 25600.0
N = 16384
CHANNELS = 3
OVERLAP = 0.5
RPM = 1480.0
ENVELOPE_BAND = (2000.0, 5000.0)


def synthetic_window(seed: int = 0) -> np.ndarray:
    """A realistic (3, N) float32 window: shaft tones, bearing-like impacts and noise, in g."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / FS
    fr = RPM / 60
    x = 0.05 * np.sin(2 * np.pi * fr * t) + 0.02 * np.sin(2 * np.pi * 2 * fr * t)
    impacts = np.zeros(N)
    impacts[(np.arange(0, t[-1], 1 / 88.5) * FS).astype(int)] = 1.0
    ring = np.exp(-np.arange(200) / 30) * np.sin(2 * np.pi * 3500 * np.arange(200) / FS)
    x = x + 0.5 * np.convolve(impacts, ring)[:N]
    return (x + 0.02 * rng.standard_normal((CHANNELS, N))).astype(np.float32)
