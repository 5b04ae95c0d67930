"""Time at the edges: POSIX seconds to the ISO 8601 text that rows, messages and files show."""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["iso_time"]


def iso_time(t: float) -> str:
    """POSIX seconds → ISO 8601 UTC with microseconds, e.g. ``2026-01-01T00:00:00.640000Z``.

    As ``datetime.fromtimestamp(t, UTC)`` rounds (half to even, to the microsecond), with
    the date and time of the whole second formatted once per second (a service stamps
    every window of every machine: formatting each was a few % of its processing).
    """
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1.0, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1.0, us + 1_000_000
    sec = int(whole)
    head = _ISO_SECONDS.get(sec)
    if head is None:
        if len(_ISO_SECONDS) >= 4096:
            _ISO_SECONDS.clear()
        head = _ISO_SECONDS[sec] = dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return f"{head}.{us:06d}Z"


_ISO_SECONDS: dict[int, str] = {}
