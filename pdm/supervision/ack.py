"""``pdm-edge ack``: acknowledge a machine's latched alarm in the state store (no service running).

The acknowledgement is recorded in the state store (who, when, comment), in
history (an ``acknowledge`` event, and the state change if the latch ends),
and — when the machine has webhooks — queued in their outboxes, which the
service delivers when it next runs. The relay follows the stored state when
the service starts: acknowledging a cleared trip here lets the machine run
again from then.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Sequence
from pathlib import Path

from pdm.actions.outbox import Outbox
from pdm.alarms.state import Ack, AlarmRules, Transition, acknowledge, check_operator_text
from pdm.appliance import appliance_id
from pdm.core.events import AlarmEvent
from pdm.errors import ConfigError
from pdm.history import open_store, spool_path
from pdm.history.base import StoreURL
from pdm.history.records import Event, Record, StateChange
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.supervision.store import AlarmStore

__all__ = ["ack", "ack_records"]


def ack_records(
    machine: str, t_ns: int, by: str, comment: str, msg: str, trs: Sequence[Transition]
) -> list[Record]:
    """An acknowledgement's history records: the ``acknowledge`` event (the comment its
    detail), and a state change for each transition it made (a latch that ends)."""
    records: list[Record] = [
        Event(machine, t_ns, "acknowledge", "info", f"acknowledged by {by}: {msg}", detail=comment)
    ]
    return records + [StateChange(machine, t_ns, t.old, t.new, t.reason) for t in trs]


def ack(machine: str, by: str, comment: str, data_dir: Path, store_url: StoreURL) -> str:
    """Acknowledge ``machine``; returns the one-line result for the operator."""
    try:
        by, comment = check_operator_text(by, comment)
    except ValueError as exc:
        raise ConfigError(f"--by/--comment: {exc}") from exc
    if "#" in machine:
        raise ConfigError(
            f"{machine!r}: a dry-run replay's state is a re-analysis, not an alarm to acknowledge"
        )
    path = data_dir / "alarms.db"
    if not path.exists():
        raise ConfigError(f"{path}: no alarm state store here (use --data-dir)")
    with AlarmStore(path) as store:
        state = store.load(machine)
        if state is None:
            known = ", ".join(store.machines()) or "none"
            raise ConfigError(f"{path}: no alarm state for machine {machine!r} (known: {known})")
        off = store.off_windows(machine) or AlarmRules().off_windows
        t_ns = time.time_ns()
        new, trs, msg = acknowledge(state, by, t_ns, comment, AlarmRules(off_windows=off))
        if new is state:
            return f"{machine}: {msg}"
        store.save(machine, new, off_windows=off, now=True)
        store.record_ack(machine, Ack(by.strip(), t_ns, comment), new.state, msg)
    records = ack_records(machine, t_ns, by.strip(), comment, msg, trs)
    spool = Spool(spool_path(data_dir, store_url))
    writer = HistoryWriter(lambda: open_store(store_url), spool, label=machine)
    writer.submit(*records)
    writer.drain(5.0)
    writer.close(timeout=2.0)
    spool.close()
    for box in sorted(glob.glob(str(data_dir / "outbox" / f"{glob.escape(machine)}-*.db"))):
        with Outbox(box) as outbox:
            for t in trs:
                outbox.enqueue(
                    AlarmEvent(appliance_id(), machine, "", t.old, t.new, t.reason, t_ns, t_ns)
                )
    return f"{machine}: {msg}"
