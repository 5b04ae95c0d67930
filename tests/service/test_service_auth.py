"""One meaning for the API token, and workers that open no door (issue 16, items 2, 3, 5, 6).

``pdm-edge run`` as real processes (one, or a supervisor and its workers); the API asked over
HTTP, the workers' Unix sockets over HTTP too, the stream port with real TCP connections.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_service import DEMO, REPO, Service, _free_port, _no_service_left_running, _pipeline
from test_service_api import FakeService
from test_service_workers import Supervised, _pump

from pdm.service.api import ControlAPI, Readable
from pdm.service.workers import unix_request

__all__ = ["_no_service_left_running"]  # its autouse stops every service a test starts

TOKEN = "a-token-for-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def token_env() -> Iterator[None]:
    """PDM_API_TOKEN set for the services this test starts (they inherit the environment)."""
    os.environ["PDM_API_TOKEN"] = TOKEN
    try:
        yield
    finally:
        os.environ.pop("PDM_API_TOKEN", None)


def _req(svc: Service, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"http://127.0.0.1:{svc.port}{path}", timeout=10, **kw)


def test_a_token_set_for_a_loopback_api_is_required(tmp_path: Path, token_env: None) -> None:
    """Issue 16 item 3: with PDM_API_TOKEN set and the API on 127.0.0.1, /status and
    POST /ack answered 200 without the token or with a wrong one."""
    svc = Service(tmp_path, _pipeline(tmp_path), "--simulate")
    assert _req(svc, "GET", "/health").status_code == 200  # a probe has no token
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        assert _req(svc, "GET", "/status", headers=headers).status_code == 401
        assert _req(svc, "GET", "/metrics", headers=headers).status_code == 401
        r = _req(svc, "POST", "/ack/demo-pump", json={"by": "mallory"}, headers=headers)
        assert r.status_code == 401
    assert _req(svc, "GET", "/status", headers=AUTH).status_code == 200
    r = _req(svc, "POST", "/ack/demo-pump", json={"by": "ana"}, headers=AUTH)
    assert r.status_code == 200 and "nothing to acknowledge" in r.json()["message"]
    assert svc.stop() == 0


def _listening_tcp_inodes() -> set[str]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A":  # LISTEN
                out.add(f[9])
    return out


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def test_workers_open_no_tcp_port_and_their_unix_sockets_want_the_token(
    tmp_path: Path, token_env: None
) -> None:
    """Issue 16 item 2: each worker served its own API on 127.0.0.1:<ephemeral> with no
    token, so any local account could acknowledge trips and promote models through it. The
    workers now listen on no TCP port at all (neither API nor stream): their APIs are Unix
    sockets (0600) in a private directory (0700), and ask for the token too."""
    svc = Supervised(tmp_path, [_pump(tmp_path, "a"), _pump(tmp_path, "b")], "--workers", "2")
    kids = svc.wait(lambda: len(svc.workers()) == 2 and svc.workers(), "two workers")
    svc.wait(lambda: _req(svc, "GET", "/health").json().get("ok"), "healthy workers")
    listening = _listening_tcp_inodes()
    for pid in kids:
        assert not (_socket_inodes(pid) & listening), f"worker {pid} listens on a TCP port"
    assert _socket_inodes(svc.proc.pid) & listening  # the supervisor's API and stream port
    cmdline = Path(f"/proc/{kids[0]}/cmdline").read_bytes().split(b"\0")
    path = cmdline[cmdline.index(b"--api") + 1].decode().removeprefix("unix:")
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert unix_request(path, "GET", "/status")[0] == 401
    assert unix_request(path, "GET", "/status", headers=AUTH)[0] == 200
    # Through the supervisor, with the token: the workers answer.
    r = _req(svc, "POST", "/ack/pump-b", json={"by": "ana"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert _req(svc, "POST", "/ack/pump-b", json={"by": "ana"}).status_code == 401
    assert svc.stop() == 0
    assert not os.path.exists(os.path.dirname(path))  # removed at the end


def test_run_with_workers_exits_2_in_one_line_when_a_pipeline_fails_to_load(
    tmp_path: Path,
) -> None:
    """Issue 16 item 6: with --workers 2, a machine whose model directory is missing gave
    one error line and then no API and no exit, for good (systemd's
    RestartPreventExitStatus=2 never fired)."""
    good = _pump(tmp_path, "a")
    bad = tmp_path / "bad.toml"
    text = DEMO.read_text().replace('path = "../models/demo-pump"', 'path = "/nonexistent/m"')
    bad.write_text(
        text.replace("teach_in_s", "# teach_in_s").replace(
            "\n[alarms]\n", '\n[alarms]\nrelay = "log:"\n'
        )
    )
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pdm.cli", "run", str(good), str(bad), "--workers", "2",
         "--simulate", "--api", f"127.0.0.1:{_free_port()}", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - t0
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert run.returncode == 2, run.stderr
    assert errors == ["pdm-edge: error: /nonexistent/m: no model here (model.json is missing)"]
    assert "Traceback" not in run.stderr and took < 60


def test_idle_connections_cannot_exhaust_the_supervisors_door(tmp_path: Path) -> None:
    """Issue 16 item 5, with --workers 2: 1,024 connections that never send a byte took
    every handshake slot of the supervisor (a sensor connecting then was refused), and each
    refusal was a WARNING line. Now a newcomer pushes the oldest waiting connection out
    (idle ones also go after the first-frame deadline, 30 s for these pipelines: issue 17
    sized it for gateways that stagger their sensors), and the refusals are one line a
    minute per cause."""
    svc = Supervised(tmp_path, [_pump(tmp_path, "a"), _pump(tmp_path, "b")], "--workers", "2")
    svc.wait(lambda: len(svc.workers()) == 2, "two workers")
    idle = []
    try:
        for i in range(1100):  # from 44 addresses, 25 each (under the per-address cap, 68)
            idle.append(
                socket.create_connection(
                    ("127.0.0.1", svc.listen), timeout=10, source_address=(f"127.0.1.{i // 25}", 0)
                )
            )
        sent = svc.send("a_de", "--speed", "64", "--retry-s", "2")
        assert sent.returncode == 0, sent.stderr
        pushed = 0
        for s in idle:  # the oldest 76 (and the sender's newer ones' worth) pushed out
            s.settimeout(0.001)
            try:
                pushed += s.recv(1) == b""
            except ConnectionResetError:
                pushed += 1
            except TimeoutError:
                pass
        assert pushed >= 1100 - 1024
    finally:
        for s in idle:
            s.close()
    st = {m["id"]: m for m in _req(svc, "GET", "/status").json()}
    assert st["pump-a"]["windows"] > 0
    metrics = _req(svc, "GET", "/metrics").text
    assert re.search(r'pdm_door_refused_total\{appliance="[^"]+",cause="too_many"\} [1-9]', metrics)
    assert svc.stop() == 0
    lines = [line for line in svc.log.read_text().splitlines() if "refused" in line]
    assert 1 <= len(lines) <= 4, lines  # too_many: one line (a minute)


def test_idle_connections_from_the_sensors_own_address_cannot_shut_the_door(
    tmp_path: Path,
) -> None:
    """Issue 16 item 5 from the sender's own address (the repro ran from 127.0.0.1, as the
    sender): 300 idle connections filled the 68 slots of that address at the supervisor's
    door and `send` was refused (per_peer) until they timed out, and again with each wave."""
    svc = Supervised(tmp_path, [_pump(tmp_path, "a"), _pump(tmp_path, "b")], "--workers", "2")
    svc.wait(lambda: len(svc.workers()) == 2, "two workers")
    idle = []
    try:
        for _ in range(300):
            try:
                idle.append(socket.create_connection(("127.0.0.1", svc.listen), timeout=10))
            except ConnectionResetError:
                pass
        sent = svc.send("a_de", "--speed", "64", "--retry-s", "0")
        assert sent.returncode == 0, sent.stderr
    finally:
        for s in idle:
            s.close()
    assert svc.machines()["pump-a"]["windows"] > 0
    assert svc.stop() == 0


# -- authenticated stream input (Build 3) -----------------------------------------------------------

GW_SECRET = "5e" * 32


@pytest.fixture
def stream_keys(tmp_path: Path) -> Iterator[Path]:
    """A receiver key file (gateway gw-1 may send as a_de and demo-pump), named by
    PDM_STREAM_KEYS_FILE for the services this test starts."""
    keys = tmp_path / "stream-keys"
    keys.write_text(f"# plant gateways\ngw-1 {GW_SECRET} a_de,demo-pump,motor_de\n")
    keys.chmod(0o600)
    os.environ["PDM_STREAM_KEYS_FILE"] = str(keys)
    try:
        yield keys
    finally:
        os.environ.pop("PDM_STREAM_KEYS_FILE", None)


def _send(
    port: int, sensor: str, *extra: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PDM_STREAM_KEYS_FILE"}
    if key is not None:
        env["PDM_STREAM_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", "send", str(REPO / "fixtures" / "healthy.csv.gz"),
         "--to", f"127.0.0.1:{port}", "--sensor", sensor, "--now", "--speed", "16",
         "--retry-s", "2", *extra],
        capture_output=True, text=True, cwd=REPO, timeout=120, env=env,
    )  # fmt: skip


def test_a_service_with_stream_keys_takes_only_signed_frames(
    tmp_path: Path, stream_keys: Path
) -> None:
    listen = _free_port()
    svc = Service(tmp_path, _pipeline(tmp_path), "--listen", f"127.0.0.1:{listen}")
    unsigned = _send(listen, "motor_de")
    assert unsigned.returncode == 1 and "refuse" in unsigned.stderr
    wrong = _send(listen, "motor_de", "--key-id", "gw-1", key="00" * 32)
    assert wrong.returncode == 1
    signed = _send(listen, "motor_de", "--key-id", "gw-1", key=GW_SECRET)
    assert signed.returncode == 0, signed.stderr
    st = svc.wait(lambda: (s := svc.get("/status")[0])["windows"] > 20 and s, "windows")
    assert st["refused"] == {}  # refused at the door, before any machine saw them
    metrics = svc.get("/metrics")
    assert svc.stop() == 0
    log = svc.log.read_text()
    # Both refusals are of cause 'auth': one line a minute for the lot.
    assert log.count("unauthenticated frame (version 1)") == 1
    assert "HMAC tag does not match" not in log and GW_SECRET not in log
    refused = re.search(
        r'pdm_input_refused_total\{appliance="[^"]+",input="tcp",cause="auth"\} (\d+)', metrics
    )
    assert refused and int(refused[1]) >= 2


def test_signed_frames_reach_a_worker_through_the_supervisor(
    tmp_path: Path, stream_keys: Path
) -> None:
    svc = Supervised(tmp_path, [_pump(tmp_path, "a"), _pump(tmp_path, "b")], "--workers", "2")
    svc.wait(lambda: len(svc.workers()) == 2, "two workers")
    signed = _send(svc.listen, "a_de", "--key-id", "gw-1", key=GW_SECRET)
    assert signed.returncode == 0, signed.stderr
    svc.wait(lambda: svc.machines()["pump-a"]["windows"] > 20, "windows of pump-a")
    # gw-1 may not send for b_de: refused by the worker after the supervisor handed it over
    other = _send(svc.listen, "b_de", "--key-id", "gw-1", key=GW_SECRET)
    assert other.returncode == 1
    assert svc.machines()["pump-b"]["windows"] == 0
    assert svc.stop() == 0
    assert "may not send for sensor 'b_de'" in svc.log.read_text()


def test_send_key_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    for extra, env_key, words in (
        (["--key-id", "gw-1"], None, "set PDM_STREAM_KEY"),
        (["--key-id", "gw-1"], "zz", "not hex"),
        (["--key-id", "gw-1"], "00" * 4, "at least 16 bytes"),
        (["--key-id", "g/w"], "00" * 16, "must be 1-32 characters"),
    ):
        run = _send(1, "s", *extra, key=env_key)
        assert run.returncode == 2, run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith("pdm-edge: error:") and words in line, line


def test_promotion_through_the_supervisor_needs_shadow_evidence_or_force(
    tmp_path: Path, token_env: None
) -> None:
    """With --workers N, POST /models/M/promote reached Supervisor.promote() with a
    ``force`` it did not take: every promotion through the supervisor answered 500. Now it is
    passed on: without shadow evidence 409, forced by the token's holder 200."""
    import io
    import shutil
    import tarfile

    models = tmp_path / "models"
    pipes = []
    for letter in "ab":
        shutil.copytree(REPO / "models" / "demo-pump", models / letter)
        p = _pump(tmp_path, letter)
        p.write_text(p.read_text().replace(f"{REPO}/models/demo-pump", str(models / letter)))
        pipes.append(p)
    svc = Supervised(tmp_path, pipes, "--workers", "2")
    svc.wait(lambda: _req(svc, "GET", "/health").json().get("ok"), "healthy workers")
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w:gz") as tar:
        for name in ("model.onnx", "model.json"):
            tar.add(models / "b" / name, arcname=name)
    r = _req(
        svc,
        "PUT",
        "/models/pump-b/candidate",
        content=bundle.getvalue(),
        headers={**AUTH, "Content-Type": "application/gzip"},
    )
    assert r.status_code == 202, r.text
    r = _req(svc, "POST", "/models/pump-b/promote", json={"by": "ana"}, headers=AUTH)
    assert r.status_code == 409 and "shadow" in r.json()["error"], r.text
    r = _req(svc, "POST", "/models/pump-b/promote", json={"by": "ana", "force": True})
    assert r.status_code == 401
    r = _req(svc, "POST", "/models/pump-b/promote", json={"by": "ana", "force": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert not (models / "b.candidate").exists() and (models / "b.previous").is_dir()
    assert svc.stop() == 0


def test_an_upload_reaches_a_workers_unix_socket_streamed_with_its_length(
    tmp_path: Path,
) -> None:
    """The supervisor hands a model upload to the worker's API on its Unix socket as it reads
    it: with the Content-Length it was given (the API answers a chunked body 411) and with
    the token (401 without)."""
    got: list[bytes] = []

    class Worker(FakeService):
        def upload_candidate(self, machine: str, body: Readable) -> dict[str, Any]:
            got.append(body.read())
            return {"machine": machine, "candidate": "v2"}

    sock = str(tmp_path / "w.sock")
    data = os.urandom(300_000)
    gz = {"Content-Type": "application/gzip", "Content-Length": str(len(data))}
    with ControlAPI(Worker(), host=f"unix:{sock}", token=TOKEN):
        auth = {**gz, "Authorization": f"Bearer {TOKEN}"}
        status, raw = unix_request(sock, "PUT", "/models/pump-1/candidate", io.BytesIO(data), auth)
        assert (status, json.loads(raw)["candidate"]) == (202, "v2")
        assert got == [data]
        status, _ = unix_request(sock, "PUT", "/models/pump-1/candidate", io.BytesIO(data), gz)
        assert status == 401 and got == [data]
