"""The stream input's connection limits, sized from the configured machines.

A plant may put hundreds of sensors behind one gateway address, open all their
connections at once and start each stream when its acquisition has a first block. Limits
that are constants (512 connections a worker, 64 from one address, a first frame within
5 s) reset such sensors silently as soon as the plant is larger than the constant; the
bench's 430 machines from 127.0.0.1 were reset at the door when connecting them took
longer than 1.7 s (each then waited 3.3 s for its staggered first frame). So the limits
follow the pipelines:

* **connections**: every sensor may have a connection of its own, and a DAQ that
  reconnects after a cable fault may hold a second one until the first times out —
  ``2 × sensors + 64`` (:func:`connection_limit`);
* **from one address**: as many (a gateway may carry every sensor); an operator whose
  DAQs have addresses of their own may set ``--max-per-peer`` lower;
* **first frame**: within ``max(30 s, 2 × the longest window)`` of connecting
  (:func:`first_frame_s`): a DAQ may send a window's worth of samples as its first frame.

What still bounds a hostile peer is unchanged: the frame size, the bytes of incomplete
frames across connections, a frame's own deadline, and — because idle connections are
what a longer first-frame deadline lets through — a new connection that finds every slot
taken pushes out the oldest that has sent nothing yet, else the oldest that has not
completed a frame yet (the supervisor's door did so already).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pdm.config import Pipeline

__all__ = ["FIRST_FRAME_MIN_S", "InputLimits", "connection_limit", "first_frame_s", "streams"]

#: The shortest first-frame deadline, s.
FIRST_FRAME_MIN_S = 30.0
#: Connections beyond twice the sensors (a few peers reconnecting, a commissioning sender).
CONNECTION_MARGIN = 64
#: The most connections a receiver serves (file descriptors are the real bound; the
#: service raises its soft limit to the hard one at start).
MAX_CONNECTIONS = 65536


def streams(pipelines: Sequence[Pipeline]) -> int:
    """Connections the configured machines may legitimately hold at once: one per sensor
    (a DAQ per machine, named by the machine id, holds fewer)."""
    return sum(max(1, len(p.sensors)) for p in pipelines)


def connection_limit(pipelines: Sequence[Pipeline]) -> int:
    """``2 × streams + CONNECTION_MARGIN``, at most :data:`MAX_CONNECTIONS`."""
    return min(MAX_CONNECTIONS, 2 * streams(pipelines) + CONNECTION_MARGIN)


def first_frame_s(pipelines: Sequence[Pipeline]) -> float:
    """How long a new connection may wait before its first frame's header, s."""
    longest = max(
        (
            p.acquisition.window_samples / float(p.acquisition.sample_rate_hz)
            for p in pipelines
            if p.acquisition.sample_rate_hz
        ),
        default=0.0,
    )
    return max(FIRST_FRAME_MIN_S, 2.0 * longest)


@dataclass(frozen=True)
class InputLimits:
    """The limits a service's stream input applies (see the module docstring)."""

    max_connections: int
    max_per_peer: int
    first_frame_s: float

    @classmethod
    def sized(
        cls,
        pipelines: Sequence[Pipeline],
        *,
        max_connections: int | None = None,
        max_per_peer: int | None = None,
    ) -> InputLimits:
        """Sized from ``pipelines``; an explicit ``max_connections`` or ``max_per_peer``
        (the command's options) wins."""
        total = max_connections if max_connections is not None else connection_limit(pipelines)
        peer = min(total, max_per_peer) if max_per_peer is not None else total
        return cls(total, peer, first_frame_s(pipelines))

    def describe(self) -> str:
        """One line for the log: what the input will take."""
        return (
            f"up to {self.max_connections} connections, {self.max_per_peer} from one address, "
            f"a first frame within {self.first_frame_s:g} s"
        )
