"""The commissioning page's charts: the score (or velocity) per window with the thresholds
being tried, and the what-if grid's false alarms and delays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from pdm.dashboard.charts import score_chart as chart
from pdm.dashboard.data import STATE_COLOURS
from pdm.dashboard.labels import fmt_num
from pdm.dashboard.whatif import CommissioningResult, Setting, configured_setting

__all__ = ["grid_charts", "score_chart", "velocity_chart"]


def score_chart(res: CommissioningResult, setting: Setting | None = None) -> Any:
    """Score per window (s from the start) with the thresholds of ``setting`` (default:
    the configured ones) — the lines move with the what-if controls."""

    s = setting or configured_setting(res)
    levels = [("alert", s.alert), ("danger", s.danger), ("trip", s.trip)]
    if s.quantity != "score":
        levels = []
    return chart(
        [res.seconds(int(t)) for t in res.t_ns],
        res.score,
        levels,
        x_title="time from the start of the recording, s",
        extra_tooltip={"window": res.window.tolist(), "state": list(res.state)},
    )


def velocity_chart(res: CommissioningResult, setting: Setting) -> Any:
    """The highest channel's velocity per window with the what-if's limits (velocity mode)."""

    rows = []
    for t, w in zip(res.t_ns.tolist(), res.window.tolist(), strict=True):
        chans = res.features.get(int(w), {})
        vals = [c.get("velocity_rms_mm_s", math.nan) for c in chans.values()]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            rows.append({"t": res.seconds(int(t)), "v": max(vals), "window": w})
    df = pd.DataFrame(rows, columns=["t", "v", "window"])
    line = (
        alt.Chart(df)
        .mark_line(color="#8ab4f8", point=alt.OverlayMarkDef(size=14))
        .encode(
            x=alt.X("t:Q", title="time from the start of the recording, s"),
            y=alt.Y("v:Q", title="velocity RMS, mm/s (highest channel)"),
            tooltip=["window", alt.Tooltip("v:Q", format=".2f", title="mm/s")],
        )
    )
    levels = [
        (n, v)
        for n, v in (("alert", setting.alert), ("danger", setting.danger), ("trip", setting.trip))
        if v is not None
    ]
    if not levels:
        return line.properties(height=260)

    ld = pd.DataFrame([{"level": n, "y": v, "text": f"{n} {fmt_num(v)} mm/s"} for n, v in levels])
    scale = alt.Scale(domain=[n for n, _ in levels], range=[STATE_COLOURS[n] for n, _ in levels])
    rule = (
        alt.Chart(ld)
        .mark_rule(strokeDash=[7, 4], size=2)
        .encode(y="y:Q", color=alt.Color("level:N", scale=scale, legend=None))
    )
    text = (
        alt.Chart(ld)
        .mark_text(align="right", baseline="bottom", dx=-4, dy=-2, fontWeight="bold")
        .encode(
            y="y:Q",
            x=alt.value({"expr": "width"}),
            text="text:N",
            color=alt.Color("level:N", scale=scale, legend=None),
        )
    )
    return alt.layer(line, rule, text).properties(height=260)


def grid_charts(rows: Sequence[dict[str, Any]], quantity: str) -> Any:
    """False alarms and first-alarm delay against the alert threshold, a line per on-delay."""

    df = pd.DataFrame(
        [
            {
                "alert": r["alert"],
                "on-delay": f"{r['on']} of {r['of']}",
                "false alarms": r["false_alarms"],
                "delay, s": r["delay_s"],
            }
            for r in rows
        ]
    )
    x = alt.X(
        "alert:Q",
        title="alert threshold, " + ("score" if quantity == "score" else "mm/s"),
        scale=alt.Scale(type="log", nice=False),
        axis=alt.Axis(values=sorted({r["alert"] for r in rows}), format="~g"),
    )
    order = sorted({(r["on"], r["of"]) for r in rows})
    names = [f"{on} of {of}" for on, of in order]
    # Not the alarm colours: these are settings, not states.
    palette = ["#8ab4f8", "#fdd663", "#81c995", "#c58af9", "#78d9ec", "#fcad70"]
    colour = alt.Color(
        "on-delay:N",
        title="on-delay",
        sort=names,
        scale=alt.Scale(domain=names, range=palette[: len(names)]),
        legend=alt.Legend(orient="right"),
    )
    fa = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y(
                "false alarms:Q",
                title="false alarms",
                axis=alt.Axis(tickMinStep=1, format="d"),
                scale=alt.Scale(domainMin=0),
            ),
            color=colour,
            tooltip=["alert", "on-delay", "false alarms"],
        )
        .properties(height=260, title="False alarms (healthy, and faulty before the onset)")
    )
    dl = (
        alt.Chart(df.dropna(subset=["delay, s"]))
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("delay, s:Q", title="delay, s", scale=alt.Scale(domainMin=0)),
            color=colour,
            tooltip=["alert", "on-delay", alt.Tooltip("delay, s:Q", format=".2f")],
        )
        .properties(height=260, title="First alarm after the fault's onset")
    )
    return fa, dl
