"""MQTT out: every machine's state retained on a broker, each transition as an event.

Topics (docs/integration.md has the payloads), ``BASE`` = ``<prefix>/<appliance id>``
(prefix ``pdm-edge`` unless the URL names one)::

    BASE/status                        online | offline      retained; birth, and last will
    BASE/info                          JSON: appliance, version, machines         retained
    BASE/<machine>/status              JSON state document (pdm-edge.state/1)     retained
    BASE/<machine>/state               ok | alert | danger | trip | unknown       retained
    BASE/<machine>/score               anomaly score (1.0 = alert threshold)      retained
    BASE/<machine>/diagnosis           e.g. bearing_outer_race                    retained
    BASE/<machine>/velocity_rms_mm_s   highest channel's velocity RMS, mm/s       retained
    BASE/<machine>/iso_zone            A | B | C | D                              retained
    BASE/<machine>/sensor/<sensor>     ok | sensor_fault                          retained
    BASE/<machine>/event               each transition: the webhook's pdm-edge.alarm/1, QoS 1
    BASE/<machine>/cmd/ack             (in, when enabled) a signed acknowledge (commands.py)
    BASE/<machine>/cmd/result          (out) what became of a command

A value that is missing (no score yet) is an empty retained payload, which clears the
topic. Every message is QoS 1 (configurable). When to publish:

* the state document and the text values (state, diagnosis, zone, sensors) at once on any
  change of what they say;
* numbers (score, velocity) on change, at most every ``value_interval_s`` per machine;
* everything again every ``interval_s``, and on every (re)connect — the retained tree is
  rebuilt from the newest snapshots after an outage, whatever was missed meanwhile.

Transitions are QoS 1 events: while the broker is away paho keeps them in memory, at most
``max_queued`` (then the oldest publish fails and is counted in :attr:`dropped`); the
webhooks' outbox is the durable record, and the retained state is right after reconnect.

Home Assistant discovery (``homeassistant = true``) announces each machine as a device with
sensors for state, score, velocity, ISO zone and diagnosis and a problem sensor per sensor,
all read from ``BASE/<machine>/status`` and available while ``BASE/status`` is ``online``.

Commands in are off by default. On, they need a broker user and password (so the broker's
ACL decides who may publish to ``cmd/ack``) *and* a command key: each command is signed
(:mod:`pdm.publish.commands`).

Sparkplug B is not spoken: it needs a primary host application to be worth its protobuf
payloads, sequence numbers and rebirth handshakes, and the plants this appliance serves
run plain-JSON consumers (Node-RED, Telegraf, Home Assistant, cloud bridges); see
docs/integration.md for the reasoning.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from pdm import __version__
from pdm.errors import ConfigError
from pdm.loglimit import LogLimiter
from pdm.publish.commands import CommandRefused, CommandVerifier
from pdm.publish.model import (
    STATE_CODES,
    Acknowledge,
    MachineInfo,
    Snapshot,
    TransitionEvent,
)
from pdm.sources.mqtt import MqttUrl, parse_mqtt_url

__all__ = ["DEFAULT_PREFIX", "MqttPublisher", "MqttSettings", "parse_publish_url", "tls_context"]

log = logging.getLogger("pdm.publish")

DEFAULT_PREFIX = "pdm-edge"
KEEPALIVE_S = 30
_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def parse_publish_url(url: str, what: str = "--publish") -> MqttUrl:
    """``mqtt[s]://[USER@]HOST[:PORT][/PREFIX]`` (prefix default :data:`DEFAULT_PREFIX`);
    ConfigError naming ``what`` otherwise (no wildcards; no password in the URL)."""
    scheme, sep, rest = url.partition("://")
    if sep and "/" not in rest.split("?")[0]:
        host, q, query = rest.partition("?")
        url = f"{scheme}://{host}/{DEFAULT_PREFIX}{q}{query}"
    parsed = parse_mqtt_url(url, wildcards=False, what=what)
    if parsed.topic.startswith("/") or parsed.topic.endswith("/") or "//" in parsed.topic:
        raise ConfigError(f"{what} {url!r}: the prefix {parsed.topic!r} has an empty level")
    return parsed


@dataclass(frozen=True)
class MqttSettings:
    """How to reach the broker and what to publish (the ``[publish.mqtt]`` table).

    ``url.topic`` is the prefix; ``password`` and ``command_key`` were read from their files
    (or ``PDM_PUBLISH_MQTT_PASSWORD``); times in s.
    """

    url: MqttUrl
    password: bytes | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    qos: int = 1
    interval_s: float = 60.0
    value_interval_s: float = 5.0
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"
    commands: bool = False
    command_key: bytes | None = None
    client_id: str | None = None
    max_queued: int = 10_000


def tls_context(s: MqttSettings) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=s.ca_file or None)
        if s.cert_file or s.key_file:
            if not (s.cert_file and s.key_file):
                raise ConfigError("[publish.mqtt] cert_file and key_file go together")
            ctx.load_cert_chain(s.cert_file, s.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"[publish.mqtt] TLS files (ca_file={s.ca_file}, cert_file={s.cert_file}, "
            f"key_file={s.key_file}): {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    return ctx


def _number(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(round(x, 6))


class MqttPublisher:
    """See the module docstring. ``acknowledge`` carries out valid commands (when enabled)."""

    name = "mqtt"

    def __init__(
        self, settings: MqttSettings, appliance: str, *, acknowledge: Acknowledge | None = None
    ) -> None:
        s = self.settings = settings
        self.appliance = appliance
        self.base = f"{s.url.topic}/{appliance}"
        if s.commands:
            if s.url.username is None or not s.password:
                raise ConfigError(
                    "[publish.mqtt] commands = true needs a broker user and password (the "
                    "broker's ACL decides who may publish commands): mqtt://USER@HOST/… and "
                    "password_file"
                )
            if s.command_key is None or acknowledge is None:
                raise ConfigError("[publish.mqtt] commands = true needs command_key_file")
            try:
                self._verifier: CommandVerifier | None = CommandVerifier(s.command_key, appliance)
            except ValueError as exc:
                raise ConfigError(f"[publish.mqtt] command_key_file: {exc}") from exc
        else:
            self._verifier = None
        self._acknowledge = acknowledge
        if s.password is not None and s.url.username is None:
            raise ConfigError(f"[publish.mqtt] a password is set but {s.url} names no user")
        v5 = s.url.protocol == "5"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"pdm-pub-{_ID_SAFE.sub('-', appliance)}"[:64],
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        if s.url.username is not None:
            self.client.username_pw_set(s.url.username, cast(str | None, s.password))
        if s.url.tls:
            self.client.tls_set_context(tls_context(s))
        self.client.reconnect_delay_set(1, 30)
        self.client.max_queued_messages_set(s.max_queued)
        self.client.will_set(f"{self.base}/status", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._lock = threading.Lock()
        self._machines: list[MachineInfo] = []
        self._snaps: dict[str, Snapshot] = {}
        self._sent: dict[str, bytes] = {}  # topic -> payload last published (retained tree)
        self._values_at: dict[str, float] = {}  # machine -> when its numbers were published
        self._full_at = time.monotonic()
        self._connected = False
        self._outage_logged = False
        self._started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._limit = LogLimiter(60.0)
        self._acks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdm-publish-cmd")
        self.published = 0
        self.dropped = 0
        self.commands_refused = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, machines: Sequence[MachineInfo]) -> None:
        self._machines = list(machines)
        for m in machines:
            self._snaps[m.id] = Snapshot(self.appliance, m.id, m.name, sensors=m.sensors)
        u = self.settings.url
        self.client.connect_async(u.host, u.port, KEEPALIVE_S)
        self.client.loop_start()
        log.warning("MQTT out: %s, topics %s/…", u.where, self.base)

    def close(self) -> None:
        """Say ``offline`` (retained) and disconnect; the last will is for when we cannot."""
        try:
            if self._connected:
                info = self.client.publish(f"{self.base}/status", "offline", qos=1, retain=True)
                info.wait_for_publish(1.0)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        thread = getattr(self.client, "_thread", None)
        self.client._thread_terminate = True  # loop_stop() without its unbounded join
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            thread.join(3.0)
        self._acks.shutdown(wait=False, cancel_futures=True)

    @property
    def connected(self) -> bool:
        return self._connected

    # -- the hub's calls ------------------------------------------------------------------------
    def publish_state(self, snap: Snapshot) -> None:
        with self._lock:
            if snap.machine not in self._snaps:
                return
            self._snaps[snap.machine] = snap
            if not self._connected:
                return  # the whole tree is published again on reconnect
            now = time.monotonic()
            numbers = (
                now - self._values_at.get(snap.machine, -1e18) >= self.settings.value_interval_s
            )
            msgs = self._machine_messages(snap, numbers=numbers)
            if numbers:
                self._values_at[snap.machine] = now
        self._send(msgs, only_changed=True)

    def publish_transition(self, event: TransitionEvent) -> None:
        payload = json.dumps(dict(event.payload), separators=(",", ":")).encode()
        # Queued by paho while the broker is away (max_queued): an event is never skipped here.
        self._publish(f"{self.base}/{event.machine}/event", payload, retain=False)

    def tick(self, heartbeat: int, fresh: Mapping[str, bool]) -> None:
        """Every interval the whole tree; else the numbers that changed and are due (a value
        that stopped changing still reaches the broker)."""
        now = time.monotonic()
        if not self._connected:
            return
        if now - self._full_at >= self.settings.interval_s:
            self._full_at = now
            self._publish_all()
            return
        with self._lock:
            snaps = list(self._snaps.values())
        for s in snaps:
            self.publish_state(s)

    # -- messages -------------------------------------------------------------------------------
    def _machine_messages(self, snap: Snapshot, *, numbers: bool) -> list[tuple[str, bytes]]:
        b = f"{self.base}/{snap.machine}"
        doc = snap.document()
        out = [
            (f"{b}/state", snap.state.encode()),
            (f"{b}/diagnosis", (snap.diagnosis or "").encode()),
            (f"{b}/iso_zone", (snap.iso_zone or "").encode()),
        ]
        out += [(f"{b}/sensor/{s}", st.encode()) for s, st in snap.sensor_states]
        if numbers:
            out += [
                (f"{b}/score", _number(snap.score).encode()),
                (f"{b}/velocity_rms_mm_s", _number(snap.velocity_rms_mm_s).encode()),
            ]
        # The document when what it says changed (numbers only when they are due).
        key = f"{b}/status"
        text = json.dumps(doc, separators=(",", ":")).encode()
        if numbers or self._doc_changed(key, doc):
            out.append((key, text))
        return out

    def _doc_changed(self, key: str, doc: Mapping[str, Any]) -> bool:
        old = self._sent.get(key)
        if old is None:
            return True
        try:
            prev = json.loads(old)
        except ValueError:
            return True
        volatile = ("score", "velocity_rms_mm_s", "diagnosis_confidence", "last_window")
        return any(prev.get(k) != v for k, v in doc.items() if k not in volatile)

    def _info(self) -> bytes:
        return json.dumps(
            {
                "schema": "pdm-edge.appliance/1",
                "appliance_id": self.appliance,
                "version": __version__,
                "started_at": self._started_at,
                "machines": [
                    {"id": m.id, "name": m.name, "sensors": list(m.sensors)} for m in self._machines
                ],
                "state_codes": dict(STATE_CODES),
                "commands": self._verifier is not None,
            },
            separators=(",", ":"),
        ).encode()

    def _publish_all(self) -> None:
        """Birth, info, discovery and every machine's retained tree (on connect, every interval)."""
        with self._lock:
            msgs = [(f"{self.base}/status", b"online"), (f"{self.base}/info", self._info())]
            if self.settings.homeassistant:
                msgs += self._discovery()
            for snap in self._snaps.values():
                msgs += self._machine_messages(snap, numbers=True)
                self._values_at[snap.machine] = time.monotonic()
        self._send(msgs, only_changed=False)

    def _send(self, msgs: list[tuple[str, bytes]], *, only_changed: bool) -> None:
        for topic, payload in msgs:
            if only_changed and self._sent.get(topic) == payload:
                continue
            if self._publish(topic, payload, retain=True):
                self._sent[topic] = payload

    def _publish(self, topic: str, payload: bytes, *, retain: bool) -> bool:
        try:
            info = self.client.publish(topic, payload, qos=self.settings.qos, retain=retain)
        except (ValueError, RuntimeError) as exc:
            self.dropped += 1
            self._log("publish", f"{topic}: {exc}")
            return False
        if info.rc == paho.MQTT_ERR_SUCCESS or info.rc == paho.MQTT_ERR_NO_CONN:
            # NO_CONN: QoS > 0 messages wait in paho's queue for the reconnect.
            self.published += 1
            return info.rc == paho.MQTT_ERR_SUCCESS or self.settings.qos > 0
        self.dropped += 1
        self._log("queue", f"{topic}: not queued ({paho.error_string(info.rc)})")
        return False

    def _discovery(self) -> list[tuple[str, bytes]]:
        """Home Assistant MQTT discovery: one device per machine (retained configs)."""
        p = self.settings.discovery_prefix
        app = _ID_SAFE.sub("_", self.appliance)
        avail = {
            "availability_topic": f"{self.base}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        out = []
        for m in self._machines:
            node = f"pdm_edge_{app}_{_ID_SAFE.sub('_', m.id)}"
            device = {
                "identifiers": [node],
                "name": m.name or m.id,
                "manufacturer": "pdm-edge",
                "model": "vibration monitor",
                "sw_version": __version__,
            }
            status = f"{self.base}/{m.id}/status"
            entities: list[tuple[str, str, dict[str, Any]]] = [
                ("sensor", "state", {"name": "Alarm state", "value_template": "{{ value_json.state }}",
                                     "device_class": "enum", "options": list(STATE_CODES),
                                     "json_attributes_topic": status}),
                ("sensor", "score", {"name": "Anomaly score", "state_class": "measurement",
                                     "value_template": "{{ value_json.score }}"}),
                ("sensor", "velocity", {"name": "Velocity RMS", "unit_of_measurement": "mm/s",
                                        "device_class": "speed", "state_class": "measurement",
                                        "value_template": "{{ value_json.velocity_rms_mm_s }}"}),
                ("sensor", "iso_zone", {"name": "ISO 10816-3 zone", "value_template": "{{ value_json.iso_zone }}"}),
                ("sensor", "diagnosis", {"name": "Diagnosis", "value_template": "{{ value_json.diagnosis }}"}),
                ("binary_sensor", "alarm", {"name": "Alarm", "device_class": "problem",
                                            "value_template": "{{ 'ON' if value_json.state in ['alert', 'danger', 'trip'] else 'OFF' }}"}),
            ]  # fmt: skip
            for sensor in m.sensors:
                entities.append(
                    (
                        "binary_sensor",
                        f"sensor_{_ID_SAFE.sub('_', sensor)}",
                        {
                            "name": f"Sensor {sensor} fault",
                            "device_class": "problem",
                            "state_topic": f"{self.base}/{m.id}/sensor/{sensor}",
                            "payload_on": "sensor_fault",
                            "payload_off": "ok",
                        },
                    )
                )
            for component, obj, cfg in entities:
                doc = {"state_topic": status, **cfg, **avail, "device": device,
                       "unique_id": f"{node}_{obj}", "object_id": f"{node}_{obj}"}  # fmt: skip
                out.append((f"{p}/{component}/{node}/{obj}/config", json.dumps(doc).encode()))
        return out

    # -- paho's thread ----------------------------------------------------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            self._down(f"the broker refused the connection: {reason}")
            return
        self._connected = True
        if self._outage_logged:
            log.warning("MQTT out: %s: connected again", self.settings.url.where)
        self._outage_logged = False
        with self._lock:
            self._sent.clear()  # the broker may have lost its retained messages: send all
        self._publish_all()
        if self._verifier is not None:
            client.subscribe(f"{self.base}/+/cmd/ack", qos=1)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connected = False
        self._down(f"connection lost: {reason}")

    def _down(self, why: str) -> None:
        self._connected = False
        if not self._outage_logged:
            self._outage_logged = True
            log.warning(
                "MQTT out: %s: %s; states are published again once it is back",
                self.settings.url.where,
                why,
            )

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """A command (subscribed only when enabled); carried out off paho's thread. Whatever
        a message does, it must not raise here: an exception ends paho's network thread, and
        with it every state, event and result this publisher sends."""
        try:
            self._command(msg)
        except Exception as exc:
            self.commands_refused += 1
            self._log("command bug", f"a command could not be handled: {type(exc).__name__}")
            log.debug("MQTT out: command traceback", exc_info=True)

    def _command(self, msg: paho.MQTTMessage) -> None:
        verifier = self._verifier
        if verifier is None or msg.retain:
            return  # a retained command is an old one: never acted on
        parts = msg.topic.split("/")
        machine = parts[-3] if len(parts) >= 3 else ""
        if msg.topic != f"{self.base}/{machine}/cmd/ack" or machine not in self._snaps:
            # The topic's level is the sender's to choose (up to 64 KiB, any character): shown
            # as a bounded repr, never as it came.
            self._refuse("", None, f"{msg.topic[:200]!r}: no such machine")
            return
        try:
            by, comment, nonce = verifier.check(machine, bytes(msg.payload))
        except CommandRefused as exc:
            self._refuse(machine, None, str(exc))
            return
        self._acks.submit(self._run_ack, machine, by, comment, nonce)

    def _run_ack(self, machine: str, by: str, comment: str, nonce: str) -> None:
        assert self._acknowledge is not None
        try:
            message = self._acknowledge(machine, by, comment)
            ok = True
        except (KeyError, ValueError) as exc:
            message, ok = str(exc).strip("'\""), False
        except Exception as exc:  # the service's own trouble (a worker down): say so
            message, ok = f"{type(exc).__name__}: {exc}", False
        if ok:
            log.warning("MQTT out: %s acknowledged by %s over MQTT: %s", machine, by, message)
        self._result(machine, nonce, ok, message)

    def _refuse(self, machine: str, nonce: str | None, why: str) -> None:
        self.commands_refused += 1
        self._log("command", f"command for {machine or '?'} refused: {why}")
        if machine in self._snaps:
            self._result(machine, nonce, False, f"refused: {why}")

    def _result(self, machine: str, nonce: str | None, ok: bool, message: str) -> None:
        doc = {"schema": "pdm-edge.cmd-result/1", "machine": machine, "nonce": nonce,
               "ok": ok, "message": message}  # fmt: skip
        self._publish(f"{self.base}/{machine}/cmd/result", json.dumps(doc).encode(), retain=False)

    def _log(self, key: str, line: str) -> None:
        held = self._limit.check(key)
        if held is not None:
            log.warning("MQTT out: %s%s", line, f" ({held} more)" if held else "")
