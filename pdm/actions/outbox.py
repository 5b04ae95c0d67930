"""The webhook outbox: alarm events waiting for a receiver that is slow, down or not yet asked.

A single SQLite file (WAL, ``synchronous=FULL``: :meth:`Outbox.enqueue` is on
disk when it returns), first in, first out. Events are stored as JSON of their
fields — no pickle — and rebuilt as :class:`~pdm.core.events.AlarmEvent`.

**Keyed by event id.** The id of an :class:`~pdm.core.events.AlarmEvent` is
stable (the same transition recorded twice has the same id), so enqueuing is
``INSERT OR IGNORE``: a restart or a resumed replay that enqueues an event
again stores it once. An id that was already delivered (table ``delivered``,
pruned after ``retention_s``, 30 days by default) or refused for good (table
``rejected``, kept) is not enqueued again either.

**Per event** the outbox keeps the number of failed ``attempts``, the
``last_error`` and ``next_attempt_at`` (POSIX seconds), so a restarted sender
continues the back-off where the last one stopped.

**What kill -9 and power loss can lose:** nothing that :meth:`Outbox.enqueue`
has returned from. What they can duplicate: the one event whose delivery was
in flight (sent, but not yet marked delivered) is sent again — at-least-once;
receivers deduplicate on the event id. A corrupt outbox file (a disk fault) is
moved aside as ``*.corrupt-<unix time>`` for inspection and a new one started;
the log says so, once.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pdm.core.durable import connect_durable, open_or_set_aside, write_transaction
from pdm.core.events import AlarmEvent
from pdm.errors import PdmError

__all__ = ["Outbox", "OutboxEntry", "OutboxError", "RejectedEntry"]

log = logging.getLogger("pdm.actions")

#: How long delivered ids are remembered (s): a re-enqueue within this time is ignored.
DELIVERED_RETENTION_S = 30 * 86400.0
# Pruning the delivered table is cheap but not free: at most this often (s) while running.
_PRUNE_EVERY_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    next_attempt_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS delivered (
    id TEXT PRIMARY KEY,
    delivered_at REAL NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_at ON delivered(delivered_at);
CREATE TABLE IF NOT EXISTS rejected (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    rejected_at REAL NOT NULL
);
"""


class OutboxError(PdmError):
    """The outbox file cannot be written or read right now (a full or failing disk)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """The head of the outbox: an event and its delivery history so far."""

    event: AlarmEvent
    attempts: int  # failed attempts so far
    last_error: str
    next_attempt_at: float  # POSIX seconds; 0 = now
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    """An event the receiver refused for good, kept for inspection."""

    id: str
    event: AlarmEvent | None  # None if the stored JSON could not be rebuilt
    status: int  # HTTP status; 0 = the stored event was unreadable
    reason: str
    attempts: int
    rejected_at: float


def encode_event(event: AlarmEvent) -> str:
    """An event as JSON text of its fields (non-finite floats kept: Python's json reads them back)."""
    doc = {f.name: getattr(event, f.name) for f in fields(event)}
    return json.dumps(doc, separators=(",", ":"), default=_plain)


def decode_event(text: str) -> AlarmEvent:
    """The inverse of :func:`encode_event`; raises ValueError, KeyError or TypeError if it cannot."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise TypeError("not a JSON object")
    doc["top_features"] = tuple(dict(f) for f in doc.get("top_features", ()))
    doc["thresholds"] = dict(doc.get("thresholds", {}))
    return AlarmEvent(**doc)


def _plain(obj: object) -> Any:
    """numpy scalars and arrays (from feature code) as plain Python values."""
    item = getattr(obj, "tolist", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


class Outbox:
    """A durable FIFO of alarm events, keyed by event id. Thread-safe.

    Parameters
    ----------
    path : the outbox file (created with its directory)
    retention_s : how long delivered ids are remembered (s), 30 days by default
    """

    def __init__(
        self, path: str | os.PathLike[str], *, retention_s: float = DELIVERED_RETENTION_S
    ) -> None:
        if not retention_s > 0:
            raise ValueError(f"{retention_s=} must be > 0")
        self.path = Path(path)
        self.retention_s = float(retention_s)
        self._lock = threading.Lock()
        self._db = open_or_set_aside(
            self.path, lambda: connect_durable(self.path, _SCHEMA, "outbox"), "webhook outbox", log
        )
        self._pruned_at = 0.0
        with self._tx("prune"):
            self._prune(time.time())

    # -- state -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Events waiting for delivery."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def ids(self) -> list[str]:
        """The waiting event ids, oldest first."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM outbox ORDER BY seq")]

    def is_delivered(self, event_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM delivered WHERE id = ?", (event_id,))
            return row.fetchone() is not None

    def delivered_count(self) -> int:
        """Delivered ids remembered (those younger than ``retention_s``)."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM delivered").fetchone()[0])

    def rejected(self) -> list[RejectedEntry]:
        """Events the receiver refused for good, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, event, status, reason, attempts, rejected_at FROM rejected "
                "ORDER BY rejected_at, id"
            ).fetchall()
        out = []
        for eid, text, status, reason, attempts, at in rows:
            try:
                ev: AlarmEvent | None = decode_event(text)
            except (ValueError, KeyError, TypeError):
                ev = None
            out.append(RejectedEntry(eid, ev, int(status), reason, int(attempts), float(at)))
        return out

    # -- FIFO ---------------------------------------------------------------------------------
    def enqueue(self, event: AlarmEvent) -> bool:
        """Store an event (one fsynced transaction); False if its id is already known.

        Known: waiting, delivered within ``retention_s``, or rejected.
        """
        text = encode_event(event)
        with self._tx("enqueue"):
            known = self._db.execute(
                "SELECT 1 FROM delivered WHERE id = ?1 UNION ALL SELECT 1 FROM rejected WHERE id = ?1",
                (event.id,),
            ).fetchone()
            if known is not None:
                return False
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox(id, event, enqueued_at) VALUES (?,?,?)",
                (event.id, text, time.time()),
            )
            return cur.rowcount == 1

    def head(self) -> OutboxEntry | None:
        """The oldest waiting event, or None when empty.

        A stored event that cannot be rebuilt (written by an incompatible version, or
        damaged) is moved to ``rejected`` with status 0 so it cannot block the queue.
        """
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT id, event, attempts, last_error, next_attempt_at, enqueued_at "
                    "FROM outbox ORDER BY seq LIMIT 1"
                ).fetchone()
            if row is None:
                return None
            eid, text, attempts, last_error, next_at, enq = row
            try:
                event = decode_event(text)
            except (ValueError, KeyError, TypeError) as exc:
                log.error(
                    "%s: outbox event %s unreadable (%s); moved to rejected", self.path, eid, exc
                )
                self.reject(eid, 0, f"unreadable: {exc}")
                continue
            return OutboxEntry(event, int(attempts), last_error, float(next_at), float(enq))

    def mark_delivered(self, event_id: str, status: int) -> None:
        """Remove a delivered event and remember its id (pruned after ``retention_s``)."""
        now = time.time()
        with self._tx("delivered"):
            self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
            self._db.execute(
                "INSERT OR REPLACE INTO delivered(id, delivered_at, status) VALUES (?,?,?)",
                (event_id, now, int(status)),
            )
            if now - self._pruned_at >= _PRUNE_EVERY_S:
                self._prune(now)

    def mark_failed(self, event_id: str, error: str, next_attempt_at: float) -> int:
        """Count a failed attempt; returns the attempts so far (0 if the event is gone)."""
        with self._tx("failed"):
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (error[:500], float(next_attempt_at), event_id),
            )
            row = self._db.execute("SELECT attempts FROM outbox WHERE id = ?", (event_id,))
            found = row.fetchone()
            return 0 if found is None else int(found[0])

    def reject(self, event_id: str, status: int, reason: str) -> None:
        """Move a waiting event to ``rejected`` (kept, with the status and reason)."""
        with self._tx("reject"):
            row = self._db.execute(
                "SELECT event, attempts FROM outbox WHERE id = ?", (event_id,)
            ).fetchone()
            if row is None:
                return
            self._db.execute(
                "INSERT OR REPLACE INTO rejected(id, event, status, reason, attempts, rejected_at) "
                "VALUES (?,?,?,?,?,?)",
                (event_id, row[0], int(status), reason[:500], int(row[1]) + 1, time.time()),
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))

    def _prune(self, now: float) -> None:
        """Inside a transaction: forget delivered ids older than ``retention_s``."""
        self._db.execute("DELETE FROM delivered WHERE delivered_at < ?", (now - self.retention_s,))
        self._pruned_at = now

    @contextmanager
    def _tx(self, what: str) -> Iterator[None]:
        """One locked, fsynced transaction; on failure roll back and raise OutboxError."""
        with self._lock:
            try:
                with write_transaction(self._db):
                    yield
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: outbox {what} failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
