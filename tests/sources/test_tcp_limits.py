"""The stream receiver's bounds (issue 16, items 4 and 5) and authenticated frames (Build 3).

Real sockets on 127.0.0.1 (and 127.0.0.2 … as other peers: Linux routes all of 127/8 to
loopback). Each limit is driven past its edge: the peer beyond it is refused (reset),
counted by cause, logged at most once per interval; the peers within it are served.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import numpy as np
import pytest
from test_tcp_source import Collector, connect, start_server, wait_closed_by_peer

from pdm.errors import ConfigError, InputError
from pdm.sources.codec import FrameDecoder, encode_frame, frame_limit
from pdm.sources.stream_keys import FrameSigner, StreamKeys

T0_NS = 1_700_000_000_000_000_000


def frame(k: int = 0, sensor: str = "s", n: int = 4, **kw: Any) -> bytes:
    data = np.full((n, 1), float(k), dtype=np.float32)
    return encode_frame(sensor, data, fs=100.0, t0_ns=T0_NS + k * 10**8, channels=("x",), **kw)


def connect_from(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def assert_refused(port: int, source: str = "127.0.0.1") -> None:
    """A new connection is reset at once (on loopback, possibly before connect() returns)."""
    try:
        s = connect_from(port, source)
    except ConnectionResetError:
        return
    with s:
        wait_closed_by_peer(s)


def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- connections ----------------------------------------------------------------------------------


def test_idle_connections_are_cut_at_the_first_byte_timeout_and_the_sensor_gets_in() -> None:
    """Issue 16 item 5: connections that never send a byte filled every slot for the idle
    timeout (300 s) and locked the real sensor out. They now go after first_byte_timeout_s,
    and a sensor that finds every slot taken by silent ones pushes the oldest out at once
    (issue 17: the service's first-frame deadline grew to fit gateways that stagger their
    sensors, so idle connections must not be what keeps a sensor out meanwhile)."""
    col = Collector()
    srv = start_server(col, max_connections=16, max_per_peer=16, first_byte_timeout_s=0.5)
    idle = [connect(srv.port) for _ in range(16)]
    try:
        until(lambda: srv.connections == 16)
        with connect_from(srv.port, "127.0.0.2") as sensor:  # every slot taken, all silent
            sensor.sendall(frame(1))
            col.wait(lambda c: len(c.chunks) == 1)
            for s in idle:
                wait_closed_by_peer(s, timeout=3)  # one pushed out, the rest cut at ~0.5 s
    finally:
        for s in idle:
            s.close()
        srv.stop()
    assert srv.refused == {"too_many": 1, "no_data": 15}
    assert (
        sum(1 for k, d in col.events if k == "timeout" and "sent nothing within 0.5 s" in d) == 15
    )
    assert any("had sent nothing for" in d for k, d in col.events if k == "refused")


def test_a_full_receiver_of_busy_connections_refuses_the_newcomer() -> None:
    """Connections that have delivered a frame (a sensor streaming) are never pushed out."""
    col = Collector()
    srv = start_server(col, max_connections=4, max_per_peer=16)
    held = [connect(srv.port) for _ in range(4)]
    try:
        for k, s in enumerate(held):
            s.sendall(frame(k) + frame(k)[:10])  # a frame delivered, the next one started
        col.wait(lambda c: len(c.chunks) == 4)
        until(lambda: srv.connections == 4)
        assert_refused(srv.port, "127.0.0.2")
    finally:
        for s in held:
            s.close()
        srv.stop()
    assert srv.refused.get("too_many") == 1


@pytest.mark.parametrize("per_peer", [False, True], ids=["total", "per_peer"])
def test_connections_trickling_a_first_frame_cannot_keep_a_sensor_out(per_peer: bool) -> None:
    """Red team: every slot filled with connections that sent a few bytes of a header and
    then nothing (slowloris) refused every newcomer — a sensor reconnecting after a network
    blip — for the frame timeout (30 s), again with each new wave. A connection that has not
    completed a frame yet is now pushed out like a silent one (the oldest first); one that
    has delivered a frame stays."""
    col = Collector()
    limits = {"max_connections": 16, "max_per_peer": 4} if per_peer else {"max_connections": 4}
    srv = start_server(col, frame_timeout_s=30, **limits)
    with connect(srv.port) as streaming:
        streaming.sendall(frame(0))
        col.wait(lambda c: len(c.chunks) == 1)
        slow = [connect(srv.port) for _ in range(3)]
        try:
            for s in slow:
                s.sendall(frame(0)[:5])  # magic and version, then silence
            until(lambda: srv.connections == 4 and srv.bytes_received >= len(frame(0)) + 15)
            with connect(srv.port) as sensor:  # every slot taken
                sensor.sendall(frame(1))
                col.wait(lambda c: len(c.chunks) == 2)
            wait_closed_by_peer(slow[0])  # the oldest trickler pushed out
            streaming.sendall(frame(2))  # the streaming sensor kept its slot
            col.wait(lambda c: len(c.chunks) == 3)
            # Read before the cleanup: the tricklers closed below may be counted as frames
            # cut short ("protocol") if the server polls before it stops.
            refused = dict(srv.refused)
        finally:
            for s in slow:
                s.close()
            srv.stop()
    cause = "per_peer" if per_peer else "too_many"
    assert refused == {cause: 1}
    assert any("had not completed a frame (5 bytes received)" in d for _, d in col.events)


def test_connections_per_peer_address_are_capped() -> None:
    col = Collector()
    srv = start_server(col, max_per_peer=3)
    held = [connect(srv.port) for _ in range(3)]
    try:
        for k, s in enumerate(held):
            s.sendall(frame(k))  # streaming: never pushed out
        col.wait(lambda c: len(c.chunks) == 3)
        until(lambda: srv.connections == 3)
        assert_refused(srv.port)
        with connect_from(srv.port, "127.0.0.3") as other:  # another address: served
            other.sendall(frame(3))
            col.wait(lambda c: len(c.chunks) == 4)
    finally:
        for s in held:
            s.close()
        srv.stop()
    assert srv.refused.get("per_peer") == 1
    assert any("3 connections from 127.0.0.1 open already" in d for _, d in col.events)


def test_idle_connections_from_the_sensors_own_address_cannot_keep_it_out() -> None:
    """A peer on the gateway's address (the same host, a NAT) that fills the per-address
    slots with silent connections used to have the gateway's sensors refused (per_peer)
    until they timed out, and again with each new wave. The oldest silent one from that
    address now goes instead, as for the total."""
    col = Collector()
    srv = start_server(col, max_connections=16, max_per_peer=3, first_byte_timeout_s=30)
    idle = [connect(srv.port) for _ in range(3)]
    try:
        until(lambda: srv.connections == 3)
        with connect(srv.port) as sensor:  # 127.0.0.1 too: every slot of it silent
            sensor.sendall(frame(1))
            col.wait(lambda c: len(c.chunks) == 1)
        wait_closed_by_peer(idle[0], timeout=3)  # the oldest pushed out
    finally:
        for s in idle:
            s.close()
        srv.stop()
    assert srv.refused == {"per_peer": 1}
    assert any("every one of 3 connections from 127.0.0.1" in d for _, d in col.events)


def test_a_frame_trickled_byte_by_byte_is_cut_at_the_frame_timeout() -> None:
    col = Collector()
    srv = start_server(col, frame_timeout_s=0.5)
    try:
        with connect(srv.port) as slow:
            data = frame(0)
            deadline = time.monotonic() + 5
            with pytest.raises(OSError):  # reset while still trickling
                for b in data[:-1]:
                    slow.sendall(bytes([b]))
                    time.sleep(0.05)
                    assert time.monotonic() < deadline
                    if srv.refused.get("slow_frame"):
                        slow.sendall(b"x")  # the next write after the reset fails
                        time.sleep(0.05)
                        slow.sendall(b"x")
    finally:
        srv.stop()
    assert srv.refused.get("slow_frame") == 1 and not col.chunks


def test_incomplete_frames_across_connections_are_bounded_the_oldest_goes() -> None:
    """Issue 16 item 4: 20 connections each sending 60 MiB of a claimed 66 MB frame took the
    service to 1.4 GB. Per connection at most max_frame_bytes is held, and across
    connections at most max_input_bytes: past it, the oldest incomplete frame's connection
    is closed; a sender that writes whole frames keeps going."""
    col = Collector()
    mib = 1 << 20
    srv = start_server(col, max_frame_bytes=mib, max_input_bytes=3 * mib, max_per_peer=16)
    big = encode_frame(
        "s", np.zeros((mib // 4 - 64, 1), np.float32), fs=100.0, t0_ns=T0_NS, channels=("x",)
    )
    assert len(big) <= mib
    partial = [connect(srv.port) for _ in range(5)]
    try:
        for i, s in enumerate(partial):
            s.sendall(big[: len(big) - 100])  # never completed
            until(lambda i=i: srv.input_bytes >= min(i + 1, 3) * (len(big) - 100) - 100_000)
            assert srv.input_bytes <= 3 * mib
        until(lambda: srv.refused.get("memory", 0) >= 2)
        assert srv.input_bytes <= 3 * mib
        wait_closed_by_peer(partial[0])  # the oldest went first
        wait_closed_by_peer(partial[1])
        with connect_from(srv.port, "127.0.0.4") as good:
            good.sendall(big + frame(1))  # whole frames still go through
            col.wait(lambda c: len(c.chunks) == 2)
    finally:
        for s in partial:
            s.close()
        srv.stop()
    assert srv.input_bytes == 0
    assert any("was the oldest" in d for k, d in col.events if k == "refused")


def test_a_frame_over_max_frame_bytes_is_refused_at_its_header() -> None:
    col = Collector()
    srv = start_server(col, max_frame_bytes=64 * 1024)
    try:
        with connect(srv.port) as s:
            s.sendall(frame(0, n=20_000)[:40])  # 80 kB claimed: refused on 30 bytes
            wait_closed_by_peer(s)
    finally:
        srv.stop()
    assert srv.refused == {"protocol": 1} and srv.input_bytes == 0
    assert "frame too large" in col.events[-1][1]


def test_the_frame_limit_is_sized_from_the_pipeline() -> None:
    # two seconds at 25.6 kHz x 2 channels x 8 bytes, plus the longest header, in 64 KiB
    assert frame_limit(25600.0, 8192, 2) == 13 * 65536
    assert frame_limit(100.0, 256, 1) == 65536  # never below 64 KiB
    assert frame_limit(1e7, 2**22, 64) == 64 * 1024 * 1024  # never above the protocol's


def test_refusals_are_logged_once_per_cause_per_interval_with_a_count(caplog) -> None:
    col = Collector()
    srv = start_server(col, log_interval_s=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="pdm.sources.tcp"):
            for _ in range(30):
                with connect(srv.port) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    wait_closed_by_peer(s)
            until(lambda: "29 more protocol error (protocol)" in caplog.text, timeout=3)
    finally:
        srv.stop()
    assert caplog.text.count("bad magic") == 1  # one line for thirty, then the count
    assert srv.refused == {"protocol": 30}
    assert len([k for k, _ in col.events if k == "protocol_error"]) == 30  # every event


# -- authenticated frames -------------------------------------------------------------------------

SECRET = bytes(range(32))
KEYS = StreamKeys.parse(
    f"gw-1 {SECRET.hex()} s,t\ngw-2 {bytes(16).hex()}  # any sensor\n", "keys.txt"
)


def test_a_signed_frame_round_trips_and_carries_its_key_and_counter() -> None:
    dec = FrameDecoder("p", keys=StreamKeys.parse(f"gw-1 {SECRET.hex()}", "k"))
    (f,) = dec.feed(frame(3, key=("gw-1", SECRET), counter=7))
    assert (f.key_id, f.counter, f.sensor_id, f.data[0, 0]) == ("gw-1", 7, "s", 3.0)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (frame(0), "unauthenticated frame (version 1)"),
        (frame(0, key=("gw-9", SECRET), counter=1), "unknown key id gw-9"),
        (frame(0, key=("gw-1", bytes(32)), counter=1), "HMAC tag does not match key gw-1"),
        (frame(0, sensor="u", key=("gw-1", SECRET), counter=1), "may not send for sensor 'u'"),
    ],
    ids=["unsigned", "unknown-key", "wrong-secret", "other-sensor"],
)
def test_a_receiver_with_keys_refuses_what_is_not_signed_by_one(raw: bytes, words: str) -> None:
    dec = FrameDecoder("p", keys=KEYS)
    with pytest.raises(InputError) as info:
        dec.feed(raw)
    assert words in str(info.value) and getattr(info.value, "cause", "") == "auth"


def test_an_altered_signed_frame_is_refused() -> None:
    raw = bytearray(frame(0, key=("gw-1", SECRET), counter=1))
    raw[-12] ^= 1  # a sample byte (the CRC then recomputed: a deliberate change)
    import zlib

    raw[-4:] = zlib.crc32(bytes(raw[:-4])).to_bytes(4, "little")
    with pytest.raises(InputError, match="HMAC tag does not match"):
        FrameDecoder("p", keys=KEYS).feed(bytes(raw))


def test_a_replayed_signed_frame_is_refused() -> None:
    keys = StreamKeys.parse(f"gw-1 {SECRET.hex()}", "k")
    first = frame(0, key=("gw-1", SECRET), counter=10)
    assert len(FrameDecoder("a", keys=keys).feed(first)) == 1
    with pytest.raises(InputError, match="not above the last one taken"):
        FrameDecoder("b", keys=keys).feed(first)  # on another connection too


def test_an_unknown_key_id_is_refused_before_the_samples_arrive() -> None:
    raw = frame(0, n=100_000, key=("gw-9", SECRET), counter=1)
    with pytest.raises(InputError, match="unknown key id") as info:
        FrameDecoder("p", keys=KEYS).feed(raw[:40])
    assert "byte 31" in str(info.value)


def test_the_signer_counts_up_from_its_clock() -> None:
    s = FrameSigner("gw-1", SECRET)
    a = s.next_counter()
    assert abs(a - time.time_ns()) < 10**9 and s.next_counter() > a


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("gw-1 abcd", "at least 16"),
        ("gw-1 zz" + "0" * 32, "not hex"),
        ("gw 1 " + "00" * 16 + " s extra", "expected KEY_ID SECRET_HEX"),
        ("g/w " + "00" * 16, "must be 1-32 characters"),
        # The columns swapped: the first word is the secret (files red team: it was shown).
        ("ab" * 32 + " gw-1", "the key id (the first word, 64 characters) must be 1-32"),
        (f"a {'00' * 16}\na {'00' * 16}", "given twice"),
        ("# nothing\n", "no key in the file"),
    ],
)
def test_a_bad_key_file_is_one_line_naming_the_line(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        StreamKeys.parse(text, "keys.txt")
    msg = str(info.value)
    assert words in msg and msg.startswith("keys.txt") and "\n" not in msg
    assert "00000000" not in msg and "abababab" not in msg  # never a secret


def test_a_server_with_keys_serves_signed_frames_and_resets_the_rest(tmp_path) -> None:
    col = Collector()
    srv = start_server(col, keys=KEYS)
    signer = FrameSigner("gw-2", bytes(16))
    try:
        with connect(srv.port) as good:
            good.sendall(
                b"".join(frame(k, key=signer.key, counter=signer.next_counter()) for k in range(3))
            )
            col.wait(lambda c: len(c.chunks) == 3)
        with connect(srv.port) as bad:
            bad.sendall(frame(5))
            wait_closed_by_peer(bad)
    finally:
        srv.stop()
    assert srv.refused == {"auth": 1}


def test_a_closed_connections_bytes_are_freed_at_once_not_by_the_cyclic_collector() -> None:
    """A decoder that failed (here: the peer closed in the middle of a frame) is in a cycle
    with its error's traceback; its buffer used to wait for the cyclic collector (measured
    with the issue's repro: 1.49 GB still held after the connections closed)."""
    import gc
    import tracemalloc

    col = Collector()
    mib = 1 << 20
    srv = start_server(col, max_frame_bytes=8 * mib)
    big = encode_frame(
        "s", np.zeros((7 * mib // 8, 2), np.float32), fs=100.0, t0_ns=T0_NS, channels=("x", "y")
    )
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with connect(srv.port) as s:
            s.sendall(big[: 6 * mib])
            until(lambda: srv.input_bytes >= 6 * mib - 300_000)
            held = tracemalloc.get_traced_memory()[0] - base
        until(lambda: srv.connections == 0)
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        gc.enable()
        srv.stop()
    assert held > 5 * mib and left < mib, (held, left)
    assert any("connection closed in the middle of a frame" in d for _, d in col.events)


def test_the_services_input_limits_are_sized_from_its_pipelines() -> None:
    """Issue 17: constants (512 connections, 64 from one address, a first frame within 5 s)
    reset the sensors of a plant larger than them; sized from the pipelines they cannot."""
    from pathlib import Path

    from pdm.config import load_pipeline
    from pdm.service.limits import FIRST_FRAME_MIN_S, InputLimits

    demo = load_pipeline(Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml")
    one = InputLimits.sized([demo])
    assert (one.max_connections, one.max_per_peer) == (2 * 1 + 64, 2 * 1 + 64)
    assert one.first_frame_s == FIRST_FRAME_MIN_S  # a 0.32-s window: the floor
    plant = InputLimits.sized([demo] * 600)  # 600 sensors behind one gateway
    assert plant.max_connections == plant.max_per_peer == 1264
    acq = demo.acquisition.model_copy(update={"window_samples": 25600 * 32})  # 32-s windows
    slow = demo.model_copy(update={"acquisition": acq})
    assert InputLimits.sized([demo, slow]).first_frame_s == 64.0
    own = InputLimits.sized([demo] * 600, max_connections=100, max_per_peer=500)
    assert (own.max_connections, own.max_per_peer) == (100, 100)  # the smaller bound wins
    assert "1264 connections, 1264 from one address" in plant.describe()
