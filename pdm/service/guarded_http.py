"""A threaded HTTP server that slow clients cannot hold shut: the control API's transport.

``http.server`` gives a thread per request; this adds the guards the API needs against
clients that are slow on purpose (tests/test_service_api.py):

* at most ``max_connections`` requests at once; with every slot taken, a newcomer pushes out
  the oldest connection still sending its request head (else the newcomer is closed at
  once), so connections reopened as fast as they are closed cannot keep ``/health`` shut.
  A connection pushed out frees its slot at once: its thread, which ends as soon as it gets
  a core, no longer counts against ``max_connections`` (on a starved machine those threads
  took every slot and refused real clients); at most ``LEAVING_PER_SLOT × max_connections``
  of them at a time bound the threads;
* a request head (line and headers) must arrive within ``timeout_s`` of connecting, one
  deadline for all of it (:class:`HeadDeadline`): a per-read timeout alone let a client that
  sends a header line every few seconds hold its thread for good;
* every read and write of a connection gives up after ``timeout_s``;
* accepting that fails for want of descriptors rests the listener :data:`ACCEPT_PAUSE_S`
  and says so once a minute (``socketserver`` selected the still-readable listener again at
  once: a core spun, red team 2026-12-07);
* :meth:`GuardedHTTPServer.finish_requests` stops within a deadline.

Why not an ASGI server (Starlette on uvicorn): uvicorn 0.54 has no request-head deadline and
counts connections still sending their heads against its limit, so four slow clients shut
every endpoint (measured: docs/service.md, Control API; ``scripts/api_on_uvicorn.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from pdm.core.net import ACCEPT_PAUSE_S, OUT_OF_RESOURCES
from pdm.loglimit import LogLimiter

__all__ = ["BodyReader", "GuardedHTTPServer", "GuardedHandler", "HeadDeadline", "Readable"]

log = logging.getLogger("pdm.service.api")


class Readable(Protocol):
    """A byte stream to read from (a request body)."""

    def read(self, n: int = -1, /) -> bytes: ...


class GuardedHTTPServer(ThreadingHTTPServer):
    """A thread per request, at most ``max_connections`` at once; when every slot is taken,
    a newcomer pushes out the oldest connection still sending its head (else it is closed
    at once). ``name`` names the server in its log lines, ``thread_name`` its request threads. Handlers are :class:`GuardedHandler`
    (their head has its deadline, and they say when it is in).
    """

    daemon_threads = True  # a request stuck in the backend never keeps the process alive
    block_on_close = False  # stop() joins the request threads itself, with a deadline
    #: Threads of pushed-out connections allowed at once, per slot: each ends as soon as it
    #: is scheduled (its socket is shut), so they only pile up while the machine is starved.
    LEAVING_PER_SLOT = 4

    def __init__(
        self,
        address: tuple[str, int] | str,
        handler: type[GuardedHandler],
        family: int,
        *,
        max_connections: int,
        timeout_s: float,
        name: str,
        thread_name: str,
    ) -> None:
        self.max_connections, self.timeout_s, self.name = max_connections, timeout_s, name
        self.thread_name = thread_name
        self.address_family = family
        self._active: dict[threading.Thread, socket.socket] = {}  # in arrival order
        self._in_head: set[threading.Thread] = set()  # of those, still reading their head
        self._leaving: dict[threading.Thread, socket.socket] = {}  # pushed out, not yet ended
        self._active_lock = threading.Lock()
        self._refused = 0
        self._closing = threading.Event()  # shutdown() asked: a resting accept ends now
        self._accept_log = LogLimiter(60.0)
        super().__init__(address, handler)  # type: ignore[arg-type]  # a Unix path too

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(host): a reverse DNS lookup that can
        # hang for seconds on an appliance without DNS. The name is never used here.
        socketserver.TCPServer.server_bind(self)
        if self.address_family == socket.AF_UNIX:
            self.server_name, self.server_port = "localhost", 0
            return
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                held = self._accept_log.check("accept")
                if held is not None:
                    more = f" ({held} more in the last minute)" if held else ""
                    log.warning("%s: accept failed: %s%s", self.name, exc.strerror or exc, more)
                self._closing.wait(ACCEPT_PAUSE_S)
            raise  # socketserver drops the attempt and selects again

    def shutdown(self) -> None:
        self._closing.set()
        super().shutdown()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            busy = len(self._active) >= self.max_connections
            if busy:
                # Every slot taken: the oldest connection still sending its request head
                # goes, as at the stream port. Refusing the newcomer let a client that
                # opens slow connections as fast as they time out keep the API (and
                # /health) shut; a real client's head arrives at once, so it is served.
                slow = next((t for t in self._active if t in self._in_head), None)
                room = len(self._leaving) < self.LEAVING_PER_SLOT * self.max_connections
                if slow is not None and room:
                    self._in_head.discard(slow)
                    sock = self._leaving[slow] = self._active.pop(slow)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    busy = False
            if not busy:
                t = threading.Thread(
                    target=self.process_request_thread,
                    args=(request, client_address),
                    name=self.thread_name,
                    daemon=True,
                )
                # Registered here, in the serving thread, so that once shutdown() returns
                # every request thread is known to stop().
                self._active[t] = request
                self._in_head.add(t)
        if busy:
            self._refused += 1
            if self._refused == 1 or self._refused % 1000 == 0:
                log.warning(
                    "%s: %d connection(s) refused: %d requests already running",
                    self.name,
                    self._refused,
                    self.max_connections,
                )
            self.shutdown_request(request)
            return
        t.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)
                self._leaving.pop(threading.current_thread(), None)
                self._in_head.discard(threading.current_thread())

    def head_done(self) -> None:
        """The calling request thread has its whole request head: no longer pushed out."""
        with self._active_lock:
            self._in_head.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer, a timeout: nothing the operator can act on.
        log.debug("%s: connection from %s failed", self.name, client_address, exc_info=True)

    def finish_requests(self, timeout: float) -> int:
        """Wait up to half of ``timeout`` for requests in flight, then cut their connections
        and wait the rest; returns how many threads are still running."""
        deadline = time.monotonic() + timeout
        with self._active_lock:
            running = [*self._active.items(), *self._leaving.items()]
        for t, _ in running:
            t.join(max(0.0, deadline - timeout / 2 - time.monotonic()))
        for t, sock in running:
            if t.is_alive():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t, _ in running:
            t.join(max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t, _ in running)


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose head has one deadline; call :meth:`head_received` once the
    head is parsed (in each ``do_*``): from then on only the per-read timeout applies, and
    the connection is no longer pushed out."""

    server: GuardedHTTPServer

    def setup(self) -> None:
        # Before StreamRequestHandler.setup wraps the socket in files: every read and write
        # of this connection gives up after timeout_s.
        self.request.settimeout(self.server.timeout_s)
        super().setup()
        self.head = HeadDeadline(self.connection, self.server.timeout_s)
        self.rfile = io.BufferedReader(self.head)

    def head_received(self) -> None:
        self.head.deadline = None  # the head is in; a body has its per-read timeout
        self.server.head_done()


class HeadDeadline(io.RawIOBase):
    """A connection's bytes with one deadline, ``timeout_s`` after it was taken, for the
    request head; ``deadline = None`` leaves only the socket's per-read timeout."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self.sock, self.timeout_s = sock, timeout_s
        self.deadline: float | None = time.monotonic() + timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the request head took more than {self.timeout_s:g} s")
            self.sock.settimeout(min(self.timeout_s, left))
        else:
            self.sock.settimeout(self.timeout_s)
        return self.sock.recv_into(buffer)


class BodyReader:
    """The request body as a stream: at most ``length`` bytes of ``raw``."""

    def __init__(self, raw: Readable, length: int) -> None:
        self.raw, self.left, self.short = raw, length, False

    def read(self, n: int = -1) -> bytes:
        want = self.left if n is None or n < 0 else min(n, self.left)
        if want <= 0:
            return b""
        data = self.raw.read(want)
        self.left -= len(data)
        if not data:
            self.short, self.left = True, 0
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        try:
            while self.read(1 << 16):
                pass
        except OSError:
            self.short = True
