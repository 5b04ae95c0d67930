"""The service's live inputs under hostile frames (issue 16): one bad frame must not blind it.

Real sockets throughout: ``pdm-edge run --listen`` as a subprocess (the repros as the issue
gives them) or the service in this process (to look inside), frames from
:func:`~pdm.sources.codec.encode_frame` over TCP, history read back from the real SQLite store.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_service import Service, _free_port, _no_service_left_running, _pipeline

from pdm.history import open_store
from pdm.sources.codec import encode_frame

__all__ = ["_no_service_left_running"]  # its autouse stops every service a test starts

FS = 25600.0
N = 2560  # samples a frame: 0.1 s
CHANNELS = ("x_g", "y_g")


def frames(t0_ns: int, k: int, *, fs: float = FS, sensor: str = "demo-pump") -> bytes:
    """``k`` consecutive frames of quiet noise from ``t0_ns`` on."""
    out = []
    for i in range(k):
        data = np.random.default_rng(i).normal(0.0, 0.05, (N, 2)).astype(np.float32)
        t = t0_ns + round(i * N / fs * 1e9)
        out.append(encode_frame(sensor, data, fs=fs, t0_ns=t, channels=CHANNELS))
    return b"".join(out)


def one(t0_ns: int, *, fs: float = FS) -> bytes:
    return encode_frame(
        "demo-pump", np.zeros((N, 2), np.float32), fs=fs, t0_ns=t0_ns, channels=CHANNELS
    )


def send(port: int, data: bytes) -> None:
    """Send ``data`` on a new connection and close it (a reset by the receiver is fine)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(65536):
                pass
        except OSError:  # reset by the receiver (ECONNRESET, EPIPE, ENOTCONN)
            pass


def scores(svc: Service) -> int:
    with open_store(f"sqlite:///{svc.data}/history.db") as st:
        return st.count("scores", "demo-pump")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    listen = _free_port()
    s = Service(
        tmp_path, _pipeline(tmp_path), "--listen", f"127.0.0.1:{listen}", "--silence-s", "30"
    )
    s.listen = listen  # type: ignore[attr-defined]
    yield s


def _status(svc: Service) -> dict[str, Any]:
    return dict(svc.get("/status")[0])


HOUR_NS = 3600 * 10**9


@pytest.mark.parametrize(
    "offset_ns", [2**63 - 1, -(2**63), 0, HOUR_NS, -2 * HOUR_NS], ids=str
)  # (the two extremes and 0 are absolute times; the others relative to now)
def test_a_frame_with_an_absurd_time_is_refused_and_history_keeps_flowing(
    svc: Service, offset_ns: int
) -> None:
    """Issue 16, item 1 (and item 7's t0 = -2**63): good frames, one frame whose t0 is
    absurd, more good frames. The absurd one is refused (counted, one line, no traceback);
    history keeps taking every machine's rows (before the fix: a stream_gap event at
    t = 2**63-1 stopped the SQLite writer for good, while /health said ok)."""
    port = svc.listen  # type: ignore[attr-defined]
    send(port, frames(time.time_ns(), 30))
    before = svc.wait(lambda: scores(svc) > 5 and scores(svc), "the first scores")
    t0_ns = (
        offset_ns if abs(offset_ns) > 10 * HOUR_NS or not offset_ns else time.time_ns() + offset_ns
    )
    send(port, frames(time.time_ns(), 3) + one(t0_ns))
    send(port, frames(time.time_ns(), 30))
    svc.wait(lambda: scores(svc) > before + 20, "scores after the bad frame")
    st = _status(svc)
    assert st["refused"] == {"clock": 1}
    assert "appliance's clock" in st["last_refused"]
    health = svc.get("/health")
    assert health["ok"] is False and "clock" in health["checks"]["demo-pump"]["detail"]
    assert health["checks"]["history"]["ok"] is True
    assert re.search(
        r'pdm_frames_refused_total\{appliance="[^"]+",machine="demo-pump",cause="clock"\} 1$',
        svc.get("/metrics"),
        re.M,
    )
    assert svc.stop() == 0
    log = svc.log.read_text()
    assert "Traceback" not in log and "OverflowError" not in log
    assert log.count("appliance's clock") == 1


@pytest.mark.parametrize("fs", [12000.0, 1e-300, 25600.5])
def test_a_frame_at_another_sample_rate_is_refused_in_one_line(svc: Service, fs: float) -> None:
    """Issue 16, item 7: a frame whose sample rate is not the pipeline's (12 kHz for a
    25.6 kHz pipeline, or 1e-300 Hz) is refused — counted, one log line for many, /health
    shows it — never accepted (before the fix: a pydantic traceback per frame, health ok)."""
    port = svc.listen  # type: ignore[attr-defined]
    send(port, frames(time.time_ns(), 10))
    svc.wait(lambda: _status(svc)["windows"] > 0, "windows")
    for _ in range(5):
        send(port, one(time.time_ns(), fs=fs))
    svc.wait(lambda: _status(svc)["refused"].get("sample_rate") == 5, "five refusals")
    health = svc.get("/health")
    assert not health["ok"] and "sample_rate 5" in health["checks"]["demo-pump"]["detail"]
    send(port, frames(time.time_ns(), 10))  # the right rate still goes through
    assert svc.stop() == 0
    log = svc.log.read_text()
    assert "Traceback" not in log and "validation error" not in log
    lines = [line for line in log.splitlines() if "is not the pipeline's 25600 Hz" in line]
    assert len(lines) == 1, lines


def test_a_rate_within_a_ppm_is_the_pipelines(tmp_path: Path) -> None:
    """A sender whose rate differs by float rounding is taken, at the pipeline's exact rate
    (no spurious rate change resets the windowing)."""
    from pdm.config import load_pipeline
    from pdm.history import parse_store_url
    from pdm.service.app import Service as App
    from pdm.service.app import ServiceOptions
    from pdm.sources.base import Chunk

    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"), data_dir=tmp_path / "d", api=None
    )
    app = App([load_pipeline(_pipeline(tmp_path))], opts)
    got: list[Chunk] = []
    app.runners["demo-pump"] = type("R", (), {"offer": lambda self, c: got.append(c)})()  # type: ignore[assignment]
    chunk = Chunk(np.zeros((4, 2)), FS * (1 + 1e-9), time.time(), CHANNELS)
    assert app.inputs.route("motor_de", chunk) == "demo-pump"  # a sensor id: its machine
    assert got[0].fs == FS
