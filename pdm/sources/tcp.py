"""Live input over TCP: a receiver of PDMS stream frames.

:class:`TcpStreamServer` accepts connections (loopback unless told otherwise), decodes
frames (:mod:`pdm.sources.codec`, the protocol of ``docs/stream-protocol.md``) into
:class:`~pdm.sources.base.Chunk` objects and hands them to a callback; a protocol violation
closes that one connection, and refusals are counted per cause and logged at a bounded rate.

Every violation is an :class:`~pdm.errors.InputError` with a one-line message
``stream from PEER, byte OFFSET: reason``, OFFSET counting from the first byte
the peer sent on that connection.

The frame codec is :mod:`pdm.sources.codec` (shared with the MQTT input and ``pdm-edge
send``), the stream keys :mod:`pdm.sources.stream_keys`, the silence watch
:mod:`pdm.sources.silence`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Self, cast

from pdm.core.net import ACCEPT_PAUSE_S, OUT_OF_RESOURCES, is_loopback
from pdm.errors import InputError, PdmError
from pdm.loglimit import LogLimiter
from pdm.sources.base import OnChunk, OnEvent
from pdm.sources.codec import (
    MAX_FRAME_BYTES,
    Frame,
    FrameDecoder,
    FrameRefused,
)
from pdm.sources.stream_keys import StreamKeys

__all__ = [
    "TcpInput",
    "TcpStreamServer",
    "peer_host",
    "peer_name",
]

log = logging.getLogger("pdm.sources.tcp")


# SO_LINGER on, 0 s: close() sends RST.
_LINGER_RESET = struct.pack("ii", 1, 0)

# recv_into() buffer of the server's I/O thread (one thread, so one buffer).
_RECV_BYTES = 256 * 1024


# ---------------------------------------------------------------------- server


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    host: str
    decoder: FrameDecoder
    connected: float  # monotonic s
    last_rx: float
    frames: int = 0
    held: int = 0  # bytes of an incomplete frame held by the decoder
    frame_started: float | None = None  # when the incomplete frame's first byte came
    received: bool = False  # any byte at all


def peer_name(addr: Any) -> str:
    """``HOST:PORT`` (``[HOST]:PORT`` for IPv6) of a socket address."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def peer_host(peer: str) -> str:
    """The address part of :func:`peer_name`'s ``HOST:PORT`` (the whole text otherwise).

    >>> peer_host("10.0.0.7:51234"), peer_host("[::1]:9000"), peer_host("peer")
    ('10.0.0.7', '::1', 'peer')
    """
    if peer.startswith("[") and "]:" in peer:
        return peer[1 : peer.index("]:")]
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else peer


class TcpStreamServer:
    """Receives PDMS frames over TCP and hands them on as chunks.

    One I/O thread (:mod:`selectors`) serves the listener and every connection,
    so ``on_chunk`` and ``on_event`` are never called concurrently (they run
    on that thread; a slow ``on_chunk`` slows every sender through TCP flow
    control rather than queueing data in memory). The receiver never writes to
    a connection: closing it is its only answer. A connection it refuses
    (protocol error, rejected data, a limit below) is reset (TCP RST); one that
    ends otherwise (the peer closed, idle, the receiver stops) is closed normally.

    **Limits** (every one a refusal, counted in :attr:`refused` by cause, and logged at
    most once per ``log_interval_s`` per cause with a count of the rest):

    * ``max_connections`` in all and ``max_per_peer`` from one address (``too_many``,
      ``per_peer``);
    * a connection must send its first byte within ``first_byte_timeout_s``
      (``no_data``), and a frame once started must be complete within
      ``frame_timeout_s`` (``slow_frame``): a peer that connects and waits, or trickles
      a frame byte by byte, does not hold a slot;
    * ``max_frame_bytes`` per frame, so per connection (``protocol``, at the header);
    * ``max_input_bytes`` of incomplete frames across all connections: past it, the
      connection whose incomplete frame is oldest is closed (``memory``) — a frame of a
      sender that writes it at once completes in milliseconds, one that is held back is
      the one to go.

    Parameters
    ----------
    host : str
        Address to listen on. The default is loopback; a DAQ on another machine
        needs an explicit ``"0.0.0.0"``, ``"::"`` or an interface address (and
        then anyone who can reach the port can feed data, unless ``keys``).
        ``""`` is refused, as Python would take it to mean every interface.
    port : int
        TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    on_chunk : callable(sensor_id, Chunk)
        Called for each frame with its samples as float64 in the channels' units
        (int16 frames already scaled). Raising a :class:`~pdm.errors.PdmError`
        (e.g. unknown sensor; a :class:`FrameRefused` names its cause) rejects the
        data: that connection is closed with a one-line ``rejected`` event. Any other
        exception is logged with its traceback and does the same.
    on_event : callable(kind, detail), optional
        ``kind`` is ``"connected"``, ``"disconnected"``, ``"protocol_error"``,
        ``"rejected"``, ``"refused"`` (a limit above) or ``"timeout"`` (``no_data``,
        ``slow_frame``); ``detail`` is one line starting with the peer. Called for every
        event (only the log lines are limited).
    max_connections : int
        Connections served at once; more are accepted and closed at once.
    idle_timeout_s : float or None
        Close a connection that sends nothing for this long between frames (a silent
        peer would otherwise hold a slot for ever). None: never.
    max_frame_bytes : int
        Largest frame accepted (default and maximum: the protocol's 64 MiB; a service
        sizes it from its pipelines with :func:`~pdm.sources.codec.frame_limit`).
    max_per_peer : int
        Connections from one address at once.
    first_byte_timeout_s, frame_timeout_s : float
        See the limits above.
    max_input_bytes : int, optional
        Bytes of incomplete frames held across all connections (default: 4 frames of
        ``max_frame_bytes``, at least 64 MiB).
    keys : StreamKeys, optional
        Take only frames signed with these keys (version 2; see :class:`~pdm.sources.codec.FrameDecoder`).
    log_interval_s : float
        At most one log line per cause per this many seconds.

    Attributes
    ----------
    port : int
        The bound port once started.
    frames, bytes_received, protocol_errors : int
        Totals since start, for metrics.
    refused : dict of str to int
        Connections refused or closed for a limit or a protocol violation, by cause,
        since start.
    rejected : dict of str to int
        Connections closed because ``on_chunk`` rejected their data, by cause (a
        :class:`FrameRefused`'s, else ``rejected``), since start.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_chunk: OnChunk,
        on_event: OnEvent | None = None,
        max_connections: int = 32,
        idle_timeout_s: float | None = 300.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_per_peer: int = 64,
        first_byte_timeout_s: float = 5.0,
        frame_timeout_s: float = 30.0,
        max_input_bytes: int | None = None,
        keys: StreamKeys | None = None,
        log_interval_s: float = 60.0,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(
                f"{host=}: name the address to listen on ('127.0.0.1', or '0.0.0.0' for "
                f"every interface)"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"{port=} must be an int within 0..65535")
        if not 1 <= max_connections <= 65536:
            raise ValueError(f"{max_connections=} must be within 1..65536")
        if not 1 <= max_per_peer <= 65536:
            raise ValueError(f"{max_per_peer=} must be within 1..65536")
        for name, value in (
            ("idle_timeout_s", idle_timeout_s),
            ("first_byte_timeout_s", first_byte_timeout_s),
            ("frame_timeout_s", frame_timeout_s),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be > 0 s")
        FrameDecoder(max_frame_bytes=max_frame_bytes)  # validates the value
        if max_input_bytes is None:
            max_input_bytes = max(64 * 1024 * 1024, 4 * max_frame_bytes)
        if max_input_bytes < max_frame_bytes:
            raise ValueError(f"{max_input_bytes=} must be at least {max_frame_bytes=}")
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.max_per_peer = max_per_peer
        self.first_byte_timeout_s = float(first_byte_timeout_s)
        self.frame_timeout_s = float(frame_timeout_s)
        self.max_input_bytes = int(max_input_bytes)
        self.keys = keys
        self.frames = 0
        self.bytes_received = 0
        self.protocol_errors = 0
        self.refused: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self._limiter = LogLimiter(log_interval_s)
        self._on_chunk = on_chunk
        self._on_event = on_event
        self._conns: set[_Conn] = set()
        self._per_host: dict[str, int] = {}
        self._held = 0  # bytes of incomplete frames across connections
        self._listener: socket.socket | None = None
        self._listening = True
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._sel: selectors.BaseSelector | None = None  # driven mode: polled by its driver
        self._next_check = 0.0
        #: Accepting failed (out of descriptors): the listener is out of the selector until
        #: then (monotonic s; 0: accepting).
        self._accept_paused_until = 0.0
        self._driver: int | None = None  # the thread that polls a driven receiver
        self._closed = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._scratch = bytearray(_RECV_BYTES)
        # Handed over (socket, peer, bytes already read), not yet registered.
        self._adopted: list[tuple[socket.socket, str, bytes]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, driven: bool = False, listen: bool = True) -> Self:
        """Bind, listen and start the I/O thread — or, ``driven``, none: the caller's thread
        then calls :meth:`poll` (the service's processing thread does, so frames and windows
        never wait for each other's hold on the interpreter lock). ``listen=False``: no
        port at all; the receiver serves only connections handed to :meth:`adopt` (a
        worker of a multi-process service).

        Raises
        ------
        InputError
            The address cannot be resolved or bound (in use, not local).
        """
        with self._lock:
            if self._started:
                raise RuntimeError("TcpStreamServer.start() called twice; make a new server")
            self._listening = listen
            if listen:
                self._listen()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._started = True
            if driven:
                self._sel = self._open_selector()
            else:
                self._thread = threading.Thread(
                    target=self._run, name=f"pdm-tcp-{self.port}", daemon=True
                )
                self._thread.start()
        return self

    def _listen(self) -> None:
        where = f"{self.host}:{self.port}"
        try:
            infos = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, type_, proto, _, addr = infos[0]
            listener = socket.socket(family, type_, proto)
        except OSError as exc:
            raise InputError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        try:
            if os.name == "posix":  # so a restarted receiver gets its port back at once
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(addr)
            # Room for every connection the limits allow to arrive at once (a gateway opening
            # its sensors' connections together; the kernel caps it at net.core.somaxconn).
            listener.listen(self.max_connections)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise InputError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        if self.keys is not None:
            log.info(
                "stream receiver listening on %s:%d; frames must be signed (%d key(s))",
                self.host,
                self.port,
                len(self.keys),
            )
        elif not is_loopback(self.host):
            log.warning(
                "stream receiver listening on %s:%d (not loopback) without stream keys: anyone "
                "who can reach this port can feed data (docs/stream-protocol.md)",
                self.host,
                self.port,
            )
        else:
            log.info("stream receiver listening on %s:%d", self.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the listener and every connection; join the I/O thread. Idempotent.

        Bytes of an incomplete frame are dropped. Called from ``on_chunk`` (the
        I/O thread itself), it stops after that callback returns without joining.
        """
        with self._lock:
            thread = self._thread
            if not self._started or self._stopping.is_set():
                if thread is not None and thread is not threading.current_thread():
                    thread.join(timeout_s)
                elif self._sel is not None:
                    self._closed.wait(timeout_s)
                return
            self._stopping.set()
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"x")
                except OSError:
                    pass
        if thread is None:  # driven: the driver's next poll closes everything
            if threading.get_ident() == self._driver:
                return  # called by the driver itself (from on_chunk): its poll closes it
            if not self._closed.wait(timeout_s):
                log.warning(
                    "stream receiver: its driver did not poll within %g s; closing it here",
                    timeout_s,
                )
                sel, self._sel = self._sel, None
                if sel is not None:
                    self._shut(sel)
        elif thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("stream receiver thread did not stop within %g s", timeout_s)

    def adopt(self, sock: socket.socket, peer: str, received: bytes = b"") -> None:
        """Serve a connection accepted elsewhere (a multi-process service's supervisor
        accepts on the public port, reads the first frame's header and hands the connection,
        with the bytes it read (``received``), to the worker that runs its machine).
        Thread-safe; the connection counts against every limit."""
        with self._lock:
            if not self._started or self._stopping.is_set():
                sock.close()
                return
            self._adopted.append((sock, peer, bytes(received)))
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"a")
                except OSError:
                    pass

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._conns)

    @property
    def input_bytes(self) -> int:
        """Bytes of incomplete frames held now, across connections."""
        return self._held

    def __enter__(self) -> Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TcpStreamServer({self.host!r}, {self.port}, connections={len(self._conns)})"

    # ------------------------------------------------------------------ I/O thread

    def _open_selector(self) -> selectors.BaseSelector:
        assert self._wake_r is not None
        sel = selectors.DefaultSelector()
        if self._listener is not None:
            sel.register(self._listener, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        return sel

    def _run(self) -> None:
        sel = self._open_selector()
        try:
            while not self._stopping.is_set():
                self._poll_once(sel, 1.0)
        except Exception:  # a bug here must not leave a half-dead receiver silently
            log.exception("stream receiver on port %d failed; closing it", self.port)
        finally:
            self._shut(sel)

    def poll(self, timeout: float) -> None:
        """Driven mode (``start(driven=True)``): wait up to ``timeout`` s for the network,
        then read what came (``on_chunk`` runs here, on the caller's thread). After
        :meth:`stop`, the next call closes every connection. Never raises."""
        sel = self._sel
        if sel is None:
            return
        self._driver = threading.get_ident()
        try:
            if not self._stopping.is_set():
                self._poll_once(sel, timeout)
        except Exception:
            log.exception("stream receiver on port %d failed; closing it", self.port)
            self._stopping.set()
        if self._stopping.is_set():
            self._sel = None
            self._shut(sel)

    def _poll_once(self, sel: selectors.BaseSelector, timeout: float) -> None:
        # The deadlines are walked at the soonest of them, not after every read (with 150
        # connections a walk per frame was a third of the reader's time).
        timeout = min(timeout, max(0.0, self._next_check - time.monotonic()))
        for key, _ in sel.select(timeout):
            if self._stopping.is_set():
                break
            if key.data == "listen":
                self._accept(sel)
            elif key.data == "wake":
                self._drain_wake()
                self._register_adopted(sel)
            elif key.data in self._conns:  # (not closed earlier in this round)
                self._read(sel, key.data)
        if time.monotonic() >= self._next_check:
            self._next_check = self._check_deadlines(sel)
        if self._accept_paused_until and time.monotonic() >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            if self._listener is not None and not self._stopping.is_set():
                sel.register(self._listener, selectors.EVENT_READ, "listen")

    def _shut(self, sel: selectors.BaseSelector) -> None:
        for conn in list(self._conns):
            self._close(sel, conn, "disconnected", f"{conn.peer}: receiver stopped")
        sel.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._closed.set()

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:
            pass

    def _register_adopted(self, sel: selectors.BaseSelector) -> None:
        with self._lock:
            adopted, self._adopted = self._adopted, []
        for sock, peer, received in adopted:
            conn = self._serve(sel, sock, peer)
            if conn is not None and received:
                self._take(sel, conn, received)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving what we have
                # The listener stays readable while the backlog holds connections: selected
                # again at once, a failing accept spun the reader at 100 % of a core. Leave it
                # out of the selector for a while (as asyncio does), say so once a minute.
                if exc.errno in OUT_OF_RESOURCES:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S
                    self._next_check = min(self._next_check, self._accept_paused_until)
                self._refuse("accept", f"accept failed: {exc.strerror or exc}")
                return
            self._serve(sel, sock, peer_name(addr))

    def _serve(self, sel: selectors.BaseSelector, sock: socket.socket, peer: str) -> _Conn | None:
        host = peer_host(peer)
        cause = ""
        if len(self._conns) >= self.max_connections:
            self._push_out_unproven(sel)
        if self._per_host.get(host, 0) >= self.max_per_peer:
            self._push_out_unproven(sel, host)
        if len(self._conns) >= self.max_connections:
            cause, why = "too_many", f"{len(self._conns)} connections open (the maximum)"
        elif self._per_host.get(host, 0) >= self.max_per_peer:
            cause, why = "per_peer", f"{self.max_per_peer} connections from {host} open already"
        if cause:
            _reset(sock)
            self._refuse(cause, f"{peer}: refused, {why}", kind="refused")
            return None
        sock.setblocking(False)
        now = time.monotonic()
        conn = _Conn(
            sock,
            peer,
            host,
            FrameDecoder(peer, max_frame_bytes=self.max_frame_bytes, keys=self.keys),
            now,
            now,
        )
        self._conns.add(conn)
        self._per_host[host] = self._per_host.get(host, 0) + 1
        sel.register(sock, selectors.EVENT_READ, conn)
        self._next_check = min(self._next_check, now + self.first_byte_timeout_s)
        self._event("connected", f"{peer}: connected", log_level=logging.INFO)
        return conn

    def _push_out_unproven(self, sel: selectors.BaseSelector, host: str | None = None) -> None:
        """Every slot taken (``host``: every slot of that address): close the oldest
        connection (from ``host``) that has sent nothing yet or, when none is silent, the
        oldest that has not completed a frame yet, so that neither idle connections nor ones
        trickling a first frame (slowloris) can keep a sensor out; a connection that has
        delivered a frame is never pushed out (none: the newcomer is refused). A sender
        writes its frame at once, so its own first frame is complete within milliseconds."""
        mine = [c for c in self._conns if host in (None, c.host)]
        silent = [c for c in mine if not c.received]
        unproven = silent or [c for c in mine if not c.frames]
        if unproven:
            oldest = min(unproven, key=lambda c: c.connected)
            limit = (
                f"{self.max_connections} connections"
                if host is None
                else f"{self.max_per_peer} connections from {host}"
            )
            what = (
                "had sent nothing"
                if not oldest.received
                else f"had not completed a frame ({oldest.held} bytes received)"
            )
            self._close(
                sel,
                oldest,
                "refused",
                f"{oldest.peer}: closed, every one of {limit} taken "
                f"and this one {what} for {time.monotonic() - oldest.connected:.1f} s",
                cause="too_many" if host is None else "per_peer",
            )

    def _read(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        try:
            n = conn.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(sel, conn, "disconnected", f"{conn.peer}: {exc.strerror or exc}")
            return
        if n == 0:
            try:
                conn.decoder.close()
            except InputError as exc:
                self.protocol_errors += 1
                self._close(sel, conn, "protocol_error", str(exc), cause="protocol")
                return
            self._close(
                sel,
                conn,
                "disconnected",
                f"{conn.peer}: closed by the peer after {conn.frames} frames",
            )
            return
        with memoryview(self._scratch) as mv:
            self._take(sel, conn, mv[:n])

    def _take(self, sel: selectors.BaseSelector, conn: _Conn, data: memoryview | bytes) -> None:
        """Decode bytes received on ``conn`` and deliver the frames they complete."""
        conn.last_rx = now = time.monotonic()
        try:
            conn.received = True
            self.bytes_received += len(data)
            frames = conn.decoder.feed(data)
            self._hold(conn, now, completed=bool(frames))
            for frame in frames:
                if not self._deliver(sel, conn, frame, now):
                    return
            if conn.decoder.error is not None:
                raise conn.decoder.error
        except InputError as exc:
            self.protocol_errors += 1
            cause = exc.cause if isinstance(exc, FrameRefused) else "protocol"
            self._close(sel, conn, "protocol_error", str(exc), cause=cause)
            return
        if self._held > self.max_input_bytes:
            self._shed(sel)

    def _hold(self, conn: _Conn, now: float, *, completed: bool) -> None:
        """Account for the bytes of ``conn``'s incomplete frame after a read."""
        held = conn.decoder.pending
        self._held += held - conn.held
        if held == 0:
            conn.frame_started = None
        elif conn.held == 0 or completed:
            conn.frame_started = now  # a new frame began in this read
            self._next_check = min(self._next_check, now + self.frame_timeout_s)
        conn.held = held

    def _shed(self, sel: selectors.BaseSelector) -> None:
        """Over ``max_input_bytes``: close the connections whose incomplete frames are
        oldest until the rest fits."""
        waiting = sorted(
            (c for c in self._conns if c.held and c.frame_started is not None),
            key=lambda c: c.frame_started or 0.0,
        )
        for conn in waiting:
            if self._held <= self.max_input_bytes:
                break
            age = time.monotonic() - (conn.frame_started or 0.0)
            self._close(
                sel,
                conn,
                "refused",
                f"{conn.peer}: closed, {self._held} bytes of incomplete frames held across "
                f"connections (limit {self.max_input_bytes}); its frame, {conn.held} bytes so "
                f"far, was the oldest ({age:.1f} s)",
                cause="memory",
            )

    def _deliver(
        self, sel: selectors.BaseSelector, conn: _Conn, frame: Frame, received: float
    ) -> bool:
        conn.frames += 1
        self.frames += 1
        try:
            self._on_chunk(frame.sensor_id, frame.to_chunk(received))
        except PdmError as exc:
            cause = exc.cause if isinstance(exc, FrameRefused) else "rejected"
            self._close(
                sel,
                conn,
                "rejected",
                f"{conn.peer}: sensor {frame.sensor_id!r}: {exc}",
                cause=cause,
            )
            return False
        except Exception as exc:
            log.exception("stream receiver: on_chunk failed for %s", conn.peer)
            self._close(
                sel,
                conn,
                "rejected",
                f"{conn.peer}: on_chunk failed: {type(exc).__name__}: {exc}".splitlines()[0],
                cause="error",
                logged=True,
            )
            return False
        return not self._stopping.is_set()

    def _check_deadlines(self, sel: selectors.BaseSelector) -> float:
        """Close the connections past a deadline (first byte, frame, idle); tell the
        refusals held back whose interval passed. Returns when to look again (monotonic
        s): the soonest deadline left, within 10 ms .. 1 s."""
        now = time.monotonic()
        soonest = now + 1.0
        for conn in list(self._conns):
            if not conn.received:
                limit = self.first_byte_timeout_s
                if self.idle_timeout_s is not None:
                    limit = min(limit, self.idle_timeout_s)
                due = conn.connected + limit
                if now >= due:
                    if limit < self.first_byte_timeout_s:  # the idle limit is the shorter
                        self._close(
                            sel,
                            conn,
                            "disconnected",
                            f"{conn.peer}: nothing received for {self.idle_timeout_s:g} s",
                        )
                    else:
                        self._close(
                            sel,
                            conn,
                            "timeout",
                            f"{conn.peer}: sent nothing within {limit:g} s of connecting",
                            cause="no_data",
                        )
                    continue
            elif conn.frame_started is not None:
                due = conn.frame_started + self.frame_timeout_s
                if now >= due:
                    self._close(
                        sel,
                        conn,
                        "timeout",
                        f"{conn.peer}: a frame was not complete {self.frame_timeout_s:g} s "
                        f"after its first byte ({conn.held} bytes received)",
                        cause="slow_frame",
                    )
                    continue
            elif self.idle_timeout_s is not None:
                due = conn.last_rx + self.idle_timeout_s
                if now >= due:
                    self._close(
                        sel,
                        conn,
                        "disconnected",
                        f"{conn.peer}: nothing received for {self.idle_timeout_s:g} s",
                    )
                    continue
            else:
                continue
            soonest = min(soonest, due)
        for key, count in self._limiter.pending(now):
            kind, cause = cast(tuple[str, str], key)
            log.warning(
                "stream receiver: %d more %s (%s) in the last %g s",
                count,
                kind.replace("_", " "),
                cause,
                self._limiter.interval_s,
            )
        return max(now + 0.01, soonest)

    def _close(
        self,
        sel: selectors.BaseSelector,
        conn: _Conn,
        kind: str,
        detail: str,
        *,
        cause: str = "",
        logged: bool = False,
    ) -> None:
        """Close ``conn``. A ``cause`` makes it a refusal: reset, counted, and logged at
        most once per interval for that cause."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        left = self._per_host.get(conn.host, 1) - 1
        if left > 0:
            self._per_host[conn.host] = left
        else:
            self._per_host.pop(conn.host, None)
        self._held -= conn.held
        conn.held = 0
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if cause:
            # Reset (RST), not a normal close: the sender's next write fails at once, and a
            # sender waiting for the close after its last frame learns that it was refused.
            _reset(conn.sock)
            self._refuse(cause, detail, kind=kind, log_only=logged)
        else:
            conn.sock.close()
            self._event(kind, detail, log_level=logging.INFO)
        big = conn.decoder.pending >= _TRIM_AFTER_BYTES
        conn.decoder.release()  # its buffer goes now, not when the cyclic collector runs
        if big:
            _trim_heap()

    def _refuse(
        self, cause: str, detail: str, *, kind: str = "refused", log_only: bool = False
    ) -> None:
        """Count a refusal, log it (at most once per interval per cause) and report it."""
        counts = self.rejected if kind == "rejected" else self.refused
        counts[cause] = counts.get(cause, 0) + 1
        held = self._limiter.check((kind, cause))
        if held is not None and not log_only:
            more = f" ({held} more like this in the last {self._limiter.interval_s:g} s)"
            log.warning("stream receiver: %s%s", detail, more if held else "")
        if not log_only:
            self._event(kind, detail, log_level=None)

    def _event(self, kind: str, detail: str, *, log_level: int | None) -> None:
        if log_level is not None:
            log.log(log_level, "stream receiver: %s", detail)
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("stream receiver: on_event(%r) failed", kind)


#: After a connection that held this much closes, free memory goes back to the system.
_TRIM_AFTER_BYTES = 1 << 20


class TcpInput:
    """The stream server as a :class:`~pdm.sources.base.PushSource` (a service's ``--listen``).

    The server is built by :meth:`start` with the callbacks; its event kinds reach
    ``on_event`` as ``stream_<kind>`` (``stream_connected``, ``stream_rejected``, ...).
    ``driven``: no I/O thread, the caller's thread calls :meth:`poll` (the service's processing
    thread does); ``listen=False``: no port, only connections handed to :meth:`adopt` (a
    worker of a multi-process service). ``options`` are :class:`TcpStreamServer`'s limits
    and ``keys``.
    """

    name = "tcp"

    def __init__(
        self, host: str, port: int, *, driven: bool = False, listen: bool = True, **options: Any
    ) -> None:
        self.host, self.port = host, port
        self.driven, self.listen = driven, listen
        self._options = options
        self.server: TcpStreamServer | None = None

    @property
    def address(self) -> str:
        port = self.server.port if self.server is not None else self.port
        return f"{self.host}:{port}"

    def start(self, on_chunk: OnChunk, on_event: OnEvent) -> None:
        def event(kind: str, detail: str) -> None:
            on_event(f"stream_{kind}", detail)

        server = TcpStreamServer(
            self.host, self.port, on_chunk=on_chunk, on_event=event, **self._options
        )
        self.server = server.start(driven=self.driven, listen=self.listen)

    def stop(self, deadline: float) -> None:
        if self.server is not None:
            self.server.stop(timeout_s=max(0.0, deadline - time.monotonic()))

    def refused(self) -> dict[str, int]:
        """:attr:`TcpStreamServer.refused` and :attr:`TcpStreamServer.rejected` together."""
        s = self.server
        return {} if s is None else {**s.refused, **s.rejected}

    def poll(self, timeout: float) -> None:
        """:meth:`TcpStreamServer.poll` (``driven``)."""
        if self.server is not None:
            self.server.poll(timeout)

    def adopt(self, sock: socket.socket, peer: str, received: bytes = b"") -> None:
        """:meth:`TcpStreamServer.adopt`; closes ``sock`` when not started."""
        if self.server is not None:
            self.server.adopt(sock, peer, received)
        else:
            sock.close()

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self.server.connections if self.server is not None else 0


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER on, 0 s)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


def _trim_heap() -> None:
    """Give free heap memory back to the system (glibc ``malloc_trim``): a frame buffer of
    a few MB is freed into the heap, where it would stay in the process's resident size."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None
