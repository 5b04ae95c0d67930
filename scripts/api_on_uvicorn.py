"""Issue 19 item 4, as a measurement: the control API's slow-client tests against Starlette on
uvicorn with uvicorn's own guards, to see which of pdm.service.api's guards uvicorn keeps.

    .venv/bin/python scripts/api_on_uvicorn.py

A Starlette app answering ``/health`` and ``/status`` at once, served by uvicorn with 4
request slots (``limit_concurrency=4``), ``timeout_keep_alive=1`` and
``h11_max_incomplete_event_size=16384``, on loopback. Then, as tests/test_service_api.py
does to the real API (there with ``max_connections=4``):

1. a malformed request line: what the client gets back;
2. a connection that sends nothing: is it still open after 12 s (the API's head deadline is
   10 s);
3. four connections that each send a header line every 0.3 s (slowloris), and a real
   client asking ``/health`` once a second for 12 s;
4. eight slowloris clients that reconnect at once when pushed out, and ``/health`` asked 10
   times, 0.1 s apart.

Prints what each probe got: a status, or the exception; then the same probes against
pdm.service.api.ControlAPI (http.server, ``max_connections=4``, ``timeout_s=10``).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pdm.service.api import ControlAPI

HEALTH = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _serve(slots: int) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.create_server(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/health", _ok), Route("/status", _ok)])
    config = uvicorn.Config(
        app,
        limit_concurrency=slots,
        timeout_keep_alive=1,
        h11_max_incomplete_event_size=16 * 1024,
        log_level="error",
    )
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.01)
    return server, t, int(sock.getsockname()[1])


def _ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _status(port: int) -> str:
    try:
        return _ask(port, HEALTH).split(b" ", 2)[1].decode()
    except (OSError, IndexError) as exc:
        return type(exc).__name__


def _silent(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=12) as s:
        t0 = time.monotonic()
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
        return (
            f"closed by the server after {time.monotonic() - t0:.1f} s"
            if closed
            else ("still open after 12 s")
        )


def _trickled(port: int) -> list[str]:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    for s in socks:
        s.sendall(b"GET /health HTTP/1.0\r\n")
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.3):
            for s in socks:
                try:
                    s.sendall(b"X-Slow: y\r\n")
                except OSError:
                    pass

    t = threading.Thread(target=trickle)
    t.start()
    time.sleep(0.5)
    got = []
    for _ in range(12):
        got.append(_status(port))
        time.sleep(1.0)
    stop.set()
    t.join()
    for s in socks:
        s.close()
    return got


def _reconnecting(port: int) -> list[str]:
    stop = threading.Event()

    def attacker() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /status HTTP/1.0\r\n")
                    while not stop.is_set():
                        s.sendall(b"X-Slow: y\r\n")
                        try:
                            if s.recv(1) == b"":
                                break
                        except TimeoutError:
                            pass
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=attacker) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    got = []
    for _ in range(10):
        got.append(_status(port))
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    return got


class _Backend:
    """Just enough of a service for /health and /status."""

    def health(self) -> dict[str, Any]:
        return {"ok": True, "reasons": []}

    def status(self) -> list[dict[str, Any]]:
        return []


def _probe(port: int) -> None:
    print("1. malformed request line ->", _ask(port, b"GET / two words HTTP/1.0\r\n\r\n"))
    print("2. a connection that sends nothing:", _silent(port))
    print("3. 4 trickling heads, /health once a second for 12 s:", _trickled(port))
    print("4. 8 reconnecting slowloris clients, /health x10:", _reconnecting(port))


def main() -> None:
    server, thread, port = _serve(4)
    print(f"uvicorn {uvicorn.__version__}, 4 slots")
    _probe(port)
    server.should_exit = True
    thread.join(5)
    print("pdm.service.api.ControlAPI (http.server), 4 slots")
    with ControlAPI(_Backend(), port=0, max_connections=4) as api:  # type: ignore[arg-type]
        _probe(api.port)


if __name__ == "__main__":
    main()
