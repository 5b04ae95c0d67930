"""Agreement with a plain scipy reference (welch, butter + sosfiltfilt, hilbert), written here."""

from __future__ import annotations

import numpy as np
import scipy.signal as sig
from numpy.testing import assert_allclose

from pdm.dsp.bearings import BEARINGS
from pdm.dsp.features import ChannelSpec, FeatureExtractor

FS = 25600.0
N = 16384
DF = FS / N
RPM = 1480.0


def make_signal() -> np.ndarray:
    """Shaft tones, a bearing-like impact train at BPFO ringing 3.5 kHz, and noise, in g."""
    rng = np.random.default_rng(11)
    t = np.arange(N) / FS
    fr = RPM / 60
    x = 0.3 * np.sin(2 * np.pi * fr * t) + 0.1 * np.sin(2 * np.pi * 2 * fr * t + 1)
    bpfo = BEARINGS["6205"].defect_frequencies_hz(fr)["bpfo"]
    imp = np.zeros(N)
    imp[(np.arange(0, N / FS, 1 / bpfo) * FS).astype(int)] = 1.0
    k = np.arange(300)
    ring = np.exp(-2 * np.pi * 0.05 * 3500 * k / FS) * np.sin(2 * np.pi * 3500 * k / FS)
    return x + 0.8 * np.convolve(imp, ring)[:N] + 0.02 * rng.standard_normal(N)


def ours(x: np.ndarray, band=(1000.0, 6000.0)):
    fx = FeatureExtractor(
        FS,
        N,
        [ChannelSpec("x", BEARINGS["6205"])],
        rpm=RPM,
        envelope_band_hz=(2000.0, 5000.0),
        bands=[("b", *band)],
    )
    return fx.extract(x[None, :].astype(np.float32))


def test_tone_amplitude_agrees_with_welch() -> None:
    x = make_signal()
    # Welch with a flat-top window reads tone amplitudes without scalloping loss.
    f, pxx = sig.welch(x, FS, window="flattop", nperseg=N // 2, scaling="spectrum")
    k = int(np.argmin(np.abs(f - RPM / 60)))
    ref_1x = np.sqrt(2 * pxx[k - 2 : k + 3].max())
    r = ours(x).as_dicts()[0]
    assert_allclose(r["order_1x_g"], ref_1x, rtol=0.02)
    assert_allclose(r["order_1x_g"], 0.3, rtol=0.01)


def test_band_rms_agrees_with_butter_sosfiltfilt() -> None:
    x = make_signal()
    sos = sig.butter(8, (1000.0, 6000.0), btype="bandpass", fs=FS, output="sos")
    y = sig.sosfiltfilt(sos, x)
    core = slice(N // 8, -N // 8)  # leave the filter's edge transients out
    ref = np.sqrt(np.mean(y[core] ** 2))
    assert_allclose(ours(x).as_dicts()[0]["band_b_rms_g"], ref, rtol=0.05)


def test_envelope_spectrum_agrees_with_hilbert_of_bandpassed_signal() -> None:
    x = make_signal()
    sos = sig.butter(8, (2000.0, 5000.0), btype="bandpass", fs=FS, output="sos")
    env = np.abs(sig.hilbert(sig.sosfiltfilt(sos, x)))
    w = sig.get_window("hann", N)
    ref = 2 * np.abs(np.fft.rfft((env - env.mean()) * w)) / w.sum()
    ref_f = np.fft.rfftfreq(N, 1 / FS)
    frame = ours(x)
    f, a = frame.envelope_spectrum()
    lo, hi = int(20 / DF), len(f)
    peak_ours = f[lo + int(np.argmax(a[0, lo:]))]
    peak_ref = ref_f[lo + int(np.argmax(ref[lo:hi]))]
    assert abs(peak_ours - peak_ref) <= DF  # the same line, to the bin
    bpfo = BEARINGS["6205"].defect_frequencies_hz(RPM / 60)["bpfo"]
    k = round(bpfo / DF)
    ref_line = np.sqrt(np.sum(ref[k - 2 : k + 3] ** 2) / 1.5)  # Hann lobe energy -> amplitude
    assert_allclose(frame.as_dicts()[0]["env_bpfo_g"], ref_line, rtol=0.15)
    # And across the envelope spectrum the two methods agree in shape.
    corr = np.corrcoef(a[0, lo:hi], ref[lo:hi])[0, 1]
    assert corr > 0.95
