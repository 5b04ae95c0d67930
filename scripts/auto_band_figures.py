"""The automatic envelope band's figures in docs/models.md: reproduce them with

    .venv/bin/python scripts/auto_band_figures.py [CWRU_DIR]

1. CWRU drive-end recordings (48 and 12 kHz): median env_bpfo_g / env_bpfi_g over 50 %-overlapping
   windows (16384 samples at 48 kHz, 8192 at 12 kHz, speed searched 1700–1850 r/min), with the
   automatic band (re-chosen every window against the previous choice) and the fixed 2–5 kHz band.
2. Simulated resonances (pdm.sources.simulator): the band chosen on one window, whether it holds
   the resonance, and the strongest defect family's prominence there against the best candidate's.
3. Cost of one choice and of the features of one window (min of repeated timings, one core).
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

B = lookup_bearing("6205")


def cwru(folder: Path) -> None:
    print(
        "| recording | band (auto) | criterion, score dB | env_bpfo_g auto / fixed | env_bpfi_g auto / fixed |"
    )
    print("|---|---|---|---|---|")
    for rate, fs, n in (("de48k", 48000.0, 16384), ("de12k", 12000.0, 8192)):
        for path in sorted((folder / rate).glob("*.csv")):
            x = np.loadtxt(path, delimiter=",", skiprows=1, usecols=0, dtype=np.float32)
            med = {}
            for band in ("auto", (2000.0, 5000.0)):
                fx = FeatureExtractor(fs, n, [ChannelSpec("DE_g", B)], rpm_range=(1700.0, 1850.0),
                                      envelope_band_hz=band)  # fmt: skip
                state, rows, bands = None, [], []
                for i in range(0, len(x) - n + 1, n // 2):
                    frame = fx.extract(x[None, i : i + n], band_state=state)
                    state = frame.band_choice
                    rows.append(frame.as_dicts()[0])
                    bands.append((frame.envelope_band_hz, state))
                med[str(band)] = (
                    float(np.median([r["env_bpfo_g"] for r in rows])),
                    float(np.median([r["env_bpfi_g"] for r in rows])),
                    bands,
                )
            a, f = med["auto"], med[str((2000.0, 5000.0))]
            st = a[2][-1][1]
            used = sorted({f"{b[0][0]:.0f}–{b[0][1]:.0f}" for b in a[2]})
            print(f"| {rate}/{path.stem} | {', '.join(used)} Hz | {st.criterion}, {st.score_db:.1f} "
                  f"| {a[0]:.4f} / {f[0]:.4f} | {a[1]:.4f} / {f[1]:.4f} |")  # fmt: skip


def simulated() -> None:
    print(
        "\n| fs kHz | resonance kHz | noise g | fault | band chosen Hz | criterion | holds it | prominence dB: chosen / best candidate |"
    )
    print("|---|---|---|---|---|---|---|---|")
    n = 16384
    for fs in (10000.0, 25600.0, 48000.0, 100000.0):
        for res in (2000.0, 5000.0, 9000.0, 15000.0, 30000.0):
            if res > 0.8 * fs / 2:
                continue
            for noise in (0.05, 0.2, 0.5):
                for kind in ("bpfo", "bpfi"):
                    spec = SimSpec(fs=fs, duration_s=n / fs, rpm=1480.0, channels=("x",), seed=3,
                                   resonance_hz=res, noise_rms_g=noise,
                                   faults=(FaultSpec("unbalance", 0.2), FaultSpec(kind, 0.5)))  # fmt: skip
                    x = simulate(spec)[:n].T.astype(np.float32)
                    fx = FeatureExtractor(
                        fs, n, [ChannelSpec("x", B)], rpm=1480.0, envelope_band_hz="auto"
                    )
                    frame = fx.extract(x)
                    st = frame.band_choice
                    assert st is not None and fx._band_scorer is not None
                    s = sfft.rfft((x - x.mean()) * fx.window, axis=-1)
                    sc = fx._band_scorer(s, fx._line_mult * (1480.0 / 60 / fx.df), 0.03)
                    got = sc.lines_db[0, sc.bands.index(st.band)]
                    lo, hi = frame.envelope_band_hz
                    print(f"| {fs / 1000:g} | {res / 1000:g} | {noise:g} | {kind} | {lo:.0f}–{hi:.0f} | "
                          f"{st.criterion} | {'yes' if lo <= res <= hi else 'no'} | {got:.1f} / {np.nanmax(sc.lines_db):.1f} |")  # fmt: skip


def _best_us(call: Callable[[], object]) -> float:
    """Microseconds of one call: the minimum over 15 rounds of 5."""
    return min(timeit.repeat(call, number=5, repeat=15)) / 5 * 1e6


def cost() -> None:
    print("\n| fs, window, channels | candidates | one choice µs | features of one window µs |")
    print("|---|---|---|---|")
    for fs, n, ch in (
        (25600.0, 16384, 3),
        (48000.0, 16384, 1),
        (12000.0, 4096, 1),
        (100000.0, 16384, 1),
    ):
        fx = FeatureExtractor(fs, n, [ChannelSpec(f"c{i}", B) for i in range(ch)], rpm=1797.0,
                              envelope_band_hz="auto")  # fmt: skip
        assert fx._band_scorer is not None
        x = np.random.default_rng(0).normal(size=(ch, n)).astype(np.float32)
        spec = sfft.rfft(x * fx.window, axis=-1)
        band = fx._band_scorer.bands[0]
        t_choose = _best_us(lambda fx=fx, spec=spec: fx.choose_band(spec, 1797 / 60))
        t_ext = _best_us(lambda fx=fx, x=x, band=band: fx.extract(x, envelope_band_hz=band))
        print(
            f"| {fs / 1000:g} kHz, {n}, {ch} | {len(fx._band_scorer.bands)} | {t_choose:.0f} | {t_ext:.0f} |"
        )


if __name__ == "__main__":
    folder = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cwru"
    )
    if (folder / "de48k").is_dir():
        cwru(folder)
    else:
        print(f"(no CWRU recordings at {folder})")
    simulated()
    cost()
