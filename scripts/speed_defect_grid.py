"""Does a bearing's own defect line set the running speed? (docs/diagnosis.md §1, the running
speed; issue 18.) A grid of simulated machines through ``pdm-edge diagnose``'s path:

    .venv/bin/python scripts/speed_defect_grid.py [--faults bpfo[,bsf]] [--duration 6]

bearings 6203, 6204, 6205, 6309, NU206, 22205 × speeds 600, 1480, 2700, 3600, 6000 r/min ×
sample rates 10, 25.6, 51.2, 100 kHz × with and without a 1× unbalance line (0.05 g) × the
speed given (``--rpm``) or searched (``--nominal-rpm``, ± 5 %), each fault at 0.15 g over
0.05 g of noise, the resonance at a quarter of the rate (at most 12 kHz), seed 7 — the
simulator's shaft runs at exactly the speed asked. Prints per case the reported speed's
error (%), the verdict and the BPFO/BPFI/2×BSF lines claimed to sit on a shaft harmonic, then
a tally. Run the same command with ``PYTHONPATH`` set to another checkout to compare.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np

import pdm
from pdm.config import pipeline_from_flags
from pdm.diagnose import diagnose_files
from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

BEARINGS = ("6203", "6204", "6205", "6309", "NU206", "22205")
RPMS = (600.0, 1480.0, 2700.0, 3600.0, 6000.0)
RATES = (10000.0, 25600.0, 51200.0, 100000.0)
TRUTH = {"bpfo": "bearing_outer_race", "bpfi": "bearing_inner_race", "bsf": "bearing_ball"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", default="bpfo")
    ap.add_argument("--duration", type=float, default=6.0)
    args = ap.parse_args()
    print(f"# pdm from {Path(pdm.__file__).parent}")
    tally: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.faults.split(","):
            for b in BEARINGS:
                for rpm in RPMS:
                    for fs in RATES:
                        for unb in (0.0, 0.05):
                            faults = [FaultSpec(kind, 0.15)]
                            if unb:
                                faults.append(FaultSpec("unbalance", unb))
                            spec = SimSpec(
                                fs=fs, duration_s=args.duration, rpm=rpm,
                                bearing=lookup_bearing(b), channels=("a",), noise_rms_g=0.05,
                                resonance_hz=min(0.25 * fs, 12000.0), faults=tuple(faults),
                                seed=7,
                            )  # fmt: skip
                            x = simulate(spec)[:, 0]
                            # The per-window search alone (16384 samples, 50 % overlap,
                            # ± 5 %): windows whose speed stood more than half a bin of 3×
                            # off the shaft's (a measurement, and wrong).
                            n = 16384
                            fx = FeatureExtractor(fs, n, [ChannelSpec("a", lookup_bearing(b))],
                                                  rpm_range=(0.95 * rpm, 1.05 * rpm))  # fmt: skip
                            wkey = f"{kind} {'1x' if unb else 'no1x'} windows"
                            for s0 in range(0, x.size - n + 1, n // 2):
                                fr = fx.extract(x[None, s0 : s0 + n].astype(np.float32))
                                off = abs(fr.shaft_speed_rpm - rpm) / 60.0 > fs / n / 6
                                tally[wkey] += 1
                                tally[wkey + " measured"] += fr.speed_measured
                                tally[wkey + " measured and off"] += fr.speed_measured and off
                            path = Path(tmp) / "r.csv"
                            head = f"# sample_rate_hz={fs:g}\na"
                            np.savetxt(path, x, fmt="%.6g", header=head, comments="")
                            for how in ("rpm", "nominal_rpm"):
                                pl = pipeline_from_flags(bearing=b, **{how: rpm})  # type: ignore[arg-type]
                                (res,) = diagnose_files([str(path)], pl)
                                ch = res.diagnosis.channels[0]
                                err = 100.0 * (ch.shaft_speed_rpm / rpm - 1.0)
                                on = [
                                    f"{ln.name}@{ln.at_shaft}x"
                                    for f in ch.families
                                    if f.family in ("outer_race", "inner_race", "ball")
                                    for ln in f.lines
                                    if ln.at_shaft and ln.significant
                                ]
                                ok = (
                                    ch.label == TRUTH[kind]
                                    or (kind == "bsf" and not ch.label.startswith("bearing_"))
                                    or (kind == "bsf" and ch.label == "bearing_uncertain")
                                )
                                key = f"{kind} {'1x' if unb else 'no1x'} {how}"
                                tally[key + " cases"] += 1
                                tally[key + " speed>0.2%"] += abs(err) > 0.2
                                tally[key + " named"] += ch.label == TRUTH[kind]
                                tally[key + " ok"] += ok
                                tally[key + " on-shaft claims"] += bool(on)
                                print(
                                    f"{kind} {b} {rpm:g} {fs / 1000:g}kHz "
                                    f"{'1x' if unb else 'no1x'} {how}: {err:+.3f}% "
                                    f"{ch.label} {' '.join(on)}",
                                    flush=True,
                                )
    print("\n# tally")
    for k in sorted(tally):
        print(f"{k}: {tally[k]}")


if __name__ == "__main__":
    main()
