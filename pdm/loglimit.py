"""At most one log line per cause per interval: a flood of refusals is one line and a count.

A peer that sends bad frames in a loop, or a scanner that opens connections by the
thousand, must not turn the log (and the history it feeds) into a storm. Each refusal
has a *key* (its cause, and whatever else tells its lines apart); the first of a key is
told at once, those that follow within ``interval_s`` are only counted, and the next line
of that key — or :meth:`LogLimiter.pending`, polled by the caller — tells how many were
held back.

>>> lim = LogLimiter(interval_s=60.0)
>>> lim.check("bad_crc", now=0.0)      # the first: tell it (nothing held back)
0
>>> lim.check("bad_crc", now=1.0) is None, lim.check("bad_crc", now=2.0) is None
(True, True)
>>> lim.check("bad_crc", now=61.0)     # a minute on: tell it, and the 2 held back
2
>>> lim.check("bad_crc", now=62.0) is None
True
>>> lim.pending(now=200.0)             # held back and never told: the caller says so
[('bad_crc', 1)]
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["LogLimiter"]


class LogLimiter:
    """Which lines to tell, per key (see the module docstring). Thread-safe.

    Parameters
    ----------
    interval_s : float
        At most one line per key per this many seconds.
    max_keys : int
        Keys remembered (the least recently seen are forgotten first, with their counts),
        so that keys made of peer addresses cannot grow without bound.
    """

    def __init__(self, interval_s: float = 60.0, *, max_keys: int = 1024) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"{interval_s=} must be a finite number of seconds > 0")
        if max_keys < 1:
            raise ValueError(f"{max_keys=} must be >= 1")
        self.interval_s = float(interval_s)
        self.max_keys = max_keys
        # key -> [when the last line was told (monotonic s), lines held back since]
        self._keys: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: Hashable, now: float | None = None) -> int | None:
        """None: hold this line back (it is counted). Otherwise tell it now; the value is
        how many lines of ``key`` were held back since the last one told."""
        t = time.monotonic() if now is None else now
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and t - entry[0] < self.interval_s:
                entry[1] += 1
                self._keys.move_to_end(key)
                return None
            held = int(entry[1]) if entry is not None else 0
            self._keys[key] = [t, 0]
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return held

    def pending(self, now: float | None = None) -> list[tuple[Hashable, int]]:
        """Keys whose interval has passed with lines held back: ``(key, count)`` each, their
        counts reset (call it now and then to say "N more" for causes that went quiet)."""
        t = time.monotonic() if now is None else now
        out: list[tuple[Hashable, int]] = []
        with self._lock:
            for key, entry in self._keys.items():
                if entry[1] and t - entry[0] >= self.interval_s:
                    out.append((key, int(entry[1])))
                    entry[0], entry[1] = t, 0
        return out
