"""The commissioning report: one self-contained HTML file.

Everything is inline — CSS in a ``<style>`` element, charts as inline SVG
drawn here — so the file opens the same on a laptop with no network, and
loads nothing from anywhere (no script, stylesheet, font or image URL).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pdm import __version__

if TYPE_CHECKING:
    from pdm.dashboard.commissioning import CommissioningResult, WhatIf

__all__ = ["build_report", "svg_line_chart"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1000px;color:#1d2330;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #d0d5de;padding-bottom:.2em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #d0d5de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f1f3f7}.muted{color:#5b6474;font-size:.9em}
.kpi{display:inline-block;margin:0 1.5em .5em 0}.kpi b{display:block;font-size:1.4em}
.ok{color:#1b7f3b}.alert{color:#b7791f}.danger,.trip{color:#c53030}
svg{background:#fff;border:1px solid #e2e6ee;margin:.3em 0}
.charts{display:flex;flex-wrap:wrap;gap:.5em}
"""

_COLORS = {"alert": "#d69e2e", "danger": "#e53e3e", "trip": "#822727"}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "—"
    return str(v)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return '<p class="muted">None.</p>'
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _symlog(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.log10(1.0 + np.abs(v))


def svg_line_chart(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    title: str,
    x_label: str,
    y_label: str,
    hlines: Sequence[tuple[str, float]] = (),
    symlog: bool = False,
    width: int = 940,
    height: int = 260,
) -> str:
    """A line chart as an inline ``<svg>`` element (no external reference)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    ml, mr, mt, mb = 60, 12, 26, 36
    pw, ph = width - ml - mr, height - mt - mb
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f'<text x="{ml}" y="16" font-size="13" font-weight="bold">{_e(title)}</text>',
    ]
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        parts.append(f'<text x="{ml}" y="{mt + ph / 2}" font-size="12">no data</text></svg>')
        return "".join(parts)
    tr = _symlog if symlog else (lambda v: v)
    ty = tr(ys[ok])
    lines = [
        (n, float(tr(np.array([v]))[0])) for n, v in hlines if v is not None and math.isfinite(v)
    ]
    y_lo = min(float(ty.min()), *(v for _, v in lines)) if lines else float(ty.min())
    y_hi = max(float(ty.max()), *(v for _, v in lines)) if lines else float(ty.max())
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    pad = (y_hi - y_lo) * 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = float(xs[ok].min()), float(xs[ok].max())
    if x_hi - x_lo < 1e-12:
        x_hi = x_lo + 1

    def px(v: float) -> float:
        return ml + (v - x_lo) / (x_hi - x_lo) * pw

    def py(v: float) -> float:
        return mt + ph - (v - y_lo) / (y_hi - y_lo) * ph

    parts.append(
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#c8ced8"/>'
    )
    for i in range(5):  # y ticks
        v = y_lo + (y_hi - y_lo) * i / 4
        shown = float(np.sign(v) * (10 ** abs(v) - 1)) if symlog else v
        parts.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eef0f4"/>'
            f'<text x="{ml - 4}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{_e(f'{shown:.3g}')}</text>"
        )
    for i in range(6):  # x ticks
        v = x_lo + (x_hi - x_lo) * i / 5
        parts.append(
            f'<text x="{px(v):.1f}" y="{mt + ph + 14}" font-size="10" text-anchor="middle">'
            f"{_e(f'{v:.4g}')}</text>"
        )
    parts.append(
        f'<text x="{ml + pw / 2}" y="{height - 4}" font-size="11" text-anchor="middle">'
        f"{_e(x_label)}</text>"
        f'<text x="12" y="{mt + ph / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {mt + ph / 2})">{_e(y_label)}</text>'
    )
    for name, v in lines:
        c = _COLORS.get(name, "#718096")
        parts.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="{c}" '
            f'stroke-dasharray="5,4"/><text x="{ml + pw - 2}" y="{py(v) - 3:.1f}" font-size="10" '
            f'text-anchor="end" fill="{c}">{_e(name)}</text>'
        )
    pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs[ok], ty, strict=True))
    parts.append(f'<polyline fill="none" stroke="#2b6cb0" stroke-width="1.4" points="{pts}"/>')
    parts.append("</svg>")
    return "".join(parts)


def build_report(res: CommissioningResult, wi: WhatIf | None = None) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    s = res.summary
    t0 = int(res.t_ns[0]) if len(res.t_ns) else 0
    secs = (res.t_ns - t0) / 1e9
    final = s.get("alarm_state") or "ok"
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Commissioning report: {_e(res.machine)} — {_e(res.recording)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Commissioning report: {_e(res.machine_name)}</h1>",
        f'<p class="muted">Machine <code>{_e(res.machine)}</code> · recording '
        f"<code>{_e(res.recording)}</code> · pipeline <code>{_e(res.pipeline_file)}</code> · "
        f"model <code>{_e(res.model or '—')}</code> ({_e(res.model_dir or 'none')}) · "
        f"pdm-edge {_e(__version__)} · {_e(now)}. A dry-run replay: no action was taken.</p>",
        "<h2>Summary</h2><div>",
        f'<span class="kpi"><b>{_e(s.get("windows", res.windows))}</b>windows</span>',
        f'<span class="kpi"><b>{_e(s.get("invalid_windows", 0))}</b>invalid windows</span>',
        f'<span class="kpi"><b>{len(res.transitions)}</b>alarm transitions</span>',
        f'<span class="kpi"><b class="{_e(final)}">{_e(final)}</b>final alarm state</span>',
    ]
    if res.top_diagnosis():
        out.append(f'<span class="kpi"><b>{_e(res.top_diagnosis())}</b>main diagnosis</span>')
    out.append("</div>")
    # The score trips only with a second kind of evidence in the same window (docs/alarms.md).
    trip_name = "trip (with corroboration)" if res.rules.trip_requires else "trip (alone)"
    thr = [("alert", res.alert), ("danger", res.danger), (trip_name, res.rules.score_trip)]
    out.append(
        "<p>Thresholds: "
        + ", ".join(f"{n} {_fmt(v) if v is not None else '—'}" for n, v in thr)
        + f"; on-delay {res.rules.on_windows} of {res.rules.of_windows} windows, off-delay "
        f"{res.rules.off_windows} clear windows.</p>"
    )
    out.append("<h2>What alarmed, when and why</h2>")
    out.append(_table(res.transitions))
    out.append("<h2>Score trend</h2>")
    out.append(
        svg_line_chart(
            secs,
            res.score,
            title="Anomaly score per window (symlog scale)",
            x_label="time from start (s)",
            y_label="score",
            hlines=[(n, v) for n, v in thr if v is not None],
            symlog=True,
        )
    )
    if res.spectra:
        out.append('<h2>Latest spectra</h2><div class="charts">')
        for spec in res.spectra:
            v = np.asarray(spec["values"], dtype=np.float64)
            f = spec["f0_hz"] + spec["df_hz"] * np.arange(len(v))
            out.append(
                svg_line_chart(
                    f,
                    v,
                    title=f"{spec['channel']} — {spec['type']}",
                    x_label="frequency (Hz)",
                    y_label=f"amplitude ({spec['unit']})",
                    width=465,
                    height=220,
                )
            )
        out.append("</div>")
    if wi is not None:
        out.append("<h2>What if</h2>")
        out.append(
            "<p>The alarm state machine re-run over the per-window scores (ISO zones and feature "
            f"limits left out, never acknowledged) with alert {_fmt(wi.alert)}, danger "
            f"{_fmt(wi.danger)}, trip {_fmt(wi.trip)}, on-delay {wi.on_windows} of "
            f"{wi.of_windows}, off-delay {wi.off_windows}: <b>{wi.alarms_raised}</b> alarm(s) "
            f"raised, {wi.escalations} escalation(s), final state <b>{_e(wi.final_state)}</b>. "
            "Windows over alert / danger / trip: "
            f"{wi.windows_over['alert']} / {wi.windows_over['danger']} / "
            f"{wi.windows_over['trip']}.</p>"
        )
        out.append(_table(wi.transitions, ["window", "from", "to", "reason"]))
    if res.log:
        out.append("<h2>Log of the replay</h2>")
        out.append(_table(res.log[:300]))
    out.append("</body></html>")
    return "\n".join(out)
