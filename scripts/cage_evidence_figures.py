"""What the averaged envelope spectrum holds of issue 18's unflagged faults (docs/diagnosis.md
§13, "Through score: what is left"): on the recordings ``scripts/diagnosis_outside.py --only
rigs --keep DIR`` leaves behind, each recording through the path ``pdm-edge score`` takes
(the model's window, its healthy spectra), the average at the end of the recording:

    .venv/bin/python scripts/cage_evidence_figures.py DIR/pdm-outside-*/rig? [--files ftf0,healthy0]

Per recording: the independent windows ``K`` the average is worth; the cage family's
fundamental as the diagnosis read it (dB over its reference, and the threshold); the
statistical threshold alone (Gamma(K) floor, p = 0.01 over the fundamental's bins); and an
*oracle comb*: the mean over FTF's first eight harmonics of the power of the two bins about
each, at the simulator's true cage rate (from the recording's ``.truth.json``), over twice
the median of the bins beside it (± 3–12 bins) — the most any comb test that does not know
the rate could find. Its scatter in healthy noise is about ``4.34 · √((1 + ρ) / (2 K · 8))``
dB (ρ ≈ 0.44, the power correlation of neighbouring Hann bins). Nothing is chosen here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from pdm.config import pipeline_from_flags
from pdm.diagnosis.lines import line_threshold_db
from pdm.dsp.bearings import BearingGeometry
from pdm.processing import FeatureStream, open_recording
from pdm.scoring.runtime import Model


def oracle_comb_db(env: np.ndarray, df: float, rate_hz: float, harmonics: int = 8) -> float:
    """Mean, over ``harmonics`` of ``rate_hz``, of the two bins' power about each over twice
    the median of the bins 3–12 beside them (from bin 1), dB (``env``: (n,) averaged envelope power)."""
    ratios = []
    for h in range(1, harmonics + 1):
        i = math.floor(h * rate_hz / df)
        if i + 14 >= env.size:
            break
        beside = np.r_[env[max(1, i - 12) : max(1, i - 2)], env[i + 4 : i + 14]]
        ratios.append((env[i] + env[i + 1]) / (2.0 * float(np.median(beside))))
    return 10.0 * math.log10(float(np.mean(ratios))) if ratios else math.nan


def measure(rig_dir: Path, stem: str) -> str:
    path = rig_dir / f"{stem}.csv"
    truth = json.loads(path.with_suffix(".truth.json").read_text())["spec"]
    b = truth["bearing"]
    geom = BearingGeometry(b["rolling_elements"], b["ball_diameter_mm"], b["pitch_diameter_mm"],
                           b["contact_angle_deg"])  # fmt: skip
    ftf = geom.defect_frequencies_hz(truth["rpm"] / 60.0)["ftf"]
    # The rig's nominal speed, as it was trained (its middle snapshot ran at it).
    nominal = json.loads((rig_dir / "train1.truth.json").read_text())["spec"]["rpm"]
    pl = pipeline_from_flags(bearing=b["designation"], nominal_rpm=nominal)
    rec, pl = open_recording(path, pl)
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz)
        model = Model.load(rig_dir / "model", pl, rec.sample_rate_hz)
        assert stream.engine is not None
        stream.engine.set_baseline(model.baseline)
        for _w in [*stream.feed(rec.chunks()), *stream.flush()]:
            pass
        engine = stream.engine
        diag = engine.judge()
        avg = engine.average.state()
    assert avg.env is not None
    ch = diag.channels[0]
    cage = next((f for f in ch.families if f.family == "cage"), None)
    fund = cage.lines[0] if cage is not None and cage.lines else None
    bins = int(2 * 0.03 * ftf / avg.df) + 3
    stat = max(3.0, line_threshold_db(avg.k_env, bins, 0.01))
    sigma = 4.343 * math.sqrt(1.44 / (2 * avg.k_env * 8))
    said = f"{fund.prominence_db:+.1f} dB (needs {fund.threshold_db:.1f})" if fund else "—"
    return (f"| {rig_dir.name} | {stem} | {avg.k_env:.1f} | {ch.label} | FTF 1× {said} "
            f"| {stat:.1f} | {oracle_comb_db(avg.env[0], avg.df, ftf):+.2f} (σ {sigma:.2f}) |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("rigs", nargs="+", type=Path, help="rig folders of diagnosis_outside --keep")
    ap.add_argument("--files", default="healthy0,healthy1,ftf0,ftf1")
    args = ap.parse_args(argv)
    print("| rig | recording | K | diagnosis (score's path) | cage fundamental as read "
          "| statistics alone, dB | oracle comb, dB |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for d in args.rigs:
        for stem in args.files.split(","):
            if (d / f"{stem}.csv").is_file():
                print(measure(d, stem), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
