"""Dashboard page: the alarm list, the event log, and acknowledging a latched alarm.

**The alarm list** has one row per alarm, built from history (state changes and
``acknowledge`` events): when it was raised and at which level, when it escalated, who
acknowledged it, when and with what comment, and when it cleared. Rows still waiting for
an acknowledgement come first, highlighted; the list refreshes by itself
(``st.fragment(run_every=…)``).

**The alarm state now** comes from the service (``--api``) or, without one, the local alarm
state store (:mod:`pdm.dashboard.status`, read-only). When the service does not answer the
page says the state is *unknown — service unreachable* and shows the last state saved on
this appliance as such: never a green all-clear.

**Acknowledging** asks for an operator name and PIN (:mod:`pdm.operators`); once the PIN
checks out it acknowledges through the service's control API (``POST /ack/<machine>``). The
dashboard only reads stores: without a control API (``--api``) it refuses, saying so, and
``pdm-edge ack`` on the appliance is the way with no service running. The form offers only
latched machines nobody has acknowledged yet. The
page logic is in plain functions (:func:`alarm_rows`, :func:`log_rows`,
:func:`latched_machines`, :func:`acknowledge`) tested without Streamlit.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from pdm.alarms.state import LEVELS
from pdm.config import Pipeline
from pdm.dashboard.context import DashboardContext
from pdm.dashboard.data import STATE_COLOURS, ack_of
from pdm.dashboard.labels import clock, duration, location_label, plain_reason, state_word
from pdm.dashboard.status import (
    API_TIMEOUT_S,
    UNREACHABLE,
    api_error,
    api_headers,
    api_status,
    read_alarm_status,
    read_local_store,
)
from pdm.errors import PdmError
from pdm.history.base import LogRecord
from pdm.history.records import ActionResult, Capture, Event, Kind, StateChange
from pdm.operators import check_pin

__all__ = [
    "NO_API",
    "AckResult",
    "Alarm",
    "acknowledge",
    "alarm_rows",
    "alarm_table",
    "api_status",
    "latched_machines",
    "log_row",
    "log_rows",
    "render",
]

KINDS: tuple[Kind, ...] = ("states", "events", "actions", "captures")
KIND_LABEL: dict[str, str] = {
    "states": "state change",
    "events": "event",
    "actions": "action",
    "captures": "capture",
}
REFRESH = "5s"
_FAIL_DELAY_S = 1.0  # after a wrong PIN, before answering (the lockout is in pdm.operators)
NS = 1_000_000_000


@dataclass(frozen=True)
class AckResult:
    ok: bool
    message: str  # one line for the operator


def _iso(t_ns: int) -> str:
    """Local time to the second, as the alarm list shows it: ``2026-01-01 13:49:07``."""
    return (
        dt.datetime.fromtimestamp(t_ns / NS, tz=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    )


def _relay_words(rec: ActionResult) -> str:
    """A relay action as a person reads it: a drop stops the machine, whatever "ok" says."""
    dropped = rec.detail.startswith("drop")
    what = "dropped (machine stopped)" if dropped else "energised (machine may run)"
    if rec.outcome != "ok":
        what = "FAILED to " + ("drop" if dropped else "energise")
    if "dry run" in rec.detail:
        what += " — dry run, only logged"
    return f"relay: {what}"


def log_row(rec: LogRecord) -> dict[str, Any]:
    base: dict[str, Any] = {"time": _iso(rec.t_ns), "machine": rec.machine}
    if isinstance(rec, StateChange):
        what = f"{rec.old} → {rec.new}"
        return {
            **base,
            "kind": KIND_LABEL["states"],
            "what": what,
            "detail": plain_reason(rec.reason),
            "sensor": rec.sensor,
            "ref": rec.capture,
        }
    if isinstance(rec, Event):
        return {
            **base,
            "kind": KIND_LABEL["events"],
            "what": f"{rec.type.replace('_', ' ')} ({rec.severity})",
            "detail": plain_reason(rec.message) + (f" — {rec.detail}" if rec.detail else ""),
            "sensor": rec.sensor,
            "ref": rec.id,
        }
    if isinstance(rec, ActionResult):
        what = (_relay_words(rec) if rec.action == "relay" else f"{rec.action}: {rec.outcome}") + (
            f" (attempt {rec.attempt})" if rec.attempt > 1 else ""
        )
        return {
            **base,
            "kind": KIND_LABEL["actions"],
            "what": what,
            "detail": f"{rec.target} {rec.detail}".strip(),
            "sensor": "",
            "ref": rec.event_id,
        }
    assert isinstance(rec, Capture)
    return {
        **base,
        "kind": KIND_LABEL["captures"],
        "what": f"raw windows kept: {rec.samples} samples × {len(rec.channels)} channel(s) "
        f"at {rec.fs_hz:g} Hz",
        "detail": f"{plain_reason(rec.reason)} [{rec.path}]",
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
    return [log_row(r) for r in records]


# --- the alarm list ------------------------------------------------------------------------------


@dataclass
class Alarm:
    """One alarm, from the transition that raised it to the one that cleared it.

    ``raised_ns`` is None when the alarm began before the oldest record read (``level``
    is then the first level seen). ``sensor`` is set for a sensor's fault (``sensor_fault``)
    and ``appliance`` for the appliance's; '' for the machine's alarm.
    """

    machine: str
    sensor: str
    raised_ns: int | None
    level: str  # the level it was raised at
    reason: str
    top: str = ""  # the highest level reached
    escalations: list[tuple[int, str]] = field(default_factory=list)  # (t_ns, to level)
    ack_by: str | None = None
    ack_ns: int | None = None
    ack_comment: str = ""
    cleared_ns: int | None = None
    last_state: str = ""

    @property
    def active(self) -> bool:
        return self.cleared_ns is None

    @property
    def latched(self) -> bool:
        return self.last_state in ("danger", "trip")

    @property
    def needs_ack(self) -> bool:
        """Still latched and nobody acknowledged it: the rows that come first."""
        return self.active and self.latched and self.ack_by is None


def alarm_rows(records: Iterable[LogRecord]) -> list[Alarm]:
    """The alarms in ``records`` (state changes and ``acknowledge`` events, any order):
    unacknowledged latches first, then other active alarms, then cleared ones; newest
    first within each."""
    open_: dict[tuple[str, str], Alarm] = {}
    done: list[Alarm] = []
    # At one instant an acknowledgement comes before the state change it caused.
    for rec in sorted(records, key=lambda r: (r.t_ns, not isinstance(r, Event))):
        if isinstance(rec, Event):
            got = ack_of(rec)
            cur = open_.get((rec.machine, ""))
            if got is not None and cur is not None and cur.latched:
                cur.ack_by, cur.ack_ns, cur.ack_comment = got
            continue
        if not isinstance(rec, StateChange):
            continue
        who = (rec.machine, rec.sensor)
        cur = open_.get(who)
        if rec.new == "ok":
            if cur is not None:
                cur.cleared_ns = rec.t_ns
                cur.last_state = "ok"
                done.append(open_.pop(who))
            continue
        if cur is None:
            raised = rec.t_ns if rec.old == "ok" else None
            cur = open_[who] = Alarm(
                rec.machine, rec.sensor, raised, rec.new, rec.reason, top=rec.new
            )
        elif rec.sensor == "" and LEVELS.index(rec.new) > LEVELS.index(cur.last_state or "ok"):
            cur.escalations.append((rec.t_ns, rec.new))
            if LEVELS.index(rec.new) > LEVELS.index(cur.top):
                cur.top = rec.new
            if rec.new in ("danger", "trip"):
                cur.ack_by, cur.ack_ns, cur.ack_comment = None, None, ""  # a new latch
        cur.last_state = rec.new
    alarms = [*open_.values(), *done]

    def order(a: Alarm) -> tuple[int, int]:
        group = 0 if a.needs_ack else 1 if a.active else 2
        return group, -(a.raised_ns or (a.escalations[0][0] if a.escalations else 0))

    return sorted(alarms, key=order)


def alarm_table(
    alarms: Sequence[Alarm], pipelines: Mapping[str, Pipeline], now_ns: int | None = None
) -> list[dict[str, Any]]:
    """The alarm list as table rows (the page highlights ``needs_ack`` rows)."""
    now = time.time_ns() if now_ns is None else now_ns
    rows = []
    for a in alarms:
        pl = pipelines.get(a.machine)
        name = pl.machine.name if pl is not None and pl.machine.name else a.machine
        if a.sensor:  # where the sensor sits, as people call it
            where = {x.id: location_label(x.location) for x in pl.sensors} if pl else {}
            name += f" · {where.get(a.sensor) or 'sensor ' + a.sensor}"
        level = a.level.replace("_", " ")
        esc = ", ".join(f"{to} at {_iso(t)}" for t, to in a.escalations)
        end = a.cleared_ns if a.cleared_ns is not None else now
        start = a.raised_ns
        if a.needs_ack:
            status = "UNACKNOWLEDGED"
        elif a.active:
            status = f"active ({a.last_state.replace('_', ' ')})"
        else:
            status = "cleared"
        rows.append(
            {
                "status": status,
                "machine": name,
                "alarm": a.top.replace("_", " ").upper(),
                "raised": (f"{_iso(start)} ({level})" if start else f"before the log ({level})"),
                "escalated": esc,
                "acknowledged": (
                    f"{a.ack_by} at {_iso(a.ack_ns)}" if a.ack_by and a.ack_ns else ""
                ),
                "comment": a.ack_comment,
                "cleared": _iso(a.cleared_ns) if a.cleared_ns else "",
                "lasted": duration((end - start) / NS) if start else "",
                "reason": plain_reason(a.reason),
                "needs_ack": a.needs_ack,
            }
        )
    return rows


def latched_machines(ctx: DashboardContext) -> list[tuple[str, str]]:
    """(machine, state) of every machine in ``danger`` or ``trip`` that nobody has
    acknowledged yet: from the service when there is one, else from the alarm state store
    (read-only). Raises :class:`PdmError` with one line (the service does not answer)."""
    if ctx.api_url:
        return sorted(
            (str(d["id"]), str(d.get("state")))
            for d in api_status(ctx)
            if d.get("state") in ("danger", "trip") and "id" in d and not d.get("acknowledged")
        )
    path = ctx.data_dir / "alarms.db"
    if not path.exists():
        return []
    return sorted(
        (m, s.state) for m, s in read_local_store(path).items() if s.latched and s.ack_by is None
    )


#: Why the dashboard refuses to acknowledge without a control API (one line).
NO_API = (
    "Cannot acknowledge here: no control API configured (start the dashboard with --api "
    "or PDM_DASHBOARD_API). The dashboard does not write the alarm state store itself; with "
    "the service stopped, acknowledge with `pdm-edge ack MACHINE --by NAME` on the appliance."
)


def acknowledge(
    ctx: DashboardContext,
    machine: str,
    by: str,
    pin: str,
    comment: str = "",
    *,
    timeout: float = API_TIMEOUT_S,
) -> AckResult:
    """Check the operator's PIN, then acknowledge ``machine`` through the control API; without
    one (no ``--api``) refused: the dashboard never writes a store itself."""
    by = by.strip()
    if not ctx.api_url:
        return AckResult(False, NO_API)
    if not machine:
        return AckResult(False, "choose a machine")
    if not by or not pin:
        return AckResult(False, "give your operator name and PIN")
    checked = check_pin(ctx.data_dir, by, pin)
    if not checked.ok:
        return AckResult(False, f"{checked.message}; nothing acknowledged")
    # A PIN set under the old 4-character rule still works, but says so.
    note = " (your PIN is shorter than 6 characters: have it set again)" if checked.short else ""

    url = f"{ctx.api_url.rstrip('/')}/ack/{quote(machine, safe='')}"
    body = json.dumps({"by": by, "comment": comment}).encode("utf-8")
    headers = {**api_headers(ctx), "Content-Type": "application/json"}
    try:
        resp = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return AckResult(False, f"control API {ctx.api_url}: {type(exc).__name__}: {exc}")
    if resp.status_code != 200:
        return AckResult(False, f"{machine}: HTTP {resp.status_code}: {api_error(resp)}")
    try:
        msg = str(resp.json().get("message", "acknowledged"))
    except (ValueError, AttributeError):
        msg = "acknowledged"
    return AckResult(True, f"{machine}: {msg}{note}")


# --- the page ------------------------------------------------------------------------------------


_STATE_CSS = """
<style>
.pdm-now { display: flex; flex-wrap: wrap; gap: 8px; margin: 4px 0 10px 0; }
.pdm-now div { border: 3px solid var(--c); border-radius: 8px; padding: 4px 10px;
  background: #17181b; font-size: 1.05rem; }
.pdm-now div.unack { background: var(--c); color: #fff; }
.pdm-now b.s { color: var(--c); font-weight: 800; margin-right: 6px; }
.pdm-now div.unack b.s { color: #fff; }
.pdm-problem { color: #ff8a80; font-weight: 700; font-size: 1.15rem; }
</style>
"""


def _state_now(ctx: DashboardContext, st: Any) -> None:
    """The alarm state of every machine now, and where it comes from (never an all-clear
    the page cannot know)."""

    read = read_alarm_status(ctx)
    now = time.time_ns()

    def chip(m: str, known: bool) -> str:
        s = read.machines[m]
        pl = ctx.pipelines.get(m)
        name = pl.machine.name if pl is not None and pl.machine.name else m
        text = f"{name}"
        if s.since_ns and s.state != "ok":
            text += f" · since {clock(s.since_ns, now)} ({duration((now - s.since_ns) / NS)})"
        if s.latched:
            text += (
                f" · ack {s.ack_by} {clock(s.ack_ns, now)}"
                if s.ack_by and s.ack_ns
                else " · UNACKNOWLEDGED"
            )
        cls = ' class="unack"' if known and s.unacknowledged else ""
        colour = STATE_COLOURS.get(s.state, STATE_COLOURS["unknown"])
        if not known and s.state == "ok":
            colour = STATE_COLOURS["unknown"]  # a saved OK proves nothing now: never green
        return (
            f'<div{cls} style="--c:{colour}" data-machine="{html.escape(m)}" '
            f'data-state="{html.escape(s.state)}"><b class="s">{html.escape(state_word(s.state))}'
            f"</b>{html.escape(text)}</div>"
        )

    order = sorted(read.machines, key=lambda m: -LEVELS.index(read.machines[m].state))
    if read.problem.startswith(UNREACHABLE):
        st.error(f"Alarm state: **{read.problem}**")
        if read.machines:
            st.warning(
                "Last state saved on this appliance (may be out of date while the service "
                "is down): " + "; ".join(f"{m} {state_word(read.machines[m].state)}" for m in order)
            )
            st.markdown(
                _STATE_CSS
                + '<div class="pdm-now">'
                + "".join(chip(m, False) for m in order)
                + "</div>",
                unsafe_allow_html=True,
            )
        return
    if read.source == "none":
        st.warning(f"Alarm state not known here: {read.problem}. The list below is from history.")
        return
    source = "the service" if read.source == "service" else "the alarm state store"
    without = sorted(set(ctx.pipelines) - set(read.machines))
    in_alarm = [m for m in order if read.machines[m].state != "ok"]
    ok = [m for m in order if read.machines[m].state == "ok"]
    st.markdown(
        _STATE_CSS + '<div class="pdm-now">' + "".join(chip(m, True) for m in order) + "</div>",
        unsafe_allow_html=True,
    )
    note = f"From {source}."
    if without:
        note += f" No alarm state yet: {', '.join(without)}."
    if ok and not in_alarm and not without:
        st.success(f"No alarm: {len(ok)} machine(s) OK. {note}")
    else:
        st.caption(note)


def _alarm_list(ctx: DashboardContext, st: Any) -> None:
    import pandas as pd

    try:
        with ctx.store() as store:
            records = store.log(None, limit=5000, kinds=("states", "events"))
    except PdmError as exc:
        st.error(f"history store {ctx.store_url}: {exc}")
        return
    rows = alarm_table(alarm_rows(records), ctx.pipelines)
    if not rows:
        st.caption("No alarm in history.")
        return
    df = pd.DataFrame(rows)
    waiting = df["needs_ack"].tolist()

    def highlight(row: Any) -> list[str]:
        style = "background-color: #7a0000; color: #ffffff; font-weight: 600"
        return [style if waiting[row.name] else ""] * len(row)

    st.dataframe(
        df.style.apply(highlight, axis=1),
        hide_index=True,
        width="stretch",
        column_order=[c for c in df.columns if c != "needs_ack"],
    )
    n = sum(waiting)
    st.caption(
        (f"{n} alarm(s) wait for an acknowledgement (highlighted, first). " if n else "")
        + "Times in the dashboard host's time zone; refreshed every 5 s."
    )


def render(ctx: DashboardContext) -> None:
    import streamlit as st

    st.header("Alarms")
    for p in ctx.problems:
        st.warning(p)

    @st.fragment(run_every=REFRESH)
    def live() -> None:
        _state_now(ctx, st)
        st.subheader("Alarm list")
        _alarm_list(ctx, st)

    live()

    st.subheader("Acknowledge")
    st.caption(
        "Viewing needs nothing; acknowledging needs an operator name and PIN "
        "(`pdm-edge operators add NAME`). "
        + (f"Acknowledged through the service at {ctx.api_url}." if ctx.api_url else "")
    )
    blocked = ""
    try:
        latched = latched_machines(ctx)
        if not ctx.api_url and latched:
            blocked = NO_API
            st.warning(blocked)
            latched = []
    except PdmError as exc:
        latched = []
        blocked = (
            f"Cannot acknowledge now: {str(exc).splitlines()[0]}. Acknowledge when the service "
            "answers again (or, with the service stopped, with `pdm-edge ack` on the appliance)."
        )
        st.warning(blocked)
    if not latched and not blocked:
        st.caption("Nothing to acknowledge: no latched alarm waits for an acknowledgement.")
    with st.form("ack_form", clear_on_submit=True):
        options = [m for m, _ in latched]
        states = dict(latched)

        def said(m: str) -> str:
            pl = ctx.pipelines.get(m)
            name = pl.machine.name if pl is not None and pl.machine.name else m
            return f"{name} ({m}): {states.get(m, '?').upper()}"

        machine = st.selectbox(
            "Machine",
            options,
            format_func=said,
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

    with st.expander("Event log: every state change, event, action and capture"):
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
