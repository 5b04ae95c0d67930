"""The alarm state machine: a pure function from (state, window result, time) to (state, transitions).

States, least to most severe: ``ok`` → ``alert`` → ``danger`` → ``trip``. Each
window gives a *level* on that scale — the highest of:

* the anomaly score against the model's thresholds (alert 1.0, danger from the
  card) and ``score_trip``;
* the ISO 10816-3 zone of each channel's velocity RMS (zone C → alert, D →
  danger by default) and ``iso_trip`` × the C/D boundary → trip;
* optional limits on named features (``env_bpfo_g``, ``velocity_rms_mm_s``, …).

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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pdm.dsp.iso import iso_zone, zone_limits

__all__ = [
    "LEVELS",
    "MAX_BY_CHARS",
    "MAX_COMMENT_CHARS",
    "Ack",
    "AlarmRules",
    "FeatureLimit",
    "MachineAlarm",
    "Transition",
    "WindowResult",
    "acknowledge",
    "check_operator_text",
    "features_read",
    "relay_permissive",
    "step",
]

LEVELS = ("ok", "alert", "danger", "trip")
_ZONES = "ABCD"


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
    score_trip: float | None = 10.0
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


def _evidence(win: WindowResult, rules: AlarmRules, faulty: set[str], k: float) -> tuple[int, str]:
    """The window's level with every threshold × k (k < 1: the clear test), and why."""
    best, why = 0, ""
    score = win.score
    if score is not None and math.isfinite(score) and not (faulty and rules.sensor_fault_inhibits):
        lvl = _level_of(
            score,
            _scaled(win.alert, k),
            _scaled(win.danger, k),
            _scaled(rules.score_trip, k),
        )
        if lvl:
            limit = [win.alert, win.danger, rules.score_trip][lvl - 1]
            best, why = lvl, f"anomaly score {score:.3g} ≥ {LEVELS[lvl]} threshold {limit:.3g}"
    group, foundation = rules.iso_group, rules.foundation
    _, _, cd = zone_limits(group, foundation)
    trip = _scaled(None if rules.iso_trip is None else rules.iso_trip * cd, k)
    alert_zone, danger_zone = rules.iso_alert_zone, rules.iso_danger_zone
    inhibit = rules.sensor_fault_inhibits and bool(faulty)
    for ch in sorted(win.features):
        feats = win.features[ch]
        if inhibit and win.sensor_of.get(ch, "") in faulty:
            continue
        v = feats.get("velocity_rms_mm_s", math.nan)
        if math.isfinite(v):
            zone = iso_zone(v / k if k != 1 else v, group=group, foundation=foundation)
            lvl = 0
            if danger_zone and zone >= danger_zone:
                lvl = 2
            elif alert_zone and zone >= alert_zone:
                lvl = 1
            if trip is not None and v >= trip:
                lvl = 3
            if lvl > best:
                best, why = (
                    lvl,
                    f"{ch} velocity {v:.3g} mm/s: ISO 10816-3 zone {zone}"
                    + (f", ≥ trip {trip:.3g} mm/s" if lvl == 3 and trip is not None else ""),
                )
        for lim in rules.limits:
            if lim.channel is not None and lim.channel != ch:
                continue
            x = feats.get(lim.feature, math.nan)
            if not math.isfinite(x):
                continue
            lvl = _level_of(x, _scaled(lim.alert, k), _scaled(lim.danger, k), _scaled(lim.trip, k))
            if lvl > best:
                limit = [lim.alert, lim.danger, lim.trip][lvl - 1]
                best, why = lvl, f"{ch}.{lim.feature} {x:.3g} ≥ {LEVELS[lvl]} limit {limit:.3g}"
    return best, why


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
    level, why = _evidence(win, rules, faulty, 1.0)
    clear_level, _ = _evidence(win, rules, faulty, rules.hysteresis)
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
    reason = why
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
    score_row: Mapping[str, Any] | None,
    thresholds: Mapping[str, float],
    channels: Sequence[str],
    names: Sequence[str],
    values: Any,
    sensor_of: Mapping[str, str],
    health: Mapping[str, tuple[str, ...]] | None = None,
    health_detail: Mapping[str, str] | None = None,
    gap: str = "",
    keep: Collection[str] | None = None,
) -> WindowResult:
    """Build a WindowResult from a feature frame's rows and a ``score`` row.

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
    score = None
    if score_row is not None and score_row.get("score") is not None:
        score = float(score_row["score"])
    return WindowResult(
        t_ns,
        window,
        score,
        thresholds.get("alert"),
        thresholds.get("danger"),
        feats,
        sensor_of,
        health or {},
        health_detail or {},
        gap,
    )


assert _ZONES == "ABCD"


# -- who acts ------------------------------------------------------------------------------------

#: ``by`` and ``comment`` of an acknowledgement (and of a model promotion or rollback): at most
#: this many characters. They are stored, sent in webhooks and shown in one-line logs.
MAX_BY_CHARS = 64
MAX_COMMENT_CHARS = 500
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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
    return by, comment
