"""What every source yields: a chunk of multichannel samples with a time base.

Chunks may have any length, from one sample to millions; the windower
(:mod:`pdm.dsp.windows`) turns them into fixed windows and does not care how
the stream was cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Chunk"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A block of consecutive samples from one stream.

    Attributes
    ----------
    data : (n_samples, n_channels) float64, or float32 from a float32 stream
        Samples in the channels' own units (g or m/s², as the pipeline says).
        NaN marks a sample that could not be read (only with ``on_bad_data="invalidate"``).
    fs : float
        Sample rate in Hz.
    t0 : float
        Time of the first sample, POSIX seconds (UTC).
    channels : tuple of str
        Channel (column) names, in the order of ``data``'s columns.
    first_line : int or None
        1-based line in the source file of the first sample, for messages.
    bad_samples : int
        How many samples in this chunk were replaced by NaN because the input was bad.
    received : float or None
        ``time.monotonic()`` when the chunk's last sample reached the appliance (live
        inputs; None for recordings): the start of the decision latency the service
        measures (``pdm_decision_latency_seconds``).
    """

    data: npt.NDArray[np.floating]
    fs: float
    t0: float
    channels: tuple[str, ...]
    first_line: int | None = None
    bad_samples: int = 0
    notes: tuple[str, ...] = field(default=())
    received: float | None = None

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])
