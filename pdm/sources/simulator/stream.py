"""The simulator as a stream of chunks, the same samples however the stream is cut
(:class:`Simulator`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from pdm.errors import ConfigError, InputError
from pdm.sources.base import Chunk
from pdm.sources.simulator.signals import (
    Synth,
)
from pdm.sources.simulator.specs import (
    MAX_CHUNK_SAMPLES,
    SimSpec,
)


class Simulator:
    """A :class:`pdm.sources.base.Source` that yields a simulated recording.

    Parameters
    ----------
    spec : SimSpec
        What to simulate; ``duration_s=math.inf`` streams for ever.
    chunk_samples : int
        Samples per chunk, 1 to :data:`MAX_CHUNK_SAMPLES` (the last one may be
        shorter). The samples do not depend on it.

    Examples
    --------
    >>> with Simulator(SimSpec(duration_s=1.0), chunk_samples=10000) as src:
    ...     [c.n_samples for c in src.chunks()]
    [10000, 10000, 5600]
    """

    def __init__(self, spec: SimSpec | None = None, *, chunk_samples: int = 8192) -> None:
        # Bounded: a chunk is buffered whole, so an endless stream asked for chunks of 2**40
        # samples would generate blocks until memory ran out.
        if (
            isinstance(chunk_samples, bool)
            or not isinstance(chunk_samples, int | np.integer)
            or not 1 <= chunk_samples <= MAX_CHUNK_SAMPLES
        ):
            raise ConfigError(
                f"chunk_samples={chunk_samples!r} must be an integer in 1..{MAX_CHUNK_SAMPLES}"
            )
        self.spec = spec if spec is not None else SimSpec()
        self.chunk_samples = int(chunk_samples)
        self.channels: tuple[str, ...] = self.spec.channels
        self.sample_rate_hz: float = self.spec.fs
        self._closed = False

    def chunks(self) -> Iterator[Chunk]:
        """Yield the recording from its start; each call starts over with the same samples."""
        if self._closed:
            raise InputError("the simulator is closed")
        spec = self.spec
        total = spec.n_samples
        synth = Synth(spec)
        cs = self.chunk_samples
        emitted = 0  # samples yielded so far
        made = 0  # samples generated so far
        pending: list[npt.NDArray[np.float64]] = []
        n_pending = 0
        while total is None or emitted < total:
            while n_pending < cs and (total is None or made < total):
                blk = synth.block()
                if total is not None:
                    blk = blk[: total - made]
                made += blk.shape[0]
                pending.append(blk)
                n_pending += blk.shape[0]
            buf = np.concatenate(pending) if len(pending) > 1 else pending[0]
            take = min(cs, n_pending)
            yield Chunk(
                data=np.ascontiguousarray(buf[:take]),
                fs=spec.fs,
                t0=spec.start_time + emitted / spec.fs,
                channels=spec.channels,
            )
            emitted += take
            rest = buf[take:]
            pending = [rest] if rest.shape[0] else []
            n_pending = rest.shape[0]
            if self._closed:
                return

    def close(self) -> None:
        """Stop: a running :meth:`chunks` generator ends after its current chunk."""
        self._closed = True

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
