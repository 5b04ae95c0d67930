"""SIGTERM stops ``pdm-edge run`` in time whatever the history store does (issue 16, item 11).

Real processes; the store is an InfluxDB URL on a port where nothing listens (down), or a
real TCP server that accepts and never answers (hanging): both the same to the service as a
real InfluxDB that is down or wedged. Docker sends SIGKILL 10 s after SIGTERM by default;
the service's budget is ``STOP_BUDGET_S`` (8 s).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_service import REPO, Service, _free_port, _no_service_left_running, _pipeline

from pdm.history.spool import Spool
from pdm.service.app import STOP_BUDGET_S

__all__ = ["_no_service_left_running"]  # its autouse stops every service a test starts


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A TCP server that accepts every connection and never answers."""
    lst = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        lst.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(lst.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(lst.getsockname()[1])
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    lst.close()


@pytest.mark.parametrize("store", ["down", "hanging"])
def test_sigterm_with_the_history_store_down_stops_within_the_budget(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue("hanging_port") if store == "hanging" else _free_port()
    svc = Service(
        tmp_path,
        _pipeline(tmp_path),
        "--simulate",
        "--actions",
        "dry-run",
        "--store",
        f"influx1://127.0.0.1:{port}/pdm",
    )
    svc.wait(lambda: (svc.get("/status") or [{}])[0].get("windows", 0) > 10, "windows")
    t0 = time.monotonic()
    assert svc.stop(signal.SIGTERM, timeout=30) == 0
    took = time.monotonic() - t0
    assert took < STOP_BUDGET_S, f"SIGTERM took {took:.1f} s"  # 19-27 s before the fix
    log = svc.log.read_text()
    assert "Traceback" not in log
    # Nothing lost: what the store did not take is in the spool for the next start.
    (spool,) = (svc.data / "spool").glob("influx1-*.db")
    with Spool(spool) as sp:
        kinds = {k for _, _, _, k in sp.peek(10**6)}
    assert {"features", "scores", "events"} <= kinds


def test_sigterm_while_starting_is_a_clean_stop_with_status_0(tmp_path: Path) -> None:
    """A SIGTERM that arrives while the service is still loading used to kill it with the
    default action (status 143); now it is a stop like any other."""
    pl = _pipeline(tmp_path)
    for delay in (0.5, 1.0):  # (the imports alone take ~1.3 s; the handler is set first)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pdm.cli", "run", str(pl), "--simulate", "--api", "off",
             "--data-dir", str(tmp_path / "d"), "--actions", "dry-run"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (delay, err)
        assert "Traceback" not in err


def test_the_processing_thread_waits_while_the_machines_stop(
    tmp_path: Path, hanging_port: int
) -> None:
    """Once the stream receiver has stopped, the processing thread waits for the machines'
    stop markers; it used to spin on the stopped receiver's poll (which returns at once)
    holding the interpreter lock, so that every return from I/O of the stopping thread
    waited for it: each machine's stop took ~130 ms under load, and 75 machines in a
    ``--workers auto`` worker outlasted the 8-s budget and got the worker killed.

    Machine A's relay is a Modbus device that accepts and never answers (a wedged module):
    its stop waits on the relay for ~3 s while machine B has not stopped yet, which is the
    time the processing thread used to spin. In-process, to read that thread's CPU time."""
    from pdm.config import load_pipeline
    from pdm.history import parse_store_url
    from pdm.service.app import Service as App
    from pdm.service.app import ServiceOptions
    from pdm.service.watchdog import thread_cpu_s

    relay = f"modbus://127.0.0.1:{hanging_port}?timeout=0.4&retries=1"
    text = _pipeline(tmp_path).read_text()  # machine b: a dry-run relay, its own ids
    b_path = tmp_path / "pump-b.toml"
    b_path.write_text(
        text.replace('id = "demo-pump"', 'id = "pump-b"').replace('id = "motor_de"', 'id = "b_de"')
    )
    b = load_pipeline(b_path)
    a = load_pipeline(_pipeline(tmp_path, relay=relay))
    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"),
        data_dir=tmp_path / "d",
        api=None,
        listen=f"127.0.0.1:{_free_port()}",
    )
    app = App([a, b], opts).start()
    try:
        deadline = time.monotonic() + 10
        while app.pool.native_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                if (v := thread_cpu_s(app.pool.native_id)) is not None:
                    cpu.append(v)
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(0.2)
        t0 = time.monotonic()
    finally:
        app.stop()
    took = time.monotonic() - t0
    done.set()
    sampler.join(2)
    assert took > 2.5, f"the stop took {took:.1f} s: the relay was not waited for"
    spun = cpu[-1] - cpu[0]
    # ~1-3 s of CPU before the fix (the whole wait, less what other work took of the cores)
    assert spun < 0.3, f"the processing thread used {spun:.2f} s of CPU in a {took:.1f}-s stop"
