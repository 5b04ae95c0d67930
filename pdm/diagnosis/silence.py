"""Channels that carry no signal: zeros, a constant, nothing above the samples' rounding.

A dead sensor, an open cable or a stuck acquisition channel gives windows whose spectra are
zeros or the rounding of a constant; lines read there are no evidence of anything (a dead
channel's zeros were once a cage fault at 0.95). :class:`Silence` follows each channel's
windows as the engine averages them and says which ones have had no signal for as long as
the averages remember (docs/diagnosis.md §11).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm.dsp.features import TIME_FEATURES

__all__ = ["FLAT_RELATIVE", "Signal", "Silence", "flat"]

#: float32's relative step, 2⁻²³: a window whose channel varies (AC rms) by no more than this
#: times its level (``|mean| + peak``) holds nothing but its samples' rounding — no signal.
FLAT_RELATIVE = float(np.finfo(np.float32).eps)
_MEAN, _RMS, _PEAK = (TIME_FEATURES.index(k) for k in ("mean_g", "rms_g", "peak_g"))
# Side by side, so that a window's three are one slice (a gathered copy cost 5x as much).
assert (_RMS, _PEAK) == (_MEAN + 1, _MEAN + 2), TIME_FEATURES


def flat(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Per channel of a window's features ((channels, features), the time features first, as
    the extractor gives them), whether it holds no signal: an AC rms of at most
    :data:`FLAT_RELATIVE` times its level."""
    return values[:, _RMS] <= FLAT_RELATIVE * (np.abs(values[:, _MEAN]) + values[:, _PEAK])


@dataclass(frozen=True, slots=True)
class Signal:
    """What the engine's judgement needs of its channels' signals (:meth:`Silence.state`).

    Attributes
    ----------
    no_signal : per channel, why it carries no signal ('' when it does); () when all do
    zero_power : (C,) one float32 step of each channel's level, squared (g²): the power at
        or below which its spectra are numerical zero (the samples' rounding)
    """

    no_signal: tuple[str, ...]
    zero_power: npt.NDArray[np.float64]


class Silence:
    """Per channel, the windows in a row that held no signal, and the last one's level.

    >>> s = Silence(2)
    >>> v = np.zeros((2, len(TIME_FEATURES)))
    >>> v[0, :3] = 0.0, 0.1, 0.4  # mean, AC rms, peak (g): a live channel
    >>> v[1, :3] = 0.73, 0.0, 0.0  # a constant
    >>> s.add(v)
    >>> live, dead = s.reasons(["x", "y"], count=1, memory=32.0)
    >>> live, dead[:42]
    ('', 'y: no signal: rms 0 g about 0.73 g in the ')
    """

    def __init__(self, channels: int) -> None:
        self._run = [0] * channels
        self._last = [(0.0, 0.0, 0.0)] * channels  # mean, AC rms, peak (g) of the last window

    def reset(self) -> None:
        self._run = [0] * len(self._run)

    def add(self, values: npt.NDArray[np.float64]) -> None:
        """Take an averaged window's features ((channels, features), as the extractor gives
        them: the time features first). Plain floats: for a few channels, numpy's cost per
        call would be most of it (6 µs a window against 1.4, measured with timeit on 3 channels)."""
        rows = values[:, _MEAN : _PEAK + 1].tolist()
        self._run = [
            run + 1 if rms <= FLAT_RELATIVE * (abs(mean) + peak) else 0
            for run, (mean, rms, peak) in zip(self._run, rows, strict=True)
        ]
        self._last = rows

    def state(self, names: Sequence[str], count: int, memory: float) -> Signal:
        """The :class:`Signal` of the averages now: :meth:`reasons`, and each channel's
        numerical zero from its last window's level (``|mean| + peak``)."""
        level = np.array([abs(mean) + peak for mean, _rms, peak in self._last])
        return Signal(self.reasons(names, count, memory), (FLAT_RELATIVE * level) ** 2)

    def reasons(self, names: Sequence[str], count: int, memory: float) -> tuple[str, ...]:
        """Per channel, why it carries no signal ('' when it does), or () when every one does:
        a channel whose every window of the segment (``count`` averaged), or of the last
        ``memory`` (the averages' memory, what the average is still mostly made of), held
        no signal."""
        need = min(count, math.ceil(memory))
        if count == 0 or max(self._run) < need:
            return ()
        return tuple(
            _reason(name, mean, rms, min(run, count)) if run >= need else ""
            for name, run, (mean, rms, _peak) in zip(names, self._run, self._last, strict=True)
        )


def _reason(name: str, mean: float, rms: float, windows: int) -> str:
    what = "all zeros" if mean == 0.0 and rms == 0.0 else f"rms {rms:.3g} g about {mean:.6g} g"
    return (
        f"{name}: no signal: {what} in the last {windows} window(s), nothing above the "
        "samples' rounding; a dead sensor, cable or acquisition channel is likely"
    )
