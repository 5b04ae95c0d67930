"""SIGTERM and SIGINT as a request to stop (light: imported before the service's heavy modules)."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["stop_on_signals"]


def stop_on_signals(stop_event: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set ``stop_event`` from now on; returns the handlers they had."""

    def on_signal(signum: int, frame: Any) -> None:
        stop_event.set()

    return {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
