"""What the dashboard pages show, computed from history reads: no Streamlit here.

Every function takes store reads (or a store) and returns plain values: dataclasses and
lists of row dicts (one dict per point, ready for a DataFrame / Altair chart). Times in
rows are ISO 8601 UTC strings (``t``) plus nanoseconds (``t_ns``) where useful.

The pages (:mod:`pdm.dashboard.overview`, :mod:`pdm.dashboard.machine`) only lay these out.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pdm.config import Pipeline
from pdm.dsp.iso import zone_limits
from pdm.history.base import HistoryStore, LogRecord, MachineStatus, StoreURL
from pdm.history.provenance import load_capture
from pdm.history.records import Capture, Spectrum, StateChange

__all__ = [
    "RANGES",
    "STATE_COLOURS",
    "ZONE_COLOURS",
    "ChannelTile",
    "Marker",
    "Tile",
    "Waveform",
    "bearing_trend_names",
    "capture_waveform",
    "data_span",
    "duration_text",
    "machine_tile",
    "machine_tiles",
    "recent_spectra",
    "score_thresholds",
    "spectrum_markers",
    "spectrum_rows",
    "stale_after_s",
    "time_range",
    "trend_rows",
    "waterfall_rows",
    "zone_bands",
]

NS = 1_000_000_000


def duration_text(s: float) -> str:
    """A duration for a person: ``45 s``, ``12 min``, ``3.5 h``, ``4 d``."""
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


#: Tile colours by shown state (dark high-contrast theme).
STATE_COLOURS: dict[str, str] = {
    "ok": "#1e8e3e",
    "alert": "#f2a900",
    "danger": "#d93025",
    "trip": "#7f0000",
    "sensor_fault": "#7b1fa2",
    "appliance_fault": "#7b1fa2",
    "stale": "#5f6368",
    "no data": "#5f6368",
}
#: ISO 10816-3 zone band colours (backgrounds of the velocity chart).
ZONE_COLOURS: dict[str, str] = {"A": "#1e8e3e", "B": "#7cb342", "C": "#f2a900", "D": "#d93025"}

#: Range choices of the machine page: label → seconds (None: all of the data).
RANGES: dict[str, float | None] = {
    "last 1 h": 3600.0,
    "last 24 h": 86400.0,
    "last 7 d": 7 * 86400.0,
    "all": None,
}

#: Machine states, highest first (used to order the tile state shown).
_SEVERITY = {"ok": 0, "alert": 1, "danger": 2, "trip": 3}


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


@dataclass(frozen=True)
class Tile:
    """One machine's overview tile.

    ``state`` is the machine's alarm state (``ok``, ``alert``, ``danger``, ``trip``; ``no data``),
    ``shown`` what the tile shows it as (a sensor or appliance fault, or ``stale``, take over),
    ``colour`` the tile colour. A stale tile is never green: old data proves nothing.
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

    @property
    def label(self) -> str:
        """The big word on the tile: ``TRIP``, ``SENSOR FAULT``, ``TRIP · STALE``…"""
        word = self.shown.replace("_", " ").upper()
        if self.stale and self.shown != "stale":
            return f"{word} · STALE"
        return word


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


def _sensor_states(states: Iterable[LogRecord]) -> tuple[str | None, dict[str, str]]:
    """From state changes newest first: the machine's newest state and each sensor's."""
    machine_state: str | None = None
    sensors: dict[str, str] = {}
    for rec in states:
        if not isinstance(rec, StateChange):
            continue
        if rec.sensor:
            sensors.setdefault(rec.sensor, rec.new)
        elif machine_state is None:
            machine_state = rec.new
    return machine_state, sensors


def machine_tile(
    status: MachineStatus,
    pipeline: Pipeline | None = None,
    states: Sequence[LogRecord] = (),
    *,
    now_s: float | None = None,
) -> Tile:
    """The tile of one machine from its status, pipeline and state changes (newest first)."""
    now = time.time() if now_s is None else now_s
    machine_state, sensors = _sensor_states(states)
    faults = tuple(sorted(s for s, new in sensors.items() if new == "sensor_fault"))
    appliance = any(new == "appliance_fault" for new in sensors.values())
    faults = tuple(s for s in faults if s != "appliance")
    if status.t_ns is None:
        state = "no data"
    else:
        state = machine_state or status.alarm_state or "ok"
        if state not in _SEVERITY:  # a sensor transition reported as the newest state
            state = "ok"
    shown = state
    if appliance:
        shown = "appliance_fault"
    elif faults and _SEVERITY.get(state, 0) < _SEVERITY["danger"]:
        shown = "sensor_fault"
    age = None if status.t_ns is None else max(0.0, now - status.t_ns / NS)
    limit = stale_after_s(pipeline)
    stale = age is None or age > limit
    colour = STATE_COLOURS["stale"] if stale else STATE_COLOURS.get(shown, STATE_COLOURS["stale"])
    channels = []
    for ch, row in sorted(status.channels.items()):
        channels.append(
            ChannelTile(ch, str(row.get("iso_zone") or "?"), _finite(row.get("velocity_rms_mm_s")))
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
    )


def machine_tiles(
    store: HistoryStore, pipelines: Mapping[str, Pipeline], *, now_s: float | None = None
) -> list[Tile]:
    """A tile per machine in history, plus one ``no data`` tile per pipeline not yet in it."""
    tiles = []
    seen = set()
    for status in store.latest_status():
        seen.add(status.machine)
        states = store.log(status.machine, kinds=("states", "captures"), limit=200)
        tiles.append(machine_tile(status, pipelines.get(status.machine), states, now_s=now_s))
    for mid in sorted(set(pipelines) - seen):
        empty = MachineStatus(mid, None, None, None, None, None, None, None)
        tiles.append(machine_tile(empty, pipelines[mid], (), now_s=now_s))
    return tiles


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


@dataclass(frozen=True)
class Marker:
    label: str  # '1×', 'BPFO', …
    freq_hz: float
    kind: str  # 'order' or 'bearing'


def spectrum_markers(
    pipeline: Pipeline | None,
    channel: str | None = None,
    *,
    rpm: float | None = None,
    max_hz: float | None = None,
) -> list[Marker]:
    """Shaft orders 1×, 2×, 3× and the bearing defect frequencies (BPFO, BPFI, BSF, FTF)
    at the pipeline's speed (or ``rpm``) for the bearing under ``channel``'s sensor."""
    if rpm is None:
        if pipeline is None or pipeline.machine.speed is None:
            return []
        rpm = pipeline.machine.speed.nominal
    shaft = rpm / 60.0
    out = [Marker(f"{k}×", k * shaft, "order") for k in (1, 2, 3)]
    bearing = None
    if pipeline is not None and channel is not None:
        try:
            bearing = pipeline.bearing_for(channel)
        except KeyError:
            bearing = None
    if bearing is not None:
        for name, f in bearing.defect_frequencies_hz(shaft).items():
            out.append(Marker(name.upper(), f, "bearing"))
    if max_hz is not None:
        out = [m for m in out if m.freq_hz <= max_hz]
    return out


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
            db = sqlite3.connect(f"{url.path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
            try:
                rows = db.execute(
                    'SELECT sensor, t_ns, f0_hz, df_hz, unit, "values" FROM spectra '
                    "WHERE machine = ? AND channel = ? AND type = ? ORDER BY t_ns DESC LIMIT ?",
                    (machine, channel, type, int(limit)),
                ).fetchall()
            finally:
                db.close()
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
    """Heatmap rows (``t``, ``f_lo``, ``f_hi``, ``freq_hz``, ``amplitude``, ``db``) of
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
        for i, a in enumerate(peak.tolist()):
            f_lo = sp.f0_hz + i * step * sp.df_hz
            rows.append(
                {
                    "t": t,
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
