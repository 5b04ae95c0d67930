"""The real-server fixtures work: influxd and VictoriaMetrics start on free loopback ports, take
writes, keep data across a restart, and refuse connections once stopped.

The last tests exercise tests/servers.py itself with fake "servers" (small scripts), so they run
even where the real binaries are missing.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from servers import Influx1Server, ServerError, VictoriaServer, http

LINES = "m,asset=pump1 f=1.5 1700000000000000000\nm,asset=pump2 f=2.5 1700000001000000000"


@pytest.mark.influxdb
def test_influxd_write_then_query(influxdb1: Influx1Server) -> None:
    assert influxdb1.alive()
    assert influxdb1.url == f"http://127.0.0.1:{influxdb1.port}"
    influxdb1.create_database("pdm")
    status, body = http("POST", f"{influxdb1.url}/write", params={"db": "pdm"}, data=LINES)
    assert status == 204, body

    (result,) = influxdb1.query("SELECT * FROM m", db="pdm")["results"]
    (series,) = result["series"]
    assert series["name"] == "m"
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert rows == [
        {"time": "2023-11-14T22:13:20Z", "asset": "pump1", "f": 1.5},
        {"time": "2023-11-14T22:13:21Z", "asset": "pump2", "f": 2.5},
    ]


@pytest.mark.influxdb
def test_influxd_restart_keeps_port_and_data(influxdb1: Influx1Server) -> None:
    influxdb1.create_database("pdm")
    influxdb1.write("pdm", LINES)
    port, pid = influxdb1.port, influxdb1.pid

    influxdb1.restart(downtime=0.1)

    assert influxdb1.alive()
    assert influxdb1.port == port and influxdb1.pid != pid
    (result,) = influxdb1.query("SELECT count(f) FROM m", db="pdm")["results"]
    assert result["series"][0]["values"][0][1] == 2


@pytest.mark.influxdb
def test_victoria_v2_write_then_export(victoria: VictoriaServer) -> None:
    # What an influxdb-client pointed at VictoriaMetrics sends. One series per field, named
    # <measurement>_<field>; tags become labels; org/bucket do not; a string field becomes 0;
    # nanosecond timestamps are truncated to milliseconds.
    line = 'm,asset=pump1 f=1.5,state="ok" 1700000000123456789'
    status, body = http(
        "POST", f"{victoria.url}/api/v2/write", params={"org": "o", "bucket": "b"}, data=line
    )
    assert status == 204, body

    victoria.force_flush()
    exported = sorted(victoria.export(), key=lambda s: s["metric"]["__name__"])
    assert exported == [
        {
            "metric": {"__name__": "m_f", "asset": "pump1"},
            "values": [1.5],
            "timestamps": [1700000000123],
        },
        {
            "metric": {"__name__": "m_state", "asset": "pump1"},
            "values": [0],
            "timestamps": [1700000000123],
        },
    ]
    assert victoria.export('{__name__="m_f", asset="pump2"}') == []


@pytest.mark.influxdb
def test_victoria_export_sees_a_point_stamped_now(victoria: VictoriaServer) -> None:
    victoria.write(f"now,asset=p f=1 {time.time_ns()}")
    victoria.force_flush()
    assert [s["metric"]["__name__"] for s in victoria.export()] == ["now_f"]


@pytest.mark.influxdb
def test_victoria_restart_keeps_port_and_data(victoria: VictoriaServer) -> None:
    victoria.write(LINES)
    victoria.force_flush()
    before = victoria.export()
    port = victoria.port

    victoria.restart(downtime=0.1)

    assert victoria.alive() and victoria.port == port
    assert sorted(victoria.export(), key=str) == sorted(before, key=str)
    assert len(before) == 2


@pytest.mark.influxdb
@pytest.mark.parametrize("fixture", ["influxdb1", "victoria"])
def test_stopped_server_refuses_connections(fixture: str, request: pytest.FixtureRequest) -> None:
    server: Influx1Server | VictoriaServer = request.getfixturevalue(fixture)
    pid = server.pid
    assert pid is not None and server.alive()

    server.stop()

    assert not server.alive() and not server.running()
    with pytest.raises(urllib.error.URLError) as err:
        http("GET", server.url + server.ready_path, timeout=2)
    assert isinstance(err.value.reason, ConnectionRefusedError)
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid, 0)
    server.stop()  # idempotent


# --- tests/servers.py itself, with fake servers ----------------------------------------------

# Stands in for victoria-metrics: answers GET /health with 200 on -httpListenAddr, and ignores
# SIGTERM when asked to, so stop() has to escalate to SIGKILL.
FAKE_SERVER = """\
import http.server, signal, sys
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
addr = next(a for a in sys.argv if a.startswith("-httpListenAddr=")).split("=", 1)[1]
host, port = addr.rsplit(":", 1)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer((host, int(port)), Health).serve_forever()
"""


def fake_binary(tmp_path: Path, body: str, *, python: bool = False) -> Path:
    path = tmp_path / "fake-server"
    shebang = f"#!{sys.executable}" if python else "#!/bin/sh"
    path.write_text(f"{shebang}\n{body}")
    path.chmod(0o755)
    return path


class IgnoresTerm(VictoriaServer):
    def _command(self) -> list[str]:
        return [*super()._command(), "--ignore-term"]


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    server = IgnoresTerm(tmp_path / "data", fake_binary(tmp_path, FAKE_SERVER, python=True))
    with server:
        assert server.alive()
        pid = server.pid
        t0 = time.monotonic()
        server.stop(timeout=0.3)
        assert 0.3 <= time.monotonic() - t0 < 5
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, "echo 'fatal: cannot open storage' >&2\nexit 3\n")
    server = VictoriaServer(tmp_path / "data", binary)
    with pytest.raises(ServerError, match=r"exited with status 3(.|\n)*fatal: cannot open storage"):
        server.start()
    assert not server.running()


def test_start_timeout_kills_the_process(tmp_path: Path) -> None:
    server = VictoriaServer(tmp_path / "data", fake_binary(tmp_path, "exec sleep 60\n"))
    with pytest.raises(
        ServerError, match=r"not ready at http://127\.0\.0\.1:\d+/health after 0\.3 s"
    ):
        server.start(timeout=0.3)
    assert not server.running()


def test_first_start_retries_when_the_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import servers

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([[taken]])
        real_free_ports = servers.free_ports
        monkeypatch.setattr(
            servers, "free_ports", lambda n=1: next(picks, None) or real_free_ports(n)
        )

        with VictoriaServer(
            tmp_path / "data", fake_binary(tmp_path, FAKE_SERVER, python=True)
        ) as s:
            assert s.alive() and s.port != taken
    assert "address already in use" in s.log_path.read_text().lower()
