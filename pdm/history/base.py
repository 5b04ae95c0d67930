"""The history interface: one protocol for SQLite and InfluxDB, store URLs, read results.

The pipeline writes through :class:`pdm.history.writer.HistoryWriter` (which
owns the queue and the disk spool); the dashboard reads a store directly.
A store only has to do two things well: write a batch of records, all or
nothing, raising :class:`HistoryError` (``retryable`` or not) when it cannot;
and answer the reads below.

Store URLs (``--store`` and ``[history] store``) are parsed by :mod:`pdm.store_url`,
below the configuration; :class:`StoreURL` and :func:`parse_store_url` are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pdm.errors import PdmError
from pdm.history.records import (
    ActionResult,
    Capture,
    Event,
    FeatureRows,
    Kind,
    Record,
    ScoreRows,
    Spectrum,
    StateChange,
)
from pdm.store_url import StoreURL, parse_store_url

__all__ = [
    "UNSTORABLE",
    "HistoryError",
    "HistoryStore",
    "LogRecord",
    "MachineStatus",
    "StoreURL",
    "Trend",
    "bucket_ns",
    "parse_store_url",
    "unstorable",
]

LogRecord = StateChange | Event | ActionResult | Capture


class HistoryError(PdmError):
    """A store cannot write or read right now (``retryable``) or ever (permanent)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


#: What binding or encoding raises for a value a store cannot take (an integer beyond int64,
#: a str with a lone surrogate, a type it has no form for): the record never will be stored.
UNSTORABLE = (OverflowError, ValueError, TypeError)


def unstorable(where: str, exc: BaseException) -> HistoryError:
    """The permanent :class:`HistoryError` of an :data:`UNSTORABLE` error: the writer moves
    the record to the spool's ``rejected`` table rather than retry it for ever."""
    reason = " ".join(str(exc).split())[:200]
    return HistoryError(
        f"{where}: a value cannot be stored: {type(exc).__name__}: {reason}", retryable=False
    )


@dataclass(frozen=True, slots=True)
class MachineStatus:
    """The newest known state of one machine.

    ``t_ns`` is the newest feature or score time (None: no data yet); ``state``
    and ``score`` come from the newest score row, ``alarm_state`` from the
    newest state change; ``channels`` maps each channel to its newest feature
    row (feature name → value, plus ``iso_zone`` and ``t_ns``); ``appliance`` is the
    id of the appliance that wrote the newest score row ('' when unknown).
    """

    machine: str
    t_ns: int | None
    score: float | None
    state: str | None
    model: str | None
    diagnosis: str | None
    alarm_state: str | None
    alarm_t_ns: int | None
    channels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    appliance: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class Trend:
    """One downsampled series: buckets of ``bucket_ns`` starting at ``t_ns`` (only non-empty ones)."""

    machine: str
    field: str
    channel: str  # '' for per-window series (score)
    bucket_ns: int
    t_ns: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]


def bucket_ns(start_ns: int, end_ns: int, points: int) -> int:
    """Bucket width for about ``points`` buckets over [start, end): a whole number of µs ≥ 1 µs.

    Buckets are aligned to the epoch (``t − t mod width``), as InfluxQL's ``GROUP BY time()``.
    """
    if points < 1:
        raise ValueError("points must be >= 1")
    span = max(end_ns - start_ns, 1)
    us = max(1, -(-span // (points * 1000)))
    return int(us * 1000)


class HistoryStore(Protocol):
    """What every store implements (see the contract tests in ``tests/history/test_history_contract.py``)."""

    #: The store's URL without secrets, for messages.
    url: str

    def write(self, records: Sequence[Record]) -> None:
        """Store a batch, all of it, or raise :class:`HistoryError`. Writing a record twice stores it once."""
        ...

    def ping(self) -> None:
        """Raise a retryable :class:`HistoryError` when the store cannot be reached."""
        ...

    def machines(self) -> list[str]:
        """Machine ids with any feature or score rows, sorted."""
        ...

    def latest_status(self, machine: str | None = None) -> list[MachineStatus]:
        """Newest status of ``machine``, or of every machine (sorted by id)."""
        ...

    def fleet(self) -> list[MachineStatus]:
        """Newest status of every (appliance, machine) pair, sorted by both: many appliances
        write one central store, and two of them may have machines of the same id."""
        ...

    def trend(
        self,
        machine: str,
        name: str,
        start_ns: int,
        end_ns: int,
        *,
        points: int = 500,
        channel: str | None = None,
    ) -> list[Trend]:
        """Feature ``name`` (or ``score``) in [start, end), mean/min/max per bucket; one Trend per channel."""
        ...

    def log(
        self,
        machine: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        limit: int = 200,
        kinds: Sequence[Kind] = ("states", "events", "actions", "captures"),
    ) -> list[LogRecord]:
        """The event log: state changes, events, action results and captures, newest first."""
        ...

    def latest_spectra(self, machine: str, channel: str | None = None) -> list[Spectrum]:
        """The newest spectrum of each (channel, type) of ``machine``."""
        ...

    def features(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> FeatureRows:
        """Every feature row of ``machine`` in [start, end), by time then channel."""
        ...

    def scores(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> ScoreRows:
        """Every score row of ``machine`` in [start, end), by time (model: the newest row's)."""
        ...

    def count(self, kind: Kind, machine: str | None = None) -> int:
        """Rows of one kind (feature rows count (window, channel) pairs)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...
