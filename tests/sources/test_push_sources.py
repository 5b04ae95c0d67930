"""The push-source contract (:class:`pdm.sources.base.PushSource`) that the service's inputs
rely on, for both inputs: the TCP stream input (:class:`~pdm.sources.tcp.TcpInput`, over a
real socket) and the MQTT input (:class:`~pdm.sources.mqtt.MqttInput`, through a real
mosquitto). A chunk reaches ``on_chunk`` with the id it names; one that ``on_chunk`` refuses
is counted in ``refused()``; event kinds name the input; ``stop`` keeps its deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from pdm.sources.base import Chunk, PushSource
from pdm.sources.codec import FrameRefused, encode_frame
from pdm.sources.mqtt import MqttInput
from pdm.sources.tcp import TcpInput

FS = 1000.0
CHANNELS = ("x_g", "y_g")


class Sink:
    """on_chunk / on_event for a source: takes chunks of ``good`` ids, refuses the rest."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, Chunk]] = []
        self.events: list[str] = []
        self.cond = threading.Condition()

    def on_chunk(self, sensor: str, chunk: Chunk) -> None:
        if sensor != "good":
            raise FrameRefused(f"{sensor}: not watched", "unknown_sensor")
        with self.cond:
            self.chunks.append((sensor, chunk))
            self.cond.notify_all()

    def on_event(self, kind: str, detail: str) -> None:
        with self.cond:
            self.events.append(kind)
            self.cond.notify_all()

    def wait(self, what: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(what, 10.0), (self.events, len(self.chunks))


def _frame(sensor: str) -> bytes:
    data = np.arange(64, dtype=np.float64).reshape(32, 2)
    return encode_frame(sensor, data, fs=FS, t0_ns=time.time_ns(), channels=CHANNELS)


def _tcp(sink: Sink) -> tuple[PushSource, Callable[[bytes], None]]:
    src = TcpInput("127.0.0.1", 0)
    src.start(sink.on_chunk, sink.on_event)

    def send(frame: bytes) -> None:  # a connection per frame: a refusal resets it
        with socket.create_connection(("127.0.0.1", src.server.port if src.server else 0)) as s:
            s.sendall(frame)
            s.settimeout(5.0)
            try:
                s.recv(1)  # until the receiver closes it
            except (ConnectionResetError, TimeoutError):
                pass

    return src, send


def _mqtt(sink: Sink, broker: Any) -> tuple[PushSource, Callable[[bytes], None]]:
    from test_mqtt import Publisher

    src = MqttInput(f"{broker.url}/pdm/+/samples")
    src.start(sink.on_chunk, sink.on_event)
    sink.wait(lambda: "mqtt_connected" in sink.events)
    pub = Publisher(broker.port)

    def send(frame: bytes) -> None:
        pub.publish("pdm/x/samples", frame)

    return src, send


@pytest.fixture(params=["tcp", pytest.param("mqtt", marks=pytest.mark.mqtt)])
def source(request: pytest.FixtureRequest) -> Iterator[tuple[PushSource, Any, Sink]]:
    sink = Sink()
    if request.param == "tcp":
        src, send = _tcp(sink)
    else:
        src, send = _mqtt(sink, request.getfixturevalue("mosquitto"))
    try:
        yield src, send, sink
    finally:
        src.stop(time.monotonic() + 5.0)


def test_a_push_source_hands_on_counts_refusals_and_stops_by_its_deadline(
    source: tuple[PushSource, Callable[[bytes], None], Sink],
) -> None:
    src, send, sink = source
    assert src.name in ("tcp", "mqtt") and str(src.address)
    assert src.refused() == {} or not any(src.refused().values())
    send(_frame("good"))
    sink.wait(lambda: len(sink.chunks) == 1)
    sensor, chunk = sink.chunks[0]
    assert sensor == "good" and chunk.channels == CHANNELS and chunk.fs == FS
    send(_frame("stranger"))
    prefix = "stream_" if src.name == "tcp" else "mqtt_"
    # The refusal is counted, then its event handed on (from the input's own thread): wait
    # for both.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (
        sum(src.refused().values()) < 1 or f"{prefix}rejected" not in sink.events
    ):
        time.sleep(0.02)
    assert sum(src.refused().values()) == 1, src.refused()
    assert sink.events and all(k.startswith(prefix) for k in sink.events), sink.events
    assert f"{prefix}rejected" in sink.events
    t0 = time.monotonic()
    src.stop(t0 + 2.0)
    src.stop(t0 + 2.0)  # idempotent
    assert time.monotonic() - t0 < 2.5
    assert len(sink.chunks) == 1
