"""Chunk invariance and resets of the streaming windower + extractor."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdm.dsp.bearings import BEARINGS
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.dsp.windows import Windower
from pdm.sources.base import Chunk

FS = 2048.0
N = 256
HOP = 96
SIGNAL = (
    np.random.default_rng(7).standard_normal((3000, 2)) + np.sin(np.arange(3000) / 9.0)[:, None]
)
FX = FeatureExtractor(
    FS,
    N,
    [ChannelSpec("a", BEARINGS["6205"]), ChannelSpec("b")],
    rpm=600.0,
    envelope_band_hz=(300.0, 700.0),
)


def run(cuts: list[int], data: np.ndarray = SIGNAL, t0: float = 1000.0):
    """Feed ``data`` cut at ``cuts``; returns windows, features and events."""
    w = Windower(N, HOP, [1.0, 0.5])
    wins, events = [], []
    edges = [0, *sorted(set(cuts)), len(data)]
    for a, b in itertools.pairwise(edges):
        if b > a:
            out, ev = w.push(Chunk(data[a:b], FS, t0 + a / FS, ("a", "b")))
            wins += out
            events += ev
    feats = [FX.extract(x.data).values for x in wins]
    return wins, feats, events, w.tail_samples()


WHOLE = run([])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SIGNAL) - 1), max_size=40))
def test_any_chunking_gives_identical_windows_and_features(cuts: list[int]) -> None:
    wins, feats, events, tail = run(cuts)
    ref_w, ref_f, _, ref_tail = WHOLE
    assert events == [] and tail == ref_tail
    assert [w.index for w in wins] == [w.index for w in ref_w]
    assert [w.t_start for w in wins] == [w.t_start for w in ref_w]
    for a, b in zip(wins, ref_w, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    for a, b in zip(feats, ref_f, strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_sample_chunks() -> None:
    wins, feats, _, _ = run(list(range(1, len(SIGNAL))))
    assert len(wins) == len(WHOLE[0]) == (len(SIGNAL) - N) // HOP + 1
    for a, b in zip(feats, WHOLE[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_scaling_to_g_is_applied_per_channel() -> None:
    wins = WHOLE[0]
    np.testing.assert_allclose(wins[0].data[1], (SIGNAL[:N, 1] * 0.5).astype(np.float32))


def test_gap_resets_and_is_reported() -> None:
    w = Windower(N, HOP, [1.0, 1.0])
    first, ev1 = w.push(Chunk(SIGNAL[:1000], FS, 0.0, ("a", "b")))
    second, ev2 = w.push(Chunk(SIGNAL[1000:], FS, 10.0, ("a", "b")))
    assert ev1 == [] and len(ev2) == 1 and ev2[0].kind == "gap"
    # Windows at 0, 96, ..., 672 cover up to sample 928 of the first 1000: 72 unused.
    assert ev2[0].unused_samples == 1000 - (672 + N)
    assert second[0].t_start == 10.0 and second[0].segment == 1
    assert second[0].index == first[-1].index + 1
    np.testing.assert_array_equal(second[0].data, SIGNAL[1000 : 1000 + N].T.astype(np.float32))


def test_small_jitter_is_not_a_gap_but_backwards_time_is() -> None:
    w = Windower(N, HOP, [1.0, 1.0])
    w.push(Chunk(SIGNAL[:500], FS, 0.0, ("a", "b")))
    _, ev = w.push(Chunk(SIGNAL[500:900], FS, 500 / FS + 0.4 / FS, ("a", "b")))
    assert ev == []
    _, ev = w.push(Chunk(SIGNAL[900:], FS, 0.1, ("a", "b")))
    assert [e.kind for e in ev] == ["time_backwards"]


def test_rate_change_resets() -> None:
    w = Windower(N, HOP, [1.0, 1.0])
    w.push(Chunk(SIGNAL[:500], FS, 0.0, ("a", "b")))
    wins, ev = w.push(Chunk(SIGNAL[500:], 2 * FS, 500 / FS, ("a", "b")))
    assert [e.kind for e in ev] == ["rate_change"] and "2048 -> 4096" in ev[0].detail
    assert wins[0].fs == 2 * FS and wins[0].t_start == 500 / FS


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 40),
    hop_part=st.floats(0.0, 1.0),
    cuts=st.lists(st.integers(1, 299), max_size=25),
    plain=st.booleans(),
)
def test_windows_are_the_signals_slices_and_never_change_after(
    n: int, hop_part: float, cuts: list[int], plain: bool
) -> None:
    """Any window length, hop (1 sample to no overlap) and chunking, float32 in g (a plain
    copy) or float64 scaled: window k is samples ``k*hop .. k*hop+n`` in g, and a window
    handed over is not touched by what the windower does after (its array is its own)."""
    hop = max(1, round(hop_part * n))
    sig = SIGNAL[:300].astype(np.float32) if plain else SIGNAL[:300]
    scale = [1.0, 1.0] if plain else [2.0, 0.25]
    w = Windower(n, hop, scale)
    got: list[tuple[int, np.ndarray, np.ndarray]] = []
    for a, b in itertools.pairwise([0, *sorted(set(cuts)), len(sig)]):
        out, ev = w.push(Chunk(sig[a:b], FS, 1000.0 + a / FS, ("a", "b")))
        assert ev == []
        got += [(x.index, x.data, x.data.copy()) for x in out]
    assert [k for k, _, _ in got] == list(range((len(sig) - n) // hop + 1))
    want_scale = np.array(scale)[:, None]
    for k, data, at_hand_over in got:
        want = (sig[k * hop : k * hop + n].T * want_scale).astype(np.float32)
        np.testing.assert_array_equal(at_hand_over, want)
        np.testing.assert_array_equal(data, at_hand_over)  # unchanged by later pushes
        assert data.dtype == np.float32 and data.flags.c_contiguous
    assert len({id(d) for _, d, _ in got}) == len(got)  # no two windows share an array
    assert w.tail_samples() == len(sig) - ((len(sig) - n) // hop * hop + n)


def test_a_gap_discards_the_windows_begun() -> None:
    """Windows begun before a gap are dropped whole; the next segment's first window is
    its own samples only."""
    w = Windower(8, 4, [1.0, 1.0])
    first, _ = w.push(Chunk(SIGNAL[:10], FS, 0.0, ("a", "b")))  # window 0 done, 4.. begun
    assert [x.index for x in first] == [0]
    out, ev = w.push(Chunk(SIGNAL[10:20], FS, 5.0, ("a", "b")))
    assert [e.kind for e in ev] == ["gap"] and ev[0].unused_samples == 2
    assert [x.index for x in out] == [1]
    np.testing.assert_array_equal(out[0].data, SIGNAL[10:18].T.astype(np.float32))


def test_windower_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="hop=0"):
        Windower(N, 0, [1.0])
    with pytest.raises(ValueError, match="chunk shape"):
        Windower(N, HOP, [1.0]).push(Chunk(SIGNAL, FS, 0.0, ("a", "b")))


def _stream_rows(cuts: list[int], batch: int) -> list[tuple[np.ndarray, float]]:
    from pdm.config import pipeline_from_flags
    from pdm.processing import FeatureStream

    pl = pipeline_from_flags(
        fs=FS,
        columns=["a", "b"],
        window=N,
        overlap=1 - HOP / N,
        rpm=600.0,
        bearing="6205",
        envelope_band="300,700",
    )
    stream = FeatureStream(pl, FS, batch=batch)
    edges = [0, *sorted(set(cuts)), len(SIGNAL)]
    chunks = (
        Chunk(SIGNAL[a:b], FS, 1000.0 + a / FS, ("a", "b"))
        for a, b in itertools.pairwise(edges)
        if b > a
    )
    return [(wf.features.values, wf.window.t_start) for wf in stream.feed(chunks)]


STREAM_WHOLE = _stream_rows([], batch=4)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SIGNAL) - 1), max_size=30))
def test_feature_stream_batches_by_index_so_chunking_never_changes_a_bit(cuts: list[int]) -> None:
    got = _stream_rows(cuts, batch=4)
    assert len(got) == len(STREAM_WHOLE)
    for (values, t), (ref_values, ref_t) in zip(got, STREAM_WHOLE, strict=True):
        assert t == ref_t
        np.testing.assert_array_equal(values, ref_values)  # bit for bit, NaN where NaN


def test_batched_extraction_matches_single_windows() -> None:
    wins = WHOLE[0][:5]
    batch = FX.extract_batch(np.stack([w.data for w in wins]))
    for w, frame in zip(wins, batch, strict=True):
        np.testing.assert_allclose(frame.values, FX.extract(w.data).values, rtol=2e-5, atol=1e-9)


def test_latest_spectra_stay_available_for_display() -> None:
    from pdm.config import pipeline_from_flags
    from pdm.processing import FeatureStream

    pl = pipeline_from_flags(
        fs=FS,
        columns=["a", "b"],
        window=N,
        overlap=0.5,
        rpm=600.0,
        bearing="6205",
        envelope_band="300,700",
    )
    stream = FeatureStream(pl, FS, batch=3)
    out = list(stream.feed([Chunk(SIGNAL, FS, 0.0, ("a", "b"))]))
    assert stream.latest is out[-1]
    freqs, amp = stream.latest.features.amplitude_spectrum()
    env_f, env = stream.latest.features.envelope_spectrum()
    assert amp.shape == (2, N // 2 + 1) and freqs[-1] == FS / 2
    assert env.shape[0] == 2 and env_f[1] == pytest.approx(FS / N)


def test_iso_time_rounds_as_datetime_does() -> None:
    """The per-second cache gives what ``datetime.fromtimestamp`` gives, microsecond
    rounding (half to even, carries into the next second) included."""
    import datetime as dt
    import math
    import random

    from pdm.processing import iso_time

    def ref(t: float) -> str:
        return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    rng = random.Random(1)
    cases = [0.0, 1767225600.64, 1767225600.9999995, 1767225600.0000005, -0.5, -1.0000004]
    cases += [rng.uniform(0, 2e9) for _ in range(20_000)] + [
        rng.uniform(-1e6, 1e6) for _ in range(2000)
    ]
    cases += [math.floor(c) + k * 1e-7 for c in cases[:300] for k in (5, 9999995, 9999994, 9999996)]
    assert [iso_time(t) for t in cases] == [ref(t) for t in cases]
    assert iso_time(1767225600.64) == "2026-01-01T00:00:00.640000Z"
