"""The alarm state store: each machine's alarm state, latches and acknowledgements, on disk.

One SQLite file (``<data dir>/alarms.db``, WAL, ``synchronous=FULL``). The
engine saves a machine's state on every transition (before any action is
taken, so a restart — kill -9 included — finds the state the actions were
taken for and never re-fires them) and otherwise within about a second, all
machines' states in one transaction written by the store's own thread (the
debounce counters: losing a second of those costs nothing).
``pdm-edge ack`` works against this file when no service is running.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from pdm.alarms.state import Ack, MachineAlarm
from pdm.core.durable import connect_durable
from pdm.errors import ConfigError

__all__ = ["AlarmStore"]

log = logging.getLogger("pdm.alarms")

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
    """Alarm states by machine. Thread-safe; one file per data directory.

    States saved without ``now`` are written by a thread of the store's own, every
    machine's in one transaction every :attr:`flush_every_s`: on the service's processing
    thread that commit (an fsync, sometimes tens of milliseconds behind the history's
    own) held up every window that arrived meanwhile. Each row carries the time its state
    was saved, and a write never replaces a newer one, so a deferred batch landing after a
    transition's immediate write cannot undo it.
    """

    flush_every_s = 1.0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Condition()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect_durable(self.path, _SCHEMA, "machine_state")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{self.path}: cannot open the alarm state store: {exc}") from exc
        # Saved, not yet written: (state, off_windows, saved at ns); and the batch being written.
        self._due: dict[str, tuple[MachineAlarm, int, int]] = {}
        self._inflight: dict[str, tuple[MachineAlarm, int, int]] = {}
        self._writer: threading.Thread | None = None
        self._closing = False

    def _pending(self, machine: str) -> tuple[MachineAlarm, int, int] | None:
        """A state saved but maybe not on disk yet (holding the lock)."""
        return self._due.get(machine) or self._inflight.get(machine)

    def load(self, machine: str) -> MachineAlarm | None:
        with self._lock:
            pending = self._pending(machine)
            if pending is not None:
                return pending[0]
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
        """Save (``now``: at once, fsynced, before this returns; else within about
        :attr:`flush_every_s`, by the store's thread).

        ``off_windows`` (the pipeline's) is kept with it, so ``pdm-edge ack`` can tell
        whether a latch is clear without the pipeline file.
        """
        with self._lock:
            self._due[machine] = (state, off_windows, time.time_ns())
            if now:
                batch, self._due = self._due, {}
                self._write(self._db, batch)
            elif self._writer is None and not self._closing:
                self._writer = threading.Thread(
                    target=self._run, name="pdm-alarm-store", daemon=True
                )
                self._writer.start()

    @staticmethod
    def _write(db: sqlite3.Connection, batch: dict[str, tuple[MachineAlarm, int, int]]) -> None:
        """Write a batch in one transaction; a row never replaces a newer one."""
        if not batch:
            return
        rows = [
            (m, json.dumps({**st.to_json(), "off_windows": off}, separators=(",", ":")), t_ns)
            for m, (st, off, t_ns) in batch.items()
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO machine_state(machine, state, updated_ns) VALUES (?,?,?) "
                "ON CONFLICT(machine) DO UPDATE SET state = excluded.state, "
                "updated_ns = excluded.updated_ns "
                "WHERE excluded.updated_ns >= machine_state.updated_ns",
                rows,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _run(self) -> None:
        """The store's thread: every ``flush_every_s``, what was saved since, on a connection
        of its own (the lock is not held while it writes)."""
        try:
            db = connect_durable(self.path, _SCHEMA, "machine_state")
        except (OSError, sqlite3.Error):
            log.exception("%s: the alarm state writer cannot open the file", self.path)
            return  # states wait in memory; close() (or a save with now) writes them
        try:
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._closing, timeout=self.flush_every_s)
                    if self._closing:
                        return
                    batch, self._due = self._due, {}
                    self._inflight = batch
                try:
                    self._write(db, batch)
                except (OSError, sqlite3.Error):
                    log.exception("%s: writing alarm states failed; retried", self.path)
                    with self._lock:
                        for m, v in batch.items():  # back, unless saved again meanwhile
                            self._due.setdefault(m, v)
                finally:
                    with self._lock:
                        self._inflight = {}
        finally:
            db.close()

    def off_windows(self, machine: str) -> int | None:
        """The off-delay saved with the machine's state (None: no state)."""
        with self._lock:
            pending = self._pending(machine)
            if pending is not None:
                return pending[1]
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
            return sorted(stored | set(self._due) | set(self._inflight))

    def flush(self) -> None:
        """Write the states waiting to be saved now (this thread, fsynced)."""
        with self._lock:
            batch, self._due = self._due, {}
            self._write(self._db, batch)

    def close(self) -> None:
        """Stop the store's thread (after the batch it is writing) and write the rest."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join(30.0)
        with self._lock:
            try:
                batch, self._due = self._due, {}
                self._write(self._db, batch)
            finally:
                self._db.close()

    def __enter__(self) -> AlarmStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
