"""The alarm state store: each machine's alarm state, latches and acknowledgements, on disk.

One SQLite file (``<data dir>/alarms.db``, WAL, ``synchronous=FULL``). The
engine saves a machine's state on every transition (before any action is
taken, so a restart — kill -9 included — finds the state the actions were
taken for and never re-fires them) and otherwise within about a second, all
machines' states in one transaction (the debounce counters: losing a second of
those costs nothing).
``pdm-edge ack`` works against this file when no service is running.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from pdm.alarms.state import Ack, MachineAlarm
from pdm.durable import connect_durable
from pdm.errors import ConfigError

__all__ = ["AlarmStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS machine_state (
    machine TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (
    machine TEXT NOT NULL,
    t_ns INTEGER NOT NULL,
    by TEXT NOT NULL,
    comment TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (machine, t_ns, by)
);
"""


class AlarmStore:
    """Alarm states by machine. Thread-safe; one file per data directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect_durable(self.path, _SCHEMA, "machine_state")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.path}: cannot open the alarm state store: {exc}") from exc
        self._due: dict[str, tuple[MachineAlarm, int]] = {}  # saved, not yet written
        self._flushed = -1e9

    def load(self, machine: str) -> MachineAlarm | None:
        with self._lock:
            if machine in self._due:
                return self._due[machine][0]
            row = self._db.execute(
                "SELECT state FROM machine_state WHERE machine = ?", (machine,)
            ).fetchone()
        if row is None:
            return None
        try:
            return MachineAlarm.from_json(json.loads(row[0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.path}: the stored alarm state of {machine!r} is unreadable ({exc}); "
                "check the machine, then remove its row from machine_state (sqlite3) to start "
                "again from ok"
            ) from exc

    def save(
        self, machine: str, state: MachineAlarm, *, off_windows: int, now: bool = False
    ) -> None:
        """Save (``now``: at once, fsynced; else within about a second).

        States saved without ``now`` wait in memory and go to disk together, every
        machine's in one transaction at most once a second: a commit per machine per
        second was one fsync each, and with a hundred machines per process those
        fsyncs were a tenth of its time. ``off_windows`` (the pipeline's) is kept with
        it, so ``pdm-edge ack`` can tell whether a latch is clear without the pipeline file.
        """
        wall = time.monotonic()
        with self._lock:
            self._due[machine] = (state, off_windows)
            if now or wall - self._flushed >= 1.0:
                self._flush(wall)

    def _flush(self, wall: float) -> None:
        """Write every waiting state in one transaction (holding the lock)."""
        if not self._due:
            return
        t_ns = time.time_ns()
        rows = [
            (m, json.dumps({**st.to_json(), "off_windows": off}, separators=(",", ":")), t_ns)
            for m, (st, off) in self._due.items()
        ]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO machine_state(machine, state, updated_ns) VALUES (?,?,?) "
                "ON CONFLICT(machine) DO UPDATE SET state = excluded.state, "
                "updated_ns = excluded.updated_ns",
                rows,
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._due.clear()
        self._flushed = wall

    def off_windows(self, machine: str) -> int | None:
        """The off-delay saved with the machine's state (None: no state)."""
        with self._lock:
            if machine in self._due:
                return self._due[machine][1]
            row = self._db.execute(
                "SELECT state FROM machine_state WHERE machine = ?", (machine,)
            ).fetchone()
        return None if row is None else int(json.loads(row[0]).get("off_windows", 25))

    def record_ack(self, machine: str, ack: Ack, state: str, result: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO acks VALUES (?,?,?,?,?,?)",
                (machine, ack.t_ns, ack.by, ack.comment, state, result),
            )

    def machines(self) -> list[str]:
        with self._lock:
            stored = {r[0] for r in self._db.execute("SELECT machine FROM machine_state")}
            return sorted(stored | set(self._due))

    def tick(self) -> None:
        """Write the waiting states if the last write is a second old (a quiet process's
        housekeeping: states otherwise wait for the next save)."""
        wall = time.monotonic()
        with self._lock:
            if self._due and wall - self._flushed >= 1.0:
                self._flush(wall)

    def flush(self) -> None:
        """Write the states waiting to be saved now."""
        with self._lock:
            self._flush(time.monotonic())

    def close(self) -> None:
        with self._lock:
            try:
                self._flush(time.monotonic())
            finally:
                self._db.close()

    def __enter__(self) -> AlarmStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
