"""The commissioning report: one self-contained HTML file (dashboard download, ``pdm-edge report``).

Everything is inline — CSS in a ``<style>`` element, charts as inline SVG (:mod:`pdm.svgplot`,
and :func:`pdm.diagnosis.report.spectrum_svg` for spectra, as ``pdm-edge diagnose --html``
draws them) — so the file opens the same on a laptop with no network and loads nothing from
anywhere (no script, stylesheet, font or image URL).

What it holds, for a planner and an analyst:

* the summary: windows, final state, the first alarm, the diagnosis;
* what alarmed, when (UTC and seconds from the start) and why, in words;
* the score trend with the thresholds;
* the **deciding window's** spectra (the window that raised the highest alarm,
  recomputed from the recording at full resolution), with the shaft's and the diagnosed
  defect's harmonics marked and a table of the marked lines' amplitudes;
* the **diagnosis**: the engine's averaged spectra and its reasons;
* the **what-if**: the setting tried, its outcome on each recording (healthy references
  included), and the grid of alert thresholds (as values) × on-delays — false alarms and
  the delay from the fault's onset to the first alarm — as a table and as curves.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pdm import __version__
from pdm.dashboard import cursors
from pdm.dashboard.labels import channel_label, diagnosis_words, fmt_num, plain_reason
from pdm.dashboard.whatif import (
    CommissioningResult,
    Run,
    Setting,
    WhatIf,
    configured_setting,
    grid_rows,
    outcome_rows,
    run_outcome,
    transition_rows,
    whatif_grid,
    whatif_setting,
)
from pdm.diagnosis.report import CSS as DIAGNOSIS_CSS
from pdm.diagnosis.report import spectrum_svg
from pdm.svgplot import CSS as CHART_CSS
from pdm.svgplot import Series, line_chart, log_ticks, time_scale

__all__ = ["build_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1000px;color:#1d2330;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #d0d5de;padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #d0d5de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f1f3f7}.muted{color:#5b6474;font-size:.9em}
.kpi{display:inline-block;margin:0 1.8em .6em 0}.kpi b{display:block;font-size:1.4em}
.st-ok{color:#1b7f3b}.st-alert{color:#a66b00}.st-danger{color:#d35400}.st-trip{color:#c00000}
tr.now td{background:#fff6d6;font-weight:600}
"""

_FAMILY_KEY = {
    "bpfo": "outer_race",
    "bpfi": "inner_race",
    "bsf": "ball",
    "ftf": "cage",
    "shaft": "shaft",
}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(rows: Sequence[dict[str, Any]], highlight: str | None = None) -> str:
    if not rows:
        return '<p class="muted">None.</p>'
    cols = [c for c in rows[0] if c != highlight]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = ' class="now"' if highlight and r.get(highlight) else ""
        cells = "".join(f"<td>{_e(r.get(c, ''))}</td>" for c in cols)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _markers(marks: Sequence[cursors.Cursor]) -> list[tuple[float, str, str, bool]]:
    """Cursors as :func:`spectrum_svg` markers: labelled lines solid, sidebands dashed."""
    return [(m.freq_hz, m.label, _FAMILY_KEY[m.family], bool(m.label)) for m in marks]


def _spectra_section(res: CommissioningResult, diag: str) -> str:
    ws = res.deciding
    if ws is None:
        return '<p class="muted">Not recomputed: ' + _e("; ".join(res.notes) or "—") + "</p>"
    pl = res.pipeline
    out = [
        f"<p>Window {ws.window} at {_e(_utc(ws.t_ns))} UTC "
        f"({_e(res.window_span(ws.t_ns))}): {_e(res.deciding_why)}. "
        f"Recomputed from the recording at full resolution "
        f"({_e(fmt_num(float(ws.freqs_hz[1] - ws.freqs_hz[0]), 3))} Hz per line), shaft speed "
        f"{_e(fmt_num(ws.shaft_rpm, 4))} r/min. Solid, labelled: the shaft's and the "
        "diagnosed defect's harmonics 1×–5×; dashed: their sidebands.</p>"
    ]
    tol = pl.envelope.slip_tolerance if pl is not None else 0.03
    for i, ch in enumerate(ws.channels):
        where = channel_label(pl, ch)
        shaft, defects = cursors.defect_frequencies(pl, ch, rpm=ws.shaft_rpm)
        fams = cursors.default_families(defects, diag)
        out.append(f"<h3>{_e(where)}</h3>")
        top = float(ws.env_freqs_hz[-1])
        _lo, hi = cursors.default_range("envelope", shaft, defects, top)
        marks = cursors.cursors(shaft, defects, fams, sidebands=True, max_hz=hi)
        out.append(
            spectrum_svg(
                f"Envelope spectrum, {where}, 0–{fmt_num(hi, 3)} Hz (g, log scale)",
                ws.env_freqs_hz,
                ws.env_g[i],
                hi,
                _markers(marks),
            )
        )
        rows = cursors.peak_readout(
            ws.env_freqs_hz, ws.env_g[i], [m for m in marks if m.label], tolerance=tol
        )
        out.append(
            _table(
                [
                    {
                        "line": r.line,
                        "expected, Hz": fmt_num(r.expected_hz, 4),
                        "found, Hz": fmt_num(r.found_hz, 4),
                        "envelope amplitude, g": fmt_num(r.amplitude),
                        "above local floor, dB": fmt_num(r.above_floor_db, 2),
                    }
                    for r in rows
                ]
            )
        )
        atop = float(ws.freqs_hz[-1])
        _lo, ahi = cursors.default_range("acceleration", shaft, defects, atop)
        amarks = cursors.cursors(shaft, defects, ["shaft"], max_hz=ahi)
        out.append(
            spectrum_svg(
                f"Acceleration spectrum, {where}, 0–{fmt_num(ahi, 3)} Hz = 20 × shaft speed "
                "(g, log scale)",
                ws.freqs_hz,
                ws.acc_g[i],
                ahi,
                _markers(amarks),
            )
        )
        out.append(
            spectrum_svg(
                f"Acceleration spectrum, {where}, whole band; shaded: the envelope's band",
                ws.freqs_hz,
                ws.acc_g[i],
                atop,
                [],
                band=ws.envelope_band_hz,
            )
        )
    return "\n".join(out)


def _utc(t_ns: int) -> str:
    t = dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _score_svg(res: CommissioningResult, s: Setting) -> str:
    secs = np.array([res.seconds(int(t)) for t in res.t_ns.tolist()])
    div, unit = time_scale(float(secs.max()) if secs.size else 0.0)
    levels = [("alert", s.alert), ("danger", s.danger), ("trip", s.trip)]
    return line_chart(
        [Series("score", secs / div, res.score, colour="#1f4e9c", points=res.windows <= 400)],
        title="Anomaly score per window (log scale; 1 = the model's alert threshold)",
        x_label=f"time from the start of the recording, {unit}",
        y_label="anomaly score",
        y_log=True,
        hlines=[(n, v) for n, v in levels if v is not None] if s.quantity == "score" else [],
    )


def _grid_svgs(grid: Sequence[dict[str, Any]], quantity: str) -> str:
    unit = "score" if quantity == "score" else "mm/s"
    by: dict[str, list[dict[str, Any]]] = {}
    for g in grid:
        by.setdefault(f"{g['on']} of {g['of']}", []).append(g)
    values = sorted({g["alert"] for g in grid})
    ticks = values if len(values) <= 10 else log_ticks(min(values), max(values))

    def curve(key: str, title: str, y_label: str) -> str:
        return line_chart(
            [
                Series(
                    f"on-delay {k}",
                    [g["alert"] for g in rs],
                    [math.nan if g[key] is None else g[key] for g in rs],
                    points=True,
                )
                for k, rs in by.items()
            ],
            title=title,
            x_label=f"alert threshold, {unit} (danger and trip in proportion)",
            y_label=y_label,
            x_log=True,
            x_ticks=ticks,
            y_min=0.0,
            height=300,
        )

    parts = [
        curve(
            "false_alarms",
            "False alarms (healthy recordings, and faulty ones before the onset)",
            "false alarms",
        )
    ]
    if any(g["delay_s"] is not None for g in grid):
        parts.append(
            curve("delay_s", "First alarm after the fault's onset (gap: not detected)", "delay, s")
        )
    return "\n".join(parts)


def build_report(
    res: CommissioningResult,
    wi: WhatIf | None = None,
    *,
    runs: Sequence[Run] | None = None,
    setting: Setting | None = None,
    grid: Sequence[dict[str, Any]] | None = None,
) -> str:
    """The whole report as one HTML document (UTF-8 text).

    ``runs``: the recordings compared in the what-if (default: ``res`` alone, role not
    known); ``setting``: the what-if's thresholds (default: the configured ones); ``grid``:
    :func:`~pdm.dashboard.whatif.whatif_grid`'s rows (computed when not given).
    ``wi`` is accepted for callers of the earlier signature and not needed.
    """
    del wi
    runs = list(runs) if runs else [Run(res)]
    s = setting or configured_setting(res)
    if grid is None:
        grid = whatif_grid(runs, s)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    summ = res.summary
    final = str(summ.get("alarm_state") or "ok")
    av = res.averaged
    diag = av.label if av is not None else res.top_diagnosis()
    ups = [t for t in res.transitions if t.get("from") == "ok"]
    first = transition_rows(res, ups[:1])
    configured = configured_setting(res)
    pl = res.pipeline
    chans = ", ".join(f"{c} = {channel_label(pl, c)}" for c in (pl.columns if pl else ()))
    refs = [r.res.recording for r in runs[1:]]
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Commissioning report: {_e(res.machine_name)} — {_e(res.recording)}</title>",
        # The diagnose page's style first: this page's own rules (body, headings) win.
        f"<style>{DIAGNOSIS_CSS}{_CSS}{CHART_CSS}</style>",
        "</head><body>",
        f"<h1>Commissioning report: {_e(res.machine_name)}</h1>",
        f'<p class="muted">Machine <code>{_e(res.machine)}</code> · recording '
        f"<code>{_e(res.recording)}</code>"
        + (f" · healthy references <code>{_e(', '.join(refs))}</code>" if refs else "")
        + f" · pipeline <code>{_e(res.pipeline_file)}</code> · model "
        f"<code>{_e(res.model or '—')}</code> ({_e(res.model_dir or 'none')}) · "
        f"channels {_e(chans or '—')} · pdm-edge {_e(__version__)} · {_e(now)}. "
        "A dry-run replay: no action was taken.</p>",
        "<h2>Summary</h2><div>",
        f'<span class="kpi"><b>{_e(summ.get("windows", res.windows))}</b>windows '
        f"({_e(fmt_num(res.hop_s, 3))} s apart)</span>",
        f'<span class="kpi"><b>{len(res.transitions)}</b>alarm transitions</span>',
        f'<span class="kpi"><b class="st-{_e(final)}">{_e(final.upper())}</b>final state</span>',
        f'<span class="kpi"><b>{_e(first[0]["from start, s"] + " s" if first else "none")}</b>'
        "first alarm (from the start)</span>",
        f'<span class="kpi"><b>{_e(diagnosis_words(diag) or "—")}</b>diagnosis'
        + (f" (confidence {av.confidence:.2f})" if av is not None else "")
        + "</span></div>",
        "<p>Configured: "
        + _e(configured.label())
        + f"; off-delay {configured.off_windows} clear windows."
        + (
            " The score trips only with a second kind of evidence in the same window "
            "(docs/alarms.md)."
            if res.rules.trip_requires
            else ""
        )
        + "</p>",
        "<h2>What alarmed, when and why</h2>",
        _table(transition_rows(res, res.transitions)),
        "<h2>Score trend</h2>",
        _score_svg(res, configured),
        "<h2>Spectra of the deciding window</h2>",
        _spectra_section(res, diag),
        "<h2>Diagnosis (the engine's averaged spectra)</h2>",
    ]
    if av is not None:
        out.append(
            f"<p><b>{_e(diagnosis_words(av.label))}</b> — confidence {av.confidence:.2f}; "
            f"{av.windows} windows of {av.window_samples} samples at "
            f"{_e(fmt_num(av.sample_rate_hz, 5))} Hz averaged ({_e(fmt_num(av.df_hz, 3))} Hz per "
            "line). Filled lines: found significant (docs/diagnosis.md).</p>"
        )
        out.append(av.html.replace("<h2>", "<h3>").replace("</h2>", "</h3>"))
    else:
        out.append('<p class="muted">No diagnosis: ' + _e("; ".join(res.notes) or "—") + "</p>")
    out.append("<h2>What if</h2>")
    outcomes = [run_outcome(r, whatif_setting(r.res, s)) for r in runs]
    out.append(
        f"<p>Setting tried: {_e(s.label())}, off-delay {s.off_windows} windows; the state "
        "machine re-run over the stored per-window values, never acknowledged. An alarm "
        "counts at the end of the window that raised it.</p>"
    )
    out.append(_table(outcome_rows(outcomes)))
    out.append(
        "<h3>Settings compared</h3><p>The alert threshold as a value (danger and trip in "
        "the same ratio) against the on-delay (N of the last M windows). Highlighted: the "
        "setting tried above.</p>"
    )
    rows = grid_rows(grid, s.quantity)
    for r, g in zip(rows, grid, strict=True):
        r.pop("", None)
        r["_now"] = g["configured"]
    out.append(_table(rows, highlight="_now"))
    out.append(_grid_svgs(grid, s.quantity))
    if res.log:
        out.append("<h2>Log of the replay</h2>")
        out.append(
            _table(
                [
                    {k: (plain_reason(v) if isinstance(v, str) else v) for k, v in r.items()}
                    for r in res.log[:300]
                ]
            )
        )
    out.append("</body></html>")
    return "\n".join(out)
