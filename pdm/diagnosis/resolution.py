"""The window a diagnosis needs: bins fine enough for the bearing's lines.

A defect line must be told from its neighbours: from the shaft harmonics (a line
within a bin of one is in doubt, :mod:`pdm.diagnosis.rules`), from the other
families' lines, and from 0 Hz (the cage line, FTF ≈ 0.4 × shaft speed). So the bin
width ``df = fs / n`` should be at most

* a quarter of FTF (the cage line four bins clear of 0 Hz),
* 1 % of BPFO (slip moves lines by 1–2 %: resolved, not smeared into one bin), and
* 1/16 of the shaft frequency (shaft harmonics 16 bins apart),

with ``n`` a power of two between 4096 and 262144 samples, and short enough that the
recording holds ``min_windows`` half-overlapping windows to average (fewer windows
make a noisier floor and stricter thresholds; finer bins beyond these limits help
less than more windows do).
"""

from __future__ import annotations

import math

__all__ = ["choose_window", "least_window", "target_bin_hz"]

MIN_WINDOW = 4096
MAX_WINDOW = 262144


def target_bin_hz(shaft_hz: float, defect_multiples: dict[str, float] | None) -> float:
    """The widest bin (Hz) the lines at shaft frequency ``shaft_hz`` allow (module docstring)."""
    df = shaft_hz / 16.0
    if defect_multiples is not None:
        df = min(
            df, defect_multiples["ftf"] * shaft_hz / 4.0, 0.01 * defect_multiples["bpfo"] * shaft_hz
        )
    return df


def choose_window(
    fs: float,
    shaft_hz: float,
    defect_multiples: dict[str, float] | None,
    n_samples: int | None = None,
    *,
    min_windows: int = 8,
) -> int:
    """Window length (samples, a power of two) for diagnosing a recording.

    Parameters
    ----------
    fs : sample rate, Hz
    shaft_hz : the (lowest expected) shaft frequency, Hz
    defect_multiples : the bearing's defect frequencies in shaft orders, or None
    n_samples : samples in the recording (None: not limited)
    min_windows : half-overlapping windows the recording should hold

    Examples
    --------
    >>> from pdm.dsp.bearings import BEARINGS
    >>> m = BEARINGS["6205"].defect_multiples()
    >>> choose_window(12000.0, 1797 / 60, m), choose_window(48000.0, 1797 / 60, m)
    (16384, 65536)
    >>> choose_window(48000.0, 1797 / 60, m, n_samples=243_938)
    32768
    """
    if not (fs > 0 and shaft_hz > 0):
        raise ValueError(f"{fs=} and {shaft_hz=} must be > 0")
    want = fs / target_bin_hz(shaft_hz, defect_multiples)
    n = 2 ** math.ceil(math.log2(max(want, MIN_WINDOW)))
    n = min(n, MAX_WINDOW)
    if n_samples is not None:
        # n · (1 + (min_windows − 1) / 2) samples hold min_windows half-overlapping windows.
        fit = n_samples / (1.0 + (min_windows - 1) / 2.0)
        while n > MIN_WINDOW and n > fit:
            n //= 2
        while n > 256 and n > n_samples:
            n //= 2
    return int(n)


def least_window(fs: float, shaft_hz: float, bins_per_order: float) -> int:
    """The shortest power-of-two window (samples, at most :data:`MAX_WINDOW`) whose bins
    put ``bins_per_order`` of them in a shaft order at ``shaft_hz`` (``n ≥ k·fs/f``): the
    least a model's window needs for the diagnosis to read bearing lines at all
    (:attr:`pdm.diagnosis.rules.Rules.min_bins_per_order_bearing`).

    >>> least_window(50000.0, 570 / 60, 3.5), least_window(25600.0, 1425 / 60, 3.5)
    (32768, 4096)
    """
    if not (fs > 0 and shaft_hz > 0 and bins_per_order > 0):
        raise ValueError(f"{fs=}, {shaft_hz=} and {bins_per_order=} must be > 0")
    n = 2 ** math.ceil(math.log2(max(bins_per_order * fs / shaft_hz, 1.0)))
    return int(min(n, MAX_WINDOW))
