"""The embedded default history store: one SQLite file in WAL mode.

One :class:`SqliteStore` is used from one thread at a time; the writer thread
and a reader (the dashboard) each open their own store on the same file, and
WAL lets the reader see committed batches while the writer goes on.

Layout (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`, one function per
step in :data:`MIGRATIONS`)::

    features  (t_ns, machine, channel) → sensor, window, valid, iso_zone, one REAL per feature
              + index (machine, t_ns)
    feature_channels (machine, channel) — the channels each machine has feature rows for
    scores    (machine, t_ns)          → window, score, state, model, diagnosis, top,
                                         diagnosis_confidence
    spectra   (machine, channel, type, t_ns) → sensor, f0_hz, df_hz, unit, values (float32 LE blob)
    states    (machine, t_ns, sensor, new)   → old, reason, score, capture
    events    (id)                            → machine, t_ns, type, severity, message, sensor, detail
    actions   (machine, t_ns, action, target, attempt) → outcome, detail, event_id
    captures  (id)                            → machine, t_ns, reason, path, model, thresholds, …

Every table also has an ``appliance`` column (schema step 3): the id of the appliance that
wrote the row (:func:`pdm.appliance.appliance_id`, or ``appliance=`` of the store).

A feature name becomes a column the first time it is written (``ALTER TABLE
ADD COLUMN``), so a pipeline with more bands simply widens the table. NaN is
stored as NULL (SQLite has no NaN) and read back as NaN. Writing a record
twice stores it once (``INSERT OR REPLACE`` on the keys above).

Feature rows are keyed by time first (schema step 2): a service writes a row per
channel per window for every machine, and keyed by machine and channel each batch
touched a page per channel all over the B-tree — every commit rewrote ~1500 pages for
a few rows each at 250 machines, and the cost grew with the file (measured 150 → 220 µs
of writer CPU per machine window over 300 batches; time-keyed 40 → 55 µs). Reads of
one machine go through the ``(machine, t_ns)`` index; its channels are listed in
``feature_channels``, kept up to date by the writes and by retention.

Reads that need every channel or machine walk a key with ``min(col) … WHERE col > ?``
(a few index probes per value) instead of a scan, so they stay fast on a file of many
million rows.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import chain, groupby, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

import numpy as np

from pdm.appliance import appliance_id
from pdm.core.durable import retry_locked
from pdm.history.base import (
    UNSTORABLE,
    HistoryError,
    LogRecord,
    MachineStatus,
    Trend,
    bucket_ns,
    unstorable,
)
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

__all__ = ["FEATURE_NAME", "MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]

#: Page cache per connection, KiB.
CACHE_KIB = 65536
#: Feature rows per INSERT statement (x ~47 parameters: well under SQLite's 32766). Few
#: enough that binding one statement holds the interpreter lock only briefly (a service's
#: processing thread waits that long when it wants the lock back); the measurement is in
#: docs/benchmarks.md, "Why the service's constants have their values".
ROWS_PER_INSERT = 16

#: What a feature name (and so a column name) may look like.
FEATURE_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")
#: How long a statement waits for another connection's write lock before failing (retryable).
BUSY_TIMEOUT_MS: Final = 5000
#: Retention runs at open, then at most this often (wall time) during writes.
PRUNE_EVERY_S: Final = 3600.0
#: Rows fetched and turned into arrays at a time by the bulk reads.
FETCH_ROWS: Final = 50_000

#: The key and metadata columns of ``features`` up to schema step 2 ...
_FIXED_FEATURE_COLUMNS_2: Final = (
    "machine",
    "channel",
    "t_ns",
    "sensor",
    "window",
    "valid",
    "iso_zone",
)
#: ... and since step 3 (the appliance id): every other column is a feature.
_FIXED_FEATURE_COLUMNS: Final = (*_FIXED_FEATURE_COLUMNS_2, "appliance")
#: Every table that holds history rows (each has an ``appliance`` column since step 3).
_ROW_TABLES: Final = ("features", "scores", "spectra", "states", "events", "actions", "captures")
_LOG_KINDS: Final[tuple[Kind, ...]] = ("states", "events", "actions", "captures")

# SQLite primary result codes worth a retry: the file is busy or locked by another
# connection, the disk failed or is full, or the file cannot be opened right now.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13
_SQLITE_CANTOPEN, _SQLITE_PROTOCOL, _SQLITE_NOTADB = 14, 15, 26
_RETRYABLE_CODES: Final = frozenset(
    {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL}
)
_RETRYABLE_WORDS: Final = ("locked", "busy", "disk i/o", "full", "unable to open")


# --- schema and migrations -------------------------------------------------------------------


def _migration_1(db: sqlite3.Connection) -> None:
    """The first schema: every table and the indexes the reads and retention use."""
    statements = (
        """CREATE TABLE features (
            machine TEXT NOT NULL, channel TEXT NOT NULL, t_ns INTEGER NOT NULL,
            sensor TEXT NOT NULL, "window" INTEGER NOT NULL, valid INTEGER NOT NULL,
            iso_zone TEXT NOT NULL,
            PRIMARY KEY (machine, channel, t_ns)
        ) WITHOUT ROWID""",
        """CREATE TABLE scores (
            machine TEXT NOT NULL, t_ns INTEGER NOT NULL, "window" INTEGER NOT NULL, score REAL,
            state TEXT NOT NULL, model TEXT NOT NULL, diagnosis TEXT NOT NULL, top TEXT NOT NULL,
            PRIMARY KEY (machine, t_ns)
        ) WITHOUT ROWID""",
        # A rowid table: spectra rows are large blobs, which WITHOUT ROWID handles badly.
        """CREATE TABLE spectra (
            machine TEXT NOT NULL, channel TEXT NOT NULL, type TEXT NOT NULL,
            t_ns INTEGER NOT NULL, sensor TEXT NOT NULL, f0_hz REAL, df_hz REAL,
            unit TEXT NOT NULL, "values" BLOB NOT NULL,
            PRIMARY KEY (machine, channel, type, t_ns)
        )""",
        "CREATE INDEX spectra_t ON spectra (t_ns)",
        """CREATE TABLE states (
            machine TEXT NOT NULL, t_ns INTEGER NOT NULL, sensor TEXT NOT NULL,
            new TEXT NOT NULL, old TEXT NOT NULL, reason TEXT NOT NULL, score REAL,
            capture TEXT NOT NULL,
            PRIMARY KEY (machine, t_ns, sensor, new)
        ) WITHOUT ROWID""",
        "CREATE INDEX states_t ON states (t_ns)",
        """CREATE TABLE events (
            id TEXT NOT NULL PRIMARY KEY, machine TEXT NOT NULL, t_ns INTEGER NOT NULL,
            type TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
            sensor TEXT NOT NULL, detail TEXT NOT NULL
        )""",
        "CREATE INDEX events_machine_t ON events (machine, t_ns)",
        "CREATE INDEX events_t ON events (t_ns)",
        """CREATE TABLE actions (
            machine TEXT NOT NULL, t_ns INTEGER NOT NULL, "action" TEXT NOT NULL,
            target TEXT NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL,
            detail TEXT NOT NULL, event_id TEXT NOT NULL,
            PRIMARY KEY (machine, t_ns, "action", target, attempt)
        ) WITHOUT ROWID""",
        "CREATE INDEX actions_t ON actions (t_ns)",
        """CREATE TABLE captures (
            id TEXT NOT NULL PRIMARY KEY, machine TEXT NOT NULL, t_ns INTEGER NOT NULL,
            reason TEXT NOT NULL, path TEXT NOT NULL, model TEXT NOT NULL,
            thresholds TEXT NOT NULL, fs_hz REAL, channels TEXT NOT NULL, samples INTEGER NOT NULL
        )""",
        "CREATE INDEX captures_machine_t ON captures (machine, t_ns)",
        "CREATE INDEX captures_t ON captures (t_ns)",
    )
    for sql in statements:
        db.execute(sql)


def _migration_2(db: sqlite3.Connection) -> None:
    """Feature rows keyed by time, a ``(machine, t_ns)`` index and ``feature_channels``.

    The rows are copied in key order into the new table, with every feature column the
    file has grown (measured ~120 000 rows a second here).
    """
    cols = [r[1] for r in db.execute("PRAGMA table_info(features)")]
    extra = [c for c in cols if c not in _FIXED_FEATURE_COLUMNS_2]
    db.execute(
        f"""CREATE TABLE features_by_time (
            machine TEXT NOT NULL, channel TEXT NOT NULL, t_ns INTEGER NOT NULL,
            sensor TEXT NOT NULL, "window" INTEGER NOT NULL, valid INTEGER NOT NULL,
            iso_zone TEXT NOT NULL{"".join(f', "{c}" REAL' for c in extra)},
            PRIMARY KEY (t_ns, machine, channel)
        ) WITHOUT ROWID"""
    )
    names = ", ".join(f'"{c}"' for c in (*_FIXED_FEATURE_COLUMNS_2, *extra))
    db.execute(f"INSERT INTO features_by_time ({names}) SELECT {names} FROM features ORDER BY t_ns")
    db.execute(
        """CREATE TABLE feature_channels (
            machine TEXT NOT NULL, channel TEXT NOT NULL, PRIMARY KEY (machine, channel)
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT INTO feature_channels SELECT DISTINCT machine, channel FROM features")
    db.execute("DROP TABLE features")
    db.execute("ALTER TABLE features_by_time RENAME TO features")
    db.execute("CREATE INDEX features_machine_t ON features (machine, t_ns)")


def _migration_3(db: sqlite3.Connection) -> None:
    """An ``appliance`` column on every row (docs/integration.md, "Many appliances"): the id
    of the appliance that wrote it. Rows from before this step read ``''`` (ALTER TABLE with
    a constant default rewrites nothing, whatever the file's size)."""
    for table in _ROW_TABLES:
        db.execute(f"ALTER TABLE {table} ADD COLUMN appliance TEXT NOT NULL DEFAULT ''")


def _migration_4(db: sqlite3.Connection) -> None:
    """A ``diagnosis_confidence`` column on score rows (0–1; NULL when the window had no
    diagnosis, and on the rows from before this step): a what-if over stored scores needs it
    to reproduce a score trip the diagnosis corroborates (docs/alarms.md, "What may trip")."""
    db.execute("ALTER TABLE scores ADD COLUMN diagnosis_confidence REAL")


#: Schema steps in order: ``MIGRATIONS[i]`` takes a file from version ``i`` to ``i + 1``.
#: Append, never edit: files in the field are at every version up to the newest. All
#: pending steps run in one transaction, so a step must not VACUUM or change journal_mode.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
]
SCHEMA_VERSION: Final = len(MIGRATIONS)


# --- rows of the small kinds -----------------------------------------------------------------

#: The INSERT of each small kind; the appliance id is the last parameter of every row.
_INSERT: Final[dict[str, str]] = {
    "spectra": 'INSERT OR REPLACE INTO spectra (machine, channel, type, t_ns, sensor, f0_hz, df_hz, unit, "values", appliance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    "states": "INSERT OR REPLACE INTO states (machine, t_ns, sensor, new, old, reason, score, capture, appliance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "events": "INSERT OR REPLACE INTO events (id, machine, t_ns, type, severity, message, sensor, detail, appliance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "actions": 'INSERT OR REPLACE INTO actions (machine, t_ns, "action", target, attempt, outcome, detail, event_id, appliance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    "captures": "INSERT OR REPLACE INTO captures (id, machine, t_ns, reason, path, model, thresholds, fs_hz, channels, samples, appliance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "scores": 'INSERT OR REPLACE INTO scores (machine, t_ns, "window", score, state, model, diagnosis, top, appliance, diagnosis_confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
}

_SELECT_LOG: Final[dict[str, str]] = {
    "states": "SELECT machine, t_ns, old, new, reason, sensor, score, capture FROM states",
    "events": "SELECT machine, t_ns, type, severity, message, sensor, detail, id FROM events",
    "actions": 'SELECT machine, t_ns, "action", target, outcome, attempt, detail, event_id FROM actions',
    "captures": "SELECT machine, t_ns, id, reason, path, model, thresholds, fs_hz, channels, samples FROM captures",
}
# Ties in time come out in a fixed order, so that every read of the log agrees.
_LOG_ORDER: Final[dict[str, str]] = {
    "states": "t_ns DESC, machine, sensor, new",
    "events": "t_ns DESC, machine, id",
    "actions": 't_ns DESC, machine, "action", target, attempt DESC',
    "captures": "t_ns DESC, machine, id",
}


def _nan(x: float | None) -> float:
    """SQLite's NULL back to the NaN it was written as."""
    return math.nan if x is None else float(x)


def _small_row(rec: Record) -> tuple[Any, ...]:
    """The parameters of one spectrum, state change, event, action result or capture."""
    if isinstance(rec, Spectrum):
        blob = np.ascontiguousarray(rec.values, dtype="<f4").tobytes()
        return (rec.machine, rec.channel, rec.type, int(rec.t_ns), rec.sensor,
                float(rec.f0_hz), float(rec.df_hz), rec.unit, blob)  # fmt: skip
    if isinstance(rec, StateChange):
        return (rec.machine, int(rec.t_ns), rec.sensor, rec.new, rec.old, rec.reason,
                float(rec.score), rec.capture)  # fmt: skip
    if isinstance(rec, Event):
        return (rec.id, rec.machine, int(rec.t_ns), rec.type, rec.severity, rec.message,
                rec.sensor, rec.detail)  # fmt: skip
    if isinstance(rec, ActionResult):
        return (rec.machine, int(rec.t_ns), rec.action, rec.target, int(rec.attempt),
                rec.outcome, rec.detail, rec.event_id)  # fmt: skip
    if isinstance(rec, Capture):
        return (rec.id, rec.machine, int(rec.t_ns), rec.reason, rec.path, rec.model,
                rec.thresholds, float(rec.fs_hz), json.dumps(list(rec.channels)),
                int(rec.samples))  # fmt: skip
    raise TypeError(f"not a history record: {type(rec).__name__}")


def _log_record(kind: str, r: tuple[Any, ...]) -> LogRecord:
    if kind == "states":
        return StateChange(r[0], r[1], r[2], r[3], r[4], r[5], _nan(r[6]), r[7])
    if kind == "events":
        return Event(*r)
    if kind == "actions":
        return ActionResult(*r)
    return Capture(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], _nan(r[7]), tuple(json.loads(r[8])), r[9]
    )


def _range(start_ns: int | None, end_ns: int | None) -> tuple[str, list[int]]:
    """SQL and parameters for t_ns in [start, end); None leaves that side open."""
    sql, args = "", list[int]()
    if start_ns is not None:
        sql, args = sql + " AND t_ns >= ?", [*args, int(start_ns)]
    if end_ns is not None:
        sql, args = sql + " AND t_ns < ?", [*args, int(end_ns)]
    return sql, args


class SqliteStore:
    """History in one SQLite file (created with its folder when missing).

    Parameters
    ----------
    path : the database file; its ``-wal`` and ``-shm`` companions live beside it
    retention_days : delete rows older than this (by t_ns, every table) at open and
        then at most once an hour during writes; None keeps everything. Capture
        *files* are not touched: only their rows.

    Raises :class:`HistoryError` (one line, naming the file) when the file cannot
    be opened, is not an SQLite database, or has a newer schema than this code.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float | None = None,
        appliance: str | None = None,
    ) -> None:
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"{retention_days=} must be > 0 (or None to keep everything)")
        self.path = Path(path)
        self.url = f"sqlite:///{path}"
        self.retention_days = retention_days
        #: The id written in every row's ``appliance`` column (None: ``appliance_id()``,
        #: looked up at the first write).
        self.appliance = appliance
        self._columns: list[str] | None = None  # feature columns, in creation order
        self._feature_sql: dict[tuple[str, ...], str] = {}
        self._feature_sql_many: dict[tuple[str, ...], str] = {}
        #: (machine, channel) pairs in ``feature_channels`` (None: not read yet), and the
        #: (machine, channels) of records already checked against them.
        self._series: set[tuple[str, str]] | None = None
        self._series_seen: set[tuple[str, tuple[str, ...]]] = set()
        #: Called before each statement that binds rows (None: nothing). Binding holds the
        #: interpreter lock; a service's writer thread uses this to bind while its
        #: processing thread waits for work (HistoryWriter.yield_to).
        self.pace: Callable[[], object] | None = None
        self._next_prune = math.inf
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(
                f"{self.path}: cannot create its folder: {exc.strerror or exc}",
                retryable=not isinstance(exc, PermissionError),
            ) from exc
        try:
            # isolation_level=None: no implicit transactions; every batch is an explicit one.
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except sqlite3.Error as exc:
            raise self._error(exc, where=str(self.path)) from exc
        try:
            # Processes opening a new file together (the service's workers) can find it
            # locked while one of them switches it to WAL: waited out.
            retry_locked(self._open, BUSY_TIMEOUT_MS / 1000)
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk when write() returns. The spool deletes critical
            # records (alarm states, events) once they are committed here, so NORMAL's
            # "may roll back the last commits on power loss" would lose them.
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = OFF")
            # A service inserts rows for hundreds of (machine, channel) keys a second, all over
            # the features table's B-tree: SQLite's 2 MB default page cache kept re-reading
            # pages (writer thread ~15 % less CPU with 64 MB; filled only as it is used).
            self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._migrate()
            if self.retention_days is not None:
                with self._transaction():
                    self._prune()
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
        except sqlite3.Error as exc:
            raise self._error(exc, where=str(self.path)) from exc

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, all steps in one transaction."""
        target = len(MIGRATIONS)
        version = self._version()
        if version == target:
            return
        self._check_version(version, target)
        with self._transaction():
            version = self._version()  # another connection may have migrated it meanwhile
            self._check_version(version, target)
            for step in MIGRATIONS[version:target]:
                step(self._db)
            self._db.execute(f"PRAGMA user_version = {int(target)}")

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, version: int, target: int) -> None:
        if version > target:
            raise HistoryError(
                f"{self.path}: history schema version {version} is newer than this pdm-edge "
                f"knows ({target}); upgrade pdm-edge or use another file",
                retryable=False,
            )

    # --- plumbing --------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error, *, where: str | None = None) -> HistoryError:
        """``sqlite3`` → :class:`HistoryError`, one line, retryable when waiting may help."""
        code = getattr(exc, "sqlite_errorcode", None)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(code, int):
            primary = code & 0xFF
            if primary == _SQLITE_NOTADB:
                return HistoryError(
                    f"{self.path}: not an SQLite database ({reason})", retryable=False
                )
            retryable = primary in _RETRYABLE_CODES
        else:
            retryable = any(w in reason.lower() for w in _RETRYABLE_WORDS)
        return HistoryError(f"{where or self.url}: {reason}", retryable=retryable)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (taking the write lock up front): all of it, or nothing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself after some errors
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            self._columns = None  # columns added in the failed transaction are gone
            self._series, self._series_seen = None, set()  # and so are channels listed in it
            raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One snapshot for all the queries of a read; sqlite3 errors become HistoryError."""
        try:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _load_columns(self) -> list[str]:
        """Feature columns in creation order, as the file has them now."""
        rows = self._db.execute("PRAGMA table_info(features)").fetchall()
        self._columns = [r[1] for r in rows if r[1] not in _FIXED_FEATURE_COLUMNS]
        return self._columns

    def _distinct(self, table: str, column: str, **equal: str) -> list[str]:
        """Distinct values of ``column`` where the leading key columns equal ``equal``.

        Each step is one primary-key probe, so this costs O(values · log rows), not a scan.
        """
        conds = [f"{k} = ?" for k in equal]
        args: list[Any] = list(equal.values())
        first = f"SELECT min({column}) FROM {table}" + (
            " WHERE " + " AND ".join(conds) if conds else ""
        )
        after = f"SELECT min({column}) FROM {table} WHERE " + " AND ".join(
            [*conds, f"{column} > ?"]
        )
        out: list[str] = []
        value = self._db.execute(first, args).fetchone()[0]
        while value is not None:
            out.append(value)
            value = self._db.execute(after, [*args, value]).fetchone()[0]
        return out

    # --- writing ---------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Store a batch in one transaction, all of it or nothing."""
        if not records:
            return
        if self.appliance is None:
            self.appliance = appliance_id()
        app = self.appliance
        prune = self.retention_days is not None and time.monotonic() >= self._next_prune
        try:
            with self._transaction():
                if prune:
                    self._prune()
                small: dict[str, list[tuple[Any, ...]]] = {}
                features: dict[tuple[str, ...], list[FeatureRows]] = {}
                scores: list[ScoreRows] = []
                for rec in records:
                    if isinstance(rec, FeatureRows):
                        if len(rec):
                            features.setdefault(tuple(rec.names), []).append(rec)
                    elif isinstance(rec, ScoreRows):
                        scores.append(rec)
                    else:
                        small.setdefault(rec.kind, []).append((*_small_row(rec), app))
                if scores:
                    self._write_scores(scores, app)
                for names, recs in features.items():
                    self._write_features(names, recs, app)
                for kind, rows in small.items():
                    self._db.executemany(_INSERT[kind], rows)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        except UNSTORABLE as exc:  # a value SQLite cannot bind: never, however long we wait
            raise unstorable(self.url, exc) from exc
        if prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_S

    def _write_features(self, names: tuple[str, ...], recs: list[FeatureRows], app: str) -> None:
        """Feature rows of several records with the same names, many rows a statement.

        One ``INSERT`` per row (``executemany``) hands the interpreter lock back and forth
        around every row, and a service's processing thread waited on those hand-overs;
        statements of :data:`ROWS_PER_INSERT` rows hand it over once per statement.
        """
        sql_one = self._feature_sql.get(names)
        if sql_one is None or self._columns is None or not set(names) <= set(self._columns):
            sql_one = self._prepare_features(names)
        # Column lists zipped into rows: no per-row Python work beyond the tuple itself.
        rows = chain.from_iterable(
            zip(
                repeat(rec.machine),
                rec.channel,
                rec.t_ns.tolist(),
                rec.sensor,
                rec.window.tolist(),
                rec.valid.tolist(),
                rec.iso_zone,
                repeat(app),
                *rec.values.T.tolist(),
                strict=False,
            )
            for rec in recs
        )
        total = sum(len(rec) for rec in recs)
        full, rest = divmod(total, ROWS_PER_INSERT)
        if full:
            sql_many = self._feature_sql_many.get(names)
            if sql_many is None:
                marks = "(" + ", ".join("?" * (len(_FIXED_FEATURE_COLUMNS) + len(names))) + ")"
                sql_many = (
                    sql_one.rsplit(" VALUES ", 1)[0]
                    + " VALUES "
                    + ", ".join([marks] * ROWS_PER_INSERT)
                )
                self._feature_sql_many[names] = sql_many
            for _ in range(full):
                self._paced()
                self._db.execute(sql_many, list(chain.from_iterable(islice(rows, ROWS_PER_INSERT))))
        if rest:
            self._paced()
            self._db.executemany(sql_one, rows)
        self._list_channels(recs)

    def _paced(self) -> None:
        if self.pace is not None:
            self.pace()

    def _list_channels(self, recs: list[FeatureRows]) -> None:
        """Add the (machine, channel) pairs of ``recs`` that ``feature_channels`` lacks."""
        seen = self._series_seen
        fresh = [rec for rec in recs if (rec.machine, rec.channel) not in seen]
        if not fresh:
            return
        known = self._series
        if known is None:
            known = self._series = set(
                self._db.execute("SELECT machine, channel FROM feature_channels")
            )
        pairs = {(rec.machine, ch) for rec in fresh for ch in rec.channel} - known
        if pairs:
            self._db.executemany(
                "INSERT OR IGNORE INTO feature_channels (machine, channel) VALUES (?, ?)",
                sorted(pairs),
            )
            known |= pairs
        seen.update((rec.machine, rec.channel) for rec in fresh)

    def _prepare_features(self, names: tuple[str, ...]) -> str:
        """Check the names, add the columns the file lacks, return the INSERT for them."""
        seen: set[str] = set()
        for name in names:
            if not FEATURE_NAME.match(name) or name in _FIXED_FEATURE_COLUMNS or name in seen:
                why = "used twice" if name in seen else "expected [a-z][a-z0-9_]*, not a key column"
                raise HistoryError(
                    f"{self.url}: invalid feature name {name!r} ({why})", retryable=False
                )
            seen.add(name)
        # Inside the write transaction, so no other connection can add a column meanwhile.
        known = self._load_columns()
        for name in names:
            if name not in known:
                self._db.execute(f'ALTER TABLE features ADD COLUMN "{name}" REAL')
                known.append(name)
        cols = ", ".join(['machine, channel, t_ns, sensor, "window", valid, iso_zone, appliance',
                          *(f'"{n}"' for n in names)])  # fmt: skip
        marks = ", ".join("?" * (len(_FIXED_FEATURE_COLUMNS) + len(names)))
        sql = f"INSERT OR REPLACE INTO features ({cols}) VALUES ({marks})"
        self._feature_sql[names] = sql
        self._feature_sql_many.pop(names, None)
        return sql

    def _write_scores(self, recs: list[ScoreRows], app: str) -> None:
        """The score rows of a batch in one ``executemany``: a service submits a record of one
        row a window, and a statement a record was a pace (a wait for the processing thread
        to be idle) a window. The lock is handed over around each row as before, and the CPU
        is the same (docs/benchmarks.md, "History's CPU per window")."""
        rows = chain.from_iterable(
            zip(
                repeat(rec.machine),
                rec.t_ns.tolist(),
                rec.window.tolist(),
                rec.score.tolist(),
                rec.state,
                repeat(rec.model),
                rec.diagnosis,
                rec.top,
                repeat(app),
                repeat(None)
                if rec.diagnosis_confidence is None
                else rec.diagnosis_confidence.tolist(),
                strict=False,
            )
            for rec in recs
        )
        self._paced()
        self._db.executemany(_INSERT["scores"], rows)

    def _prune(self) -> None:
        """Delete rows older than the retention, walking the keys (no full-table scan).

        "Older" counts back from now, or from a machine's newest row when that is
        earlier: a recording from last year replayed for commissioning keeps its
        last ``retention_days`` instead of vanishing at the next open.
        """
        assert self.retention_days is not None
        keep_ns = int(self.retention_days * 86_400e9)
        now = time.time_ns()
        machines = set(self._distinct("feature_channels", "machine"))
        machines |= set(self._distinct("scores", "machine"))
        newest_all: int | None = None
        for machine in sorted(machines):
            times = [
                self._db.execute(
                    f"SELECT max(t_ns) FROM {table} WHERE machine = ?", (machine,)
                ).fetchone()[0]
                for table in ("features", "scores")
            ]
            known = [t for t in times if t is not None]
            if known:
                newest = max(known)
                newest_all = newest if newest_all is None else max(newest_all, newest)
                cutoff = min(now, newest) - keep_ns
                for table in ("features", "scores", "spectra", *_LOG_KINDS):
                    self._db.execute(
                        f"DELETE FROM {table} WHERE machine = ? AND t_ns < ?", (machine, cutoff)
                    )
            # A channel whose rows are all gone leaves the list. The probe walks the
            # machine's rows from the oldest: a channel still written is found at once,
            # one no longer written when its oldest rows are (each is walked to the end
            # once, the hour its last rows go).
            for channel in self._distinct("feature_channels", "channel", machine=machine):
                left = self._db.execute(
                    "SELECT 1 FROM features WHERE machine = ? AND channel = ? LIMIT 1",
                    (machine, channel),
                ).fetchone()
                if left is None:
                    self._db.execute(
                        "DELETE FROM feature_channels WHERE machine = ? AND channel = ?",
                        (machine, channel),
                    )
        self._series, self._series_seen = None, set()
        # Rows of machines with no features or scores (the appliance's own events).
        cutoff = min(now, newest_all if newest_all is not None else now) - keep_ns
        for table in ("spectra", *_LOG_KINDS):  # each has an index on t_ns
            self._db.execute(f"DELETE FROM {table} WHERE t_ns < ?", (cutoff,))

    # --- reading ---------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            self._db.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        except sqlite3.Error as exc:
            err = self._error(exc)
            raise HistoryError(str(err), retryable=True) from exc

    def machines(self) -> list[str]:
        with self._reading():
            found = set(self._distinct("feature_channels", "machine")) | set(
                self._distinct("scores", "machine")
            )
        return sorted(found)

    def latest_status(self, machine: str | None = None) -> list[MachineStatus]:
        with self._reading() as db:
            names = self._load_columns()
            if machine is not None:
                ids = [machine]
            else:
                ids = sorted(
                    set(self._distinct("feature_channels", "machine"))
                    | set(self._distinct("scores", "machine"))
                )
            select = ", ".join(["t_ns", "iso_zone", *(f'"{n}"' for n in names)])
            out = []
            for m in ids:
                channels: dict[str, dict[str, Any]] = {}
                newest: list[int] = []
                for ch in self._distinct("feature_channels", "channel", machine=m):
                    r = db.execute(
                        f"SELECT {select} FROM features WHERE machine = ? AND channel = ? "
                        "ORDER BY t_ns DESC LIMIT 1",
                        (m, ch),
                    ).fetchone()
                    if r is None:
                        continue  # listed, its rows deleted since (retention lists it no more)
                    row = {n: float(v) for n, v in zip(names, r[2:], strict=True) if v is not None}
                    channels[ch] = {**row, "iso_zone": r[1], "t_ns": r[0]}
                    newest.append(r[0])
                s = db.execute(
                    "SELECT t_ns, score, state, model, diagnosis, appliance FROM scores "
                    "WHERE machine = ? ORDER BY t_ns DESC LIMIT 1",
                    (m,),
                ).fetchone()
                if s is not None:
                    newest.append(s[0])
                # The machine's alarm state: a sensor's own transitions do not set it.
                a = db.execute(
                    "SELECT t_ns, new FROM states WHERE machine = ? AND sensor = '' "
                    "ORDER BY t_ns DESC LIMIT 1",
                    (m,),
                ).fetchone()
                out.append(
                    MachineStatus(
                        machine=m,
                        t_ns=max(newest) if newest else None,
                        score=None if s is None or s[1] is None else float(s[1]),
                        state=None if s is None else s[2],
                        model=None if s is None else s[3],
                        diagnosis=None if s is None else s[4],
                        alarm_state=None if a is None else a[1],
                        alarm_t_ns=None if a is None else a[0],
                        channels=channels,
                        appliance="" if s is None else s[5],
                    )
                )
        return out

    def fleet(self) -> list[MachineStatus]:
        """A file is one appliance's history: each machine once, with its appliance."""
        return sorted(self.latest_status(), key=lambda st: (st.appliance, st.machine))

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
        """Feature ``name`` (or ``score``) in [start, end), mean/min/max per epoch-aligned bucket.

        One Trend per channel that has a value in the range, sorted by channel
        (``score``: one Trend with channel ``''``). NULL (NaN) values are left
        out of the aggregates; buckets without a value are left out altogether.
        """
        width = bucket_ns(start_ns, end_ns, points)
        # ((t % w) + w) % w: SQLite's % truncates toward zero; this floors, for t < 0 too.
        bucket = "t_ns - ((t_ns % :w) + :w) % :w"
        with self._reading() as db:
            if name == "score":
                table, column, chan = "scores", "score", "''"
            else:
                if name not in self._load_columns():
                    return []  # never written (InfluxDB cannot tell that from a typo either)
                table, column, chan = "features", f'"{name}"', "channel"
            where = f"machine = :m AND t_ns >= :s AND t_ns < :e AND {column} IS NOT NULL"
            if table == "features" and channel is not None:
                where += " AND channel = :c"
            # One pass over the machine's rows in the range (its (machine, t_ns) index),
            # every channel's buckets at once.
            sql = (
                f"SELECT {chan} AS ch, {bucket} AS b, avg({column}), min({column}), "
                f"max({column}) FROM {table} WHERE {where} GROUP BY ch, b ORDER BY ch, b"
            )
            args = {"w": width, "m": machine, "s": int(start_ns), "e": int(end_ns), "c": channel}
            rows = db.execute(sql, args).fetchall()
        out = []
        for ch, group in groupby(rows, key=itemgetter(0)):  # ordered by channel
            _ch, t, mean, lo, hi = zip(*group, strict=True)
            out.append(
                Trend(
                    machine,
                    name,
                    ch,
                    width,
                    np.array(t, dtype=np.int64),
                    np.array(mean, dtype=np.float64),
                    np.array(lo, dtype=np.float64),
                    np.array(hi, dtype=np.float64),
                )
            )
        return out

    def log(
        self,
        machine: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        limit: int = 200,
        kinds: Sequence[Kind] = ("states", "events", "actions", "captures"),
    ) -> list[LogRecord]:
        """Newest first; records at the same time come in the order states, events, actions, captures."""
        unknown = sorted(set(kinds) - set(_LOG_KINDS))
        if unknown:
            raise ValueError(f"log kinds must be among {_LOG_KINDS}, not {unknown}")
        if limit <= 0:
            return []
        time_sql, time_args = _range(start_ns, end_ns)
        where = "WHERE 1 = 1" + time_sql
        args: list[Any] = list(time_args)
        if machine is not None:
            where, args = where + " AND machine = ?", [*args, machine]
        found: list[LogRecord] = []
        with self._reading() as db:
            for kind in _LOG_KINDS:
                if kind not in kinds:
                    continue
                sql = f"{_SELECT_LOG[kind]} {where} ORDER BY {_LOG_ORDER[kind]} LIMIT ?"
                found.extend(_log_record(kind, r) for r in db.execute(sql, [*args, int(limit)]))
        found.sort(key=lambda r: -r.t_ns)  # stable: keeps the kind and key order of ties
        return found[:limit]

    def latest_spectra(self, machine: str, channel: str | None = None) -> list[Spectrum]:
        """Newest spectrum of each (channel, type), sorted by channel then type."""
        out = []
        with self._reading() as db:
            channels = (
                self._distinct("spectra", "channel", machine=machine)
                if channel is None
                else [channel]
            )
            for ch in channels:
                for typ in self._distinct("spectra", "type", machine=machine, channel=ch):
                    r = db.execute(
                        'SELECT sensor, t_ns, f0_hz, df_hz, unit, "values" FROM spectra '
                        "WHERE machine = ? AND channel = ? AND type = ? ORDER BY t_ns DESC LIMIT 1",
                        (machine, ch, typ),
                    ).fetchone()
                    values = np.frombuffer(r[5], dtype="<f4").astype(np.float32)
                    out.append(
                        Spectrum(machine, r[0], ch, r[1], typ, _nan(r[2]), _nan(r[3]), r[4], values)
                    )
        return out

    def features(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> FeatureRows:
        """Every feature row of ``machine`` in [start, end), by time then channel.

        ``names`` are the feature columns with at least one value (not NaN) in the
        result, in the order they were first written.
        """
        time_sql, time_args = _range(start_ns, end_ns)
        t_ns: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        window: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        valid: list[np.ndarray[Any, np.dtype[np.bool_]]] = []
        values: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        sensor: list[str] = []
        channel: list[str] = []
        iso_zone: list[str] = []
        with self._reading() as db:
            names = self._load_columns()
            k = len(names)
            select = ", ".join(
                ['t_ns, "window", valid, sensor, iso_zone, channel', *(f'"{n}"' for n in names)]
            )
            # By time, then channel: the (machine, t_ns) index holds the rest of the key.
            sql = (
                f"SELECT {select} FROM features WHERE machine = ?{time_sql} ORDER BY t_ns, channel"
            )
            cursor = db.execute(sql, [machine, *time_args])
            # In chunks, each turned into arrays at once: a million rows as Python
            # tuples at the same time would take gigabytes.
            while rows := cursor.fetchmany(FETCH_ROWS):
                block = np.array(rows, dtype=object).reshape(len(rows), 6 + k)
                t_ns.append(block[:, 0].astype(np.int64))
                window.append(block[:, 1].astype(np.int64))
                valid.append(block[:, 2].astype(bool))
                sensor.extend(block[:, 3].tolist())
                iso_zone.extend(block[:, 4].tolist())
                channel.extend(block[:, 5].tolist())
                values.append(block[:, 6:].astype(np.float64))  # None (stored NaN) → NaN
        if not t_ns:
            e = np.zeros(0, dtype=np.int64)
            return FeatureRows(
                machine, e, e.copy(), (), (), (), np.zeros((0, 0)), (), np.zeros(0, dtype=bool)
            )
        v = np.concatenate(values)
        keep = np.flatnonzero(~np.isnan(v).all(axis=0))
        kept = set(keep.tolist())
        return FeatureRows(
            machine,
            np.concatenate(t_ns),
            np.concatenate(window),
            tuple(sensor),
            tuple(channel),
            tuple(n for j, n in enumerate(names) if j in kept),
            np.ascontiguousarray(v[:, keep]),
            tuple(iso_zone),
            np.concatenate(valid),
        )

    def scores(
        self, machine: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> ScoreRows:
        """Every score row of ``machine`` in [start, end), by time; ``model`` is the newest row's."""
        time_sql, time_args = _range(start_ns, end_ns)
        with self._reading() as db:
            rows = db.execute(
                f'SELECT t_ns, "window", score, state, diagnosis, top, model, diagnosis_confidence '
                f"FROM scores WHERE machine = ?{time_sql} ORDER BY t_ns",
                [machine, *time_args],
            ).fetchall()
        if not rows:
            e = np.zeros(0, dtype=np.int64)
            return ScoreRows(machine, "", e, e.copy(), np.zeros(0), (), (), (), np.zeros(0))
        t, window, score, state, diagnosis, top, model, conf = zip(*rows, strict=True)
        return ScoreRows(
            machine,
            model[-1],
            np.array(t, dtype=np.int64),
            np.array(window, dtype=np.int64),
            np.array(score, dtype=np.float64),  # None (stored NaN) → NaN
            state,
            diagnosis,
            top,
            np.array(conf, dtype=np.float64),  # NULL → NaN
        )

    def count(self, kind: Kind, machine: str | None = None) -> int:
        if kind not in ("features", "scores", "spectra", *_LOG_KINDS):
            raise ValueError(f"unknown record kind {kind!r}")
        sql = f"SELECT count(*) FROM {kind}" + ("" if machine is None else " WHERE machine = ?")
        with self._reading() as db:
            return int(db.execute(sql, () if machine is None else (machine,)).fetchone()[0])

    # --- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (idempotent); WAL content is checkpointed by the last connection."""
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"
