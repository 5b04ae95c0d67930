"""Real peers of the appliance, on loopback: a Modbus TCP relay and a webhook receiver.

Used by ``pdm-edge soak`` (:mod:`pdm.tools.soak`) and by the test suite (tests/actions/test_relay.py,
tests/webhook_receiver.py), so that both run against the same servers.

* :class:`ModbusServer`: a pymodbus 3.16 ``ModbusTcpServer`` in a thread of its own.
* The webhook receiver: ``python -m pdm.tools.servers webhook PORT LOG [--answers …]
  [--delay S]`` (:func:`webhook_main`), a process of its own so that it can be stopped,
  killed and started again on the same port; every POST is checked with
  :func:`pdm.actions.webhook.verify` and logged as one JSON line *before* it is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

__all__ = ["COIL_READ", "DEVICE", "ModbusServer", "webhook_main"]

#: The Modbus device id the server answers as.
DEVICE = 1
COIL_READ = 1  # Modbus function code "read coils", to read the datastore directly
COILS = 16


class ModbusServer:
    """A pymodbus 3.16 ``ModbusTcpServer`` on 127.0.0.1 with 16 coils (all off) on device 1.

    Runs on its own event loop in a thread. ``coil(n)`` reads the datastore directly, not over
    Modbus. ``stop()`` then ``start()`` keeps the port, for restart tests; with
    ``keep_coils`` the coils keep their state across it (the module was unreachable, not
    powered off), else they start off again. ``ignore_writes`` makes the device acknowledge
    writes but keep its coils off (a welded-open output, a module in local mode).
    """

    def __init__(
        self, *, ignore_writes: bool = False, port: int = 0, keep_coils: bool = False
    ) -> None:
        self.ignore_writes = ignore_writes
        self.port = port
        self.keep_coils = keep_coils
        self._coils = [False] * COILS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="modbus-test-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._server = self._run(self._serve())
        except BaseException:
            self.stop()
            raise
        self.port = self._server.transport.sockets[0].getsockname()[1]
        if self.keep_coils:
            for address, value in enumerate(self._coils):
                if value:
                    self.set_coil(address, True)
        return self

    async def _serve(self) -> Any:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        def bits() -> list[SimData]:
            return [SimData(0, count=COILS, values=False, datatype=DataType.BITS)]

        def regs() -> list[SimData]:
            return [SimData(0, values=0, datatype=DataType.REGISTERS)]

        device = SimDevice(
            id=DEVICE,
            simdata=(bits(), bits(), regs(), regs()),  # coils, discrete inputs, holding, input
            action=self._drop_writes if self.ignore_writes else None,
        )
        server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await server.serve_forever(background=True)
        return server

    @staticmethod
    async def _drop_writes(
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        # pymodbus 3.16 has no datablock setValues to override any more (the old datablocks are
        # shims over SimData); an action may rewrite the values about to be written.
        if set_values is not None:
            set_values[:] = [False] * len(set_values)

    def _run(self, coro: Any, timeout: float = 5.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def coil(self, address: int = 0) -> bool:
        """The coil as the device holds it (datastore), not as a client reads it."""
        values = self._run(self._server.context.async_getValues(DEVICE, COIL_READ, address, 1))
        return bool(values[0])

    def set_coil(self, address: int, value: bool) -> None:
        """Change a coil behind the client's back (write single coil, function code 5)."""
        self._run(self._server.context.async_setValues(DEVICE, 5, address, [value]))

    def coils(self) -> list[bool]:
        """Every coil as the device holds it."""
        values = self._run(self._server.context.async_getValues(DEVICE, COIL_READ, 0, COILS))
        return [bool(v) for v in values]

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self.keep_coils and self._server is not None:
            self._coils = self.coils()
        loop, thread, server = self._loop, self._thread, self._server
        self._loop = self._thread = self._server = None
        if loop is None or thread is None:
            return
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(5)

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        from pymodbus.server import ModbusBaseServer

        if ModbusBaseServer.active_server is server:  # a class attribute: do not keep it alive
            ModbusBaseServer.active_server = None


def webhook_main(argv: Sequence[str] | None = None) -> None:
    """``webhook PORT LOG [--answers 400,503:1] [--delay S]``: serve until SIGTERM.

    The HMAC key comes from ``PDM_WEBHOOK_SECRET``. Every POST is appended to ``LOG`` as
    one JSON line (``id``, ``valid``, ``status``, ``body``, ``headers``, ``t``) and flushed
    before it is answered. ``--answers`` lists the statuses of the first requests, in order
    (``STATUS`` or ``STATUS:RETRY_AFTER_SECONDS``); later ones get 200. ``--delay`` holds
    every answer that long.
    """
    from pdm.actions.webhook import HEADER_EVENT_ID, verify

    ap = argparse.ArgumentParser(prog="python -m pdm.tools.servers webhook")
    ap.add_argument("port", type=int)
    ap.add_argument("log", type=Path)
    ap.add_argument("--answers", default="")
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args(argv)
    secret = os.environ["PDM_WEBHOOK_SECRET"].encode()
    answers = [a.split(":") for a in args.answers.split(",") if a]
    lock = threading.Lock()
    out = args.log.open("a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            with lock:
                status, retry_after = (int(answers[0][0]), answers[0][1:]) if answers else (200, [])
                if answers:
                    answers.pop(0)
                rec: dict[str, Any] = {
                    "id": headers.get(HEADER_EVENT_ID),
                    "valid": verify(secret, headers, body),
                    "status": status,
                    "body": body.decode("utf-8", "replace"),
                    "headers": headers,
                    "t": time.time(),
                }
                out.write(json.dumps(rec) + "\n")
                out.flush()
            time.sleep(args.delay)
            reply = b"ok" if status < 300 else f"test refusal {status}".encode()
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after[0])
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client killed mid-request (the kill -9 test): nothing to report

    with Server(("127.0.0.1", args.port), Handler) as server:
        server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["webhook"]:
        raise SystemExit(
            "usage: python -m pdm.tools.servers webhook PORT LOG [--answers A] [--delay S]"
        )
    webhook_main(args[1:])


if __name__ == "__main__":
    main()
