"""What goes into history: typed records, their byte codec, and builders from the pipeline.

Every store (SQLite, InfluxDB 1.x, InfluxDB 2.x) writes and reads the same
records; the spool keeps them as bytes (:func:`encode` / :func:`decode`, no
pickle) until a store takes them.

High-rate data travels in column form, one record per group of windows:

=================  =========================================================
``FeatureRows``    features of n (window, channel) rows — the bulk of history
``ScoreRows``      anomaly score, per-window state, diagnosis of n windows
``Spectrum``       one decimated amplitude or envelope spectrum
``StateChange``    an alarm-state transition (critical: never dropped)
``Event``          something that happened: stream gap, capture, store down…
``ActionResult``   one attempt of an action (relay, webhook) and its outcome
``Capture``        the raw window(s) behind a decision, kept as a file
=================  =========================================================

Times are integer nanoseconds since the Unix epoch (UTC), as InfluxDB stores
them. Every record is keyed so that writing it twice stores it once (the
spool may resend after a crash): features by (machine, channel, time),
scores by (machine, time), the rest by (machine, time, kind-specific key).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from pdm.core.events import event_id
from pdm.core.time import to_ns
from pdm.scoring.result import WindowScore, written_score

__all__ = [
    "CRITICAL_KINDS",
    "DROP_ORDER",
    "KINDS",
    "ActionResult",
    "Capture",
    "Event",
    "FeatureRows",
    "Kind",
    "Record",
    "ScoreRows",
    "Spectrum",
    "StateChange",
    "decode",
    "encode",
    "event_id",
    "to_ns",
]

Kind = Literal["features", "scores", "spectra", "states", "events", "actions", "captures"]
KINDS: tuple[Kind, ...] = (
    "features",
    "scores",
    "spectra",
    "states",
    "events",
    "actions",
    "captures",
)
#: The spool's overflow policy: when it is full, these kinds go, in this order
#: (oldest first within a kind). Everything else is never dropped.
DROP_ORDER: tuple[Kind, ...] = ("spectra", "features", "scores")
#: Never dropped, and spooled with fsync before ``submit`` returns.
CRITICAL_KINDS: frozenset[Kind] = frozenset({"states", "events", "actions", "captures"})


@dataclass(frozen=True, slots=True, eq=False)
class FeatureRows:
    """Features of ``n`` rows, one row per (window, channel).

    Attributes
    ----------
    machine : machine id
    t_ns : (n,) int64, window start times
    window : (n,) int64, window index in its stream
    sensor, channel : n sensor ids and channel (column) names
    names : the k feature names, units in the name (``rms_g``, ``velocity_rms_mm_s``)
    values : (n, k) float64; NaN where a feature does not apply or the window was invalid
    iso_zone : n ISO 10816-3 zone letters (``'?'`` when unknown)
    valid : (n,) bool, False when the window held invalid samples
    """

    kind: ClassVar[Kind] = "features"
    machine: str
    t_ns: npt.NDArray[np.int64]
    window: npt.NDArray[np.int64]
    sensor: tuple[str, ...]
    channel: tuple[str, ...]
    names: tuple[str, ...]
    values: npt.NDArray[np.float64]
    iso_zone: tuple[str, ...]
    valid: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.t_ns)

    def __post_init__(self) -> None:
        n = len(self.t_ns)
        if self.values.shape != (n, len(self.names)):
            raise ValueError(f"values {self.values.shape} do not fit {n} rows × {len(self.names)}")
        # One comparison chain first (a record is built for every window): the loop that
        # names the culprit runs only when something does not fit.
        if not (
            len(self.window) == len(self.sensor) == len(self.channel) == len(self.iso_zone)
            == len(self.valid) == n
        ):  # fmt: skip
            _lengths(self, n, ("window", "sensor", "channel", "iso_zone", "valid"))

    def select(self, keep: npt.NDArray[np.bool_]) -> FeatureRows:
        """The rows where ``keep`` is True."""
        idx = np.flatnonzero(keep).tolist()
        return FeatureRows(
            self.machine,
            self.t_ns[keep],
            self.window[keep],
            tuple(self.sensor[i] for i in idx),
            tuple(self.channel[i] for i in idx),
            self.names,
            self.values[keep],
            tuple(self.iso_zone[i] for i in idx),
            self.valid[keep],
        )


def _lengths(rec: FeatureRows | ScoreRows, n: int, names: tuple[str, ...]) -> None:
    """Raise the ``ValueError`` naming the first column of ``rec`` that has not ``n`` entries."""
    for name in names:
        if len(getattr(rec, name)) != n:
            raise ValueError(f"{name} has {len(getattr(rec, name))} entries for {n} rows")


@dataclass(frozen=True, slots=True, eq=False)
class ScoreRows:
    """Anomaly scores of ``n`` windows of one machine, by one model.

    Attributes
    ----------
    machine : machine id
    model : model version (first 12 hex digits of the ONNX file's SHA-256); ``''`` while learning
    t_ns, window : (n,) int64, window start time and index
    score : (n,) float64, 1.0 = alert threshold; NaN for invalid or learning windows
    state : per window, before debouncing: ``ok``, ``alert``, ``danger``, ``invalid``, ``learning``
    diagnosis : per window (``''`` when none)
    top : per window, the top features as JSON text (``''`` when none)
    diagnosis_confidence : (n,) float64, how sure each window's diagnosis is (0–1; NaN when
        none), or None when not known (rows written before it was stored). A what-if needs
        it to reproduce a score trip the diagnosis corroborates (docs/alarms.md).
    """

    kind: ClassVar[Kind] = "scores"
    machine: str
    model: str
    t_ns: npt.NDArray[np.int64]
    window: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]
    state: tuple[str, ...]
    diagnosis: tuple[str, ...]
    top: tuple[str, ...]
    diagnosis_confidence: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.t_ns)

    def __post_init__(self) -> None:
        n = len(self.t_ns)
        if not (
            len(self.window) == len(self.score) == len(self.state) == len(self.diagnosis)
            == len(self.top) == n
        ):  # fmt: skip
            _lengths(self, n, ("window", "score", "state", "diagnosis", "top"))
        if self.diagnosis_confidence is not None and len(self.diagnosis_confidence) != n:
            _lengths(self, n, ("diagnosis_confidence",))

    @classmethod
    def from_scores(cls, machine: str, scores: Sequence[WindowScore]) -> ScoreRows:
        """From the window path's scores (:meth:`pdm.scoring.stream.ScoreStream.score`), all
        of one model; the score written to :data:`~pdm.scoring.result.SCORE_DECIMALS`
        (history's schema), an unscored window's state ``invalid``."""
        if len(scores) == 1:  # the service: a window at a time, the same values
            s = scores[0]
            return cls(
                machine,
                s.model,
                np.array([s.t_ns], dtype=np.int64),
                np.array([s.window], dtype=np.int64),
                np.array([np.nan if s.score is None else written_score(s.score)], dtype=np.float64),
                (s.state or "invalid",),
                (s.diagnosis or "",),
                (json.dumps(list(s.top_features)) if s.top_features else "",),
                np.array([_confidence(s)], dtype=np.float64),
            )
        models = {s.model for s in scores}
        if len(models) > 1:
            raise ValueError(f"scores of several models in one batch: {sorted(models)}")
        return cls(
            machine,
            models.pop() if models else "",
            np.array([s.t_ns for s in scores], dtype=np.int64),
            np.array([s.window for s in scores], dtype=np.int64),
            np.array(
                [np.nan if s.score is None else written_score(s.score) for s in scores],
                dtype=np.float64,
            ),
            tuple(s.state or "invalid" for s in scores),
            tuple(s.diagnosis or "" for s in scores),
            tuple(json.dumps(list(s.top_features)) if s.top_features else "" for s in scores),
            np.array([_confidence(s) for s in scores], dtype=np.float64),
        )


def _confidence(s: WindowScore) -> float:
    """A window's diagnosis confidence as stored: NaN when it has no diagnosis."""
    return s.diagnosis_confidence if s.diagnosis else math.nan


@dataclass(frozen=True, slots=True, eq=False)
class Spectrum:
    """One decimated spectrum of one channel, for display (peak-hold over merged bins).

    ``values[i]`` is the amplitude in ``unit`` (peak, g) of the band starting at
    ``f0_hz + i·df_hz``; ``type`` is ``power`` (the acceleration spectrum, as
    amplitude) or ``envelope``.
    """

    kind: ClassVar[Kind] = "spectra"
    machine: str
    sensor: str
    channel: str
    t_ns: int
    type: str
    f0_hz: float
    df_hz: float
    unit: str
    values: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return 1

    @property
    def freqs_hz(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.f0_hz + self.df_hz * np.arange(len(self.values)), dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class StateChange:
    """An alarm-state transition of a machine (or of one sensor: ``sensor`` set)."""

    kind: ClassVar[Kind] = "states"
    machine: str
    t_ns: int
    old: str
    new: str
    reason: str
    sensor: str = ""
    score: float = math.nan
    capture: str = ""  # id of the Capture holding the windows behind it ('' if none)

    def __len__(self) -> int:
        return 1


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """Something that happened to a machine or to the appliance.

    ``type``: ``stream_gap``, ``stream_time_backwards``, ``stream_rate_change``, ``capture``
    (on demand), ``store_down``, ``store_up``, ``rows_dropped`` (the spool overflowed),
    ``acknowledge``; from the service: ``service_start``, ``service_stop``,
    ``backlog_dropped``, ``processing_error``, ``stream_*`` (connections), ``model_swapped``,
    ``model_rejected``, ``model_shadow_started``, ``model_shadow_stopped``,
    ``model_promoted``, ``model_rolled_back``; from the scores: ``below_baseline``,
    ``below_baseline_cleared``, ``teach_in_restarted``, ``teach_in_needs_decision``,
    ``teach_in_trained``, ``teach_in_decided``; ``teach_in_decision`` (the API took one).
    ``severity``: ``info``,
    ``warning`` or ``alarm``. ``detail`` is JSON text.
    """

    kind: ClassVar[Kind] = "events"
    machine: str
    t_ns: int
    type: str
    severity: str
    message: str
    sensor: str = ""
    detail: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", event_id(self.machine, self.t_ns, self.type, self.message)
            )

    def __len__(self) -> int:
        return 1


@dataclass(frozen=True, slots=True, eq=False)
class ActionResult:
    """One attempt of an action and its outcome (``ok``, ``failed``, ``retrying``, ``skipped``)."""

    kind: ClassVar[Kind] = "actions"
    machine: str
    t_ns: int
    action: str
    target: str
    outcome: str
    attempt: int = 1
    detail: str = ""
    event_id: str = ""

    def __len__(self) -> int:
        return 1


@dataclass(frozen=True, slots=True, eq=False)
class Capture:
    """The raw window(s) behind a decision, stored as a file next to the history.

    ``path`` is relative to the store's data directory; ``thresholds`` is JSON
    text (alert, danger and any limits in force); ``model`` the model version.
    """

    kind: ClassVar[Kind] = "captures"
    machine: str
    t_ns: int
    id: str
    reason: str
    path: str
    model: str
    thresholds: str
    fs_hz: float
    channels: tuple[str, ...]
    samples: int

    def __len__(self) -> int:
        return 1


Record = FeatureRows | ScoreRows | Spectrum | StateChange | Event | ActionResult | Capture
_TYPES: dict[str, type[Any]] = {
    t.kind: t for t in (FeatureRows, ScoreRows, Spectrum, StateChange, Event, ActionResult, Capture)
}

# --- byte codec (the spool's format): a JSON header, then raw little-endian arrays ----------

_MAGIC = b"PDH1"


def encode(rec: Record) -> bytes:
    """A record as bytes: ``PDH1``, header length, JSON header, array bytes. No pickle."""
    head: dict[str, Any] = {"kind": rec.kind}
    arrays: list[bytes] = []
    specs: dict[str, Any] = {}
    for f in dataclasses.fields(rec):
        v = getattr(rec, f.name)
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
            specs[f.name] = [a.dtype.str, list(a.shape)]
            arrays.append(a.tobytes())
        elif isinstance(v, float) and not math.isfinite(v):
            head[f.name] = {"float": repr(v)}
        else:
            head[f.name] = v
    head["arrays"] = specs
    hb = json.dumps(head, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(hb)), hb, *arrays])


def decode(data: bytes) -> Record:
    """The inverse of :func:`encode`; ``ValueError`` on anything else."""
    if data[:4] != _MAGIC:
        raise ValueError("not a pdm-edge history record")
    (n,) = struct.unpack_from("<I", data, 4)
    head = json.loads(data[8 : 8 + n])
    cls = _TYPES.get(head.pop("kind"))
    if cls is None:
        raise ValueError("unknown record kind")
    pos = 8 + n
    kwargs: dict[str, Any] = {}
    for name, (dtype, shape) in head.pop("arrays").items():
        dt = np.dtype(dtype)
        count = math.prod(shape)
        a = np.frombuffer(data, dtype=dt, count=count, offset=pos).reshape(shape)
        pos += count * dt.itemsize
        kwargs[name] = a.astype(dt.newbyteorder("="))
    if pos != len(data):
        raise ValueError("record length does not match its header")
    for f in dataclasses.fields(cls):
        if f.name in head:
            v = head[f.name]
            if isinstance(v, dict) and "float" in v:
                v = float(v["float"])
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
    return cls(**kwargs)
