"""What the dashboard pages show, computed from history reads: no Streamlit here.

Every function takes store reads (or a store) and returns plain values: dataclasses and
lists of row dicts (one dict per point, ready for a DataFrame / Altair chart). Times in
rows are ISO 8601 UTC strings (``t``) plus nanoseconds (``t_ns``) where useful.

The pages (:mod:`pdm.dashboard.overview`, :mod:`pdm.dashboard.machine`) only lay these out.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pdm.config import Pipeline
from pdm.dashboard import labels
from pdm.dashboard.status import UNREACHABLE, AlarmLatch, AlarmStatus, StatusRead
from pdm.dsp.iso import zone_limits
from pdm.history.base import HistoryStore, LogRecord, MachineStatus, StoreURL
from pdm.history.provenance import load_capture
from pdm.history.records import Capture, Event, Spectrum, StateChange
from pdm.history.sqlite_files import history_files

__all__ = [
    "RANGES",
    "STATE_COLOURS",
    "STATE_INK",
    "ZONE_COLOURS",
    "ChannelTile",
    "Tile",
    "Waveform",
    "ack_of",
    "bearing_trend_names",
    "capture_waveform",
    "data_span",
    "machine_tile",
    "machine_tiles",
    "recent_spectra",
    "score_thresholds",
    "spectrum_rows",
    "stale_after_s",
    "time_range",
    "trend_rows",
    "waterfall_rows",
    "zone_bands",
]

NS = 1_000_000_000

#: State colours (dark high-contrast theme): amber, orange, red rise in alarm; TRIP is the
#: brightest red and the most salient. ``ink`` is the text colour on each.
STATE_COLOURS: dict[str, str] = {
    "ok": "#1e8e3e",
    "alert": "#f9ab00",
    "danger": "#ef6c00",
    "trip": "#e00000",
    "sensor_fault": "#9334e6",
    "appliance_fault": "#9334e6",
    "unknown": "#9aa0a6",
    "stale": "#5f6368",
    "no data": "#5f6368",
}
STATE_INK: dict[str, str] = {"alert": "#111111", "danger": "#111111"}  # else white
#: ISO 10816-3 zone band colours (backgrounds of the velocity chart).
ZONE_COLOURS: dict[str, str] = {"A": "#1e8e3e", "B": "#7cb342", "C": "#f9ab00", "D": "#e00000"}

#: Range choices of the machine page: label → seconds (None: all of the data).
RANGES: dict[str, float | None] = {
    "last 1 h": 3600.0,
    "last 24 h": 86400.0,
    "last 7 d": 7 * 86400.0,
    "all": None,
}

#: Machine states, highest first (used to order the tile state shown).
_SEVERITY = {"ok": 0, "alert": 1, "danger": 2, "trip": 3}
#: How bad a shown state is, for ordering tiles worst first.
_RANK = {
    "trip": 9,
    "danger": 8,
    "appliance_fault": 7,
    "sensor_fault": 6,
    "alert": 5,
    "unknown": 4,
    "ok": 1,
    "no data": 0,
}


def iso(t_ns: int) -> str:
    """Nanoseconds since the epoch → ``2026-01-01T00:00:04.080Z``."""
    dt = datetime.fromtimestamp(t_ns / NS, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --- tiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelTile:
    channel: str
    iso_zone: str  # 'A'…'D', '?' when unknown
    velocity_rms_mm_s: float | None
    label: str = ""  # "Motor DE · horizontal"


@dataclass(frozen=True)
class Tile(AlarmLatch):
    """One machine's overview tile.

    ``state`` is the machine's alarm state (``ok``, ``alert``, ``danger``, ``trip``; ``no data``),
    ``shown`` what the tile shows it as (a sensor or appliance fault takes over),
    ``colour`` the shown state's colour. A tile whose data is stale, or whose state is
    unknown (the service does not answer), keeps that colour only as a frame: old data
    proves nothing, and it is never shown green.
    """

    machine: str
    name: str
    state: str
    shown: str
    colour: str
    stale: bool
    age_s: float | None
    stale_after_s: float
    t_ns: int | None
    score: float | None
    alert: float
    danger: float | None
    diagnosis: str
    model: str
    iso_zone: str  # the worst channel's zone
    velocity_rms_mm_s: float | None  # the highest channel's
    channels: tuple[ChannelTile, ...] = ()
    sensor_faults: tuple[str, ...] = ()
    appliance_fault: bool = False
    since_ns: int | None = None  # when the machine entered ``state``
    reason: str = ""  # why (the transition's reason)
    ack_by: str | None = None  # who acknowledged the current latch
    ack_ns: int | None = None
    ack_comment: str = ""
    unknown: str = ""  # why the state is unknown ('' when known): the service did not answer

    @property
    def label(self) -> str:
        """The big word on the tile: ``TRIP``, ``SENSOR FAULT``, ``UNKNOWN``, ``NO DATA``."""
        if self.unknown and self.state != "no data":
            return "UNKNOWN"
        return self.shown.replace("_", " ").upper()

    @property
    def filled(self) -> bool:
        """The state colour fills the tile (fresh data, state known); else only a frame."""
        return not (self.stale or self.unknown) and self.state != "no data"

    @property
    def never_had_data(self) -> bool:
        return self.t_ns is None

    def rank(self) -> tuple[int, int, int, str]:
        """Sort key, worst first: state, then unacknowledged, then fresh before stale."""
        return (
            -_RANK.get(self.shown, 3),
            0 if self.unacknowledged else 1,
            1 if self.stale else 0,
            self.name.lower(),
        )


def stale_after_s(pipeline: Pipeline | None, floor_s: float = 10.0) -> float:
    """Data older than this is stale: 3 × the pipeline's hop, at least ``floor_s``."""
    if pipeline is None or pipeline.acquisition.sample_rate_hz is None:
        return floor_s
    hop_s = pipeline.acquisition.hop_samples / pipeline.acquisition.sample_rate_hz
    return max(floor_s, 3.0 * hop_s)


def score_thresholds(
    pipeline: Pipeline | None, log: Iterable[LogRecord] = ()
) -> tuple[float, float | None, float | None]:
    """(alert, danger, trip) score thresholds: alert is 1.0 for every model; danger is the
    model's (``model.json`` ``score.danger``, else the newest capture's thresholds); trip
    is the pipeline's ``score_trip`` (None when off or unknown)."""
    danger: float | None = None
    trip: float | None = None
    if pipeline is not None:
        trip = pipeline.alarms.score_trip or None
        mdir = pipeline.model_dir
        if mdir is not None:
            try:
                meta = json.loads((mdir / "model.json").read_text())
                danger = _finite(meta.get("score", {}).get("danger"))
            except (OSError, ValueError, AttributeError):
                danger = None
    if danger is None:
        for rec in log:
            if isinstance(rec, Capture):
                try:
                    danger = _finite(json.loads(rec.thresholds).get("danger"))
                except (ValueError, AttributeError):
                    continue
                if danger is not None:
                    break
    return 1.0, danger, trip


_ACK_MESSAGE = re.compile(r"^acknowledged by (.+): (?:danger|trip) acknowledged")


def ack_of(rec: Event) -> tuple[str, int, str] | None:
    """(by, t_ns, comment) of an ``acknowledge`` event that acknowledged a latch, else None.

    The event's message is ``acknowledged by NAME: <state> acknowledged …`` (written by
    the service's engine and by ``pdm-edge ack`` alike); its detail is the comment.
    """
    if rec.type != "acknowledge":
        return None
    m = _ACK_MESSAGE.match(rec.message)
    return None if m is None else (m.group(1), rec.t_ns, rec.detail)


def _history_alarm(states: Iterable[LogRecord]) -> tuple[str | None, dict[str, str], Any]:
    """From the log newest first: the machine's newest state change, each sensor's newest
    state, and the newest acknowledgement after that state change (or None)."""
    change: StateChange | None = None
    sensors: dict[str, str] = {}
    acks: list[tuple[str, int, str]] = []
    for rec in states:
        if isinstance(rec, StateChange):
            if rec.sensor:
                sensors.setdefault(rec.sensor, rec.new)
            elif change is None:
                change = rec
        elif isinstance(rec, Event) and change is None:
            got = ack_of(rec)
            if got is not None:
                acks.append(got)
    ack = acks[0] if acks and change is not None and change.new in ("danger", "trip") else None
    return (None if change is None else change.new), sensors, (change, ack)


def machine_tile(
    status: MachineStatus,
    pipeline: Pipeline | None = None,
    states: Sequence[LogRecord] = (),
    *,
    now_s: float | None = None,
    alarm: AlarmStatus | None = None,
    unknown: str = "",
) -> Tile:
    """The tile of one machine from its status, pipeline and log (newest first: state
    changes, acknowledge events, captures).

    ``alarm`` is the machine's alarm state from its owner (the service, or the state store)
    and wins over what history says; ``unknown`` says why that state is not known now.
    """
    now = time.time() if now_s is None else now_s
    machine_state, sensors, (change, ack) = _history_alarm(states)
    faults = tuple(sorted(s for s, new in sensors.items() if new == "sensor_fault"))
    appliance = any(new == "appliance_fault" for new in sensors.values())
    faults = tuple(s for s in faults if s != "appliance")
    if pipeline is not None:  # where the sensor sits, as people call it
        where = {x.id: labels.location_label(x.location, x.id) for x in pipeline.sensors}
        faults = tuple(where.get(s, s) for s in faults)
    since_ns = change.t_ns if change is not None else None
    reason = change.reason if change is not None else ""
    ack_by, ack_ns, ack_comment = (ack[0], ack[1], ack[2]) if ack else (None, None, "")
    if status.t_ns is None and alarm is None:
        state = "no data"
    else:
        state = machine_state or status.alarm_state or "ok"
        if alarm is not None:
            state = alarm.state
            since_ns, reason = alarm.since_ns, alarm.reason or reason
            ack_by, ack_ns, ack_comment = alarm.ack_by, alarm.ack_ns, alarm.ack_comment
        if state not in _SEVERITY:  # a sensor transition reported as the newest state
            state = "ok"
    if state not in ("danger", "trip"):
        ack_by, ack_ns, ack_comment = None, None, ""
    shown = state
    if appliance:
        shown = "appliance_fault"
    elif faults and _SEVERITY.get(state, 0) < _SEVERITY["danger"]:
        shown = "sensor_fault"
    age = None if status.t_ns is None else max(0.0, now - status.t_ns / NS)
    limit = stale_after_s(pipeline)
    stale = age is None or age > limit
    colour = STATE_COLOURS.get(shown, STATE_COLOURS["stale"])
    if shown == "ok" and (stale or (unknown and state != "no data")):
        colour = STATE_COLOURS["stale"]  # an OK that is not known now is never shown green
    channels = []
    for ch, row in sorted(status.channels.items()):
        channels.append(
            ChannelTile(
                ch,
                str(row.get("iso_zone") or "?"),
                _finite(row.get("velocity_rms_mm_s")),
                labels.channel_label(pipeline, ch),
            )
        )
    zones = [c.iso_zone for c in channels if c.iso_zone in "ABCD" and c.iso_zone]
    vel = [c.velocity_rms_mm_s for c in channels if c.velocity_rms_mm_s is not None]
    alert, danger, _trip = score_thresholds(pipeline, states)
    return Tile(
        machine=status.machine,
        name=pipeline.machine.name if pipeline is not None else status.machine,
        state=state,
        shown=shown,
        colour=colour,
        stale=stale,
        age_s=age,
        stale_after_s=limit,
        t_ns=status.t_ns,
        score=_finite(status.score),
        alert=alert,
        danger=danger,
        diagnosis=status.diagnosis or "",
        model=status.model or "",
        iso_zone=max(zones) if zones else "?",
        velocity_rms_mm_s=max(vel) if vel else None,
        channels=tuple(channels),
        sensor_faults=faults,
        appliance_fault=appliance,
        since_ns=since_ns,
        reason=reason,
        ack_by=ack_by,
        ack_ns=ack_ns,
        ack_comment=ack_comment,
        unknown=unknown if state != "no data" else "",
    )


def machine_tiles(
    store: HistoryStore,
    pipelines: Mapping[str, Pipeline],
    *,
    now_s: float | None = None,
    alarms: StatusRead | None = None,
) -> list[Tile]:
    """A tile per machine in history, plus one ``no data`` tile per pipeline not yet in it,
    worst first. ``alarms``: the alarm states from their owner (:mod:`pdm.dashboard.status`)."""
    tiles = []
    seen = set()
    owned = alarms.machines if alarms is not None else {}
    # Only a service that was asked and did not answer makes the states unknown; without
    # one, the local state store (or history) is where the states live.
    unknown = (
        alarms.problem if alarms is not None and alarms.problem.startswith(UNREACHABLE) else ""
    )
    for status in store.latest_status():
        seen.add(status.machine)
        log = store.log(status.machine, kinds=("states", "events", "captures"), limit=200)
        tiles.append(
            machine_tile(
                status,
                pipelines.get(status.machine),
                log,
                now_s=now_s,
                alarm=owned.get(status.machine),
                unknown=unknown,
            )
        )
    for mid in sorted(set(pipelines) - seen):
        empty = MachineStatus(mid, None, None, None, None, None, None, None)
        tiles.append(machine_tile(empty, pipelines[mid], (), now_s=now_s))
    return sorted(tiles, key=Tile.rank)


# --- ranges --------------------------------------------------------------------------------


def data_span(store: HistoryStore, machine: str) -> tuple[int, int] | None:
    """(first, last) data time of ``machine`` in ns, or None. Works on any store: the first
    time is narrowed down with a few coarse trend reads (no full scan)."""
    statuses = store.latest_status(machine)
    if not statuses or statuses[0].t_ns is None:
        return None
    last = int(statuses[0].t_ns)
    lo, hi = 0, last + 1
    for name in ("rms_g", "score"):
        lo, hi = 0, last + 1
        found = False
        for _ in range(6):
            trends = store.trend(machine, name, lo, hi, points=1000)
            starts = [int(t.t_ns[0]) for t in trends if len(t.t_ns)]
            if not starts:
                break
            found = True
            width = trends[0].bucket_ns
            first = min(starts)
            lo, hi = max(lo, first), min(hi, first + width)
            if width <= 1000:
                break
        if found:
            return lo, last
    return last, last


def time_range(span: tuple[int, int] | None, choice: str) -> tuple[int, int] | None:
    """[start, end) in ns for a range choice, anchored at the newest data (replayed
    recordings have old timestamps); None when there is no data."""
    if span is None:
        return None
    first, last = span
    end = last + 1
    seconds = RANGES.get(choice)
    if seconds is None:
        return first, end
    return max(first, end - int(seconds * NS)), end


# --- trends --------------------------------------------------------------------------------


def trend_rows(
    store: HistoryStore,
    machine: str,
    name: str,
    start_ns: int,
    end_ns: int,
    *,
    points: int = 400,
) -> list[dict[str, Any]]:
    """One row per (bucket, channel): ``t``, ``t_ns``, ``channel``, ``mean``, ``min``, ``max``."""
    rows: list[dict[str, Any]] = []
    for tr in store.trend(machine, name, start_ns, end_ns, points=points):
        for t, mean, lo, hi in zip(
            tr.t_ns.tolist(), tr.mean.tolist(), tr.min.tolist(), tr.max.tolist(), strict=True
        ):
            rows.append(
                {
                    "t": iso(t),
                    "t_ns": t,
                    "channel": tr.channel or name,
                    "field": name,
                    "mean": mean,
                    "min": lo,
                    "max": hi,
                }
            )
    return rows


def zone_bands(pipeline: Pipeline | None, top: float | None = None) -> list[dict[str, Any]]:
    """ISO 10816-3 zone bands (``zone``, ``lo``, ``hi``, ``colour``) in mm/s for the chart
    background; zone D reaches up to ``top`` (default 1.5 × the C/D boundary)."""
    group, foundation = (2, "rigid")
    if pipeline is not None:
        group, foundation = pipeline.machine.iso_group, pipeline.machine.foundation
    ab, bc, cd = zone_limits(group, foundation)
    upper = max(cd * 1.5, top or 0.0)
    edges = [(0.0, ab), (ab, bc), (bc, cd), (cd, upper)]
    return [
        {"zone": z, "lo": lo, "hi": hi, "colour": ZONE_COLOURS[z]}
        for z, (lo, hi) in zip("ABCD", edges, strict=True)
    ]


def bearing_trend_names(feature_names: Iterable[str]) -> list[str]:
    """The envelope bearing-frequency features (``env_bpfo_g``, …) among ``feature_names``."""
    return [n for n in feature_names if n.startswith("env_") and not n.endswith("_2x_g")]


# --- spectra -------------------------------------------------------------------------------


def spectrum_rows(spectrum: Spectrum) -> list[dict[str, Any]]:
    """One row per line: ``freq_hz``, ``amplitude`` (peak, in the spectrum's unit)."""
    return [
        {"freq_hz": f, "amplitude": a}
        for f, a in zip(
            spectrum.freqs_hz.tolist(), spectrum.values.astype(float).tolist(), strict=True
        )
    ]


def recent_spectra(
    store: HistoryStore,
    url: StoreURL,
    machine: str,
    channel: str,
    type: str,
    *,
    limit: int = 30,
) -> list[Spectrum]:
    """The newest ``limit`` spectra of one (channel, type), oldest first.

    The store protocol only reads the newest spectrum; for SQLite the file is read
    directly (read-only) for the waterfall. Other stores give the newest one only.
    """
    if url.scheme == "sqlite" and url.path is not None and url.path.exists():
        try:
            rows = []
            for path in history_files(url.path):  # a service's workers write a file each
                db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
                try:
                    rows += db.execute(
                        'SELECT sensor, t_ns, f0_hz, df_hz, unit, "values" FROM spectra '
                        "WHERE machine = ? AND channel = ? AND type = ? ORDER BY t_ns DESC LIMIT ?",
                        (machine, channel, type, int(limit)),
                    ).fetchall()
                finally:
                    db.close()
            rows = sorted(rows, key=lambda r: -int(r[1]))[: int(limit)]
            out = [
                Spectrum(
                    machine,
                    r[0],
                    channel,
                    int(r[1]),
                    type,
                    float("nan") if r[2] is None else float(r[2]),
                    float("nan") if r[3] is None else float(r[3]),
                    r[4],
                    np.frombuffer(r[5], dtype="<f4").astype(np.float32),
                )
                for r in rows
            ]
            return out[::-1]
        except sqlite3.Error:
            pass
    return [s for s in store.latest_spectra(machine, channel) if s.type == type]


def waterfall_rows(spectra: Sequence[Spectrum], *, lines: int = 160) -> list[dict[str, Any]]:
    """Heatmap rows (``t``, ``t_label``, ``f_lo``, ``f_hi``, ``freq_hz``, ``amplitude``, ``db``) of
    several spectra, each merged to at most ``lines`` bands by peak-hold (a narrow line
    never disappears)."""
    rows: list[dict[str, Any]] = []
    for sp in spectra:
        v = np.asarray(sp.values, dtype=np.float64)
        if v.size == 0:
            continue
        step = max(1, math.ceil(v.size / lines))
        n = math.ceil(v.size / step)
        padded = np.full(n * step, np.nan)
        padded[: v.size] = v
        peak = np.nanmax(padded.reshape(n, step), axis=1)
        t = iso(sp.t_ns)
        t_label = t[:19].replace("T", " ")
        for i, a in enumerate(peak.tolist()):
            f_lo = sp.f0_hz + i * step * sp.df_hz
            rows.append(
                {
                    "t": t,
                    "t_label": t_label,
                    "f_lo": f_lo,
                    "f_hi": f_lo + step * sp.df_hz,
                    "freq_hz": f_lo + step * sp.df_hz / 2,
                    "amplitude": a,
                    "db": 20 * math.log10(max(a, 1e-9)),
                }
            )
    return rows


# --- captures ------------------------------------------------------------------------------


@dataclass
class Waveform:
    capture: Capture
    meta: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # t_s, channel, min_g, max_g


def capture_waveform(
    data_dir: str | Path, capture: Capture, *, window: int = -1, points: int = 1500
) -> Waveform:
    """One window of a capture, per channel, as min/max per bucket (``t_s``, ``channel``,
    ``min_g``, ``max_g``) so that peaks survive the reduction to ``points`` buckets.

    Raises ``OSError`` / ``ValueError`` when the capture files are missing or unreadable.
    """
    data, meta = load_capture(data_dir, capture)
    if data.ndim != 3 or data.shape[0] == 0:
        raise ValueError(f"capture {capture.id}: unexpected shape {data.shape}")
    win = np.asarray(data[window], dtype=np.float64)  # (channels, samples)
    fs = float(meta.get("fs_hz") or capture.fs_hz)
    channels = list(meta.get("channels") or capture.channels)
    n = win.shape[-1]
    step = max(1, math.ceil(n / points))
    m = math.ceil(n / step)
    rows: list[dict[str, Any]] = []
    for c, name in enumerate(channels[: win.shape[0]]):
        x = np.full(m * step, np.nan)
        x[:n] = win[c]
        x2 = x.reshape(m, step)
        lo, hi = np.nanmin(x2, axis=1).tolist(), np.nanmax(x2, axis=1).tolist()
        for i in range(m):
            rows.append({"t_s": i * step / fs, "channel": name, "min_g": lo[i], "max_g": hi[i]})
    return Waveform(capture, meta, rows)
