"""Where the dashboard learns each machine's alarm state: the service, else the local store.

The alarm state (state, since when, why, who acknowledged) belongs to the service. With
``--api`` the dashboard asks it (``GET /status``); when it does not answer, the state is
**unknown** — said so in words — and the last state saved on this appliance
(``<data dir>/alarms.db``, opened read-only) is shown as such, never an all-clear.
Without ``--api`` the local alarm state store is the source (as ``pdm-edge ack`` uses it).
The store is only ever read here: the dashboard writes no alarm state.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from pdm.dashboard.context import DashboardContext
from pdm.errors import PdmError

__all__ = [
    "API_TIMEOUT_S",
    "UNREACHABLE",
    "AlarmLatch",
    "AlarmStatus",
    "StatusRead",
    "api_error",
    "api_headers",
    "api_status",
    "read_alarm_status",
    "read_local_store",
]

API_TIMEOUT_S = 5.0
#: What the pages say when the service does not answer.
UNREACHABLE = "unknown — service unreachable"


class AlarmLatch:
    """What a latch is, for a view of a machine that has its alarm ``state`` and the latch's
    ``ack_by``: danger and trip latch until an operator acknowledges them."""

    state: str
    ack_by: str | None

    @property
    def latched(self) -> bool:
        return self.state in ("danger", "trip")

    @property
    def unacknowledged(self) -> bool:
        """A latch nobody has acknowledged yet."""
        return self.latched and self.ack_by is None


@dataclass(frozen=True)
class AlarmStatus(AlarmLatch):
    """One machine's alarm state as its owner (service or state store) knows it."""

    machine: str
    state: str  # ok, alert, danger, trip
    since_ns: int | None = None
    reason: str = ""
    ack_by: str | None = None
    ack_ns: int | None = None
    ack_comment: str = ""
    sensor_faults: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusRead:
    """The alarm states and where they came from.

    ``source`` is ``service``, ``local store`` or ``none``; ``problem`` is '' or one line
    (``unknown — service unreachable: …``); ``authoritative`` is True only when the
    states are the live ones (the service answered, or no service is configured and the
    local store is the state store).
    """

    source: str
    machines: dict[str, AlarmStatus]
    problem: str = ""
    authoritative: bool = False


def api_headers(ctx: DashboardContext) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if ctx.api_token:
        headers["Authorization"] = f"Bearer {ctx.api_token}"
    return headers


def api_error(resp: Any) -> str:
    try:
        return str(resp.json().get("error") or resp.text.strip())
    except (ValueError, AttributeError):
        return resp.text.strip()[:200] or f"HTTP {resp.status_code}"


def api_status(ctx: DashboardContext, *, timeout: float = API_TIMEOUT_S) -> list[dict[str, Any]]:
    """``GET /status`` from the service; raises :class:`PdmError` with one line on failure."""

    assert ctx.api_url
    url = ctx.api_url.rstrip("/") + "/status"
    try:
        resp = httpx.get(url, headers=api_headers(ctx), timeout=timeout)
    except httpx.HTTPError as exc:
        raise PdmError(f"control API {ctx.api_url}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise PdmError(f"control API {url}: HTTP {resp.status_code}: {api_error(resp)}")
    try:
        data = resp.json()
    except ValueError as exc:
        raise PdmError(f"control API {url}: the answer is not JSON") from exc
    if not isinstance(data, list):
        raise PdmError(f"control API {url}: expected a list of machines")
    return [d for d in data if isinstance(d, dict)]


def _iso_ns(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return None


def _from_api(d: dict[str, Any]) -> AlarmStatus | None:
    if "id" not in d or d.get("state") not in ("ok", "alert", "danger", "trip"):
        return None
    ack = d.get("acknowledged") if isinstance(d.get("acknowledged"), dict) else None
    got = d.get("sensor_faults")
    faults: dict[Any, Any] = got if isinstance(got, dict) else {}
    return AlarmStatus(
        machine=str(d["id"]),
        state=str(d["state"]),
        since_ns=_iso_ns(d.get("since")),
        reason=str(d.get("reason") or ""),
        ack_by=str(ack["by"]) if ack and ack.get("by") else None,
        ack_ns=_iso_ns(ack.get("at")) if ack else None,
        ack_comment=str(ack.get("comment") or "") if ack else "",
        sensor_faults={str(k): str(v) for k, v in faults.items()},
    )


def read_local_store(path: Path) -> dict[str, AlarmStatus]:
    """Every machine's state in the alarm state store at ``path``, read-only (a dry-run
    replay's ``machine#…`` states are left out); raises :class:`PdmError` with one line."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error as exc:
        raise PdmError(f"{path}: cannot read the alarm state store: {exc}") from exc
    try:
        rows = db.execute("SELECT machine, state FROM machine_state").fetchall()
    except sqlite3.Error as exc:
        raise PdmError(f"{path}: cannot read the alarm state store: {exc}") from exc
    finally:
        db.close()
    out: dict[str, AlarmStatus] = {}
    for machine, text in rows:
        if "#" in machine:
            continue
        try:
            d = json.loads(text)
            ack = d.get("ack") or None
            faults = d.get("sensor_faults") or {}
            out[machine] = AlarmStatus(
                machine=machine,
                state=str(d["state"]),
                since_ns=int(d.get("since_ns") or 0) or None,
                reason=str(d.get("reason") or ""),
                ack_by=str(ack["by"]) if ack else None,
                ack_ns=int(ack["t_ns"]) if ack else None,
                ack_comment=str(ack.get("comment") or "") if ack else "",
                sensor_faults={str(k): str(v) for k, v in faults.items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # one unreadable row: that machine's state stays unknown
    return out


def read_alarm_status(ctx: DashboardContext) -> StatusRead:
    """The machines' alarm states: from the service when configured and answering, else
    from the local state store (read-only). Never raises."""
    path = ctx.data_dir / "alarms.db"
    problem = ""
    if ctx.api_url:
        try:
            found = [s for s in map(_from_api, api_status(ctx)) if s is not None]
            return StatusRead("service", {s.machine: s for s in found}, authoritative=True)
        except PdmError as exc:
            problem = f"{UNREACHABLE}: {str(exc).splitlines()[0]}"
    if not path.exists():
        if not problem:
            problem = f"no alarm state store at {path}"
        return StatusRead("none", {}, problem)
    try:
        machines = read_local_store(path)
    except PdmError as exc:
        return StatusRead("none", {}, problem or str(exc))
    return StatusRead("local store", machines, problem, authoritative=not problem)
