"""Cut a multichannel stream into fixed, overlapping windows, whatever its chunking.

:class:`Windower` keeps its streaming state explicitly (a buffer and the
time base of the current segment), so feeding a stream one sample at a time,
in ragged chunks, or whole gives exactly the same windows: same samples, same
start times (derived from the segment's first sample and an integer sample
index, never accumulated), same indices.

A discontinuity in time (a gap, or time going backwards) or a change of
sample rate ends the segment: the partial window is discarded, a
:class:`StreamEvent` says so and how many samples were left unused, and
windowing starts afresh from the next sample.

Samples become float32 g here. A value beyond float32's range becomes ±inf (quietly:
no numpy warning reaches the log); such a window, like one holding a sample beyond
:data:`MAX_ABS_G`, is not a measurement, and the feature extractor and sensor health
both mark it so (``valid: false``, fault ``nan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pdm.core.chunk import Chunk

__all__ = ["MAX_ABS_G", "StreamEvent", "Window", "Windower"]

#: The largest ``|sample|``, g, that can be a measurement. Shock accelerometers end near
#: 1e5 g; a cell of 1e30 is a wrong unit, a corrupt file or a hostile peer. It also keeps
#: the float32 DSP exact enough and finite: the fourth moment of a window of 2**22 samples
#: of 2e6 g (after the mean is removed) is ~7e31, far below float32's 3.4e38.
MAX_ABS_G = 1e6


@dataclass(frozen=True, slots=True)
class Window:
    """One window of samples.

    Attributes
    ----------
    index : running number of the window in the stream (0-based)
    segment : number of the continuous segment it belongs to (0-based)
    t_start : POSIX seconds of its first sample
    fs : sample rate, Hz
    data : (n_channels, n) float32, acceleration in g
    """

    index: int
    segment: int
    t_start: float
    fs: float
    data: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A reset of the windowing: why, when, and what was left unused."""

    kind: Literal["gap", "time_backwards", "rate_change"]
    t: float
    detail: str
    unused_samples: int


class Windower:
    """Fixed-length, overlapping windows from chunks of any size.

    Parameters
    ----------
    n : window length, samples
    hop : samples between window starts (``n`` for no overlap)
    scale : (n_channels,) multipliers from the channels' units to g
    max_gap_s : a time discontinuity larger than this resets the window; the
        default (None) allows 1.5 sample periods
    """

    def __init__(
        self, n: int, hop: int, scale: npt.ArrayLike, *, max_gap_s: float | None = None
    ) -> None:
        if not 1 <= hop <= n:
            raise ValueError(f"{hop=} must be in [1, n={n}]")
        self.n = n
        self.hop = hop
        self.scale = np.asarray(scale, dtype=np.float64)
        self.n_channels = int(self.scale.shape[0])
        self._unit = bool(np.all(self.scale == 1.0))  # every channel in g: a plain copy
        self.max_gap_s = max_gap_s
        # Capacity of a few windows keeps compaction rare (it moves < n samples).
        self._cap = max(4 * n, n + 4 * hop)
        self._buf = np.empty((self.n_channels, self._cap), dtype=np.float32)
        self._r = 0  # buffer position of the next window's first sample
        self._w = 0  # buffer write position
        self.fs: float | None = None
        self.index = 0
        self.segment = -1
        self._seg_t0 = 0.0  # time of the segment's first sample
        self._seg_pos = 0  # segment sample index of buffer position 0
        self._seg_samples = 0  # samples received in this segment
        self._seg_covered = 0  # segment sample index just past the last window
        self.windows_emitted = 0

    def _tolerance(self) -> float:
        assert self.fs is not None
        tol = 1.5 / self.fs
        return max(tol, self.max_gap_s) if self.max_gap_s else tol

    def _new_segment(self, t0: float) -> None:
        self.segment += 1
        self._seg_t0 = t0
        self._seg_pos = self._seg_samples = self._seg_covered = 0
        self._r = self._w = 0

    def push(self, chunk: Chunk) -> tuple[list[Window], list[StreamEvent]]:
        """Feed one chunk; returns the windows it completed and any reset events."""
        data = chunk.data
        if data.ndim != 2 or data.shape[1] != self.n_channels:
            raise ValueError(f"chunk shape {data.shape} != (n_samples, {self.n_channels})")
        events: list[StreamEvent] = []
        if self.fs is None:
            self.fs = float(chunk.fs)
            self._new_segment(chunk.t0)
        elif chunk.fs != self.fs:
            unused = self._unused()
            events.append(
                StreamEvent(
                    "rate_change", chunk.t0, f"sample rate {self.fs:g} -> {chunk.fs:g} Hz", unused
                )
            )
            self.fs = float(chunk.fs)
            self._new_segment(chunk.t0)
        else:
            expected = self._seg_t0 + self._seg_samples / self.fs
            jump = chunk.t0 - expected
            if abs(jump) > self._tolerance():
                kind: Literal["gap", "time_backwards"] = "gap" if jump > 0 else "time_backwards"
                events.append(
                    StreamEvent(kind, chunk.t0, f"time jumped by {jump:+.6g} s", self._unused())
                )
                self._new_segment(chunk.t0)
        windows: list[Window] = []
        m = data.shape[0]
        pos = 0
        buf, n, hop = self._buf, self.n, self.hop
        while pos < m:
            if self._w == self._cap:
                keep = self._w - self._r
                buf[:, :keep] = buf[:, self._r : self._w]
                self._seg_pos += self._r
                self._w, self._r = keep, 0
            take = min(self._cap - self._w, m - pos)
            if self._unit and data.dtype == np.float32:
                # float32 into float32 (the network's frames): nothing can overflow, and the
                # error-state switch cost a third of the copy of a 2560-sample chunk.
                buf[:, self._w : self._w + take] = data[pos : pos + take].T
            else:
                self._cast(data[pos : pos + take], buf[:, self._w : self._w + take])
            self._w += take
            pos += take
            while self._w - self._r >= n:
                seg_index = self._seg_pos + self._r
                windows.append(
                    Window(
                        self.index,
                        self.segment,
                        self._seg_t0 + seg_index / self.fs,
                        self.fs,
                        buf[:, self._r : self._r + n].copy(),
                    )
                )
                self.index += 1
                self._seg_covered = seg_index + n
                self._r += hop
        self._seg_samples += m
        return windows, events

    def _cast(self, part: npt.NDArray[Any], out: npt.NDArray[np.float32]) -> None:
        """``part`` (m, n_channels) in the channels' units into ``out`` (n_channels, m) in g."""
        # over="ignore": a float64 value beyond float32's range becomes inf, and the
        # window holding it is invalid (see MAX_ABS_G); the log gets no warning.
        with np.errstate(over="ignore"):
            if self._unit:
                out[...] = part.T
            else:
                np.multiply(part.T, self.scale[:, None], out=out, casting="unsafe")

    def _unused(self) -> int:
        """Samples of the current segment that no window has covered."""
        return self._seg_samples - self._seg_covered if self.segment >= 0 else 0

    def tail_samples(self) -> int:
        """Samples received after the last complete window (unused if the stream ends now)."""
        return self._unused()
