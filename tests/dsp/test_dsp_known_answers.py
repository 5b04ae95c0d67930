"""Known answers: every scaling of the DSP core pinned by an analytic signal."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
import scipy.stats as st
from numpy.testing import assert_allclose

from pdm.dsp.bearings import BEARINGS, BearingGeometry, lookup_bearing
from pdm.dsp.features import STANDARD_G, ChannelSpec, FeatureExtractor, feature_names
from pdm.dsp.iso import ZONE_LIMITS_MM_S, iso_band_hz, iso_zone
from pdm.dsp.spectrum import hann

FS = 25600.0
N = 16384
DF = FS / N


def extractor(**kw):
    kw.setdefault("rpm", 1500.0)
    kw.setdefault("envelope_band_hz", (2000.0, 5000.0))
    chans = kw.pop("channels", [ChannelSpec("x", BEARINGS["6205"])])
    return FeatureExtractor(FS, N, chans, **kw)


def sine(amp: float, f: float, phase: float = 0.3, n: int = N, fs: float = FS) -> np.ndarray:
    t = np.arange(n) / fs
    return amp * np.sin(2 * np.pi * f * t + phase)


def row(fx: FeatureExtractor, x: np.ndarray) -> dict:
    return fx.extract(np.atleast_2d(x).astype(np.float32)).as_dicts()[0]


@pytest.mark.parametrize("offset_bins", [0.0, 0.25, 0.5])
def test_sine_amplitude_reads_a_on_and_between_bins(offset_bins: float) -> None:
    amp = 0.7
    f = (16 + offset_bins) * DF  # 1× of rpm 60·f
    fx = extractor(rpm=60 * f)
    frame = fx.extract(sine(amp, f)[None, :].astype(np.float32))
    r = frame.as_dicts()[0]
    assert_allclose(r["order_1x_g"], amp, rtol=2e-3)
    if offset_bins == 0.0:
        freqs, a = frame.amplitude_spectrum()
        assert_allclose(a[0, 16], amp, rtol=1e-4)  # a bin-centred sine reads A in the spectrum
        assert freqs[16] == pytest.approx(f)
        assert_allclose(r["rms_g"], amp / np.sqrt(2), rtol=1e-4)


def test_rms_peak_crest_of_sine_with_dc() -> None:
    amp, dc = 1.2, 0.5
    x = sine(amp, 100 * DF, phase=0.0) + dc
    r = row(extractor(), x)
    assert_allclose(r["mean_g"], dc, atol=1e-5)
    assert_allclose(r["rms_g"], amp / np.sqrt(2), rtol=1e-4)
    assert_allclose(r["peak_g"], amp, rtol=1e-4)
    assert_allclose(r["p2p_g"], 2 * amp, rtol=1e-4)
    assert_allclose(r["crest"], np.sqrt(2), rtol=1e-4)
    assert_allclose(r["kurtosis"], 1.5, rtol=1e-3)  # a sine's Pearson kurtosis


@pytest.mark.parametrize("f", [25.0, 79.3, 159.2, 800.0])
def test_velocity_of_a_sine(f: float) -> None:
    amp_g = 0.5
    r = row(extractor(), sine(amp_g, f))
    expected = amp_g * STANDARD_G * 1000 / (2 * np.pi * f) / np.sqrt(2)
    assert_allclose(r["velocity_rms_mm_s"], expected, rtol=5e-3)


def test_velocity_band_excludes_out_of_band_tones() -> None:
    # 5 Hz is below the 10 Hz ISO edge at 1500 r/min, 1500 Hz above 1000 Hz.
    x = sine(0.5, 1500.0) + sine(0.01, 5.0 + 0.5 * DF)
    assert row(extractor(), x)["velocity_rms_mm_s"] < 0.02
    assert iso_band_hz(300) == (2.0, 1000.0) and iso_band_hz(1500) == (10.0, 1000.0)


def test_parseval_exact_and_band_rms_of_noise() -> None:
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(N)).astype(np.float32)
    fx = extractor(bands=[("all", 0.0, FS / 2)])
    frame = fx.extract(x[None, :])
    w = hann(N).astype(np.float64)
    d = x.astype(np.float64) - x.astype(np.float64).mean()
    p = frame.power[0].astype(np.float64)
    two_sided = p[0] + 2 * p[1:-1].sum() + p[-1]
    assert_allclose(two_sided, N * np.sum((w * d) ** 2), rtol=1e-4)  # Parseval, exactly
    r = frame.as_dicts()[0]
    assert_allclose(r["band_all_rms_g"], r["rms_g"], rtol=0.03)  # stationary noise: same power


def test_kurtosis_and_skewness_match_scipy() -> None:
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 1.0, N)
    r = row(extractor(), x)
    assert_allclose(r["kurtosis"], st.kurtosis(x, fisher=True) + 3, rtol=1e-3)
    assert_allclose(r["skewness"], st.skew(x), rtol=1e-3)


def test_flat_window_gives_nan_shape_features_not_warnings() -> None:
    with np.errstate(all="raise"):
        r = row(extractor(), np.full(N, 0.25))
    assert r["rms_g"] == 0.0 and r["crest"] is None and r["kurtosis"] is None


def test_nan_sample_invalidates_the_window() -> None:
    x = sine(0.5, 100.0)
    x[1000] = np.nan
    frame = extractor().extract(x[None, :].astype(np.float32))
    assert not frame.valid
    assert all(v is None for k, v in frame.as_dicts()[0].items() if k in frame.names)


@pytest.mark.parametrize(("group", "foundation"), sorted(ZONE_LIMITS_MM_S))
def test_every_iso_zone_boundary_belongs_to_the_lower_zone(group: int, foundation: str) -> None:
    ab, bc, cd = ZONE_LIMITS_MM_S[(group, foundation)]
    for edge, below, above in ((ab, "A", "B"), (bc, "B", "C"), (cd, "C", "D")):
        assert iso_zone(edge, group=group, foundation=foundation) == below
        assert iso_zone(np.nextafter(edge, np.inf), group=group, foundation=foundation) == above
    assert iso_zone(0.0, group=group, foundation=foundation) == "A"
    assert iso_zone(float("nan"), group=group, foundation=foundation) == "?"


def test_iso_zone_comes_out_with_the_features() -> None:
    # 4.0 mm/s RMS at 50 Hz: zone C for group 2 rigid (2.8 < v <= 4.5).
    f = 50.0
    amp_g = 4.0 * np.sqrt(2) * 2 * np.pi * f / (STANDARD_G * 1000)
    r = row(extractor(), sine(amp_g, f))
    assert_allclose(r["velocity_rms_mm_s"], 4.0, rtol=5e-3)
    assert r["iso_zone"] == "C"


def test_6205_defect_frequencies_at_1797_rpm() -> None:
    f = BEARINGS["6205"].defect_frequencies_hz(1797 / 60)
    assert f["bpfo"] == pytest.approx(107.4, abs=0.05)
    assert f["bpfi"] == pytest.approx(162.2, abs=0.05)
    assert f["ftf"] == pytest.approx(11.93, abs=0.01)
    # BSF is the ball spin frequency; CWRU's table lists 2×BSF (the ball-defect impact rate).
    assert 2 * f["bsf"] == pytest.approx(141.17, abs=0.05)
    m = lookup_bearing("6203-2RS").defect_multiples()
    assert_allclose(
        [m["bpfi"], m["bpfo"], m["ftf"], 2 * m["bsf"]], [4.9469, 3.0530, 0.3817, 3.9874], rtol=2e-4
    )


def test_bearing_geometry_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="ball_diameter_mm=40"):
        BearingGeometry(9, 40.0, 39.0)
    with pytest.raises(KeyError, match="6205"):
        lookup_bearing("9999")


def impact_train(
    rate_hz: float, *, resonance: float = 3500.0, amp: float = 1.0, seed: int = 3
) -> np.ndarray:
    """Impacts at ``rate_hz`` ringing a resonance, plus noise, (N,) in g."""
    rng = np.random.default_rng(seed)
    x = np.zeros(N)
    times = np.arange(0.0, N / FS, 1 / rate_hz)
    x[(times * FS).astype(int)] = amp
    k = np.arange(400)
    ring = np.exp(-2 * np.pi * 0.05 * resonance * k / FS) * np.sin(2 * np.pi * resonance * k / FS)
    return np.convolve(x, ring)[:N] + 0.02 * rng.standard_normal(N)


def test_envelope_spectrum_peaks_at_bpfo_of_an_outer_race_fault() -> None:
    rpm = 1480.0
    bpfo = BEARINGS["6205"].defect_frequencies_hz(rpm / 60)["bpfo"]
    fx = extractor(rpm=rpm)
    frame = fx.extract(impact_train(bpfo)[None, :].astype(np.float32))
    freqs, env = frame.envelope_spectrum()
    lo = int(20 / DF)
    peak_f = freqs[lo + int(np.argmax(env[0, lo:]))]
    assert abs(peak_f - bpfo) <= DF  # strongest envelope line is BPFO
    r = frame.as_dicts()[0]
    assert r["env_bpfo_g"] > 5 * max(r["env_bpfi_g"], r["env_ftf_g"])
    # (not 2×BPFI: at this geometry 3×BPFO = 10.75×fr sits within slip of 2×BPFI = 10.83×fr)
    assert r["env_bpfo_2x_g"] > 5 * r["env_bsf_2x_g"]


def test_envelope_amplitude_of_a_modulated_carrier() -> None:
    # Carrier 3.5 kHz, amplitude (1 + 0.5·cos 2π·100 t): envelope line at 100 Hz reads 0.5.
    t = np.arange(N) / FS
    fm = 64 * DF
    x = (1 + 0.5 * np.cos(2 * np.pi * fm * t)) * np.sin(2 * np.pi * 3500 * t)
    fx = FeatureExtractor(
        FS,
        N,
        [ChannelSpec("x", BEARINGS["6205"])],
        rpm=60 * fm / BEARINGS["6205"].defect_multiples()["bpfo"],
        envelope_band_hz=(3000.0, 4000.0),
    )
    r = fx.extract(x[None, :].astype(np.float32)).as_dicts()[0]
    assert_allclose(r["env_bpfo_g"], 0.5, rtol=0.02)


def test_speed_is_found_near_nominal() -> None:
    true_rpm = 1487.3
    x = (
        sine(0.2, true_rpm / 60)
        + 0.1 * sine(1.0, 2 * true_rpm / 60)
        + 0.01 * np.random.default_rng(0).standard_normal(N)
    )
    fx = extractor(rpm=None, rpm_range=(1400.0, 1560.0))
    frame = fx.extract(x[None, :].astype(np.float32))
    assert frame.shaft_speed_rpm == pytest.approx(true_rpm, rel=1e-3)
    assert frame.as_dicts()[0]["order_1x_g"] == pytest.approx(0.2, rel=0.01)


def test_unknown_speed_leaves_order_features_empty() -> None:
    fx = extractor(rpm=None)
    r = row(fx, sine(0.2, 25.0))
    assert r["order_1x_g"] is None and r["env_bpfo_g"] is None and r["rms_g"] > 0


def test_feature_names_carry_units_and_order() -> None:
    names = feature_names(["high"])
    assert names[:8] == (
        "mean_g",
        "rms_g",
        "peak_g",
        "p2p_g",
        "crest",
        "kurtosis",
        "skewness",
        "velocity_rms_mm_s",
    )
    assert "band_high_rms_g" in names and "env_bpfi_2x_g" in names
    unitless = {"crest", "kurtosis", "skewness"}
    assert all(n.endswith(("_g", "_mm_s")) or n in unitless for n in names)


def test_extractor_rejects_bad_parameters_with_the_value_named() -> None:
    with pytest.raises(ValueError, match="Nyquist"):
        extractor(envelope_band_hz=(2000.0, 20000.0))
    with pytest.raises(ValueError, match="fs=-1"):
        FeatureExtractor(-1, N, [ChannelSpec("x")], rpm=1500)
    with pytest.raises(ValueError, match="window shape"):
        extractor().extract(np.zeros((2, N), np.float32))


def test_amplitude_spectrum_matches_plain_rfft() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(N).astype(np.float32)
    frame = extractor().extract(x[None, :])
    _, a = frame.amplitude_spectrum()
    w = hann(N).astype(np.float64)
    ref = 2 * np.abs(sfft.rfft((x - x.mean()) * w)) / w.sum()
    assert_allclose(a[0], ref, rtol=1e-3, atol=1e-6)


def test_tone_search_plans_shared_by_searches_and_batch_sizes_read_the_same() -> None:
    """The gather plans are cached for every search alike, by targets and shape: batches
    of changing size and two searches of different widths alternate and each reads A."""
    from pdm.dsp.spectrum import ToneSearch, squared_parts

    w = hann(N)
    narrow = ToneSearch(N // 2 + 1, 3.0, N, float(np.sum(w * w)))
    wide = ToneSearch(N // 2 + 1, 40.0, N, float(np.sum(w * w)))
    amps = np.array([0.3, 0.7, 1.1, 2.0])
    x = np.stack([sine(a, 100.25 * DF) + sine(a / 2, 400.5 * DF) for a in amps])
    sq = squared_parts(sfft.rfft((x * w).astype(np.float32), axis=-1))
    for rows in (1, 4, 2, 4, 1, 3):
        for search in (narrow, wide, narrow):
            centres = np.tile([100.0, 401.0], (rows, 1))
            got = search(np.ascontiguousarray(sq[:rows]), centres, np.full_like(centres, 2.0))
            assert_allclose(got[:, 0], amps[:rows], rtol=2e-3)
            assert_allclose(got[:, 1], amps[:rows] / 2, rtol=2e-3)
            # 8 bins off the tones: only the wide search (±40 bins at most) reaches them.
            off = search(np.ascontiguousarray(sq[:rows]), centres + 8, np.full_like(centres, 10.0))
            if search is wide:
                assert_allclose(off[:, 0], amps[:rows], rtol=2e-3)
            else:
                assert np.all(off[:, 0] < 0.05 * amps[:rows])


def test_frames_carry_each_channels_min_max_and_sum() -> None:
    """``FeatureFrame.stats``: what the sensor health check would otherwise compute again."""
    rng = np.random.default_rng(4)
    x = (rng.normal(0.3, 1.0, (3, N)) * [[1.0], [0.1], [5.0]]).astype(np.float32)
    fx = extractor(channels=[ChannelSpec(c, BEARINGS["6205"]) for c in "xyz"])
    (a, b) = fx.extract_windows([x, x[:, ::-1].copy()])
    for frame, w in ((a, x), (b, x[:, ::-1])):
        assert frame.stats is not None and frame.stats.shape == (3, 3)
        assert_allclose(frame.stats[:, 0], w.min(axis=1))
        assert_allclose(frame.stats[:, 1], w.max(axis=1))
        assert_allclose(frame.stats[:, 2], w.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-2)
