"""Machine page: trends (score, velocity with ISO zones, band RMS, bearing frequencies),
latest spectra with shaft-order and bearing markers, a waterfall, and alarm captures."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from pdm.dashboard import data
from pdm.dashboard.context import DashboardContext
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
    df = pd.DataFrame(rows)
    positive = df["max"].where(df["max"] > 0)
    df = df.assign(max=positive)
    rules: list[dict[str, Any]] = [
        {"level": "alert", "y": alert, "colour": data.STATE_COLOURS["alert"]}
    ]
    if danger is not None:
        rules.append({"level": "danger", "y": danger, "colour": data.STATE_COLOURS["danger"]})
    if trip is not None:
        rules.append({"level": "trip", "y": trip, "colour": "#ff6f6f"})
    line = (
        alt.Chart(df)
        .mark_line(point=len(df) < 60, color="#8ab4f8")
        .encode(
            _time_x(),
            alt.Y("max:Q", title="anomaly score (max per bucket)", scale=alt.Scale(type="log")),
            tooltip=["t:T", "max:Q", "mean:Q"],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame(rules))
        .mark_rule(strokeDash=[6, 3], size=2)
        .encode(
            y="y:Q",
            color=alt.Color(
                "level:N",
                scale=alt.Scale(
                    domain=[r["level"] for r in rules], range=[r["colour"] for r in rules]
                ),
                title="threshold",
            ),
        )
    )
    return alt.layer(line, rule).properties(height=HEIGHT)


def velocity_chart(rows: list[dict[str, Any]], bands: list[dict[str, Any]]) -> Chart:
    df = pd.DataFrame(rows)
    bg = (
        alt.Chart(pd.DataFrame(bands))
        .mark_rect(opacity=0.22)
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
        .mark_line()
        .encode(
            _time_x(),
            alt.Y("max:Q"),
            strokeDash=alt.StrokeDash("channel:N", title="channel"),
            tooltip=["t:T", "channel:N", "max:Q", "mean:Q"],
        )
    )
    return alt.layer(bg, line).properties(height=HEIGHT)


def lines_chart(rows: list[dict[str, Any]], title: str, series: str = "channel") -> Chart:
    df = pd.DataFrame(rows)
    df["series"] = df["field"] + " " + df["channel"] if series == "both" else df["channel"]
    return (
        alt.Chart(df)
        .mark_line()
        .encode(
            _time_x(),
            alt.Y("mean:Q", title=title),
            color=alt.Color("series:N", title=None),
            tooltip=["t:T", "series:N", "mean:Q", "max:Q"],
        )
        .properties(height=HEIGHT)
    )


def spectrum_chart(
    rows: list[dict[str, Any]], markers: list[data.Marker], title: str, unit: str
) -> Chart:
    df = pd.DataFrame(rows)
    line = (
        alt.Chart(df)
        .mark_line(color="#e8eaed", strokeWidth=1)
        .encode(
            alt.X("freq_hz:Q", title="frequency, Hz"),
            alt.Y("amplitude:Q", title=f"{title}, {unit} peak"),
            tooltip=["freq_hz:Q", "amplitude:Q"],
        )
    )
    layers: list[Any] = [line]
    if markers:
        mk = pd.DataFrame(
            [{"label": m.label, "freq_hz": m.freq_hz, "kind": m.kind} for m in markers]
        )
        colour = alt.Color(
            "kind:N",
            scale=alt.Scale(domain=["order", "bearing"], range=["#8ab4f8", "#f28b82"]),
            title="marker",
        )
        layers.append(
            alt.Chart(mk).mark_rule(strokeDash=[4, 3]).encode(x="freq_hz:Q", color=colour)
        )
        layers.append(
            alt.Chart(mk)
            .mark_text(align="left", dx=3, dy=-4, baseline="top", fontSize=12, color="#e8eaed")
            .encode(x="freq_hz:Q", y=alt.value(4), text="label:N")
        )
    return alt.layer(*layers).properties(height=HEIGHT)


def waterfall_chart(rows: list[dict[str, Any]]) -> Chart:
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_rect()
        .encode(
            alt.X("f_lo:Q", title="frequency, Hz"),
            x2="f_hi:Q",
            y=alt.Y("t:O", title="time (UTC)", sort="descending"),
            color=alt.Color("db:Q", title="dB re 1 g", scale=alt.Scale(scheme="inferno")),
            tooltip=["t:O", "freq_hz:Q", "amplitude:Q"],
        )
        .properties(height=HEIGHT)
    )


def waveform_chart(rows: list[dict[str, Any]], channel: str) -> Chart:
    df = pd.DataFrame([r for r in rows if r["channel"] == channel])
    return (
        alt.Chart(df)
        .mark_area(color="#8ab4f8", opacity=0.9)
        .encode(
            alt.X("t_s:Q", title="time in window, s"),
            alt.Y("min_g:Q", title=f"{channel}, g"),
            y2="max_g:Q",
        )
        .properties(height=180)
    )


def _chart(chart: Any) -> None:
    st.altair_chart(chart, width="stretch")


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
        _chart(velocity_chart(rows, data.zone_bands(pipeline, top * 1.1)))
    else:
        st.caption("No velocity RMS in this range.")

    band_names = [n for n in names if n.startswith("band_")]
    st.subheader("Band RMS")
    rows = [r for n in band_names for r in data.trend_rows(store, machine, n, start, end)]
    if rows:
        _chart(lines_chart(rows, "band RMS, g", series="both"))
    else:
        st.caption("No band RMS features in this range.")

    st.subheader("Bearing defect frequencies (envelope amplitude)")
    rows = [
        r
        for n in data.bearing_trend_names(names)
        for r in data.trend_rows(store, machine, n, start, end)
    ]
    if rows:
        _chart(lines_chart(rows, "envelope amplitude, g", series="both"))
    else:
        st.caption("No bearing-frequency features (no bearing configured for this machine).")


def _spectra(store: HistoryStore, ctx: DashboardContext, machine: str) -> None:
    pipeline = ctx.pipelines.get(machine)
    latest = store.latest_spectra(machine)
    st.subheader("Latest spectra")
    if not latest:
        st.caption("No spectra stored yet.")
        return
    channels = sorted({s.channel for s in latest})
    channel = st.selectbox("Channel", channels, key=f"pdm_spec_ch_{machine}")
    cols = st.columns(2)
    for col, typ, title in ((cols[0], "power", "acceleration"), (cols[1], "envelope", "envelope")):
        sp = next((s for s in latest if s.channel == channel and s.type == typ), None)
        with col:
            if sp is None:
                st.caption(f"No {title} spectrum.")
                continue
            st.caption(f"{title} spectrum of {channel} at {data.iso(sp.t_ns)}")
            top = float(sp.freqs_hz[-1]) if len(sp.values) else None
            markers = data.spectrum_markers(pipeline, channel, max_hz=top)
            _chart(spectrum_chart(data.spectrum_rows(sp), markers, title, sp.unit))
    st.subheader("Waterfall (recent acceleration spectra)")
    recent = data.recent_spectra(store, ctx.store_url, machine, channel, "power")
    if len(recent) < 2:
        st.caption(f"{len(recent)} spectrum stored; the waterfall grows as more are recorded.")
    if recent:
        _chart(waterfall_chart(data.waterfall_rows(recent)))


def _captures(store: HistoryStore, ctx: DashboardContext, machine: str) -> None:
    st.subheader("Alarm captures")
    caps = [c for c in store.log(machine, kinds=("captures",), limit=50) if isinstance(c, Capture)]
    if not caps:
        st.caption("No captures: none of this machine's transitions kept raw windows yet.")
        return
    labels = {f"{data.iso(c.t_ns)} · {c.reason}": c for c in caps}
    choice = st.selectbox("Capture", list(labels), key=f"pdm_cap_{machine}")
    cap = labels[choice]
    try:
        wf = data.capture_waveform(ctx.data_dir, cap)
    except (OSError, ValueError) as exc:
        st.warning(f"capture {cap.id}: cannot read {cap.path} under {ctx.data_dir}: {exc}")
        return
    st.caption(
        f"model {cap.model or '–'}, thresholds {cap.thresholds}, {cap.fs_hz:g} Hz, "
        f"{cap.samples} samples per window; newest window shown (min/max per bucket)"
    )
    for ch in dict.fromkeys(r["channel"] for r in wf.rows):
        _chart(waveform_chart(wf.rows, ch))


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
