"""Is a host on this machine? For the guards that refuse plaintext or an open port elsewhere.
And what a listener does when accepting fails for want of descriptors."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import time
from typing import Any

__all__ = [
    "ACCEPT_PAUSE_S",
    "OUT_OF_RESOURCES",
    "is_loopback",
    "is_loopback_ip",
    "quiet_accept_failures",
]

#: ``accept()`` errors that say the process (or system) is out of descriptors or memory: the
#: listener stays readable while its backlog holds connections, so a loop that selects it
#: again at once spins a core and logs a line per failure (red team 2026-12-07).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: How long a listener rests after such an error before accepting again, s (asyncio's too).
ACCEPT_PAUSE_S = 1.0


def is_loopback_ip(host: str) -> bool:
    """True for an IP literal in a loopback network (``127.0.0.0/8``, ``::1``; an IPv6
    literal may come in brackets). Host names are not trusted: what they resolve to is up
    to the resolver."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True for the name ``localhost`` (any case) or a loopback IP literal."""
    return host.lower() == "localhost" or is_loopback_ip(host)


def quiet_accept_failures(
    loop: asyncio.AbstractEventLoop, log: logging.Logger, name: str, interval_s: float = 60.0
) -> None:
    """Make ``loop`` tell a failed accept for want of descriptors in one line per
    ``interval_s`` (with a count), not a traceback per attempt: asyncio rests the listener
    :data:`ACCEPT_PAUSE_S` but, in Python 3.11, still tries and reports up to its backlog
    (100) accepts per wake-up — 43,667 tracebacks in a minute from two servers (red team
    2026-12-07). Everything else goes to the loop's default handler."""
    told = [-interval_s, 0]  # when last told (monotonic s), failures held back since

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
            now = time.monotonic()
            if now - told[0] >= interval_s:
                more = f" ({told[1]} more in the last {interval_s:g} s)" if told[1] else ""
                log.warning("%s: accept failed: %s%s", name, exc.strerror or exc, more)
                told[0], told[1] = now, 0
            else:
                told[1] += 1
            return
        lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
