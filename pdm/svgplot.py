"""Charts as inline SVG text for the offline HTML pages (report, ``--html`` of the commands).

Pure: numbers in, one ``<svg>`` string out — no script, no font, nothing fetched, so a page
opens the same on a laptop with no network and can be mailed. Axes get "nice" ticks
(1, 2, 5 × 10ⁿ, also on log axes), times are given in s, min or h as the span needs, and
labels of threshold lines are placed so that they do not overlap. Spectra are drawn by
:func:`pdm.diagnosis.report.spectrum_svg` (the same look as ``pdm-edge diagnose --html``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CSS",
    "Series",
    "bar_chart",
    "fmt_tick",
    "line_chart",
    "log_ticks",
    "nice_ticks",
    "time_scale",
]

#: Colours of successive series (distinct on white, colour-blind safe order: Okabe–Ito).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
#: Threshold colours, as on the dashboard.
LEVEL_COLOURS = {"alert": "#c98a00", "danger": "#e65100", "trip": "#d50000"}

CSS = """
svg.chart{background:#fff;border:1px solid #e2e6ee;margin:.3em 0;display:block}
svg.chart text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
svg.chart .t{font-size:13px;font-weight:600}svg.chart .ax{font-size:11px;fill:#3c4350}
svg.chart .lab{font-size:12px;fill:#1d2330}svg.chart .grid{stroke:#eef0f4}
svg.chart .frame{fill:none;stroke:#c8ced8}
"""


@dataclass(frozen=True)
class Series:
    """One line: ``x``, ``y`` (same length; NaN breaks the line), a name for the legend."""

    name: str
    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    colour: str = ""
    points: bool = False


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round values (1, 2, 5 × 10ⁿ steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 values within [lo, hi] on a log axis (only powers of ten when too many)."""
    if not (lo > 0 and hi > lo):
        return []
    out = [
        m * 10.0**e
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1, 2, 5)
    ]
    out = [v for v in out if lo <= v * (1 + 1e-9) and v <= hi * (1 + 1e-9)]
    if len(out) > 9:
        out = [v for v in out if abs(math.log10(v) - round(math.log10(v))) < 1e-9]
    return out


def fmt_tick(v: float) -> str:
    """A tick value without e-notation or float noise: ``0.05``, ``1,000``, ``2.5``."""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return text


def time_scale(span_s: float) -> tuple[float, str]:
    """(divisor, unit) to show a time span readably: s up to 2 min, then min, then h."""
    if span_s > 2 * 3600:
        return 3600.0, "h"
    if span_s > 120:
        return 60.0, "min"
    return 1.0, "s"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_log: bool = False,
    y_log: bool = False,
    hlines: Sequence[tuple[str, float]] = (),
    x_ticks: Sequence[float] | None = None,
    width: int = 940,
    height: int = 280,
    y_min: float | None = None,
) -> str:
    """Lines (and optional labelled horizontal threshold lines) as one ``<svg>``.

    On a log axis values ≤ 0 sit on the axis floor. Threshold lines are named in
    :data:`LEVEL_COLOURS` (``alert``, ``danger``, ``trip``) or drawn grey.
    """
    ml, mr, mt, mb = 70, 16, 30, 44
    legend = len(series) > 1
    if legend:
        mb += 18 * math.ceil(len(series) / 4)
    pw, ph = width - ml - mr, height - mt - mb
    out = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(title)}"><text x="{ml}" y="18" class="t">{_e(title)}</text>'
    ]
    xs_all = [np.asarray(s.x, dtype=np.float64) for s in series]
    ys_all = [np.asarray(s.y, dtype=np.float64) for s in series]
    xv = np.concatenate(xs_all) if xs_all else np.array([])
    yv = np.concatenate(ys_all) if ys_all else np.array([])
    lines = [(n, float(v)) for n, v in hlines if v is not None and math.isfinite(v)]
    ok_x = xv[np.isfinite(xv) & ((xv > 0) if x_log else True)]
    ok_y = yv[np.isfinite(yv) & ((yv > 0) if y_log else True)]
    if ok_x.size == 0 or ok_y.size == 0:
        out.append(f'<text x="{ml}" y="{mt + ph / 2}" class="ax">no data</text></svg>')
        return "".join(out)
    x_lo, x_hi = float(ok_x.min()), float(ok_x.max())
    y_lo = min([float(ok_y.min()), *(v for _, v in lines if v > 0 or not y_log)])
    y_hi = max([float(ok_y.max()), *(v for _, v in lines)])
    if y_min is not None:
        y_lo = min(y_lo, y_min)
    if x_hi <= x_lo:
        x_hi = x_lo * 2 if x_log else x_lo + 1
    if y_log:
        y_lo, y_hi = y_lo / 1.5, y_hi * 1.5
    else:
        if y_hi <= y_lo:
            y_hi = y_lo + 1
        pad = 0.06 * (y_hi - y_lo)
        y_lo = y_lo - pad if y_min is None or y_lo - pad < y_min else y_min
        y_hi += pad
    tx = (lambda v: math.log10(v)) if x_log else (lambda v: v)
    ty = (lambda v: math.log10(max(v, y_lo))) if y_log else (lambda v: v)
    ax0, ax1, ay0, ay1 = tx(x_lo), tx(x_hi), ty(y_lo), ty(y_hi)

    def px(v: float) -> float:
        return ml + (tx(v) - ax0) / (ax1 - ax0) * pw

    def py(v: float) -> float:
        return mt + ph - (ty(v) - ay0) / (ay1 - ay0) * ph

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>')
    yt = log_ticks(y_lo, y_hi) if y_log else nice_ticks(y_lo, y_hi)
    for v in yt:
        if not y_lo <= v <= y_hi:
            continue
        y = py(v)
        out.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{ml - 5}" y="{y + 4:.1f}" class="ax" text-anchor="end">{_e(fmt_tick(v))}</text>'
        )
    xt = (
        list(x_ticks)
        if x_ticks is not None
        else (log_ticks(x_lo, x_hi) if x_log else nice_ticks(x_lo, x_hi, 8))
    )
    for v in xt:
        if not x_lo - 1e-9 <= v <= x_hi + 1e-9:
            continue
        x = px(v)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" class="grid"/>'
            f'<text x="{x:.1f}" y="{mt + ph + 15}" class="ax" text-anchor="middle">'
            f"{_e(fmt_tick(v))}</text>"
        )
    out.append(
        f'<text x="{ml + pw / 2}" y="{mt + ph + 33}" class="ax" text-anchor="middle">'
        f"{_e(x_label)}</text>"
        f'<text x="14" y="{mt + ph / 2}" class="ax" text-anchor="middle" '
        f'transform="rotate(-90 14 {mt + ph / 2})">{_e(y_label)}</text>'
    )
    # Threshold lines; labels alternate sides when two would touch.
    placed: list[tuple[float, str]] = []
    for name, v in sorted(lines, key=lambda nv: nv[1]):
        if not y_lo <= v <= y_hi:
            continue
        y = py(v)
        c = LEVEL_COLOURS.get(name.split()[0], "#6b7280")
        side = "end"
        if placed and abs(placed[-1][0] - y) < 15 and placed[-1][1] == "end":
            side = "start"
        placed.append((y, side))
        tx_ = ml + pw - 4 if side == "end" else ml + 4
        out.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{c}" '
            f'stroke-width="1.6" stroke-dasharray="7,4"/><text x="{tx_}" y="{y - 4:.1f}" '
            f'class="lab" text-anchor="{side}" fill="{c}" font-weight="600">'
            f"{_e(name)} {_e(fmt_tick(v))}</text>"
        )
    for i, (s, xs, ys) in enumerate(zip(series, xs_all, ys_all, strict=True)):
        c = s.colour or PALETTE[i % len(PALETTE)]
        keep = np.isfinite(xs) & np.isfinite(ys) & ((xs > 0) if x_log else True)
        if y_log:
            ys = np.where(ys > 0, ys, y_lo)
        seg: list[str] = []
        for ok, a, b in zip(keep.tolist(), xs.tolist(), ys.tolist(), strict=True):
            if ok:
                seg.append(f"{px(a):.1f},{py(b):.1f}")
            elif seg:
                out.append(_poly(seg, c))
                seg = []
        if seg:
            out.append(_poly(seg, c))
        if s.points:
            for ok, a, b in zip(keep.tolist(), xs.tolist(), ys.tolist(), strict=True):
                if ok:
                    out.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="{c}"/>')
        if legend:
            lx = ml + (i % 4) * (pw / 4)
            ly = mt + ph + 52 + 18 * (i // 4)
            out.append(
                f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" '
                f'stroke-width="2.5"/><text x="{lx + 24:.1f}" y="{ly}" class="lab">{_e(s.name)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _poly(points: list[str], colour: str) -> str:
    if len(points) == 1:
        x, y = points[0].split(",")
        return f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>'
    return (
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{" ".join(points)}"/>'
    )


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    x_label: str,
    x_max: float | None = None,
    fmt: Callable[[float], str] = fmt_tick,
    colours: Sequence[str] = (),
    width: int = 940,
) -> str:
    """Horizontal bars, one per label, the value written at the bar's end."""
    bar, gap, ml, mr, mt = 18, 8, 260, 60, 30
    height = mt + len(labels) * (bar + gap) + 40
    pw = width - ml - mr
    top = x_max if x_max is not None else max([*values, 1e-12])
    out = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(title)}"><text x="8" y="18" class="t">{_e(title)}</text>'
    ]
    for v in nice_ticks(0, top, 6):
        x = ml + v / top * pw
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{height - 34}" class="grid"/>'
            f'<text x="{x:.1f}" y="{height - 20}" class="ax" text-anchor="middle">'
            f"{_e(fmt_tick(v))}</text>"
        )
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = mt + i * (bar + gap)
        c = colours[i] if i < len(colours) else PALETTE[0]
        w = max(0.0, min(v, top)) / top * pw if math.isfinite(v) else 0.0
        out.append(
            f'<text x="{ml - 6}" y="{y + bar - 5}" class="lab" text-anchor="end">{_e(lab)}</text>'
            f'<rect x="{ml}" y="{y}" width="{w:.1f}" height="{bar}" fill="{c}"/>'
            f'<text x="{ml + w + 4:.1f}" y="{y + bar - 5}" class="lab">'
            f"{_e(fmt(v) if math.isfinite(v) else '–')}</text>"
        )
    out.append(
        f'<text x="{ml + pw / 2}" y="{height - 4}" class="ax" text-anchor="middle">'
        f"{_e(x_label)}</text></svg>"
    )
    return "".join(out)
