"""Altair charts shared by the machine and commissioning pages.

* :func:`spectrum_chart` — a spectrum an analyst can diagnose from: a chosen frequency range
  (the zoom), linear or log amplitude, a Hz or orders axis, cursors (harmonics and
  sidebands, one colour per family) with labels that never overlap, and a read-out of the
  line under the pointer.
* :func:`score_chart` — anomaly score per window on a log axis with decade ticks, and the
  thresholds as lines in the state colours (alert amber, danger orange, trip red).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import numpy as np
import numpy.typing as npt
import pandas as pd

from pdm.dashboard import data
from pdm.dashboard.cursors import FAMILIES, FAMILY_COLOURS, Cursor, label_rows
from pdm.dashboard.labels import fmt_num

__all__ = ["decade_ticks", "score_chart", "spectrum_chart", "spectrum_frame"]

Chart = Any  # alt.Chart / LayerChart (``properties`` widens the type)
F64 = npt.NDArray[np.float64]
_LABEL_ROW_PX = 15
_LABEL_TOP_PX = 2


def decade_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 × powers of ten within [lo, hi] (at most ~12): a log axis readers can use."""
    if not (lo > 0 and hi > lo):
        return []
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                out.append(v)
    if len(out) > 12:
        out = [v for v in out if f"{v:.0e}".startswith("1")]
    return out


def _decimate(f: F64, a: F64, points: int) -> tuple[F64, F64]:
    """At most ``points`` points, keeping each group's largest value (no line is lost)."""
    if f.size <= points:
        return f, a
    step = math.ceil(f.size / points)
    n = f.size // step * step
    idx = np.argmax(a[:n].reshape(-1, step), axis=1) + np.arange(0, n, step)
    return f[idx], a[idx]


def spectrum_frame(
    freqs_hz: F64,
    amps: F64,
    lo_hz: float,
    hi_hz: float,
    *,
    shaft_hz: float | None = None,
    unit: str = "g",
    points: int = 2500,
) -> list[dict[str, Any]]:
    """Chart rows in [lo, hi] (peak-hold decimated to ``points``): ``f_hz``, ``order``,
    ``amp`` and the read-out text ``88.4 Hz (3.58×) · 0.095 g``."""
    f = np.asarray(freqs_hz, dtype=np.float64)
    a = np.asarray(amps, dtype=np.float64)
    keep = (f >= lo_hz) & (f <= hi_hz) & np.isfinite(a)
    f, a = _decimate(f[keep], a[keep], points)
    rows = []
    for fi, ai in zip(f.tolist(), a.tolist(), strict=True):
        order = fi / shaft_hz if shaft_hz else None
        where = f"{fmt_num(fi, 4)} Hz" + (f" ({order:.2f}×)" if order is not None else "")
        rows.append(
            {"f_hz": fi, "order": order, "amp": ai, "readout": f"{where} · {fmt_num(ai)} {unit}"}
        )
    return rows


def spectrum_chart(
    freqs_hz: F64,
    amps: F64,
    *,
    title: str,
    lo_hz: float,
    hi_hz: float,
    marks: Sequence[Cursor] = (),
    shaft_hz: float | None = None,
    orders: bool = False,
    log_y: bool = False,
    unit: str = "g",
    height: int = 300,
) -> Chart:
    """One spectrum between ``lo_hz`` and ``hi_hz`` with its cursors (see the module doc)."""

    orders = orders and bool(shaft_hz)
    rows = spectrum_frame(freqs_hz, amps, lo_hz, hi_hz, shaft_hz=shaft_hz, unit=unit)
    df = pd.DataFrame(rows, columns=["f_hz", "order", "amp", "readout"])
    xfield = "order" if orders else "f_hz"
    scale_x = shaft_hz if orders and shaft_hz else 1.0
    x_title = (
        f"order (× shaft speed, 1× = {fmt_num(shaft_hz or 0, 4)} Hz)" if orders else "frequency, Hz"
    )
    x_dom = [lo_hz / scale_x, hi_hz / scale_x]
    x = alt.X(f"{xfield}:Q", title=x_title, scale=alt.Scale(domain=x_dom, nice=False, zero=False))
    pos = df["amp"][df["amp"] > 0]
    top = float(pos.max()) if len(pos) else 1.0
    if log_y:
        floor = max(float(np.percentile(pos, 1)) if len(pos) else top / 1e4, top / 1e5)
        df["amp_shown"] = df["amp"].clip(lower=floor)
        y_scale = alt.Scale(type="log", domain=[floor, top * 1.6], nice=False)
        y_axis = alt.Axis(values=decade_ticks(floor, top * 1.6), format="~g")
    else:
        df["amp_shown"] = df["amp"]
        # Room above the highest line for three rows of cursor labels.
        y_scale = alt.Scale(domain=[0, top * 1.3], nice=False)
        y_axis = alt.Axis(format="~g", tickCount=6)
    y = alt.Y("amp_shown:Q", title=f"amplitude, {unit} (peak)", scale=y_scale, axis=y_axis)
    line = alt.Chart(df).mark_line(color="#e8eaed", strokeWidth=1.1, clip=True).encode(x=x, y=y)
    hover = alt.selection_point(
        name="readout", nearest=True, on="pointerover", fields=[xfield], empty=False
    )
    points = (
        alt.Chart(df)
        .mark_point(opacity=0, size=60)
        .encode(
            x=x,
            y=y,
            tooltip=[
                alt.Tooltip("f_hz:Q", title="frequency, Hz", format=".2f"),
                alt.Tooltip("order:Q", title="order", format=".3f"),
                alt.Tooltip("amp:Q", title=f"amplitude, {unit}", format=".4~g"),
            ],
        )
        .add_params(hover)
    )
    cursor_rule = (
        alt.Chart(df).mark_rule(color="#fdd663", strokeWidth=1).encode(x=x).transform_filter(hover)
    )
    cursor_text = (
        alt.Chart(df)
        .mark_text(align="left", dx=6, dy=-10, color="#fdd663", fontSize=12, fontWeight="bold")
        .encode(x=x, y=y, text="readout:N")
        .transform_filter(hover)
    )
    layers: list[Any] = []
    shown = [m for m in marks if lo_hz <= m.freq_hz <= hi_hz]
    if shown:
        fams = [k for k in FAMILIES if any(m.family == k for m in shown)]
        fam_scale = alt.Scale(
            domain=[FAMILIES[k] for k in fams], range=[FAMILY_COLOURS[k] for k in fams]
        )
        colour = alt.Color(
            "family_name:N",
            scale=fam_scale,
            legend=alt.Legend(title=None, orient="top", direction="horizontal"),
        )
        rows_px = label_rows(shown, lo_hz, hi_hz)
        mk = pd.DataFrame(
            [
                {
                    xfield: m.freq_hz / scale_x,
                    "f_hz": m.freq_hz,
                    "family_name": FAMILIES[m.family],
                    "kind": m.kind,
                    "name": m.name,
                    "label": m.label,
                    "ypx": _LABEL_TOP_PX + r * _LABEL_ROW_PX,
                    "row": r,
                }
                for m, r in zip(shown, rows_px, strict=True)
            ]
        )
        dash = alt.StrokeDash(
            "kind:N",
            scale=alt.Scale(
                domain=["fundamental", "harmonic", "sideband"], range=[[1, 0], [6, 3], [2, 3]]
            ),
            legend=None,
        )
        layers.append(
            alt.Chart(mk)
            .mark_rule(strokeWidth=1.4, opacity=0.85)
            .encode(
                x=x,
                color=colour,
                strokeDash=dash,
                tooltip=[
                    alt.Tooltip("name:N", title="line"),
                    alt.Tooltip("f_hz:Q", title="expected, Hz", format=".2f"),
                ],
            )
        )
        labelled = mk[mk["row"] >= 0]
        if len(labelled):
            layers.append(
                alt.Chart(labelled)
                .mark_text(align="center", baseline="top", fontSize=12, fontWeight="bold")
                .encode(
                    x=x,
                    y=alt.Y("ypx:Q", scale=None),
                    text="label:N",
                    color=alt.Color("family_name:N", scale=fam_scale, legend=None),
                )
            )
    return alt.layer(line, *layers, points, cursor_rule, cursor_text).properties(
        height=height, title=alt.TitleParams(title, anchor="start", fontSize=14)
    )


def score_chart(
    t: Sequence[Any],
    score: Sequence[float] | F64,
    thresholds: Sequence[tuple[str, float | None]],
    *,
    x_title: str,
    x_type: str = "Q",
    height: int = 280,
    extra_tooltip: dict[str, Sequence[Any]] | None = None,
) -> Chart:
    """Anomaly score on a log axis (1-2-5 ticks), thresholds as labelled lines in the state
    colours; a score at or below 0 sits on the axis floor."""

    s = np.asarray(score, dtype=np.float64)
    finite = s[np.isfinite(s) & (s > 0)]
    levels = [(n, v) for n, v in thresholds if v is not None and math.isfinite(v) and v > 0]
    top = max([float(finite.max()) if finite.size else 1.0, *(v for _, v in levels)])
    bottom = min([float(finite.min()) if finite.size else 0.1, *(v for _, v in levels)])
    bottom = max(bottom / 1.5, top / 1e6)
    df = pd.DataFrame(
        {
            "x": list(t),
            "score": np.where(np.isfinite(s), np.maximum(s, bottom), np.nan),
            "score_text": [fmt_num(v) for v in s.tolist()],
            **{k: list(v) for k, v in (extra_tooltip or {}).items()},
        }
    )
    y_scale = alt.Scale(type="log", domain=[bottom, top * 1.5], nice=False)
    y = alt.Y(
        "score:Q",
        title="anomaly score (1 = alert)",
        scale=y_scale,
        axis=alt.Axis(values=decade_ticks(bottom, top * 1.5), format="~g"),
    )
    x_axis = (
        alt.Axis(format="%H:%M:%S", labelOverlap=True)
        if x_type == "T"
        else alt.Axis(format="~g", labelOverlap=True)
    )
    line = (
        alt.Chart(df)
        .mark_line(color="#8ab4f8", point=alt.OverlayMarkDef(size=14, color="#8ab4f8"))
        .encode(
            x=alt.X(f"x:{x_type}", title=x_title, axis=x_axis),
            y=y,
            tooltip=[alt.Tooltip("score_text:N", title="score"), *(extra_tooltip or {})],
        )
    )
    if not levels:
        return line.properties(height=height)
    colours = {"alert": "alert", "danger": "danger", "trip": "trip"}
    # Labels alternate right and left (by value), so that two close lines keep both readable.
    rules = pd.DataFrame(
        [
            {
                "level": n,
                "y": v,
                "text": f"{n} {fmt_num(v)}",
                "colour": data.STATE_COLOURS[colours.get(n.split()[0], "alert")],
                "right": i % 2 == 0,
            }
            for i, (n, v) in enumerate(sorted(levels, key=lambda nv: nv[1]))
        ]
    )
    scale = alt.Scale(domain=rules["level"].tolist(), range=rules["colour"].tolist())
    rule = (
        alt.Chart(rules)
        .mark_rule(strokeDash=[7, 4], size=2)
        .encode(y=alt.Y("y:Q", scale=y_scale), color=alt.Color("level:N", scale=scale, legend=None))
    )
    texts = [
        alt.Chart(rules[rules["right"] == side])
        .mark_text(
            align="right" if side else "left",
            baseline="bottom",
            dx=-4 if side else 4,
            dy=-2,
            fontSize=12,
            fontWeight="bold",
        )
        .encode(
            y=alt.Y("y:Q", scale=y_scale),
            x=alt.value({"expr": "width"}) if side else alt.value(0),
            text="text:N",
            color=alt.Color("level:N", scale=scale, legend=None),
        )
        for side in (True, False)
        if bool((rules["right"] == side).any())
    ]
    return alt.layer(line, rule, *texts).properties(height=height)
