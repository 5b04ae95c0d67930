"""The machines' side of publishing: snapshots and transitions of the machines *this* process runs.

A :class:`StateFeed` lives in the process whose runners decide (the one-process service, or
each worker of a supervisor). The alarm engines call :meth:`StateFeed.transition` on their
processing thread with the event and the alarm state it left (an immutable value): it
appends both to a bounded queue and returns. The feed's own thread then builds the
machine's ``/status`` entry with *that* alarm state (the same function ``GET /status`` uses)
and sends it with the event — at once, so a level that lasted one window is still seen —
and every machine's current entry once a second, which carries the score, velocity and
heartbeat freshness.

Where it goes (``send``): straight into the :class:`~pdm.publish.hub.PublishHub` of the same
process, or, in a worker, over the Unix socket it already shares with its supervisor
(:func:`encode` / :func:`decode`: SOCK_SEQPACKET messages of at most
:data:`MAX_MESSAGE_BYTES`, each a whole JSON document), whose hub serves every worker's
machines behind one MQTT session, one OPC UA endpoint and one Modbus port.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pdm.core.events import AlarmEvent
from pdm.loglimit import LogLimiter
from pdm.publish.model import SNAPSHOT_KEYS

__all__ = ["MAX_MESSAGE_BYTES", "PREFIX", "StateFeed", "decode", "encode", "trim"]

log = logging.getLogger("pdm.publish")

#: A worker's publish message starts with this (its other messages are ``ready``, ``error``).
PREFIX = b"pub\n"
#: Largest message, bytes (the socket's buffer holds several; the receiver reads 64 KiB).
MAX_MESSAGE_BYTES = 60_000
#: Transitions waiting at most in a feed (the hub's own bound is the same).
MAX_PENDING = 10_000

#: ``send(transitions, states)``: (entry at the transition, event payload) pairs in order,
#: then current entries (newer).
Send = Callable[[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]]], None]


def trim(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a ``/status`` entry a snapshot reads (:data:`SNAPSHOT_KEYS`)."""
    return {k: entry[k] for k in SNAPSHOT_KEYS if k in entry}


def encode(
    transitions: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    states: Sequence[Mapping[str, Any]],
) -> list[bytes]:
    """Messages of at most :data:`MAX_MESSAGE_BYTES` carrying ``transitions`` then ``states``
    in order (:func:`decode` gives them back). An item too large alone is left out."""
    out: list[bytes] = []
    batch: dict[str, list[Any]] = {"transitions": [], "states": []}
    size = 0
    items: list[tuple[str, Any]] = [("transitions", list(t)) for t in transitions]
    items += [("states", s) for s in states]
    for key, item in items:
        part = json.dumps(item, separators=(",", ":"), default=str)
        if len(part) + 64 > MAX_MESSAGE_BYTES:
            log.error("publish: a %s item of %d bytes left out", key, len(part))
            continue
        if size + len(part) + 64 > MAX_MESSAGE_BYTES:
            out.append(_message(batch))
            batch, size = {"transitions": [], "states": []}, 0
        batch[key].append(item)
        size += len(part) + 1
    if batch["transitions"] or batch["states"]:
        out.append(_message(batch))
    return out


def _message(batch: Mapping[str, list[Any]]) -> bytes:
    return PREFIX + json.dumps(batch, separators=(",", ":"), default=str).encode()


def decode(
    message: bytes,
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]]]:
    """``(transitions, states)`` of one message; ``ValueError`` when it is not one of
    :func:`encode`'s."""
    if not message.startswith(PREFIX):
        raise ValueError("not a publish message")
    doc = json.loads(message[len(PREFIX) :])
    if not isinstance(doc, dict):
        raise ValueError("a publish message is a JSON object")
    pairs, states = doc.get("transitions", []), doc.get("states", [])
    if not isinstance(pairs, list) or not isinstance(states, list):
        raise ValueError("transitions and states are lists")
    transitions = [
        (p[0], p[1])
        for p in pairs
        if isinstance(p, list) and len(p) == 2 and isinstance(p[0], dict) and isinstance(p[1], dict)
    ]
    return transitions, [s for s in states if isinstance(s, dict)]


class StateFeed:
    """See the module docstring.

    Parameters
    ----------
    machines : the machine ids this process runs
    status_of : ``status_of(machine, alarm)``: the machine's ``/status`` entry, with ``alarm``
        as its alarm state when given (KeyError: not one of ours)
    send : :data:`Send`
    interval_s : every machine's entry is sent this often, s
    """

    def __init__(
        self,
        machines: Sequence[str],
        status_of: Callable[[str, Any], Mapping[str, Any]],
        send: Send,
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.machines = list(machines)
        self.status_of = status_of
        self.send = send
        self.interval_s = interval_s
        self._cond = threading.Condition()
        self._events: deque[tuple[AlarmEvent, Any]] = deque()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._limit = LogLimiter(60.0)
        self.dropped = 0

    def transition(self, event: AlarmEvent, alarm: Any = None) -> None:
        """The engines' listener: queue the event and the alarm state it left, and return
        (the processing thread calls it)."""
        with self._cond:
            if len(self._events) >= MAX_PENDING:
                self._events.popleft()
                self.dropped += 1
            self._events.append((event, alarm))
            self._cond.notify()

    def start(self) -> StateFeed:
        self._thread = threading.Thread(target=self._run, name="pdm-publish-feed", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Send what waits (the last states: the stop's ``appliance_fault``), then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            with self._cond:
                while not self._stop and not self._events:
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                events = list(self._events)
                self._events.clear()
                stop = self._stop
            now = time.monotonic()
            periodic = now >= due or stop
            if periodic:
                due = now + self.interval_s
            self._safe_send(self.machines if periodic else (), events)
            if stop:
                return

    def _safe_send(self, machines: Sequence[str], events: Sequence[tuple[AlarmEvent, Any]]) -> None:
        try:
            pairs = []
            for event, alarm in events:
                try:
                    pairs.append((trim(self.status_of(event.machine, alarm)), event.payload()))
                except KeyError:
                    continue
            states = []
            for m in machines:
                try:
                    states.append(trim(self.status_of(m, None)))
                except KeyError:
                    continue
            self.send(pairs, states)
        except Exception as exc:  # a feed that fails is logged, and tries again next time
            held = self._limit.check(type(exc).__name__)
            if held is not None:
                log.error("publish feed: %s: %s", type(exc).__name__, exc)
