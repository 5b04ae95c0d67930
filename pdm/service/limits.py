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

**File descriptors** (red team 2026-12-07, docs/service.md "Open files"): every connection
costs one, and a process that runs out of them fails wherever it next opens something —
an accept (asyncio's servers then logged a traceback per failed accept, 43,667 of them in
a minute, and /health went unanswered), but as easily the history's SQLite file, the spool,
the alarm state or a relay's socket. So the service (a) raises its soft open-files limit to
the hard one at start (:func:`raise_open_files_limit`), (b) keeps :func:`reserved_fds` for its
own files and peers, never for clients, and (c) caps each listening surface so that the sum
of their caps stays within the rest (:func:`fit_open_files`): the control API, the OPC UA and
Modbus servers have fixed caps (:func:`surface_fds`); the stream input gets what is left, at
most what its limits ask — a stream limit cut to fit is said once at start, and a limit that
cannot give every configured sensor a connection of its own is a :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import resource
from collections.abc import Sequence
from dataclasses import dataclass

from pdm.config import Pipeline
from pdm.errors import ConfigError

__all__ = [
    "FIRST_FRAME_MIN_S",
    "InputLimits",
    "connection_limit",
    "first_frame_s",
    "fit_open_files",
    "raise_open_files_limit",
    "reserved_fds",
    "service_surface_fds",
    "streams",
    "surface_fds",
]

#: The shortest first-frame deadline, s.
FIRST_FRAME_MIN_S = 30.0
#: Connections beyond twice the sensors (a few peers reconnecting, a commissioning sender).
CONNECTION_MARGIN = 64
#: The most connections a receiver serves (file descriptors are the real bound; the
#: service raises its soft limit to the hard one at start).
MAX_CONNECTIONS = 65536
#: Descriptors kept for the service's own use whatever the clients do: the history store and
#: its spool, the alarm state, model files, logs, the MQTT session, webhooks, the selectors
#: and wake-up pipes of its threads (a 2-machine service holds ~30 once started) ...
RESERVED_FDS = 64
#: ... and per machine (its relay's connection, a webhook in flight, a capture being written).
RESERVED_FDS_PER_MACHINE = 4


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


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit (RLIMIT_NOFILE) to the hard one; returns the soft
    limit now in force (a very large number when unlimited). A Debian shell gives 1024 soft
    of 1048576 hard, systemd 1024 of 524288: a service sized for its plant needs more than
    1024, and the hard limit is the administrator's stated bound."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ValueError, OSError):
        return 1 << 30  # unknown: nothing to fit (the platform has no such limit)
    return 1 << 30 if soft == resource.RLIM_INFINITY else int(soft)


def reserved_fds(machines: int) -> int:
    """Descriptors never given to network clients (see the module docstring)."""
    return RESERVED_FDS + RESERVED_FDS_PER_MACHINE * machines


def surface_fds(*, api_connections: int | None, opcua: bool, modbus: bool) -> int:
    """Descriptors the capped surfaces beside the stream input may hold at once: the control
    API's requests and the pushed-out connections whose threads have not ended yet
    (guarded_http), the OPC UA and Modbus servers' clients; each with its listener and the
    newcomer accepted when every slot is taken (closed, or pushing one out, at once)."""
    n = 0
    if api_connections is not None:
        from pdm.service.guarded_http import GuardedHTTPServer

        n += api_connections * (1 + GuardedHTTPServer.LEAVING_PER_SLOT) + 2
    if opcua:
        from pdm.publish.opcua import MAX_CONNECTIONS as OPCUA_CONNECTIONS  # (asyncua: heavy)

        n += OPCUA_CONNECTIONS + 2
    if modbus:
        from pdm.publish.modbus import MAX_CONNECTIONS as MODBUS_CONNECTIONS

        n += MODBUS_CONNECTIONS + 2
    return n


def service_surface_fds(api: str | None, publish: object) -> int:
    """:func:`surface_fds` of a service's options: ``--api`` (an address, or None) and its
    ``[publish]`` table (``PublishTable`` or None; the OPC UA and Modbus servers listen)."""
    from pdm.service.api import DEFAULT_MAX_CONNECTIONS

    return surface_fds(
        api_connections=DEFAULT_MAX_CONNECTIONS if api else None,
        opcua=getattr(publish, "opcua", None) is not None,
        modbus=getattr(publish, "modbus", None) is not None,
    )


def fit_open_files(
    limits: InputLimits,
    pipelines: Sequence[Pipeline],
    *,
    others: int,
    open_files: int,
    what: str = "stream input: {n} connections asked",
) -> tuple[InputLimits, str | None]:
    """``limits`` with the stream input's connections cut to what ``open_files`` holds beside
    the ``others`` surfaces' descriptors and :func:`reserved_fds`; and a line for the log
    when it was cut (else None), which starts with ``what`` (``{n}``: the connections asked).

    Raises
    ------
    ConfigError
        Not even one connection per configured sensor fits.
    """
    room = open_files - reserved_fds(len(pipelines)) - others - 2  # its listener, a newcomer
    if limits.max_connections <= room:
        return limits, None
    need = streams(pipelines)
    where = (
        f"the open-files limit ({open_files}; ulimit -n, systemd LimitNOFILE=) leaves "
        f"{max(room, 0)} stream connection(s) beside {others} for the control API, OPC UA "
        f"and Modbus servers and {reserved_fds(len(pipelines))} kept for the service's own files"
    )
    if room < need:
        raise ConfigError(
            f"{where}; the {need} configured sensor(s) need one each: raise the hard limit"
        )
    cut = dataclasses.replace(
        limits, max_connections=room, max_per_peer=min(limits.max_per_peer, room)
    )
    return cut, f"{what.format(n=limits.max_connections)}, {where}: {room} served"
