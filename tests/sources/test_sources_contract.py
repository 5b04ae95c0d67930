"""The contract every source keeps: the signal in, the same signal out, in chunks.

One suite, run over every source in :data:`KINDS` (as ``test_history_contract.py`` runs one
over every history store). A source is pulled (:class:`~pdm.sources.base.Source`: the CSV
reader, the simulator) or pushes chunks to a callback (the TCP stream receiver, the MQTT
input, each with a real peer: a socket on 127.0.0.1, a real mosquitto). Each kind is an
adapter with one small interface (:class:`Kind`) so that every property below is written once:

* every chunk carries the declared channels, sample rate and units (int16 counts scaled);
* times are the sensor's (a 2020 clock, not the arrival time), strictly increasing and
  continuous across chunk boundaries to within float64's resolution of POSIX seconds;
* the chunks put end to end are the signal, bit for bit, however it was cut (Hypothesis);
* the end of the stream loses nothing and reports no error;
* bad input is one line naming what and where, and what came before it is kept;
* a huge declared size is refused before it is allocated;
* a source stops promptly when asked.

To add a source, add a :class:`Kind` to :data:`KINDS`; nothing else changes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from pdm.errors import ConfigError, CsvError, PdmError
from pdm.sources.base import Chunk
from pdm.sources.codec import HEAD, MAX_SAMPLES, encode_frame, ns_from_seconds
from pdm.sources.csv import MAX_LINE_BYTES, CsvRecording
from pdm.sources.mqtt import MqttSource
from pdm.sources.simulator import SimSpec, Simulator, simulate
from pdm.sources.tcp import TcpStreamServer

S = 1_000_000_000  # ns per second
#: The sensor's clock at the first sample: 2020-09-13, years before the test runs, so a
#: source that stamped chunks with their arrival time would be caught at once.
T0_NS = 1_600_000_000_123_456_789
#: float64 POSIX seconds resolve ~0.24 µs today; a time is "the same" within 1 µs.
TIME_TOL_NS = 1_000
WAIT_S = 10.0
#: "Promptly": well under the 1-2 s an operator notices, far above scheduling noise.
PROMPT_S = 2.0


@dataclass(frozen=True)
class Signal:
    """What the sensor measured: ``data`` (n, c) float64 in the channels' units, sample 0 at
    ``t0_ns`` (ns since the epoch, the sensor's clock), sample i at ``t0_ns + i / fs``."""

    data: np.ndarray[Any, np.dtype[np.float64]]
    fs: float
    t0_ns: int
    channels: tuple[str, ...]
    spec: SimSpec | None = None  # the simulator's: its signal is what simulate() gives

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    def sample_ns(self, i: int) -> int:
        """Exact time of sample ``i``, ns."""
        return self.t0_ns + round(Fraction(i * S) / Fraction(self.fs))


@dataclass
class Refusal:
    """What a source did with bad input: the one line it reported, the exception type when it
    raised one (None: reported as an event), words that must be in the line, and the samples it
    handed on before the bad input (none of which may be lost)."""

    line: str
    raised: type[BaseException] | None
    words: tuple[str, ...]
    kept: list[Chunk] = field(default_factory=list)


class Kind:
    """One source behind the contract's interface.

    ``signal`` makes a signal this source can carry; ``chunks`` hands it to the source cut into
    ``sizes`` (a push source sends one frame or message per size; a pull source reads it with a
    chunk length of ``sizes[0]``: it cuts the stream itself) and returns the chunks it yields.
    """

    name = ""
    any_cuts = False  # True: the peer chooses every cut; False: the source cuts uniformly

    def signal(self, n: int, c: int, fs: float, seed: int) -> Signal:
        rng = np.random.default_rng(seed)
        # float32-exact values: a float32 wire carries them unchanged.
        data = rng.normal(0.0, 2.0, (n, c)).astype(np.float32).astype(np.float64)
        return Signal(data, fs, T0_NS, tuple(f"ch{i}_g" for i in range(c)))

    def chunks(self, sig: Signal, sizes: list[int]) -> list[Chunk]:
        raise NotImplementedError

    def declared(self) -> tuple[tuple[str, ...], float] | None:
        """A pull source's own ``(channels, sample_rate_hz)`` after the last ``chunks``."""
        return None

    def end_of_stream(self, sig: Signal) -> list[Chunk]:
        """The stream ends (the file, the spec's duration, the peer going away at a frame
        boundary): what the source yielded. It must report no error."""
        return self.chunks(sig, [max(1, sig.n // 3)])

    def bad_input(self) -> Refusal:
        raise NotImplementedError

    def huge(self) -> Refusal:
        raise NotImplementedError

    def stop(self) -> float:
        """Ask the source to stop while it is busy; the seconds until it has stopped."""
        raise NotImplementedError

    def close(self) -> None:
        return None


def _pieces(sig: Signal, sizes: list[int]) -> Iterator[tuple[int, np.ndarray[Any, Any]]]:
    start = 0
    for size in sizes:
        yield start, sig.data[start : start + size]
        start += size
    assert start == sig.n


def _one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "\r" not in text


# --- pull sources ------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    """ns since the epoch as ISO 8601 UTC to the nanosecond."""
    whole = datetime.fromtimestamp(ns // S, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ns % S:09d}Z"


class CsvKind(Kind):
    """:class:`CsvRecording` over a file the test writes: rate and start time in comments, or
    (``iso_time``) every sample's time in an ISO 8601 column, as the sensor stamped it."""

    def __init__(self, tmp: Path, *, iso_time: bool = False) -> None:
        self.name = "csv_iso_time" if iso_time else "csv"
        self.tmp = tmp
        self.iso_time = iso_time
        self.count = itertools.count()
        self.rec: CsvRecording | None = None

    def write(self, sig: Signal, rows: list[str] | None = None) -> Path:
        path = self.tmp / f"rec{next(self.count)}.csv"
        start = f"{sig.t0_ns // S}.{sig.t0_ns % S:09d}"
        header = ",".join(("time", *sig.channels) if self.iso_time else sig.channels)
        lines = [f"# sample_rate_hz={sig.fs!r}", f"# start_time={start}", header]
        if rows is None:
            rows = [",".join(map(repr, r)) for r in sig.data.tolist()]
        if self.iso_time:
            rows = [f"{_iso(sig.sample_ns(i))},{row}" for i, row in enumerate(rows)]
        path.write_text("\n".join([*lines, *rows]) + "\n")
        return path

    def chunks(self, sig: Signal, sizes: list[int]) -> list[Chunk]:
        with CsvRecording(self.write(sig), chunk_rows=sizes[0]) as rec:
            self.rec = rec
            return list(rec.chunks())

    def declared(self) -> tuple[tuple[str, ...], float] | None:
        assert self.rec is not None
        return self.rec.channels, self.rec.sample_rate_hz

    def end_of_stream(self, sig: Signal) -> list[Chunk]:
        with CsvRecording(self.write(sig), chunk_rows=max(1, sig.n // 3)) as rec:
            first = list(rec.chunks())
            again = list(rec.chunks())  # a recording replays from its start
        assert_array_equal(np.concatenate([c.data for c in again]), sig.data)
        return first

    def bad_input(self) -> Refusal:
        sig = self.signal(40, 2, 1000.0, 1)
        rows = [",".join(map(repr, r)) for r in sig.data.tolist()]
        rows[25] = f"{float(sig.data[25, 0])!r},0.5x"  # line 3 comments/header + 26 = line 29
        path = self.write(sig, rows)
        kept: list[Chunk] = []
        with CsvRecording(path, chunk_rows=10) as rec, pytest.raises(PdmError) as err:
            for chunk in rec.chunks():
                kept.append(chunk)
        return Refusal(str(err.value), err.type, (str(path), ":29:", "'ch1_g'", "0.5x"), kept)

    def huge(self) -> Refusal:
        path = self.tmp / "endless.csv"
        with path.open("w") as f:  # one line longer than any a recording may have
            f.write("# sample_rate_hz=1000\nx_g\n0.5\n")
            f.write("1" * (4 * MAX_LINE_BYTES))
        tracemalloc.start()
        try:
            with pytest.raises(PdmError) as err, CsvRecording(path) as rec:
                list(rec.chunks())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2 * MAX_LINE_BYTES + (1 << 20), f"{peak} bytes held for a refused line"
        return Refusal(str(err.value), err.type, (str(path), ":4"))

    def stop(self) -> float:
        sig = self.signal(5000, 1, 1000.0, 2)
        rec = CsvRecording(self.write(sig), chunk_rows=100)
        gen = rec.chunks()
        next(gen)
        t = time.monotonic()
        rec.close()
        rest = list(gen)  # a running pass ends: at most the chunk in hand, no error
        assert len(rest) <= 1, f"{len(rest)} chunks after close()"
        return time.monotonic() - t


class SimulatorKind(Kind):
    """:class:`Simulator`: its signal is :func:`simulate` of the same spec."""

    name = "simulator"

    def __init__(self) -> None:
        self.src: Simulator | None = None

    def signal(self, n: int, c: int, fs: float, seed: int) -> Signal:
        spec = SimSpec(
            fs=fs,
            duration_s=n / fs,
            channels=tuple(f"ch{i}_g" for i in range(c)),
            resonance_hz=fs / 4,
            rpm=min(1480.0, fs * 6),
            start_time=T0_NS / S,
            seed=seed,
        )
        return Signal(simulate(spec), fs, ns_from_seconds(spec.start_time), spec.channels, spec)

    def chunks(self, sig: Signal, sizes: list[int]) -> list[Chunk]:
        assert sig.spec is not None
        with Simulator(sig.spec, chunk_samples=sizes[0]) as src:
            self.src = src
            return list(src.chunks())

    def declared(self) -> tuple[tuple[str, ...], float] | None:
        assert self.src is not None
        return self.src.channels, self.src.sample_rate_hz

    def bad_input(self) -> Refusal:
        with pytest.raises(PdmError) as err:
            SimSpec(fs=12000.0, resonance_hz=7000.0)
        return Refusal(str(err.value), err.type, ("resonance_hz=7000.0", "Nyquist"))

    def huge(self) -> Refusal:
        # An endless stream in chunks of 2**40 samples would buffer blocks for ever.
        with pytest.raises(PdmError) as err:
            Simulator(SimSpec(duration_s=math.inf), chunk_samples=2**40)
        return Refusal(str(err.value), err.type, ("chunk_samples=1099511627776",))

    def stop(self) -> float:
        src = Simulator(SimSpec(duration_s=math.inf), chunk_samples=1024)
        gen = src.chunks()
        next(gen)
        t = time.monotonic()
        src.close()
        rest = list(itertools.islice(gen, 10))
        assert len(rest) <= 1, f"{len(rest)} chunks after close()"
        return time.monotonic() - t


# --- push sources --------------------------------------------------------------------------------


class Collector:
    """on_chunk / on_event of a push source: chunks by sensor id, events in order."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[Chunk]] = {}
        self.events: list[tuple[str, str]] = []
        self.cond = threading.Condition()

    def on_chunk(self, sensor: str, chunk: Chunk) -> None:
        with self.cond:
            self.chunks.setdefault(sensor, []).append(chunk)
            self.cond.notify_all()

    def on_event(self, kind: str, detail: str) -> None:
        with self.cond:
            self.events.append((kind, detail))
            self.cond.notify_all()

    def samples(self, sensor: str) -> int:
        return sum(c.n_samples for c in self.chunks.get(sensor, []))

    def wait(self, what: str, pred: Callable[[], bool], timeout: float = WAIT_S) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, timeout), f"timed out waiting for {what}: {self.events}"

    def event(self, kind: str, since: int) -> str:
        self.wait(kind, lambda: any(k == kind for k, _ in self.events[since:]))
        return next(d for k, d in self.events[since:] if k == kind)


class PushKind(Kind):
    any_cuts = True

    def __init__(self) -> None:
        self.col = Collector()
        self.sensors = (f"sensor-{i}" for i in itertools.count())

    def send(self, sensor: str, payloads: list[bytes]) -> None:
        raise NotImplementedError

    def encode(self, sensor: str, sig: Signal, start: int, part: np.ndarray[Any, Any]) -> bytes:
        return encode_frame(
            sensor,
            part,
            fs=sig.fs,
            t0_ns=sig.sample_ns(start),
            channels=sig.channels,
            dtype="float32",
        )

    def chunks(self, sig: Signal, sizes: list[int]) -> list[Chunk]:
        sensor = next(self.sensors)
        self.send(sensor, [self.encode(sensor, sig, s, p) for s, p in _pieces(sig, sizes)])
        self.col.wait(f"{sig.n} samples", lambda: self.col.samples(sensor) >= sig.n)
        return self.col.chunks[sensor]

    def end_of_stream(self, sig: Signal) -> list[Chunk]:
        third = max(1, sig.n // 3)
        return self.chunks(sig, [third, third, sig.n - 2 * third])

    def good_then_bad(self, bad: Callable[[bytes], bytes], kind: str) -> Refusal:
        """Two good frames, then a bad one: the line reported, and the good ones kept."""
        sensor = next(self.sensors)
        sig = self.signal(30, 2, 1000.0, 3)
        frames = [self.encode(sensor, sig, s, p) for s, p in _pieces(sig, [10, 10, 10])]
        since = len(self.col.events)
        self.send(sensor, [*frames[:2], bad(frames[2])])
        line = self.col.event(kind, since)
        self.col.wait("the good frames", lambda: self.col.samples(sensor) >= 20)
        return Refusal(line, None, (), self.col.chunks[sensor])


def _declaring_huge(sensor: str) -> bytes:
    """The head of a frame of 64 float64 channels claiming MAX_SAMPLES samples (512 MiB, over
    the 64 MiB limit): everything up to its first sample, which never comes."""
    channels = [f"c{i}" for i in range(64)]
    frame = bytearray(
        encode_frame(
            sensor, np.zeros((1, 64)), fs=1000.0, t0_ns=T0_NS, channels=channels, dtype="float64"
        )
    )
    frame[24:28] = MAX_SAMPLES.to_bytes(4, "little")  # n_samples (HEAD: <4sBBHdqIH)
    assert HEAD.unpack_from(frame)[6] == MAX_SAMPLES
    return bytes(frame[: len(frame) - 64 * 8 - 4])


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closes ``sock`` (normally or with a reset) within PROMPT_S."""
    sock.settimeout(PROMPT_S)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _corrupt_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


class TcpKind(PushKind):
    """:class:`TcpStreamServer` on 127.0.0.1, each stream one real TCP connection."""

    def __init__(self, dtype: str = "float32") -> None:
        super().__init__()
        self.name = "tcp" if dtype == "float32" else f"tcp_{dtype}"
        self.dtype = dtype
        self.server = TcpStreamServer(on_chunk=self.col.on_chunk, on_event=self.col.on_event)
        self.server.start()

    def signal(self, n: int, c: int, fs: float, seed: int) -> Signal:
        sig = super().signal(n, c, fs, seed)
        if self.dtype != "int16":
            return sig
        counts = np.random.default_rng(seed).integers(-32768, 32768, (n, c))
        data = (counts * 0.00125).astype(np.float64)  # g = count × 1.25 mg
        return Signal(data, fs, sig.t0_ns, sig.channels)

    def encode(self, sensor: str, sig: Signal, start: int, part: np.ndarray[Any, Any]) -> bytes:
        if self.dtype != "int16":
            return super().encode(sensor, sig, start, part)
        counts = np.rint(part / 0.00125).astype(np.int16)
        t0 = sig.sample_ns(start)
        return encode_frame(
            sensor, counts, fs=sig.fs, t0_ns=t0, channels=sig.channels, dtype="int16", scale=0.00125
        )

    def send(self, sensor: str, payloads: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=WAIT_S) as sock:
            sock.sendall(b"".join(payloads))
            # The receiver closes when it has read everything, or resets the connection when it
            # refuses a frame (perhaps before the shutdown below).
            with contextlib.suppress(ConnectionResetError, OSError):
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):
                    pass

    def end_of_stream(self, sig: Signal) -> list[Chunk]:
        since = len(self.col.events)
        got = super().end_of_stream(sig)
        line = self.col.event("disconnected", since)
        assert "closed by the peer after 3 frames" in line, line
        assert not [k for k, _ in self.col.events[since:] if k == "protocol_error"]
        return got

    def bad_input(self) -> Refusal:
        r = self.good_then_bad(_corrupt_crc, "protocol_error")
        # the third frame starts at byte 2 × (frame length); its CRC is its last 4 bytes
        r.words = ("stream from 127.0.0.1:", "byte ", "CRC")
        return r

    def huge(self) -> Refusal:
        sensor = next(self.sensors)
        since = len(self.col.events)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=WAIT_S) as sock:
            sock.sendall(_declaring_huge(sensor))  # and then nothing: the body never comes
            assert _closed_by_peer(sock), "the receiver waits for a body it cannot hold"
        line = self.col.event("protocol_error", since)
        assert self.server.input_bytes < 64 * 1024
        return Refusal(line, None, ("stream from 127.0.0.1:", "byte 24", "67108864"))

    def stop(self) -> float:
        col = Collector()
        server = TcpStreamServer(on_chunk=col.on_chunk, on_event=col.on_event).start()
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
        busy = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
        sig = self.signal(100, 2, 1000.0, 4)
        busy.sendall(self.encode("s", sig, 0, sig.data)[:50])  # a frame half sent
        col.wait("both connections", lambda: server.connections == 2)
        t = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - t
        for sock in (idle, busy):
            with sock:
                assert _closed_by_peer(sock)  # the peer learns it at once
        assert server.connections == 0
        server.stop()  # idempotent
        return elapsed

    def close(self) -> None:
        self.server.stop()


class MqttKind(PushKind):
    """:class:`MqttSource` subscribed to a real mosquitto; each piece one QoS 1 message."""

    def __init__(self, broker: Any, fmt: str) -> None:
        from test_mqtt import Publisher

        super().__init__()
        self.name = f"mqtt_{fmt}"
        self.fmt = fmt
        self.broker = broker
        self.src = MqttSource(
            f"{broker.url}/contract/+/samples",
            on_chunk=self.col.on_chunk,
            on_event=self.col.on_event,
            client_id=f"contract-{fmt}-{id(self)}",
        )
        self.src.start()
        self.col.event("mqtt_connected", 0)
        self.pub = Publisher(broker.port)

    def encode(self, sensor: str, sig: Signal, start: int, part: np.ndarray[Any, Any]) -> bytes:
        if self.fmt == "frame":
            return super().encode(sensor, sig, start, part)
        doc = {
            "sensor": sensor,
            "fs": sig.fs,
            "t0": sig.sample_ns(start),
            "channels": list(sig.channels),
            "samples": part.tolist(),
        }
        return json.dumps(doc).encode()

    def send(self, sensor: str, payloads: list[bytes]) -> None:
        for p in payloads:
            self.pub.publish(f"contract/{sensor}/samples", p)

    def end_of_stream(self, sig: Signal) -> list[Chunk]:
        since = len(self.col.events)
        got = super().end_of_stream(sig)
        assert not [e for e in self.col.events[since:] if e[0] != "mqtt_connected"]
        return got

    def bad_input(self) -> Refusal:
        if self.fmt == "frame":
            r = self.good_then_bad(_corrupt_crc, "mqtt_rejected")
            r.words = ("mqtt contract/sensor-", "/samples:", "PDMS frame, byte ", "CRC")
        else:
            r = self.good_then_bad(lambda p: p.replace(b'"fs"', b'"fz"'), "mqtt_rejected")
            r.words = ("mqtt contract/sensor-", "/samples:", "unknown key 'fz'")
        return r

    def huge(self) -> Refusal:
        since = len(self.col.events)
        sensor = next(self.sensors)
        self.send(sensor, [_declaring_huge(sensor)])
        line = self.col.event("mqtt_rejected", since)
        return Refusal(line, None, (f"mqtt contract/{sensor}/samples:", "byte 24", "16777216"))

    def stop(self) -> float:
        col = Collector()
        src = MqttSource(  # a client id (so a session) of its own: nothing queued for it
            f"{self.broker.url}/contract/+/samples",
            on_chunk=col.on_chunk,
            on_event=col.on_event,
            client_id=f"contract-stop-{time.monotonic_ns()}",
        )
        src.start()
        col.event("mqtt_connected", 0)
        t = time.monotonic()
        src.stop()
        elapsed = time.monotonic() - t
        src.stop()  # idempotent
        # Nothing arrives after stop(): a message published now stays with the broker.
        sig = self.signal(5, 1, 100.0, 5)
        self.send("after-stop", [self.encode("after-stop", sig, 0, sig.data)])
        time.sleep(0.2)
        assert not col.chunks, "a chunk was handed on after stop()"
        # Stopping while the broker cannot be reached is as prompt.
        from servers import free_ports

        (port,) = free_ports(1)
        down = MqttSource(f"mqtt://127.0.0.1:{port}/contract/#", on_chunk=col.on_chunk)
        down.start()
        time.sleep(0.1)
        t2 = time.monotonic()
        down.stop()
        return max(elapsed, time.monotonic() - t2)

    def close(self) -> None:
        self.pub.close()
        self.src.stop()


# --- the kinds, and their fixtures -------------------------------------------------------------


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real mosquitto for the module (Hypothesis examples share it; topics differ)."""
    from test_mqtt import Broker, find_mosquitto

    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto (MQTT broker) not installed; scripts/setup-test-servers.sh")
    broker = Broker(binary, tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker.start()
    finally:
        broker.stop()


KindFactory = Callable[[Path, pytest.FixtureRequest], Kind]

#: name → factory; a factory may ``pytest.skip`` when what it needs (a broker) is not there.
KINDS: dict[str, KindFactory] = {
    "csv": lambda tmp, req: CsvKind(tmp),
    "csv_iso_time": lambda tmp, req: CsvKind(tmp, iso_time=True),
    "simulator": lambda tmp, req: SimulatorKind(),
    "tcp": lambda tmp, req: TcpKind("float32"),
    "tcp_int16": lambda tmp, req: TcpKind("int16"),
    "mqtt_frame": lambda tmp, req: MqttKind(req.getfixturevalue("mqtt_broker"), "frame"),
    "mqtt_json": lambda tmp, req: MqttKind(req.getfixturevalue("mqtt_broker"), "json"),
}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kind]:
    k = KINDS[request.param](tmp_path, request)
    try:
        yield k
    finally:
        k.close()


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Every source stops the threads it starts (the receiver's, paho's)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


# --- the contract --------------------------------------------------------------------------------

FS = 3200.0


def test_chunks_carry_the_declared_channels_rate_and_units(kind: Kind) -> None:
    sig = kind.signal(1000, 3, FS, seed=11)
    got = kind.chunks(sig, [1, 99, 400, 500])
    assert got
    for chunk in got:
        assert chunk.channels == sig.channels
        assert chunk.fs == sig.fs
        assert chunk.data.ndim == 2 and chunk.data.shape[1] == len(sig.channels)
        assert chunk.data.dtype.kind == "f" and chunk.n_samples >= 1
        assert chunk.bad_samples == 0 and np.isfinite(chunk.data).all()
        # a live input stamps each chunk's arrival (monotonic clock) for the decision latency;
        # a recording or the simulator has none
        if kind.any_cuts:
            assert chunk.received is not None and chunk.received <= time.monotonic()
        else:
            assert chunk.received is None
    if (declared := kind.declared()) is not None:
        assert declared == (sig.channels, sig.fs)
    # Units: the values are the signal's (an int16 stream's counts come out scaled).
    assert_array_equal(np.concatenate([c.data for c in got]).astype(np.float64), sig.data)


def test_times_are_the_sensors_monotonic_and_continuous(kind: Kind) -> None:
    sig = kind.signal(2000, 2, FS, seed=12)
    got = kind.chunks(sig, [7, 500, 1, 1000, 492])
    start = 0
    for chunk in got:
        t_ns = ns_from_seconds(chunk.t0)
        # the sensor's own clock at that sample: not the arrival time, not a restart at 0
        assert abs(t_ns - sig.sample_ns(start)) <= TIME_TOL_NS, (start, t_ns - sig.t0_ns)
        start += chunk.n_samples
    t0s = [c.t0 for c in got]
    assert all(a < b for a, b in itertools.pairwise(t0s)), "times must increase"
    # continuous: each chunk starts one sample period after the last one's last sample
    for a, b in itertools.pairwise(got):
        step_ns = ns_from_seconds(b.t0) - ns_from_seconds(a.t0 + (a.n_samples - 1) / a.fs)
        assert abs(step_ns - S / sig.fs) <= TIME_TOL_NS


def _sizes(n: int) -> st.SearchStrategy[list[int]]:
    """Ways to cut n samples: the lengths of the pieces, each ≥ 1, summing to n."""
    cuts = st.lists(st.integers(1, n - 1), max_size=12, unique=True).map(sorted)
    return cuts.map(lambda c: [b - a for a, b in itertools.pairwise([0, *c, n])])


def test_the_chunks_put_together_are_the_signal_however_it_is_cut(kind: Kind) -> None:
    n = 600
    sig = kind.signal(n, 2, FS, seed=13)
    examples = 25 if not kind.name.startswith("mqtt") else 10

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(sizes=_sizes(n))
    def check(sizes: list[int]) -> None:
        got = kind.chunks(sig, sizes)
        if kind.any_cuts:  # the peer's cuts are kept: one chunk per frame or message
            assert [c.n_samples for c in got] == sizes
        else:  # the source's own cuts: at most the length asked, all full but the last
            assert all(c.n_samples == sizes[0] for c in got[:-1])
            assert 1 <= got[-1].n_samples <= sizes[0]
        data = np.concatenate([c.data for c in got])
        assert data.dtype.kind == "f"
        assert_array_equal(data.astype(np.float64), sig.data)

    check()


def test_the_end_of_the_stream_loses_nothing_and_is_no_error(kind: Kind) -> None:
    sig = kind.signal(1001, 2, FS, seed=14)  # not a multiple of any chunk length used
    got = kind.end_of_stream(sig)
    assert sum(c.n_samples for c in got) == sig.n
    assert_array_equal(np.concatenate([c.data for c in got]).astype(np.float64), sig.data)


def test_bad_input_is_one_line_naming_what_and_where(kind: Kind) -> None:
    r = kind.bad_input()
    assert _one_line(r.line), repr(r.line)
    assert "Traceback" not in r.line
    if r.raised is not None:
        assert issubclass(r.raised, PdmError), r.raised
    for word in r.words:
        assert word in r.line, (word, r.line)
    # Nothing accepted before the bad input is lost: it was handed on, whole and in order.
    if r.kept:
        data = np.concatenate([c.data for c in r.kept])
        assert data.shape[0] == 20 and np.isfinite(data).all()  # two pieces of 10


def test_a_huge_declared_size_is_refused_not_allocated(kind: Kind) -> None:
    t = time.monotonic()
    r = kind.huge()
    assert time.monotonic() - t < WAIT_S
    assert _one_line(r.line), repr(r.line)
    if r.raised is not None:
        assert issubclass(r.raised, PdmError), r.raised
    for word in r.words:
        assert word in r.line, (word, r.line)


def test_a_source_stops_promptly_when_asked(kind: Kind) -> None:
    assert kind.stop() < PROMPT_S


# --- what only some sources have -----------------------------------------------------------------


def test_a_csv_error_names_file_line_and_column(tmp_path: Path) -> None:
    r = CsvKind(tmp_path).bad_input()
    assert r.raised is CsvError
    assert sum(c.n_samples for c in r.kept) == 20  # the two blocks before line 29's block


def test_a_simulator_refuses_a_chunk_length_that_is_not_a_count() -> None:
    for bad in (0, -5, True, 2.5):
        with pytest.raises(ConfigError, match=r"chunk_samples="):
            Simulator(SimSpec(duration_s=0.1), chunk_samples=bad)  # type: ignore[arg-type]
