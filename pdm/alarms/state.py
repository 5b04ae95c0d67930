"""The alarm state machine: a pure function from (state, window result, time) to (state, transitions).

States, least to most severe: ``ok`` → ``alert`` → ``danger`` → ``trip``. Each
window gives a *level* on that scale — the highest of:

* the anomaly score against the model's thresholds (alert 1.0, danger from the
  card). The score alone never trips (API 670 practice: a shutdown rests on a
  calibrated protection limit or on two independent kinds of evidence). With
  ``score_trip`` set, a window at or above it is at *trip* only when the same
  window also shows one kind of evidence of ``trip_requires``: ISO velocity above
  the C/D boundary on some channel (``"iso"``), a feature limit at danger or above
  (``"limit"``), or a named fault diagnosis (bearing or running speed, not
  ``unknown`` or ``bearing_uncertain``) with ``diagnosis_confidence`` at least
  ``trip_diagnosis_confidence`` (``"diagnosis"``). ``trip_requires = ()`` lets
  the score trip alone (not recommended; ``pdm-edge check`` says so);
* the ISO 10816-3 zone of each channel's velocity RMS (zone C → alert, D →
  danger by default) and ``iso_trip`` × the C/D boundary → trip;
* optional limits on named features (``env_bpfo_g``, ``velocity_rms_mm_s``, …).

A transition's reason names the threshold of the level the state rose to (a
window that reached danger in a rise to alert is reported against the alert
threshold), with the count of windows behind it.

**On-delay**: the state rises to level L when at least ``on_windows`` of the
last ``of_windows`` windows reach L (so a single-window spike raises
nothing). **Off-delay with hysteresis**: ``alert`` falls back when
``off_windows`` consecutive windows are *clear* — below every threshold
multiplied by ``hysteresis``. **Latch**: ``danger`` and ``trip`` stay until
acknowledged *and* clear (either order); an acknowledgement records who,
when and a comment.

**Sensor faults**: a sensor whose window shows a fault (flatline, clipping,
dropout, NaN, DC bias — :mod:`pdm.alarms.health`) enters ``sensor_fault``
after ``sensor_on_windows`` such windows and leaves it after
``sensor_off_windows`` healthy ones; each is a transition of its own. With
``sensor_fault_inhibits`` (the default), a window's evidence from a faulty
sensor is ignored — its channels' zones and limits, and the anomaly score,
which every channel feeds — so a broken cable never trips a machine.

Nothing here does I/O or reads a clock: the engine persists the state,
records the transitions and drives the actions.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pdm.core.text import INVISIBLE_CHARS
from pdm.dsp.iso import iso_zone, zone_limits
from pdm.scoring.explain import DIAGNOSES

__all__ = [
    "FAULT_DIAGNOSES",
    "LEVELS",
    "MAX_BY_CHARS",
    "MAX_COMMENT_CHARS",
    "TRIP_EVIDENCE",
    "Ack",
    "AlarmRules",
    "FeatureLimit",
    "MachineAlarm",
    "Transition",
    "WindowResult",
    "acknowledge",
    "check_operator_text",
    "diagnosis_confidence",
    "diagnosis_confidence_of",
    "features_read",
    "relay_permissive",
    "step",
    "trip_paths",
]

LEVELS = ("ok", "alert", "danger", "trip")
_ZONES = "ABCD"
#: Kinds of evidence that can corroborate a score trip (``AlarmRules.trip_requires``).
TRIP_EVIDENCE = ("iso", "limit", "diagnosis")
#: Diagnoses that name a fault: they may corroborate a score trip.
FAULT_DIAGNOSES = frozenset(d for d in DIAGNOSES if d not in ("unknown", "bearing_uncertain"))


@dataclass(frozen=True, slots=True)
class FeatureLimit:
    """Alert/danger/trip levels for one feature (units as in its name), on one channel or all."""

    feature: str
    alert: float | None = None
    danger: float | None = None
    trip: float | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmRules:
    """How windows become alarm states (the pipeline's ``[alarms]`` table)."""

    on_windows: int = 3
    of_windows: int = 5
    off_windows: int = 25
    hysteresis: float = 0.9
    #: None: the anomaly score never trips (the default). Set: see ``trip_requires``.
    score_trip: float | None = None
    #: Evidence of which one must show in the same window for the score to trip
    #: (any of them); () lets the score trip alone.
    trip_requires: tuple[str, ...] = TRIP_EVIDENCE
    trip_diagnosis_confidence: float = 0.7
    iso_alert_zone: str | None = "C"
    iso_danger_zone: str | None = "D"
    iso_trip: float | None = 1.25
    iso_group: int = 2
    foundation: str = "rigid"
    limits: tuple[FeatureLimit, ...] = ()
    sensor_on_windows: int = 2
    sensor_off_windows: int = 5
    sensor_fault_inhibits: bool = True


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What the alarm logic needs of one window.

    ``score`` is None when the window was not scored (no model, learning, invalid);
    ``features[channel][name]`` are the channel's features; ``sensor_of`` maps a
    channel to its sensor; ``health[sensor]`` lists that sensor's faults in this
    window (empty: healthy), with ``health_detail[sensor]`` saying why.
    """

    t_ns: int
    window: int
    score: float | None
    alert: float | None
    danger: float | None
    features: Mapping[str, Mapping[str, float]]
    sensor_of: Mapping[str, str]
    health: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    health_detail: Mapping[str, str] = field(default_factory=dict)
    #: The stream had a gap (or went back in time) just before this window: samples of
    #: every sensor are missing. A sensor fault at once, no debounce.
    gap: str = ""
    #: The window's diagnosis (one of :data:`pdm.scoring.explain.DIAGNOSES`), or None.
    diagnosis: str | None = None
    #: How sure the diagnosis is, 0–1 (0: not at all, or none).
    diagnosis_confidence: float = 0.0
    #: The scorer raised the window to alert on the diagnosis alone: it names a bearing
    #: defect over the machine's healthy spectra (:func:`pdm.diagnosis.names_bearing_defect`).
    #: An alert-level verdict, like the score at its alert threshold.
    bearing_defect: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement: who, when (ns), and why."""

    by: str
    t_ns: int
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of the machine (``sensor`` '') or of one sensor."""

    t_ns: int
    window: int
    sensor: str
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class MachineAlarm:
    """The whole alarm state of one machine: JSON-serialisable, persisted by the engine."""

    state: str = "ok"
    since_ns: int = 0
    recent: tuple[int, ...] = ()  # levels of the last of_windows windows, oldest first
    clear_run: int = 0  # consecutive clear windows
    ack: Ack | None = None  # acknowledgement of the current latch
    sensor_faults: Mapping[str, str] = field(default_factory=dict)  # sensor → reason
    sensor_runs: Mapping[str, int] = field(default_factory=dict)  # >0 faulty, <0 healthy run
    reason: str = ""

    @property
    def latched(self) -> bool:
        return self.state in ("danger", "trip")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["recent"] = list(self.recent)
        d["sensor_faults"] = dict(self.sensor_faults)
        d["sensor_runs"] = dict(self.sensor_runs)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MachineAlarm:
        ack = d.get("ack")
        return cls(
            state=str(d["state"]),
            since_ns=int(d.get("since_ns", 0)),
            recent=tuple(int(x) for x in d.get("recent", ())),
            clear_run=int(d.get("clear_run", 0)),
            ack=Ack(**ack) if ack else None,
            sensor_faults=dict(d.get("sensor_faults", {})),
            sensor_runs={k: int(v) for k, v in d.get("sensor_runs", {}).items()},
            reason=str(d.get("reason", "")),
        )


def relay_permissive(state: MachineAlarm) -> bool:
    """The relay may stay energised (machine allowed to run) unless the machine tripped."""
    return state.state != "trip"


def _clear_below(cur: int) -> int:
    """A window is *clear* of state ``cur`` when its hysteresis level is below this:
    alert clears below alert; danger and trip clear below danger."""
    return 1 if cur <= 1 else 2


def _after_clear(cur: int, level: int) -> int:
    """Where a cleared state goes: alert → ok; a latch → alert while alert evidence remains."""
    return 0 if cur <= 1 else min(1, level)


def _level_of(value: float, alert: float | None, danger: float | None, trip: float | None) -> int:
    if trip is not None and value >= trip:
        return 3
    if danger is not None and value >= danger:
        return 2
    if alert is not None and value >= alert:
        return 1
    return 0


def _scaled(x: float | None, k: float) -> float | None:
    return None if x is None else x * k


def _limits_on(
    rules: AlarmRules, ch: str, feats: Mapping[str, float]
) -> Iterator[tuple[FeatureLimit, float]]:
    """The limits that apply to channel ``ch``, with its finite value of each one's feature."""
    for lim in rules.limits:
        if lim.channel is None or lim.channel == ch:
            x = feats.get(lim.feature, math.nan)
            if math.isfinite(x):
                yield lim, x


def _confident(win: WindowResult, rules: AlarmRules) -> bool:
    conf = win.diagnosis_confidence
    return (
        win.diagnosis in FAULT_DIAGNOSES
        and math.isfinite(conf)
        and conf >= rules.trip_diagnosis_confidence
    )


def _evidence(win: WindowResult, rules: AlarmRules, faulty: set[str], k: float) -> int:
    """The window's level with every threshold × k (k < 1: the clear test)."""
    inhibit = rules.sensor_fault_inhibits and bool(faulty)
    score = win.score
    score_ok = score is not None and math.isfinite(score) and not inhibit
    best = 0
    if score_ok:
        assert score is not None
        best = _level_of(score, _scaled(win.alert, k), _scaled(win.danger, k), None)
    if win.bearing_defect and not inhibit:
        best = max(best, 1)
    ab, bc, cd = zone_limits(rules.iso_group, rules.foundation)
    trip = _scaled(None if rules.iso_trip is None else rules.iso_trip * cd, k)
    alert_zone, danger_zone = rules.iso_alert_zone, rules.iso_danger_zone
    above_cd = at_danger_limit = False
    limits = bool(rules.limits)
    for ch, feats in win.features.items():
        if inhibit and win.sensor_of.get(ch, "") in faulty:
            continue
        v = feats.get("velocity_rms_mm_s", math.nan)
        if math.isfinite(v):
            # iso_zone's letter, its boundaries looked up once a window rather than once a
            # channel (v is finite here: no "?").
            u = v / k if k != 1 else v
            zone = "A" if u <= ab else "B" if u <= bc else "C" if u <= cd else "D"
            above_cd = above_cd or zone == "D"
            lvl = 0
            if danger_zone and zone >= danger_zone:
                lvl = 2
            elif alert_zone and zone >= alert_zone:
                lvl = 1
            if trip is not None and v >= trip:
                lvl = 3
            best = max(best, lvl)
        if not limits:
            continue
        for lim, x in _limits_on(rules, ch, feats):
            lvl = _level_of(x, _scaled(lim.alert, k), _scaled(lim.danger, k), _scaled(lim.trip, k))
            at_danger_limit = at_danger_limit or lvl >= 2
            best = max(best, lvl)
    if best < 3 and score_ok and rules.score_trip is not None:
        assert score is not None
        if score >= rules.score_trip * k and _corroborated(
            rules, above_cd, at_danger_limit, _confident(win, rules)
        ):
            best = 3
    return best


def _corroborated(rules: AlarmRules, iso: bool, limit: bool, diagnosis: bool) -> bool:
    req = rules.trip_requires
    if not req:
        return True
    return (
        ("iso" in req and iso) or ("limit" in req and limit) or ("diagnosis" in req and diagnosis)
    )


def _why(win: WindowResult, rules: AlarmRules, faulty: set[str], lvl: int) -> str:
    """Why the window reached level ``lvl`` (or above), against ``lvl``'s own threshold.

    Called only on a rise. For a trip, a physical limit is named before a corroborated
    score; below trip, the score first. Evidence that reached a higher level than
    ``lvl`` is named against ``lvl``'s threshold where the source has one, else against
    its own with "(counts for LEVEL)".
    """
    inhibit = rules.sensor_fault_inhibits and bool(faulty)
    name = LEVELS[lvl]
    group, foundation = rules.iso_group, rules.foundation
    ab, bc, cd = zone_limits(group, foundation)
    bounds = {"B": ab, "C": bc, "D": cd}
    iso_trip = None if rules.iso_trip is None else rules.iso_trip * cd
    physical: list[str] = []
    support: list[tuple[str, str]] = []  # (kind of trip evidence, text)
    for ch in sorted(win.features):
        if inhibit and win.sensor_of.get(ch, "") in faulty:
            continue
        feats = win.features[ch]
        v = feats.get("velocity_rms_mm_s", math.nan)
        if math.isfinite(v):
            zone = iso_zone(v, group=group, foundation=foundation)
            head = f"{ch} velocity {v:.3g} mm/s (ISO 10816-3 zone {zone})"
            if zone == "D":
                support.append(("iso", f"{ch} velocity {v:.3g} mm/s above C/D {cd:g} mm/s"))
            edges = [(1, rules.iso_alert_zone), (2, rules.iso_danger_zone)]
            reached = [(lv, z) for lv, z in edges if z and zone >= z and lv >= lvl]
            if lvl < 3 and reached:
                lv, z = reached[0]
                extra = "" if lv == lvl else f" (counts for {name})"
                physical.append(
                    f"{head}, above the {LEVELS[lv]} boundary {_ZONE_EDGE[z]} {bounds[z]:g} mm/s"
                    + extra
                )
            elif iso_trip is not None and v >= iso_trip:
                extra = "" if lvl == 3 else f" (counts for {name})"
                physical.append(
                    f"{head} ≥ trip {iso_trip:.3g} mm/s ({rules.iso_trip:g} × C/D){extra}"
                )
        for lim, x in _limits_on(rules, ch, feats):
            got = _level_of(x, lim.alert, lim.danger, lim.trip)
            if got >= 2:
                support.append(("limit", f"{ch}.{lim.feature} {x:.3g} at its danger limit"))
            if got >= lvl:
                # the level's own limit, else the lowest one above it that was reached
                i, limit = next(
                    (i, v)
                    for i, v in enumerate((lim.alert, lim.danger, lim.trip))
                    if i >= lvl - 1 and v is not None and x >= v
                )
                extra = "" if i + 1 == lvl else f" (counts for {name})"
                physical.append(
                    f"{ch}.{lim.feature} {x:.3g} ≥ {LEVELS[i + 1]} limit {limit:.3g}{extra}"
                )
    score = win.score
    score_text = ""
    if score is not None and math.isfinite(score) and not inhibit:
        if lvl == 3 and rules.score_trip is not None and score >= rules.score_trip:
            if _confident(win, rules):
                support.append(
                    (
                        "diagnosis",
                        f"diagnosis {win.diagnosis} (confidence {win.diagnosis_confidence:.2f})",
                    )
                )
            usable = [text for kind, text in support if kind in rules.trip_requires]
            head = f"anomaly score {score:.3g} ≥ trip threshold {rules.score_trip:.3g}"
            if not rules.trip_requires:
                score_text = f"{head} (this pipeline lets the score trip alone)"
            elif usable:
                score_text = f"{head}, corroborated by {usable[0]}"
        elif lvl < 3:
            threshold = (win.alert, win.danger)[lvl - 1]
            if threshold is not None and score >= threshold:
                score_text = f"anomaly score {score:.3g} ≥ {name} threshold {threshold:.3g}"
    if not score_text and lvl == 1 and win.bearing_defect and not inhibit:
        score_text = (
            f"diagnosis {win.diagnosis} (confidence {win.diagnosis_confidence:.2f}) over the "
            "machine's healthy spectra"
        )
    order = [*physical, score_text] if lvl == 3 else [score_text, *physical]
    return next((t for t in order if t), "")


_ZONE_EDGE = {"B": "A/B", "C": "B/C", "D": "C/D"}


def trip_paths(rules: AlarmRules, channels: Sequence[str], windows: str) -> list[str]:
    """Every way ``rules`` can trip a machine, one line each, for ``pdm-edge check``.

    ``windows`` is the on-delay in words ("5 of 8 windows").
    """
    group, foundation = rules.iso_group, rules.foundation
    _, _, cd = zone_limits(group, foundation)
    out = []
    if rules.iso_trip is not None:
        out.append(
            f"velocity RMS ≥ {rules.iso_trip * cd:.3g} mm/s ({rules.iso_trip:g} × C/D "
            f"{cd:g} mm/s, ISO 10816-3 group {group} {foundation}) on any channel "
            f"({', '.join(channels)}) for {windows}"
        )
    for lim in rules.limits:
        if lim.trip is not None:
            where = lim.channel or "any channel"
            out.append(f"{lim.feature} ≥ trip limit {lim.trip:g} on {where} for {windows}")
    if rules.score_trip is None:
        out.append(
            "the anomaly score never trips (score_trip not set): it raises alert at 1.0 and "
            "danger at the model's threshold, and danger latches until acknowledged"
        )
    elif not rules.trip_requires:
        out.append(
            f"the anomaly score ≥ {rules.score_trip:g} ALONE for {windows} (trip_requires = "
            '["none"]): not recommended, a model\'s extrapolated threshold then stops the '
            "machine without a second kind of evidence"
        )
    else:
        kinds = {
            "iso": f"velocity RMS above the C/D boundary {cd:g} mm/s on a channel",
            "limit": "a feature limit at its danger level"
            + ("" if any(lim.danger or lim.trip for lim in rules.limits) else " (none is set)"),
            "diagnosis": "a diagnosed bearing or running-speed fault with confidence ≥ "
            f"{rules.trip_diagnosis_confidence:g}",
        }
        out.append(
            f"the anomaly score ≥ {rules.score_trip:g} together, in the same window, with "
            + " or ".join(kinds[r] for r in rules.trip_requires)
            + f", for {windows}; the score never trips alone"
        )
    if not out:
        out.append("nothing: no trip is configured (the relay drops only on an appliance fault)")
    if rules.sensor_fault_inhibits:
        out.append("(a sensor in sensor_fault contributes nothing, so a broken cable never trips)")
    out.append(
        "(fail-safe, apart from these: the relay also drops when the appliance cannot decide "
        "for this machine, appliance_fault)"
    )
    return out


def _sensors(
    state: MachineAlarm, win: WindowResult, rules: AlarmRules
) -> tuple[dict[str, str], dict[str, int], list[Transition]]:
    faults = dict(state.sensor_faults)
    runs = dict(state.sensor_runs)
    out: list[Transition] = []
    for sensor in sorted(set(win.sensor_of.values()) | set(faults)):
        bad = win.health.get(sensor, ())
        run = runs.get(sensor, 0)
        if win.gap:
            bad = (*bad, "gap")
            run = max(run, rules.sensor_on_windows - 1)  # definite: confirm at once
        run = (max(run, 0) + 1) if bad else (min(run, 0) - 1)
        runs[sensor] = run
        if bad and sensor not in faults and run >= rules.sensor_on_windows:
            reason = win.health_detail.get(sensor) or ", ".join(bad)
            if win.gap:
                reason = win.gap + (f"; {reason}" if sensor in win.health else "")
            faults[sensor] = reason
            out.append(Transition(win.t_ns, win.window, sensor, "ok", "sensor_fault", reason))
        elif not bad and sensor in faults and -run >= rules.sensor_off_windows:
            del faults[sensor]
            out.append(
                Transition(
                    win.t_ns,
                    win.window,
                    sensor,
                    "sensor_fault",
                    "ok",
                    f"healthy for {rules.sensor_off_windows} windows",
                )
            )
    return faults, runs, out


def step(
    state: MachineAlarm, win: WindowResult, rules: AlarmRules
) -> tuple[MachineAlarm, list[Transition]]:
    """The state after one more window, and the transitions it caused (time order)."""
    faults, runs, out = _sensors(state, win, rules)
    # A sensor faulty in *this* window is ignored at once (before the debounce confirms it).
    faulty = set(faults) | {s for s, f in win.health.items() if f}
    level = _evidence(win, rules, faulty, 1.0)
    clear_level = _evidence(win, rules, faulty, rules.hysteresis)
    recent = (*state.recent, level)[-rules.of_windows :]
    cur = LEVELS.index(state.state)
    # A window that cannot be judged in full — a faulty sensor, or no score where a model
    # scores — neither counts as clear nor breaks a clear run: broken data never clears.
    known = not faulty and (
        win.alert is None or (win.score is not None and math.isfinite(win.score))
    )
    if not known:
        clear_run = state.clear_run
    else:
        clear_run = state.clear_run + 1 if clear_level < _clear_below(cur) else 0
    new = cur
    # On-delay: rise to the highest level reached by on_windows of the last of_windows.
    for lvl in (3, 2, 1):
        if lvl > cur and sum(x >= lvl for x in recent) >= rules.on_windows:
            new = lvl
            break
    ack = state.ack
    reason = ""
    if new == cur and cur > 0 and clear_run >= rules.off_windows:
        # Clear for long enough. Alert steps down on its own; a latch needs its ack too.
        if cur == 1 or ack is not None:
            new = _after_clear(cur, level)
            reason = f"clear for {rules.off_windows} windows" + (
                f"; acknowledged by {ack.by}" if cur >= 2 and ack is not None else ""
            )
    if new != cur:
        if new > cur:
            n_at = sum(x >= new for x in recent)
            why = _why(win, rules, faulty, new)
            reason = f"{why} ({n_at} of the last {len(recent)} windows)"
            ack = None  # a new latch needs a new acknowledgement
        else:
            ack = None
        out.append(Transition(win.t_ns, win.window, "", LEVELS[cur], LEVELS[new], reason))
        nxt = MachineAlarm(LEVELS[new], win.t_ns, recent, 0, ack, faults, runs, reason)
    else:  # (every window: the constructor, not dataclasses.replace's field-by-field copy)
        nxt = MachineAlarm(
            state.state, state.since_ns, recent, clear_run, state.ack, faults, runs, state.reason
        )
    return nxt, out


def acknowledge(
    state: MachineAlarm, by: str, t_ns: int, comment: str, rules: AlarmRules
) -> tuple[MachineAlarm, list[Transition], str]:
    """Acknowledge the latch; returns (state, transitions, message).

    A latch that is already clear (``off_windows`` clear windows) ends now; one that is
    not stays, acknowledged, and ends when it clears. Acknowledging ``ok``/``alert``, or a
    latch acknowledged already, changes nothing: the same ``state`` object comes back (the
    message says so).
    """
    if not by.strip():
        raise ValueError("an acknowledgement needs a name (--by)")
    if not state.latched:
        return state, [], f"nothing to acknowledge: the state is {state.state}"
    if state.ack is not None and state.clear_run < rules.off_windows:
        # Acknowledged already and not clear yet: a repeat changes nothing (the same state
        # comes back, and the callers write nothing).
        return (
            state,
            [],
            f"{state.state} already acknowledged by {state.ack.by}; it ends when the machine "
            f"has been clear for {rules.off_windows} windows",
        )
    ack = Ack(by.strip(), t_ns, comment)
    if state.clear_run >= rules.off_windows:
        cur = LEVELS.index(state.state)
        new = LEVELS[_after_clear(cur, state.recent[-1] if state.recent else 0)]
        reason = f"acknowledged by {ack.by}" + (f" ({comment})" if comment else "") + "; clear"
        tr = Transition(t_ns, -1, "", state.state, new, reason)
        return (
            dataclasses.replace(
                state, state=new, since_ns=t_ns, ack=None, clear_run=0, reason=reason
            ),
            [tr],
            f"{state.state} acknowledged and clear: now {new}",
        )
    return (
        dataclasses.replace(state, ack=ack),
        [],
        f"{state.state} acknowledged by {ack.by}; it ends when the machine has been clear "
        f"for {rules.off_windows} windows",
    )


def features_read(rules: AlarmRules) -> frozenset[str]:
    """The features :func:`step` reads under ``rules``: velocity and the limits'."""
    return frozenset({"velocity_rms_mm_s", *(lim.feature for lim in rules.limits)})


#: (names, features kept) → the kept names and their columns (the same few every window).
_KEPT: dict[tuple[tuple[str, ...], frozenset[str]], tuple[tuple[str, ...], Any]] = {}


def window_result(
    t_ns: int,
    window: int,
    score: float | None,
    thresholds: Mapping[str, float],
    channels: Sequence[str],
    names: Sequence[str],
    values: Any,
    sensor_of: Mapping[str, str],
    health: Mapping[str, tuple[str, ...]] | None = None,
    health_detail: Mapping[str, str] | None = None,
    gap: str = "",
    keep: Collection[str] | None = None,
    *,
    diagnosis: str | None = None,
    diagnosis_confidence: float = 0.0,
    bearing_defect: bool = False,
) -> WindowResult:
    """Build a WindowResult from a feature frame's rows and the window's score (unrounded;
    None when not scored).

    ``diagnosis``, ``diagnosis_confidence``: the window's diagnosis and how sure it is
    (0–1), for the score trip's corroboration (:func:`diagnosis_confidence` makes them).
    ``bearing_defect``: the scorer raised the window to alert on a bearing defect the
    diagnosis names (:attr:`WindowResult.bearing_defect`).

    ``keep``: only these features (those the rules read, :func:`features_read`), not all
    of them — a window's forty-odd features per channel as dicts were a tenth of a
    service's processing per window.
    """
    if keep is None:
        feats = {
            ch: {n: float(v) for n, v in zip(names, row, strict=True)}
            for ch, row in zip(channels, values.tolist(), strict=True)
        }
    else:
        key = (tuple(names), keep if isinstance(keep, frozenset) else frozenset(keep))
        picked = _KEPT.get(key)
        if picked is None:
            if len(_KEPT) >= 256:
                _KEPT.clear()
            cols = [i for i, n in enumerate(names) if n in keep]
            picked = _KEPT[key] = (tuple(names[i] for i in cols), np.array(cols, dtype=np.intp))
        kept, idx = picked
        feats = {
            ch: dict(zip(kept, row, strict=True))
            for ch, row in zip(channels, np.asarray(values)[:, idx].tolist(), strict=True)
        }
    return WindowResult(
        t_ns,
        window,
        None if score is None else float(score),
        thresholds.get("alert"),
        thresholds.get("danger"),
        feats,
        sensor_of,
        health or {},
        health_detail or {},
        gap,
        diagnosis,
        diagnosis_confidence,
        bearing_defect,
    )


def diagnosis_confidence(label: object, confidence: object = None) -> tuple[str | None, float]:
    """(diagnosis, confidence 0–1) for the score trip's corroboration.

    ``confidence`` when it is a finite number (clipped to 0–1); else 1.0 for a diagnosis
    that names a fault (:data:`FAULT_DIAGNOSES`, the rules of
    :func:`pdm.scoring.explain.diagnose` name one only when its line stands out) and 0 for
    ``unknown``, ``bearing_uncertain`` or none. A ``label`` that is not text: no diagnosis.
    """
    if not isinstance(label, str):
        return None, 0.0
    conf = confidence
    if isinstance(conf, int | float) and not isinstance(conf, bool) and math.isfinite(conf):
        return label, min(1.0, max(0.0, float(conf)))
    return label, 1.0 if label in FAULT_DIAGNOSES else 0.0


def diagnosis_confidence_of(row: Mapping[str, Any] | None) -> tuple[str | None, float]:
    """:func:`diagnosis_confidence` of a JSON ``score`` row (``diagnosis``,
    ``diagnosis_confidence``; a row without a confidence takes the label's)."""
    if not row:
        return None, 0.0
    return diagnosis_confidence(row.get("diagnosis"), row.get("diagnosis_confidence"))


assert _ZONES == "ABCD"


# -- who acts ------------------------------------------------------------------------------------

#: ``by`` and ``comment`` of an acknowledgement (and of a model promotion or rollback): at most
#: this many characters. They are stored, sent in webhooks and shown in one-line logs.
MAX_BY_CHARS = 64
MAX_COMMENT_CHARS = 500
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def check_operator_text(by: str, comment: str) -> tuple[str, str]:
    """``by`` (stripped, non-empty, at most :data:`MAX_BY_CHARS`) and ``comment`` (at most
    :data:`MAX_COMMENT_CHARS`) of an operator's action, or ``ValueError`` with the reason:
    neither may hold a control character or line break (they end up in one-line logs)."""
    by = by.strip()
    if not by:
        raise ValueError("'by' must give the name of who acts")
    if len(by) > MAX_BY_CHARS:
        raise ValueError(f"'by' has {len(by)} characters; at most {MAX_BY_CHARS}")
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(f"'comment' has {len(comment)} characters; at most {MAX_COMMENT_CHARS}")
    for name, text in (("by", by), ("comment", comment)):
        if _CONTROL_CHARS.search(text):
            raise ValueError(f"'{name}' contains a control character or line break")
        if INVISIBLE_CHARS.search(text):  # '\u202enomis' reads as 'simon'
            raise ValueError(
                f"'{name}' contains an invisible or text-direction character (it can make a "
                f"name read as another)"
            )
        if _SURROGATES.search(text):
            # JSON's "\ud800" decodes to a str that no UTF-8 encoder takes: taken, it made the
            # machine's /status, alarms.db and history fail for as long as the latch lasted.
            raise ValueError(f"'{name}' is not valid Unicode text (a lone surrogate)")
    return by, comment
