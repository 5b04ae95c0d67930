"""Out of file descriptors: the service under connection floods with a tight open-files
limit (red team 2026-12-07; docs/service.md, "Open files").

The real service (``pdm-edge run --workers 1``, a subprocess whose RLIMIT_NOFILE is set
low, soft = hard, as in a container) with every listening surface on — the TCP stream
input, the control API, the OPC UA server and the Modbus register map — fed by a DAQ over
TCP and driving a real Modbus coil. Before: ``--max-connections 1000`` (an integrator sizing
for growth) let idle stream connections take every descriptor; then the OPC UA and Modbus
servers' asyncio loops logged a traceback per failed accept (43,667 in a minute, measured
at 1024 descriptors), the stream input and the API's accept loops spun a core and /health
went unanswered (measured at 400 descriptors: 1,467,630 failed accepts at the stream
input in 35 s, the API accepting nothing until the idle streams timed out). Now the stream input gets what the limit holds beside the other surfaces
and the descriptors kept for the service's own files, says so once at start, and nothing
ever fails to accept for want of a descriptor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_overload import _free_port, _get, _pipeline, _signal

from pdm.tools.soak import Sensor

pytestmark = [pytest.mark.relay, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Descriptors the service may open (soft = hard): ~300 go to the API, OPC UA and Modbus
#: servers and to its own files, which leaves ~100 for the stream input.
NOFILE = 400

BOOT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({n}, {n}))
from pdm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _connect_many(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            out.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    return out


def _wait(cond: Any, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"{what}; service log:\n{log.read_text()[-4000:]}"
        time.sleep(0.2)


def _health(api: str) -> bool:
    try:
        with urllib.request.urlopen(api + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def test_a_connection_flood_on_every_surface_never_runs_the_service_out_of_descriptors(
    tmp_path: Path, modbus_server: Any
) -> None:
    pipeline = _pipeline(tmp_path, 0, modbus_server.port)
    stream, api_port, opc, mb = (_free_port() for _ in range(4))
    api = f"http://127.0.0.1:{api_port}"
    cmd = [
        sys.executable, "-c", BOOT.format(n=NOFILE), "run", str(pipeline),
        "--listen", f"127.0.0.1:{stream}", "--max-connections", "1000",
        "--api", f"127.0.0.1:{api_port}", "--opcua", f"opc.tcp://127.0.0.1:{opc}",
        "--modbus-server", f"127.0.0.1:{mb}", "--store", f"sqlite:///{tmp_path / 'h.db'}",
        "--data-dir", str(tmp_path / "data"), "--workers", "1",
    ]  # fmt: skip
    log = tmp_path / "service.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    held: list[socket.socket] = []
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env, start_new_session=True
        )
    sensor = Sensor("ov-m0-de", stream, _signal(20.0, 1, False), _signal(20.0, 2, True))
    dropped = []
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", mb), timeout=2).close()
                socket.create_connection(("127.0.0.1", opc), timeout=2).close()
                return _health(api)
            return False

        _wait(up, 120, "the service starts", log)
        sensor.start()
        _wait(lambda: modbus_server.coils()[0], 60, "the relay is energised", log)

        def windows() -> int:
            return int(_get(api + "/status")[0]["windows"])

        # The flood: idle connections to every surface, held open.
        held += _connect_many(stream, NOFILE + 50)
        for port in (api_port, opc, mb):
            held += _connect_many(port, 60)
        before = windows()
        for _ in range(20):  # the flood held while the sensor streams, checked as it goes
            if not modbus_server.coils()[0]:
                dropped.append(time.monotonic())
            time.sleep(0.25)
        _wait(lambda: _health(api), 60, "/health answers during the flood", log)
        _wait(lambda: windows() > before + 10, 60, "windows are decided during the flood", log)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        # Before, the stream input failed 1,467,630 accepts in ~35 s (silently, spinning the
        # processing thread) and the API accepted nothing until the idle streams timed out.
        failed = [
            line
            for line in str(_get(api + "/metrics")).splitlines()
            if 'cause="accept"' in line and not line.startswith("#")
        ]
        assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in failed), failed
        for s in held:
            s.close()
        held.clear()
        after = windows()
        _wait(lambda: windows() > after + 10, 60, "windows are decided after the flood", log)
        assert modbus_server.coils()[0] and not dropped, "the healthy machine's relay dropped"
        text = log.read_text()
        assert "Too many open files" not in text, text[-4000:]
        assert "out of system resource" not in text, text[-4000:]
        assert fds < NOFILE, fds
        # the cut is said once, at start, with the numbers
        assert text.count("1000 connections asked, the open-files limit (400") == 1, text[-4000:]
        status = _get(api + "/status")[0]
        assert status["state"] == "ok" and not status["appliance_fault"], status
    finally:
        for s in held:
            s.close()
        sensor.stopping.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
