"""What alarm logic hands to actions and history: one transition of an alarm state, as a
versioned event, and the stable ids of events.

On the ground floor because the alarms make these values and the actions (webhooks, their
outbox), history and the publishers carry them: none of those may import the others.

The webhook body is :meth:`AlarmEvent.payload` (schema ``pdm-edge.alarm/1``,
documented in ``docs/alarms.md``); the event ``id`` is stable — the same
transition recorded twice (a resumed replay, a restart) has the same id — and
serves receivers as an idempotency key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from pdm.core.time import iso_time

__all__ = ["SCHEMA", "STATES", "AlarmEvent", "event_id"]

#: Version of the webhook payload; bump on any incompatible change.
SCHEMA = "pdm-edge.alarm/1"
#: Alarm states, least to most severe (``sensor_fault`` is per sensor, ``appliance_fault``
#: is the appliance's own: neither is on this scale).
STATES = ("ok", "alert", "danger", "trip")


def event_id(machine: str, t_ns: int, *parts: str) -> str:
    """A stable id: the same event recorded twice (a resend after a crash) has the same id."""
    h = hashlib.sha256("\x1f".join((machine, str(t_ns), *parts)).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One alarm-state transition of a machine (``sensor`` '') or of one sensor.

    Attributes
    ----------
    appliance : the appliance's id (``PDM_APPLIANCE_ID`` or the host name)
    machine, sensor : where; sensor is '' for the machine's own state
    old, new : states: ``ok``, ``alert``, ``danger``, ``trip``, ``sensor_fault``,
        ``appliance_fault`` (and back)
    reason : one line saying why, with the numbers
    t_ns : time of the window that decided it, ns since the epoch
    created_ns : wall-clock time the transition was made, ns
    score : anomaly score (1.0 = alert threshold), or None
    thresholds : alert/danger thresholds and limits in force
    top_features : the most deviant features (``feature``, ``value``, ``z``)
    diagnosis : e.g. ``bearing_outer_race``, or None
    capture : id of the raw-window capture behind it ('' if none)
    """

    appliance: str
    machine: str
    sensor: str
    old: str
    new: str
    reason: str
    t_ns: int
    created_ns: int
    score: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    top_features: tuple[dict[str, Any], ...] = ()
    diagnosis: str | None = None
    capture: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self,
                "id",
                event_id(self.machine, self.t_ns, self.sensor, self.old, self.new),
            )

    @property
    def severity(self) -> str:
        """``info`` (back to ok), ``warning`` (alert, sensor_fault) or ``alarm``."""
        if self.new in ("danger", "trip", "appliance_fault"):
            return "alarm"
        if self.new in ("alert", "sensor_fault"):
            return "warning"
        return "info"

    def payload(self) -> dict[str, Any]:
        """The webhook body (JSON-ready), schema :data:`SCHEMA`."""
        score = None if self.score is None or not math.isfinite(self.score) else self.score
        return {
            "schema": SCHEMA,
            "event_id": self.id,
            "appliance_id": self.appliance,
            "machine": self.machine,
            "sensor": self.sensor or None,
            "old_state": self.old,
            "new_state": self.new,
            "severity": self.severity,
            "reason": self.reason,
            "score": score,
            "thresholds": dict(self.thresholds),
            "top_features": [dict(f) for f in self.top_features],
            "diagnosis": self.diagnosis,
            "capture_id": self.capture or None,
            "window_time": iso_time(self.t_ns / 1e9),
            "created_at": iso_time(self.created_ns / 1e9),
        }
