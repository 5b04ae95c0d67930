"""Every listener with no descriptor left (red team 2026-12-07; docs/service.md, "Open files").

A process of its own runs the stream receiver (pdm/sources/tcp.py), the control API's HTTP
server (pdm/service/guarded_http.py) and the Modbus register map (pdm/publish/modbus.py, an
asyncio server), then opens /dev/null until ``open`` fails with EMFILE. Clients connect to
each (the kernel completes their handshakes; ``accept`` fails). Before: the stream receiver
and the HTTP server selected their still-readable listeners again at once (a core spun:
hundreds of thousands of failed accepts in the 3 s held here), and asyncio logged a
traceback per failed accept. Now each rests its listener for a second and says so once a
minute; when the descriptors come back, each serves again.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, logging, os, resource, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler
from pdm.publish.model import MachineInfo
from pdm.publish.modbus import ModbusPublisher
from pdm.service.guarded_http import GuardedHTTPServer, GuardedHandler
from pdm.sources.tcp import TcpStreamServer

records = []
class Catch(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger().addHandler(Catch())
logging.getLogger().setLevel(logging.INFO)

calls = {"stream": 0, "http": 0}
real_accept = TcpStreamServer._accept
def counted_accept(self, sel):
    calls["stream"] += 1
    return real_accept(self, sel)
TcpStreamServer._accept = counted_accept
real_get = GuardedHTTPServer.get_request
def counted_get(self):
    calls["http"] += 1
    return real_get(self)
GuardedHTTPServer.get_request = counted_get

class Handler(GuardedHandler):
    def do_GET(self):
        self.head_received()
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)

stream = TcpStreamServer("127.0.0.1", 0, on_chunk=lambda *a: None).start()
http = GuardedHTTPServer(("127.0.0.1", 0), Handler, socket.AF_INET,
                         max_connections=8, timeout_s=5.0, name="test API", thread_name="t")
threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
modbus = ModbusPublisher("127.0.0.1", 0)
modbus.start([MachineInfo("m", "M", ("s",))])
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
hog = []
while True:
    try:
        hog.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
# only now: a client connecting earlier would be accepted while descriptors were left
print(json.dumps({"stream": stream.port, "http": http.server_address[1], "modbus": modbus.port}),
      flush=True)
sys.stdin.readline()          # the parent has connected its clients
time.sleep(3.0)               # every listener readable, no descriptor to accept with
held = dict(calls)
for fd in hog:
    os.close(fd)
sys.stdout.write(json.dumps({"calls": held, "records": records}) + "\n")
sys.stdout.flush()
sys.stdin.readline()          # the parent has connected to the stream port again
deadline = time.monotonic() + 60
while stream.connections < 1 and time.monotonic() < deadline:
    time.sleep(0.1)
print(json.dumps({"stream_connections": stream.connections}), flush=True)
stream.stop()
http.shutdown()
modbus.close()
"""


def test_each_listener_rests_and_tells_once_when_accept_runs_out_of_descriptors() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdin is not None and child.stdout is not None
    clients: list[socket.socket] = []
    try:
        ports = json.loads(child.stdout.readline() or "{}")
        assert ports, child.stderr.read() if child.stderr else ""
        for port in ports.values():
            for _ in range(5):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        report = json.loads(line)
        calls, records = report["calls"], report["records"]
        # resting 1 s after each failure: a handful of attempts in 3 s, not a spin
        assert calls["stream"] <= 20, calls
        assert calls["http"] <= 20, calls
        failures = [r for r in records if "accept" in r.lower()]
        assert not [r for r in records if "out of system resource" in r], records[:5]
        for who in ("stream receiver", "test API", "Modbus register map"):
            told = [r for r in failures if who in r]
            assert len(told) == 1, (who, failures[:10])
            assert "Too many open files" in told[0], told
        # descriptors back: each serves again
        for c in clients:
            c.close()
        with socket.create_connection(("127.0.0.1", ports["http"]), timeout=10) as s:
            s.settimeout(10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer
        from pymodbus.client import ModbusTcpClient

        mb = ModbusTcpClient("127.0.0.1", port=ports["modbus"], timeout=10)
        try:
            assert mb.connect()
            rr = mb.read_holding_registers(0, count=2, device_id=1)
            assert not rr.isError(), rr
        finally:
            mb.close()
        clients.append(socket.create_connection(("127.0.0.1", ports["stream"]), timeout=10))
        child.stdin.write("check\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        assert json.loads(line)["stream_connections"] >= 1
    finally:
        for c in clients:
            c.close()
        if child.poll() is None:
            child.kill()
        child.wait(30)
