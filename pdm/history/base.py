"""The history interface: one protocol for SQLite and InfluxDB, store URLs, read results.

The pipeline writes through :class:`pdm.history.writer.HistoryWriter` (which
owns the queue and the disk spool); the dashboard reads a store directly.
A store only has to do two things well: write a batch of records, all or
nothing, raising :class:`HistoryError` (``retryable`` or not) when it cannot;
and answer the reads below.

Store URLs (``--store`` and ``[history] store``)::

    sqlite:///relative/path.db            relative to the pipeline file (or the cwd)
    sqlite:////absolute/path.db
    influx1://[USER@]HOST:PORT/DATABASE[?rp=RP]       InfluxDB 1.x HTTP API (/write, /query)
    influx2://HOST:PORT?org=ORG&bucket=BUCKET[&db=DB&rp=RP]   v2 write API, InfluxQL reads
    influx1s://…, influx2s://…            the same over HTTPS (certificates verified)

Secrets never go in a URL or a pipeline file: the InfluxDB 1.x password comes
from ``PDM_INFLUX_PASSWORD`` (or the file named by ``PDM_INFLUX_PASSWORD_FILE``),
the 2.x token from ``PDM_INFLUX_TOKEN`` (or ``PDM_INFLUX_TOKEN_FILE``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import numpy.typing as npt

from pdm.errors import ConfigError, PdmError
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
from pdm.secrets import redact_url, secret_bytes

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
    """What every store implements (see the contract tests in ``tests/test_history_contract.py``)."""

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


# --- store URLs ------------------------------------------------------------------------------

Scheme = Literal["sqlite", "influx1", "influx2"]
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``secret`` (password or token) never appears in ``str()``."""

    scheme: Scheme
    text: str  # the URL as given (it never holds a secret)
    path: Path | None = None  # sqlite
    tls: bool = False
    host: str = ""
    port: int = 0
    database: str = ""  # influx1: database; influx2: the DBRP database name (default: bucket)
    rp: str = ""  # retention policy ('' = the database's default)
    user: str = ""
    org: str = ""
    bucket: str = ""
    secret: str = field(default="", repr=False)
    timeout_s: float = 10.0

    def __str__(self) -> str:
        return self.text

    @property
    def http_base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def _secret(var: str, where: str) -> str:
    """A secret from ``VAR`` or the file named by ``VAR_FILE`` ('' when neither is set)."""
    data = secret_bytes(var, f"{where}: secret")
    return "" if data is None else data.decode()


def parse_store_url(
    text: str,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    where: str = "--store",
    secrets: bool = True,
) -> StoreURL:
    """Parse a store URL; relative SQLite paths resolve against ``base_dir`` (default: cwd).

    With ``secrets=False`` (checking a file) the password or token is neither read nor
    required. Raises :class:`ConfigError` naming ``where`` and what is wrong.
    """
    text = text.strip()
    shown = redact_url(text)  # every message shows this: never a password or token
    parts = urlsplit(text)
    if parts.password is not None:
        raise ConfigError(
            f"{where}: {shown!r}: no password in the URL; set PDM_INFLUX_PASSWORD "
            "(or PDM_INFLUX_PASSWORD_FILE) instead"
        )
    scheme = parts.scheme.lower()
    known = "sqlite:///PATH, influx1://[USER@]HOST:PORT/DATABASE, influx2://HOST:PORT?org=ORG&bucket=BUCKET"
    if scheme == "sqlite":
        if parts.netloc or not text.lower().startswith("sqlite:///") or len(parts.path) < 2:
            raise ConfigError(
                f"{where}: {shown!r}: expected sqlite:///PATH (or sqlite:////ABS/PATH)"
            )
        raw = unquote(parts.path[1:])  # 'sqlite:///a.db' -> 'a.db'; 'sqlite:////a.db' -> '/a.db'
        path = Path(raw)
        if not path.is_absolute():
            path = Path(base_dir or Path.cwd()) / path
        return StoreURL("sqlite", text, path=path)
    if scheme not in ("influx1", "influx1s", "influx2", "influx2s"):
        raise ConfigError(f"{where}: {shown!r}: unknown store; use one of {known}")
    tls = scheme.endswith("s")
    kind: Scheme = "influx1" if scheme.startswith("influx1") else "influx2"
    try:
        port = parts.port
    except ValueError as exc:
        # (not the exception's text: it quotes the port, which may be part of a password)
        raise ConfigError(f"{where}: {shown!r}: the port is not a number 0-65535") from exc
    host = parts.hostname or ""
    if not host or port is None:
        raise ConfigError(
            f"{where}: {shown!r}: HOST:PORT is required, e.g. {kind}://127.0.0.1:8086"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = {"rp", "timeout"} if kind == "influx1" else {"org", "bucket", "db", "rp", "timeout"}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: {shown!r}: unknown parameter {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
    timeout = 10.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 300:
            raise ConfigError(f"{where}: {shown!r}: timeout must be seconds in (0, 300]")
    common: dict[str, Any] = {"tls": tls, "host": host, "port": port, "timeout_s": timeout}
    if kind == "influx1":
        db = unquote(parts.path.lstrip("/"))
        if not db or not _NAME.match(db):
            raise ConfigError(
                f"{where}: {shown!r}: the database name is missing or invalid (/DATABASE)"
            )
        user = unquote(parts.username or "")
        secret = _secret("PDM_INFLUX_PASSWORD", where) if user and secrets else ""
        if user and secrets and not secret:
            raise ConfigError(
                f"{where}: {shown!r}: user {user!r} needs a password in PDM_INFLUX_PASSWORD "
                "(or a file named by PDM_INFLUX_PASSWORD_FILE)"
            )
        return StoreURL(
            "influx1", text, database=db, rp=query.get("rp", ""), user=user, secret=secret, **common
        )
    if parts.path not in ("", "/") or parts.username:
        raise ConfigError(f"{where}: {shown!r}: influx2 takes no path or user; use ?org=…&bucket=…")
    for key in ("org", "bucket"):
        if not query.get(key):
            raise ConfigError(f"{where}: {shown!r}: ?{key}= is required")
    secret = _secret("PDM_INFLUX_TOKEN", where) if secrets else ""
    if secrets and not secret:
        raise ConfigError(
            f"{where}: {shown!r}: no token; set PDM_INFLUX_TOKEN (or PDM_INFLUX_TOKEN_FILE)"
        )
    return StoreURL(
        "influx2",
        text,
        org=query["org"],
        bucket=query["bucket"],
        database=query.get("db") or query["bucket"],
        rp=query.get("rp", ""),
        secret=secret,
        **common,
    )
