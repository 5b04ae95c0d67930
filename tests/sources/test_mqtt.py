"""The MQTT input (MqttSource, decode_payload, parse_mqtt_url) and ``pdm-edge send --to mqtt://``.

The broker tests run a real mosquitto on a free 127.0.0.1 port, configured in ``tmp_path``
and stopped by its process handle; they skip, naming scripts/setup-test-servers.sh, when
mosquitto is not installed. Publishers are plain paho-mqtt clients (QoS 1, waiting for the
PUBACK), so the source under test is the only pdm code on the receiving side. A test that
leaves a thread behind fails.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from servers import SETUP_SCRIPT, _die_with_parent, free_ports

from pdm.errors import ConfigError, InputError
from pdm.sources.base import Chunk
from pdm.sources.codec import FrameDecoder, encode_frame
from pdm.sources.csv import CsvRecording
from pdm.sources.mqtt import (
    MAX_JSON_BYTES,
    MAX_PAYLOAD_BYTES,
    MqttSource,
    decode_payload,
    default_client_id,
    parse_mqtt_url,
)
from pdm.tools.send import send_main

T0_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
WAIT_S = 10.0  # generous: only ever waited for a condition, never slept


def find_mosquitto() -> str | None:
    """The broker binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


# --------------------------------------------------------------------------------------------
# A real broker, and helpers
# --------------------------------------------------------------------------------------------


class Broker:
    """mosquitto on 127.0.0.1:``port``, its config, log and (optional) database in ``data_dir``.

    ``stop()`` sends SIGTERM (mosquitto then writes its database when ``persistence``) and
    waits; ``start()`` again keeps the port, the configuration and the data.
    """

    def __init__(
        self, binary: str, data_dir: Path, *, persistence: bool = False, extra: str = ""
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.extra = extra
        self.conf = data_dir / "mosquitto.conf"
        self.log = data_dir / "mosquitto.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def pick_port(self) -> int:
        """Choose the port (first start, or to know it before starting)."""
        if not self.port:
            (self.port,) = free_ports(1)
            self.conf.write_text(
                f"listener {self.port} 127.0.0.1\n"
                f"{self.extra or 'allow_anonymous true'}\n"
                f"persistence {'true' if self.persistence else 'false'}\n"
                f"persistence_location {self.data_dir}/\n"
                f"log_dest file {self.log}\n"
                "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                "connection_messages true\n"
                # As root mosquitto would switch to the `mosquitto` user, who cannot write here.
                f"user {getpass.getuser()}\n"
            )
        return self.port

    def start(self) -> Broker:
        self.pick_port()
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise RuntimeError(f"mosquitto exited with status {code}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto not listening:\n{self.log_tail()}") from None
                time.sleep(0.01)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def mosquitto_binary() -> str:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip(f"mosquitto (MQTT broker) not installed; install it with {SETUP_SCRIPT}")
    return binary


@pytest.fixture
def broker(mosquitto_binary: str, tmp_path: Path) -> Iterator[Broker]:
    """A fresh mosquitto without persistence, running."""
    b = Broker(mosquitto_binary, tmp_path / "mosquitto")
    try:
        yield b.start()
    finally:
        b.stop()


@pytest.fixture
def persistent_broker(mosquitto_binary: str, tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto that saves sessions and queued messages across its restarts; not started."""
    b = Broker(mosquitto_binary, tmp_path / "mosquitto", persistence=True)
    try:
        yield b
    finally:
        b.stop()


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

    def wait(self, predicate: Callable[[Collector], bool], timeout: float = WAIT_S) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self), timeout), (
                f"timed out; events {self.events}, {len(self.chunks)} chunks"
            )

    def kinds(self) -> list[str]:
        with self.cond:
            return [k for k, _ in self.events]

    def count(self, kind: str) -> int:
        return self.kinds().count(kind)


@pytest.fixture
def col() -> Collector:
    return Collector()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread behind (paho's network thread, a sender)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


@pytest.fixture(autouse=True)
def no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own PDM_MQTT_PASSWORD must not leak into these tests."""
    monkeypatch.delenv("PDM_MQTT_PASSWORD", raising=False)
    monkeypatch.delenv("PDM_MQTT_PASSWORD_FILE", raising=False)


def start_source(
    broker: Broker, col: Collector, topic: str = "pdm/+/samples", **kw: Any
) -> MqttSource:
    """A started source, once subscribed (``mqtt_connected`` comes with the SUBACK)."""
    src = MqttSource(f"{broker.url}/{topic}", on_chunk=col.on_chunk, on_event=col.on_event, **kw)
    src.start()
    col.wait(lambda c: "mqtt_connected" in c.kinds())
    return src


def _chain(callback: Any, then: Callable[[], object]) -> Any:
    """``callback`` followed by ``then()``: to observe one of paho's callbacks in a test."""

    def both(*args: Any) -> None:
        callback(*args)
        then()

    return both


class Publisher:
    """A plain paho client that publishes with QoS 1 and waits for each PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"no PUBACK for a message to {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame(i: int = 0, sensor: str = "pump-01", n: int = 8, fs: float = 3200.0) -> bytes:
    """Frame number ``i`` of a stream: consecutive in time, values that say which frame."""
    data = np.arange(n * 2, dtype=np.float64).reshape(n, 2) + 1000.0 * i
    t0 = T0_NS + round(i * n * 1e9 / fs)
    return encode_frame(sensor, data, fs=fs, t0_ns=t0, channels=("x_g", "y_g"), dtype="float64")


def frame_index(chunk: Chunk) -> int:
    return int(chunk.data[0, 0] // 1000)


def good_json(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "sensor": "pump-01",
        "fs": 3200.0,
        "t0": T0_NS,
        "channels": ["x_g", "y_g"],
        "samples": [[0.5, -1.0], [0.25, 2.0], [0.125, 4.0]],
    }
    obj.update(changes)
    return obj


# --------------------------------------------------------------------------------------------
# URLs (no broker)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "topic", "user", "tls", "protocol"),
    [
        (
            "mqtt://127.0.0.1:1883/pdm/+/samples",
            "127.0.0.1",
            1883,
            "pdm/+/samples",
            None,
            False,
            "5",
        ),
        ("mqtt://broker/pdm/#", "broker", 1883, "pdm/#", None, False, "5"),
        ("mqtts://edge@broker.plant/a/b", "broker.plant", 8883, "a/b", "edge", True, "5"),
        ("MQTTS://broker:9999/#", "broker", 9999, "#", None, True, "5"),
        ("mqtt://[::1]:1884/x", "::1", 1884, "x", None, False, "5"),
        ("mqtt://[::1]/x", "::1", 1883, "x", None, False, "5"),
        ("mqtt://ed%40ge@h/t?protocol=3.1.1", "h", 1883, "t", "ed@ge", False, "3.1.1"),
        ("mqtt://h/+/+/s?protocol=5", "h", 1883, "+/+/s", None, False, "5"),
    ],
)
def test_parse_mqtt_url(
    url: str, host: str, port: int, topic: str, user: str | None, tls: bool, protocol: str
) -> None:
    u = parse_mqtt_url(url)
    assert (u.host, u.port, u.topic, u.username, u.tls, u.protocol) == (
        host,
        port,
        topic,
        user,
        tls,
        protocol,
    )
    assert parse_mqtt_url(str(u)) == u  # str() gives a URL that reads back the same


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("127.0.0.1:1883/pdm", "expected mqtt://"),
        ("http://h/t", "expected mqtt://"),
        ("mqtt://h", "no topic"),
        ("mqtt://h/", "no topic"),
        ("mqtt:///t", "no host"),
        ("mqtt://h:0/t", "port '0'"),
        ("mqtt://h:99999/t", "port '99999'"),
        ("mqtt://h:abc/t", "port 'abc'"),
        ("mqtt://h:/t", "port ''"),
        ("mqtt://[::1/t", "IPv6"),
        ("mqtt://@h/t", "empty user name"),
        ("mqtt://h/pdm/#/x", "'#' must be a whole level"),
        ("mqtt://h/pdm/a#", "'#' must be a whole level"),
        ("mqtt://h/pdm/a+/x", "'+' must be a whole level"),
        ("mqtt://h/a\nb", "control character"),
        ("mqtt://h/t?qos=1", "unknown option"),
        ("mqtt://h/t?protocol=3", "expected 5 (the default) or 3.1.1"),
    ],
)
def test_a_bad_url_is_a_one_line_config_error_naming_it(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mqtt_url(url)
    msg = str(info.value)
    assert "\n" not in msg and words in msg, msg
    assert msg.startswith("MQTT URL '"), msg


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://edge:s3cret@broker/t",
        "mqtts://edge:s3cret@broker:8883/pdm/#",
        "mqtt://u:s3/cret@h/t",
        "mqtt://h/t?password=s3cret",  # red team: the unknown option was echoed, value and all
        "mqtt://h/t?protocol=5&pass=s3cret",
    ],
)
def test_a_password_in_the_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        MqttSource(url, on_chunk=lambda s, c: None)
    msg = str(info.value)
    assert "s3cret" not in msg and "cret" not in msg.split("***")[-1], msg
    assert "***" in msg and "\n" not in msg
    if "@" in url and "/cret" not in url:  # '/' in the password: the URL is malformed anyway
        assert "PDM_MQTT_PASSWORD" in msg and "PDM_MQTT_PASSWORD_FILE" in msg, msg


def test_a_publish_topic_has_no_wildcards() -> None:
    with pytest.raises(ConfigError, match="wildcards"):
        parse_mqtt_url("mqtt://h/pdm/+/samples", wildcards=False, what="--to")


def test_password_comes_from_the_environment_and_needs_a_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PDM_MQTT_PASSWORD", "s3cret")
    with pytest.raises(ConfigError, match="names no user") as info:
        MqttSource("mqtt://broker/t", on_chunk=lambda s, c: None)
    assert "s3cret" not in str(info.value)
    src = MqttSource("mqtt://edge@broker/pdm/#", on_chunk=lambda s, c: None)
    assert "s3cret" not in repr(src) and "edge@broker:1883/pdm/#" in repr(src)
    assert src._client._password == b"s3cret" and src._client._username == b"edge"

    path = tmp_path / "pw"
    path.write_text("from-file\n")
    monkeypatch.setenv("PDM_MQTT_PASSWORD_FILE", str(path))
    with pytest.raises(ConfigError, match="not both"):
        MqttSource("mqtt://edge@broker/t", on_chunk=lambda s, c: None)
    monkeypatch.delenv("PDM_MQTT_PASSWORD")
    src = MqttSource("mqtt://edge@broker/t", on_chunk=lambda s, c: None)
    assert src._client._password == b"from-file"


def test_default_client_id_is_fixed_short_and_differs_by_topic() -> None:
    a = default_client_id(parse_mqtt_url("mqtt://h/pdm/+/samples"))
    assert a == default_client_id(parse_mqtt_url("mqtt://other:1/pdm/+/samples"))
    assert a != default_client_id(parse_mqtt_url("mqtt://h/pdm/#"))
    assert len(a) <= 23 and a.replace("-", "").isalnum() and a.startswith("pdm-")


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="qos"):
        MqttSource("mqtt://h/t", on_chunk=lambda s, c: None, qos=3)
    with pytest.raises(ValueError, match="client_id"):
        MqttSource("mqtt://h/t", on_chunk=lambda s, c: None, client_id="a\nb")


# --------------------------------------------------------------------------------------------
# Payloads (no broker)
# --------------------------------------------------------------------------------------------


def test_a_frame_decodes_to_what_frame_to_chunk_gives() -> None:
    raw = frame(3)
    sensor, chunk = decode_payload(raw)
    (expected,) = FrameDecoder().feed(raw)
    want = expected.to_chunk()
    assert sensor == "pump-01"
    assert (chunk.fs, chunk.t0, chunk.channels, chunk.bad_samples) == (
        want.fs,
        want.t0,
        want.channels,
        0,
    )
    np.testing.assert_array_equal(chunk.data, want.data)


def test_json_decodes_to_the_same_chunk_shape_as_a_frame() -> None:
    rows = [[0.5, -1.0], [0.25, 2.0], [0.125, 4.0]]
    sensor, chunk = decode_payload(json.dumps(good_json(samples=rows)).encode())
    raw = encode_frame(
        "pump-01", rows, fs=3200.0, t0_ns=T0_NS, channels=("x_g", "y_g"), dtype="float64"
    )
    (f,) = FrameDecoder().feed(raw)
    want = f.to_chunk()
    assert sensor == "pump-01"
    assert chunk.data.dtype == np.float64 and chunk.data.shape == (3, 2)
    np.testing.assert_array_equal(chunk.data, want.data)
    assert (
        chunk.fs,
        chunk.t0,
        chunk.channels,
        chunk.bad_samples,
        chunk.first_line,
        chunk.notes,
    ) == (
        want.fs,
        want.t0,
        want.channels,
        want.bad_samples,
        want.first_line,
        want.notes,
    )


@pytest.mark.parametrize(
    ("t0", "ns"),
    [
        ("2023-11-14T22:13:20.123456789Z", T0_NS),
        ("2023-11-14T23:13:20.123456789+01:00", T0_NS),
        ("2023-11-14T22:13:20,5Z", 1_700_000_000_500_000_000),
        ("2023-11-14 22:13:20Z", 1_700_000_000_000_000_000),
        ("1969-12-31T23:59:59.25Z", -750_000_000),
    ],
)
def test_json_t0_iso_8601_is_read_to_the_nanosecond(t0: str, ns: int) -> None:
    _, chunk = decode_payload(json.dumps(good_json(t0=t0)).encode())
    assert chunk.t0 == ns / 10**9


def test_json_null_and_nan_samples_are_bad_samples() -> None:
    payload = b'{"sensor":"s","fs":10,"t0":1700000000000000000,"channels":["a","b"],' + (
        b'"samples":[[1,null],[NaN,2.5],[Infinity,3]]}'
    )
    _, chunk = decode_payload(payload)
    assert chunk.bad_samples == 3 and chunk.fs == 10.0
    assert np.isnan(chunk.data).sum() == 3 and chunk.data[1, 1] == 2.5


BIG = 300_000  # rows of 8 zeros: a JSON payload over 16 MiB


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"", "empty message"),
        (b"hello", "neither a PDMS frame"),
        (b"[1, 2]", "neither a PDMS frame"),
        (b"{not json", "malformed JSON: Expecting property name"),
        (b'{"sensor": "a", "sensor": "b"}', "key 'sensor' appears twice"),
        (b"{" * 100_000, "malformed JSON"),
        (json.dumps(good_json(extra=1)).encode(), "unknown key 'extra'"),
        (b'{"sensor": "pump-01", "fs": 3200}', "missing t0, channels, samples"),
        (json.dumps(good_json(sensor="")).encode(), "sensor id is 0 bytes"),
        (json.dumps(good_json(sensor="a\nb")).encode(), "control character"),
        (json.dumps(good_json(sensor="pump\u202e7")).encode(), "invisible formatting character"),
        (json.dumps(good_json(sensor=5)).encode(), "sensor must be a string"),
        (json.dumps(good_json(fs=math.nan)).encode(), "fs nan is not a finite number of Hz > 0"),
        (json.dumps(good_json(fs=0)).encode(), "fs 0 is not a finite"),
        (json.dumps(good_json(fs="3200")).encode(), "fs a string"),
        (json.dumps(good_json(fs=True)).encode(), "fs a boolean"),
        (json.dumps(good_json(t0=1.7e18)).encode(), "t0 must be an integer"),
        (json.dumps(good_json(t0=1_700_000_000)).encode(), "seconds, milliseconds or microseconds"),
        (json.dumps(good_json(t0=2**63)).encode(), "does not fit in int64"),
        (json.dumps(good_json(t0=10**4000)).encode(), "does not fit in int64"),  # 4000 digits
        (json.dumps(good_json(t0="2023-11-14T22:13:20")).encode(), "has no time zone"),
        (json.dumps(good_json(t0="yesterday")).encode(), "not an ISO 8601 time"),
        (json.dumps(good_json(channels="x_g")).encode(), "channels must be a list of strings"),
        (json.dumps(good_json(channels=[])).encode(), "0 channels"),
        (json.dumps(good_json(channels=["x_g", "x_g"])).encode(), "repeats channel 0"),
        (json.dumps(good_json(channels=["x" * 65, "y"])).encode(), "channel 0 name is 65 bytes"),
        (
            json.dumps(good_json(samples=[[1.0, 2.0], [3.0]])).encode(),
            "samples[1] has 1 values for 2 channels",
        ),
        (json.dumps(good_json(samples=[1.0, 2.0])).encode(), "samples[0] is a number"),
        (json.dumps(good_json(samples=[])).encode(), "0 samples"),
        (json.dumps(good_json(samples=[[1.0, "2"]])).encode(), "samples[0][1] is a string"),
        (json.dumps(good_json(samples=[[1.0, True]])).encode(), "samples[0][1] is a boolean"),
        (json.dumps(good_json(samples=[[1.0, 10**400]])).encode(), "too large for a float64"),
        # an integer past Python's str->int digit limit: a ValueError, logged with its traceback
        (b'{"sensor": "a", "t0": 1' + b"0" * 5000 + b"}", "malformed JSON: Exceeds the limit"),
        (frame(0) + b"x", "1 byte after the 179-byte PDMS frame"),
        (frame(0) + frame(1), "179 bytes after the 179-byte PDMS frame"),
        (frame(0)[:-5], "truncated PDMS frame"),
        (frame(0)[:-1] + b"\x00", "PDMS frame, byte 175: CRC32 mismatch"),
        (b"PDMS\x03" + bytes(40), "PDMS frame, byte 4: unknown protocol version 3"),
        (b"PDMS\x02" + bytes(40), "authenticated frame (version 2), but this receiver has no"),
        (b"{" + b" " * MAX_PAYLOAD_BYTES, f"the limit is {MAX_PAYLOAD_BYTES}"),
    ],
)
def test_every_bad_payload_is_a_one_line_input_error(payload: bytes, words: str) -> None:
    with pytest.raises(InputError) as info:
        decode_payload(payload)
    msg = str(info.value)
    assert "\n" not in msg and words in msg, msg
    assert len(msg) < 400, msg


def test_a_json_message_over_a_mebibyte_is_refused_before_it_is_parsed() -> None:
    """Red team: parsing holds the interpreter lock throughout (16 MiB of rows: 1.3 s), and
    such messages back to back starved the service's processing thread until healthy
    machines' relays dropped. JSON is for low-rate sensors: 1 MiB at most, refused unread
    (the 1 048 576 rows a frame may carry are out of JSON's reach now)."""
    head = b'{"sensor":"s","fs":10,"t0":1700000000000000000,"channels":["a"],"samples":['
    rows = (MAX_JSON_BYTES - len(head)) // 4
    payload = head + b",".join([b"[0]"] * rows) + b"]}"
    assert len(payload) <= MAX_JSON_BYTES
    assert decode_payload(payload)[1].n_samples == rows
    payload = head + b",".join([b"[0]"] * (1_048_576 + 1)) + b"]}"
    with pytest.raises(InputError, match=f"JSON message is {len(payload)} bytes; the limit is"):
        decode_payload(payload)


# --------------------------------------------------------------------------------------------
# MqttSource against a real broker
# --------------------------------------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_published_frame_arrives_as_exactly_its_chunk(
    broker: Broker, col: Collector, protocol: str
) -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(0.0, 1.0, (500, 3))
    data[7, 1] = np.nan
    raw = encode_frame(
        "pump-01/de", data, fs=25600.0, t0_ns=T0_NS, channels=("x_g", "y_g", "z_g"), dtype="float64"
    )
    query = "?protocol=3.1.1" if protocol == "3.1.1" else ""
    with start_source(broker, col, topic=f"pdm/+/samples{query}") as src:
        assert src.connected and src.url.protocol == protocol
        with Publisher(broker.port) as pub:
            pub.publish("pdm/pump-01/samples", raw)
            col.wait(lambda c: len(c.chunks) == 1)
    ((sensor, chunk),) = col.chunks
    assert sensor == "pump-01/de"
    assert chunk.fs == 25600.0 and chunk.t0 == T0_NS / 10**9
    assert chunk.channels == ("x_g", "y_g", "z_g") and chunk.bad_samples == 1
    np.testing.assert_array_equal(chunk.data, data)  # NaN where NaN, every bit elsewhere
    assert (src.messages, src.rejected, src.duplicates) == (1, 0, 0)
    assert chunk.received is not None and chunk.received <= time.monotonic()  # latency start
    assert col.kinds() == ["mqtt_connected", "mqtt_disconnected"]  # the second: stop()
    assert "subscribed to 'pdm/+/samples' with QoS 1" in col.events[0][1]
    assert col.events[1][1].endswith("disconnected (stopped)")
    assert not src.connected


@pytest.mark.mqtt
def test_a_json_message_arrives_as_its_chunk(broker: Broker, col: Collector) -> None:
    obj = good_json(t0="2023-11-14T22:13:20.123456789Z", fs=3200)
    with start_source(broker, col), Publisher(broker.port) as pub:
        pub.publish("pdm/pump-01/samples", b"  \n" + json.dumps(obj).encode())
        col.wait(lambda c: len(c.chunks) == 1)
    ((sensor, chunk),) = col.chunks
    assert sensor == "pump-01" and chunk.fs == 3200.0 and chunk.t0 == T0_NS / 10**9
    assert chunk.channels == ("x_g", "y_g") and chunk.bad_samples == 0
    np.testing.assert_array_equal(chunk.data, np.array(obj["samples"]))


@pytest.mark.mqtt
def test_a_bad_message_is_rejected_in_one_line_and_the_source_carries_on(
    broker: Broker, col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    bad = [
        (b'{"sensor": "pump-01", "fs": ', "malformed JSON"),
        (json.dumps(good_json(samples=[[1.0, 2.0], [3.0]])).encode(), "samples[1] has 1 values"),
        (
            b'{"sensor":"p","fs":NaN,"t0":1700000000000000000,"channels":["a"],"samples":[[1]]}',
            "fs nan",
        ),
        (json.dumps(good_json(colour="red")).encode(), "unknown key 'colour'"),
        (b"PDMS" + bytes(MAX_PAYLOAD_BYTES), f"message is {MAX_PAYLOAD_BYTES + 4} bytes"),
        (frame(0) + b"\x00", "1 byte after the 179-byte PDMS frame"),
    ]
    caplog.set_level(logging.WARNING, logger="pdm.sources.mqtt")
    with start_source(broker, col) as src, Publisher(broker.port) as pub:
        for i, (payload, words) in enumerate(bad):
            pub.publish(f"pdm/s{i}/samples", payload)
            col.wait(lambda c, i=i: c.count("mqtt_rejected") == i + 1)
            _, detail = col.events[-1]
            assert detail.startswith(f"mqtt pdm/s{i}/samples: ") and words in detail, detail
            assert "\n" not in detail and "Traceback" not in detail
            assert src.rejected == i + 1
            pub.publish(f"pdm/s{i}/samples", frame(i))  # the next good one still arrives
            col.wait(lambda c, i=i: len(c.chunks) == i + 1)
            assert frame_index(col.chunks[-1][1]) == i
        assert src.messages == 2 * len(bad) and src.connected
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "mqtt pdm/" in r.message
    ]
    assert len(warnings) == len(bad)  # one per topic
    assert not any(r.exc_info for r in warnings)


@pytest.mark.mqtt
def test_rejections_from_one_topic_are_logged_once_a_minute_not_per_message(
    broker: Broker, col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pdm.sources.mqtt")
    with start_source(broker, col) as src, Publisher(broker.port) as pub:
        for _ in range(20):
            pub.publish("pdm/noisy/samples", b"{oops")
        col.wait(lambda c: c.count("mqtt_rejected") == 20)
        assert src.rejected == 20
    logged = [r for r in caplog.records if "pdm/noisy/samples" in r.getMessage()]
    assert len(logged) == 1 and "at most once a minute" in logged[0].getMessage()


@pytest.mark.mqtt
def test_rejections_over_many_topics_are_not_a_line_each(
    broker: Broker, col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """Red team: the topic is the publisher's to choose; garbage to 3000 topics under the
    filter (pdm/x0/samples, pdm/x1/samples, ...) logged ~2500 lines in seconds. The log now
    has at most ten such lines a minute in all, the rest counted (and said in the next line);
    every message is still rejected and counted, and a good one still arrives."""
    caplog.set_level(logging.INFO, logger="pdm.sources.mqtt")
    with start_source(broker, col) as src, Publisher(broker.port) as pub:
        for i in range(40):
            pub.publish(f"pdm/x{i}/samples", b"garbage")
        pub.publish("pdm/pump-01/samples", frame(0))
        col.wait(lambda c: c.count("mqtt_rejected") == 40 and len(c.chunks) == 1)
        assert src.rejected == 40
    logged = [r for r in caplog.records if "MQTT input: mqtt pdm/x" in r.getMessage()]
    assert len(logged) == 10


@pytest.mark.mqtt
def test_a_topic_is_shown_without_its_invisible_characters(broker: Broker, col: Collector) -> None:
    """Red team: a text-direction override in the topic reached the one-line log as it came,
    where it reverses the rest of the line."""
    with start_source(broker, col), Publisher(broker.port) as pub:
        pub.publish("pdm/\u202eevil\u200b/samples", b"garbage")
        col.wait(lambda c: c.count("mqtt_rejected") == 1)
    (detail,) = [d for k, d in col.events if k == "mqtt_rejected"]
    assert detail.startswith("mqtt pdm/?evil?/samples: neither a PDMS frame"), detail


@pytest.mark.mqtt
def test_a_flood_of_heavy_messages_is_paced_not_taken_at_any_cost(
    broker: Broker, col: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Red team: JSON messages back to back (16 MiB each, to a sensor nobody watches) held the
    interpreter lock in the subscriber's thread until the service's processing thread fell
    10 s behind and healthy machines' relays dropped. Besides the 1 MiB JSON limit, the
    subscriber now spends at most a quarter of a core on messages over time: past a short
    burst it waits, and the broker holds the rest. Every message is still handled."""
    head = b'{"sensor":"s","fs":10,"t0":17000000000000000%02d,"channels":["a","b"],"samples":['
    rows = (MAX_JSON_BYTES - len(head)) // 10
    body = b",".join([b"[0.5,0.5]"] * rows) + b"]}"
    n = 12
    # The burst made small: on a machine busy with other work the thread may get little more
    # than its quarter of a core, and 12 messages would then never exceed a 0.25 s burst.
    monkeypatch.setattr("pdm.sources.mqtt._WORK_BURST_S", 0.02)
    with start_source(broker, col) as src, Publisher(broker.port) as pub:
        for k in range(n):
            pub.publish("pdm/s/samples", head % k + body)
        col.wait(lambda c: len(c.chunks) == n, timeout=60)
        assert src.messages == n and src.rejected == 0
        assert src.paced_s > 0  # the burst was spent, and the thread waited


@pytest.mark.mqtt
def test_on_chunk_raising_rejects_that_message(
    broker: Broker, col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    def picky(sensor_id: str, chunk: Chunk) -> None:
        if sensor_id != "pump-01":
            raise InputError(f"no pipeline watches {sensor_id!r} (a machine id or sensor id)")
        if chunk.n_samples == 1:
            raise KeyError("a bug in the service")
        col.on_chunk(sensor_id, chunk)

    with MqttSource(f"{broker.url}/pdm/#", on_chunk=picky, on_event=col.on_event) as src:
        col.wait(lambda c: "mqtt_connected" in c.kinds())
        with Publisher(broker.port) as pub:
            pub.publish("pdm/typo/samples", frame(0, sensor="pmup-01"))
            col.wait(lambda c: c.count("mqtt_rejected") == 1)
            assert col.events[-1][1] == (
                "mqtt pdm/typo/samples: sensor 'pmup-01': no pipeline watches 'pmup-01' "
                "(a machine id or sensor id)"
            )
            pub.publish("pdm/bug/samples", frame(0, n=1))
            col.wait(lambda c: c.count("mqtt_rejected") == 2)
            assert col.events[-1][1] == (
                "mqtt pdm/bug/samples: on_chunk failed: KeyError: 'a bug in the service'"
            )
            pub.publish("pdm/p/samples", frame(1))
            col.wait(lambda c: len(c.chunks) == 1)
        assert src.rejected == 2
    # A bug (not a PdmError) is logged with its traceback, once; bad input never is.
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "pdm/bug/samples" in tracebacks[0].getMessage()


@pytest.mark.mqtt
@pytest.mark.slow
def test_a_broker_down_at_start_is_not_fatal(
    mosquitto_binary: str, tmp_path: Path, col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pdm.sources.mqtt")
    b = Broker(mosquitto_binary, tmp_path / "late")
    port = b.pick_port()
    src = MqttSource(
        f"mqtt://127.0.0.1:{port}/pdm/+/samples", on_chunk=col.on_chunk, on_event=col.on_event
    )
    failures = threading.Semaphore(0)
    src._client.on_connect_fail = _chain(src._client.on_connect_fail, failures.release)
    try:
        assert src.start() is src and not src.connected
        col.wait(lambda c: c.kinds() == ["mqtt_disconnected"])
        assert "cannot connect" in col.events[0][1] and f"127.0.0.1:{port}" in col.events[0][1]
        assert failures.acquire(timeout=WAIT_S) and failures.acquire(timeout=WAIT_S)  # 2 tries
        b.start()
        col.wait(lambda c: "mqtt_connected" in c.kinds())
        assert col.kinds() == ["mqtt_disconnected", "mqtt_connected"]  # once per outage
        assert " after " in col.events[1][1]
        assert "subscribed to 'pdm/+/samples' with QoS 1" in col.events[1][1]
        with Publisher(port) as pub:
            pub.publish("pdm/pump-01/samples", frame(0))
            col.wait(lambda c: len(c.chunks) == 1)
    finally:
        src.stop()
        b.stop()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("cannot connect" in r.getMessage() for r in warnings) == 1  # not one per retry


def test_stop_while_the_broker_is_down_returns_promptly(col: Collector) -> None:
    (port,) = free_ports(1)
    src = MqttSource(f"mqtt://127.0.0.1:{port}/t", on_chunk=col.on_chunk, on_event=col.on_event)
    src.start()
    col.wait(lambda c: "mqtt_disconnected" in c.kinds())
    started = time.monotonic()
    src.stop()
    src.stop()  # idempotent
    assert time.monotonic() - started < WAIT_S
    assert col.kinds() == ["mqtt_disconnected"]
    with pytest.raises(RuntimeError, match="twice"):
        src.start()


@pytest.mark.mqtt
def test_a_duplicate_is_dropped_and_counted(broker: Broker, col: Collector) -> None:
    with start_source(broker, col) as src, Publisher(broker.port) as pub:
        pub.publish("pdm/p/samples", frame(0))
        pub.publish("pdm/p/samples", frame(0))  # what a QoS 1 redelivery looks like
        raw = encode_frame(
            "pump-01", np.ones((8, 2)), fs=3200.0, t0_ns=T0_NS, channels=("x_g", "y_g")
        )
        pub.publish("pdm/p/samples", raw)  # same start, other samples: not a copy
        pub.publish("pdm/p/samples", frame(1))
        col.wait(lambda c: len(c.chunks) == 3)
        assert src.duplicates == 1 and src.messages == 4 and src.rejected == 0
    assert [frame_index(c) for _, c in col.chunks] == [0, 0, 1]
    np.testing.assert_array_equal(col.chunks[1][1].data, np.ones((8, 2)))


@pytest.mark.mqtt
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_stale_retained_message_is_not_taken_for_data(
    broker: Broker, col: Collector, protocol: str
) -> None:
    query = "?protocol=3.1.1" if protocol == "3.1.1" else ""
    with Publisher(broker.port) as pub:
        pub.publish("pdm/p/samples", frame(0), retain=True)  # from long ago
        with start_source(broker, col, topic=f"pdm/+/samples{query}") as src:
            pub.publish("pdm/p/samples", frame(1), retain=True)  # live: delivered
            col.wait(lambda c: len(c.chunks) == 1)
            # MQTT 5: the broker is asked not to send it; 3.1.1: it comes flagged, and is dropped.
            assert src.retained == (1 if protocol == "3.1.1" else 0)
        pub.publish("pdm/p/samples", b"", retain=True)  # clear it
    assert [frame_index(c) for _, c in col.chunks] == [1]


@pytest.mark.mqtt
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_messages_published_while_the_appliance_is_stopped_are_delivered_on_start(
    broker: Broker, col: Collector, protocol: str
) -> None:
    topic = "pdm/+/samples" + ("?protocol=3.1.1" if protocol == "3.1.1" else "")
    first = start_source(broker, col, topic=topic)
    first.stop()
    with Publisher(broker.port) as pub:
        for i in range(10):
            pub.publish("pdm/p/samples", frame(i))
    col.events.clear()
    # A new source (a restarted appliance) with the same client id resumes the session.
    with start_source(broker, col, topic=topic, client_id=first.client_id) as second:
        col.wait(lambda c: len(c.chunks) == 10)
        assert "(session resumed)" in next(d for k, d in col.events if k == "mqtt_connected")
        assert second.duplicates == 0
    assert [frame_index(c) for _, c in col.chunks] == list(range(10))


@pytest.mark.mqtt
@pytest.mark.slow
def test_nothing_is_lost_when_the_broker_restarts_mid_stream(
    persistent_broker: Broker, col: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pdm.sources.mqtt")
    b = persistent_broker.start()
    with start_source(b, col) as src:
        with Publisher(b.port) as pub:
            for i in range(10):
                pub.publish("pdm/p/samples", frame(i))
            col.wait(lambda c: len(c.chunks) == 10)
        b.stop()  # mosquitto saves the session (subscription, QoS 1 state) to its database
        col.wait(lambda c: "mqtt_disconnected" in c.kinds())
        assert not src.connected
        b.start()
        # Published while the appliance is still disconnected: it retries 1 s (or more) after
        # the outage began, this takes milliseconds. The broker queues them for its session.
        published_while_away = False
        with Publisher(b.port) as pub:
            for i in range(10, 30):
                pub.publish("pdm/p/samples", frame(i))
                published_while_away |= not src.connected
        col.wait(lambda c: len(c.chunks) == 30)
        assert published_while_away  # otherwise this test proved less than it says
        assert src.rejected == 0
    assert [frame_index(c) for _, c in col.chunks] == list(range(30))  # all, once, in order
    assert col.kinds() == [
        "mqtt_connected",
        "mqtt_disconnected",
        "mqtt_connected",
        "mqtt_disconnected",
    ]
    assert "(session resumed) after" in col.events[2][1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # the outage once, and its end


@pytest.mark.mqtt
def test_credentials_come_from_the_environment(
    mosquitto_binary: str, tmp_path: Path, col: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip(f"mosquitto_passwd not installed; install mosquitto with {SETUP_SCRIPT}")
    users = tmp_path / "users"
    subprocess.run([passwd, "-c", "-b", str(users), "edge", "right horse"], check=True)
    users.chmod(0o600)
    b = Broker(
        mosquitto_binary,
        tmp_path / "auth",
        extra=f"allow_anonymous false\npassword_file {users}",
    ).start()
    try:
        secret = tmp_path / "pw"
        secret.write_text("right horse\n")
        monkeypatch.setenv("PDM_MQTT_PASSWORD_FILE", str(secret))
        with MqttSource(
            f"mqtt://edge@127.0.0.1:{b.port}/pdm/#", on_chunk=col.on_chunk, on_event=col.on_event
        ) as src:
            col.wait(lambda c: "mqtt_connected" in c.kinds())
            assert "right horse" not in repr(src)
        monkeypatch.delenv("PDM_MQTT_PASSWORD_FILE")
        monkeypatch.setenv("PDM_MQTT_PASSWORD", "wrong")
        col.events.clear()
        with MqttSource(
            f"mqtt://edge@127.0.0.1:{b.port}/pdm/#", on_chunk=col.on_chunk, on_event=col.on_event
        ) as src:
            col.wait(lambda c: "mqtt_disconnected" in c.kinds())
            assert "refused the connection" in col.events[0][1]
            assert not src.connected
        assert col.kinds() == ["mqtt_disconnected"]
    finally:
        b.stop()


# --------------------------------------------------------------------------------------------
# pdm-edge send --to mqtt://
# --------------------------------------------------------------------------------------------

RECORDING = FIXTURES / "timed_iso8601.csv"  # 25600 samples x 2 channels, ISO 8601 time column


@pytest.mark.mqtt
@pytest.mark.parametrize("dtype", ["float64", "int16"])
def test_send_publishes_the_recording_in_order(
    broker: Broker, col: Collector, capsys: pytest.CaptureFixture[str], dtype: str
) -> None:
    argv = [str(RECORDING), "--to", f"{broker.url}/pdm/pump-01/samples", "--sensor", "pump-01"]
    argv += ["--chunk-samples", "2048", "--dtype", dtype]
    with start_source(broker, col) as src:
        assert send_main(argv) == 0  # every frame acknowledged by the broker ...
        expected = list(CsvRecording(RECORDING, chunk_rows=2048).chunks())
        col.wait(lambda c: len(c.chunks) == len(expected))  # ... and on its way to us
        assert src.rejected == 0 and src.duplicates == 0
    assert len(expected) == 13 and {s for s, _ in col.chunks} == {"pump-01"}
    for (_, got), want in zip(col.chunks, expected, strict=True):
        assert got.t0 == want.t0 and got.fs == want.fs == 25600.0
        assert got.channels == want.channels == ("x_g", "y_g")
        if dtype == "float64":
            np.testing.assert_array_equal(got.data, want.data)
        else:
            peak = np.abs(want.data).max()
            np.testing.assert_allclose(got.data, want.data, rtol=0, atol=peak / 32767)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pdm-edge send: 13 frames, 25600 samples x 2 channels")
    assert f"to mqtt://127.0.0.1:{broker.port}/pdm/pump-01/samples in" in err[0]


@pytest.mark.mqtt
@pytest.mark.slow
def test_send_waits_for_a_broker_that_comes_back(
    persistent_broker: Broker, col: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    b = persistent_broker.start()
    argv = [str(RECORDING), "--to", f"{b.url}/pdm/p/samples", "--sensor", "p"]
    argv += ["--chunk-samples", "4096", "--retry-s", "20"]
    result: list[int] = []
    with start_source(b, col):
        b.stop()
        col.wait(lambda c: "mqtt_disconnected" in c.kinds())
        sender = threading.Thread(target=lambda: result.append(send_main(argv)), name="sender")
        sender.start()
        try:
            deadline = time.monotonic() + WAIT_S
            while "retrying for up to 20 s" not in capsys.readouterr().err:
                assert time.monotonic() < deadline, "the sender did not report the outage"
                time.sleep(0.05)
            b.start()
        finally:
            sender.join(60)
        assert result == [0]
        col.wait(lambda c: len(c.chunks) == 7)
    assert [c.n_samples for _, c in col.chunks] == [4096] * 6 + [1024]
    assert all(b.t0 > a.t0 for (_, a), (_, b) in zip(col.chunks, col.chunks[1:], strict=False))


def test_send_to_an_unreachable_broker_gives_up_after_retry_s(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (port,) = free_ports(1)
    url = f"mqtt://127.0.0.1:{port}/pdm/p/samples"
    argv = [str(RECORDING), "--to", url, "--sensor", "p", "--retry-s", "0.5"]
    assert send_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"pdm-edge: error: cannot send to {url}: cannot connect")
    assert err[-1].endswith("(retried for 0.5 s)")


@pytest.mark.parametrize(
    ("to", "words"),
    [
        ("mqtt://127.0.0.1/pdm/+/samples", "wildcards (+, #) are for subscribing"),
        ("mqtt://u:pw@127.0.0.1/t", "does not belong in the URL"),
        ("mqtt://127.0.0.1", "no topic"),
    ],
)
def test_send_mqtt_user_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], to: str, words: str
) -> None:
    assert send_main([str(RECORDING), "--to", to, "--sensor", "p"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pdm-edge: error: --to 'mqtt://"), err
    assert words in err[0] and ":pw@" not in err[0], err


# --------------------------------------------------------------------------------------------
# TLS with the appliance's files: a private CA, a client certificate (issue 16, Build 3)
# --------------------------------------------------------------------------------------------


def _pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate 'pdm-edge', as PEM
    files in ``d`` (made here: no network, no fixed keys in the repository)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(cn: str, key: Any, issuer: x509.Name, signer: Any, ca: bool, san: Any) -> Any:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer, hashes.SHA256())

    out: dict[str, Path] = {}

    def write(stem: str, key: Any, crt: Any) -> None:
        out[f"{stem}.key"] = d / f"{stem}.key"
        out[f"{stem}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out[f"{stem}.key"].chmod(0o600)
        out[f"{stem}.pem"] = d / f"{stem}.pem"
        out[f"{stem}.pem"].write_bytes(crt.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test CA", ca_key, name("test CA"), ca_key, True, None)
    write("ca", ca_key, ca)
    for stem, san in (
        ("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ("client", [x509.DNSName("pdm-edge")]),
    ):
        k = ec.generate_private_key(ec.SECP256R1())
        write(
            stem,
            k,
            cert(stem if stem == "server" else "pdm-edge", k, ca.subject, ca_key, False, san),
        )
    return out


@pytest.mark.mqtt
def test_mqtts_with_a_private_ca_and_a_client_certificate_from_files(
    mosquitto_binary: str, tmp_path: Path, col: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mqtts://`` to a broker that requires a client certificate: the CA to trust and the
    appliance's certificate and key come from files named by the environment; without the
    certificate, or trusting only the system's CAs, the broker is not reached."""
    pki = _pki(tmp_path)
    b = Broker(
        mosquitto_binary,
        tmp_path / "tls",
        extra=(
            f"cafile {pki['ca.pem']}\ncertfile {pki['server.pem']}\nkeyfile {pki['server.key']}\n"
            "require_certificate true\nuse_identity_as_username true\nallow_anonymous false"
        ),
    ).start()
    url = f"mqtts://127.0.0.1:{b.port}/pdm/#"
    try:
        monkeypatch.setenv("PDM_MQTT_CA_FILE", str(pki["ca.pem"]))
        monkeypatch.setenv("PDM_MQTT_CERT_FILE", str(pki["client.pem"]))
        monkeypatch.setenv("PDM_MQTT_KEY_FILE", str(pki["client.key"]))
        with MqttSource(url, on_chunk=col.on_chunk, on_event=col.on_event) as src:
            col.wait(lambda c: "mqtt_connected" in c.kinds())
            assert src.connected
        for unset in ("PDM_MQTT_CERT_FILE", "PDM_MQTT_CA_FILE"):
            monkeypatch.delenv(unset)
            if unset == "PDM_MQTT_CERT_FILE":
                monkeypatch.delenv("PDM_MQTT_KEY_FILE")
            col.events.clear()
            with MqttSource(url, on_chunk=col.on_chunk, on_event=col.on_event) as src:
                col.wait(lambda c: "mqtt_disconnected" in c.kinds(), timeout=10)
                assert not src.connected
    finally:
        b.stop()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PDM_MQTT_CERT_FILE": "/x.pem"}, "go together"),
        ({"PDM_MQTT_CA_FILE": "/nonexistent/ca.pem"}, "PDM_MQTT_CA_FILE=/nonexistent/ca.pem"),
        (
            {"PDM_MQTT_CERT_FILE": "/nonexistent/c.pem", "PDM_MQTT_KEY_FILE": "/nonexistent/k"},
            "cannot load the client certificate",
        ),
    ],
)
def test_tls_files_that_cannot_be_used_are_one_line_config_errors(
    env: dict[str, str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=words):
        MqttSource("mqtts://127.0.0.1:1/pdm/#", on_chunk=lambda s, c: None)
    with pytest.raises(ConfigError, match="not mqtts"):
        MqttSource("mqtt://127.0.0.1:1/pdm/#", on_chunk=lambda s, c: None)
