"""Overview page: one large tile per machine, refreshed every 2 s (a fragment, no loop)."""

from __future__ import annotations

import html

import streamlit as st

from pdm.dashboard import data
from pdm.dashboard.context import DashboardContext
from pdm.errors import PdmError

__all__ = ["render", "tile_html"]

REFRESH = "2s"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _age(age_s: float | None) -> str:
    return "no data" if age_s is None else data.duration_text(age_s) + " ago"


def tile_html(tile: data.Tile) -> str:
    """The tile as HTML (every value escaped)."""
    e = html.escape
    score = _num(tile.score, ".3g")
    danger = _num(tile.danger, ".3g")
    lines = [
        f"score <b>{score}</b> (alert {tile.alert:g}, danger {danger})",
        f"ISO zone <b>{e(tile.iso_zone)}</b>, velocity "
        f"<b>{_num(tile.velocity_rms_mm_s, '.2f')}</b> mm/s (max of channels)",
    ]
    for ch in tile.channels:
        lines.append(
            f"{e(ch.channel)}: zone {e(ch.iso_zone)}, {_num(ch.velocity_rms_mm_s, '.2f')} mm/s"
        )
    if tile.diagnosis:
        lines.append(f"diagnosis <b>{e(tile.diagnosis.replace('_', ' '))}</b>")
    if tile.sensor_faults:
        lines.append(f"sensor fault: <b>{e(', '.join(tile.sensor_faults))}</b>")
    if tile.appliance_fault:
        lines.append("<b>appliance fault</b> (relay)")
    stamp = data.iso(tile.t_ns) if tile.t_ns is not None else "never"
    lines.append(f"last data {e(stamp)} ({e(_age(tile.age_s))})")
    if tile.stale:
        lines.append(f"<b>STALE</b>: no data for more than {tile.stale_after_s:g} s")
    body = "<br>".join(lines)
    return (
        f'<div class="pdm-tile" data-machine="{e(tile.machine)}" data-state="{e(tile.state)}" '
        f'data-stale="{str(tile.stale).lower()}" style="background:{tile.colour}">'
        f'<div class="pdm-tile-name">{e(tile.name)}</div>'
        f'<div class="pdm-tile-state">{e(tile.label)}</div>'
        f'<div class="pdm-tile-body">{body}</div></div>'
    )


def render(ctx: DashboardContext) -> None:
    st.title("Overview")

    @st.fragment(run_every=REFRESH)
    def tiles() -> None:
        try:
            with ctx.store() as store:
                found = data.machine_tiles(store, ctx.pipelines)
        except (PdmError, OSError) as exc:
            st.error(f"history store {ctx.store_url}: {exc}")
            return
        if not found:
            st.info("No machines yet: no pipelines and no history.")
            return
        cols = st.columns(min(3, len(found)))
        for i, tile in enumerate(found):
            with cols[i % len(cols)]:
                st.markdown(tile_html(tile), unsafe_allow_html=True)

    tiles()
