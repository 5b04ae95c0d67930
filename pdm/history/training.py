"""A training set from stored history: the feature rows a store holds, healthy windows only.

``pdm-edge train --from-store URL --machine ID --since T --until T`` (docs/models.md,
"Training from stored history"). Every window the appliance processed left one feature row
per channel in the history store; a model needs exactly those rows (the model features of
each channel, :data:`pdm.scoring.vector.MODEL_FEATURES`), so no raw signal has to be kept.
What the stored rows cannot say is whether the machine was healthy, so a window is left out
when

* any of its channels is missing or was marked invalid (bad samples), or
* the machine — or one of its sensors — was in any state but ``ok`` at its start
  (alert, danger, trip, sensor_fault, …: the state log says so, including the state it was
  in when ``since`` began), or
* it lies within the alarm's debounce span before a rise out of ``ok``: the debouncer raised
  the state after ``on`` of the last ``of`` windows were bad, so those ``of`` windows may
  already carry the fault.

Single windows whose score crossed the old model's threshold while the state stayed ``ok``
are kept: they are the healthy tail the calibration must see (cutting them would lower the
new thresholds and raise the false-alarm rate the card promises).

The sample rate is not stored with the rows; it follows from the windows' spacing (hop /
fs). A rate given (``--fs`` or the pipeline's) that disagrees with the spacing by more than
1 % is refused: the stored rows were made by another acquisition.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.core.time import iso_time
from pdm.errors import ModelError
from pdm.history.base import HistoryStore
from pdm.history.records import FeatureRows, StateChange
from pdm.scoring.train import TrainingSet
from pdm.scoring.vector import MODEL_FEATURES, vector_names

__all__ = [
    "MAX_STATE_CHANGES",
    "StoredWindows",
    "healthy_windows",
    "stored_windows",
    "training_set_from_store",
]

#: State changes read to judge a range; more is refused (narrow the range).
MAX_STATE_CHANGES = 100_000
#: How far a given sample rate may be from the one the rows' spacing implies.
FS_TOLERANCE = 0.01


@dataclass(frozen=True)
class StoredWindows:
    """The stored windows of one machine, one row per window (channels side by side).

    ``t_ns`` (n,) window starts, sorted; ``x`` (n, len(names)) model inputs (NaN where a
    channel's value is missing); ``complete`` (n,) every channel present and valid.
    """

    t_ns: npt.NDArray[np.int64]
    x: npt.NDArray[np.float32]
    names: tuple[str, ...]
    complete: npt.NDArray[np.bool_]


def stored_windows(rows: FeatureRows, channels: tuple[str, ...]) -> StoredWindows:
    """Feature rows (one per window and channel) side by side, one row per window."""
    names = vector_names(channels, rows.names, MODEL_FEATURES)
    t, inverse = np.unique(rows.t_ns, return_inverse=True)
    x = np.full((len(t), len(names)), np.nan, dtype=np.float32)
    seen = np.zeros((len(t), len(channels)), dtype=bool)
    ok = np.zeros((len(t), len(channels)), dtype=bool)
    for ci, ch in enumerate(channels):
        sel = np.array([c == ch for c in rows.channel], dtype=bool)
        if not sel.any():
            continue
        idx = inverse[sel]
        seen[idx, ci] = True
        ok[idx, ci] = rows.valid[sel]
        for j, q in enumerate(names):
            qc, _, feat = q.rpartition(".")
            if qc == ch:
                x[idx, j] = rows.values[sel, rows.names.index(feat)]
    complete = np.asarray((seen & ok).all(axis=1), dtype=bool)
    return StoredWindows(t.astype(np.int64), x, names, complete)


def healthy_windows(
    t_ns: npt.NDArray[np.int64],
    states: list[StateChange],
    *,
    debounce_windows: int,
) -> tuple[npt.NDArray[np.bool_], int]:
    """Which windows (start times ``t_ns``, sorted) were taken while everything was ``ok``.

    ``states``: every state change of the machine and its sensors up to the range's end,
    any order (those before the range give the state it began in). A window is unhealthy
    when any series (the machine, or one sensor) was not ``ok`` at its start, or when it is
    one of the ``debounce_windows`` windows before a change out of ``ok``. Returns the mask
    and how many windows were left out.
    """
    n = len(t_ns)
    bad = np.zeros(n, dtype=bool)
    by_series: dict[str, list[StateChange]] = {}
    for s in states:
        by_series.setdefault(s.sensor, []).append(s)
    times = t_ns.tolist()
    for changes in by_series.values():
        changes.sort(key=lambda s: s.t_ns)
        # Each state holds from its change to the next one (the last: to the end).
        state, lo = "ok", 0
        for s in changes:
            hi = bisect.bisect_left(times, s.t_ns)
            if state != "ok":
                bad[lo:hi] = True
            elif s.new != "ok":
                # The debounce span: the windows before the change that made it happen.
                bad[max(0, hi - debounce_windows) : hi] = True
            state, lo = s.new, hi
        if state != "ok":
            bad[lo:] = True
    return ~bad, int(bad.sum())


def _sample_rate(t_ns: npt.NDArray[np.int64], pipeline: Pipeline, fs: float | None) -> float:
    """fs from the windows' spacing (hop / fs), checked against a given one."""
    hop = pipeline.acquisition.hop_samples
    steps = np.diff(t_ns)
    steps = steps[steps > 0]
    if len(steps) == 0:
        if fs is None:
            raise ModelError("one stored window only: give the sample rate with --fs")
        return fs
    spacing_s = float(np.median(steps)) / 1e9
    implied = hop / spacing_s
    if fs is None:
        # Window starts are whole ns: the rate is good to ~1e-9; a mHz is far finer than any
        # DAQ's setting, and a rate the card and the service's pipeline can agree on.
        return round(implied, 3)
    if abs(implied / fs - 1.0) > FS_TOLERANCE:
        raise ModelError(
            f"the stored windows are {spacing_s:.4g} s apart, which is a hop of {hop} samples "
            f"at {implied:.6g} Hz, not at the {fs:g} Hz given: they were made by another "
            "acquisition (check the pipeline's window, overlap and sample rate)"
        )
    return fs


def training_set_from_store(
    store: HistoryStore,
    pipeline: Pipeline,
    *,
    machine: str,
    start_ns: int,
    end_ns: int,
    fs: float | None = None,
    source: str = "",
) -> TrainingSet:
    """The healthy stored windows of ``machine`` in [start, end) as a :class:`TrainingSet`.

    ``source`` names the store in the card (a URL without secrets). Raises
    :class:`ModelError` with one line when the range holds no rows, no healthy window, or
    rows the pipeline cannot have made.
    """
    if end_ns <= start_ns:
        raise ModelError(
            f"--until ({iso_time(end_ns / 1e9)}) must be after --since ({iso_time(start_ns / 1e9)})"
        )
    rows = store.features(machine, start_ns, end_ns)
    if len(rows) == 0:
        raise ModelError(
            f"{source or store.url}: no feature rows of machine {machine!r} between "
            f"{iso_time(start_ns / 1e9)} and {iso_time(end_ns / 1e9)}"
        )
    channels = tuple(pipeline.columns)
    missing = sorted(set(channels) - set(rows.channel))
    if missing:
        raise ModelError(
            f"{machine}: the stored rows have no channel {', '.join(map(repr, missing))} of the "
            f"pipeline (stored: {', '.join(sorted(set(rows.channel)))})"
        )
    try:
        w = stored_windows(rows, channels)
    except ValueError as exc:
        raise ModelError(f"{machine}: the stored rows cannot feed a model: {exc}") from None
    fs_hz = _sample_rate(w.t_ns, pipeline, fs)
    states = [
        r
        for r in store.log(machine, None, end_ns, limit=MAX_STATE_CHANGES + 1, kinds=("states",))
        if isinstance(r, StateChange)
    ]
    if len(states) > MAX_STATE_CHANGES:
        raise ModelError(
            f"{machine}: more than {MAX_STATE_CHANGES} state changes up to "
            f"{iso_time(end_ns / 1e9)}; give a narrower range"
        )
    _on, of = pipeline.alarms.delays(pipeline.acquisition)
    healthy, alarmed = healthy_windows(w.t_ns, states, debounce_windows=of)
    keep = healthy & w.complete
    x = w.x[keep]
    if len(x) == 0:
        raise ModelError(
            f"{machine}: none of the {len(w.t_ns)} stored windows between "
            f"{iso_time(start_ns / 1e9)} and {iso_time(end_ns / 1e9)} is healthy "
            f"({alarmed} in or just before an alarm, {int((~w.complete).sum())} incomplete or "
            "invalid); choose a range when the machine ran well"
        )
    # A feature that is missing in the healthy data (no bearing, no speed) cannot be modelled.
    finite = np.asarray(np.isfinite(x).all(axis=0), dtype=bool)
    if not finite.any():
        raise ModelError("no feature is finite in every healthy window; nothing to learn from")
    names = tuple(n for n, k in zip(w.names, finite, strict=True) if k)
    t_kept = w.t_ns[keep]
    span_s = pipeline.acquisition.window_samples / fs_hz
    info: dict[str, Any] = {
        "store": source or store.url,
        "machine": machine,
        "since": iso_time(start_ns / 1e9),
        "until": iso_time(end_ns / 1e9),
        "stored_windows": len(w.t_ns),
        "windows": len(x),
        "alarmed_windows": alarmed,
        "invalid_windows": int((~w.complete & healthy).sum()),
        "t_start": iso_time(float(t_kept[0]) / 1e9),
        "t_end": iso_time(float(t_kept[-1]) / 1e9 + span_s),
        "sample_rate_hz": fs_hz,
    }
    return TrainingSet(pipeline, fs_hz, names, [x[:, finite]], [info])
