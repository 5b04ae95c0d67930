"""Which sensors went silent: the last time each sent data, and the changes since asked.

The receivers (TCP, MQTT) feed it; the service turns its changes into ``sensor_fault``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "SilenceChanges",
    "SilenceWatch",
]


class SilenceChanges(NamedTuple):
    """Transitions since the last :meth:`SilenceWatch.changes` call (sorted sensor ids)."""

    went_silent: list[str]
    came_back: list[str]


class SilenceWatch:
    """Which sensors have sent nothing for longer than a timeout.

    Times are :func:`time.monotonic` seconds (a wall-clock step must not fake an
    outage); every method takes ``now`` for tests. Thread-safe: the receiver's
    thread calls :meth:`seen` while the service polls :meth:`changes`.

    Parameters
    ----------
    timeout_s : float
        A sensor is silent when its last chunk is more than this old (s).
    expected : iterable of str
        Sensors the pipeline expects; they count as seen at construction, so
        one that never connects is reported after ``timeout_s``.
    now : float, optional
        Construction time (default: now).

    >>> w = SilenceWatch(2.0, expected=["a"], now=0.0)
    >>> w.seen("b", now=1.0)
    >>> w.silent(now=2.5)
    ['a']
    >>> w.changes(now=3.5)
    SilenceChanges(went_silent=['a', 'b'], came_back=[])
    >>> w.seen("a", now=4.0)
    >>> w.changes(now=4.0)
    SilenceChanges(went_silent=[], came_back=['a'])
    """

    def __init__(
        self, timeout_s: float, *, expected: Iterable[str] = (), now: float | None = None
    ) -> None:
        if isinstance(timeout_s, bool) or not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{timeout_s=} must be a finite number of seconds > 0")
        self.timeout_s = float(timeout_s)
        t = time.monotonic() if now is None else now
        self._last: dict[str, float] = dict.fromkeys(expected, t)
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def seen(self, sensor_id: str, now: float | None = None) -> None:
        """Record that a chunk from ``sensor_id`` arrived."""
        t = time.monotonic() if now is None else now
        with self._lock:
            self._last[sensor_id] = t

    def silent(self, now: float | None = None) -> list[str]:
        """Sensors whose last chunk is more than ``timeout_s`` old, sorted."""
        t = time.monotonic() if now is None else now
        with self._lock:
            return sorted(s for s, last in self._last.items() if t - last > self.timeout_s)

    def changes(self, now: float | None = None) -> SilenceChanges:
        """Sensors that went silent, and came back, since the last call; each reported once."""
        t = time.monotonic() if now is None else now
        with self._lock:
            quiet = {s for s, last in self._last.items() if t - last > self.timeout_s}
            went = sorted(quiet - self._reported)
            back = sorted(self._reported - quiet)
            self._reported = quiet
        return SilenceChanges(went, back)

    def last_seen(self, sensor_id: str) -> float | None:
        """Monotonic time of the sensor's last chunk (or of construction, if expected)."""
        with self._lock:
            return self._last.get(sensor_id)

    def forget(self, sensor_id: str) -> None:
        """Stop watching a sensor (e.g. taken out of the pipeline)."""
        with self._lock:
            self._last.pop(sensor_id, None)
            self._reported.discard(sensor_id)
