"""The receiver's kernel low-water mark (``TcpStreamServer(wanted=...)``, issue 22).

A stream whose consumer needs N more samples before anything of them is due gets a
``SO_RCVLOWAT`` of those samples' payload bytes: the frames before the one that completes
them stay in the kernel, and are read together with it. What must hold: the frame that
completes the samples always wakes the receiver; nothing is lost or reordered; a frame left
unfinished is still read and refused (``slow_frame``); a connection whose frames change
layout, or a stream sent on two connections, gets no mark. Real sockets on 127.0.0.1,
driven receivers (their polls are the test's), no timed assertions.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import pdm.sources.tcp as tcp_mod
from pdm.sources.base import Chunk
from pdm.sources.codec import encode_frame
from pdm.sources.tcp import TcpStreamServer

FS = 1000.0
FRAME = 250  # samples a frame
WINDOW = 4 * FRAME  # the samples the consumer waits for


def _frame(k: int, *, dtype: str = "float32", sensor: str = "s") -> bytes:
    data = np.full((FRAME, 2), k, dtype=np.int64 if dtype == "int16" else np.float32)
    return encode_frame(
        sensor, data, fs=FS, t0_ns=k * FRAME * 10**6, channels=("a", "b"), dtype=dtype,  # type: ignore[arg-type]
        scale=1.0 if dtype == "int16" else None,
    )  # fmt: skip


class _Got:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, Chunk]] = []
        self.events: list[tuple[str, str]] = []

    def on_chunk(self, sensor_id: str, chunk: Chunk) -> None:
        self.chunks.append((sensor_id, chunk))

    def on_event(self, kind: str, detail: str) -> None:
        self.events.append((kind, detail))

    def wanted(self, sensor_id: str) -> int:
        """The samples until the next multiple of WINDOW of this sensor's stream, counted
        after its first frame."""
        n = sum(c.n_samples for s, c in self.chunks if s == sensor_id) - FRAME
        return WINDOW - n % WINDOW


@pytest.fixture
def got() -> _Got:
    return _Got()


@pytest.fixture
def srv(got: _Got) -> Iterator[TcpStreamServer]:
    s = TcpStreamServer(on_chunk=got.on_chunk, on_event=got.on_event, wanted=got.wanted)
    s.start(driven=True)
    try:
        yield s
    finally:
        s.stop(timeout_s=0.1)
        s.poll(0.0)


def _poll_until(srv: TcpStreamServer, done: Callable[[], bool], limit_s: float = 10.0) -> int:
    """Poll until ``done()``; returns the polls that took something in."""
    deadline = time.monotonic() + limit_s
    polls = 0
    while not done():
        assert time.monotonic() < deadline, "nothing came"
        srv.poll(0.05)
        polls += 1
    return polls


def _connect(srv: TcpStreamServer) -> socket.socket:
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def test_a_windows_frames_wait_in_the_kernel_until_its_last_one_is_in(
    srv: TcpStreamServer, got: _Got
) -> None:
    with _connect(srv) as c:
        c.sendall(_frame(0))  # the first frame: no layout known yet, read at once
        _poll_until(srv, lambda: len(got.chunks) == 1)
        for window in range(3):
            for k in range(1, 4):
                c.sendall(_frame(4 * window + k))
            # Three frames of four are in: under the mark, nothing wakes the receiver.
            for _ in range(3):
                srv.poll(0.02)
            assert len(got.chunks) == 4 * window + 1
            c.sendall(_frame(4 * window + 4))  # the window's last frame: read with the rest
            _poll_until(srv, lambda w=window: len(got.chunks) == 4 * w + 5)  # type: ignore[misc]
    t0s = [ch.t0 for _, ch in got.chunks]
    assert t0s == [k * FRAME / FS for k in range(13)]  # every frame, in order
    assert [float(ch.data[0, 0]) for _, ch in got.chunks] == list(range(13))


def test_a_frame_left_unfinished_under_the_mark_is_still_refused(
    got: _Got, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark is dropped after LOWAT_HOLD_S without a read: the half frame is read, and
    the frame timeout closes the connection as without a mark (old: it waited unseen)."""
    monkeypatch.setattr(tcp_mod, "LOWAT_HOLD_S", 0.1)
    s = TcpStreamServer(
        on_chunk=got.on_chunk, on_event=got.on_event, wanted=lambda sid: 10**6,
        frame_timeout_s=0.2,
    ).start(driven=True)  # fmt: skip
    try:
        with _connect(s) as c:
            c.sendall(_frame(0))
            _poll_until(s, lambda: len(got.chunks) == 1)
            half = _frame(1)
            c.sendall(half[: len(half) // 2])
            _poll_until(s, lambda: s.refused.get("slow_frame") == 1)
        assert s.connections == 0
    finally:
        s.stop(timeout_s=0.1)
        s.poll(0.0)


@pytest.mark.parametrize("change", ["dtype", "sensor"])
def test_a_connection_whose_frames_change_layout_gets_no_mark(
    srv: TcpStreamServer, got: _Got, change: str
) -> None:
    """int16 carries the samples in half the bytes of float32: a mark from float32 frames
    would hold an int16 window's last frame back. Once the layout changes, every frame
    is read as it comes."""
    with _connect(srv) as c:
        c.sendall(_frame(0))
        _poll_until(srv, lambda: len(got.chunks) == 1)
        other = _frame(1, dtype="int16") if change == "dtype" else _frame(1, sensor="t")
        c.sendall(other)  # reaches no mark of its own: read when the hold ends
        _poll_until(srv, lambda: len(got.chunks) == 2)
        for k in range(2, 5):
            c.sendall(_frame(k))  # each one alone is read: no mark any more
            _poll_until(srv, lambda k=k: len(got.chunks) == k + 1)  # type: ignore[misc]
            assert {conn.lowat for conn in srv._conns} == {1}


def test_a_stream_on_two_connections_gets_no_mark(srv: TcpStreamServer, got: _Got) -> None:
    with _connect(srv) as a, _connect(srv) as b:
        a.sendall(_frame(0))
        _poll_until(srv, lambda: len(got.chunks) == 1)
        b.sendall(_frame(1))
        _poll_until(srv, lambda: len(got.chunks) == 2)
        for k in range(2, 5):
            a.sendall(_frame(k))
            _poll_until(srv, lambda k=k: len(got.chunks) == k + 1)  # type: ignore[misc]
        assert {conn.lowat for conn in srv._conns} == {1}
