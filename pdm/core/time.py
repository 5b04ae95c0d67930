"""Time: integer nanoseconds inside, ISO 8601 text only at the edges (rows, messages, files).

A window's time travels as integer nanoseconds since the Unix epoch (UTC) on the sensor's
clock (:func:`to_ns`, as history keys it); :func:`iso_ns` writes such an instant where JSON,
CSV or a person reads it, :func:`iso_time` POSIX seconds.
"""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["iso_ns", "iso_time", "to_ns"]


def to_ns(t: float) -> int:
    """POSIX seconds → integer nanoseconds, rounded to the microsecond (float64 holds no more)
    as :func:`iso_time` rounds: the instant history keys a window by is the one its text shows."""
    if t < 0:
        sec, us = _seconds_us(t)
        return sec * 1_000_000_000 + us * 1000
    whole = math.floor(t)  # t - whole is exact: the µs are rounded from the true fraction
    return whole * 1_000_000_000 + round((t - whole) * 1e6) * 1000


def iso_ns(t_ns: int) -> str:
    """Integer nanoseconds → ISO 8601 UTC with microseconds (rounded half to even, as
    :func:`iso_time`; a :func:`to_ns` time is exact), e.g. ``2026-01-01T00:00:00.640000Z``."""
    us, rest = divmod(t_ns, 1000)
    if rest > 500 or (rest == 500 and us % 2):
        us += 1
    sec, us = divmod(us, 1_000_000)
    return f"{_iso_seconds(sec)}.{us:06d}Z"


def iso_time(t: float) -> str:
    """POSIX seconds → ISO 8601 UTC with microseconds, e.g. ``2026-01-01T00:00:00.640000Z``.

    As ``datetime.fromtimestamp(t, UTC)`` rounds (half to even, to the microsecond), with
    the date and time of the whole second formatted once per second (a service stamps
    every window of every machine: formatting each was a few % of its processing).
    """
    sec, us = _seconds_us(t)
    return f"{_iso_seconds(sec)}.{us:06d}Z"


def _seconds_us(t: float) -> tuple[int, int]:
    """POSIX seconds → (whole seconds, microseconds 0–999999), rounded half to even from the
    exact fraction (``round(t * 1e6)`` rounds the product first: at 1.7e9 s its step is
    0.25 µs, and a time near a half microsecond went the other way)."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1.0, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1.0, us + 1_000_000
    return int(whole), us


def _iso_seconds(sec: int) -> str:
    """The date and time of a whole second, formatted once per second."""
    head = _ISO_SECONDS.get(sec)
    if head is None:
        if len(_ISO_SECONDS) >= 4096:
            _ISO_SECONDS.clear()
        head = _ISO_SECONDS[sec] = dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return head


_ISO_SECONDS: dict[int, str] = {}
