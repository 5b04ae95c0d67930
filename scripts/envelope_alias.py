"""Does the decimated envelope alias? The engine's envelope against a plain full-rate reference
(docs/diagnosis.md §14):

    .venv/bin/python scripts/envelope_alias.py [--seeds 0,1,2]

pdm/dsp/envelope.py takes the band's bins ``X[k1:k2]`` of ``rfft(w·x)`` through an inverse FFT
of ``M ≥ nb + n_env`` points: the analytic band signal ``z`` sampled at ``M`` points across the
window. ``z`` itself is band-limited (``nb`` bins), so those are exact samples of the full-rate
analytic signal; but ``|z|`` is not band-limited (the magnitude of a sum of tones or of an
impulse train has harmonics beyond ``nb``), so its ``M``-point spectrum is the full-rate one
folded at ``M``: ``Ẑ[k] = Σ_l Z[k + l·M]``. ``|z|²`` is the autocorrelation of the band's
spectrum, within ``± nb`` bins: its bins ``0 … M − nb`` are alias-free.

The reference is the textbook one: the window's Hann-weighted signal band-passed (the bins
outside the band zeroed), ``scipy.signal.hilbert`` at the full rate, then ``|·|`` and ``|·|²``
and their spectra (each spectrum divided by its length, so that a line reads the same at
either length). Per case and per kind of envelope, over the envelope bins ``2 … n_env − 1``
the engine reads (bins 0 and 1 hold the window's mean kernel):

* ``max dev``: the largest difference between decimated and full-rate line amplitude, in dB
  of the full-rate spectrum's median (its floor);
* ``alias lines``: bins where the decimated spectrum stands ≥ 10 dB over that floor and
  ≥ 6 dB over the full-rate spectrum at the same bin (a line the reference does not have),
  with the strongest few listed (Hz, dB over the floor in decimated / full-rate).

Cases: the strict-xfail gearbox of tests/dsp/test_dsp_band_machine_lines.py (a 22205 at
755 r/min, inner-race impacts at 8 × the noise, a gear's mesh harmonics with ± 1× sidebands
filling the 6.9 kHz resonance; the band the automatic choice takes and the 6.25–7.5 kHz band
on the resonance), and a plain impulse train (a 6205's outer race at 1797 r/min ringing
3.5 kHz, 25.6 kHz, 16384 samples, the default 2–5 kHz band; little noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy.signal import hilbert

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "dsp")]

from test_dsp_band_machine_lines import fault_window, gear_mesh  # noqa: E402

from pdm.dsp.bearings import lookup_bearing  # noqa: E402
from pdm.dsp.features import ChannelSpec, FeatureExtractor  # noqa: E402
from pdm.dsp.spectrum import hann  # noqa: E402


def spectra(x: np.ndarray, k1: int, k2: int, m: int, n_env: int) -> dict[str, np.ndarray]:
    """Amplitude spectra (bins 0 … n_env−1, divided by length) of |z| and |z|², decimated to
    ``m`` points as the engine takes them and at the full rate through scipy's Hilbert."""
    n = x.size
    spec = sfft.rfft(hann(n).astype(np.float64) * x)
    # full rate: the band-passed windowed signal, its analytic signal by scipy.signal.hilbert
    band = np.zeros_like(spec)
    band[k1:k2] = spec[k1:k2]
    z_full = hilbert(sfft.irfft(band, n))
    # decimated: the band's bins from bin 0, an inverse FFT of m points (the engine's z,
    # scaled to the same amplitude: 2/n · Σ X e^{…} of the analytic signal)
    z_dec = sfft.ifft(np.r_[spec[k1:k2], np.zeros(m - (k2 - k1))]) * (2.0 * m / n)
    out = {}
    for name, f in (("|z|", np.abs), ("|z|²", lambda z: np.abs(z) ** 2)):
        out[name + " full"] = np.abs(sfft.fft(f(z_full)))[:n_env] / n
        out[name + " dec"] = np.abs(sfft.fft(f(z_dec)))[:n_env] / m
    return out


def compare(label: str, x: np.ndarray, ex: FeatureExtractor, band: tuple[float, float]) -> None:
    plan = ex.plan_for(band)
    s = spectra(x, plan.k1, plan.k2, plan.m, plan.n_env_bins)
    df = ex.fs / ex.n
    print(
        f"{label}: band {plan.lo_hz:.0f}–{plan.hi_hz:.0f} Hz, nb={plan.k2 - plan.k1}, "
        f"M={plan.m}, n_env={plan.n_env_bins} ({plan.n_env_bins * df:.0f} Hz), N={ex.n}"
    )
    for kind in ("|z|", "|z|²"):
        full, dec = s[kind + " full"][2:], s[kind + " dec"][2:]
        floor = float(np.median(full))
        dev = 20 * np.log10(np.abs(dec - full).max() / floor)
        rel = float(np.abs(dec - full).max() / full.max())
        over = 20 * np.log10(np.maximum(dec, 1e-300) / floor)
        gain = 20 * np.log10(np.maximum(dec, 1e-300) / np.maximum(full, 1e-300))
        alias = np.flatnonzero((over >= 10) & (gain >= 6))
        top = alias[np.argsort(-over[alias])][:4]
        listed = ", ".join(
            f"{(k + 2) * df:.1f} Hz {over[k]:.0f}/{over[k] - gain[k]:.0f} dB" for k in top
        )
        print(
            f"  {kind:5s} max dev {dev:6.1f} dB over floor (rel. to the top line {rel:.1e}); "
            f"alias lines {alias.size}" + (f": {listed}" if listed else "")
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)
    # 1. the gearbox of the strict xfail (MESH_FILLS_THE_RESONANCE)
    g = lookup_bearing("22205")
    fs, n, resonance, noise, rpm = 20000.0, 32768, 6900.0, 0.02, 755.0
    fr = rpm / 60
    order = g.defect_multiples()["bpfi"]
    teeth = next(round(k * order) for k in range(1, 8) if round(k * order) >= 7)
    t = np.arange(n) / fs
    for seed in [int(s) for s in args.seeds.split(",")]:
        x = fault_window(fs, n, rpm, g, "bpfi", resonance, noise, 8.0 * noise, seed)
        x = x + gear_mesh(t, teeth, fr, resonance, noise, np.random.default_rng(seed))
        auto = FeatureExtractor(fs, n, [ChannelSpec("x", g)], rpm=rpm, envelope_band_hz="auto")
        frame = auto.extract(x[None, :].astype(np.float32))
        compare(f"gearbox seed {seed}, automatic band", x, auto, frame.envelope_band_key)
        compare(f"gearbox seed {seed}, on the resonance", x, auto, (6250.0, 7500.0))
    # 2. a plain impulse train in a band
    from pdm.sources.simulator import FaultSpec, SimSpec, simulate

    g = lookup_bearing("6205")
    fs, n = 25600.0, 16384
    spec = SimSpec(fs=fs, duration_s=n / fs, rpm=1797.0, bearing=g, channels=("x",),
                   noise_rms_g=0.002, resonance_hz=3500.0, seed=0,
                   faults=(FaultSpec("bpfo", 0.5),))  # fmt: skip
    x = simulate(spec)[:n, 0]
    ex = FeatureExtractor(fs, n, [ChannelSpec("x", g)], rpm=1797.0, envelope_band_hz=(2000, 5000))
    bpfo = g.defect_frequencies_hz(1797.0 / 60)["bpfo"]
    compare(f"impulse train (BPFO {bpfo:.1f} Hz)", x, ex, (2000.0, 5000.0))
    # the same train in a band narrower than the ringing's own width: |z| has sharper corners
    compare(f"impulse train (BPFO {bpfo:.1f} Hz), narrow band", x, ex, (3300.0, 3700.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
