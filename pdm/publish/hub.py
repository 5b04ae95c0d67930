"""The hub: snapshots and transitions in from the machines, out to every publisher, off the hot path.

The machines' side only *offers* (:meth:`PublishHub.offer`): it takes a lock for a few
dictionary operations and never waits. The hub's own thread hands what was offered to each
:class:`~pdm.publish.model.Publisher` in order — each transition after the snapshot of its
moment (a subscriber who sees an event and reads the state finds the new state), then the
periodic snapshots — and ticks them once a second.

Bounded, and what gives way:

* **snapshots** are periodic: only the newest per machine waits (an older one not yet
  handed out is replaced — drop-oldest by construction), so the hub holds at most one per
  machine however slow a publisher is;
* **transitions** are never replaced: each comes with the snapshot of the moment it was
  decided (so a level that lasted one window still shows, in order, on every protocol) and
  waits in arrival order, at most :data:`MAX_TRANSITIONS`; a periodic snapshot offered before
  it is dropped (it is older). They are handed out before the periodic snapshots, which are
  newer. Past that (a publisher stuck for hours while states flap) the
  oldest goes, counted in :attr:`PublishHub.transitions_dropped` and logged once a minute;
  the machine's state is still right, as every snapshot carries it, and each publisher
  re-publishes its states on reconnect.

A machine whose snapshots stop (its worker died, the processing stalled) goes *stale*
after ``stale_s``: its heartbeat stops moving (:meth:`Publisher.tick`'s ``fresh``) while the
appliance's keeps counting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pdm.loglimit import LogLimiter
from pdm.publish.model import MachineInfo, Publisher, Snapshot, TransitionEvent

__all__ = ["MAX_TRANSITIONS", "STALE_S", "PublishHub"]

log = logging.getLogger("pdm.publish")

#: Transitions waiting at most (see the module docstring).
MAX_TRANSITIONS = 10_000
#: A machine without a snapshot for this long is stale, s (the feeds send one a second).
STALE_S = 5.0


class PublishHub:
    """Fan-out to ``publishers`` on a thread of its own (see the module docstring).

    Parameters
    ----------
    publishers : the ways out, started by :meth:`start` (a publisher that fails to start
        raises there, and the ones started before it are closed)
    machines : every machine served, in the order the register map and address space use
    tick_s : the heartbeat period, s
    stale_s : a machine without a snapshot this long is not fresh, s
    """

    def __init__(
        self,
        publishers: Sequence[Publisher],
        machines: Sequence[MachineInfo],
        *,
        tick_s: float = 1.0,
        stale_s: float = STALE_S,
    ) -> None:
        self.publishers = list(publishers)
        self.machines = list(machines)
        self.tick_s = tick_s
        self.stale_s = stale_s
        self._cond = threading.Condition()
        self._states: dict[str, Snapshot] = {}
        self._events: deque[tuple[Snapshot, TransitionEvent]] = deque()
        self._seen: dict[str, float] = {}
        self._latest: dict[str, Snapshot] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._limit = LogLimiter(60.0)
        #: Transitions dropped because :data:`MAX_TRANSITIONS` were waiting.
        self.transitions_dropped = 0
        #: Snapshots and transitions handed out (all publishers), for /metrics and tests.
        self.delivered = 0

    # -- the machines' side -------------------------------------------------------------------
    def offer(
        self,
        transitions: Iterable[tuple[Snapshot, TransitionEvent]] = (),
        states: Iterable[Snapshot] = (),
    ) -> None:
        """Queue transitions (each with the snapshot of its moment), then periodic snapshots
        (newer; the newest per machine kept); never waits."""
        now = time.monotonic()
        with self._cond:
            for pair in transitions:
                self._states.pop(pair[0].machine, None)  # older than this transition
                self._seen[pair[0].machine] = now
                if len(self._events) >= MAX_TRANSITIONS:
                    self._events.popleft()
                    self.transitions_dropped += 1
                    held = self._limit.check("dropped")
                    if held is not None:
                        log.error(
                            "publish: %d transitions waiting; the oldest dropped "
                            "(%d in all; the states stay right)",
                            MAX_TRANSITIONS,
                            self.transitions_dropped,
                        )
                self._events.append(pair)
            for s in states:
                self._states[s.machine] = s
                self._seen[s.machine] = now
            self._cond.notify()

    def latest(self, machine: str) -> Snapshot | None:
        """The newest snapshot of ``machine`` handed out (None before the first)."""
        with self._cond:
            return self._latest.get(machine)

    @property
    def heartbeat(self) -> int:
        """Seconds since the hub started, mod 2^32 (a PLC sees it move every second)."""
        return int(time.monotonic() - self._started) & 0xFFFFFFFF

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> PublishHub:
        started: list[Publisher] = []
        try:
            for p in self.publishers:
                p.start(self.machines)
                started.append(p)
        except BaseException:
            for p in reversed(started):
                self._safe(p, "close", p.close)
            raise
        self._thread = threading.Thread(target=self._run, name="pdm-publish", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 3.0) -> None:
        """Hand out what waits, then close every publisher (each within a second or two)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        for p in self.publishers:
            self._safe(p, "close", p.close)

    # -- the hub's thread -----------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            with self._cond:
                while not self._stop and not self._states and not self._events:
                    left = next_tick - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                events = list(self._events)
                self._events.clear()
                states = list(self._states.values())
                self._states.clear()
                stop = self._stop
                self._latest.update((s.machine, s) for s, _ in events)
                self._latest.update((s.machine, s) for s in states)
            self._deliver(events, states)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.tick_s
                self._tick(now)
            if stop:
                return

    def _deliver(
        self, events: list[tuple[Snapshot, TransitionEvent]], states: list[Snapshot]
    ) -> None:
        for p in self.publishers:
            for snap, event in events:
                self._safe(p, "state", p.publish_state, snap)
                self._safe(p, "transition", p.publish_transition, event)
            for s in states:
                self._safe(p, "state", p.publish_state, s)
        self.delivered += len(states) + len(events)

    def _tick(self, now: float) -> None:
        with self._cond:
            fresh = {m.id: now - self._seen.get(m.id, -1e18) <= self.stale_s for m in self.machines}
        beat = self.heartbeat
        for p in self.publishers:
            self._safe(p, "tick", p.tick, beat, fresh)

    def fresh(self) -> Mapping[str, bool]:
        now = time.monotonic()
        with self._cond:
            return {m.id: now - self._seen.get(m.id, -1e18) <= self.stale_s for m in self.machines}

    def _safe(self, p: Publisher, what: str, fn: Any, *args: Any) -> None:
        """One publisher's failure is logged (once a minute) and never stops the others."""
        try:
            fn(*args)
        except Exception as exc:
            held = self._limit.check((p.name, what))
            if held is not None:
                more = f" ({held} more since)" if held else ""
                log.error(
                    "publish %s: %s failed: %s: %s%s", p.name, what, type(exc).__name__, exc, more
                )
