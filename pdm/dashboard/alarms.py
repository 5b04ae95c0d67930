"""Dashboard page: the event and alarm log, and acknowledging a latched alarm.

The log (state changes, events, action results and captures) is read from the
history store, newest first, and can be filtered by machine and kind. The
acknowledge form asks for an operator name and PIN (:mod:`pdm.dashboard.pin`);
once the PIN checks out it acknowledges through the service's control API
when the dashboard knows one (``--api``), else directly against the alarm
state store (:func:`pdm.alarms.ack.ack`, as ``pdm-edge ack`` does). The page
logic is in plain functions (:func:`log_rows`, :func:`latched_machines`,
:func:`acknowledge`) so that it can be tested without Streamlit.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pdm.dashboard.context import DashboardContext
from pdm.dashboard.pin import check_pin
from pdm.errors import PdmError
from pdm.history.base import LogRecord
from pdm.history.records import ActionResult, Capture, Event, Kind, StateChange

__all__ = ["AckResult", "acknowledge", "latched_machines", "log_rows", "render"]

KINDS: tuple[Kind, ...] = ("states", "events", "actions", "captures")
KIND_LABEL: dict[str, str] = {
    "states": "state change",
    "events": "event",
    "actions": "action",
    "captures": "capture",
}
API_TIMEOUT_S = 5.0
_FAIL_DELAY_S = 1.0  # after a wrong PIN, before answering (the lockout is in pdm.dashboard.pin)


@dataclass(frozen=True)
class AckResult:
    ok: bool
    message: str  # one line for the operator


def _iso(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _row(rec: LogRecord) -> dict[str, Any]:
    base: dict[str, Any] = {"time (UTC)": _iso(rec.t_ns), "machine": rec.machine}
    if isinstance(rec, StateChange):
        what = f"{rec.old} → {rec.new}"
        detail = rec.reason + (f" (score {rec.score:.3g})" if rec.score == rec.score else "")
        return {
            **base,
            "kind": KIND_LABEL["states"],
            "what": what,
            "detail": detail,
            "sensor": rec.sensor,
            "ref": rec.capture,
        }
    if isinstance(rec, Event):
        return {
            **base,
            "kind": KIND_LABEL["events"],
            "what": f"{rec.type} ({rec.severity})",
            "detail": rec.message + (f" — {rec.detail}" if rec.detail else ""),
            "sensor": rec.sensor,
            "ref": rec.id,
        }
    if isinstance(rec, ActionResult):
        return {
            **base,
            "kind": KIND_LABEL["actions"],
            "what": f"{rec.action}: {rec.outcome}"
            + (f" (attempt {rec.attempt})" if rec.attempt > 1 else ""),
            "detail": f"{rec.target} {rec.detail}".strip(),
            "sensor": "",
            "ref": rec.event_id,
        }
    assert isinstance(rec, Capture)
    return {
        **base,
        "kind": KIND_LABEL["captures"],
        "what": f"{rec.samples} samples × {len(rec.channels)} channel(s) at {rec.fs_hz:g} Hz",
        "detail": f"{rec.reason} [{rec.path}]",
        "sensor": "",
        "ref": rec.id,
    }


def log_rows(
    ctx: DashboardContext,
    machine: str | None = None,
    kinds: Sequence[Kind] = KINDS,
    *,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The log as table rows, newest first (``machine`` None: every machine)."""
    if not kinds:
        return []
    with ctx.store() as store:
        records = store.log(machine, limit=limit, kinds=tuple(kinds))
    records = sorted(records, key=lambda r: r.t_ns, reverse=True)
    return [_row(r) for r in records]


def _api_headers(ctx: DashboardContext) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if ctx.api_token:
        headers["Authorization"] = f"Bearer {ctx.api_token}"
    return headers


def _api_error(resp: Any) -> str:
    try:
        return str(resp.json().get("error") or resp.text.strip())
    except (ValueError, AttributeError):
        return resp.text.strip()[:200] or f"HTTP {resp.status_code}"


def api_status(ctx: DashboardContext, *, timeout: float = API_TIMEOUT_S) -> list[dict[str, Any]]:
    """``GET /status`` from the service; raises :class:`PdmError` with one line on failure."""
    import httpx

    assert ctx.api_url
    url = ctx.api_url.rstrip("/") + "/status"
    try:
        resp = httpx.get(url, headers=_api_headers(ctx), timeout=timeout)
    except httpx.HTTPError as exc:
        raise PdmError(f"control API {ctx.api_url}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise PdmError(f"control API {url}: HTTP {resp.status_code}: {_api_error(resp)}")
    try:
        data = resp.json()
    except ValueError as exc:
        raise PdmError(f"control API {url}: the answer is not JSON") from exc
    if not isinstance(data, list):
        raise PdmError(f"control API {url}: expected a list of machines")
    return [d for d in data if isinstance(d, dict)]


def latched_machines(ctx: DashboardContext) -> list[tuple[str, str]]:
    """(machine, state) of every machine in ``danger`` or ``trip``: from the service when there
    is one, else from the alarm state store. Raises :class:`PdmError` with one line."""
    if ctx.api_url:
        return sorted(
            (str(d["id"]), str(d.get("state")))
            for d in api_status(ctx)
            if d.get("state") in ("danger", "trip") and "id" in d
        )
    from pdm.alarms.store import AlarmStore

    path = ctx.data_dir / "alarms.db"
    if not path.exists():
        return []
    out = []
    with AlarmStore(path) as store:
        for m in store.machines():
            if "#" in m:  # a dry-run replay's re-analysis: nothing to acknowledge
                continue
            state = store.load(m)
            if state is not None and state.latched:
                out.append((m, state.state))
    return out


def acknowledge(
    ctx: DashboardContext,
    machine: str,
    by: str,
    pin: str,
    comment: str = "",
    *,
    timeout: float = API_TIMEOUT_S,
) -> AckResult:
    """Check the operator's PIN, then acknowledge ``machine`` (control API, else state store)."""
    by = by.strip()
    if not machine:
        return AckResult(False, "choose a machine")
    if not by or not pin:
        return AckResult(False, "give your operator name and PIN")
    checked = check_pin(ctx.data_dir, by, pin)
    if not checked.ok:
        return AckResult(False, f"{checked.message}; nothing acknowledged")
    # A PIN set under the old 4-character rule still works, but says so.
    note = " (your PIN is shorter than 6 characters: have it set again)" if checked.short else ""
    if ctx.api_url:
        import httpx

        url = f"{ctx.api_url.rstrip('/')}/ack/{quote(machine, safe='')}"
        body = json.dumps({"by": by, "comment": comment}).encode("utf-8")
        headers = {**_api_headers(ctx), "Content-Type": "application/json"}
        try:
            resp = httpx.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return AckResult(False, f"control API {ctx.api_url}: {type(exc).__name__}: {exc}")
        if resp.status_code != 200:
            return AckResult(False, f"{machine}: HTTP {resp.status_code}: {_api_error(resp)}")
        try:
            msg = str(resp.json().get("message", "acknowledged"))
        except (ValueError, AttributeError):
            msg = "acknowledged"
        return AckResult(True, f"{machine}: {msg}{note}")
    from pdm.alarms.ack import ack

    try:
        return AckResult(True, ack(machine, by, comment, ctx.data_dir, ctx.store_url) + note)
    except (PdmError, ValueError) as exc:
        return AckResult(False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# --- the page ------------------------------------------------------------------------------------


def render(ctx: DashboardContext) -> None:
    import streamlit as st

    st.header("Alarms and events")
    for p in ctx.problems:
        st.warning(p)
    try:
        with ctx.store() as store:
            machines = store.machines()
    except PdmError as exc:
        st.error(f"history store {ctx.store_url}: {exc}")
        machines = []
    machines = sorted(set(machines) | set(ctx.pipelines))
    c1, c2 = st.columns([1, 2])
    pick = c1.selectbox("Machine", ["(all)", *machines], key="alarms_machine")
    kinds = c2.multiselect(
        "Kinds",
        list(KINDS),
        default=list(KINDS),
        format_func=lambda k: KIND_LABEL[k],
        key="alarms_kinds",
    )
    try:
        rows = log_rows(ctx, None if pick == "(all)" else pick, kinds)
    except PdmError as exc:
        st.error(str(exc))
        rows = []
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.info("Nothing in the log for this selection.")

    st.subheader("Acknowledge")
    st.caption(
        "Viewing needs nothing; acknowledging needs an operator name and PIN "
        "(`pdm-edge operators add NAME`). "
        + (
            f"Acknowledged through the service at {ctx.api_url}."
            if ctx.api_url
            else "No service configured: acknowledged in the alarm state store."
        )
    )
    try:
        latched = latched_machines(ctx)
    except PdmError as exc:
        st.error(str(exc))
        latched = []
    if not latched:
        st.success("No machine is in a latched state (danger or trip).")
    with st.form("ack_form", clear_on_submit=True):
        options = [m for m, _ in latched]
        states = dict(latched)
        machine = st.selectbox(
            "Machine",
            options,
            format_func=lambda m: f"{m} ({states.get(m, '?')})",
            disabled=not options,
        )
        by = st.text_input("Operator name")
        pin = st.text_input("PIN", type="password")
        comment = st.text_input("Comment", max_chars=500)
        submitted = st.form_submit_button("Acknowledge", disabled=not options)
    if submitted:
        result = acknowledge(ctx, machine or "", by, pin, comment)
        if result.ok:
            st.session_state["ack_result"] = (True, result.message)
        else:
            time.sleep(_FAIL_DELAY_S if "PIN" in result.message else 0.0)
            st.session_state["ack_result"] = (False, result.message)
        st.rerun()  # the latched list and the log show the acknowledgement
    shown = st.session_state.get("ack_result")
    if shown:
        (st.success if shown[0] else st.error)(shown[1])
