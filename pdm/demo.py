"""The quick-start job: replay a fixture recording through a pipeline and say what it found.

With the pipeline's model (``[model] path``) each window is scored and
explained exactly as ``pdm-edge score`` does; the table shows one row every
``EVERY`` windows plus every window whose state changes. Without a model,
"what it found" is read straight off the features: the ISO 10816-3 zone, and
each bearing-defect line of the envelope spectrum against its level in the
first windows of the recording.
"""

from __future__ import annotations

import collections
import statistics
import sys
from pathlib import Path
from typing import Any, TextIO

from pdm.config import load_pipeline
from pdm.processing import FeatureStream, WindowFeatures, open_recording

__all__ = ["run_demo"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECORDING = REPO / "fixtures" / "outer_race.csv.gz"
DEFAULT_PIPELINE = REPO / "pipelines" / "demo.toml"
DEFECT_NAMES = {
    "bpfo": "outer race (BPFO)",
    "bpfi": "inner race (BPFI)",
    "bsf": "ball (BSF)",
    "ftf": "cage (FTF)",
}
BASELINE_WINDOWS = 3
RISE_FACTOR = 5.0
EVERY = 4


def run_demo(
    recording: Path | None = None, pipeline: Path | None = None, out: TextIO | None = None
) -> int:
    """Replay ``recording`` through ``pipeline``, print a window table and the findings."""
    from pdm.scoring.runtime import Model, WindowScorer

    out = out or sys.stdout
    recording = recording or DEFAULT_RECORDING
    pl = load_pipeline(pipeline or DEFAULT_PIPELINE)
    rec, pl = open_recording(recording, pl)
    results: list[WindowFeatures] = []
    scored: list[dict[str, Any]] = []
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz)
        model_dir = pl.model_dir
        model = None
        if model_dir is not None and (model_dir / "model.json").exists():
            model = Model.load(model_dir, pl, rec.sample_rate_hz)
        print(
            f"pdm-edge demo: {pl.machine.name} ({pl.machine.id}) ← {recording.name}, "
            f"{rec.sample_rate_hz:g} Hz, channels {', '.join(pl.columns)}; "
            + (
                f"model {model_dir} ({model.card.get('model', {}).get('detector', 'unknown')}, version {model.version})"
                if model
                else "no model"
            ),
            file=out,
        )
        print(
            f"{'window':>6} {'t (s)':>6} {'score':>9} {'state':>7} {'diagnosis':<19} "
            f"{'v_rms mm/s':>10} {'zone':>4} {'kurt':>5} {'BPFO g':>7} {'BPFI g':>7}",
            file=out,
        )
        for wf in stream.feed(rec.chunks()):
            results.append(wf)
        scorer = WindowScorer(model, pl.columns, stream.extractor.names) if model else None
        rows = scorer.rows(results) if scorer else [{} for _ in results]
        scored = [r for r in rows if r]
        t0 = results[0].window.t_start if results else 0.0
        last_state = None
        for wf, r in zip(results, rows, strict=True):
            state = r.get("state")
            if wf.window.index % EVERY and state == last_state:
                continue
            last_state = state
            ch = wf.features.as_dicts()
            worst = max(ch, key=lambda c: c["velocity_rms_mm_s"] or 0.0)
            print(
                f"{wf.window.index:>6} {wf.window.t_start - t0:>6.2f} {_f(r.get('score'), 9, 2)} "
                f"{state or '-':>7} {r.get('diagnosis') or '-':<19} "
                f"{_f(worst['velocity_rms_mm_s'], 10, 2)} {worst['iso_zone']:>4} "
                f"{_f(max((c['kurtosis'] or 0.0) for c in ch), 5, 1)} "
                f"{_f(max((c['env_bpfo_g'] or 0.0) for c in ch), 7, 4)} "
                f"{_f(max((c['env_bpfi_g'] or 0.0) for c in ch), 7, 4)}",
                file=out,
            )
    print("", file=out)
    lines = model_findings(scored, t0) if scored else findings(results)
    for line in [iso_finding(results, pl.machine.iso_group, pl.machine.foundation), *lines]:
        print(line, file=out)
    print(
        f"{stream.windows} windows, {stream.invalid_windows} invalid, {len(stream.events)} resets.",
        file=out,
    )
    return 0


def _f(v: object, width: int, digits: int) -> str:
    return f"{v:>{width}.{digits}f}" if isinstance(v, float) else f"{'-':>{width}}"


def iso_finding(results: list[WindowFeatures], group: int, foundation: str) -> str:
    rows = [r for wf in results if wf.features.valid for r in wf.rows()]
    if not rows:
        return "No valid window: nothing to judge."
    worst = max(rows, key=lambda r: r["velocity_rms_mm_s"] or 0.0)
    return (
        f"ISO 10816-3 (group {group}, {foundation}): worst velocity {worst['velocity_rms_mm_s']:.2f} mm/s "
        f"RMS on {worst['channel']} → zone {worst['iso_zone']}."
    )


def model_findings(rows: list[dict[str, Any]], t0: float) -> list[str]:
    """What the model says: when the machine left its healthy self, how far, and why."""
    alerting = [r for r in rows if r.get("state") in ("alert", "danger")]
    valid = [r for r in rows if r.get("valid")]
    if not alerting:
        top = max((r["score"] for r in valid), default=float("nan"))
        return [
            f"Anomaly model: every window within the healthy baseline (highest score {top:.2f}; alert at 1.0)."
        ]
    first = alerting[0]
    labels = collections.Counter(r["diagnosis"] for r in alerting)
    label, n = labels.most_common(1)[0]
    lines = [
        f"Anomaly model: {len(alerting)} of {len(valid)} windows above the alert threshold, the first "
        f"at window {first['window']} ({first['t_start']}), score {first['score']:.3g} ({first['state']}).",
        f"Diagnosis: {label} in {n} of {len(alerting)} alerting windows.",
    ]
    example = next(r for r in alerting if r["diagnosis"] == label)
    lines += [f"  evidence (window {example['window']}): {e}" for e in example["evidence"][:2]]
    tops = ", ".join(f"{f['feature']} z={f['z']:+.1f}" for f in example["top_features"][:3])
    lines.append(f"  most deviant features: {tops}")
    return lines


def findings(results: list[WindowFeatures]) -> list[str]:
    """Without a model: each defect line against its level in the first windows."""
    rows = [r for wf in results if wf.features.valid for r in wf.rows()]
    lines: list[str] = []
    for ch in dict.fromkeys(r["channel"] for r in rows):
        ch_rows = [r for r in rows if r["channel"] == ch]
        if len(ch_rows) <= BASELINE_WINDOWS or ch_rows[0]["env_bpfo_g"] is None:
            continue
        keys = [f"env_{d}_g" for d in DEFECT_NAMES]
        base = {k: statistics.median(r[k] for r in ch_rows[:BASELINE_WINDOWS]) for k in keys}
        reported = set()
        for r in ch_rows[BASELINE_WINDOWS:]:
            for d, label in DEFECT_NAMES.items():
                key = f"env_{d}_g"
                # A line counts when it rose well above its own baseline AND stands
                # out over the other defect lines: impacts lift the whole envelope
                # floor, so a rise alone would name every defect at once.
                rose = r[key] > RISE_FACTOR * max(base[key], 1e-6)
                stands_out = all(r[key] >= 2.0 * r[k] for k in keys if k != key)
                if rose and stands_out and d not in reported:
                    reported.add(d)
                    lines.append(
                        f"{ch}: envelope line of a {label} defect rose from {base[key]:.4f} g to "
                        f"{r[key]:.4f} g at window {r['window']} ({r['t_start']})."
                    )
    return lines or ["No bearing-defect line rose above its level in the first windows."]
