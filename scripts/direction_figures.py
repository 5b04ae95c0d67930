"""Scores of quieter healthy machines and of faults, per detector (docs/models.md, "Direction").

Trains each detector on fixtures/healthy.csv.gz with pipelines/demo.toml exactly as
``pdm-edge train`` does, then scores simulated recordings (3 s each, seeds 21-23):
the demo machine as trained, 6 dB quieter (noise and vibration halved), with 0.01 g
sensor noise instead of 0.02 g, and with an outer-race fault (0.8 g impacts).

    .venv/bin/python scripts/direction_figures.py
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from pdm.config import load_pipeline
from pdm.processing import FeatureStream
from pdm.scoring.detectors import DETECTORS
from pdm.scoring.runtime import Model, WindowScorer
from pdm.scoring.train import collect, train
from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

REPO = Path(__file__).resolve().parents[1]
U = FaultSpec("unbalance", 0.05)
BASE = SimSpec(duration_s=3.0, lsb_g=0.002)
CASES = {
    "as trained": dict(faults=(U,)),
    "6 dB quieter": dict(noise_rms_g=0.01, faults=(FaultSpec("unbalance", 0.025),)),
    "noise 0.01 g": dict(noise_rms_g=0.01, faults=(U,)),
    "outer race 0.8 g": dict(faults=(U, FaultSpec("bpfo", 0.8))),
}


def main() -> None:
    pl = load_pipeline(REPO / "pipelines" / "demo.toml")
    ts = collect([REPO / "fixtures" / "healthy.csv.gz"], pl)
    tmp = Path(tempfile.mkdtemp())
    print("| detector | " + " | ".join(f"{c}: median [min, max]" for c in CASES) + " |")
    print("|---" * (len(CASES) + 1) + "|")
    for kind in DETECTORS:
        train(ts, tmp / kind, detector=kind, alerts_per_week=1.0, holdout=0.3)
        model = Model.load(tmp / kind, pl, 25600.0)
        cells = []
        for case in CASES.values():
            s = []
            for seed in (21, 22, 23):
                with Simulator(dataclasses.replace(BASE, seed=seed, **case)) as src:
                    fs = FeatureStream(pl, 25600.0)
                    frames = list(fs.feed(src.chunks()))
                rows = WindowScorer(model, pl.columns, fs.extractor.names).rows(frames)
                s += [r["score"] for r in rows if r["valid"]]
            a = np.array(s)
            cells.append(f"{np.median(a):.3g} [{a.min():.3g}, {a.max():.3g}]")
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
