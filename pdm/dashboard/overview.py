"""Overview pages: a tile per machine, worst first, refreshed every 2 s (a fragment, no loop).

Two pages draw the same tiles:

* **Overview** (``/``), in the app with its navigation;
* **Wall screen** (``/overview``): kiosk — no sidebar, no header, the tiles fill the
  screen and their text scales with it (viewport units), sized to be read from 5 m on a
  55″ screen at 1920 × 1080: with up to six machines the state word's capitals subtend
  ≥ 15 arcmin and the name, "since", the badge and the stale note ≥ 10 (docs/dashboard.md;
  measured in ``tests/dashboard/test_dashboard_screens.py``).

A tile says the state in one big word (TRIP is the brightest red), since when and for how
long, whether the latch is acknowledged (``UNACKNOWLEDGED`` flashes; ``ack M. Keller 13:51``),
why in one line, and the velocity and score. Stale data keeps the last known state as a
coloured frame around a dark tile (old data proves nothing, so it is never filled green);
so does a state that is unknown because the service does not answer. Machines that never
had data are listed small at the bottom.
"""

from __future__ import annotations

import html
import math
import time

import streamlit as st

from pdm.dashboard import data
from pdm.dashboard.context import DashboardContext
from pdm.dashboard.labels import (
    clock,
    diagnosis_words,
    duration,
    fmt_mm_s,
    fmt_score,
    plain_reason,
    since_text,
)
from pdm.dashboard.status import read_alarm_status
from pdm.errors import PdmError

__all__ = ["grid_shape", "render", "render_wall", "tile_html", "tiles_html"]

REFRESH = "2s"
NS = 1_000_000_000

_CSS = """
<style>
.pdm-tiles { display: grid; gap: 14px; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr));
  font-size: 19px; }
.pdm-t { border-radius: 12px; padding: 0.7em 0.9em; color: var(--ink); background: var(--c);
  border: 0.35em solid var(--c); overflow: hidden; min-width: 0; box-sizing: border-box;
  display: flex; flex-direction: column; }
.pdm-t > div { flex-shrink: 0; }
.pdm-t.frame { background: #17181b; color: #f1f3f4; }
.pdm-t.frame .pdm-t-state { color: var(--c); }
.pdm-t-name { font-size: 1.25em; font-weight: 650; line-height: 1.15; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.pdm-t-state { font-size: 2.7em; font-weight: 850; letter-spacing: 0.03em; line-height: 1.05;
  margin: 0.08em 0 0.12em 0; display: flex; flex-wrap: wrap; align-items: center;
  column-gap: 0.22em; }
.pdm-t-since { font-size: 1.25em; font-weight: 600; line-height: 1.3; }
.pdm-t-reason { font-size: 0.95em; line-height: 1.25; margin-top: 0.25em; display: -webkit-box;
  -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden; }
.pdm-t-facts { font-size: 0.7em; line-height: 1.3; margin-top: auto; padding-top: 0.3em;
  opacity: 0.92; }
.pdm-t-old { font-size: 1.2em; font-weight: 700; line-height: 1.3; margin-top: 0.2em;
  color: #fdd663; }
.pdm-badge { display: inline-block; font-size: 0.42em; font-weight: 800; padding: 0.05em 0.35em;
  border-radius: 0.2em; background: var(--ink); color: var(--c); white-space: nowrap;
  line-height: 1.2; letter-spacing: 0.02em; }
.pdm-ack { font-size: 0.42em; font-weight: 700; white-space: nowrap; line-height: 1.2;
  letter-spacing: 0; }
.pdm-t.frame .pdm-badge { background: var(--c); color: #111; }
.pdm-t.unack .pdm-badge { animation: pdm-flash 1s steps(1, end) infinite; }
@keyframes pdm-flash { 50% { background: transparent; color: inherit; outline: 0.1em solid; } }
.pdm-wall-head b { font-weight: 500; }
.pdm-nodata { margin-top: 10px; font-size: 15px; color: #bdc1c6; }
.pdm-nodata b { display: inline-block; border: 1px solid #5f6368; border-radius: 6px;
  padding: 1px 8px; margin: 2px 6px 2px 0; }
.pdm-problem { color: #ff8a80; font-weight: 700; }
/* The wall screen: fills the viewport; text scales with the tile. */
.pdm-wall { height: 97vh; display: flex; flex-direction: column; gap: 0.8vh; }
.pdm-wall-head { font-size: 1.6vh; color: #bdc1c6; display: flex; justify-content: space-between; }
.pdm-wall-head .pdm-problem { font-size: 2.6vh; }
.pdm-wall .pdm-tiles { flex: 1 1 auto; min-height: 0; gap: 1vh;
  grid-template-columns: repeat(var(--cols), minmax(0, 1fr));
  grid-template-rows: repeat(var(--rows), minmax(0, 1fr));
  font-size: min(calc(95vw / var(--cols) / 21), calc(84vh / var(--rows) / 14)); }
.pdm-wall .pdm-t { border-radius: 0.3em; }
.pdm-wall .pdm-nodata { font-size: 1.7vh; margin: 0; }
</style>
"""

#: Hides Streamlit's chrome for the wall screen (injected by that page only).
_KIOSK_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stStatusWidget"] {
  display: none !important; }
[data-testid="stMainBlockContainer"], .block-container { padding: 1vh 1vw 0 1vw !important;
  max-width: 100% !important; }
[data-testid="stMain"] { overflow: hidden; }
[data-testid="stVerticalBlock"] { gap: 0 !important; }
</style>
"""


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) for ``n`` tiles on a 16:9 screen: near-square tiles, few empty cells."""
    if n <= 0:
        return 1, 1
    best: tuple[float, int, int] | None = None
    for cols in range(1, min(n, 8) + 1):
        rows = math.ceil(n / cols)
        # A tile's aspect (width/height) on a 16:9 screen; text reads best around 1.4–2.
        aspect = (16 / cols) / (9 / rows)
        cost = abs(math.log(aspect / 1.7)) + 0.25 * (cols * rows - n)
        if best is None or cost < best[0]:
            best = (cost, cols, rows)
    assert best is not None
    return best[1], best[2]


def _ack_mark(tile: data.Tile, now_ns: int) -> str:
    """Next to the state word of a latch: the flashing UNACKNOWLEDGED, or who acknowledged."""
    e = html.escape
    if not tile.latched or tile.unknown:
        return ""
    if tile.ack_by:
        when = f" {clock(tile.ack_ns, now_ns)}" if tile.ack_ns else ""
        return f'<b class="pdm-ack">ack {e(tile.ack_by)}{e(when)}</b>'
    return '<b class="pdm-badge">UNACKNOWLEDGED</b>'


def _facts(tile: data.Tile) -> str:
    bits = []
    if tile.velocity_rms_mm_s is not None:
        bits.append(f"velocity {fmt_mm_s(tile.velocity_rms_mm_s)} (zone {tile.iso_zone})")
    if tile.score is not None:
        bits.append(f"score {fmt_score(tile.score)}")
    if tile.diagnosis and tile.diagnosis != "unknown":
        bits.append(diagnosis_words(tile.diagnosis))
    return " · ".join(html.escape(b) for b in bits)


def tile_html(tile: data.Tile, now_s: float | None = None) -> str:
    """One machine's tile as HTML (every value escaped)."""
    e = html.escape
    now = time.time() if now_s is None else now_s
    now_ns = int(now * NS)
    classes = ["pdm-t", "filled" if tile.filled else "frame"]
    if tile.unacknowledged and not tile.unknown:
        classes.append("unack")
    ink = data.STATE_INK.get(tile.shown, "#ffffff") if tile.filled else "#f1f3f4"
    reason = plain_reason(tile.reason, short=True) if tile.reason else ""
    if tile.shown == "sensor_fault":
        reason = f"sensor fault: {', '.join(tile.sensor_faults)} — its readings are not trusted"
    elif tile.shown == "appliance_fault":
        reason = "appliance fault: the relay does not answer"
    elif not reason and tile.state == "ok":
        reason = "no alarm"
    body = [
        f'<div class="pdm-t-name">{e(tile.name)}</div>',
        f'<div class="pdm-t-state">{e(tile.label)}{_ack_mark(tile, now_ns)}</div>',
        f'<div class="pdm-t-since">{e(since_text(tile.since_ns, now_ns)) or "&nbsp;"}</div>',
    ]
    if tile.unknown:
        body.append(
            f'<div class="pdm-t-old">service unreachable · last saved here: '
            f"{e(tile.shown.replace('_', ' ').upper())}</div>"
        )
    elif tile.stale and tile.age_s is not None:
        body.append(
            f'<div class="pdm-t-old">NO DATA FOR {e(duration(tile.age_s))} · last known state</div>'
        )
    body.append(f'<div class="pdm-t-reason">{e(reason)}</div>')
    body.append(f'<div class="pdm-t-facts">{_facts(tile)}</div>')
    return (
        f'<div class="{" ".join(classes)}" data-machine="{e(tile.machine)}" '
        f'data-state="{e(tile.state)}" data-shown="{e(tile.shown)}" '
        f'data-stale="{str(tile.stale).lower()}" data-unknown="{str(bool(tile.unknown)).lower()}" '
        f'data-ack="{e(tile.ack_by or "")}" style="--c:{tile.colour};--ink:{ink}">'
        + "".join(body)
        + "</div>"
    )


def tiles_html(
    tiles: list[data.Tile], *, wall: bool = False, now_s: float | None = None, problem: str = ""
) -> str:
    """Every tile, worst first; machines that never had data as small names at the end."""
    e = html.escape
    live = [t for t in tiles if not t.never_had_data or t.state != "no data"]
    never = [t for t in tiles if t.never_had_data and t.state == "no data"]
    cols, rows = grid_shape(len(live))
    grid = "".join(tile_html(t, now_s) for t in live)
    strip = ""
    if never:
        strip = (
            '<div class="pdm-nodata">Never had data: '
            + "".join(f'<b data-machine="{e(t.machine)}">{e(t.name)}</b>' for t in never)
            + "</div>"
        )
    style = f"--cols:{cols};--rows:{rows}"
    inner = f'<div class="pdm-tiles" style="{style}">{grid}</div>{strip}'
    if not wall:
        head = f'<div class="pdm-problem">{e(problem)}</div>' if problem else ""
        return _CSS + head + inner
    now = time.time() if now_s is None else now_s
    stamp = time.strftime("%H:%M:%S %Z", time.localtime(now))
    left = f'<b class="pdm-problem">{e(problem)}</b>' if problem else "<b>pdm-edge</b>"
    head = (
        f'<div class="pdm-wall-head">{left}<b>{len(live)} machine(s) · {e(stamp)} · '
        "refreshed every 2 s</b></div>"
    )
    return _CSS + f'<div class="pdm-wall">{head}{inner}</div>'


def _tiles(ctx: DashboardContext) -> tuple[list[data.Tile], str]:
    alarms = read_alarm_status(ctx)
    with ctx.store() as store:
        found = data.machine_tiles(store, ctx.pipelines, alarms=alarms)
    problem = alarms.problem if ctx.api_url else ""
    return found, problem


def render(ctx: DashboardContext) -> None:
    st.title("Overview")
    st.caption("Worst first. The wall-screen version of this page (no sidebar) is at /overview.")

    @st.fragment(run_every=REFRESH)
    def tiles() -> None:
        try:
            found, problem = _tiles(ctx)
        except (PdmError, OSError) as exc:
            st.error(f"history store {ctx.store_url}: {exc}")
            return
        if not found:
            st.info("No machines yet: no pipelines and no history.")
            return
        st.markdown(tiles_html(found, problem=problem), unsafe_allow_html=True)

    tiles()


def render_wall(ctx: DashboardContext) -> None:
    """The kiosk page: only the tiles, filling the screen."""
    st.markdown(_KIOSK_CSS, unsafe_allow_html=True)

    @st.fragment(run_every=REFRESH)
    def wall() -> None:
        try:
            found, problem = _tiles(ctx)
        except (PdmError, OSError) as exc:
            st.markdown(
                f'<div class="pdm-problem" style="font-size:4vh">history store unreadable: '
                f"{html.escape(str(exc))}</div>",
                unsafe_allow_html=True,
            )
            return
        st.markdown(tiles_html(found, wall=True, problem=problem), unsafe_allow_html=True)

    wall()
