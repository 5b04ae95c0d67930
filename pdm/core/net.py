"""Is a host on this machine? For the guards that refuse plaintext or an open port elsewhere."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback", "is_loopback_ip"]


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
