"""How far healthy teach-ins are from a false departure (docs/models.md, Teach-in).

Runs the stationarity test (pdm/scoring/stationarity.py) on simulated healthy machines:
3 window settings (4096 samples at 50 % overlap for 4 s; 8192 at 75 % for 20 s and 60 s)
× 900/1480/2950 r/min × 0.005/0.02/0.05 g noise × 3 seeds, with every threshold divided
by SCALE, and prints the departures found ("-": none).

    .venv/bin/python scripts/teachin_figures.py 1    # the thresholds as they are
    .venv/bin/python scripts/teachin_figures.py 2    # halved: where false departures start
"""

from __future__ import annotations

import sys

import numpy as np

import pdm.scoring.stationarity as st
from pdm.config import Pipeline, load_pipeline
from pdm.processing import FeatureStream
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names
from pdm.sources.simulator import FaultSpec, SimSpec, Simulator


def main(scale: float) -> None:
    st.K_SPREAD /= scale
    st.MIN_CHANGE /= scale
    st.Z_NOISE /= scale
    base = load_pipeline("pipelines/demo.toml").model_dump()
    for window, overlap, duration in [(4096, 0.5, 4.0), (8192, 0.75, 20.0), (8192, 0.75, 60.0)]:
        for rpm in (900.0, 1480.0, 2950.0):
            data = {**base, "acquisition": {**base["acquisition"]}, "machine": {**base["machine"]}}
            data["acquisition"].update(window_samples=window, overlap=overlap)
            data["machine"]["speed"] = {"rpm": rpm}
            pl = Pipeline.model_validate(data)
            for noise in (0.005, 0.02, 0.05):
                found = []
                for seed in (50, 51, 52):
                    spec = SimSpec(
                        duration_s=duration, rpm=rpm, noise_rms_g=noise, lsb_g=0.002, seed=seed,
                        faults=(FaultSpec("unbalance", 0.05 * rpm / 1480.0),),
                    )  # fmt: skip
                    fs = FeatureStream(pl, spec.fs)
                    with Simulator(spec, chunk_samples=16384) as src:
                        frames = [f for f in fs.feed(src.chunks()) if f.features.valid]
                    avail = frames[0].features.names
                    names = vector_names(pl.columns, avail, MODEL_FEATURES)
                    x = FeatureVectorizer(names, pl.columns, avail).matrix(
                        [f.features for f in frames]
                    )
                    keep = np.isfinite(x).all(axis=0)
                    dep = st.find_departure(
                        x[:, keep],
                        [f.window.t_start for f in frames],
                        [n for n, k in zip(names, keep, strict=True) if k],
                        windows_per_sample=window / pl.acquisition.hop_samples,
                    )
                    found.append(
                        "-" if dep is None else f"{dep.kind} {dep.feature} {dep.change:+.2f}"
                    )
                print(f"{window} {overlap:.0%} {duration:g} s, {rpm:g} r/min, {noise} g: {found}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
