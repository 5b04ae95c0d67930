"""``pdm-edge send``: stream a CSV recording to a pdm-edge receiver over TCP or MQTT.

Reads the recording with :class:`~pdm.sources.csv.CsvRecording` (so the sample
rate and times come from the file, its sidecar or ``--fs`` exactly as for every
other command) and sends each chunk as one PDMS frame (``docs/stream-protocol.md``)
with the recording's own timestamps, or shifted to now with ``--now`` so that a
live service sees current times. It plays the part of a DAQ: to test a service,
or to feed it recorded data.

Pacing: as fast as possible by default; ``--speed X`` sends each frame when its
last sample would have been acquired, at X times real time.

Connection: when the receiver is down or the connection drops, ``send`` keeps
trying for up to ``--retry-s`` seconds per outage, with back-off from 0.1 s to
2 s, and says so once on stderr (not once per attempt). The frame that failed
is sent again after reconnecting; frames the receiver had not read when it went
away are lost (the protocol has no acknowledgements; the receiver sees a jump
in time). After the last frame it waits for the receiver to close its end, so
when ``send`` exits 0 every frame has been read.

MQTT: with ``--to mqtt://HOST[:PORT]/TOPIC`` (``mqtts://`` for TLS; the
password from ``PDM_MQTT_PASSWORD``, see :mod:`pdm.sources.mqtt`) each frame is
published as one message to TOPIC with QoS 1 instead. Up to 32 messages are in
flight; paho-mqtt reconnects by itself and publishes again what the broker had
not acknowledged, and ``--retry-s`` bounds each outage as for TCP. ``send``
exits 0 once the broker has acknowledged (PUBACK) every frame: it then holds
them for the subscribers, including a pdm-edge that is disconnected but keeps a
persistent session. A redelivered frame may reach the broker twice; the
pdm-edge MQTT input drops such copies.

Exit status: 0 done; 1 the receiver could not be reached for ``--retry-s``,
or it refused the data (it ended three connections in a row while accepting
new ones, or reset the connection after the last frame: wrong sensor id or
channel names, see its log; MQTT: the broker refused the connection or a
frame, or acknowledged nothing for ``--timeout``); 2 a user error (options,
the file); 130 interrupted. Every error is one line ``pdm-edge: error: …`` on
stderr; the summary (frames, samples, seconds, MB/s) is one line on stderr too.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, cast

import numpy as np
import numpy.typing as npt

from pdm.errors import ConfigError, PdmError
from pdm.secrets import secret_bytes
from pdm.sources.codec import (
    MAX_CHANNELS,
    MAX_FRAME_BYTES,
    MAX_NAME_BYTES,
    MAX_SAMPLES,
    PEEK_BYTES,
    TAG_BYTES,
    encode_frame,
    ns_from_seconds,
)
from pdm.sources.csv import CsvRecording
from pdm.sources.stream_keys import FrameSigner

# pdm.sources.mqtt (with paho-mqtt, ~0.4 s to import: python -X importtime) is imported where
# a frame goes to an mqtt:// URL; a TCP send does without it.
if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from pdm.sources.mqtt import MqttUrl

__all__ = [
    "DESCRIPTION",
    "KEY_ENV",
    "SendStats",
    "add_arguments",
    "build_parser",
    "parse_address",
    "publish_recording",
    "run",
    "send_main",
    "send_recording",
    "stream_signer",
]

_ITEMSIZE = {"float32": 4, "float64": 8, "int16": 2}
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0
_MAX_CLOSES_IN_A_ROW = 3
_HEALTHY_CONNECTION_S = 10.0  # a connection that lasted this long was not refused
_MQTT_IN_FLIGHT = 32  # frames published and not yet acknowledged, at most
_MQTT_POLL_S = 0.1
# Generous room for the header: sensor id and every name at their maximum length.
_HEADER_ROOM = PEEK_BYTES + MAX_CHANNELS * (2 + MAX_NAME_BYTES) + 8 + TAG_BYTES + 4


class _Unreachable(PdmError):
    """The receiver could not be reached within the retry budget, or refuses the data (exit 1)."""

    retryable = True


class _UsageError(ConfigError):
    pass


#: The sender's stream key secret (hex): this variable, or a file named by ``..._FILE``.
KEY_ENV = "PDM_STREAM_KEY"


def stream_signer(key_id: str) -> FrameSigner:
    """The :class:`FrameSigner` of ``--key-id`` with its secret from :data:`KEY_ENV`."""

    raw = secret_bytes(KEY_ENV, "stream key")
    if raw is None:
        raise ConfigError(f"--key-id {key_id}: set {KEY_ENV} (or {KEY_ENV}_FILE) to its secret")
    try:
        secret = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"{KEY_ENV}: the stream key secret is not hex") from None
    try:
        return FrameSigner(key_id, secret)
    except ValueError as exc:
        raise ConfigError(f"--key-id {key_id!r}: {exc}") from None


@dataclass
class SendStats:
    """What a send did; ``seconds`` is signal time (samples / fs), ``elapsed_s`` wall time."""

    frames: int = 0
    samples: int = 0
    seconds: float = 0.0
    bytes: int = 0
    reconnects: int = 0
    elapsed_s: float = 0.0

    def summary(self, to: str, n_channels: int) -> str:
        rate = self.bytes / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0
        again = f", {self.reconnects} reconnect{'s' if self.reconnects != 1 else ''}"
        return (
            f"pdm-edge send: {self.frames} frames, {self.samples} samples x {n_channels} "
            f"channels ({self.seconds:.3f} s of signal) to {to} in {self.elapsed_s:.2f} s, "
            f"{rate:.2f} MB/s{again if self.reconnects else ''}"
        )


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port).

    >>> parse_address("127.0.0.1:9000"), parse_address("[::1]:9000")
    (('127.0.0.1', 9000), ('::1', 9000))
    """
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # a bare IPv6 address: ambiguous
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(
            f"--to {text!r}: expected HOST:PORT with a port within 1..65535 "
            f"(IPv6 as [ADDRESS]:PORT)"
        )
    return host, int(port_text)


class _Link:
    """One TCP connection to the receiver, re-established on failure within a budget."""

    def __init__(
        self, host: str, port: int, retry_s: float, timeout_s: float, stats: SendStats
    ) -> None:
        self.host, self.port = host, port
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.stats = stats
        self._sock: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._ever_connected = False
        self._connected_at = 0.0
        self._closes_in_a_row = 0  # connections the receiver ended, no failed connect between

    def send(self, frame: bytes) -> None:
        outage_since: float | None = None
        reason = ""
        delay = _BACKOFF_FIRST_S
        while True:
            if self._sock is not None and self._peer_closed():
                reason = "the receiver closed the connection"
                self._lost()
            if self._sock is None:
                try:
                    self._connect()
                except OSError as exc:
                    reason = exc.strerror or str(exc) or type(exc).__name__
                    self._closes_in_a_row = 0  # really down (restarting), not refusing
            if self._sock is not None:
                try:
                    self._sock.sendall(frame)
                except OSError as exc:
                    reason = exc.strerror or str(exc) or type(exc).__name__
                    self._lost()
                else:
                    if outage_since is not None:
                        took = time.monotonic() - outage_since
                        print(
                            f"pdm-edge send: {self.where}: connected after {took:.1f} s",
                            file=sys.stderr,
                        )
                    return
            now = time.monotonic()
            if outage_since is None:
                outage_since = now
                if self.retry_s > 0:
                    print(
                        f"pdm-edge send: {self.where}: {reason}; "
                        f"retrying for up to {self.retry_s:g} s",
                        file=sys.stderr,
                    )
            left = outage_since + self.retry_s - now
            if left <= 0:
                raise _Unreachable(
                    f"cannot send to {self.where}: {reason} (retried for {self.retry_s:g} s)"
                )
            time.sleep(min(delay, left))
            delay = min(2 * delay, _BACKOFF_MAX_S)

    def _lost(self) -> None:
        """The receiver ended the connection: drop it; stop if it keeps refusing the data."""
        # The receiver cannot say why it closes (it never writes). A restart leaves the
        # port closed for a moment, so a reconnect fails; a refusal (unknown sensor,
        # protocol error) ends every new connection at once, and the reconnects succeed.
        if time.monotonic() - self._connected_at >= _HEALTHY_CONNECTION_S:
            self._closes_in_a_row = 0
        self._closes_in_a_row += 1
        self._drop()
        if self._closes_in_a_row >= _MAX_CLOSES_IN_A_ROW:
            raise _Unreachable(
                f"{self.where} ended {self._closes_in_a_row} connections in a row although "
                f"it accepts new ones: it refuses this data (check --sensor and the channel "
                f"names against its pipeline; its log says why)"
            )

    def finish(self) -> None:
        """Half-close and wait (up to the timeout) until the receiver has read everything."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.timeout_s
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(4096):
                    break  # a normal close: every frame was read
        except TimeoutError:
            pass  # the frames were handed to TCP; nothing more to learn
        except OSError as exc:
            # pdm-edge resets a connection it refuses; any receiver resets one it
            # leaves with unread bytes. Either way frames were lost.
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise _Unreachable(
                f"{self.where} broke the connection before reading every frame ({reason}): "
                f"it refused the data or stopped (its log says which)"
            ) from exc
        finally:
            self._drop()

    def close(self) -> None:
        self._drop()

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.settimeout(self.timeout_s)  # a stalled receiver must not block for ever
        self._sock = sock
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ)
        self._connected_at = time.monotonic()
        if self._ever_connected:
            self.stats.reconnects += 1
        self._ever_connected = True

    def _peer_closed(self) -> bool:
        """The receiver never writes, so readable means it closed (FIN or RST)."""
        assert self._sel is not None and self._sock is not None
        if not self._sel.select(0):
            return False
        try:
            self._sock.setblocking(False)
            data = self._sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            if self._sock.fileno() != -1:
                self._sock.settimeout(self.timeout_s)
        return not data

    def _drop(self) -> None:
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _Sink(Protocol):
    def send(self, frame: bytes) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


class _MqttLink:
    """Publishes frames to one topic with QoS 1; paho-mqtt's thread (re)connects.

    ``send`` returns once the frame is handed to paho and no more than
    ``_MQTT_IN_FLIGHT`` frames await their PUBACK; ``finish`` waits for the rest.
    While waiting, an outage (no connection) longer than ``retry_s``, a refusal, or a
    connection that acknowledges nothing for ``timeout_s`` is an error.
    """

    def __init__(self, url: MqttUrl, retry_s: float, timeout_s: float, stats: SendStats) -> None:
        from pdm.sources.mqtt import connect_async, mqtt_client

        self.url = url
        self.where = str(url)
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.stats = stats
        self._cond = threading.Condition()
        self._pending: deque[int] = deque()  # message ids awaiting a PUBACK, oldest first
        self._acked: dict[int, ReasonCode] = {}
        self._state = "connecting"  # "up", or "down" with _reason
        self._reason = ""
        self._ever_connected = False
        self._resent = False
        self._warned_no_subscriber = False
        client = mqtt_client(url)  # clean session, client id assigned by the broker
        client.connect_timeout = timeout_s
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        connect_async(client, url, persistent=False)
        client.loop_start()

    # -- paho's network thread ------------------------------------------------------------------

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if reason.is_failure:
                self._state, self._reason = "down", f"the broker refused the connection: {reason}"
            else:
                self._state = "up"
                self._resent = bool(self._pending)  # paho sends those again after this call
                if self._ever_connected:
                    self.stats.reconnects += 1
                self._ever_connected = True
            self._cond.notify_all()

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        with self._cond:
            self._state, self._reason = "down", "cannot connect (broker down or unreachable)"
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if self._state == "up":
                self._state, self._reason = "down", f"connection lost ({reason})"
            self._cond.notify_all()

    def _on_publish(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._acked[mid] = reason
            self._cond.notify_all()

    # -- the sending thread ---------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        # paho publishes what it queued while disconnected only after on_connect, so a frame
        # published at once could overtake it: publish when connected with nothing held back.
        self._wait(lambda: self._state == "up" and not (self._resent and self._pending))
        self._resent = False
        info = self._client.publish(self.url.topic, frame, qos=1)
        with self._cond:
            self._pending.append(info.mid)
        self._wait(lambda: len(self._pending) < _MQTT_IN_FLIGHT)

    def finish(self) -> None:
        """Wait for every PUBACK, then disconnect."""
        self._wait(lambda: not self._pending)
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _wait(self, done: Callable[[], bool]) -> None:
        """Block until ``done()`` (checked under the lock, as acknowledgements arrive).

        Raises :class:`_Unreachable` when an outage outlasts ``retry_s``, or the broker,
        connected, acknowledges nothing for ``timeout_s``.
        """
        outage_since: float | None = None
        progress_at = time.monotonic()
        with self._cond:
            while True:
                while self._pending and self._pending[0] in self._acked:
                    reason = self._acked.pop(self._pending.popleft())
                    progress_at = time.monotonic()
                    self._check_ack(reason)
                if done():
                    return
                now = time.monotonic()
                if self._state == "down":
                    if outage_since is None:
                        outage_since = now
                        if self.retry_s > 0:
                            print(
                                f"pdm-edge send: {self.where}: {self._reason}; "
                                f"retrying for up to {self.retry_s:g} s",
                                file=sys.stderr,
                            )
                    if now - outage_since >= self.retry_s:
                        raise _Unreachable(
                            f"cannot send to {self.where}: {self._reason} "
                            f"(retried for {self.retry_s:g} s)"
                        )
                    progress_at = now
                elif self._state == "up":
                    if outage_since is not None:
                        print(
                            f"pdm-edge send: {self.where}: connected after "
                            f"{now - outage_since:.1f} s",
                            file=sys.stderr,
                        )
                        outage_since = None
                        progress_at = now
                    if now - progress_at > self.timeout_s:
                        raise _Unreachable(
                            f"{self.where}: the broker acknowledged nothing for "
                            f"{self.timeout_s:g} s ({len(self._pending)} frames waiting)"
                        )
                elif now - progress_at > self.timeout_s + 1.0:
                    # Still on the first attempt, and paho's connect timeout did not end it.
                    raise _Unreachable(f"cannot send to {self.where}: no answer from the broker")
                self._cond.wait(_MQTT_POLL_S)

    def _check_ack(self, reason: ReasonCode) -> None:
        if reason.is_failure:
            raise _Unreachable(f"{self.where}: the broker refused a frame: {reason}")
        if reason.getName() == "No matching subscribers" and not self._warned_no_subscriber:
            self._warned_no_subscriber = True
            print(
                f"pdm-edge send: {self.where}: the broker says nobody subscribes to "
                f"{self.url.topic!r}: frames are dropped until a subscriber (or its persistent "
                f"session) exists",
                file=sys.stderr,
            )


def _quantize(
    x: npt.NDArray[np.float64], scale: float | None, where: str
) -> tuple[npt.NDArray[np.int16], float]:
    """Float samples -> int16 counts and the scale (units per count)."""
    if scale is None:
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        scale = peak / 32767 if peak > 0 else 1.0
    counts = np.rint(x / scale)
    if np.abs(counts).max(initial=0) > 32767:
        big = float(x.flat[int(np.argmax(np.abs(counts)))])
        raise ConfigError(
            f"{where}: value {big:g} is {abs(big / scale):.0f} counts at --scale {scale:g}; "
            f"int16 holds at most 32767 (raise --scale or leave it out to scale per frame)"
        )
    return np.clip(counts, -32767, 32767).astype(np.int16), scale


def send_recording(
    rec: CsvRecording,
    host: str,
    port: int,
    sensor_id: str,
    *,
    dtype: Literal["float32", "float64", "int16"] = "float64",
    scale: float | None = None,
    speed: float | None = None,
    now: bool = False,
    retry_s: float = 10.0,
    timeout_s: float = 10.0,
    stats: SendStats | None = None,
    signer: FrameSigner | None = None,
) -> SendStats:
    """Send every chunk of ``rec`` as one frame to ``host:port``; see the module docstring.

    ``stats`` (updated as frames go out) lets a caller report progress after an error.
    ``signer``: sign every frame with that stream key (version 2 frames, for a receiver
    with stream keys).

    Raises
    ------
    PdmError
        The recording cannot be read (:class:`~pdm.errors.CsvError`), a value does
        not fit int16, the receiver was unreachable for ``retry_s`` seconds, or it
        refuses the data.
    """
    stats = SendStats() if stats is None else stats
    link = _Link(host, port, retry_s, timeout_s, stats)
    return _send(
        rec,
        link,
        sensor_id,
        dtype=dtype,
        scale=scale,
        speed=speed,
        now=now,
        stats=stats,
        signer=signer,
    )


def publish_recording(
    rec: CsvRecording,
    url: str | MqttUrl,
    sensor_id: str,
    *,
    dtype: Literal["float32", "float64", "int16"] = "float64",
    scale: float | None = None,
    speed: float | None = None,
    now: bool = False,
    retry_s: float = 10.0,
    timeout_s: float = 10.0,
    stats: SendStats | None = None,
) -> SendStats:
    """Publish every chunk of ``rec`` as one PDMS frame to an MQTT topic, QoS 1.

    ``url`` is ``mqtt://[USER@]HOST[:PORT]/TOPIC`` (no wildcards) or a parsed
    :class:`~pdm.sources.mqtt.MqttUrl`. Returns once the broker has acknowledged
    every frame; see the module docstring.

    Raises
    ------
    PdmError
        As :func:`send_recording`; and :class:`~pdm.errors.ConfigError` for a bad URL.
    """
    from pdm.sources.mqtt import parse_mqtt_url

    parsed = parse_mqtt_url(url, wildcards=False) if isinstance(url, str) else url
    stats = SendStats() if stats is None else stats
    link = _MqttLink(parsed, retry_s, timeout_s, stats)
    return _send(rec, link, sensor_id, dtype=dtype, scale=scale, speed=speed, now=now, stats=stats)


def _send(
    rec: CsvRecording,
    link: _Sink,
    sensor_id: str,
    *,
    dtype: Literal["float32", "float64", "int16"],
    scale: float | None,
    speed: float | None,
    now: bool,
    stats: SendStats,
    signer: FrameSigner | None = None,
) -> SendStats:
    started = time.monotonic()
    t_first: float | None = None
    shift_ns = 0
    try:
        for chunk in rec.chunks():
            n = chunk.n_samples
            if t_first is None:
                t_first = chunk.t0
                if now:
                    shift_ns = time.time_ns() - ns_from_seconds(chunk.t0)
            if speed:
                # A DAQ sends a block once its last sample is acquired.
                due = started + (chunk.t0 + n / chunk.fs - t_first) / speed
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
            t0_ns = ns_from_seconds(chunk.t0) + shift_ns
            sign: dict[str, Any] = {}
            if signer is not None:
                sign = {"key": signer.key, "counter": signer.next_counter()}
            if dtype == "int16":
                where = f"{rec.path}:{chunk.first_line}"
                counts, frame_scale = _quantize(
                    chunk.data.astype(np.float64, copy=False), scale, where
                )
                frame = encode_frame(
                    sensor_id,
                    counts,
                    fs=chunk.fs,
                    t0_ns=t0_ns,
                    channels=chunk.channels,
                    dtype="int16",
                    scale=frame_scale,
                    **sign,
                )
            else:
                frame = encode_frame(
                    sensor_id,
                    chunk.data,
                    fs=chunk.fs,
                    t0_ns=t0_ns,
                    channels=chunk.channels,
                    dtype=dtype,
                    **sign,
                )
            link.send(frame)
            stats.frames += 1
            stats.samples += n
            stats.seconds += n / chunk.fs
            stats.bytes += len(frame)
            stats.elapsed_s = time.monotonic() - started
        link.finish()
    finally:
        link.close()
        stats.elapsed_s = time.monotonic() - started
    return stats


# ---------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"send: {message} (see pdm-edge send --help)")


def _positive(what: str, value: float | None, high: float, *, allow_zero: bool = False) -> None:
    """``value`` within (0, high] (``[0, high]`` with ``allow_zero``); ``--timeout 1e308``
    overflowed the socket's deadline with a traceback."""
    if value is None:
        return
    ok = (value >= 0 if allow_zero else value > 0) and value <= high
    if not ok:
        raise ConfigError(
            f"{what}: must be {'>= 0' if allow_zero else '> 0'} and <= {high:g}, got {value:g}"
        )


#: ``pdm-edge send --help``'s description.
DESCRIPTION = (
    "Stream a CSV recording to a pdm-edge receiver over TCP, or publish it to an MQTT broker "
    "(PDMS frames, docs/stream-protocol.md), as a DAQ would. A one-line summary goes to stderr."
)


def build_parser() -> argparse.ArgumentParser:
    """``pdm-edge send``'s options on a parser of their own (for :func:`send_main`)."""
    p = _Parser(prog="pdm-edge send", description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``pdm-edge send``'s options, on ``p`` (the CLI's sub-parser or :func:`build_parser`'s)."""
    p.add_argument("file", metavar="FILE", help="CSV recording (.csv or .csv.gz)")
    p.add_argument(
        "--to",
        required=True,
        metavar="HOST:PORT|mqtt://HOST[:PORT]/TOPIC",
        help="the receiver, or an MQTT broker and topic: one frame per message, QoS 1 "
        "(mqtts:// for TLS; password from PDM_MQTT_PASSWORD or PDM_MQTT_PASSWORD_FILE)",
    )
    p.add_argument(
        "--sensor", required=True, metavar="ID", help="sensor id sent in every frame (1-64 bytes)"
    )
    p.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="pace to X times real time (default: as fast as possible)",
    )
    p.add_argument(
        "--chunk-samples",
        type=int,
        default=4096,
        metavar="N",
        help="samples per frame (default 4096; a gap in the file's time column ends a frame early)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64", "int16"),
        default="float64",
        help="sample type on the wire (default float64: the values arrive exactly as read)",
    )
    p.add_argument(
        "--scale",
        type=float,
        metavar="S",
        help="int16 only: channel units per count (default: per frame, peak / 32767)",
    )
    p.add_argument("--fs", type=float, metavar="HZ", help="sample rate (default: from the file)")
    p.add_argument("--columns", metavar="A,B", help="channels to send (default: every column)")
    p.add_argument(
        "--now",
        action="store_true",
        help="shift the timestamps so that the first sample is now (for a live service)",
    )
    p.add_argument(
        "--key-id",
        metavar="ID",
        help="sign every frame with this stream key (the receiver's key file names it); the "
        f"secret, hex, from {KEY_ENV} or {KEY_ENV}_FILE (docs/stream-protocol.md)",
    )
    p.add_argument(
        "--retry-s",
        type=float,
        default=10.0,
        metavar="S",
        help="keep trying to (re)connect for this long per outage (default 10; 0: no retry)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="connect and write timeout, s (default 10)",
    )


def send_main(argv: Sequence[str]) -> int:
    """``pdm-edge send`` (``argv`` without the ``send``); returns the exit status."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except PdmError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    return run(args)


def run(args: argparse.Namespace) -> int:
    """``pdm-edge send`` with its parsed options (:func:`add_arguments`); the exit status."""
    stats = SendStats()
    to = "?"
    n_channels = 0
    try:
        mqtt_url: MqttUrl | None = None
        host, port = "", 0
        if args.to.lower().startswith(("mqtt://", "mqtts://")):
            from pdm.sources.mqtt import parse_mqtt_url

            mqtt_url = parse_mqtt_url(args.to, wildcards=False, what="--to")
            to = str(mqtt_url)
        else:
            host, port = parse_address(args.to)
            to = args.to
        _positive("--speed", args.speed, 1e6)
        _positive("--fs", args.fs, 10e6)
        _positive("--scale", args.scale, 1e6)
        _positive("--retry-s", args.retry_s, 7 * 86_400, allow_zero=True)
        _positive("--timeout", args.timeout, 86_400)
        signer = None
        if args.key_id is not None:
            if mqtt_url is not None:
                raise ConfigError(
                    "--key-id: frames to MQTT are not signed (the broker authenticates: "
                    "credentials and TLS, docs/stream-protocol.md)"
                )
            signer = stream_signer(args.key_id)
        if args.scale is not None and args.dtype != "int16":
            raise ConfigError("--scale: only with --dtype int16")
        sid = args.sensor.encode("utf-8")
        if not 1 <= len(sid) <= MAX_NAME_BYTES or not args.sensor.isprintable():
            raise ConfigError(
                f"--sensor {args.sensor!r}: must be 1 to {MAX_NAME_BYTES} bytes of printable text"
            )
        n = args.chunk_samples
        if not 1 <= n <= MAX_SAMPLES:
            raise ConfigError(f"--chunk-samples: must be within 1..{MAX_SAMPLES}, got {n}")
        columns = None
        if args.columns is not None:
            columns = [c.strip() for c in args.columns.split(",")]
            if not all(columns):
                raise ConfigError(f"--columns {args.columns!r}: an empty column name")
        with CsvRecording(args.file, columns=columns, fs=args.fs, chunk_rows=n) as rec:
            n_channels = len(rec.channels)
            link: _Sink
            if mqtt_url is not None:
                from pdm.sources.mqtt import MAX_PAYLOAD_BYTES

                _check_channels(rec, n, args.dtype, MAX_PAYLOAD_BYTES)
                link = _MqttLink(mqtt_url, args.retry_s, args.timeout, stats)
            else:
                _check_channels(rec, n, args.dtype, MAX_FRAME_BYTES)
                link = _Link(host, port, args.retry_s, args.timeout, stats)
            # What send_recording and publish_recording do, past their link (signer is None
            # for MQTT: --key-id is refused above).
            _send(
                rec,
                link,
                args.sensor,
                dtype=cast(Literal["float32", "float64", "int16"], args.dtype),
                scale=args.scale,
                speed=args.speed,
                now=args.now,
                stats=stats,
                signer=signer,
            )
    except KeyboardInterrupt:
        if stats.frames:
            print(stats.summary(to, n_channels), file=sys.stderr)
        print("pdm-edge: interrupted", file=sys.stderr)
        return 130
    except PdmError as exc:
        if stats.frames:
            print(stats.summary(to, n_channels), file=sys.stderr)
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, _Unreachable) else 2
    print(stats.summary(to, n_channels), file=sys.stderr)
    return 0


def _check_channels(rec: CsvRecording, chunk_samples: int, dtype: str, limit: int) -> None:
    """Refuse, before connecting, what the protocol cannot carry (frames of ``limit`` bytes)."""
    c = len(rec.channels)
    if c > MAX_CHANNELS:
        raise ConfigError(
            f"{rec.path}: {c} channels; a frame carries at most {MAX_CHANNELS} "
            f"(pick some with --columns)"
        )
    for name in rec.channels:
        raw = name.encode("utf-8")
        if len(raw) > MAX_NAME_BYTES or not name.isprintable():
            raise ConfigError(
                f"{rec.path}: column {name!r}: a channel name must be 1 to {MAX_NAME_BYTES} "
                f"bytes of printable text"
            )
    size = chunk_samples * c * _ITEMSIZE[dtype]
    if size + _HEADER_ROOM > limit:
        most = (limit - _HEADER_ROOM) // (c * _ITEMSIZE[dtype])
        raise ConfigError(
            f"--chunk-samples {chunk_samples}: {c} channels of {dtype} make frames of "
            f"{size} bytes, over the {limit}-byte limit; use at most {most}"
        )
