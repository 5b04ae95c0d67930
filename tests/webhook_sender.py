"""The webhook sender as a process of its own, for the kill -9 test.

Usage: ``python tests/webhook_sender.py OUTBOX URL N``

Enqueues the N test events (the same N, with the same ids, on every run: a
restarted appliance re-enqueues what it was doing), then delivers the outbox
and exits 0 once it is empty. The HMAC key comes from ``PDM_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import sys

from pdm.actions.outbox import Outbox
from pdm.actions.webhook import WebhookSender, WebhookSettings, webhook_secret
from pdm.core.events import AlarmEvent

T0 = 1_780_000_000_000_000_000  # 2026-05-28, ns


def event(i: int) -> AlarmEvent:
    """Test event ``i``: its id depends on ``i`` only."""
    old, new = ("ok", "alert") if i % 2 == 0 else ("alert", "ok")
    return AlarmEvent(
        appliance="test-appliance",
        machine="pump-1",
        sensor="",
        old=old,
        new=new,
        reason=f"test event {i}",
        t_ns=T0 + i * 1_000_000_000,
        created_ns=T0 + i * 1_000_000_000 + 5_000_000,
        score=1.0 + i / 10,
    )


def main() -> int:
    path, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = WebhookSettings(
        url, webhook_secret(), timeout_s=5.0, backoff_min_s=0.05, backoff_max_s=0.2, name="proc"
    )
    with Outbox(path) as outbox:
        sender = WebhookSender(settings, outbox)
        for i in range(n):
            sender.enqueue(event(i))
        with sender:
            return 0 if sender.drain(60.0) else 1


if __name__ == "__main__":
    sys.exit(main())
