"""Who leaves when a client of the OPC UA server or the Modbus map finds every slot taken.

Both servers hold at most 32 clients (their descriptors are budgeted: pdm/service/limits.py).
Idle connections were pushed out already (red team 2026-12-07); what remained were clients
that *do* talk — Modbus clients that poll, OPC UA sessions that activate and then sit — and
they could fill every slot and keep the plant's client out (red team, round two). What a
demanding integrator expects, in order (:func:`choose`):

1. **A client that reconnects gets in.** One address holds at most ``per_peer`` slots
   (8 of 32: a SCADA server with a redundant partner and a historian, a PLC or two, on one
   host). A newcomer from an address at its cap pushes out that address's own connection
   quiet longest: a PLC whose cable was pulled reconnects at once instead of waiting for its
   half-open connection to time out, and a host that opens connections in a loop churns
   only its own slots.
2. **Idle first.** With every slot taken, the connection quiet longest goes if it has asked
   nothing for ``quiet_s`` (or never asked anything, or — OPC UA — has no activated session).
3. **Fair share.** Else the connection quiet longest of the address holding the most slots
   goes, if that address holds at least two more than the newcomer's would: a few hosts
   cannot hold the server between them, and a swap between equals (which would let 33
   addresses push out the plant's client in turn) never happens.
4. Else the newcomer is turned away: 32 busy clients from 32 addresses are 32 clients.

Pure: the servers keep their connections and call :func:`choose`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["PER_PEER", "Slot", "choose"]

#: Slots one address may hold (of the servers' 32).
PER_PEER = 8


@dataclass(frozen=True)
class Slot:
    """One connection held: ``key`` (the server's handle), the peer's address (host only),
    when it last asked something (monotonic s; None: never) and whether it has proven
    itself (a Modbus client always has; an OPC UA client once its session is activated)."""

    key: Hashable
    host: str
    last_asked: float | None
    proven: bool = True


def choose(
    slots: Iterable[Slot],
    newcomer: str,
    *,
    now: float,
    max_slots: int,
    quiet_s: float,
    per_peer: int = PER_PEER,
) -> tuple[Hashable | None, str]:
    """Which connection to push out for a newcomer from ``newcomer`` (an address), and why:
    ``(key, "per_peer" | "quiet" | "fair_share")``; ``(None, "")`` when there is room (admit
    it), ``(None, "full")`` when it must be turned away.

    >>> s = [Slot("a", "10.0.0.9", 5.0), Slot("b", "10.0.0.9", 9.0), Slot("c", "10.0.0.2", 9.0)]
    >>> choose(s, "10.0.0.7", now=10.0, max_slots=4, quiet_s=60.0)
    (None, '')
    >>> choose(s, "10.0.0.9", now=10.0, max_slots=4, quiet_s=60.0, per_peer=2)
    ('a', 'per_peer')
    >>> choose(s, "10.0.0.7", now=10.0, max_slots=3, quiet_s=60.0)
    ('a', 'fair_share')
    >>> choose(s, "10.0.0.2", now=10.0, max_slots=3, quiet_s=60.0)
    (None, 'full')
    """
    held = list(slots)

    def quietest(cands: list[Slot]) -> Slot:
        # never asked first, then the oldest last request; among equals the oldest slot
        return min(cands, key=lambda s: -1.0 if s.last_asked is None else s.last_asked)

    mine = [s for s in held if s.host == newcomer]
    if len(mine) >= per_peer:
        return quietest(mine).key, "per_peer"
    if len(held) < max_slots:
        return None, ""
    unproven = [s for s in held if not s.proven]
    if unproven:
        return unproven[0].key, "quiet"
    q = quietest(held)
    if q.last_asked is None or now - q.last_asked >= quiet_s:
        return q.key, "quiet"
    counts: dict[str, int] = {}
    for s in held:
        counts[s.host] = counts.get(s.host, 0) + 1
    top = max(counts, key=lambda h: counts[h])
    if counts[top] >= len(mine) + 2:
        return quietest([s for s in held if s.host == top]).key, "fair_share"
    return None, "full"
