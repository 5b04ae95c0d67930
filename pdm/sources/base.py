"""What every source yields: chunks of multichannel samples with a time base.

Sources come in two kinds, both yielding :class:`Chunk` (defined on the ground floor,
:mod:`pdm.core.chunk`, so the DSP can take it too):

* a :class:`Source` is *pulled*: an iterable of chunks (a CSV recording, the simulator);
* a :class:`PushSource` *pushes*: data arrives when its senders send it (the TCP stream
  input, the MQTT input), and it hands each chunk to a callback with the id it names.

Chunks may have any length, from one sample to millions; the windower
(:mod:`pdm.dsp.windows`) turns them into fixed windows and does not care how
the stream was cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from pdm.core.chunk import Chunk

__all__ = ["Chunk", "OnChunk", "OnEvent", "PushSource", "Source"]

#: ``on_chunk(stream_id, chunk)``: a chunk from the network and the machine or sensor id it
#: names. Raising a :class:`~pdm.errors.PdmError` rejects the data (a
#: :class:`~pdm.sources.codec.FrameRefused` names its cause); the source counts it.
OnChunk = Callable[[str, Chunk], object]
#: ``on_event(kind, detail)``: a connection event (``stream_connected``, ``mqtt_rejected``,
#: ...: the kind names its input), ``detail`` one line starting with the peer or topic.
OnEvent = Callable[[str, str], object]


class Source(Protocol):
    """Anything that yields chunks; a context manager that releases its resources."""

    channels: tuple[str, ...]
    sample_rate_hz: float

    def chunks(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


class PushSource(Protocol):
    """A live input that pushes chunks: the TCP stream server, the MQTT subscriber.

    The service starts each with its routing callbacks, stops it within a deadline, and reads
    its counters for the metrics; it knows nothing else of the transport.
    """

    #: The input's name: the ``input`` label of its metrics (``tcp``, ``mqtt``).
    name: str

    @property
    def address(self) -> str:
        """Where it takes data from, for the log: ``HOST:PORT``, a broker URL (no secret)."""
        ...

    def start(self, on_chunk: OnChunk, on_event: OnEvent) -> None:
        """Begin taking data (in the background): ``on_chunk`` for each chunk, ``on_event``
        for each connection event. Raises :class:`~pdm.errors.InputError` when it cannot
        (an address in use)."""
        ...

    def stop(self, deadline: float) -> None:
        """Stop taking data and release the transport, by ``deadline`` (``time.monotonic()``
        seconds) at the latest. Idempotent."""
        ...

    def refused(self) -> dict[str, int]:
        """Connections or messages refused since start, by cause (for the metrics)."""
        ...
