"""What the publishers publish: a machine's snapshot, a transition, the codes, and the protocol.

A :class:`Snapshot` is one machine's ``GET /status`` entry, trimmed to what the plant is told
(the same function builds both, so MQTT, OPC UA, Modbus and ``/status`` agree by construction)
and checked field by field when it is read (:meth:`Snapshot.from_status`): in a service with
workers it crosses a process boundary. A :class:`TransitionEvent` is one alarm transition as
the webhooks send it (schema ``pdm-edge.alarm/1``, :class:`pdm.core.events.AlarmEvent`).

Numeric codes (OPC UA ``StateCode``, the Modbus register map) are fixed here and listed in
docs/integration.md; they only ever grow.

>>> s = Snapshot.from_status("edge-1", {"id": "pump-01", "state": "danger", "score": 2.5,
...     "iso_zone": "C", "sensors": ["de", "fe"], "sensor_faults": {"fe": "flatline"}})
>>> s.state_code, s.iso_zone_code, s.sensor_states
(2, 3, (('de', 'ok'), ('fe', 'sensor_fault')))
>>> s.sensor_fault_bits
2
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pdm.core.events import SCHEMA as EVENT_SCHEMA
from pdm.diagnosis import DIAGNOSES

__all__ = [
    "DIAGNOSIS_CODES",
    "ISO_ZONE_CODES",
    "SNAPSHOT_KEYS",
    "STATE_CODES",
    "STATE_SCHEMA",
    "Acknowledge",
    "MachineInfo",
    "Publisher",
    "Snapshot",
    "TransitionEvent",
]

#: Version of the published state document; bump on any incompatible change.
STATE_SCHEMA = "pdm-edge.state/1"
#: A machine's alarm state as a number: ``unknown`` when its process does not answer.
STATE_CODES: Mapping[str, int] = {"ok": 0, "alert": 1, "danger": 2, "trip": 3, "unknown": 4}
#: ISO 10816-3 zone as a number (0: no velocity known).
ISO_ZONE_CODES: Mapping[str, int] = {"A": 1, "B": 2, "C": 3, "D": 4}
#: Diagnosis label as a number (0: none). Append-only: a new label takes the next number.
DIAGNOSIS_CODES: Mapping[str, int] = {label: i + 1 for i, label in enumerate(DIAGNOSES)}
#: The keys of a ``/status`` entry a snapshot reads (the rest stays in ``/status``).
SNAPSHOT_KEYS = (
    "id", "name", "state", "since", "reason", "acknowledged", "score", "thresholds",
    "diagnosis", "diagnosis_confidence", "velocity_rms_mm_s", "iso_zone", "sensors",
    "sensor_faults", "appliance_fault", "model_version", "last_window", "learning",
)  # fmt: skip

_MAX_TEXT = 2000  # characters of a reason or fault kept (a status line, not a log)


def _text(d: Mapping[str, Any], key: str, default: str = "") -> str:
    v = d.get(key)
    return v[:_MAX_TEXT] if isinstance(v, str) else default


def _opt_text(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v[:_MAX_TEXT] if isinstance(v, str) and v else None


def _number(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def iso_datetime(text: str | None) -> dt.datetime | None:
    """An ISO 8601 time of ``/status`` (``…Z`` or ``+00:00``) as an aware datetime, or None."""
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One machine's published state (see the module docstring); units in the names.

    ``state``: ``ok``, ``alert``, ``danger``, ``trip``, or ``unknown`` (its process does not
    answer); ``score``: anomaly score, 1.0 = alert threshold (None: not scored);
    ``velocity_rms_mm_s``: the highest velocity RMS of the machine's channels in the newest
    window, mm/s, with its ISO 10816-3 ``iso_zone`` (``A``–``D``); ``sensors``: the pipeline's
    sensor ids in order; times are ISO 8601 UTC strings as ``/status`` has them.
    """

    appliance: str
    machine: str
    name: str = ""
    state: str = "unknown"
    since: str | None = None
    reason: str = ""
    ack_by: str | None = None
    ack_at: str | None = None
    ack_comment: str = ""
    score: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    diagnosis: str | None = None
    diagnosis_confidence: float | None = None
    velocity_rms_mm_s: float | None = None
    iso_zone: str | None = None
    sensors: tuple[str, ...] = ()
    sensor_faults: Mapping[str, str] = field(default_factory=dict)
    appliance_fault: str = ""
    model_version: str | None = None
    last_window: str | None = None
    learning: bool = False

    @classmethod
    def from_status(cls, appliance: str, d: Mapping[str, Any]) -> Snapshot:
        """From one ``/status`` entry; a field of the wrong type reads as absent."""
        machine = d.get("id")
        if not isinstance(machine, str) or not machine:
            raise ValueError("a status entry without a machine id")
        state = d.get("state")
        ack = d.get("acknowledged")
        ack = ack if isinstance(ack, Mapping) else {}
        thresholds = d.get("thresholds")
        faults = d.get("sensor_faults")
        sensors = d.get("sensors")
        zone = d.get("iso_zone")
        conf = _number(d, "diagnosis_confidence")
        return cls(
            appliance=appliance,
            machine=machine,
            name=_text(d, "name", machine),
            state=state if isinstance(state, str) and state in STATE_CODES else "unknown",
            since=_opt_text(d, "since"),
            reason=_text(d, "reason"),
            ack_by=_opt_text(ack, "by"),
            ack_at=_opt_text(ack, "at"),
            ack_comment=_text(ack, "comment"),
            score=_number(d, "score"),
            thresholds={
                str(k): float(v)
                for k, v in (thresholds.items() if isinstance(thresholds, Mapping) else ())
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            },
            diagnosis=_opt_text(d, "diagnosis"),
            diagnosis_confidence=None if conf is None else min(1.0, max(0.0, conf)),
            velocity_rms_mm_s=_number(d, "velocity_rms_mm_s"),
            iso_zone=zone if isinstance(zone, str) and zone in ISO_ZONE_CODES else None,
            sensors=tuple(
                s
                for s in (sensors if isinstance(sensors, list | tuple) else ())
                if isinstance(s, str)
            ),
            sensor_faults={
                str(k): str(v)[:_MAX_TEXT]
                for k, v in (faults.items() if isinstance(faults, Mapping) else ())
            },
            appliance_fault=_text(d, "appliance_fault"),
            model_version=_opt_text(d, "model_version"),
            last_window=_opt_text(d, "last_window"),
            learning=d.get("learning") is True,
        )

    # -- derived values -------------------------------------------------------------------
    @property
    def state_code(self) -> int:
        return STATE_CODES.get(self.state, STATE_CODES["unknown"])

    @property
    def iso_zone_code(self) -> int:
        return ISO_ZONE_CODES.get(self.iso_zone or "", 0)

    @property
    def diagnosis_code(self) -> int:
        return DIAGNOSIS_CODES.get(self.diagnosis or "", 0)

    @property
    def latched(self) -> bool:
        return self.state in ("danger", "trip")

    @property
    def acknowledged(self) -> bool:
        return self.ack_by is not None

    @property
    def sensor_states(self) -> tuple[tuple[str, str], ...]:
        """``(sensor id, "ok" | "sensor_fault")`` of every sensor, the pipeline's order first."""
        known = list(self.sensors) + [s for s in self.sensor_faults if s not in self.sensors]
        return tuple((s, "sensor_fault" if s in self.sensor_faults else "ok") for s in known)

    @property
    def sensor_fault_bits(self) -> int:
        """Bit i set while the pipeline's i-th sensor (of the first 16) is in sensor_fault."""
        return sum(1 << i for i, s in enumerate(self.sensors[:16]) if s in self.sensor_faults)

    def document(self) -> dict[str, Any]:
        """The JSON state document (schema :data:`STATE_SCHEMA`, docs/integration.md)."""
        return {
            "schema": STATE_SCHEMA,
            "appliance_id": self.appliance,
            "machine": self.machine,
            "name": self.name,
            "state": self.state,
            "state_code": self.state_code,
            "since": self.since,
            "reason": self.reason,
            "acknowledged": (
                {"by": self.ack_by, "at": self.ack_at, "comment": self.ack_comment}
                if self.ack_by is not None
                else None
            ),
            "score": self.score,
            "thresholds": dict(self.thresholds),
            "diagnosis": self.diagnosis,
            "diagnosis_confidence": self.diagnosis_confidence,
            "velocity_rms_mm_s": self.velocity_rms_mm_s,
            "iso_zone": self.iso_zone,
            "sensors": dict(self.sensor_states),
            "sensor_faults": dict(self.sensor_faults),
            "appliance_fault": self.appliance_fault or None,
            "model_version": self.model_version,
            "last_window": self.last_window,
            "learning": self.learning,
        }


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """One transition, as the webhook payload ``pdm-edge.alarm/1`` has it (``payload``)."""

    payload: Mapping[str, Any]

    @classmethod
    def from_payload(cls, d: Mapping[str, Any]) -> TransitionEvent:
        """Checked: the schema, a machine and the two states must be there."""
        if d.get("schema") != EVENT_SCHEMA:
            raise ValueError(f"not a {EVENT_SCHEMA} event: schema {d.get('schema')!r}")
        for key in ("machine", "old_state", "new_state", "event_id"):
            if not isinstance(d.get(key), str) or not d.get(key):
                raise ValueError(f"a transition event without {key}")
        return cls(dict(d))

    @property
    def machine(self) -> str:
        return str(self.payload["machine"])

    @property
    def sensor(self) -> str:
        return str(self.payload.get("sensor") or "")

    @property
    def old(self) -> str:
        return str(self.payload["old_state"])

    @property
    def new(self) -> str:
        return str(self.payload["new_state"])

    @property
    def event_id(self) -> str:
        return str(self.payload["event_id"])

    @property
    def reason(self) -> str:
        return str(self.payload.get("reason") or "")


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """What a publisher knows of a machine before any state: for its address space or map."""

    id: str
    name: str
    sensors: tuple[str, ...]


class Acknowledge(Protocol):
    """The appliance's acknowledge (the control API's backend): returns its one-line message;
    raises ``KeyError`` (unknown machine) or ``ValueError`` (bad ``by``/``comment``)."""

    def __call__(self, machine: str, by: str, comment: str) -> str: ...


class Publisher(Protocol):
    """One way out to the plant (MQTT, OPC UA, Modbus). The hub calls these on its own thread,
    one at a time; each returns at once (its I/O runs on a thread or loop of its own)."""

    #: For messages: ``mqtt``, ``opcua``, ``modbus``.
    name: str

    def start(self, machines: Sequence[MachineInfo]) -> None:
        """Build what is served (address space, register map, discovery) and start serving."""
        ...

    def publish_state(self, snap: Snapshot) -> None:
        """The machine's newest snapshot (on change, and every tick for some)."""
        ...

    def publish_transition(self, event: TransitionEvent) -> None:
        """One transition, after the snapshot that shows its new state."""
        ...

    def tick(self, heartbeat: int, fresh: Mapping[str, bool]) -> None:
        """Once a second: the appliance's heartbeat counter and which machines are fresh."""
        ...

    def close(self) -> None:
        """Stop serving (last will, sockets closed); within a second or two."""
        ...
