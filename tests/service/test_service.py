"""``pdm-edge run``: the service as a process — simulator in, alarms, relay and history out;
SIGTERM and kill -9 restarts, the watchdog, the control API with the real wiring."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pdm.history import open_store
from pdm.history.records import StateChange

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pipelines" / "demo.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pipeline(tmp_path: Path, relay: str = "log:") -> Path:
    text = DEMO.read_text().replace(
        'path = "../models/demo-pump"', f'path = "{REPO}/models/demo-pump"'
    )
    p = tmp_path / "pump.toml"
    p.write_text(text.replace("\n[alarms]\n", f'\n[alarms]\nrelay = "{relay}"\n'))
    return p


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_service_left_running() -> Any:
    """Whatever a test does (or fails to do), every service it started is stopped by handle."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Service:
    """``pdm-edge run`` in a subprocess with its control API on a free port."""

    def __init__(self, tmp_path: Path, pipeline: Path | list[Path], *args: str) -> None:
        self.port = _free_port()
        self.data = tmp_path / "data"
        self.log = tmp_path / f"service-{self.port}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pdm.cli",
                "run",
                *map(str, pipeline if isinstance(pipeline, list) else [pipeline]),
                "--data-dir",
                str(self.data),
                "--api",
                f"127.0.0.1:{self.port}",
                *args,
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        _started.append(self.proc)
        self.wait(lambda: self.get("/health") is not None, "the API")

    def get(self, path: str) -> Any:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.TransportError:
            return None
        return (
            r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        )

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"service exited: {self.log.read_text()[-2000:]}"
            got = cond()
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {self.log.read_text()[-2000:]}")

    def state(self) -> str:
        st = self.get("/status")
        return st[0]["state"] if st else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _changes(data: Path) -> list[StateChange]:
    with open_store(f"sqlite:///{data}/history.db") as st:
        return [r for r in st.log("demo-pump", limit=1000) if isinstance(r, StateChange)]


def test_simulated_fault_trips_then_sigterm_flushes_and_drops_the_relay(
    tmp_path: Path, modbus_server
) -> None:
    pl = _pipeline(tmp_path, f"modbus://127.0.0.1:{modbus_server.port}")
    svc = Service(tmp_path, pl, "--simulate", "--fault", "bpfo:0.3@2")
    svc.wait(lambda: modbus_server.coil(0), "the relay to be energised")
    svc.wait(lambda: svc.state() == "trip", "the trip", timeout=30)
    # The API shows the new state as soon as it is decided; the coil write follows within
    # the same window's processing (a relay call is bounded to 1.5 s).
    svc.wait(lambda: modbus_server.coil(0) is False, "the coil to drop", timeout=2)
    metrics = svc.get("/metrics")
    # Every sample carries the appliance (many appliances, one Prometheus).
    assert re.search(r'pdm_windows_total\{appliance="[^"]+",machine="demo-pump"\}', metrics)
    assert svc.stop() == 0  # SIGTERM: a clean stop
    assert "Traceback" not in svc.log.read_text()
    with open_store(f"sqlite:///{svc.data}/history.db") as st:
        events = [e.type for e in st.log(None, kinds=("events",), limit=1000)]
        assert st.count("features", "demo-pump") > 0
    assert "service_stop" in events  # history flushed at the end
    machine = [c for c in _changes(svc.data) if not c.sensor]  # newest first
    assert machine and machine[0].new == "trip" and machine[-1].old == "ok"


def test_kill_9_and_restart_keep_the_trip_and_send_nothing_again(
    tmp_path: Path, modbus_server
) -> None:
    pl = _pipeline(tmp_path, f"modbus://127.0.0.1:{modbus_server.port}")
    svc = Service(tmp_path, pl, "--simulate", "--fault", "bpfo:0.3@2")
    svc.wait(lambda: svc.state() == "trip", "the trip")
    svc.stop(signal.SIGKILL)
    n = len(_changes(svc.data))
    modbus_server.set_coil(0, True)  # someone re-energised the relay by hand meanwhile
    # Restart on a healthy simulation: the stored, unacknowledged trip stays.
    svc2 = Service(tmp_path, pl, "--simulate")
    assert svc2.state() == "trip"
    svc2.wait(lambda: modbus_server.coil(0) is False, "the relay to drop at start")
    time.sleep(2)
    assert svc2.state() == "trip"
    # Acknowledge through the API: healthy for the off-delay, so the latch ends.
    r = httpx.post(
        f"http://127.0.0.1:{svc2.port}/ack/demo-pump",
        json={"by": "ana", "comment": "bearing replaced"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    svc2.wait(lambda: svc2.state() == "ok", "the acknowledged trip to end")
    svc2.wait(lambda: modbus_server.coil(0), "the relay to be energised again")
    assert svc2.stop() == 0
    changes = _changes(svc2.data)
    assert len(changes) == n + 1 and (changes[0].old, changes[0].new) == ("trip", "ok")


def test_a_stalled_processing_loop_drops_the_relay(tmp_path: Path, modbus_server) -> None:
    """The watchdog, in process: a runner that stops moving with work waiting."""
    from pdm.config import load_pipeline
    from pdm.history import parse_store_url
    from pdm.service.app import Service as App
    from pdm.service.app import ServiceOptions

    pl = load_pipeline(_pipeline(tmp_path, f"modbus://127.0.0.1:{modbus_server.port}"))
    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"),
        data_dir=tmp_path / "d",
        api=None,
        simulate=True,
        stall_s=1.0,
    )
    app = App([pl], opts).start()
    try:
        runner = app.runners["demo-pump"]
        deadline = time.monotonic() + 20
        while not modbus_server.coil(0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert modbus_server.coil(0) is True
        real = runner._cut  # every chunk's first step, on the pool's thread
        runner._cut = lambda chunk: time.sleep(4) or real(chunk)  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while modbus_server.coil(0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert modbus_server.coil(0) is False  # dropped by the watchdog
        assert not app.health()["ok"] and "stalled" in json.dumps(app.health())
        runner._cut = real  # type: ignore[method-assign]
        deadline = time.monotonic() + 20
        while not modbus_server.coil(0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert modbus_server.coil(0) is True  # moving again: released
    finally:
        app.stop()
    assert modbus_server.coil(0) is False  # stopped: fail-safe


def test_a_busy_processing_loop_is_not_a_stuck_one(
    tmp_path: Path, modbus_server, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: at 300 demo machines the watchdog took a busy loop (one long round,
    computing) for a stalled one and dropped every relay. A loop that computes is left
    alone until its data waits --max-lag-s; one that does not (the test above) is stuck."""
    from pdm.config import load_pipeline
    from pdm.history import parse_store_url
    from pdm.service.app import Service as App
    from pdm.service.app import ServiceOptions

    pl = load_pipeline(_pipeline(tmp_path, f"modbus://127.0.0.1:{modbus_server.port}"))
    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"),
        data_dir=tmp_path / "d",
        api=None,
        simulate=True,
        stall_s=1.0,
        max_lag_s=10.0,
    )
    app = App([pl], opts).start()
    try:
        runner = app.runners["demo-pump"]
        deadline = time.monotonic() + 20
        while not modbus_server.coil(0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert modbus_server.coil(0) is True
        real = runner._cut
        spun: list[float] = []

        def busy(chunk: Any) -> Any:
            if not spun:  # one round of 3 s of computing
                end = time.perf_counter() + 3.0
                while time.perf_counter() < end:
                    sum(range(1000))
                spun.append(3.0)
            return real(chunk)

        runner._cut = busy  # type: ignore[method-assign]
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert modbus_server.coil(0) is True  # never dropped
            time.sleep(0.05)
        assert spun and app.health()["ok"]
    finally:
        app.stop()
    assert any("processing busy: one round has run" in r.message for r in caplog.records)
    assert not any("relay dropped" in r.message for r in caplog.records)


def test_run_needs_a_source_and_says_so(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pdm.cli", "run", str(DEMO), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 2 and "give a source" in proc.stderr


def _app(tmp_path: Path, pipeline_text_extra: str = "", sign_with: Path | None = None) -> Any:
    """An in-process service on a copy of the demo model, simulator-fed, no API."""
    import shutil

    from pdm.config import load_pipeline
    from pdm.history import parse_store_url
    from pdm.service.app import Service as App
    from pdm.service.app import ServiceOptions

    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "demo-pump", models / "demo-pump")
    if sign_with is not None:
        from pdm.scoring.update import sign_bundle

        sign_bundle(models / "demo-pump", sign_with)
    text = DEMO.read_text().replace('path = "../models/demo-pump"', f'path = "{models}/demo-pump"')
    text = text.replace("[model]\n", "[model]\n" + pipeline_text_extra)
    (tmp_path / "pump.toml").write_text(text)
    pl = load_pipeline(tmp_path / "pump.toml")
    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"),
        data_dir=tmp_path / "d",
        api=None,
        simulate=True,
        extra={"model_poll_s": 0.2},
    )
    return App([pl], opts), models


def _events(app: Any, kind: str) -> list[str]:
    app.writer.drain(5)
    with open_store(f"sqlite:///{app.opts.data_dir.parent}/h.db") as st:
        return [e.message for e in st.log(None, kinds=("events",), limit=1000) if e.type == kind]


def _retrained(tmp_path: Path, seed: int) -> Path:
    """A second, different model for the same pipeline (another seed, and another alert
    rate: a one-component mixture fits the same whatever the seed, so only the calibration
    tells the graphs apart)."""
    from pdm.config import load_pipeline
    from pdm.scoring.train import collect, train

    pl = load_pipeline(tmp_path / "pump.toml")
    out = tmp_path / f"candidate-{seed}"
    train(
        collect([REPO / "fixtures" / "healthy.csv.gz"], pl),
        out,
        detector="gmm",
        alerts_per_week=2.0,
        holdout=0.35,  # not the demo model's 0.3: the least alert would make them one model
        seed=seed,
    )
    return out


def _version(app: Any) -> str:
    return app.runners["demo-pump"].scores.scorer.model.version


def test_a_corrupt_model_is_rejected_and_the_old_one_keeps_scoring(tmp_path: Path) -> None:
    app, models = _app(tmp_path)
    app.start()
    try:
        old = _version(app)
        onnx = models / "demo-pump" / "model.onnx"
        onnx.write_bytes(onnx.read_bytes()[:-100])  # truncated
        deadline = time.monotonic() + 10
        while not _events(app, "model_rejected") and time.monotonic() < deadline:
            time.sleep(0.2)
        (msg,) = _events(app, "model_rejected")
        assert "model.onnx" in msg and "\n" not in msg
        n = app.runners["demo-pump"].stats.windows
        time.sleep(1)
        assert _version(app) == old and app.runners["demo-pump"].stats.windows > n
    finally:
        app.stop()


def test_history_keeps_the_pipelines_retention_and_writes_at_low_priority(tmp_path: Path) -> None:
    """A service runs for years: its SQLite history is pruned to ``[history] retention_days``
    (the longest of its machines'); the writer thread runs at a lower CPU priority than the
    processing; what the service set up at start is out of the garbage collector's sight."""
    import gc
    import threading

    from pdm.history.records import Event

    day = 86_400 * 10**9
    with open_store(f"sqlite:///{tmp_path}/h.db") as st:
        st.write([Event("old-machine", time.time_ns() - 30 * day, "note", "info", "a month ago")])
    app, _ = _app(tmp_path)
    text = (tmp_path / "pump.toml").read_text()
    assert "[history]" not in text
    (tmp_path / "pump.toml").write_text(text + "\n[history]\nretention_days = 7\n")
    from pdm.config import load_pipeline

    app.pipelines = [load_pipeline(tmp_path / "pump.toml")]
    app.start()
    try:
        assert gc.get_freeze_count() > 0
        deadline = time.monotonic() + 20
        while app.runners["demo-pump"].stats.windows < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        app.writer.drain(5)
        (writer,) = [t for t in threading.enumerate() if t.name == "pdm-history-writer"]
        stat = Path(f"/proc/self/task/{writer.native_id}/stat").read_text().rsplit(")", 1)[1]
        assert int(stat.split()[16]) == 10  # field 19 of stat: nice
        assert app.writer.flush_interval_s == 0.5  # what kill -9 can lose (docs/history.md)
        with open_store(f"sqlite:///{tmp_path}/h.db") as st:
            machines = {e.machine for e in st.log(None, limit=1000)}
        assert "old-machine" not in machines and "appliance" in machines
    finally:
        app.stop()
        gc.unfreeze()


def test_only_signed_models_are_swapped_in_when_keys_are_set(tmp_path: Path) -> None:
    from pdm.scoring.update import generate_keypair, install_candidate, sign_bundle

    keys = tmp_path / "keys"
    keys.mkdir()
    generate_keypair(keys / "pdm.key", keys / "pdm.pub")
    # The running model is signed; so must be any model that replaces it.
    app, models = _app(tmp_path, f'public_keys = ["{keys}/pdm.pub"]\n', sign_with=keys / "pdm.key")
    app.start()
    try:
        old = _version(app)
        unsigned = _retrained(tmp_path, seed=7)
        install_candidate(unsigned, models, "demo-pump")
        deadline = time.monotonic() + 20
        while not _events(app, "model_rejected") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "not signed" in _events(app, "model_rejected")[0] and _version(app) == old
        signed = _retrained(tmp_path, seed=8)
        sign_bundle(signed, keys / "pdm.key")
        install_candidate(signed, models, "demo-pump")
        deadline = time.monotonic() + 20
        while _version(app) == old and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _version(app) != old
        assert any(_version(app) in m for m in _events(app, "model_swapped"))
    finally:
        app.stop()


def test_a_service_with_keys_refuses_to_start_on_an_unsigned_model(tmp_path: Path) -> None:
    from pdm.errors import ModelError
    from pdm.scoring.update import generate_keypair

    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    with pytest.raises(ModelError, match="not signed"):
        _app(tmp_path, f'public_keys = ["{tmp_path}/k.pub"]\n')


def test_end_to_end_over_tcp_alarm_relay_and_webhook_at_the_expected_window(
    tmp_path: Path, modbus_server
) -> None:
    """A simulated recording whose outer-race fault starts at 4.0 s, streamed over the TCP input:
    danger at window 51 — where the on-delay (5 of the last 8 windows) puts it — and the trip,
    the relay drop and the signed webhooks at window 55, where 5 of the last 8 windows also
    carry the corroborating diagnosis (the engine names the outer race from window 51),
    as in a replay of the same file."""
    from test_webhook import SECRET, Receiver

    rx = Receiver(tmp_path).start()
    try:
        pl = _pipeline(tmp_path, f"modbus://127.0.0.1:{modbus_server.port}")
        pl.write_text(pl.read_text() + f'webhooks = [{{ url = "{rx.url}" }}]\n')
        listen = _free_port()
        env_secret = {"PDM_WEBHOOK_SECRET": SECRET.decode()}
        os.environ.update(env_secret)
        try:
            svc = Service(tmp_path, pl, "--listen", f"127.0.0.1:{listen}")
        finally:
            for k in env_secret:
                os.environ.pop(k)
        svc.wait(lambda: modbus_server.coil(0), "the relay to be energised")
        send = subprocess.run(
            [
                sys.executable,
                "-m",
                "pdm.cli",
                "send",
                str(REPO / "fixtures" / "outer_race.csv.gz"),
                "--to",
                f"127.0.0.1:{listen}",
                "--sensor",
                "motor_de",
                "--now",
                "--speed",
                "4",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert send.returncode == 0, send.stderr
        svc.wait(lambda: svc.state() == "trip", "the trip")
        assert modbus_server.coil(0) is False
        reqs = svc.wait(lambda: len(rx.requests()) >= 2 and rx.requests(), "the webhooks")
        bodies = [json.loads(r["body"]) for r in reqs]
        assert all(r["valid"] for r in reqs)
        assert [(b["old_state"], b["new_state"]) for b in bodies] == [
            ("ok", "danger"),
            ("danger", "trip"),
        ]
        assert svc.stop() == 0
        with open_store(f"sqlite:///{svc.data}/history.db") as st:
            t0 = int(st.features("demo-pump").t_ns[0])
        import datetime as dt

        def window(body: dict) -> int:
            t = dt.datetime.fromisoformat(body["window_time"].replace("Z", "+00:00")).timestamp()
            return round((t - t0 / 1e9) / 0.08)

        assert [window(b) for b in bodies] == [51, 55]
    finally:
        rx.stop()


def test_connections_closing_together_are_spooled_together(tmp_path: Path) -> None:
    """Forty connections closing at once (a switch restarting): their events reach history,
    in a few spool writes — not an fsync each on the processing thread."""
    from pdm.config import load_pipeline
    from pdm.history import parse_store_url
    from pdm.service.app import Service as App
    from pdm.service.app import ServiceOptions

    listen = _free_port()
    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"),
        data_dir=tmp_path / "d",
        api=None,
        listen=f"127.0.0.1:{listen}",
        silence_s=60.0,
    )
    app = App([load_pipeline(_pipeline(tmp_path))], opts).start()
    pushes: list[int] = []
    real_push = app.writer.spool.push

    def counting(records: Any) -> Any:
        pushes.append(sum(1 for r in records if getattr(r, "type", "") == "stream_disconnected"))
        return real_push(records)

    app.writer.spool.push = counting  # type: ignore[method-assign]
    try:
        # From 40 addresses (127.0.0.2 …): events of one address are held back after the
        # first each minute (a peer that connects in a loop must not fill the history).
        clients = [
            socket.create_connection(("127.0.0.1", listen), source_address=(f"127.0.0.{2 + i}", 0))
            for i in range(40)
        ]
        deadline = time.monotonic() + 10
        while app.inputs.tcp.connections < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.inputs.tcp.connections == 40
        for c in clients:
            c.close()
        deadline = time.monotonic() + 10
        while sum(pushes) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(pushes) == 40
        assert len([n for n in pushes if n]) <= 8, pushes
    finally:
        app.stop()
    assert len(_events(app, "stream_disconnected")) == 40


def test_a_source_that_goes_silent_is_a_sensor_fault(tmp_path: Path) -> None:
    listen = _free_port()
    svc = Service(
        tmp_path, _pipeline(tmp_path), "--listen", f"127.0.0.1:{listen}", "--silence-s", "1"
    )
    send = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "send",
            str(REPO / "fixtures" / "healthy.csv.gz"),
            "--to",
            f"127.0.0.1:{listen}",
            "--sensor",
            "demo-pump",
            "--now",
            "--speed",
            "8",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert send.returncode == 0, send.stderr
    faults = svc.wait(lambda: svc.get("/status")[0]["sensor_faults"], "the silence", timeout=10)
    assert "silent" in json.dumps(faults) and "motor_de" in faults
    assert svc.state() == "ok"  # a silent sensor never trips
    assert svc.stop() == 0
