"""Fleet page: every appliance writing the store, and its machines, worst first.

Pointed at the central store many appliances write (``pdm-edge dashboard --store
influx1://central:8086/pdm``), it reads :meth:`~pdm.history.base.HistoryStore.fleet` — one
row per (appliance, machine), three queries whatever the size of the fleet — and shows one
table per appliance: the appliance with the worst machine first, its machines worst first
(trip, danger, alert, then the rest; stale data below fresh). Refreshed every 5 s (a
fragment). On an appliance's own SQLite file it shows that one appliance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from pdm.dashboard.context import DashboardContext
from pdm.dashboard.labels import duration
from pdm.errors import PdmError
from pdm.history.base import MachineStatus

__all__ = ["STALE_S", "ApplianceRows", "FleetRow", "fleet_rows", "render"]

REFRESH = "5s"
#: A machine whose newest row is older than this shows as stale (s).
STALE_S = 300.0
_RANK = {"trip": 4, "danger": 3, "alert": 2, "sensor_fault": 1, "appliance_fault": 1, "ok": 0}


@dataclass(frozen=True)
class FleetRow:
    """One machine of one appliance, as the table shows it (units in the names)."""

    appliance: str
    machine: str
    state: str  # the alarm state (newest machine-level transition), "no data" before any
    since_s: float | None  # how long it has been in that state, s
    score: float | None
    diagnosis: str
    velocity_rms_mm_s: float | None  # highest channel's, newest window
    age_s: float | None  # how old the newest row is, s
    stale: bool

    @property
    def rank(self) -> int:
        return _RANK.get(self.state, 0)


@dataclass(frozen=True)
class ApplianceRows:
    appliance: str
    rows: tuple[FleetRow, ...]

    @property
    def worst(self) -> str:
        return self.rows[0].state if self.rows else "no data"


def _velocity(status: MachineStatus) -> float | None:
    vals = [
        float(v)
        for ch in status.channels.values()
        if isinstance(v := ch.get("velocity_rms_mm_s"), int | float) and v == v
    ]
    return max(vals) if vals else None


def fleet_rows(statuses: Sequence[MachineStatus], now_ns: int | None = None) -> list[ApplianceRows]:
    """Appliances, worst machine first; within each, machines worst first (fresh before
    stale at the same state, then by score, highest first)."""
    now = time.time_ns() if now_ns is None else now_ns
    by_app: dict[str, list[FleetRow]] = {}
    for s in statuses:
        age = None if s.t_ns is None else max(0.0, (now - s.t_ns) / 1e9)
        state = s.alarm_state or ("ok" if s.t_ns is not None else "no data")
        by_app.setdefault(s.appliance or "(unnamed)", []).append(
            FleetRow(
                appliance=s.appliance or "(unnamed)",
                machine=s.machine,
                state=state,
                since_s=None if s.alarm_t_ns is None else max(0.0, (now - s.alarm_t_ns) / 1e9),
                score=s.score if s.score is None or s.score == s.score else None,
                diagnosis=s.diagnosis or "",
                velocity_rms_mm_s=_velocity(s),
                age_s=age,
                stale=age is None or age > STALE_S,
            )
        )

    def machine_key(r: FleetRow) -> tuple[int, bool, float, str]:
        return (-r.rank, r.stale, -(r.score or 0.0), r.machine)

    out = [ApplianceRows(a, tuple(sorted(rows, key=machine_key))) for a, rows in by_app.items()]
    out.sort(key=lambda a: (machine_key(a.rows[0])[:2], a.appliance))
    return out


def _ago(s: float | None) -> str:
    return duration(s)


def render(ctx: DashboardContext) -> None:
    st.title("Fleet")
    st.caption(f"history store {ctx.store_url}: every appliance that writes it, worst first")

    @st.fragment(run_every=REFRESH)
    def tables() -> None:
        try:
            with ctx.store(every_appliance=True) as store:
                apps = fleet_rows(store.fleet())
        except (PdmError, OSError) as exc:
            st.error(f"history store {ctx.store_url}: {exc}")
            return
        if not apps:
            st.info("No appliance has written this store yet.")
            return
        counts = {
            s: sum(r.state == s for a in apps for r in a.rows) for s in ("trip", "danger", "alert")
        }
        st.markdown(
            f"**{len(apps)}** appliance(s), **{sum(len(a.rows) for a in apps)}** machine(s): "
            + ", ".join(f"{n} in {s}" for s, n in counts.items())
        )
        for a in apps:
            st.subheader(f"{a.appliance} — worst: {a.worst}")
            st.dataframe(
                [
                    {
                        "machine": r.machine,
                        "state": r.state.upper() + (" (stale)" if r.stale else ""),
                        "for": _ago(r.since_s),
                        "score": None if r.score is None else round(r.score, 3),
                        "velocity, mm/s": None
                        if r.velocity_rms_mm_s is None
                        else round(r.velocity_rms_mm_s, 2),
                        "diagnosis": r.diagnosis.replace("_", " "),
                        "last data": _ago(r.age_s) + (" ago" if r.age_s is not None else ""),
                    }
                    for r in a.rows
                ],
                hide_index=True,
                width="stretch",
            )

    tables()
