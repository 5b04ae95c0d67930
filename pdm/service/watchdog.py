"""Is a worker's processing thread stuck, or busy? (the service's watchdog asks)

The watchdog used to drop the relay of every machine with work waiting once the
processing loop had not moved for ``--stall-s`` (5 s). A loop that does not move is
either **stuck** — blocked on a lock, a device, a sleep: it uses no CPU and will not come
back by itself — or **busy** — one long round, computing: it uses CPU and finishes. At 300
demo machines the service was busy, and the watchdog put all 300 into ``appliance_fault``.

Now the watchdog reads the thread's own CPU time (Linux: ``/proc/self/task/TID/stat``):

* stuck (less than :data:`BUSY_SHARE` of a core since the loop last moved): the machines
  with work waiting get ``appliance_fault`` after ``stall_s``, as before;
* busy: nothing is done to the machines before ``max_lag_s`` — the time within which each
  machine's data must be decided (the backlog policy's own limit) — and after it only the
  machines with work waiting; a log line says which it is.

Where the thread's CPU time cannot be read, a stale loop counts as stuck (the old rule).
"""

from __future__ import annotations

import os

__all__ = ["BUSY_SHARE", "stall_verdict", "thread_cpu_s"]

#: A loop that has not moved while its thread used at least this share of a core is busy.
BUSY_SHARE = 0.1

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_s(native_id: int | None) -> float | None:
    """User + system CPU seconds of a thread of this process (None: unknown)."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    try:
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)
    except (IndexError, ValueError):
        return None


def stall_verdict(stale_s: float, cpu_share: float | None, stall_s: float, max_lag_s: float) -> str:
    """What a loop that has not moved for ``stale_s`` is, and whether to act:

    * ``"ok"``: moving recently enough;
    * ``"busy"``: not moved for ``stall_s`` but computing (``cpu_share`` of a core since);
      nothing to do yet;
    * ``"stuck"``: not moved for ``stall_s`` and not computing (or unknown): fault the
      machines with work waiting;
    * ``"late"``: busy for longer than ``max_lag_s``: their data can no longer be decided
      in time — fault them.

    >>> [stall_verdict(s, c, 5.0, 10.0) for s, c in [(1, 0.0), (6, 0.9), (6, 0.01), (6, None), (11, 0.9)]]
    ['ok', 'busy', 'stuck', 'stuck', 'late']
    """
    if stale_s <= stall_s:
        return "ok"
    if cpu_share is None or cpu_share < BUSY_SHARE:
        return "stuck"
    return "late" if stale_s > max_lag_s else "busy"
