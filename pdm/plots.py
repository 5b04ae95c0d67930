"""Offline HTML pages of plots for ``features``, ``score`` and ``evaluate`` (``--html OUT``).

Each page is one self-contained file (inline CSS and SVG from :mod:`pdm.svgplot`, nothing
fetched). The commands collect what they print anyway — one row per window and channel —
into a :class:`Collector`, and the page draws it: trends over time from the recording's
start, with the ISO 10816-3 zone boundaries on velocity and the model's thresholds on the
score. Long recordings are reduced to at most :data:`MAX_POINTS` points per line by keeping
each bucket's largest value, so a peak is never lost.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pdm import __version__
from pdm.svgplot import CSS as CHART_CSS
from pdm.svgplot import PALETTE, Series, bar_chart, line_chart, time_scale

__all__ = ["Collector", "evaluate_page", "features_page", "score_page", "write_page"]

MAX_POINTS = 2000

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1000px;color:#1d2330;line-height:1.4;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d5de}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #d0d5de;padding:.25em .5em;text-align:left}th{background:#f1f3f7}
.muted{color:#5b6474;font-size:.9em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


@dataclass
class Collector:
    """Rows of one recording: per channel, ``t`` (s from the first window) and values."""

    file: str
    t0: float | None = None
    t: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, t_s: float, channel: str, row: Mapping[str, Any]) -> None:
        """One window's row of one channel (numbers only are kept; a gap is NaN)."""
        if self.t0 is None:
            self.t0 = t_s
        ts = self.t.setdefault(channel, [])
        before = len(ts)
        ts.append(t_s - self.t0)
        vals = self.values.setdefault(channel, {})
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            vals.setdefault(k, [math.nan] * before).append(float(v))
        for lst in vals.values():  # missing from this row: NaN keeps the rows aligned
            if len(lst) <= before:
                lst.append(math.nan)


def _reduce(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most :data:`MAX_POINTS` points: each bucket's largest value (NaN-aware)."""
    if x.size <= MAX_POINTS:
        return x, y
    step = math.ceil(x.size / MAX_POINTS)
    n = x.size // step * step
    yb = y[:n].reshape(-1, step)
    filled = np.where(np.isfinite(yb), yb, -np.inf)
    idx = np.argmax(filled, axis=1) + np.arange(0, n, step)
    return x[idx], y[idx]


def _series(c: Collector, field_: str, label: Any, div: float = 1.0) -> list[Series]:
    """One line per channel of ``field_``, time divided by ``div`` (s → min or h)."""
    out = []
    for i, ch in enumerate(sorted(c.values)):
        y = c.values[ch].get(field_)
        if y is None or not np.isfinite(np.asarray(y, dtype=np.float64)).any():
            continue
        x = np.asarray(c.t[ch], dtype=np.float64) / div
        xr, yr = _reduce(x, np.asarray(y, dtype=np.float64))
        out.append(Series(label(ch), xr, yr, colour=PALETTE[i % len(PALETTE)]))
    return out


def _page(title: str, body: Sequence[str]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}{CHART_CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="muted">pdm-edge {_e(__version__)} · {_e(now)}</p>'
        + "\n".join(body)
        + "</body></html>\n"
    )


def _scale(c: Collector) -> tuple[float, str]:
    span = max((ts[-1] for ts in c.t.values() if ts), default=0.0)
    return time_scale(span)


def _trend(
    body: list[str],
    c: Collector,
    field_: str,
    title: str,
    y_label: str,
    name: Any,
    hlines: Sequence[tuple[str, float]] = (),
) -> None:
    """A chart of ``field_`` over time, a line per channel (nothing when it has no values)."""
    div, unit = _scale(c)
    series = _series(c, field_, name, div)
    if series:
        body.append(
            line_chart(
                series,
                title=title,
                x_label=f"time from the first window, {unit}",
                y_label=y_label,
                hlines=hlines,
                y_min=0.0,
            )
        )


def features_page(
    files: Sequence[Collector],
    *,
    names: Mapping[str, str] | None = None,
    iso_bounds: Sequence[tuple[str, float]] = (),
    feature_label: Any = None,
) -> str:
    """``pdm-edge features --html``: per recording, velocity (ISO zone boundaries), RMS and
    peak acceleration, crest factor and kurtosis, and the envelope's bearing lines."""
    named = dict(names or {})

    def name(ch: str) -> str:
        return named.get(ch, ch)

    def flabel(f: str) -> str:
        return str(feature_label(f)) if feature_label else f

    body: list[str] = []
    for c in files:
        div, unit = _scale(c)
        body.append(f"<h2>{_e(c.file)}</h2>")
        _trend(
            body,
            c,
            "velocity_rms_mm_s",
            "Velocity RMS (ISO 10816-3, 10–1000 Hz)",
            "mm/s",
            name,
            iso_bounds,
        )
        _trend(body, c, "rms_g", "RMS acceleration", "g", name)
        _trend(body, c, "peak_g", "Peak acceleration", "g", name)
        _trend(body, c, "crest", "Crest factor", "peak / RMS", name)
        _trend(body, c, "kurtosis", "Kurtosis", "kurtosis (3 = Gaussian)", name)
        env = sorted(
            {k for ch in c.values.values() for k in ch if k.startswith("env_") and k.endswith("_g")}
        )
        for ch in sorted(c.values):
            series = []
            for i, k in enumerate(env):
                y = np.asarray(c.values[ch].get(k, []), dtype=np.float64)
                if y.size and np.isfinite(y).any():
                    xr, yr = _reduce(np.asarray(c.t[ch]) / div, y)
                    series.append(Series(flabel(k), xr, yr, colour=PALETTE[i % len(PALETTE)]))
            if series:
                body.append(
                    line_chart(
                        series,
                        title=f"Envelope at the bearing's defect frequencies, {name(ch)}",
                        x_label=f"time from the first window, {unit}",
                        y_label="envelope amplitude, g",
                        y_min=0.0,
                    )
                )
    return _page("pdm-edge features", body)


def score_page(
    files: Sequence[tuple[Collector, dict[str, Any]]], thresholds: Mapping[str, float | None]
) -> str:
    """``pdm-edge score --html``: per recording, the score per window (log scale) with the
    model's alert and danger thresholds, and how many windows reached them."""
    body = []
    for c, summary in files:
        div, unit = _scale(c)
        body.append(f"<h2>{_e(c.file)}</h2>")
        body.append(
            "<p>"
            + _e(
                f"{summary.get('windows', 0)} windows, {summary.get('alerting', 0)} at or over "
                f"alert; diagnosis at the end: {summary.get('diagnosis') or '—'}"
            )
            + "</p>"
        )
        series = []
        for i, ch in enumerate(sorted(c.values)):
            y = np.asarray(c.values[ch].get("score", []), dtype=np.float64)
            if y.size:
                xr, yr = _reduce(np.asarray(c.t[ch]) / div, y)
                series.append(Series("score", xr, yr, colour=PALETTE[i], points=xr.size <= 400))
        body.append(
            line_chart(
                series,
                title="Anomaly score per window (log scale; 1 = the alert threshold)",
                x_label=f"time from the first window, {unit}",
                y_label="anomaly score",
                y_log=True,
                hlines=[(k, v) for k, v in thresholds.items() if v is not None],
            )
        )
    return _page("pdm-edge score", body)


def evaluate_page(results: Sequence[dict[str, Any]], table_html: str) -> str:
    """``pdm-edge evaluate --html``: the table, and bars of detection and false alarms."""
    body = [table_html]
    ok = [r for r in results if "error" not in r]
    if ok:
        labels = [f"{r['rate']} {r['detector']}" for r in ok]
        body.append(
            bar_chart(
                labels,
                [r["test_false_alarms"] / max(1, r["test_normal_windows"]) * 100 for r in ok],
                title="False alarms on held-out normal windows",
                x_label="% of windows at or over alert",
                x_max=100.0,
                fmt=lambda v: f"{v:.0f} %",
            )
        )
        faults = list(ok[0]["faults"])
        for fname in faults:
            body.append(
                bar_chart(
                    labels,
                    [r["faults"][fname]["detection_rate"] * 100 for r in ok],
                    title=f"Detection on {fname} ({ok[0]['faults'][fname]['truth']})",
                    x_label="% of windows at or over alert",
                    x_max=100.0,
                    fmt=lambda v: f"{v:.0f} %",
                    colours=[PALETTE[2]] * len(ok),
                )
            )
    return _page("pdm-edge evaluate (CWRU)", body)


def check_page(path: str, flag: str = "--html") -> None:
    """Refuse, before any work, a page path that cannot be written (a directory, no such
    parent): one-line :class:`ConfigError` naming ``flag``."""
    from pdm.core.files import output_problem
    from pdm.errors import ConfigError

    problem = output_problem(path)
    if problem is not None:
        raise ConfigError(f"{flag} {path}: {problem}")


def write_page(path: str, text: str, flag: str = "--html") -> None:
    """Write a page whole or not at all (:func:`pdm.core.files.write_text_atomic`: a page
    already there is kept until the new one is complete, a symbolic link there is replaced,
    not written through); a one-line :class:`ConfigError` naming ``flag`` when it cannot be."""
    from pdm.core.files import write_text_atomic
    from pdm.errors import ConfigError

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from exc
