"""What every source yields: chunks of multichannel samples with a time base.

A *source* (CSV replay, simulator, later TCP) is an iterable of :class:`Chunk`
(defined on the ground floor, :mod:`pdm.core.chunk`, so the DSP can take it too).
Chunks may have any length, from one sample to millions; the windower
(:mod:`pdm.dsp.windows`) turns them into fixed windows and does not care how
the stream was cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pdm.core.chunk import Chunk

__all__ = ["Chunk", "Source"]


class Source(Protocol):
    """Anything that yields chunks; a context manager that releases its resources."""

    channels: tuple[str, ...]
    sample_rate_hz: float

    def chunks(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...
