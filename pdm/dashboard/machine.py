"""Machine page: trends (score, velocity with ISO zones, band RMS, bearing frequencies),
the newest stored spectra with cursors an analyst reads them by (:mod:`pdm.dashboard.cursors`:
zoom, log amplitude, orders axis, 1–5× harmonics of the defect frequencies and of the
shaft, sidebands, a peak read-out), a waterfall, and alarm captures."""

from __future__ import annotations

import json
import math
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from pdm.dashboard import charts, cursors, data
from pdm.dashboard.analysis import capture_spectra
from pdm.dashboard.context import DashboardContext
from pdm.dashboard.labels import channel_label, feature_label, fmt_num, plain_reason
from pdm.errors import PdmError
from pdm.history.base import HistoryStore
from pdm.history.records import Capture

__all__ = ["render"]

HEIGHT = 260
Chart = Any  # alt.Chart / LayerChart (``properties`` widens the type)


def _time_x() -> alt.X:
    return alt.X("t:T", title="time (UTC)", axis=alt.Axis(format="%Y-%m-%d %H:%M:%S"))


def score_chart(
    rows: list[dict[str, Any]], alert: float, danger: float | None, trip: float | None
) -> Chart:
    """The score trend (max per bucket) with the alert, danger and trip lines."""
    return charts.score_chart(
        [r["t"] for r in rows],
        [r["max"] for r in rows],
        [("alert", alert), ("danger", danger), ("trip", trip)],
        x_title="time (UTC)",
        x_type="T",
        height=HEIGHT,
    )


def velocity_chart(rows: list[dict[str, Any]], bands: list[dict[str, Any]]) -> Chart:
    df = pd.DataFrame(rows)
    bg = (
        alt.Chart(pd.DataFrame(bands))
        .mark_rect(opacity=0.42)
        .encode(
            y=alt.Y("lo:Q", title="velocity RMS, mm/s"),
            y2="hi:Q",
            color=alt.Color(
                "zone:N",
                scale=alt.Scale(
                    domain=[b["zone"] for b in bands], range=[b["colour"] for b in bands]
                ),
                title="ISO 10816-3 zone",
            ),
        )
    )
    line = (
        alt.Chart(df)
        .mark_line(color="#f1f3f4", strokeWidth=1.6)
        .encode(
            _time_x(),
            alt.Y("max:Q"),
            strokeDash=alt.StrokeDash(
                "series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=400)
            ),
            tooltip=[
                "t:T",
                alt.Tooltip("series:N", title="channel"),
                alt.Tooltip("max:Q", title="max, mm/s", format=".2f"),
                alt.Tooltip("mean:Q", title="mean, mm/s", format=".2f"),
            ],
        )
    )
    return alt.layer(bg, line).properties(height=HEIGHT)


def lines_chart(rows: list[dict[str, Any]], title: str) -> Chart:
    """Feature trends, one line per ``series`` (a plain-language name per row)."""
    df = pd.DataFrame(rows)
    return (
        alt.Chart(df)
        .mark_line()
        .encode(
            _time_x(),
            alt.Y("mean:Q", title=title),
            color=alt.Color(
                "series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=400)
            ),
            tooltip=[
                "t:T",
                "series:N",
                alt.Tooltip("mean:Q", format=".4~g"),
                alt.Tooltip("max:Q", format=".4~g"),
            ],
        )
        .properties(height=HEIGHT)
    )


def waterfall_chart(rows: list[dict[str, Any]]) -> Chart:
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_rect()
        .encode(
            alt.X("f_lo:Q", title="frequency, Hz"),
            x2="f_hi:Q",
            y=alt.Y(
                "t_label:O", title="time (UTC)", sort="descending", axis=alt.Axis(labelLimit=220)
            ),
            color=alt.Color("db:Q", title="dB re 1 g", scale=alt.Scale(scheme="inferno")),
            tooltip=[
                alt.Tooltip("t:N", title="time"),
                alt.Tooltip("freq_hz:Q", title="frequency, Hz", format=".0f"),
                alt.Tooltip("amplitude:Q", title="amplitude, g", format=".4~g"),
            ],
        )
        .properties(height=HEIGHT)
    )


def waveform_chart(rows: list[dict[str, Any]], channel: str, label: str = "") -> Chart:
    label = label or channel
    df = pd.DataFrame([r for r in rows if r["channel"] == channel])
    return (
        alt.Chart(df)
        .mark_area(color="#8ab4f8", opacity=0.9)
        .encode(
            alt.X("t_s:Q", title="time in window, s"),
            alt.Y("min_g:Q", title=f"{label}, g"),
            y2="max_g:Q",
        )
        .properties(height=180)
    )


def _chart(chart: Any) -> None:
    st.altair_chart(chart, width="stretch")


def _named(rows: list[dict[str, Any]], pipeline: Any, with_feature: bool) -> list[dict[str, Any]]:
    """Rows with a ``series`` a person reads: ``Motor DE · horizontal`` (and the feature)."""
    for r in rows:
        where = channel_label(pipeline, r["channel"])
        r["series"] = f"{feature_label(r['field'], pipeline)} · {where}" if with_feature else where
    return rows


def _trends(
    store: HistoryStore, ctx: DashboardContext, machine: str, start: int, end: int, names: list[str]
) -> None:
    pipeline = ctx.pipelines.get(machine)
    log = store.log(machine, kinds=("captures",), limit=20)
    alert, danger, trip = data.score_thresholds(pipeline, log)

    st.subheader("Anomaly score")
    rows = data.trend_rows(store, machine, "score", start, end)
    if rows:
        _chart(score_chart(rows, alert, danger, trip))
    else:
        st.caption("No scores in this range (no model, or still learning).")

    st.subheader("Velocity RMS and ISO 10816-3 zones")
    rows = data.trend_rows(store, machine, "velocity_rms_mm_s", start, end)
    if rows:
        top = max((r["max"] for r in rows), default=0.0)
        _chart(velocity_chart(_named(rows, pipeline, False), data.zone_bands(pipeline, top * 1.1)))
    else:
        st.caption("No velocity RMS in this range.")

    band_names = [n for n in names if n.startswith("band_")]
    st.subheader("Band RMS")
    rows = [r for n in band_names for r in data.trend_rows(store, machine, n, start, end)]
    if rows:
        _chart(lines_chart(_named(rows, pipeline, True), "band RMS, g"))
    else:
        st.caption("No band RMS features in this range.")

    st.subheader("Bearing defect frequencies (envelope amplitude)")
    rows = [
        r
        for n in data.bearing_trend_names(names)
        for r in data.trend_rows(store, machine, n, start, end)
    ]
    if rows:
        _chart(lines_chart(_named(rows, pipeline, True), "envelope amplitude, g"))
    else:
        st.caption("No bearing-frequency features (no bearing configured for this machine).")


def spectrum_controls(key: str, families: list[str], default: list[str]) -> dict[str, Any]:
    """The cursor and axis controls of a pair of spectra (one row of widgets)."""
    c1, c2 = st.columns([4, 1])
    chosen = c1.multiselect(
        "Cursors (1×–N× harmonics)",
        families,
        default=[f for f in default if f in families],
        format_func=lambda k: cursors.FAMILIES[k],
        key=f"{key}_fam",
    )
    harmonics = c2.number_input("Harmonics N", 1, 10, 5, key=f"{key}_harm")
    c3, c4, c5 = st.columns(3)
    sidebands = c3.checkbox(
        "Sidebands",
        value=False,
        key=f"{key}_sb",
        help="BPFI ± 1× shaft (the defect turns through the load zone), BSF ± FTF (the cage "
        "carries the ball); an outer race is stationary: no sidebands",
    )
    orders = c4.radio("Axis", ["Hz", "orders"], horizontal=True, key=f"{key}_axis") == "orders"
    log_y = c5.checkbox("Log amplitude", value=False, key=f"{key}_log")
    return {
        "families": chosen,
        "harmonics": int(harmonics),
        "sidebands": sidebands,
        "orders": orders,
        "log_y": log_y,
    }


def spectrum_panel(
    freqs: Any,
    amps: Any,
    *,
    kind: str,
    title: str,
    caption: str,
    key: str,
    shaft_hz: float | None,
    defects: dict[str, float],
    opts: dict[str, Any],
    tolerance: float = 0.03,
    unit: str = "g",
) -> None:
    """One spectrum with its zoom slider, cursors and the marked lines' amplitudes."""

    f = np.asarray(freqs, dtype=np.float64)
    a = np.asarray(amps, dtype=np.float64)
    if f.size < 2:
        st.caption(f"No {title.lower()}.")
        return
    top = float(f[-1])
    lo, hi = cursors.default_range(kind, shaft_hz, defects, top)
    step = max(float(f[1] - f[0]), 1.0)
    rng = st.slider(
        f"{title}: frequency range, Hz (zoom; the full range is 0–{fmt_num(top, 4)} Hz)",
        0.0,
        float(math.ceil(top)),
        (float(lo), float(math.ceil(hi))),
        step=float(round(step, 3)),
        key=f"{key}_range",
    )
    lo, hi = float(rng[0]), float(max(rng[1], rng[0] + step))
    marks = cursors.cursors(
        shaft_hz,
        defects,
        opts["families"],
        harmonics=opts["harmonics"],
        sidebands=opts["sidebands"],
        max_hz=top,
    )
    st.caption(caption)
    _chart(
        charts.spectrum_chart(
            f,
            a,
            title=title,
            lo_hz=lo,
            hi_hz=hi,
            marks=marks,
            shaft_hz=shaft_hz,
            orders=opts["orders"],
            log_y=opts["log_y"],
            unit=unit,
        )
    )
    shown = [m for m in marks if lo <= m.freq_hz <= hi]
    table = cursors.peak_readout(f, a, shown, tolerance=tolerance)
    if table:
        with st.expander(f"{title}: amplitudes at the marked lines ({len(table)})"):
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "line": r.line,
                            "expected, Hz": fmt_num(r.expected_hz, 4),
                            "found, Hz": fmt_num(r.found_hz, 4),
                            "order": fmt_num(r.found_hz / shaft_hz, 3) if shaft_hz else "–",
                            f"amplitude, {unit}": fmt_num(r.amplitude),
                            "above local floor, dB": fmt_num(r.above_floor_db, 2),
                        }
                        for r in table
                    ]
                ),
                hide_index=True,
                width="stretch",
            )


def spectra_block(
    key: str,
    pipeline: Any,
    channel: str,
    panels: list[tuple[Any, Any, str, str, str]],
    *,
    rpm: float | None = None,
    diagnosis: str = "",
) -> None:
    """One channel's spectra with shared cursor controls: ``panels`` are (frequencies,
    amplitudes, ``envelope``/``acceleration``, title, caption)."""
    shaft_hz, defects = cursors.defect_frequencies(pipeline, channel, rpm=rpm)
    fams = [k for k in cursors.FAMILIES if (k == "shaft" and shaft_hz) or k in defects]
    opts = spectrum_controls(key, fams, cursors.default_families(defects, diagnosis))
    tol = pipeline.envelope.slip_tolerance if pipeline is not None else 0.03
    for freqs, amps, kind, title, caption in panels:
        spectrum_panel(
            freqs,
            amps,
            kind=kind,
            title=title,
            caption=caption,
            key=f"{key}_{kind}",
            shaft_hz=shaft_hz,
            defects=defects,
            opts=opts,
            tolerance=tol,
        )


def _spectra(store: HistoryStore, ctx: DashboardContext, machine: str) -> None:
    pipeline = ctx.pipelines.get(machine)
    latest = store.latest_spectra(machine)
    st.subheader("Spectra (newest stored)")
    if not latest:
        st.caption("No spectra stored yet.")
        return
    channels = sorted({s.channel for s in latest})
    c_ch, _ = st.columns([2, 3])
    channel = c_ch.selectbox(
        "Channel",
        channels,
        format_func=lambda c: channel_label(pipeline, c),
        key=f"pdm_spec_ch_{machine}",
    )
    statuses = store.latest_status(machine)
    diagnosis = (statuses[0].diagnosis or "") if statuses else ""
    rpm = statuses[0].channels.get(channel, {}).get("shaft_speed_rpm") if statuses else None
    where = channel_label(pipeline, channel)
    panels = []
    for typ, kind, title in (
        ("envelope", "envelope", "Envelope spectrum"),
        ("power", "acceleration", "Acceleration spectrum"),
    ):
        sp = next((s for s in latest if s.channel == channel and s.type == typ), None)
        if sp is None:
            st.caption(f"No {title.lower()} stored.")
            continue
        caption = (
            f"{where}, window at {data.iso(sp.t_ns)} (the newest stored: history keeps one "
            f"spectrum a minute), {fmt_num(sp.df_hz, 3)} Hz per line (peak-hold)"
        )
        panels.append((sp.freqs_hz, sp.values, kind, title, caption))
    spectra_block(f"pdm_spec_{machine}", pipeline, channel, panels, rpm=rpm, diagnosis=diagnosis)
    st.subheader("Waterfall (recent acceleration spectra)")
    recent = data.recent_spectra(store, ctx.store_url, machine, channel, "power")
    if len(recent) < 2:
        st.caption(f"{len(recent)} spectrum stored; the waterfall grows as more are recorded.")
    if recent:
        _chart(waterfall_chart(data.waterfall_rows(recent)))


def _captures(store: HistoryStore, ctx: DashboardContext, machine: str) -> None:
    st.subheader("Alarm captures (raw windows kept at each transition)")
    caps = [c for c in store.log(machine, kinds=("captures",), limit=50) if isinstance(c, Capture)]
    if not caps:
        st.caption("No captures: none of this machine's transitions kept raw windows yet.")
        return
    pipeline = ctx.pipelines.get(machine)
    labels = {
        f"{data.iso(c.t_ns)[:23].replace('T', ' ')} UTC · {plain_reason(c.reason, short=True)}": c
        for c in caps
    }
    choice = st.selectbox("Capture", list(labels), key=f"pdm_cap_{machine}")
    cap = labels[choice]
    try:
        wf = data.capture_waveform(ctx.data_dir, cap)
    except (OSError, ValueError) as exc:
        st.warning(f"capture {cap.id}: cannot read {cap.path} under {ctx.data_dir}: {exc}")
        return
    try:
        limits = json.loads(cap.thresholds)
        shown = ", ".join(f"{k} {fmt_num(float(v))}" for k, v in limits.items())
    except (ValueError, TypeError, AttributeError):
        shown = cap.thresholds
    st.caption(
        f"Model {cap.model or '–'}; thresholds {shown}; {fmt_num(cap.fs_hz, 5)} Hz, "
        f"{cap.samples} samples per window. The window that changed the state is shown "
        "(min/max per pixel column, so no peak is lost)."
    )
    for ch in dict.fromkeys(r["channel"] for r in wf.rows):
        _chart(waveform_chart(wf.rows, ch, channel_label(pipeline, ch)))
    if pipeline is None:
        return
    try:
        ws = capture_spectra(ctx.data_dir, cap, pipeline)
    except (OSError, ValueError, PdmError) as exc:
        st.caption(f"No spectra of this capture: {exc}")
        return
    st.markdown("**Spectra of this window** (recomputed from the raw samples, full resolution)")
    channel = st.selectbox(
        "Channel",
        list(ws.channels),
        format_func=lambda c: channel_label(pipeline, c),
        key=f"pdm_cap_ch_{machine}",
    )
    i = ws.channels.index(channel)
    statuses = store.latest_status(machine)
    where = f"{channel_label(pipeline, channel)}, the capture's window at {data.iso(ws.t_ns)}"
    spectra_block(
        f"pdm_cap_{machine}",
        pipeline,
        channel,
        [
            (ws.env_freqs_hz, ws.env_g[i], "envelope", "Envelope spectrum", where),
            (ws.freqs_hz, ws.acc_g[i], "acceleration", "Acceleration spectrum", where),
        ],
        rpm=ws.shaft_rpm,
        diagnosis=(statuses[0].diagnosis or "") if statuses else "",
    )


def render(ctx: DashboardContext) -> None:
    st.title("Machine")
    try:
        with ctx.store() as store:
            with_data = sorted(store.machines())
            # Machines with history first: the page opens on one that has something to show.
            machines = with_data + sorted(set(ctx.pipelines) - set(with_data))
            if not machines:
                st.info("No machines yet.")
                return
            left, right = st.columns(2)
            machine = left.selectbox("Machine", machines, key="pdm_machine")
            choice = right.selectbox("Range", list(data.RANGES), index=3, key="pdm_range")
            span = data.data_span(store, machine)
            rng = data.time_range(span, choice)
            if rng is None:
                st.info(f"No data for {machine} yet.")
                return
            start, end = rng
            st.caption(
                f"{data.iso(start)} – {data.iso(end)} (ranges end at the newest data, "
                "so replayed recordings show too)"
            )
            statuses = store.latest_status(machine)
            names = sorted(
                {k for s in statuses for row in s.channels.values() for k in row}
                - {"iso_zone", "t_ns"}
            )
            _trends(store, ctx, machine, start, end, names)
            _spectra(store, ctx, machine)
            _captures(store, ctx, machine)
    except (PdmError, OSError) as exc:
        st.error(f"history store {ctx.store_url}: {exc}")
