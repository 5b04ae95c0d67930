"""The measurements of docs/diagnosis.md §11 ("A line that is not a defect"): reproduce them with

    .venv/bin/python scripts/tone_discriminator_figures.py [CWRU_DIR]

(CWRU_DIR defaults to /work/shared/datasets/cwru; read its README.) Nothing here chooses a
threshold: it measures three candidate rules that would tell a machine's own line at a
defect frequency from a bearing defect, on the recordings and on the simulator sweep.

1. CWRU, quick flags ``--nominal-rpm 1797 --bearing 6205`` (every column a 6205): for every
   channel that names a race, the named line's prominence in the averaged envelope spectrum
   (the engine's) and in the averaged acceleration spectrum at the same frequency (the
   engine's spectrum, the same ``10·log10(peak / median of the neighbourhood)``), and the
   kurtosis of the recording band-passed to the channel's envelope band (a plain scipy
   reference: 4th-order Butterworth, forward-backward, per window, median).
2. The sweep's cases (``pdm.tools.diagnosis_sweep.make_cases(540)``, fixed band and ``auto``):
   the band kurtosis of every healthy and race-fault case, and every right inner-race call
   whose only support is a one-sided shaft sideband (what a rule asking for sideband pairs
   would lose) or that has no significant 2nd or 3rd harmonic (what a rule asking for a
   harmonic family would lose).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.signal as ss
import scipy.stats as st

from pdm.config import pipeline_from_flags
from pdm.diagnose import diagnose_files
from pdm.diagnosis.resolution import choose_window
from pdm.errors import DspError
from pdm.processing import FeatureStream
from pdm.sources.base import Chunk
from pdm.sources.simulator import simulate
from pdm.tools import diagnosis_sweep as sw

STEMS = {
    "de12k": ["normal_0hp_part1of2_from48k", "IR007_0hp", "OR007at6_0hp"],
    "de48k": ["normal_0hp_part1of2", "IR007_0hp", "OR007at6_0hp"],
}
RACES = {"bearing_inner_race": "inner_race", "bearing_outer_race": "outer_race"}
F64 = npt.NDArray[np.float64]


def prominence_db(power: F64, df: float, hz: float) -> tuple[float, float]:
    """The strongest bin within ±1 bin of ``hz`` and its dB over the median of 15 Hz either
    side (3 bins left out around it)."""
    k = round(hz / df)
    k = k - 1 + int(np.argmax(power[k - 1 : k + 2]))
    half = max(8, round(15.0 / df))
    around = np.r_[power[max(1, k - half - 3) : k - 3], power[k + 4 : k + half + 4]]
    return k * df, 10.0 * math.log10(power[k] / float(np.median(around)))


def band_kurtosis(x: F64, fs: float, band: tuple[float, float], n: int) -> float:
    """Median over half-overlapping windows of ``n`` samples of the band's kurtosis (3: noise)."""
    sos = ss.butter(4, [band[0], min(band[1], 0.49 * fs)], "bandpass", fs=fs, output="sos")
    y = ss.sosfiltfilt(sos, x)
    ks = [st.kurtosis(y[i : i + n], fisher=False) for i in range(0, len(y) - n + 1, n // 2)]
    return float(np.median(ks))


def cwru(folder: Path) -> None:
    pl = pipeline_from_flags(nominal_rpm=1797.0, bearing="6205")
    print("| rate | recording | channel | named | line (Hz) | envelope (dB) | acceleration (dB) "
          "| acc − env (dB) | band kurtosis |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for rate, stems in STEMS.items():
        for stem in stems:
            path = folder / rate / f"{stem}.csv"
            (r,) = diagnose_files([str(path)], pl, display=True)
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            rows = {str(o["channel"]): o for o in r.rows()}
            for ch in r.diagnosis.channels:
                fam = RACES.get(ch.verdict.label)
                if fam is None:
                    continue
                f = next(x for x in ch.verdict.families if x.family == fam)
                line = f.lines[0]
                col = r.channels.index(ch.channel)
                _hz, acc_db = prominence_db(r.acc_g[col] ** 2, r.df_hz, line.found_hz)
                band = rows[ch.channel]["envelope_band_hz"]
                assert isinstance(band, list | tuple)
                lo, hi = float(band[0]), float(band[1])
                kurt = band_kurtosis(data[:, col], r.sample_rate_hz, (lo, hi), r.window)
                print(f"| {rate[2:]} | {stem.split('_')[0]} | {ch.channel} | {fam} | "
                      f"{line.found_hz:.2f} | {line.prominence_db:+.1f} | {acc_db:+.1f} | "
                      f"{acc_db - line.prominence_db:+.1f} | {kurt:.2f} |")  # fmt: skip


def _ok(lines: dict[str, tuple[bool, str]], name: str) -> bool:
    v = lines.get(name)
    return v is not None and v[0] and not v[1]


def sweep(band: str) -> None:
    kurt: dict[str, list[float]] = {"healthy": [], "race right": []}
    lost = 0
    no_harmonic = 0
    right_bpfi = 0
    for c in sw.make_cases(540):
        if c.kind not in ("healthy", "bpfo", "bpfi"):
            continue
        g = sw.GEOMETRIES[c.bearing]
        n = c.window or choose_window(c.fs, c.rpm / 60.0, g.defect_multiples())
        spec = sw._spec(c, n * (1 + (c.windows - 1) / 2) / c.fs + 0.01)
        x = simulate(spec)
        try:
            stream = FeatureStream(
                sw.pipeline_for(c, n, sw._band(c) if band == "fixed" else "auto"), c.fs
            )
        except DspError:
            stream = FeatureStream(sw.pipeline_for(c, n, sw._band(c)), c.fs)
        last = None
        for wf in stream.feed([Chunk(x, c.fs, spec.start_time, spec.channels)]):
            last = wf.diagnosis
        assert last is not None
        right = sw.outcome(c.truth, last.label, c.extra) == "right"
        k = band_kurtosis(np.asarray(x[:, 0], dtype=np.float64), c.fs, sw._band(c), n)
        if c.kind == "healthy":
            kurt["healthy"].append(k)
        elif right:
            kurt["race right"].append(k)
        if c.kind != "bpfi" or not right:
            continue
        right_bpfi += 1
        ch = next(x for x in last.channels if x.channel == last.channel)
        fam = next(f for f in ch.verdict.families if f.family == "inner_race")
        lines = {ln.name: (ln.significant, ln.shared_with) for ln in fam.lines}
        harmonic = any(_ok(lines, f"BPFI {h}×") for h in (2, 3))
        pair = any(
            _ok(lines, f"BPFI {h}× − {d}×shaft") and _ok(lines, f"BPFI {h}× + {d}×shaft")
            for h in (1, 2, 3)
            for d in (1, 2)
        )
        lost += not (harmonic or pair)
        no_harmonic += not harmonic
    print(f"sweep, {band} band: band kurtosis, healthy {len(kurt['healthy'])} cases "
          f"{min(kurt['healthy']):.2f}–{max(kurt['healthy']):.2f}; race faults named right "
          f"{len(kurt['race right'])}, of them below a kurtosis of "
          + ", ".join(f"{t}: {sum(v < t for v in kurt['race right'])}" for t in (3.05, 3.2, 3.5))
          + f"; right inner-race calls {right_bpfi}, supported only by one-sided sidebands "
          f"{lost}, with no significant 2nd or 3rd harmonic {no_harmonic}")  # fmt: skip


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/cwru")
    cwru(folder)
    print()
    for band in ("fixed", "auto"):
        sweep(band)


if __name__ == "__main__":
    main()
