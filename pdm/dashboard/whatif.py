"""The commissioning's result and its what-if, apart from the page that shows them.

:class:`CommissioningResult` is what a dry-run replay of one recording found; :func:`whatif`
re-runs the alarm state machine over its stored scores with other thresholds and debounce;
:class:`Setting`, :class:`Run` and :func:`whatif_grid` do that over a grid of settings and
several recordings; the ``*_rows`` functions turn results into tables a person reads. No
Streamlit here: the page (:mod:`pdm.dashboard.commissioning`) and the HTML report
(:mod:`pdm.dashboard.report`) both build on this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.alarms.state import (
    LEVELS,
    AlarmRules,
    FeatureLimit,
    MachineAlarm,
    WindowResult,
    diagnosis_confidence_of,
    step,
)
from pdm.config import Pipeline
from pdm.dashboard.analysis import Averaged, WindowSpectra
from pdm.dashboard.labels import fmt_num, plain_reason
from pdm.dsp.iso import zone_limits

__all__ = [
    "QUANTITIES",
    "CommissioningResult",
    "Run",
    "Setting",
    "WhatIf",
    "configured_setting",
    "grid_delays",
    "grid_rows",
    "grid_values",
    "outcome_rows",
    "raised_by_diagnosis",
    "run_outcome",
    "transition_rows",
    "utc_time",
    "whatif",
    "whatif_for",
    "whatif_grid",
    "whatif_setting",
]


@dataclass
class CommissioningResult:
    """What a dry-run replay of one recording found (everything in memory; the store is gone)."""

    recording: str
    machine: str
    machine_name: str
    pipeline_file: str
    model_dir: str
    model: str  # version ('' when not scored)
    summary: dict[str, Any]
    transitions: list[dict[str, Any]]
    t_ns: npt.NDArray[np.int64]
    window: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]
    state: tuple[str, ...]
    diagnosis: tuple[str, ...]
    alert: float | None
    danger: float | None
    rules: AlarmRules
    spectra: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    #: window index → channel → the features the alarm rules look at (ISO velocity, limits)
    features: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    sensor_of: dict[str, str] = field(default_factory=dict)
    pipeline: Pipeline | None = None
    recording_path: str = ""
    start_ns: int = 0  # the recording's first sample, ns
    window_s: float = 0.0  # one window's length, s (an alarm is decided at a window's end)
    hop_s: float = 0.0  # between window starts, s
    deciding_window: int | None = None
    deciding_why: str = ""
    deciding: WindowSpectra | None = None  # its spectra, recomputed from the recording
    averaged: Averaged | None = None  # the diagnosis engine's averaged spectra
    notes: list[str] = field(default_factory=list)  # what could not be done, one line each
    #: per window, how sure its diagnosis was (0–1, NaN for none); None: not stored
    diagnosis_confidence: npt.NDArray[np.float64] | None = None

    @property
    def windows(self) -> int:
        return len(self.score)

    @property
    def bearing_defect(self) -> tuple[bool, ...]:
        """Per window, whether the replay's scorer raised it to alert on a bearing defect
        the diagnosis named (:func:`raised_by_diagnosis`)."""
        return raised_by_diagnosis(self.state, self.score, self.alert)

    def seconds(self, t_ns: int) -> float:
        """Seconds from the recording's first sample."""
        return (t_ns - self.start_ns) / 1e9

    def window_span(self, t_ns: int) -> str:
        """Where the window starting at ``t_ns`` lies, in words: ``4.4–4.72 s from the
        start, the alarm decided at its end`` (its start alone reads as the alarm's time)."""
        start = self.seconds(t_ns)
        return (
            f"{fmt_num(start, 4)}–{fmt_num(start + self.window_s, 4)} s from the start, "
            "the alarm decided at its end"
        )

    def top_diagnosis(self) -> str:
        counts: dict[str, int] = {}
        for d, s in zip(self.diagnosis, self.state, strict=False):
            if d and s in ("alert", "danger"):
                counts[d] = counts.get(d, 0) + 1
        return max(counts, key=lambda k: counts[k]) if counts else ""


# --- what-if -------------------------------------------------------------------------------------


def raised_by_diagnosis(
    state: Sequence[str],
    score: Sequence[float] | npt.NDArray[np.float64],
    alert: float | None,
) -> tuple[bool, ...]:
    """Per window, whether the scorer raised it to ``alert`` on the diagnosis alone.

    History keeps each window's own level before debouncing (``state``) and its score, not
    the flag itself: a window stored as ``alert`` whose score is below the alert threshold
    can only have been raised by a bearing defect the diagnosis named over the machine's
    healthy spectra (:func:`pdm.diagnosis.names_bearing_defect`, docs/models.md). Without
    an alert threshold there is no such window.

    >>> raised_by_diagnosis(("ok", "alert", "alert", "danger"), [0.2, 0.4, 1.3, 1.8], 1.0)
    (False, True, False, False)
    """
    if alert is None:
        return (False,) * len(state)
    return tuple(
        st == "alert" and math.isfinite(float(sc)) and float(sc) < alert
        for st, sc in zip(state, score, strict=True)
    )


@dataclass(frozen=True)
class WhatIf:
    """The alarm state machine re-run over the stored scores with other settings."""

    alert: float | None
    danger: float | None
    trip: float | None
    on_windows: int
    of_windows: int
    off_windows: int
    transitions: list[dict[str, Any]]
    alarms_raised: int  # transitions up from ok (a new alarm)
    escalations: int  # every transition up (ok→alert, alert→danger, …)
    windows_by_state: dict[str, int]  # windows spent in each state (after the window)
    windows_over: dict[str, int]  # windows whose own level reaches alert/danger/trip
    final_state: str
    states: tuple[str, ...]  # per window, the state after it


def whatif(
    score: Sequence[float] | npt.NDArray[np.float64],
    t_ns: Sequence[int] | npt.NDArray[np.int64],
    window: Sequence[int] | npt.NDArray[np.int64],
    *,
    alert: float | None,
    danger: float | None,
    rules: AlarmRules,
    alert_mult: float = 1.0,
    danger_mult: float = 1.0,
    on_windows: int | None = None,
    of_windows: int | None = None,
    off_windows: int | None = None,
    features: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
    sensor_of: Mapping[str, str] | None = None,
    diagnosis: Sequence[str] | None = None,
    diagnosis_confidence: Sequence[float] | npt.NDArray[np.float64] | None = None,
    bearing_defect: Sequence[bool] | None = None,
) -> WhatIf:
    """Re-run :func:`step` over per-window scores (and, with ``features``, ISO zones and limits).

    ``diagnosis`` (per window, '' for none) may corroborate a score trip, as in the replay,
    at its ``diagnosis_confidence`` (per window, 0–1, NaN for none); without confidences a
    diagnosis that names a fault counts as sure (:func:`diagnosis_confidence_of`).

    ``bearing_defect`` (per window) marks the windows the scorer raised to alert on a bearing
    defect the diagnosis named (:func:`raised_by_diagnosis`); such a window stays an alert
    whatever the thresholds, as in the service. The flag is only known for windows whose
    score was below the alert threshold the replay used (the scorer does not judge the others
    for it), so with ``alert_mult`` > 1 a window between the two thresholds counts on its score
    alone, and the what-if may show fewer alerts than the service would.

    Without ``features`` only the score is evidence (ISO zones and feature limits left out);
    with them (window index → channel → feature → value) the pipeline's ISO and limit rules
    apply too, unscaled.

    ``alert_mult`` scales the alert threshold, ``danger_mult`` the danger threshold and the
    score trip (``rules.score_trip``). The state starts at ``ok`` and is never acknowledged, so
    a latch (danger, trip) stays to the end, as it would on an unattended machine.
    """
    on = rules.on_windows if on_windows is None else on_windows
    of = rules.of_windows if of_windows is None else of_windows
    if not 1 <= on <= of:
        raise ValueError(f"on-delay: need 1 ≤ N ≤ M (got {on} of {of})")
    a = None if alert is None else alert * alert_mult
    d = None if danger is None else danger * danger_mult
    trip = None if rules.score_trip is None else rules.score_trip * danger_mult
    r = dataclasses.replace(
        rules,
        on_windows=on,
        of_windows=of,
        off_windows=rules.off_windows if off_windows is None else off_windows,
        score_trip=trip,
    )
    if features is None:
        r = dataclasses.replace(
            r, iso_alert_zone=None, iso_danger_zone=None, iso_trip=None, limits=()
        )
    feats = features or {}
    sensors = sensor_of or {}
    state = MachineAlarm()
    trs: list[dict[str, Any]] = []
    states: list[str] = []
    over = {"alert": 0, "danger": 0, "trip": 0}
    diags = list(diagnosis) if diagnosis is not None else [""] * len(score)
    confs = [math.nan] * len(score) if diagnosis_confidence is None else list(diagnosis_confidence)
    flags = [False] * len(score) if bearing_defect is None else list(bearing_defect)
    for s, t, w, dg, c, flag in zip(score, t_ns, window, diags, confs, flags, strict=True):
        sv = float(s)
        score_v = sv if math.isfinite(sv) else None
        label, conf = diagnosis_confidence_of(
            {"diagnosis": dg or None, "diagnosis_confidence": float(c)}
        )
        win = WindowResult(
            int(t),
            int(w),
            score_v,
            a,
            d,
            feats.get(int(w), {}),
            sensors,
            diagnosis=label,
            diagnosis_confidence=conf,
            bearing_defect=bool(flag),
        )
        state, out = step(state, win, r)
        level = state.recent[-1] if state.recent else 0
        for i, name in enumerate(("alert", "danger", "trip"), start=1):
            over[name] += level >= i
        for tr in out:
            trs.append(
                {
                    "window": tr.window,
                    "t_ns": tr.t_ns,
                    "from": tr.old,
                    "to": tr.new,
                    "reason": tr.reason,
                }
            )
        states.append(state.state)
    up = [tr for tr in trs if LEVELS.index(tr["to"]) > LEVELS.index(tr["from"])]
    return WhatIf(
        alert=a,
        danger=d,
        trip=trip,
        on_windows=on,
        of_windows=of,
        off_windows=r.off_windows,
        transitions=trs,
        alarms_raised=sum(tr["from"] == "ok" for tr in up),
        escalations=len(up),
        windows_by_state={lv: states.count(lv) for lv in LEVELS},
        windows_over=over,
        final_state=state.state,
        states=tuple(states),
    )


def whatif_for(
    res: CommissioningResult,
    *,
    alert_mult: float = 1.0,
    danger_mult: float = 1.0,
    on_windows: int | None = None,
    of_windows: int | None = None,
    off_windows: int | None = None,
    with_features: bool = False,
) -> WhatIf:
    return whatif(
        res.score,
        res.t_ns,
        res.window,
        alert=res.alert,
        danger=res.danger,
        rules=res.rules,
        alert_mult=alert_mult,
        danger_mult=danger_mult,
        on_windows=on_windows,
        of_windows=of_windows,
        off_windows=off_windows,
        features=res.features if with_features else None,
        sensor_of=res.sensor_of,
        diagnosis=res.diagnosis,
        diagnosis_confidence=res.diagnosis_confidence,
        bearing_defect=res.bearing_defect,
    )


# --- what-if over settings given as values, on several recordings -------------------------------

#: The quantities a what-if moves thresholds of: the model's score, or ISO velocity.
QUANTITIES: dict[str, str] = {"score": "anomaly score", "velocity": "velocity RMS, mm/s"}


@dataclass(frozen=True)
class Setting:
    """Thresholds as values (``score`` units or mm/s) and the debounce, for a what-if.

    ``score``: the model's alert/danger thresholds and the score trip. ``velocity``: one
    limit on ``velocity_rms_mm_s`` (any channel) in place of the ISO zone rules; the score
    then plays no part.
    """

    quantity: str
    alert: float | None
    danger: float | None
    trip: float | None
    on_windows: int
    of_windows: int
    off_windows: int

    def label(self) -> str:
        unit = "" if self.quantity == "score" else " mm/s"

        def v(x: float | None) -> str:
            return "off" if x is None else f"{fmt_num(x)}{unit}"

        return (
            f"alert {v(self.alert)}, danger {v(self.danger)}, trip {v(self.trip)}; "
            f"{self.on_windows} of {self.of_windows} windows"
        )


def configured_setting(res: CommissioningResult, quantity: str = "score") -> Setting:
    """The pipeline's own setting, as values: the model's thresholds and score trip, or
    for velocity the ISO 10816-3 boundaries of the machine's class (B/C, C/D, trip ×C/D)."""
    r = res.rules
    if quantity == "velocity":
        _ab, bc, cd = zone_limits(r.iso_group, r.foundation)
        trip = None if r.iso_trip is None else r.iso_trip * cd
        return Setting("velocity", bc, cd, trip, r.on_windows, r.of_windows, r.off_windows)
    return Setting(
        "score", res.alert, res.danger, r.score_trip, r.on_windows, r.of_windows, r.off_windows
    )


def whatif_setting(res: CommissioningResult, s: Setting) -> WhatIf:
    """The alarm state machine over ``res``'s windows with setting ``s`` (never acknowledged)."""
    if s.quantity == "velocity":
        rules = dataclasses.replace(
            res.rules,
            iso_alert_zone=None,
            iso_danger_zone=None,
            iso_trip=None,
            score_trip=None,
            limits=(FeatureLimit("velocity_rms_mm_s", s.alert, s.danger, s.trip),),
        )
        return whatif(
            res.score,
            res.t_ns,
            res.window,
            alert=None,
            danger=None,
            rules=rules,
            on_windows=s.on_windows,
            of_windows=s.of_windows,
            off_windows=s.off_windows,
            features=res.features,
            sensor_of=res.sensor_of,
            diagnosis=res.diagnosis,
            diagnosis_confidence=res.diagnosis_confidence,
        )
    return whatif(
        res.score,
        res.t_ns,
        res.window,
        alert=s.alert,
        danger=s.danger,
        rules=dataclasses.replace(res.rules, score_trip=s.trip),
        on_windows=s.on_windows,
        of_windows=s.of_windows,
        off_windows=s.off_windows,
        sensor_of=res.sensor_of,
        diagnosis=res.diagnosis,
        diagnosis_confidence=res.diagnosis_confidence,
        bearing_defect=res.bearing_defect,
    )


@dataclass(frozen=True)
class Run:
    """A replayed recording and what it is: ``healthy`` (every alarm is a false one),
    ``fault`` (from ``onset_s`` s after its start; None: present from the start) or
    ``unknown``."""

    res: CommissioningResult
    role: str = "unknown"
    onset_s: float | None = None


def run_outcome(run: Run, wi: WhatIf) -> dict[str, Any]:
    """What a setting did on one recording: alarms raised, windows over alert, the first
    alarm (s from the start, at the end of the window that raised it) and, for a fault,
    the alarms raised before its onset (false ones) and the delay from the onset to the
    first window after it that leaves the machine in alarm (0 … one window when an earlier
    false alarm still holds)."""
    res = run.res
    ends = [res.seconds(int(t)) + res.window_s for t in res.t_ns.tolist()]
    ups = [t for t in wi.transitions if t["from"] == "ok" and t["to"] != "ok"]
    decided = [res.seconds(int(t["t_ns"])) + res.window_s for t in ups]
    onset = run.onset_s if run.role == "fault" else None
    before = [d for d in decided if onset is not None and d < onset]
    delay = None
    if run.role == "fault":
        start = onset or 0.0
        delay = next(
            (e - start for e, st in zip(ends, wi.states, strict=True) if e >= start and st != "ok"),
            None,
        )
    return {
        "recording": res.recording,
        "role": run.role,
        "alarms_raised": wi.alarms_raised,
        "windows_over_alert": wi.windows_over["alert"],
        "windows": res.windows,
        "first_alarm_s": decided[0] if decided else None,
        "false_alarms": wi.alarms_raised if run.role == "healthy" else len(before),
        "detected": delay is not None if run.role == "fault" else None,
        "delay_s": delay,
        "final_state": wi.final_state,
    }


def grid_values(s: Setting) -> list[float]:
    """Alert thresholds a grid tries, around the configured one: ×0.5 … ×10 (score), or
    ×0.5 … ×3 (velocity: beyond, the ISO zones make no sense)."""
    base = s.alert if s.alert else 1.0
    mults = (
        (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
        if s.quantity == "score"
        else (
            0.5,
            0.75,
            1.0,
            1.25,
            1.5,
            2.0,
            3.0,
        )
    )
    return [round(base * m, 6) for m in mults]


def grid_delays(s: Setting) -> list[tuple[int, int]]:
    """On-delays a grid tries: 1 of 1, 2 of 3, the configured one, and a slower one."""
    out = [(1, 1), (2, 3), (s.on_windows, s.of_windows), (2 * s.on_windows, 2 * s.of_windows)]
    return sorted(set(out), key=lambda d: (d[0], d[1]))


def whatif_grid(
    runs: Sequence[Run],
    base: Setting,
    values: Sequence[float] | None = None,
    delays: Sequence[tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (alert threshold, on-delay): danger and trip move with the alert value
    in their configured ratio. Columns: ``alert``, ``danger``, ``trip``, ``on``, ``of``,
    ``false_alarms`` (healthy recordings, and fault ones before their onset),
    ``windows_over`` (healthy), ``detected``/``faults``, ``delay_s`` (the longest over the
    fault recordings; None: a fault not detected), ``first_alarm_s`` (unknown-role runs)."""
    rows = []
    for v in values if values is not None else grid_values(base):
        k = v / base.alert if base.alert else 1.0
        for on, of in delays if delays is not None else grid_delays(base):
            s = dataclasses.replace(
                base,
                alert=v,
                danger=None if base.danger is None else base.danger * k,
                trip=None if base.trip is None else base.trip * k,
                on_windows=on,
                of_windows=of,
            )
            outs = [run_outcome(r, whatif_setting(r.res, s)) for r in runs]
            healthy = [o for o in outs if o["role"] == "healthy"]
            faults = [o for o in outs if o["role"] == "fault"]
            delays_s = [o["delay_s"] for o in faults]
            rows.append(
                {
                    "alert": s.alert,
                    "danger": s.danger,
                    "trip": s.trip,
                    "on": on,
                    "of": of,
                    "false_alarms": sum(o["false_alarms"] for o in healthy + faults),
                    "windows_over": sum(o["windows_over_alert"] for o in healthy),
                    "healthy_windows": sum(o["windows"] for o in healthy),
                    "detected": sum(bool(o["detected"]) for o in faults),
                    "faults": len(faults),
                    "delay_s": (
                        max(delays_s) if faults and all(d is not None for d in delays_s) else None
                    ),
                    "first_alarm_s": next(
                        (o["first_alarm_s"] for o in outs if o["role"] == "unknown"), None
                    ),
                    "configured": (
                        v == base.alert and (on, of) == (base.on_windows, base.of_windows)
                    ),
                }
            )
    return rows


def utc_time(t_ns: int) -> str:
    """``2026-01-01 00:00:04.080`` (UTC, ms): recordings carry UTC times."""

    t = dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def transition_rows(
    res: CommissioningResult, transitions: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Transitions for a table a person reads: when the alarm was decided (the end of the
    window that raised it; UTC to the ms, and seconds from the start), the window, from →
    to, and the reason in plain words."""

    out = []
    for t in transitions:
        t_ns = t.get("t_ns")
        if t_ns is None and isinstance(t.get("t"), str):
            t_ns = int(dt.datetime.fromisoformat(t["t"].replace("Z", "+00:00")).timestamp() * 1e9)
        end = None if t_ns is None else int(t_ns) + round(res.window_s * 1e9)
        out.append(
            {
                "decided at (UTC)": utc_time(end) if end is not None else "",
                "from start, s": fmt_num(res.seconds(end), 4) if end is not None else "",
                "window": t.get("window"),
                "change": f"{t.get('from')} → {str(t.get('to')).upper()}",
                "reason": plain_reason(str(t.get("reason", ""))),
            }
        )
    return out


def outcome_rows(outcomes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-recording outcomes for a table a person reads."""
    rows = []
    for o in outcomes:
        rows.append(
            {
                "recording": o["recording"],
                "is": {"fault": "fault", "healthy": "healthy"}.get(o["role"], "not known"),
                "alarms raised": o["alarms_raised"],
                "false alarms": o["false_alarms"] if o["role"] != "unknown" else "–",
                "windows over alert": f"{o['windows_over_alert']} of {o['windows']}",
                "first alarm, s from start": fmt_num(o["first_alarm_s"], 4),
                "delay after the fault's onset, s": (
                    fmt_num(o["delay_s"], 3)
                    if o["role"] == "fault" and o["detected"]
                    else "not detected"
                    if o["role"] == "fault"
                    else "–"
                ),
                "final state": str(o["final_state"]).upper(),
            }
        )
    return rows


def grid_rows(grid: Sequence[dict[str, Any]], quantity: str) -> list[dict[str, Any]]:
    """The what-if grid for a table a person reads (values, not multipliers)."""
    unit = "" if quantity == "score" else ", mm/s"
    rows = []
    for g in grid:
        rows.append(
            {
                f"alert{unit}": fmt_num(g["alert"]),
                f"danger{unit}": fmt_num(g["danger"]),
                f"trip{unit}": fmt_num(g["trip"]),
                "on-delay": f"{g['on']} of {g['of']}",
                "false alarms": g["false_alarms"],
                "windows over alert (healthy)": f"{g['windows_over']} of {g['healthy_windows']}",
                "faults detected": f"{g['detected']} of {g['faults']}" if g["faults"] else "–",
                "first alarm after onset, s": (
                    fmt_num(g["delay_s"], 3)
                    if g["delay_s"] is not None
                    else "not detected"
                    if g["faults"]
                    else "–"
                ),
                "": "← now" if g["configured"] else "",
            }
        )
    return rows
