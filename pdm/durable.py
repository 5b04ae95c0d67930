"""Small durable-file helpers shared by the spool, the webhook outbox and the state stores."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["open_or_set_aside"]


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
