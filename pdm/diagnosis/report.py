"""A self-contained HTML page of diagnoses: averaged spectra, line markers, the verdict.

Pure: arrays in, one string out (inline SVG, inline CSS, no script, nothing fetched), so
the page opens offline and can be mailed. Spectra are drawn on a log amplitude scale,
decimated to the largest value per pixel column so no line is lost; markers show where
each family's lines are expected and, filled, which were found significant; labels are
placed in rows so that none overlaps another.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.engine import ChannelDiagnosis
from pdm.diagnosis.evidence import FamilyEvidence

__all__ = ["CSS", "Section", "html_page", "place_labels", "section_html", "spectrum_svg"]

F64 = npt.NDArray[np.float64]

_W, _H = 920, 250
_ML, _MR, _MT, _MB = 64, 16, 44, 34  # margins, px
_CHAR_W = 6.2  # px per character of an 11 px label
_COLOURS = {
    "outer_race": "#c0392b",
    "inner_race": "#2e86c1",
    "ball": "#8e44ad",
    "cage": "#d68910",
    "shaft": "#7f8c8d",
}


@dataclass(frozen=True)
class Section:
    """One channel of one recording.

    Attributes
    ----------
    title : e.g. the file name and channel
    meta : one line: rate, window, windows averaged …
    diagnosis : the channel's diagnosis
    df_hz : bin spacing of both spectra, Hz
    acc_g : (n,) averaged acceleration amplitude spectrum, g
    env_g : (n_env,) averaged envelope amplitude spectrum, g, or None
    """

    title: str
    meta: str
    diagnosis: ChannelDiagnosis
    df_hz: float
    acc_g: F64
    env_g: F64 | None


def place_labels(xs: Sequence[float], widths: Sequence[float], rows: int = 4) -> list[int]:
    """Row (0 = top) for each label at ``xs`` (px, its centre) of ``widths`` (px), so that no
    two labels in one row overlap; -1 for a label that fits in no row (left out).

    Labels are placed left to right, each in the first row whose last label ends before it
    starts (with 4 px between).
    """
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ends = [-math.inf] * rows
    out = [-1] * len(xs)
    for i in order:
        lo = xs[i] - widths[i] / 2
        for r in range(rows):
            if lo >= ends[r] + 4:
                out[i] = r
                ends[r] = xs[i] + widths[i] / 2
                break
    return out


def _decimate(f: F64, a: F64, px: int) -> tuple[F64, F64]:
    """At most two points per pixel column: the largest value in it (peaks survive)."""
    if f.size <= 2 * px:
        return f, a
    edges = np.linspace(0, f.size, px + 1).astype(int)
    idx = [
        lo + int(np.argmax(a[lo:hi])) for lo, hi in itertools.pairwise(edges.tolist()) if hi > lo
    ]
    return f[idx], a[idx]


def spectrum_svg(
    title: str,
    f: F64,
    a: F64,
    f_max: float,
    markers: Sequence[tuple[float, str, str, bool]],
    band: tuple[float, float] | None = None,
) -> str:
    """One SVG spectrum up to ``f_max`` Hz, log amplitude: ``markers`` are (Hz, label, colour
    key, significant); significant ones are drawn solid and labelled (labels never overlap)."""
    keep = (f > 0) & (f <= f_max)
    f, a = f[keep], a[keep]
    pw, ph = _W - _ML - _MR, _H - _MT - _MB
    if f.size == 0:
        return f'<p class="none">{html.escape(title)}: nothing to show</p>'
    pos = a[a > 0]
    top = float(np.max(pos)) if pos.size else 1.0
    bottom = max(float(np.percentile(pos, 1)) if pos.size else top / 1e4, top / 1e5)
    lt, lb = math.log10(top * 2), math.log10(bottom)

    def x(hz: float) -> float:
        return _ML + pw * hz / f_max

    def y(v: float) -> float:
        lv = math.log10(max(v, bottom))
        return _MT + ph * (lt - lv) / (lt - lb)

    fd, ad = _decimate(f, a, pw)
    pts = " ".join(
        f"{x(fi):.1f},{y(ai):.1f}" for fi, ai in zip(fd.tolist(), ad.tolist(), strict=True)
    )
    out = [
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" aria-label="{html.escape(title)}">'
    ]
    out.append(f'<text x="{_ML}" y="14" class="t">{html.escape(title)}</text>')
    if band is not None:
        x0, x1 = x(max(band[0], 0.0)), x(min(band[1], f_max))
        if x1 > x0:
            out.append(
                f'<rect x="{x0:.1f}" y="{_MT}" width="{x1 - x0:.1f}" height="{ph}" class="band"/>'
            )
    # Axes and ticks: decades of amplitude, ~8 frequency ticks.
    out.append(f'<rect x="{_ML}" y="{_MT}" width="{pw}" height="{ph}" class="frame"/>')
    for dec in range(math.floor(lb), math.ceil(lt) + 1):
        v = 10.0**dec
        if bottom <= v <= top * 2:
            yy = y(v)
            out.append(
                f'<line x1="{_ML}" x2="{_ML + pw}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
            )
            out.append(
                f'<text x="{_ML - 4}" y="{yy + 4:.1f}" class="ax" text-anchor="end">{v:g}</text>'
            )
    step = _nice_step(f_max / 8)
    for k in range(int(f_max / step) + 1):
        xx = x(k * step)
        out.append(
            f'<text x="{xx:.1f}" y="{_MT + ph + 14}" class="ax" text-anchor="middle">{k * step:g}</text>'
        )
    out.append(f'<text x="{_ML + pw}" y="{_H - 4}" class="ax" text-anchor="end">Hz</text>')
    out.append(f'<text x="4" y="{_MT - 6}" class="ax">g</text>')
    # Markers under the trace, labels in rows above the plot.
    shown = [m for m in markers if 0 < m[0] <= f_max]
    for hz, _lab, key, sig in shown:
        cls = "mk sig" if sig else "mk"
        out.append(
            f'<line x1="{x(hz):.1f}" x2="{x(hz):.1f}" y1="{_MT}" y2="{_MT + ph}" class="{cls}" '
            f'stroke="{_COLOURS.get(key, "#555")}"/>'
        )
    out.append(f'<polyline points="{pts}" class="trace"/>')
    labelled = [m for m in shown if m[3]]
    rows = place_labels(
        [x(m[0]) for m in labelled], [len(m[1]) * _CHAR_W for m in labelled], rows=3
    )
    for (hz, lab, key, _s), r in zip(labelled, rows, strict=True):
        if r < 0:
            continue
        out.append(
            f'<text x="{x(hz):.1f}" y="{18 + 11 * r + 8}" class="lb" text-anchor="middle" '
            f'fill="{_COLOURS.get(key, "#555")}">{html.escape(lab)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _nice_step(raw: float) -> float:
    mag = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _markers(
    families: Sequence[FamilyEvidence], bearing: bool
) -> list[tuple[float, str, str, bool]]:
    out = []
    for fam in families:
        if fam.bearing != bearing:
            continue
        key = fam.family if bearing else "shaft"
        for ln in fam.lines:
            if bearing or fam.family == "looseness":  # the order lines once, from looseness
                hz = ln.found_hz if ln.significant else ln.expected_hz
                out.append((hz, ln.name, key, ln.significant))
    return out


def section_html(s: Section) -> str:
    """One channel's verdict and averaged spectra as an HTML ``<section>`` (uses :data:`CSS`)."""
    d = s.diagnosis
    fr = d.shaft_speed_rpm / 60.0
    f_acc: F64 = np.arange(s.acc_g.size, dtype=np.float64) * s.df_hz
    parts = [f'<section><h2>{html.escape(s.title)}</h2><p class="meta">{html.escape(s.meta)}</p>']
    cls = "ok" if d.label == "unknown" else ("warn" if d.label == "bearing_uncertain" else "bad")
    parts.append(
        f'<div class="verdict {cls}"><b>{html.escape(d.label)}</b> — confidence {d.confidence:.2f}'
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in d.reasons) + "</ul></div>"
    )
    if s.env_g is not None and s.env_g.size:
        f_env: F64 = np.arange(s.env_g.size, dtype=np.float64) * s.df_hz
        parts.append(
            spectrum_svg(
                "Envelope spectrum (averaged), bearing lines: filled = significant",
                f_env,
                s.env_g,
                float(f_env[-1]),
                _markers(d.families, True),
            )
        )
    if s.acc_g.size and math.isfinite(fr):
        parts.append(
            spectrum_svg(
                "Acceleration spectrum (averaged), 0–12 × shaft speed",
                f_acc,
                s.acc_g,
                min(12.0 * fr, float(f_acc[-1])),
                _markers(d.families, False),
            )
        )
        if f_acc[-1] > 20.0 * fr:
            parts.append(
                spectrum_svg(
                    "Acceleration spectrum (averaged), whole band; shaded: envelope band",
                    f_acc,
                    s.acc_g,
                    float(f_acc[-1]),
                    [],
                    band=d.envelope_band_hz,
                )
            )
    parts.append("</section>")
    return "\n".join(parts)


#: The page's style sheet (also for sections embedded in another page).
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:20px}h2{font-size:16px;margin:28px 0 4px}.meta{color:#555;margin:0 0 8px;font-size:13px}
.verdict{border-left:5px solid #999;padding:6px 12px;margin:8px 0;background:#f7f7f7;font-size:13px}
.verdict.bad{border-color:#c0392b}.verdict.warn{border-color:#d68910}.verdict.ok{border-color:#27ae60}
.verdict ul{margin:4px 0 0 16px;padding:0}svg{display:block;margin:6px 0}
.t{font-size:12px;font-weight:600}.ax{font-size:10px;fill:#555}.lb{font-size:11px}
.frame{fill:none;stroke:#999}.grid{stroke:#e3e3e3}.trace{fill:none;stroke:#222;stroke-width:1}
.mk{stroke-width:1;stroke-dasharray:3 3;opacity:.45}.mk.sig{stroke-dasharray:none;opacity:.9}
.band{fill:#f5e6b3;opacity:.6}.none{color:#999}
"""


def html_page(title: str, sections: Sequence[Section]) -> str:
    """The whole page: a title, then each section's verdict and spectra."""
    body = "\n".join(section_html(s) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}"
        '<p class="meta">pdm-edge diagnose: rules and what a confidence means in '
        "docs/diagnosis.md.</p></body></html>\n"
    )
