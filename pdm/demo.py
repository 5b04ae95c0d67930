"""The quick-start job: replay a fixture recording through a pipeline and say what it found.

No model yet (that comes with the anomaly-model issue): "what it found" is
read straight off the features: the ISO 10816-3 zone of the velocity RMS, and
each bearing-defect line of the envelope spectrum compared with its level in
the first windows of the recording (the running-in baseline).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import TextIO

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


def run_demo(
    recording: Path | None = None, pipeline: Path | None = None, out: TextIO | None = None
) -> int:
    """Replay ``recording`` through ``pipeline``, print a window table and the findings."""
    out = out or sys.stdout
    recording = recording or DEFAULT_RECORDING
    pl = load_pipeline(pipeline or DEFAULT_PIPELINE)
    rec, pl = open_recording(recording, pl)
    results: list[WindowFeatures] = []
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz)
        print(
            f"pdm-edge demo: {pl.machine.name} ({pl.machine.id}) ← {recording.name}, "
            f"{rec.sample_rate_hz:g} Hz, channels {', '.join(pl.columns)}",
            file=out,
        )
        print(
            f"{'window':>6} {'t (s)':>7} {'channel':>8} {'v_rms mm/s':>10} {'zone':>4} {'rms g':>7} "
            f"{'kurt':>5} {'BPFO g':>7} {'BPFI g':>7} {'rpm':>6}",
            file=out,
        )
        t0: float | None = None
        for wf in stream.feed(rec.chunks()):
            results.append(wf)
            t0 = wf.window.t_start if t0 is None else t0
            for r in wf.rows():
                print(
                    f"{r['window']:>6} {wf.window.t_start - t0:>7.2f} {r['channel']:>8} "
                    f"{_f(r['velocity_rms_mm_s'], 10, 2)} {r['iso_zone']:>4} {_f(r['rms_g'], 7, 3)} "
                    f"{_f(r['kurtosis'], 5, 1)} {_f(r['env_bpfo_g'], 7, 4)} {_f(r['env_bpfi_g'], 7, 4)} "
                    f"{_f(r['shaft_speed_rpm'], 6, 0)}",
                    file=out,
                )
    print("", file=out)
    for line in findings(results, pl.machine.iso_group, pl.machine.foundation):
        print(line, file=out)
    print(
        f"{stream.windows} windows, {stream.invalid_windows} invalid, {len(stream.events)} resets.",
        file=out,
    )
    return 0


def _f(v: object, width: int, digits: int) -> str:
    return f"{v:>{width}.{digits}f}" if isinstance(v, float) else f"{'-':>{width}}"


def findings(results: list[WindowFeatures], group: int, foundation: str) -> list[str]:
    """Plain-language findings from the feature rows of a recording."""
    rows = [r for wf in results if wf.features.valid for r in wf.rows()]
    if not rows:
        return ["No valid window: nothing to judge."]
    lines = []
    worst = max(rows, key=lambda r: r["velocity_rms_mm_s"] or 0.0)
    lines.append(
        f"ISO 10816-3 (group {group}, {foundation}): worst velocity {worst['velocity_rms_mm_s']:.2f} mm/s "
        f"RMS on {worst['channel']} → zone {worst['iso_zone']}."
    )
    found = False
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
                    found = True
                    lines.append(
                        f"{ch}: envelope line of a {label} defect rose from {base[key]:.4f} g to "
                        f"{r[key]:.4f} g at window {r['window']} ({r['t_start']})."
                    )
    if not found:
        lines.append("No bearing-defect line rose above its level in the first windows.")
    return lines
