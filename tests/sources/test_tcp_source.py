"""The PDMS stream protocol, TcpStreamServer, SilenceWatch and ``pdm-edge send``.

Real sockets on 127.0.0.1 only, on ports the OS picks; every server is stopped by its handle
and a test that leaves a thread behind fails.
"""

from __future__ import annotations

import itertools
import math
import re
import socket
import struct
import threading
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdm.errors import InputError
from pdm.sources.base import Chunk
from pdm.sources.codec import MAX_SAMPLES, FrameDecoder, encode_frame, ns_from_seconds
from pdm.sources.csv import CsvRecording
from pdm.sources.silence import SilenceWatch
from pdm.sources.tcp import TcpStreamServer
from pdm.tools.send import send_main

T0_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
HEAD = struct.Struct("<4sBBHdqIH")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def raw_frame(
    *,
    magic: bytes = b"PDMS",
    version: int = 1,
    code: int = 1,
    n_channels: int | None = None,
    fs: float = 1000.0,
    t0_ns: int = T0_NS,
    n_samples: int = 2,
    sensor: bytes = b"s1",
    names: tuple[bytes, ...] = (b"x",),
    scale: float | None = None,
    samples: bytes | None = None,
    crc_xor: int = 0,
) -> bytes:
    """A frame built field by field, free to break any rule, with a correct CRC by default."""
    n_ch = len(names) if n_channels is None else n_channels
    item = {1: 4, 2: 8, 3: 2}.get(code, 4)
    body = HEAD.pack(magic, version, code, n_ch, fs, t0_ns, n_samples, len(sensor)) + sensor
    body += b"".join(struct.pack("<H", len(n)) + n for n in names)
    if scale is not None:
        body += struct.pack("<d", scale)
    body += bytes(n_samples * len(names) * item) if samples is None else samples
    return body + struct.pack("<I", zlib.crc32(body) ^ crc_xor)


class Collector:
    """on_chunk / on_event callbacks that remember what they got, and a way to wait for it."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, Chunk]] = []
        self.events: list[tuple[str, str]] = []
        self.cond = threading.Condition()

    def on_chunk(self, sensor_id: str, chunk: Chunk) -> None:
        with self.cond:
            self.chunks.append((sensor_id, chunk))
            self.cond.notify_all()

    def on_event(self, kind: str, detail: str) -> None:
        with self.cond:
            self.events.append((kind, detail))
            self.cond.notify_all()

    def wait(self, predicate: Callable[[Collector], bool], timeout: float = 5.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self), timeout), (
                f"timed out; events {self.events}, {len(self.chunks)} chunks"
            )

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def start_server(col: Collector, **kw: Any) -> TcpStreamServer:
    return TcpStreamServer(on_chunk=col.on_chunk, on_event=col.on_event, **kw).start()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def wait_closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> None:
    """Block until the server closes ``sock`` (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def write_recording(path: Path, n: int = 2500, gap_at: int = 1200) -> None:
    """2 channels at 1000 Hz, POSIX time column with 10 samples missing at ``gap_at``."""
    rng = np.random.default_rng(7)
    idx = np.r_[0:gap_at, gap_at + 10 : n + 10]
    t = 1_700_000_000.0 + idx / 1000.0
    x = rng.normal(0.0, 0.3, (idx.size, 2))
    lines = ["# sample_rate_hz=1000", "time,x,y"] + [
        f"{ti:.6f},{a:.6f},{b:.6f}" for ti, (a, b) in zip(t, x, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread behind (a receiver loop, a sender)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


@pytest.fixture
def col() -> Collector:
    return Collector()


@pytest.fixture
def server(col: Collector) -> Iterator[TcpStreamServer]:
    srv = start_server(col)
    try:
        yield srv
    finally:
        srv.stop()


# --------------------------------------------------------------------------------------------
# Encoding and decoding
# --------------------------------------------------------------------------------------------


def test_an_int16_scale_that_overflows_gives_bad_samples_and_no_warning() -> None:
    """Red team: scale 1e308 × 32767 overflows float64. The receiver printed numpy's
    RuntimeWarning (two stray lines with a source path) to the service's stderr; the
    overflowed samples are ±inf, read as NaN and counted, as the protocol says."""
    data = np.array([[32767, 1], [-32768, 0]], np.int16)
    raw = encode_frame(
        "s", data, fs=100.0, t0_ns=T0_NS, channels=("x", "y"), dtype="int16", scale=1e308
    )
    (frame,) = FrameDecoder("peer").feed(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chunk = frame.to_chunk()
    assert chunk.bad_samples == 2
    np.testing.assert_array_equal(chunk.data, [[np.nan, 1e308], [np.nan, 0.0]])


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_round_trip_is_bit_exact(dtype: str) -> None:
    rng = np.random.default_rng(1)
    scale = None
    if dtype == "int16":
        data: np.ndarray = rng.integers(-32768, 32768, (300, 3)).astype(np.int16)
        data[:2] = [[-32768, 32767, 0], [1, -1, 0]]
        scale = 9.80665 / 3276.7  # m/s² per count of a ±10 g sensor
    else:
        data = (rng.normal(0, 1, (300, 3)) * 10.0 ** rng.integers(-30, 30, (300, 3))).astype(dtype)
        data[0] = [0.0, -0.0, np.finfo(dtype).tiny / 4]  # zeros and a subnormal survive too
    raw = encode_frame(
        "pump-01/de",
        data,
        fs=12000.0,
        t0_ns=T0_NS,
        channels=("x", "y", "z"),
        dtype=dtype,
        scale=scale,
    )
    (frame,) = FrameDecoder("peer").feed(raw)

    assert frame.dtype == dtype and frame.data.dtype == data.dtype
    assert frame.data.tobytes() == np.ascontiguousarray(data).tobytes()  # bit for bit
    assert (frame.sensor_id, frame.channels) == ("pump-01/de", ("x", "y", "z"))
    assert (frame.sample_rate_hz, frame.t0_ns, frame.size) == (12000.0, T0_NS, len(raw))
    chunk = frame.to_chunk()
    expected = data.astype(np.float64) * (scale if scale is not None else 1.0)
    # float32 stays float32 (the windows are float32); the others become float64
    assert chunk.data.dtype == (np.float32 if dtype == "float32" else np.float64)
    np.testing.assert_array_equal(chunk.data.astype(np.float64), expected)
    assert chunk.t0 == T0_NS / 10**9 and chunk.fs == 12000.0 and chunk.bad_samples == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_finite_samples_become_nan_and_are_counted(dtype: str) -> None:
    data = np.array([[1.0, np.nan], [np.inf, -np.inf], [2.0, 3.0]])
    (frame,) = FrameDecoder().feed(
        encode_frame("s", data, fs=10.0, t0_ns=0, channels=("a", "b"), dtype=dtype)
    )
    chunk = frame.to_chunk()
    assert chunk.bad_samples == 3
    np.testing.assert_array_equal(chunk.data, [[1.0, np.nan], [np.nan, np.nan], [2.0, 3.0]])
    assert not frame.data.flags.writeable  # the frame's view stays read-only


def test_huge_finite_samples_are_not_counted_bad() -> None:
    """Samples whose sum overflows float32 are still finite: none counted bad, no warning."""
    big = np.finfo(np.float32).max
    data = np.array([[big, big], [big, 1.0]], dtype=np.float32)
    (frame,) = FrameDecoder().feed(
        encode_frame("s", data, fs=10.0, t0_ns=0, channels=("a", "b"), dtype="float32")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflowing sum would warn
        chunk = frame.to_chunk()
    assert chunk.bad_samples == 0
    np.testing.assert_array_equal(chunk.data, data)


@given(st.floats(min_value=1e8, max_value=4e9, allow_nan=False))
def test_timestamps_survive_nanoseconds(t: float) -> None:
    assert ns_from_seconds(t) / 10**9 == t


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sensor_id": ""}, "sensor id is 0 bytes"),
        ({"sensor_id": "a\nb"}, "control character"),
        ({"sensor_id": "pump\u202e7"}, "invisible formatting character"),
        ({"channels": ("x", "x")}, "distinct"),
        ({"channels": ("x" * 65, "y")}, "65 bytes"),
        ({"fs": 0.0}, "fs=0.0"),
        ({"dtype": "int16"}, "scale=None"),
        ({"scale": 2.0}, "only for dtype='int16'"),
        ({"data": np.ones((3, 3))}, "shape (3, 3)"),
    ],
)
def test_encode_refuses_what_the_protocol_cannot_carry(
    kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {
        "sensor_id": "s",
        "data": np.ones((3, 2)),
        "fs": 100.0,
        "t0_ns": 0,
        "channels": ("x", "y"),
    } | kwargs
    sensor_id, data = args.pop("sensor_id"), args.pop("data")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encode_frame(sensor_id, data, **args)


def _frames(seed: int, count: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        dtype = ["float32", "float64", "int16"][int(rng.integers(3))]
        n, c = int(rng.integers(1, 40)), int(rng.integers(1, 4))
        names = tuple(f"ch{i}" for i in range(c))
        if dtype == "int16":
            data = rng.integers(-32768, 32768, (n, c))
            out.append(
                encode_frame(
                    f"s{k % 2}", data, fs=50.0, t0_ns=k, channels=names, dtype="int16", scale=0.5
                )
            )
        else:
            out.append(
                encode_frame(
                    f"s{k % 2}",
                    rng.normal(size=(n, c)),
                    fs=50.0,
                    t0_ns=k,
                    channels=names,
                    dtype=dtype,
                )
            )
    return out


def _key(frames: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (f.sensor_id, f.channels, f.t0_ns, f.dtype, f.data.tobytes(), f.scale, f.offset)
        for f in frames
    ]


def test_the_trailer_is_zlibs_crc32_whichever_implementation_computes_it() -> None:
    """The protocol's CRC-32 is zlib's (any DAQ computes it with zlib or binascii); the
    receiver computes it with zlib-ng's when installed, which must agree byte for byte."""
    import zlib

    import pdm.sources.codec as codec

    rng = np.random.default_rng(3)
    for n in (1, 7, 2560, 40_000):
        data = rng.standard_normal((n, 3)).astype(np.float32)
        raw = encode_frame("s", data, fs=1000.0, t0_ns=0, channels=("a", "b", "c"))
        assert int.from_bytes(raw[-4:], "little") == zlib.crc32(raw[:-4])
        assert codec.crc32(raw[:-4]) == zlib.crc32(raw[:-4])
        assert codec.crc32(memoryview(raw)[:-4]) == zlib.crc32(raw[:-4])
    assert codec.crc32(b"x", 12345) == zlib.crc32(b"x", 12345)  # running value carried


def test_frames_fed_one_byte_at_a_time() -> None:
    raw = _frames(3, 6)
    stream = b"".join(raw)
    whole = FrameDecoder().feed(stream)
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    assert len(whole) == 6 and _key(got) == _key(whole)
    assert dec.pending == 0 and dec.offset == len(stream)
    dec.close()  # nothing left over: no error


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), count=st.integers(1, 5), data=st.data())
def test_chunk_boundaries_do_not_depend_on_tcp_segmentation(
    seed: int, count: int, data: st.DataObject
) -> None:
    stream = b"".join(_frames(seed, count))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    dec = FrameDecoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += dec.feed(stream[a:b])
    assert _key(got) == _key(FrameDecoder().feed(stream))
    assert len(got) == count


# --------------------------------------------------------------------------------------------
# Protocol violations
# --------------------------------------------------------------------------------------------

GOOD = raw_frame()
HUGE = raw_frame(
    code=2, names=tuple(b"c%d" % i for i in range(64)), n_samples=MAX_SAMPLES, samples=b""
)

VIOLATIONS = [
    # (id, bytes, offset of the offending field, words in the message)
    ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, "bad magic b'GET '"),
    ("tls", b"\x16\x03\x01\x02\x00", 0, "TLS"),
    ("magic", b"PDMX" + GOOD[4:], 0, "bad magic"),
    ("version", raw_frame(version=3), 4, "unknown protocol version 3"),
    (
        "signed",
        raw_frame(version=2),
        4,
        "authenticated frame (version 2), but this receiver has no",
    ),
    ("dtype", raw_frame(code=9), 5, "unknown dtype 9"),
    ("no channels", raw_frame(n_channels=0), 6, "n_channels 0"),
    ("65 channels", raw_frame(n_channels=65), 6, "n_channels 65"),
    ("nan rate", raw_frame(fs=math.nan), 8, "sample_rate_hz nan"),
    ("zero rate", raw_frame(fs=0.0), 8, "sample_rate_hz 0.0"),
    ("no samples", raw_frame(n_samples=0), 24, "n_samples 0"),
    ("too many samples", raw_frame(n_samples=MAX_SAMPLES + 1), 24, "n_samples 1048577"),
    ("2 GB claimed", raw_frame(n_samples=2**31, samples=b""), 24, "outside 1..1048576"),
    ("512 MiB claimed", HUGE, 24, "frame too large"),
    ("empty sensor id", raw_frame(sensor=b""), 28, "sensor id length 0"),
    ("long sensor id", raw_frame(sensor=b"s" * 65), 28, "sensor id length 65"),
    ("long name", raw_frame(names=(b"n" * 65,)), 32, "channel 0 name length 65"),
    ("utf-8 sensor", raw_frame(sensor=b"\xff\xfe"), 30, "not valid UTF-8"),
    (
        "utf-8 name",
        raw_frame(names=(b"ok", b"\xc3(")),
        38,
        "channel 1 name b'\\xc3(' is not valid UTF-8",
    ),
    ("newline", raw_frame(names=(b"a\nb",)), 34, "control character"),
    ("bidi", raw_frame(names=("a\u2066b".encode(),)), 34, "invisible formatting character"),
    ("duplicate", raw_frame(names=(b"x", b"x")), 37, "repeats channel 0"),
    ("int16 nan scale", raw_frame(code=3, scale=math.nan), 35, "int16 scale nan"),
    ("int16 zero scale", raw_frame(code=3, scale=0.0), 35, "int16 scale 0.0"),
    ("crc", raw_frame(crc_xor=1), len(GOOD) - 4, "CRC32 mismatch"),
    ("second frame", GOOD + b"junk", len(GOOD), "where a frame should start"),
]


@pytest.mark.parametrize(
    ("raw", "offset", "words"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_every_violation_is_a_one_line_input_error(raw: bytes, offset: int, words: str) -> None:
    dec = FrameDecoder("10.0.0.7:51234")
    with pytest.raises(InputError) as info:
        frames = dec.feed(raw)
        assert len(frames) == 1  # only "second frame" gets here: the good frame is not lost
        dec.feed(b"")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"stream from 10.0.0.7:51234, byte {offset}: "), msg
    assert words in msg, msg
    with pytest.raises(InputError):  # a failed decoder stays failed
        dec.feed(GOOD)


@pytest.mark.parametrize(
    ("raw", "offset", "words"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_a_violation_after_a_good_frame_in_the_same_read(
    raw: bytes, offset: int, words: str
) -> None:
    """The decoder remembers the last frame's names (most violations share GOOD's sensor id
    length and channel count, so they meet that shortcut): the good frame comes back, the
    bad one is refused at its own offset, with the same words as on a fresh stream."""
    dec = FrameDecoder("10.0.0.7:51234")
    frames = dec.feed(GOOD + raw)
    assert [f.offset for f in frames] == [0, *([len(GOOD)] if raw.startswith(GOOD) else [])]
    with pytest.raises(InputError) as info:
        dec.feed(b"")
    msg = str(info.value)
    assert msg.startswith(f"stream from 10.0.0.7:51234, byte {len(GOOD) + offset}: "), msg
    assert words in msg and "\n" not in msg, msg


def test_names_laid_out_otherwise_after_a_frame_are_read_anew() -> None:
    """Same sensor id length, channel count and names section length as the frame before,
    other name lengths: the names are walked again, not taken from the last frame's."""
    first = raw_frame(names=(b"ab", b"c"))
    second = raw_frame(names=(b"a", b"bc"))
    third = raw_frame(sensor=b"s2", names=(b"a", b"bc"))
    frames = FrameDecoder().feed(first + second + third + first)
    assert [(f.sensor_id, f.channels) for f in frames] == [
        ("s1", ("ab", "c")),
        ("s1", ("a", "bc")),
        ("s2", ("a", "bc")),
        ("s1", ("ab", "c")),
    ]
    # and cut anywhere, one byte at a time
    stream = first + second + third
    dec = FrameDecoder()
    got = [f for i in range(len(stream)) for f in dec.feed(stream[i : i + 1])]
    assert [f.channels for f in got] == [("ab", "c"), ("a", "bc"), ("a", "bc")]


def test_a_corrupt_byte_anywhere_is_caught() -> None:
    """Flip each byte of a frame in turn: never a wrong frame, always a one-line InputError."""
    raw = bytearray(
        encode_frame("s", np.arange(6.0).reshape(3, 2), fs=10.0, t0_ns=5, channels=("a", "b"))
    )
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x10
        dec = FrameDecoder()
        with pytest.raises(InputError) as info:
            dec.feed(bytes(bad))
            dec.close()  # a corrupted length can leave the frame waiting for more bytes
        assert "\n" not in str(info.value)


def test_a_frame_cut_short_by_the_peer_is_reported() -> None:
    dec = FrameDecoder("p")
    assert dec.feed(GOOD[:-3]) == []
    with pytest.raises(InputError, match=rf"byte {len(GOOD) - 3}: connection closed in the middle"):
        dec.close()


def test_limits_are_enforced_before_allocation() -> None:
    """A header claiming 2 GB (or 512 MiB within the sample limit) is refused from its 30 bytes."""
    for claim in (raw_frame(n_samples=2**31 - 1, samples=b"")[:30], HUGE[:30]):
        dec = FrameDecoder()
        tracemalloc.start()
        try:
            with pytest.raises(InputError):
                dec.feed(claim)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 100_000 and dec.pending == 30


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def test_server_defaults_to_loopback_and_refuses_an_unnamed_address(col: Collector) -> None:
    srv = TcpStreamServer(on_chunk=col.on_chunk)
    assert srv.host == "127.0.0.1"
    with pytest.raises(ValueError, match="name the address"):
        TcpStreamServer("", on_chunk=col.on_chunk)


def test_a_violation_closes_that_connection_only(server: TcpStreamServer, col: Collector) -> None:
    good = connect(server.port)
    bad = connect(server.port)
    huge = connect(server.port)
    try:
        good.sendall(encode_frame("g", np.ones((4, 1)), fs=10.0, t0_ns=0, channels=("x",)))
        col.wait(lambda c: len(c.chunks) == 1)
        bad.sendall(raw_frame(crc_xor=0xFF))
        wait_closed_by_peer(bad)
        huge.sendall(HUGE[:30])  # the 512 MiB body never comes: refused at once
        wait_closed_by_peer(huge)
        good.sendall(
            encode_frame("g", np.full((4, 1), 2.0), fs=10.0, t0_ns=400_000_000, channels=("x",))
        )
        col.wait(lambda c: len(c.chunks) == 2)
    finally:
        for s in (good, bad, huge):
            s.close()
    errors = [d for k, d in col.events if k == "protocol_error"]
    assert len(errors) == 2 and server.protocol_errors == 2
    assert "CRC32 mismatch" in errors[0] and "frame too large" in errors[1]
    assert all(e.startswith("stream from 127.0.0.1:") and "\n" not in e for e in errors)
    assert [c.data[0, 0] for _, c in col.chunks] == [1.0, 2.0]


def test_a_callback_that_rejects_closes_the_connection_not_the_server(col: Collector) -> None:
    def picky(sensor_id: str, chunk: Chunk) -> None:
        if sensor_id != "known":
            raise InputError(f"unknown sensor {sensor_id!r}")
        col.on_chunk(sensor_id, chunk)

    with TcpStreamServer(on_chunk=picky, on_event=col.on_event) as srv:
        with connect(srv.port) as a, connect(srv.port) as b:
            a.sendall(encode_frame("stranger", np.ones((1, 1)), fs=1.0, t0_ns=0, channels=("x",)))
            wait_closed_by_peer(a)
            b.sendall(encode_frame("known", np.ones((1, 1)), fs=1.0, t0_ns=0, channels=("x",)))
            col.wait(lambda c: len(c.chunks) == 1)
    assert any(k == "rejected" and "unknown sensor 'stranger'" in d for k, d in col.events)


def test_connections_are_bounded_and_idle_ones_closed(col: Collector) -> None:
    srv = start_server(col, max_connections=1, idle_timeout_s=0.3)
    try:
        with connect(srv.port) as first:
            col.wait(lambda c: "connected" in c.kinds())
            try:  # over the limit: reset at once (on loopback maybe before connect returns)
                with connect(srv.port) as second:
                    wait_closed_by_peer(second)
            except ConnectionResetError:
                pass
            wait_closed_by_peer(first)  # sent nothing for 0.3 s
    finally:
        srv.stop()
    assert "refused" in col.kinds()
    assert any("nothing received for 0.3 s" in d for _, d in col.events)


def test_stop_closes_connections_and_joins(col: Collector) -> None:
    srv = start_server(col)
    client = connect(srv.port)
    col.wait(lambda c: "connected" in c.kinds())
    srv.stop()
    wait_closed_by_peer(client)
    client.close()
    assert srv.connections == 0 and col.events[-1][0] == "disconnected"
    srv.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        connect(srv.port).close()


def _frame(k: int) -> bytes:
    data = np.full((10, 2), float(k), dtype=np.float32)
    return encode_frame("s", data, fs=100.0, t0_ns=k * 10**8, channels=("a", "b"))


def test_a_driven_receiver_reads_only_in_its_drivers_polls(col: Collector) -> None:
    """``start(driven=True)``: no thread of its own; frames reach ``on_chunk`` on the
    thread that calls ``poll``, and a stop from another thread is done at the next poll."""
    before = {t.name for t in threading.enumerate()}
    threads: list[str] = []

    def on_chunk(sensor_id: str, chunk: Chunk) -> None:
        threads.append(threading.current_thread().name)
        col.on_chunk(sensor_id, chunk)

    srv = TcpStreamServer(on_chunk=on_chunk, on_event=col.on_event).start(driven=True)
    assert {t.name for t in threading.enumerate()} == before  # no I/O thread
    with connect(srv.port) as client:
        for k in range(3):
            client.sendall(_frame(k))
        time.sleep(0.2)
        assert col.chunks == []  # nobody polled
        deadline = time.monotonic() + 5
        while len(col.chunks) < 3 and time.monotonic() < deadline:
            srv.poll(0.1)
        assert [c.t0 for _, c in col.chunks] == [0.0, 0.1, 0.2]
        assert set(threads) == {threading.current_thread().name}
        stopper = threading.Thread(target=srv.stop, kwargs={"timeout_s": 5.0})
        stopper.start()
        while stopper.is_alive():
            srv.poll(0.05)  # the driver's next poll closes everything; stop() returns
        wait_closed_by_peer(client)
    assert srv.connections == 0
    srv.poll(0.01)  # after the stop: nothing, no error
    with pytest.raises(ConnectionRefusedError):
        connect(srv.port).close()


def test_a_driven_receiver_stopped_from_its_own_callback_or_without_a_driver(
    col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    srv = TcpStreamServer(on_chunk=lambda sid, ch: srv.stop(timeout_s=5.0)).start(driven=True)
    with connect(srv.port) as client:
        client.sendall(_frame(0))
        t0 = time.monotonic()
        deadline = t0 + 5
        while srv.connections or time.monotonic() < t0 + 0.2:
            srv.poll(0.05)  # on_chunk stops it: no wait for itself, closed by this poll
            assert time.monotonic() < deadline
        wait_closed_by_peer(client)
    lonely = TcpStreamServer(on_chunk=col.on_chunk).start(driven=True)
    with connect(lonely.port) as client:
        t0 = time.monotonic()
        lonely.stop(timeout_s=0.3)  # nobody polls: closed here after the wait, said so
        assert 0.25 < time.monotonic() - t0 < 3
        wait_closed_by_peer(client)
    assert "did not poll within 0.3 s" in caplog.text


# --------------------------------------------------------------------------------------------
# pdm-edge send into the server
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "int16"])
def test_send_main_delivers_what_csv_recording_reads(
    tmp_path: Path,
    server: TcpStreamServer,
    col: Collector,
    capsys: pytest.CaptureFixture[str],
    dtype: str,
) -> None:
    path = tmp_path / "rec.csv"
    write_recording(path)
    argv = [
        str(path),
        "--to",
        f"127.0.0.1:{server.port}",
        "--sensor",
        "pump-01",
        "--chunk-samples",
        "512",
    ]
    argv += ["--dtype", dtype] + (["--scale", "1e-4"] if dtype == "int16" else [])
    assert send_main(argv) == 0
    # send returns once the receiver has read everything: no waiting needed here.
    expected = list(CsvRecording(path, chunk_rows=512).chunks())
    got = [c for _, c in col.chunks]
    assert {s for s, _ in col.chunks} == {"pump-01"}
    assert [c.n_samples for c in got] == [c.n_samples for c in expected]
    assert len(expected) == 6  # 512-row blocks, and the gap cuts one of them
    for g, e in zip(got, expected, strict=True):
        assert g.t0 == e.t0 and g.fs == e.fs == 1000.0 and g.channels == e.channels == ("x", "y")
        if dtype == "float64":
            np.testing.assert_array_equal(g.data, e.data)
        elif dtype == "float32":
            np.testing.assert_array_equal(g.data, e.data.astype(np.float32))
        else:
            np.testing.assert_allclose(g.data, e.data, rtol=0, atol=0.5e-4 + 1e-12)
    summary = capsys.readouterr().err.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("pdm-edge send: 6 frames, 2500 samples x 2")
    assert "MB/s" in summary[0]


def test_send_now_shifts_timestamps_to_the_present(
    tmp_path: Path, server: TcpStreamServer, col: Collector
) -> None:
    path = tmp_path / "rec.csv"
    write_recording(path, n=600, gap_at=300)
    before = time.time()
    assert send_main([str(path), "--to", f"127.0.0.1:{server.port}", "--sensor", "s", "--now"]) == 0
    expected = [c.t0 for c in CsvRecording(path).chunks()]
    got = [c.t0 for _, c in col.chunks]
    assert before <= got[0] <= time.time()
    # The spacing (and the gap) are kept, to the resolution of float POSIX seconds (~0.24 µs).
    np.testing.assert_allclose(np.diff(got), np.diff(expected), rtol=0, atol=5e-7)


def _run_send(argv: list[str]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(send_main(argv)), name="test-sender")
    thread.start()
    return thread, result


def test_send_reconnects_after_the_server_restarts(
    tmp_path: Path, col: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rec.csv"
    write_recording(path, n=1000, gap_at=999)  # 1 s of signal, 20 frames of 50 samples
    first = start_server(col)
    port = first.port
    argv = [str(path), "--to", f"127.0.0.1:{port}", "--sensor", "s", "--chunk-samples", "50"]
    thread, result = _run_send([*argv, "--speed", "1.5", "--retry-s", "5"])
    try:
        col.wait(lambda c: len(c.chunks) >= 5)
        first.stop()
        n_first = len(col.chunks)
        time.sleep(0.2)  # the sender finds nobody listening and backs off
        second = start_server(col, port=port)
        try:
            thread.join(10)
        finally:
            second.stop()
    finally:
        first.stop()
        thread.join(10)
    assert result == [0]
    t0 = [c.t0 for _, c in col.chunks]
    expected = [c.t0 for c in CsvRecording(path, chunk_rows=50).chunks()]
    assert len(col.chunks) > n_first  # the second server got the rest ...
    assert t0[-1] == expected[-1]  # ... up to the last frame
    assert all(b > a for a, b in itertools.pairwise(t0))  # no duplicates, in order
    assert len(t0) >= len(expected) - 3  # at most the frames in flight were lost
    err = capsys.readouterr().err
    assert "retrying for up to 5 s" in err and "connected after" in err and "1 reconnect" in err


def test_send_waits_for_a_receiver_that_starts_late(tmp_path: Path, col: Collector) -> None:
    path = tmp_path / "rec.csv"
    write_recording(path, n=300, gap_at=299)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    thread, result = _run_send(
        [str(path), "--to", f"127.0.0.1:{port}", "--sensor", "s", "--retry-s", "5"]
    )
    time.sleep(0.3)
    srv = start_server(col, port=port)
    try:
        thread.join(10)
    finally:
        srv.stop()
    assert result == [0] and sum(c.n_samples for _, c in col.chunks) == 300


def test_send_gives_up_after_retry_s(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rec.csv"
    write_recording(path, n=100, gap_at=99)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    started = time.monotonic()
    assert (
        send_main([str(path), "--to", f"127.0.0.1:{port}", "--sensor", "s", "--retry-s", "0.3"])
        == 1
    )
    assert time.monotonic() - started < 2.0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"pdm-edge: error: cannot send to 127.0.0.1:{port}: ")
    assert err[-1].endswith("(retried for 0.3 s)")


def test_send_stops_when_the_receiver_refuses_the_data(
    tmp_path: Path, col: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    def picky(sensor_id: str, chunk: Chunk) -> None:
        raise InputError(f"unknown sensor {sensor_id!r}")

    path = tmp_path / "rec.csv"
    write_recording(path, n=1000, gap_at=999)
    with TcpStreamServer(on_chunk=picky, on_event=col.on_event) as srv:
        argv = [str(path), "--to", f"127.0.0.1:{srv.port}", "--sensor", "typo"]
        # Paced: each refusal is noticed before the next frame, three in a row stop it.
        assert send_main([*argv, "--chunk-samples", "50", "--speed", "4"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"pdm-edge: error: 127.0.0.1:{srv.port} ended 3 connections")
        assert "refuses this data" in err[-1]
        # As fast as possible: every frame may be in the socket before the first is refused;
        # the reset (not a normal close) still tells the sender.
        assert send_main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert "refuse" in err[-1], err
    assert [k for k, _ in col.events].count("rejected") >= 4


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--to", "localhost"], "expected HOST:PORT"),
        (["--to", "127.0.0.1:1", "--scale", "2"], "only with --dtype int16"),
        (["--to", "127.0.0.1:1", "--speed", "0"], "--speed: must be > 0"),
        (["--to", "127.0.0.1:1", "--timeout", "1e308"], "--timeout: must be > 0 and <= 86400"),
        (["--to", "127.0.0.1:1", "--retry-s", "nan"], "--retry-s: must be >= 0"),
        (["--to", "127.0.0.1:1", "--columns", "x,nope"], "column 'nope': not in the header"),
        (["--to", "127.0.0.1:1", "--chunk-samples", "2000000"], "--chunk-samples"),
        (["--to", "127.0.0.1:1", "--fs", "500"], "disagrees|steps by"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_send_user_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    path = tmp_path / "rec.csv"
    write_recording(path, n=100, gap_at=99)
    argv = [str(path), "--sensor", "s", *extra]
    if "--to" not in extra:
        argv += ["--to", "127.0.0.1:1"]
    assert send_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pdm-edge: error: "), err
    assert re.search(words, err[0]), err[0]


def test_send_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert send_main([str(tmp_path / "none.csv"), "--to", "127.0.0.1:1", "--sensor", "s"]) == 2
    assert capsys.readouterr().err.startswith("pdm-edge: error: ")


# --------------------------------------------------------------------------------------------
# SilenceWatch
# --------------------------------------------------------------------------------------------


def test_silence_watch_reports_each_transition_once() -> None:
    w = SilenceWatch(2.0, expected=["de", "fe"], now=100.0)
    w.seen("de", now=101.0)
    assert w.silent(now=102.0) == [] and w.changes(now=102.0) == ([], [])
    assert w.silent(now=102.5) == ["fe"]  # never sent anything: silent after the timeout
    assert w.changes(now=102.5) == (["fe"], [])
    assert w.changes(now=103.5) == (["de"], [])  # 2.5 s since its last chunk
    assert w.changes(now=110.0) == ([], [])  # still silent: not reported again
    w.seen("fe", now=110.0)
    assert w.changes(now=110.5) == ([], ["fe"])
    assert w.silent(now=110.5) == ["de"]
    w.seen("new", now=111.0)  # a sensor nobody expected is watched from its first chunk
    assert w.changes(now=113.5) == (["fe", "new"], [])
    w.forget("new")
    assert w.silent(now=200.0) == ["de", "fe"]
    with pytest.raises(ValueError):
        SilenceWatch(0.0)


def test_silence_watch_fed_by_the_server(col: Collector) -> None:
    watch = SilenceWatch(0.3, expected=["a"])

    def on_chunk(sensor_id: str, chunk: Chunk) -> None:
        watch.seen(sensor_id)
        col.on_chunk(sensor_id, chunk)

    with TcpStreamServer(on_chunk=on_chunk) as srv, connect(srv.port) as s:
        s.sendall(encode_frame("a", np.ones((1, 1)), fs=1.0, t0_ns=0, channels=("x",)))
        col.wait(lambda c: len(c.chunks) == 1)
        assert watch.changes() == ([], [])
        time.sleep(0.4)
        assert watch.changes() == (["a"], [])
        s.sendall(encode_frame("a", np.ones((1, 1)), fs=1.0, t0_ns=1, channels=("x",)))
        col.wait(lambda c: len(c.chunks) == 2)
        assert watch.changes() == ([], ["a"])
