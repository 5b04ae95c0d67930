"""Live input over MQTT: PDMS frames or JSON sample blocks from a broker's topics.

Low-rate wireless vibration sensors and their gateways publish to an MQTT
broker rather than hold a TCP stream open. :class:`MqttSource` subscribes to a
topic filter and turns every message into a :class:`~pdm.sources.base.Chunk`,
with the same callback contract as :class:`~pdm.sources.tcp.TcpStreamServer`
(``on_chunk(sensor_id, chunk)``, ``on_event(kind, detail)``), so the service
plugs in either. ``docs/stream-protocol.md`` ("MQTT") is the user's view.

* :func:`parse_mqtt_url` reads ``mqtt://[USER@]HOST[:PORT]/TOPIC_FILTER``
  (``mqtts://`` for TLS); the password comes from ``PDM_MQTT_PASSWORD`` or
  ``PDM_MQTT_PASSWORD_FILE``, never from the URL;
* :func:`decode_payload` checks one message: exactly one binary PDMS frame, or
  a JSON object ``{"sensor", "fs", "t0", "channels", "samples"}``;
* :func:`mqtt_client` builds the paho-mqtt client both :class:`MqttSource` and
  ``pdm-edge send --to mqtt://`` use;
* :class:`MqttSource` keeps a persistent QoS 1 session, so the broker queues
  messages while the appliance is away, and reconnects by itself.

A bad message is an :class:`~pdm.errors.InputError` with a one-line reason;
the source reports it as ``mqtt TOPIC: reason`` and carries on.

>>> import json
>>> sensor, chunk = decode_payload(json.dumps({
...     "sensor": "pump-01", "fs": 3200, "t0": "2023-11-14T22:13:20Z",
...     "channels": ["x_g", "y_g"], "samples": [[0.5, -1.0], [0.25, None]]}).encode())
>>> sensor, chunk.fs, chunk.t0, chunk.channels, chunk.bad_samples
('pump-01', 3200.0, 1700000000.0, ('x_g', 'y_g'), 1)
>>> decode_payload(b'{"sensor": "pump-01", "fs": 3200}')
Traceback (most recent call last):
...
pdm.errors.InputError: JSON: missing t0, channels, samples
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self, cast
from urllib.parse import unquote

import numpy as np
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from pdm.core.jsonkeys import unique_keys
from pdm.core.net import is_loopback
from pdm.core.text import INVISIBLE_CHARS
from pdm.errors import ConfigError, InputError, PdmError
from pdm.loglimit import LogLimiter
from pdm.secrets import redact_url, secret_bytes
from pdm.sources.base import Chunk, OnChunk, OnEvent

# The name rules and the one-line sanitiser are the stream protocol's own: the same ids and
# channel names must pass both inputs.
from pdm.sources.codec import (
    BAD_NAME_CHARS,
    MAGIC,
    MAX_CHANNELS,
    MAX_SAMPLES,
    FrameDecoder,
    name_problem,
)

__all__ = [
    "CA_FILE_ENV",
    "CERT_FILE_ENV",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "KEY_FILE_ENV",
    "MAX_JSON_BYTES",
    "MAX_PAYLOAD_BYTES",
    "PASSWORD_ENV",
    "SESSION_EXPIRY_S",
    "MqttInput",
    "MqttSource",
    "MqttUrl",
    "connect_async",
    "decode_payload",
    "default_client_id",
    "mqtt_client",
    "parse_mqtt_url",
    "tls_context",
]

log = logging.getLogger("pdm.sources.mqtt")

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
#: Largest message accepted (either format); a larger one is rejected.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
#: Largest JSON message: parsing holds the interpreter lock from start to end (16 MiB of
#: rows took 1.3 s, during which the service's processing thread could not run); 1 MiB is
#: ~50-75 ms, and 50 000 values or more: a low-rate sensor's block. Larger blocks: frames.
MAX_JSON_BYTES = 1024 * 1024
#: The share of one core the subscriber's thread may spend on messages, over time (with a
#: burst of ``_WORK_BURST_S``): past it, the thread waits (the broker keeps the rest) so that
#: a publisher flooding the topic cannot starve the processing thread of its process.
_WORK_SHARE = 0.25
_WORK_BURST_S = 0.25
#: MQTT 5: how long the broker keeps the session (subscription and queued messages) while
#: the appliance is away. MQTT 3.1.1 has no expiry: the broker decides (mosquitto: never).
SESSION_EXPIRY_S = 7 * 24 * 3600
#: The broker password: this variable, or a file named by ``PDM_MQTT_PASSWORD_FILE``.
PASSWORD_ENV = "PDM_MQTT_PASSWORD"
#: ``mqtts://``: a PEM bundle of the CA(s) to trust for the broker instead of the system's.
CA_FILE_ENV = "PDM_MQTT_CA_FILE"
#: ``mqtts://``: the appliance's client certificate (PEM) and its private key, for a broker
#: that authenticates clients by certificate.
CERT_FILE_ENV = "PDM_MQTT_CERT_FILE"
KEY_FILE_ENV = "PDM_MQTT_KEY_FILE"

KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
# MQTT 5 Maximum Packet Size told to the broker: it drops anything larger instead of sending
# it. Four times the payload limit, so that a moderately oversize message still reaches us and
# is reported as a rejection, while a huge one never fills the appliance's memory.
_MAX_PACKET_BYTES = 4 * MAX_PAYLOAD_BYTES + 65_536 + 16

_LOG_INTERVAL_S = 60.0  # a topic's rejections are logged at most this often
_LOG_TOPICS = 1024  # topics remembered by that limit
# Lines for all topics together a minute: topics are the publisher's to choose, so a flood
# over many topics (pdm/x0/samples, pdm/x1/samples, ...) was a line a topic.
_LOG_LINES_PER_INTERVAL = 10
_RECENT_PER_SENSOR = 64  # chunks remembered per sensor, to drop redelivered duplicates
_RECENT_SENSORS = 4096
_TOPIC_SHOWN = 200  # characters of a topic shown in a message

_JSON_KEYS = ("sensor", "fs", "t0", "channels", "samples")
# ns since the epoch below this (1973-03-03) are almost surely seconds, ms or µs.
_T0_NS_PLAUSIBLE = 10**17
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"\d[.,](\d+)")
_URL_FORM = "mqtt://[USER@]HOST[:PORT]/TOPIC (or mqtts:// for TLS)"

MqttVersion = Literal["3.1.1", "5"]


# ---------------------------------------------------------------------- URL


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed broker URL (never holds a password).

    Attributes
    ----------
    host : str
        Broker host name or address (IPv6 without brackets).
    port : int
    topic : str
        Topic filter to subscribe to (``+`` and ``#`` allowed) or topic to publish to.
    username : str or None
    tls : bool
        ``mqtts://``: TLS, server certificate checked against the system CA store.
    protocol : {"5", "3.1.1"}
        MQTT version spoken (``?protocol=3.1.1`` in the URL for old brokers).
    """

    host: str
    port: int
    topic: str
    username: str | None = None
    tls: bool = False
    protocol: MqttVersion = "5"

    @property
    def where(self) -> str:
        """``HOST:PORT`` (``[IPv6]:PORT``), for messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username is not None else ""
        query = "?protocol=3.1.1" if self.protocol == "3.1.1" else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.where}/{self.topic}{query}"


def parse_mqtt_url(url: str, *, wildcards: bool = True, what: str = "MQTT URL") -> MqttUrl:
    """``mqtt://[USER@]HOST[:PORT]/TOPIC[?protocol=3.1.1]`` -> :class:`MqttUrl`.

    The topic is everything after the first ``/`` behind the host, verbatim (no
    percent-decoding; ``#`` is part of it, not a URL fragment). Default ports: 1883,
    and 8883 for ``mqtts://``.

    Parameters
    ----------
    url : str
    wildcards : bool
        Whether ``+`` and ``#`` are allowed (a subscription's topic filter); False
        for a topic to publish to.
    what : str
        How messages name the URL (``"--to"``).

    Raises
    ------
    ConfigError
        One line naming the URL (a password in it shown as ``***``) and what is
        wrong; a password in the URL is refused with where to put it instead.

    >>> parse_mqtt_url("mqtt://127.0.0.1:1883/pdm/+/samples")
    MqttUrl(host='127.0.0.1', port=1883, topic='pdm/+/samples', username=None, tls=False, protocol='5')
    >>> str(parse_mqtt_url("mqtts://edge@broker.plant/pdm/#"))
    'mqtts://edge@broker.plant:8883/pdm/#'
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"{what} {shown!r}: {reason}")

    if not isinstance(url, str):
        raise bad(f"expected {_URL_FORM}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("mqtt", "mqtts"):
        raise bad(f"expected {_URL_FORM}")
    tls = scheme.lower() == "mqtts"
    netloc, slash, topic = rest.partition("/")
    topic, qmark, query = topic.partition("?")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        raise bad(
            f"a password does not belong in the URL; put it in {PASSWORD_ENV} or in a file "
            f"named by {PASSWORD_ENV}_FILE"
        )
    username = unquote(userinfo) if at else None
    if at and not username:
        raise bad("an empty user name before '@'")
    if hostport.startswith("["):
        host, bracket, port_text = hostport[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise bad("expected [IPv6 ADDRESS] or [IPv6 ADDRESS]:PORT as the host")
        port_text = port_text[1:]
        has_port = bool(port_text) or hostport.endswith(":")
    else:
        host, colon, port_text = hostport.partition(":")
        has_port = bool(colon)
    if not host or any(c.isspace() for c in host):
        raise bad(f"no host; expected {_URL_FORM}")
    if has_port:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise bad(f"port {port_text!r} is not a number within 1..65535")
        port = int(port_text)
    else:
        port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    if not slash or not topic:
        raise bad(f"no topic; expected {_URL_FORM}, e.g. mqtt://127.0.0.1:1883/pdm/+/samples")
    problem = _topic_problem(topic, wildcards=wildcards)
    if problem:
        raise bad(problem)
    protocol: MqttVersion = "5"
    if qmark:
        key, eq, value = query.partition("=")
        if key != "protocol" or not eq or "&" in value:
            # The names only: a value may be a password (it was echoed whole).
            names = "&".join(part.partition("=")[0] for part in query.split("&"))
            raise bad(f"unknown option {names!r}; the only one is ?protocol=3.1.1 (or 5)")
        if value not in ("5", "3.1.1"):
            raise bad(f"protocol {value!r}: expected 5 (the default) or 3.1.1")
        protocol = cast(MqttVersion, value)
    return MqttUrl(host, port, topic, username, tls, protocol)


def _topic_problem(topic: str, *, wildcards: bool) -> str | None:
    """Why ``topic`` is not a valid topic (filter), or None."""
    if len(topic.encode("utf-8", "surrogatepass")) > 65535:
        return "the topic is longer than 65535 bytes"
    if "\x00" in topic or BAD_NAME_CHARS.search(topic):
        return "the topic contains a control character"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level or "#" in level) and not wildcards:
            return f"topic {topic!r}: wildcards (+, #) are for subscribing; name one topic"
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"topic {topic!r}: '#' must be a whole level, the last one (pdm/#)"
        if "+" in level and level != "+":
            return f"topic {topic!r}: '+' must be a whole level (pdm/+/samples)"
    return None


def default_client_id(url: MqttUrl) -> str:
    """A fixed client id for this host and topic filter: ``pdm-HOST-HASH`` (≤ 23 characters).

    Fixed, so that a restarted appliance resumes its session (and the messages the
    broker queued meanwhile); at most 23 characters of ``[0-9A-Za-z-]``, the length every
    MQTT 3.1.1 broker must accept. HASH covers the full host name and the topic.
    """
    hostname = socket.gethostname()
    digest = hashlib.sha256(f"{hostname}\0{url.topic}".encode()).hexdigest()[:8]
    short = re.sub(r"[^0-9A-Za-z-]", "", hostname.split(".")[0])[:10] or "host"
    return f"pdm-{short}-{digest}"


def mqtt_client(
    url: MqttUrl, *, client_id: str | None = None, persistent: bool = False
) -> paho.Client:
    """A paho-mqtt 2.x client for ``url``, configured but not connected.

    Callback API version 2; the URL's protocol; user name from the URL and the
    password from ``PDM_MQTT_PASSWORD`` / ``PDM_MQTT_PASSWORD_FILE``; TLS for ``mqtts://``
    (:func:`tls_context`: the system CA store or ``PDM_MQTT_CA_FILE``, a client certificate
    from ``PDM_MQTT_CERT_FILE`` and ``PDM_MQTT_KEY_FILE``); reconnect back-off 1 to 30 s.

    Parameters
    ----------
    client_id : str, optional
        Needed with ``persistent``; otherwise the broker assigns one.
    persistent : bool
        A session that outlives the connection: MQTT 3.1.1 ``clean_session=False``,
        MQTT 5 ``clean_start=False`` with a session expiry of :data:`SESSION_EXPIRY_S`
        (the connect call's part: :func:`connect_async`).

    Raises
    ------
    ConfigError
        The password variables are both set, or the file is unreadable or empty;
        a password without a user name in the URL.
    """
    password = secret_bytes(PASSWORD_ENV, "MQTT password")
    if password is not None and url.username is None:
        raise ConfigError(
            f"{url}: {PASSWORD_ENV} is set but the URL names no user "
            f"(mqtt://USER@{url.where}/{url.topic})"
        )
    if persistent and not client_id:
        raise ValueError("a persistent session needs a client id")
    v5 = url.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or "",
        clean_session=None if v5 else not persistent,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=True,
    )
    if url.username is not None:
        # paho sends bytes as they are (a password need not be UTF-8).
        client.username_pw_set(url.username, cast(str | None, password))
    if url.tls:
        client.tls_set_context(tls_context())
    elif any(os.environ.get(v) for v in (CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV)):
        raise ConfigError(
            f"{url}: {CA_FILE_ENV}/{CERT_FILE_ENV}/{KEY_FILE_ENV} are set but the URL is not "
            "mqtts:// (TLS)"
        )
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def tls_context() -> ssl.SSLContext:
    """The TLS context of an ``mqtts://`` connection: the broker's certificate checked
    (against the CA bundle in ``PDM_MQTT_CA_FILE``, else the system's store) and its host
    name verified; with ``PDM_MQTT_CERT_FILE`` and ``PDM_MQTT_KEY_FILE``, the appliance's own
    client certificate for a broker that asks for one (``require_certificate``).

    Raises :class:`ConfigError` (one line naming the variable) when a file cannot be read or
    is not what it should be, or only one of the certificate and its key is given.
    """
    ca, cert, key = (os.environ.get(v, "") for v in (CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV))
    try:
        ctx = ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{CA_FILE_ENV}={ca}: not a readable PEM CA bundle: {exc}") from exc
    if bool(cert) != bool(key):
        raise ConfigError(
            f"{CERT_FILE_ENV} and {KEY_FILE_ENV} go together (the client certificate and its key)"
        )
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{CERT_FILE_ENV}={cert}, {KEY_FILE_ENV}={key}: cannot load the client "
                f"certificate and key: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
    return ctx


def connect_async(client: paho.Client, url: MqttUrl, *, persistent: bool) -> None:
    """Start connecting ``client`` (from :func:`mqtt_client`) to ``url`` in the background.

    ``client.connect_async`` with the session settings matching ``persistent``; the
    connection is made by the network thread (``client.loop_start()``).
    """
    if url.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.MaximumPacketSize = _MAX_PACKET_BYTES
        client.connect_async(
            url.host, url.port, KEEPALIVE_S, clean_start=not persistent, properties=props
        )
    else:
        client.connect_async(url.host, url.port, KEEPALIVE_S)


# ---------------------------------------------------------------------- payloads


def decode_payload(payload: bytes, received: float | None = None) -> tuple[str, Chunk]:
    """One MQTT message -> (sensor id, chunk).

    The message is either exactly one PDMS frame (``docs/stream-protocol.md``; the
    sensor id is the frame's) or, when its first non-space byte is ``{``, a JSON
    object::

        {"sensor": "pump-01", "fs": 3200.0, "t0": 1700000000000000000,
         "channels": ["x_g", "y_g"], "samples": [[x0, y0], [x1, y1], ...]}

    ``t0`` is the time of the first sample: integer ns since the epoch, or an ISO
    8601 string with a time zone (read to the nanosecond). ``samples`` has one row
    per sample, one number per channel; ``null`` (or ``NaN``) marks a sample that
    could not be read. Every key is required, no other is allowed.

    Returns the same :class:`~pdm.sources.base.Chunk` as
    :meth:`~pdm.sources.codec.Frame.to_chunk`: float64 ``(n_samples, n_channels)`` in
    the channels' units, non-finite values as NaN counted in ``bad_samples``, and
    ``received`` (the ``time.monotonic()`` of its arrival) as given.

    Raises
    ------
    InputError
        One line saying what is wrong (no topic: the caller adds it).
    """
    n = len(payload)
    if n == 0:
        raise InputError("empty message")
    if n > MAX_PAYLOAD_BYTES:
        raise InputError(f"message is {n} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    if payload.lstrip(b" \t\r\n")[:1] == b"{":
        if n > MAX_JSON_BYTES:
            raise InputError(
                f"a JSON message is {n} bytes; the limit is {MAX_JSON_BYTES} "
                f"(send a larger block as a PDMS frame, up to {MAX_PAYLOAD_BYTES})"
            )
        return _decode_json(payload, received)
    return _decode_frame(payload, received)


def _decode_frame(payload: bytes, received: float | None) -> tuple[str, Chunk]:
    n = len(payload)
    head = payload[: len(MAGIC)]
    if not MAGIC.startswith(head) or n < len(MAGIC):
        raise InputError(
            f"neither a PDMS frame (starts with {MAGIC!r}) nor a JSON object (starts with '{{'): "
            f"starts with {payload[:8]!r}"
        )
    peer = "mqtt"
    decoder = FrameDecoder(peer, max_frame_bytes=MAX_PAYLOAD_BYTES)
    try:
        frames = decoder.feed(payload)
    except InputError as exc:
        # "stream from PEER, byte N: reason" -> "PDMS frame, byte N: reason"
        raise InputError("PDMS frame, " + str(exc).removeprefix(f"stream from {peer}, ")) from None
    if not frames:
        raise InputError(
            f"truncated PDMS frame: the message has {n} bytes, fewer than its header announces"
        )
    frame = frames[0]
    if frame.size != n:
        extra = n - frame.size
        raise InputError(
            f"{extra} byte{'s' if extra != 1 else ''} after the {frame.size}-byte PDMS frame; "
            f"a message carries exactly one frame"
        )
    return frame.sensor_id, frame.to_chunk(received)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _decode_json(payload: bytes, received: float | None) -> tuple[str, Chunk]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"JSON: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=unique_keys)
    except InputError:
        raise
    except ValueError as exc:  # JSONDecodeError; an integer over Python's 4300 digits too
        raise InputError(f"malformed JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise InputError(f"JSON: expected an object, got {type(obj).__name__}")
    unknown = [k for k in obj if k not in _JSON_KEYS]
    if unknown:
        raise InputError(
            f"JSON: unknown key {_shorten(unknown[0])!r} (the keys are {', '.join(_JSON_KEYS)})"
        )
    missing = [k for k in _JSON_KEYS if k not in obj]
    if missing:
        raise InputError(f"JSON: missing {', '.join(missing)}")

    sensor = obj["sensor"]
    if not isinstance(sensor, str):
        raise InputError(f"JSON: sensor must be a string, not {_json_type(sensor)}")
    problem = name_problem(sensor.encode("utf-8", "surrogatepass"), "sensor id")
    if problem:
        raise InputError(f"JSON: {problem}")

    fs = obj["fs"]
    if not _is_number(fs) or not (math.isfinite(fs) and fs > 0):
        shown = repr(fs) if _is_number(fs) else _json_type(fs)
        raise InputError(f"JSON: fs {shown} is not a finite number of Hz > 0")

    t0_ns = _t0_ns(obj["t0"])

    channels = obj["channels"]
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise InputError("JSON: channels must be a list of strings")
    if not 1 <= len(channels) <= MAX_CHANNELS:
        raise InputError(f"JSON: {len(channels)} channels; a message carries 1 to {MAX_CHANNELS}")
    for i, name in enumerate(channels):
        problem = name_problem(name.encode("utf-8", "surrogatepass"), f"channel {i} name")
        if problem:
            raise InputError(f"JSON: {problem}")
        if name in channels[:i]:
            raise InputError(
                f"JSON: channel {i} name {name!r} repeats channel {channels.index(name)}"
            )

    data, bad = _samples(obj["samples"], len(channels))
    return sensor, Chunk(
        data=data,
        fs=float(fs),
        t0=t0_ns / 1_000_000_000,
        channels=tuple(channels),
        bad_samples=bad,
        received=received,
    )


def _t0_ns(t0: object) -> int:
    """JSON ``t0`` -> int ns since the epoch."""
    if isinstance(t0, int) and not isinstance(t0, bool):
        if not _I64_MIN <= t0 <= _I64_MAX:
            raise InputError(f"JSON: t0 {_shorten(str(t0), 32)} does not fit in int64 ns")
        if t0 < _T0_NS_PLAUSIBLE:
            raise InputError(
                f"JSON: t0 {t0} as ns since the epoch is before 1973: seconds, milliseconds or "
                f"microseconds? t0 counts nanoseconds (or give an ISO 8601 string)"
            )
        return t0
    if not isinstance(t0, str):
        raise InputError(
            f"JSON: t0 must be an integer (ns since the epoch) or an ISO 8601 string with a "
            f"time zone, not {_json_type(t0)}"
        )
    shown = _shorten(t0)
    try:
        dt = datetime.fromisoformat(t0)
    except ValueError:
        raise InputError(f"JSON: t0 {shown!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InputError(
            f"JSON: t0 {shown!r} has no time zone (add Z for UTC, or an offset like +01:00)"
        )
    # fromisoformat keeps microseconds; take the fraction from the text for nanoseconds.
    match = _FRACTION.search(t0)
    frac_ns = int((match.group(1) + "000000000")[:9]) if match else 0
    whole = (dt.replace(microsecond=0) - _EPOCH) // timedelta(seconds=1)
    ns = whole * 1_000_000_000 + frac_ns
    if not _I64_MIN <= ns <= _I64_MAX:
        raise InputError(f"JSON: t0 {shown!r} is out of range")
    return ns


def _samples(samples: object, n_channels: int) -> tuple[np.ndarray[Any, np.dtype[np.float64]], int]:
    """JSON ``samples`` (rows) -> (n_samples, n_channels) float64 with NaN for bad, and their count."""
    if not isinstance(samples, list):
        raise InputError(f"JSON: samples must be a list of rows, not {_json_type(samples)}")
    if not 1 <= len(samples) <= MAX_SAMPLES:
        raise InputError(f"JSON: {len(samples)} samples; a message carries 1 to {MAX_SAMPLES}")
    for i, row in enumerate(samples):
        if not isinstance(row, list):
            raise InputError(
                f"JSON: samples[{i}] is {_json_type(row)}, not a row; samples is a list of rows, "
                f"one value per channel: [[x0, y0], [x1, y1], ...]"
            )
        if len(row) != n_channels:
            raise InputError(
                f"JSON: samples[{i}] has {len(row)} values for {n_channels} channels "
                f"(samples must be rectangular: one value per channel in every row)"
            )
    kinds = {type(v) for row in samples for v in row}
    if not kinds <= {int, float, type(None)}:
        for i, row in enumerate(samples):
            for j, v in enumerate(row):
                if v is not None and not _is_number(v):
                    raise InputError(
                        f"JSON: samples[{i}][{j}] is {_json_type(v)}; a sample is a number "
                        f"(or null when it could not be read)"
                    )
    try:
        data = np.array(samples, dtype=np.float64)  # None -> NaN
    except OverflowError:
        raise InputError("JSON: a sample is too large for a float64") from None
    finite = np.isfinite(data)
    bad = 0
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        data[~finite] = np.nan
    return data, bad


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return f"a string ({_shorten(v)!r})"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return f"a number ({v!r})"


def _shorten(text: str, limit: int = 64) -> str:
    text = INVISIBLE_CHARS.sub("?", BAD_NAME_CHARS.sub("?", text))  # shown in one-line logs
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- the source


class MqttSource:
    """Subscribes to a broker's topic filter and hands each message on as a chunk.

    paho-mqtt's network thread (``loop_start``) runs every callback, so
    ``on_chunk`` and ``on_event`` are never called concurrently; a slow
    ``on_chunk`` holds back the next message (the broker keeps the rest), and one
    that blocks for longer than 1.5 × the 30 s keep-alive loses the connection.

    Delivery is *at least once* across broker hiccups and appliance restarts:
    the subscription is QoS 1 in a persistent session under a fixed client id
    (MQTT 5 ``clean_start=False`` with a 7-day session expiry; MQTT 3.1.1
    ``clean_session=False``), so the broker queues messages while the appliance
    is disconnected and delivers them on reconnect. A message is acknowledged
    (PUBACK) only after ``on_chunk`` returns. A redelivered copy of a chunk already
    handed on (same sensor, start time, length and payload) is dropped and counted
    in :attr:`duplicates`, so the pipeline does not see time jump back; so is a stale
    retained message (:attr:`retained`).

    Parameters
    ----------
    url : str
        ``mqtt://[USER@]HOST[:PORT]/TOPIC_FILTER`` (default port 1883), or
        ``mqtts://...`` for TLS checked against the system CA store (default
        port 8883); ``?protocol=3.1.1`` for a broker without MQTT 5. The filter may
        contain ``+`` and ``#``. The password comes from ``PDM_MQTT_PASSWORD`` or
        ``PDM_MQTT_PASSWORD_FILE``, never from the URL.
    on_chunk : callable(sensor_id, Chunk)
        Called for each accepted message with its samples as float64 in the
        channels' units. Raising (e.g. :class:`~pdm.errors.InputError` "no
        pipeline watches X") rejects that message like a bad one: an
        ``mqtt_rejected`` event, counted; a non-:class:`~pdm.errors.PdmError` is
        also logged with its traceback (at most once per topic per minute).
    on_event : callable(kind, detail), optional
        ``kind`` is one of

        * ``"mqtt_connected"``: (re)connected and subscribed (the broker's SUBACK);
          on each connect. Messages the broker queued for the session may arrive
          just before it;
        * ``"mqtt_disconnected"``: the broker cannot be reached or refused the
          connection, or the connection was lost; once per outage (not per retry),
          and once when :meth:`stop` ends a connection;
        * ``"mqtt_subscribe_failed"``: connected, but the broker refused the
          subscription (e.g. not authorised for the topic); nothing arrives;
        * ``"mqtt_rejected"``: a message was refused, ``mqtt TOPIC: reason``.

        ``detail`` is one line. An exception from ``on_event`` is logged, not raised.
    client_id : str, optional
        MQTT client id; the session (and the messages queued in it) belongs to it.
        Default: derived from this host's name and the topic filter
        (:func:`default_client_id`). Two running sources must not share one: the
        broker would throw each off in turn.
    qos : {0, 1, 2}
        Subscription QoS. 1 (the default) or 2 lose nothing while the session lives;
        0 loses what is published while the appliance is disconnected.

    Attributes
    ----------
    url : MqttUrl
    client_id : str
    messages, rejected, duplicates, retained : int
        Messages received, and of those: refused, dropped as redelivered copies,
        dropped as stale retained messages. Totals since construction, for metrics.

    Raises
    ------
    ConfigError
        (from the constructor) a malformed URL, a password in it, or a bad password
        variable.
    """

    def __init__(
        self,
        url: str,
        *,
        on_chunk: OnChunk,
        on_event: OnEvent | None = None,
        client_id: str | None = None,
        qos: int = 1,
    ) -> None:
        if isinstance(qos, bool) or qos not in (0, 1, 2):
            raise ValueError(f"{qos=} must be 0, 1 or 2")
        self.url = parse_mqtt_url(url)
        if client_id is not None and (
            not isinstance(client_id, str)
            or not 1 <= len(client_id.encode("utf-8")) <= 65535
            or BAD_NAME_CHARS.search(client_id)
        ):
            raise ValueError(f"{client_id=} must be 1-65535 bytes of text, or None")
        self.client_id = client_id or default_client_id(self.url)
        self.qos = qos
        self.messages = 0
        self.rejected = 0
        self.duplicates = 0
        self.retained = 0
        self._on_chunk = on_chunk
        self._on_event = on_event
        self._client = mqtt_client(self.url, client_id=self.client_id, persistent=True)
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._lock = threading.Lock()
        self._started = False
        self._stopping = False
        self._connected = False
        self._outage_since: float | None = None  # monotonic; set once per outage
        self._warned_outage = False  # until the subscription is back
        self._connect_detail = ""
        self._log_limit = LogLimiter(_LOG_INTERVAL_S, max_keys=_LOG_TOPICS)
        self._log_told: deque[float] = deque(maxlen=_LOG_LINES_PER_INTERVAL)
        self._work_debt = 0.0  # s of CPU on messages not yet paid back (see _pace)
        self._work_at = time.monotonic()
        #: Seconds the subscriber waited to keep its CPU share (a flood of heavy messages).
        self.paced_s = 0.0
        self._log_unsaid = 0  # rejections not logged for want of lines (other topics)
        self._recent: dict[str, deque[tuple[float, int, bytes]]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start connecting in the background and return at once.

        A broker that is down or unreachable (no network yet) is not an error: the
        network thread keeps trying, 1 to 30 s apart, reports the outage once
        (``mqtt_disconnected`` and a warning) and subscribes when it gets through.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("MqttSource.start() called twice; make a new source")
            self._started = True
        if self.url.username is not None and not self.url.tls and not is_loopback(self.url.host):
            log.warning(
                "MQTT input: %s: the user name and password go to %s unencrypted; use mqtts:// "
                "on an untrusted network",
                self.url,
                self.url.where,
            )
        connect_async(self._client, self.url, persistent=True)
        self._client.loop_start()
        log.info("MQTT input: connecting to %s as client %r", self.url, self.client_id)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect (the broker keeps the session and queues for it) and join the
        network thread, waiting at most ``timeout_s``. Idempotent.

        Called from ``on_chunk`` (the network thread itself), it stops after that
        callback returns, without joining.
        """
        with self._lock:
            if not self._started or self._stopping:
                return
            self._stopping = True
        client = self._client
        # paho's loop_stop() joins its thread without a timeout; a stuck on_chunk must not
        # hang the caller's shutdown, so join it here with ours (it exits once disconnected).
        thread = getattr(client, "_thread", None)
        client.disconnect()
        if not isinstance(thread, threading.Thread) or thread is threading.current_thread():
            client.loop_stop()
            return
        client._thread_terminate = True  # what loop_stop() sets, without its unbounded join
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("MQTT input: network thread did not stop within %g s", timeout_s)

    @property
    def connected(self) -> bool:
        """Connected to the broker now (CONNACK accepted, not yet lost)."""
        return self._connected

    def __enter__(self) -> Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"MqttSource({str(self.url)!r}, client_id={self.client_id!r}, "
            f"connected={self._connected}, messages={self.messages}, rejected={self.rejected})"
        )

    # ------------------------------------------------------------------ connection

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            hint = ""
            if reason.getName() == "Unsupported protocol version":
                hint = " (an old broker? add ?protocol=3.1.1 to the URL)"
            self._outage(f"{self.url.where}: the broker refused the connection: {reason}{hint}")
            return
        self._connected = True
        session = "session resumed" if flags.session_present else "new session"
        self._connect_detail = f"{self.url.where}: connected as {self.client_id!r} ({session})"
        if self._outage_since is not None:
            self._connect_detail += f" after {time.monotonic() - self._outage_since:.1f} s"
        self._outage_since = None
        if self.url.protocol == "5":
            # Retained messages are old samples, not a stream: never send them on subscribing.
            opts = SubscribeOptions(
                qos=self.qos, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
            )
            client.subscribe(self.url.topic, options=opts)
        else:
            client.subscribe(self.url.topic, self.qos)

    def _handle_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._outage(f"{self.url.where}: cannot connect (broker down, unreachable or TLS refused)")

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected, self._connected = self._connected, False
        if self._stopping:
            if was_connected:
                detail = f"{self.url.where}: disconnected (stopped)"
                log.info("MQTT input: %s", detail)
                self._event("mqtt_disconnected", detail)
            return
        if not was_connected:
            # A refused CONNACK was reported by _handle_connect (_outage says it once); a
            # connection closed before any CONNACK — a TLS broker that wants a client
            # certificate drops it after the handshake — is an outage too, not silence.
            self._outage(
                f"{self.url.where}: the connection closed before the broker accepted it "
                "(TLS refused, e.g. a client certificate required?)"
            )
            return
        if flags.is_disconnect_packet_from_server:
            why = f"the broker closed the connection: {reason}"
            if reason.getName() == "Session taken over":
                why += f" (another client uses the client id {self.client_id!r})"
        else:
            why = "connection lost"
            if reason.getName() not in ("Unspecified error", "Success"):
                why += f": {reason}"
        self._outage(f"{self.url.where}: {why}")

    def _outage(self, detail: str) -> None:
        """Report an outage once: the first failure after being connected (or at start)."""
        if self._outage_since is not None or self._stopping:
            return
        self._outage_since = time.monotonic()
        self._warned_outage = True
        detail = (
            f"{detail}; retrying every {RECONNECT_MIN_S}-{RECONNECT_MAX_S} s "
            f"(the broker queues messages for the session meanwhile)"
        )
        log.warning("MQTT input: %s", detail)
        self._event("mqtt_disconnected", detail)

    def _handle_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if not reasons:
            return
        # One topic filter per SUBSCRIBE, so one reason code.
        reason = next((r for r in reasons if r.is_failure), min(reasons, key=lambda r: r.value))
        if reason.is_failure:
            detail = (
                f"{self._connect_detail}, but the broker refused the subscription to "
                f"{self.url.topic!r}: {reason}"
            )
            log.warning("MQTT input: %s", detail)
            self._event("mqtt_subscribe_failed", detail)
            return
        granted = reason.value
        detail = f"{self._connect_detail}; subscribed to {self.url.topic!r} with QoS {granted}"
        if granted < self.qos:
            detail += (
                f" (asked {self.qos}: messages published while the appliance is disconnected "
                f"may be lost)"
            )
            log.warning("MQTT input: %s", detail)
        elif self._warned_outage:
            log.warning("MQTT input: %s", detail)  # the outage's warning needs its end
        else:
            log.info("MQTT input: %s", detail)
        self._warned_outage = False
        self._event("mqtt_connected", detail)

    # ------------------------------------------------------------------ messages

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        started = time.thread_time()
        try:
            self._message(msg)
        except Exception:  # a bug here must not kill the network thread
            log.exception("MQTT input: handling a message failed")
        self._pace(time.thread_time() - started)

    def _pace(self, spent_s: float) -> None:
        """Keep this thread's CPU on messages within ``_WORK_SHARE`` of a core over time: a
        leaky bucket of the seconds spent, drained at that share; past the burst, wait
        (paho reads nothing meanwhile, so the broker holds the rest). Red team, 2026-12-07:
        16 MiB JSON messages back to back (to a sensor nobody watches) starved the
        processing thread until healthy machines' relays dropped, behind real time."""
        now = time.monotonic()
        debt = max(0.0, self._work_debt - (now - self._work_at) * _WORK_SHARE) + spent_s
        self._work_at = now
        if debt > _WORK_BURST_S and not self._stopping:
            wait = min((debt - _WORK_BURST_S) / _WORK_SHARE, 2.0)
            self.paced_s += wait
            time.sleep(wait)
            debt -= wait * _WORK_SHARE
            self._work_at = time.monotonic()
        self._work_debt = debt

    def _message(self, msg: paho.MQTTMessage) -> None:
        self.messages += 1
        try:
            topic = _shorten(msg.topic, _TOPIC_SHOWN)
        except UnicodeDecodeError:
            topic = "(topic not UTF-8)"
        if msg.retain:
            # Sent because we (re)subscribed, not because a sensor just published.
            self.retained += 1
            if self._may_log(f"retained {topic}") is not None:
                log.info("MQTT input: mqtt %s: stale retained message ignored", topic)
            return
        payload = msg.payload
        try:
            sensor, chunk = decode_payload(payload, time.monotonic())
        except InputError as exc:
            self._reject(topic, str(exc))
            return
        # Not zlib.crc32: over a whole PDMS frame (its CRC included) that is a constant.
        key = (chunk.t0, chunk.n_samples, hashlib.blake2b(payload, digest_size=8).digest())
        recent = self._recent.get(sensor)
        if recent is not None and key in recent:
            self.duplicates += 1
            log.debug("MQTT input: mqtt %s: duplicate of a chunk of %r dropped", topic, sensor)
            return
        try:
            self._on_chunk(sensor, chunk)
        except PdmError as exc:
            self._reject(topic, f"sensor {sensor!r}: {exc}")
            return
        except Exception as exc:
            reason = f"on_chunk failed: {type(exc).__name__}: {exc}".splitlines()[0]
            self._reject(topic, reason, with_traceback=True)
            return
        if recent is None:
            if len(self._recent) >= _RECENT_SENSORS:
                del self._recent[next(iter(self._recent))]
            recent = self._recent[sensor] = deque(maxlen=_RECENT_PER_SENSOR)
        recent.append(key)

    def _may_log(self, key: str) -> int | None:
        """Whether to log a line of ``key`` now (None: no): at most one a minute per key and
        :data:`_LOG_LINES_PER_INTERVAL` a minute in all. The value: how many of ``key`` were
        held back since its last line."""
        now = time.monotonic()
        told = self._log_told
        if len(told) == told.maxlen and now - told[0] < _LOG_INTERVAL_S:
            self._log_unsaid += 1
            return None
        held = self._log_limit.check(key, now)
        if held is not None:
            told.append(now)
        return held

    def _reject(self, topic: str, reason: str, *, with_traceback: bool = False) -> None:
        self.rejected += 1
        detail = f"mqtt {topic}: {reason}"
        held = self._may_log(topic)
        if held is not None:
            more = f" ({held} more from this topic since the last report)" if held else ""
            if self._log_unsaid:
                more += (
                    f" ({self._log_unsaid} rejection(s) not logged meanwhile: more than "
                    f"{_LOG_LINES_PER_INTERVAL} lines a minute; all are counted)"
                )
                self._log_unsaid = 0
            log.warning(
                "MQTT input: %s%s; further rejections from this topic are logged at most once "
                "a minute",
                detail,
                more,
                exc_info=with_traceback,
            )
        self._event("mqtt_rejected", detail)

    def _event(self, kind: str, detail: str) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("MQTT input: on_event(%r) failed", kind)


class MqttInput:
    """The MQTT subscriber as a :class:`~pdm.sources.base.PushSource` (a service's ``--mqtt``).

    The URL is checked by the constructor (:class:`~pdm.errors.ConfigError`); the
    :class:`MqttSource` is built by :meth:`start` with the callbacks. Its event kinds already
    name it (``mqtt_connected``, ...).
    """

    name = "mqtt"

    def __init__(self, url: str, *, client_id: str | None = None) -> None:
        self.url = parse_mqtt_url(url)
        self._url_text = url
        self.client_id = client_id
        self.source: MqttSource | None = None

    @property
    def address(self) -> str:
        return str(self.url)

    def start(self, on_chunk: OnChunk, on_event: OnEvent) -> None:
        source = MqttSource(
            self._url_text, on_chunk=on_chunk, on_event=on_event, client_id=self.client_id
        )
        self.source = source.start()

    def stop(self, deadline: float) -> None:
        if self.source is not None:
            self.source.stop(timeout_s=max(0.0, deadline - time.monotonic()))

    def refused(self) -> dict[str, int]:
        """Messages refused since start (:attr:`MqttSource.rejected`), as ``rejected``."""
        return {} if self.source is None else {"rejected": self.source.rejected}

    def __repr__(self) -> str:
        return repr(self.source) if self.source is not None else f"MqttInput({self.address!r})"
