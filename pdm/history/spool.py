"""The disk spool: history records waiting for a store that is slow or down.

A single SQLite file (WAL, ``synchronous=FULL``: every push is fsynced before
it returns), first in, first out. Records are kept in the byte form of
:func:`pdm.history.records.encode` — no pickle.

**Bound and overflow policy.** The spool holds at most ``max_bytes`` of
records. When a push would exceed it, the oldest spectra go first, then the
oldest feature and score rows (:data:`~pdm.history.records.DROP_ORDER`);
alarm states, events, action results and captures are never dropped — the
spool may exceed its bound by them alone. Every dropped row is counted per
kind, in the file, so the count survives restarts.

**Rejected records.** A record the store refuses for good (HTTP 400: a field
type conflict, say) is moved to the ``rejected`` table with the reason, never
silently deleted; ``pdm-edge`` reports the count.

**What kill -9 and power loss can lose:** nothing that :meth:`Spool.push`
has returned from (the transaction is fsynced). A :meth:`Spool.delete` of delivered
entries is not fsynced: power loss may bring them back, to be delivered again (the
stores keep one row per key). A corrupt spool file (a disk
fault) is moved aside as ``*.corrupt-<time>`` for inspection and a new one
started; the message says so.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pdm.core.durable import connect_durable, open_or_set_aside, write_transaction
from pdm.history.base import HistoryError
from pdm.history.records import CRITICAL_KINDS, DROP_ORDER, KINDS, Record, decode, encode

__all__ = ["Spool"]

log = logging.getLogger("pdm.history")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    rows INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_kind ON spool(kind, seq);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    rows INTEGER NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Spool:
    """A bounded, durable FIFO of history records. Thread-safe.

    Parameters
    ----------
    path : the spool file (created with its directory)
    max_bytes : the bound on spooled record bytes (see the module's overflow policy)
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 512 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._fsync = True  # the connection's synchronous=FULL (connect_durable's)
        self._db = open_or_set_aside(
            self.path, lambda: connect_durable(self.path, _SCHEMA, "spool"), "spool", log
        )
        self._load_totals()

    # -- state -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._entries

    @property
    def rows(self) -> int:
        """Rows waiting (feature rows count (window, channel) pairs)."""
        return self._rows

    @property
    def nbytes(self) -> int:
        return self._bytes

    def dropped(self) -> dict[str, int]:
        """Rows dropped by the overflow policy since the spool file was created, per kind."""
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM counters WHERE name LIKE 'dropped_%'")
            out: dict[str, int] = dict.fromkeys(DROP_ORDER, 0)
            out.update({n.removeprefix("dropped_"): int(v) for n, v in rows})
            return out

    def rejected_rows(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT coalesce(sum(rows),0) FROM rejected").fetchone()[0])

    # -- FIFO ---------------------------------------------------------------------------------
    def push(self, records: Sequence[Record]) -> int:
        """Append records (one fsynced transaction); returns the rows dropped to make room."""
        if not records:
            return 0
        blobs = [(r.kind, len(r), encode(r)) for r in records]
        incoming = sum(len(b) for _, _, b in blobs)
        with self._tx("write"):
            dropped = self._make_room(incoming)
            self._db.executemany(
                "INSERT INTO spool(kind, rows, nbytes, payload) VALUES (?,?,?,?)",
                [(k, n, len(b), b) for k, n, b in blobs],
            )
            self._entries += len(blobs)
            self._rows += sum(n for _, n, _ in blobs)
            self._bytes += incoming
            return dropped

    def _make_room(self, incoming: int) -> int:
        """Inside a transaction: drop the oldest droppable records until ``incoming`` fits."""
        excess = self._bytes + incoming - self.max_bytes
        dropped = 0
        for kind in DROP_ORDER:
            if excess <= 0:
                break
            victims = []
            for seq, rows, nbytes in self._db.execute(
                "SELECT seq, rows, nbytes FROM spool WHERE kind = ? ORDER BY seq", (kind,)
            ):
                victims.append(seq)
                excess -= nbytes
                self._entries -= 1
                self._rows -= rows
                self._bytes -= nbytes
                dropped += rows
                self._count(f"dropped_{kind}", rows)
                if excess <= 0:
                    break
            self._db.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in victims])
        return dropped

    def _count(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def flag(self, name: str) -> bool:
        """A flag kept in the file (survives restarts); False until set."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM counters WHERE name = ?", (f"flag_{name}",)
            ).fetchone()
        return bool(row and row[0])

    def set_flag(self, name: str, on: bool) -> None:
        """Set or clear a flag (one fsynced transaction)."""
        with self._tx("flag"):
            self._db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (f"flag_{name}", int(on)),
            )

    def count_dropped(self, kind: str, rows: int) -> None:
        """Record rows dropped outside the spool (a record that could not fit anywhere)."""
        with self._lock:
            self._count(f"dropped_{kind}", rows)

    def peek(self, max_rows: int) -> list[tuple[int, Record | None, int, str]]:
        """The oldest entries, up to ``max_rows`` rows (at least one entry).

        Returns ``(seq, record, rows, kind)``; ``record`` is None when the stored bytes
        cannot be decoded (the caller rejects it).
        """
        out: list[tuple[int, Record | None, int, str]] = []
        total = 0
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, kind, rows, payload FROM spool ORDER BY seq LIMIT 10000"
            )
            for seq, kind, rows, payload in cur:
                if out and total + rows > max_rows:
                    break
                try:
                    rec: Record | None = decode(payload)
                except (ValueError, KeyError, TypeError):
                    rec = None
                out.append((seq, rec, rows, kind))
                total += rows
        return out

    def delete(self, seqs: Sequence[int]) -> None:
        """Remove delivered entries.

        Not fsynced: the entries are in the store already, so a delete that power loss takes
        back only sends them again (every store keeps one row per key), and the next push's
        fsync makes it durable with the WAL before it. An fsync costs the writer thread
        ~120 µs of CPU here, and a store down for long replays its spool a batch at a time.
        """
        if not seqs:
            return
        with self._tx("delete", fsync=False):
            stats = self._db.execute(
                f"SELECT count(*), coalesce(sum(rows),0), coalesce(sum(nbytes),0) FROM spool "
                f"WHERE seq IN ({','.join('?' * len(seqs))})",
                list(seqs),
            ).fetchone()
            self._db.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in seqs])
            self._entries -= int(stats[0])
            self._rows -= int(stats[1])
            self._bytes -= int(stats[2])

    def reject(self, seq: int, reason: str) -> int:
        """Move one entry to ``rejected`` (kept, with the reason); returns its rows."""
        with self._tx("reject"):
            row = self._db.execute(
                "SELECT kind, rows, nbytes, payload FROM spool WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return 0
            kind, rows, nbytes, payload = row
            self._db.execute(
                "INSERT OR REPLACE INTO rejected(seq, kind, rows, payload, reason, at_ns) "
                "VALUES (?,?,?,?,?,?)",
                (seq, kind, rows, payload, reason[:500], time.time_ns()),
            )
            self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            self._entries -= 1
            self._rows -= int(rows)
            self._bytes -= int(nbytes)
            return int(rows)

    @contextmanager
    def _tx(self, what: str, *, fsync: bool = True) -> Iterator[None]:
        """One locked transaction, fsynced unless ``fsync`` is False (WAL with
        ``synchronous=NORMAL``: consistent, not durable, for that transaction only); on
        failure roll back, recount, raise HistoryError."""
        with self._lock:
            try:
                if fsync != self._fsync:  # (a failed switch back is made again here)
                    self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
                    self._fsync = fsync
                try:
                    with write_transaction(self._db):
                        yield
                finally:
                    if not fsync:
                        self._db.execute("PRAGMA synchronous=FULL")
                        self._fsync = True
            except sqlite3.Error as exc:
                self._load_totals()
                raise HistoryError(
                    f"{self.path}: spool {what} failed: {exc}", retryable=True
                ) from exc

    def _load_totals(self) -> None:
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(rows),0), coalesce(sum(nbytes),0) FROM spool"
        ).fetchone()
        self._entries, self._rows, self._bytes = int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


assert set(DROP_ORDER) | CRITICAL_KINDS == set(KINDS)
