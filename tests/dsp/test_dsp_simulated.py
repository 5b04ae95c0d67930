"""The DSP core against the project's own seeded simulator: faults show where the truth says."""

from __future__ import annotations

import numpy as np
import pytest

from pdm.dsp.bearings import lookup_bearing
from pdm.dsp.envelope import candidate_bands
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

FS = 25600.0
N = 16384
BEARING = lookup_bearing("6205")


def window(
    faults: tuple[FaultSpec, ...], seed: int = 1, resonance_hz: float = 3500.0
) -> np.ndarray:
    spec = SimSpec(
        fs=FS,
        duration_s=N / FS,
        rpm=1480.0,
        faults=faults,
        seed=seed,
        channels=("x_g",),
        resonance_hz=resonance_hz,
    )
    return simulate(spec)[:N].T.astype(np.float32)


def fx(**kw) -> FeatureExtractor:
    kw.setdefault("envelope_band_hz", (2000.0, 5000.0))
    return FeatureExtractor(FS, N, [ChannelSpec("x_g", BEARING)], rpm=1480.0, **kw)


@pytest.mark.parametrize(("kind", "feature"), [("bpfo", "env_bpfo_g"), ("bpfi", "env_bpfi_g")])
def test_simulated_bearing_fault_peaks_at_its_defect_frequency(kind: str, feature: str) -> None:
    frame = fx().extract(window((FaultSpec(kind, 0.8),)))
    f_defect = BEARING.defect_frequencies_hz(1480.0 / 60)[kind]
    freqs, env = frame.envelope_spectrum()
    lo = int(40 / (FS / N))  # above FTF and the slowest shaft lines
    peak_f = freqs[lo + int(np.argmax(env[0, lo:]))]
    assert abs(peak_f - f_defect) <= 0.03 * f_defect  # the strongest envelope line, within slip
    row = frame.as_dicts()[0]
    others = [f"env_{d}_g" for d in ("bpfo", "bpfi", "bsf", "ftf") if f"env_{d}_g" != feature]
    assert all(row[feature] > 3 * row[o] for o in others)


def test_healthy_window_shows_no_defect_line() -> None:
    row = fx().extract(window((FaultSpec("unbalance", 0.05),))).as_dicts()[0]
    assert max(row[f"env_{d}_g"] for d in ("bpfo", "bpfi", "bsf", "ftf")) < 0.01


def test_unbalance_reads_its_amplitude_at_1x() -> None:
    row = fx().extract(window((FaultSpec("unbalance", 0.3),))).as_dicts()[0]
    assert row["order_1x_g"] == pytest.approx(0.3, rel=0.02)
    assert row["order_2x_g"] < 0.05 * row["order_1x_g"]


@pytest.mark.parametrize("resonance_hz", [3500.0, 7500.0])
def test_spectral_kurtosis_is_highest_in_the_band_where_impacts_ring(resonance_hz: float) -> None:
    x = window((FaultSpec("bpfo", 0.8),), resonance_hz=resonance_hz)
    import scipy.fft as sfft

    from pdm.dsp.envelope import BandScorer
    from pdm.dsp.spectrum import hann

    spec = sfft.rfft((x - x.mean()) * hann(N), axis=-1)
    cands = candidate_bands(FS, min_lo_hz=500.0, min_width_hz=600.0, n=N)
    scores = BandScorer(FS, N, cands, 300.0, (500.0, 0.9 * FS / 2))(spec)
    lo, hi = cands[int(np.argmax(scores.sk[0]))]
    assert lo <= resonance_hz <= hi and scores.sk[0].max() > 1.0


def test_auto_band_finds_the_fault_like_a_hand_picked_band() -> None:
    x = window((FaultSpec("bpfo", 0.8),), resonance_hz=7500.0)
    auto = fx(envelope_band_hz="auto").extract(x)
    lo, hi = auto.envelope_band_hz
    assert lo <= 7500.0 <= hi
    wrong = fx(envelope_band_hz=(2000.0, 5000.0)).extract(x).as_dicts()[0]
    # The hand-picked band misses the resonance; the auto band sees the fault far better.
    assert auto.as_dicts()[0]["env_bpfo_g"] > 3 * wrong["env_bpfo_g"]


def test_extract_many_matches_each_extractor_alone() -> None:
    """Machines batched into one pass get what each extractor computes alone: the bearing
    lines stay with their own rows, and configurations that differ run apart."""
    from pdm.dsp.features import extract_many

    a = FeatureExtractor(
        FS, N, [ChannelSpec("a0"), ChannelSpec("a1", BEARING), ChannelSpec("a2", BEARING)],
        rpm=1480.0, envelope_band_hz=(2000.0, 5000.0),
    )  # fmt: skip
    b = FeatureExtractor(
        FS, N, [ChannelSpec("b0", BEARING), ChannelSpec("b1")],
        rpm=1480.0, envelope_band_hz=(2000.0, 5000.0),
    )  # fmt: skip
    auto = fx(envelope_band_hz="auto")
    assert a.batch_key == b.batch_key is not None
    assert auto.batch_key is None
    healthy = [window((FaultSpec("unbalance", 0.05),), seed=s)[0] for s in range(6)]
    faulty = window((FaultSpec("bpfo", 0.8),), seed=9)[0]
    xa = np.stack([np.stack(healthy[:3]), np.stack(healthy[3:])])  # 2 windows of 3 channels
    xb = np.stack([np.stack([faulty, healthy[0]])])  # 1 window, the fault on b0
    xauto = np.stack([faulty[None, :]])
    got = extract_many([(a, xa), (b, xb), (auto, xauto)])
    want = [a.extract_batch(xa), b.extract_batch(xb), auto.extract_batch(xauto)]
    assert [len(g) for g in got] == [2, 1, 1]
    for g_frames, w_frames in zip(got, want, strict=True):
        for g, w in zip(g_frames, w_frames, strict=True):
            assert g.channels == w.channels and g.valid == w.valid
            # float32 reductions may round differently with the row count: ~1e-7 absolute
            np.testing.assert_allclose(g.values, w.values, rtol=1e-4, atol=1e-6, equal_nan=True)
    row_b0 = got[1][0].as_dicts()[0]
    assert row_b0["env_bpfo_g"] > 3 * row_b0["env_bpfi_g"]  # the fault is b0's
    assert all(got[0][0].as_dicts()[0][f"env_{d}_g"] is None for d in ("bpfo", "bpfi"))
    assert got[1][0].as_dicts()[1]["env_bpfo_g"] is None  # b1 has no bearing
    bad = np.stack([np.stack(healthy[:3])])
    bad[0, 1, 5] = np.nan  # one invalid window among valid ones
    got = extract_many([(a, np.concatenate([xa[:1], bad])), (b, xb)])
    assert [f.valid for f in got[0]] == [True, False] and got[1][0].valid
    with pytest.raises(ValueError, match="job 1"):
        extract_many([(a, xa), (b, xa)])
