"""The figures of docs/diagnosis.md §13 "fetone": is a race's envelope line and its ± 1×
sideband pair the beat of sharp tones in the demodulation band, and how symmetric is the pair
on the engine's interpolated frequencies — at the engine's speed scaled by given offsets.

For each channel of each recording (``diagnose``'s quick flags, a 6205 at 1797 r/min):

* the band's sharp tones (local maxima ≥ 10 dB over the median of ± 24 bins) and their share
  of the band's power, in Hann windows as ``diagnose`` takes them (50 % overlap);
* for BPFI / BPFO 1× and BPFI 1× ± 1×shaft as the engine found them: the power at that bin of
  the envelope of the band's sharp tones alone (each window's own complex bins, ± 2 bins
  around each tone, the rest zeroed) against the full envelope's line over its floor, dB;
* the prominence of BPFI 1× and its ± 1× sidebands as the engine reads them: the search
  range's strongest bin's, and the bin found's own (0 where it is no local maximum);
* the inner race's −1×, carrier, +1× as the engine interpolates them
  (``pdm.diagnosis.bearing._interpolated_hz``) and the pair's asymmetry
  ``(f₋ + f₊ − 2 f_c) / df``, interpolated and on the bins found.

    .venv/bin/python scripts/sideband_pair_figures.py FILE FS WINDOW [--offsets=-0.3,0,0.1]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import pdm.diagnosis.bearing as bearing_mod
import pdm.diagnosis.engine as engine_mod
from pdm.config import pipeline_from_flags
from pdm.diagnose import diagnose_files

LINES = ("BPFO 1×", "BPFI 1×", "BPFI 1× − 1×shaft", "BPFI 1× + 1×shaft")


def _median_floor(p: np.ndarray, k: int) -> float:
    return float(np.median(np.r_[p[max(0, k - 24) : max(0, k - 3)], p[k + 4 : k + 25]]))


def _envelopes(specs: list[np.ndarray], k1: int, k2: int, n: int, keep: np.ndarray) -> np.ndarray:
    """Averaged envelope power of the band ``[k1, k2)`` with its bins weighted by ``keep``."""
    w = np.hanning(n + 1)[:-1]
    out = []
    for x in specs:
        z = np.zeros(n, complex)
        z[: k2 - k1] = x[k1:k2] * keep
        a = np.abs(np.fft.ifft(z)) * n
        out.append(np.abs(np.fft.rfft(a - a.mean() / w.mean() * w)) ** 2)
    return np.asarray(np.mean(out, axis=0))


def run(path: str, fs: float, n: int, off: float) -> None:
    seen: list[tuple[np.ndarray, np.ndarray, float]] = []
    orig_i: Callable[..., Any] = bearing_mod._interpolated_hz
    orig_r: Callable[..., Any] = engine_mod.refine_speed

    def spy(env: np.ndarray, found: np.ndarray, df: float) -> np.ndarray:
        f = orig_i(env, found, df)
        seen.append((found.copy(), f.copy(), df))
        return np.asarray(f)

    orig_t: Callable[..., Any] = bearing_mod.impact_train
    reads: list[tuple[list[str], np.ndarray, np.ndarray]] = []

    def spy_t(lay: Any, prom: np.ndarray, *a: Any, **k: Any) -> Any:
        if not reads and len(a) >= 8 and a[7] is not None:  # prominence: range's, own bin's
            reads.append((list(lay.names), prom.copy(), np.asarray(a[7]).copy()))
        return orig_t(lay, prom, *a, **k)

    bearing_mod._interpolated_hz = spy  # type: ignore[assignment]
    bearing_mod.impact_train = spy_t  # type: ignore[assignment]
    engine_mod.refine_speed = lambda *a, **k: orig_r(*a, **k) * (1.0 + off / 100.0)  # type: ignore[assignment]
    try:
        pl = pipeline_from_flags(nominal_rpm=1797.0, bearing="6205", fs=fs)
        (r,) = diagnose_files([path], pl)
    finally:
        bearing_mod._interpolated_hz = orig_i  # type: ignore[assignment]
        bearing_mod.impact_train = orig_t  # type: ignore[assignment]
        engine_mod.refine_speed = orig_r  # type: ignore[assignment]
    data = pd.read_csv(path, comment="#")
    d = r.diagnosis
    print(f"== {path} (speed × {1 + off / 100:.4f}): {d.label} {d.confidence:.2f}")
    df = fs / n
    w = np.hanning(n + 1)[:-1]
    for c in d.channels:
        band = c.envelope_band_hz
        if band is None:
            continue
        x = data[c.channel].to_numpy(float)
        k1, k2 = round(band[0] / df), round(band[1] / df) + 1
        specs = [np.fft.rfft(w * x[s : s + n]) for s in range(0, len(x) - n + 1, n // 2)]
        p = np.mean([np.abs(s[k1:k2]) ** 2 for s in specs], axis=0)
        nb = k2 - k1
        peaks = [
            i
            for i in range(1, nb - 1)
            if p[i] > p[i - 1] and p[i] >= p[i + 1] and p[i] > 10.0 * _median_floor(p, i)
        ]
        keep = np.zeros(nb)
        for i in peaks:
            keep[max(0, i - 2) : i + 3] = 1.0
        full = _envelopes(specs, k1, k2, n, np.ones(nb))
        tones = _envelopes(specs, k1, k2, n, keep)
        share = 100.0 * p[keep > 0].sum() / p.sum()
        print(
            f"  {c.channel}: {c.verdict.label}, band {band[0]:.0f}–{band[1]:.0f} Hz, "
            f"{len(peaks)} tones, {share:.0f} % of the band's power"
        )
        found: dict[str, float] = {}
        for fam in c.families:
            for ln in fam.lines:
                if ln.name in LINES:
                    found[ln.name] = ln.found_hz
                    k = round(ln.found_hz / df)
                    k = k - 1 + int(np.argmax(full[k - 1 : k + 2]))
                    fl = _median_floor(full, k)
                    above = max(full[k] - fl, 1e-300)
                    print(
                        f"    {ln.name:18s} {ln.found_hz:8.2f} Hz engine {ln.prominence_db:+6.2f} dB; "
                        f"tones alone / line over floor {10 * np.log10(max(tones[k], 1e-300) / above):+6.1f} dB"
                    )
        want = [found.get(k, np.nan) for k in LINES[2:]] + [found.get("BPFI 1×", np.nan)]
        for fnd, f_at, dfe in seen[:1]:
            for row in range(fnd.shape[0]):
                idx = [np.flatnonzero(np.abs(fnd[row] - v) < 1e-6) for v in want]
                if any(i.size == 0 for i in idx):
                    continue
                lo, hi, cc = (float(f_at[row, i[0]]) for i in idx)
                print(
                    f"    interpolated −1×, carrier, +1×: {lo:.3f} {cc:.3f} {hi:.3f} Hz; asymmetry "
                    f"{(lo + hi - 2 * cc) / dfe:+.2f} bins (bins found "
                    f"{(want[0] + want[1] - 2 * want[2]) / dfe:+.2f})"
                )
                break
    for names, prom, own in reads[:1]:
        for row in range(prom.shape[0]):
            got = [
                f"{n} {prom[row, i]:+.2f} / {own[row, i]:+.2f}"
                for i, n in enumerate(names[: prom.shape[1]])
                if n in LINES[1:]
            ]
            print(f"  row {row} prominence, range's strongest bin / the bin found's own (dB): "
                  + "; ".join(got))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("fs", type=float)
    ap.add_argument("window", type=int, help="diagnose's window, samples (it prints it)")
    ap.add_argument("--offsets", default="0", help="speed offsets, %%, comma-separated")
    a = ap.parse_args()
    for off in (float(v) for v in a.offsets.split(",")):
        run(a.file, a.fs, a.window, off)


if __name__ == "__main__":
    main()
