"""SQLite files that survive a power cut: shared by the spool, the webhook outbox and the state stores."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["connect_durable", "open_or_set_aside", "retry_locked", "write_transaction"]


def retry_locked(fn: Callable[[], object], timeout_s: float) -> None:
    """``fn()``, again every 50 ms for up to ``timeout_s`` while it fails with a "locked" or
    "busy" error. Switching a file to WAL does not wait out ``busy_timeout``: processes
    opening one file at once (a service's workers) could fail at the switch."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fn()
            return
        except Exception as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_or_set_aside(
    path: Path, open_db: Callable[[], sqlite3.Connection], what: str, log: logging.Logger
) -> sqlite3.Connection:
    """``open_db()``; when the file is not a readable database (a disk fault), move it and its
    ``-wal``/``-shm`` aside as ``<name>.corrupt-<unix time>`` (kept for inspection, never
    deleted), log one line saying so, and open a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return open_db()
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.error(
            "%s: %s unreadable (%s); moved aside to %s, starting a new one",
            path,
            what,
            exc,
            aside.name,
        )
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                src.rename(str(aside) + suffix)
        return open_db()


def connect_durable(path: Path, schema: str, probe: str) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``synchronous=FULL`` (a commit is on disk when
    it returns), autocommit (callers run their own transactions), usable from any thread; the
    ``schema`` script applied and table ``probe`` read once, so a damaged file fails here."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout=5000")

        def setup() -> None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(schema)
            db.execute(f"SELECT count(*) FROM {probe}").fetchone()

        retry_locked(setup, 5.0)
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection, taking the write lock up front
    (``BEGIN IMMEDIATE``): all of it or nothing. On an ``sqlite3.Error`` it is rolled back
    (a failing rollback ignored: SQLite rolls back by itself after some errors) and the
    error raised again for the caller to translate."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except sqlite3.Error:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
