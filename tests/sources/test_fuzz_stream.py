"""Fuzzing the stream decoder (PDMS frames, versions 1 and 2) and the MQTT payload decoder.

Every input is hostile until checked. Hypothesis builds byte streams that are *almost*
right (real frames cut anywhere, one byte changed, a header field replaced, a signed frame
altered) and plain garbage, and the decoders must give back exactly the frames that are
whole and right, or refuse with the project's one-line :class:`~pdm.errors.InputError`:
never another exception, never more memory than one frame's worth, never a forged frame.
A real receiver on loopback takes the same streams over TCP and keeps serving.

The budget is the ``fuzz`` profile of tests/conftest.py: short by default, long with
``PDM_FUZZ_PROFILE=long`` (see the README).
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import time
import tracemalloc
import zlib
from typing import Any

import numpy as np
import pytest
from conftest import fuzz_settings
from hypothesis import assume, given
from hypothesis import strategies as st

from pdm.errors import InputError
from pdm.sources.codec import FrameDecoder, encode_frame, peek_sensor_id
from pdm.sources.mqtt import decode_payload
from pdm.sources.stream_keys import StreamKeys
from pdm.sources.tcp import TcpStreamServer

pytestmark = pytest.mark.fuzz

SECRET = bytes(range(1, 33))
KEYS_TEXT = f"gw {SECRET.hex()}"
MAX_FRAME = 64 * 1024
#: Peak Python heap while one stream is decoded: a few frames of at most MAX_FRAME bytes;
#: anything near this is memory growing with something other than one frame.
HEAP_LIMIT = 8 * MAX_FRAME + (4 << 20)

names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=12,
).filter(lambda s: len(s.encode()) <= 64)


@st.composite
def frames(draw: st.DrawFn, signed: bool = False) -> tuple[bytes, dict[str, Any]]:
    """A valid frame and what it holds."""
    n_ch = draw(st.integers(1, 4))
    channels = tuple(draw(st.lists(names, min_size=n_ch, max_size=n_ch, unique=True)))
    n = draw(st.integers(1, 64))
    dtype = draw(st.sampled_from(["float32", "float64", "int16"]))
    sensor = draw(names)
    fs = draw(st.floats(1e-3, 1e7, allow_nan=False))
    t0 = draw(st.integers(-(2**63), 2**63 - 1))
    kw: dict[str, Any] = {}
    if dtype == "int16":
        data: Any = np.array(draw(st.lists(st.integers(-32768, 32767), min_size=n * n_ch,
                                           max_size=n * n_ch))).reshape(n, n_ch)  # fmt: skip
        kw["scale"] = draw(st.floats(1e-6, 1e3))
    else:
        data = np.array(
            draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=n * n_ch, max_size=n * n_ch))
        ).reshape(n, n_ch)
    if signed:
        kw["key"] = ("gw", SECRET)
        kw["counter"] = draw(st.integers(0, 2**64 - 1))
    raw = encode_frame(sensor, data, fs=fs, t0_ns=t0, channels=channels, dtype=dtype, **kw)
    return raw, {"sensor": sensor, "channels": channels, "fs": fs, "t0_ns": t0, "n": n}


def _cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def decode(
    pieces: list[bytes], keys: StreamKeys | None = None
) -> tuple[list[Any], Exception | None]:
    """Feed ``pieces`` (then end the stream) under tracemalloc: the frames decoded and the
    one error, if any. Anything but an InputError, or memory past HEAP_LIMIT, fails."""
    dec = FrameDecoder("fuzz", max_frame_bytes=MAX_FRAME, keys=keys)
    got: list[Any] = []
    error: Exception | None = None
    tracemalloc.start()
    try:
        try:
            for p in pieces:
                got += dec.feed(p)
                assert dec.pending <= MAX_FRAME
            dec.close()
        except InputError as exc:
            error = exc
            msg = str(exc)
            assert msg.startswith("stream from fuzz, byte ") and "\n" not in msg, msg
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < HEAP_LIMIT, f"peak heap {peak} bytes"
    return got, error


@fuzz_settings()
@given(data=st.data(), stream=st.lists(frames(), min_size=1, max_size=4))
def test_valid_frames_cut_anywhere_come_back_exactly(
    data: st.DataObject, stream: list[Any]
) -> None:
    raw = b"".join(f for f, _ in stream)
    got, error = decode(_cuts(data.draw, raw))
    assert error is None
    assert len(got) == len(stream)
    for frame, (_, want) in zip(got, stream, strict=True):
        assert frame.sensor_id == want["sensor"] and frame.channels == want["channels"]
        assert frame.t0_ns == want["t0_ns"] and frame.sample_rate_hz == want["fs"]
        assert frame.data.shape == (want["n"], len(want["channels"]))


@fuzz_settings()
@given(data=st.data(), stream=st.lists(frames(), min_size=1, max_size=3))
def test_a_changed_byte_is_refused_or_harmless_never_a_wrong_frame(
    data: st.DataObject, stream: list[Any]
) -> None:
    """One byte changed anywhere: the frames before it come back unchanged, and the stream
    is refused at (or after) the frame holding it — the CRC catches a changed sample."""
    raw = bytearray(b"".join(f for f, _ in stream))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    got, error = decode(_cuts(data.draw, bytes(raw)))
    starts = np.cumsum([0] + [len(f) for f, _ in stream])
    hit = int(np.searchsorted(starts, at, side="right")) - 1  # the frame holding the byte
    assert error is not None
    assert len(got) == hit
    for frame, (_, want) in zip(got, stream, strict=False):
        assert frame.t0_ns == want["t0_ns"] and frame.sensor_id == want["sensor"]


@fuzz_settings()
@given(data=st.data(), junk=st.binary(max_size=300))
def test_garbage_is_refused_in_one_line(data: st.DataObject, junk: bytes) -> None:
    got, error = decode(_cuts(data.draw, junk))
    assert not got or junk[:4] == b"PDMS"
    assert error is not None or not junk


@fuzz_settings()
@given(
    data=st.data(),
    frame=frames(),
    field=st.sampled_from(["version", "dtype", "n_ch", "fs", "n_s", "sid_len", "name_len"]),
    value=st.one_of(
        st.integers(0, 2**32 - 1),
        st.sampled_from([0, 1, 2, 3, 64, 65, 0xFFFF, 2**31, 2**32 - 1]),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
)
def test_a_header_field_replaced_is_taken_or_refused_in_bounds(
    data: st.DataObject, frame: Any, field: str, value: Any
) -> None:
    """Headers that claim anything (2 GB of samples, 65535 channels, a NaN rate) are refused
    from the header — the decoder never buffers what a header claims past its limit."""
    raw = bytearray(frame[0])
    offsets = {"version": ("<B", 4), "dtype": ("<B", 5), "n_ch": ("<H", 6), "fs": ("<d", 8),
               "n_s": ("<I", 24), "sid_len": ("<H", 28), "name_len": ("<H", 30 + len(frame[1]["sensor"].encode()))}  # fmt: skip
    fmt, off = offsets[field]
    try:
        struct.pack_into(fmt, raw, off, value)
    except struct.error:
        assume(False)
    got, _error = decode(_cuts(data.draw, bytes(raw)))
    assert len(got) <= 1
    if got:
        assert got[0].data.nbytes <= MAX_FRAME


@fuzz_settings()
@given(data=st.data(), stream=st.lists(frames(signed=True), min_size=1, max_size=3))
def test_signed_frames_verify_and_any_change_is_refused(
    data: st.DataObject, stream: list[Any]
) -> None:
    keys = StreamKeys.parse(KEYS_TEXT, "k")
    counters = [struct.unpack_from("<Q", f, 30 + 1 + 2)[0] for f, _ in stream]
    assume(all(b > a for a, b in itertools.pairwise(counters)))
    raw = b"".join(f for f, _ in stream)
    got, error = decode(_cuts(data.draw, raw), keys)
    assert error is None and [f.counter for f in got] == counters
    # Any change, with the CRC made right again (a deliberate forgery): refused for auth,
    # or for the header's own rules; never delivered changed.
    first = bytearray(stream[0][0])
    at = data.draw(st.integers(0, len(first) - 5))
    first[at] ^= data.draw(st.integers(1, 255))
    first[-4:] = struct.pack("<I", zlib.crc32(bytes(first[:-4])))
    got, error = decode([bytes(first)], StreamKeys.parse(KEYS_TEXT, "k"))
    assert not got and error is not None


@fuzz_settings()
@given(head=st.binary(max_size=200), frame=frames(signed=True))
def test_peek_names_the_sensor_or_refuses(head: bytes, frame: Any) -> None:
    raw, want = frame
    for n in range(0, len(raw), 7):
        sid = peek_sensor_id(raw[:n])
        assert sid is None or sid == want["sensor"]
    try:
        sid = peek_sensor_id(head)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert sid is None or isinstance(sid, str)


@fuzz_settings()
@given(
    payload=st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(
                st.sampled_from(["sensor", "fs", "t0", "channels", "samples", "x"]),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=5),
                    max_leaves=30,
                ),
            ),
        ),
        frames().map(lambda f: f[0]),
    )
)
def test_an_mqtt_payload_is_a_chunk_or_one_line_refusal(payload: bytes) -> None:
    tracemalloc.start()
    try:
        try:
            sensor, chunk = decode_payload(payload)
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(sensor, str) and chunk.data.ndim == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < HEAP_LIMIT


@fuzz_settings(max_examples=20)  # real sockets: fewer, each a few connections
@given(streams=st.lists(st.one_of(st.binary(max_size=200), frames().map(lambda f: f[0][:-1])),
                        min_size=1, max_size=6))  # fmt: skip
def test_a_real_receiver_survives_any_stream_and_keeps_serving(streams: list[bytes]) -> None:
    """Over TCP on loopback: every hostile connection ends (refused or closed), the
    receiver keeps every limit, and a good frame afterwards is delivered."""
    got: list[str] = []
    srv = TcpStreamServer(
        on_chunk=lambda s, c: got.append(s),
        max_frame_bytes=MAX_FRAME,
        first_byte_timeout_s=0.5,
        frame_timeout_s=0.5,
    ).start()
    try:
        for blob in streams:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                try:
                    s.sendall(blob)
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(3)
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(encode_frame("ok", np.ones((2, 1)), fs=1.0, t0_ns=0, channels=("x",)))
            deadline = time.monotonic() + 5
            while "ok" not in got and time.monotonic() < deadline:
                time.sleep(0.01)
        assert "ok" in got
        assert srv.input_bytes <= MAX_FRAME
    finally:
        srv.stop()
    assert srv.connections == 0 and srv.input_bytes == 0
