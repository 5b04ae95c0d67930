"""The engine's judgement schedule against the full judgement of every window.

The engine judges at a segment's 1st, 2nd, 4th … window and then every ``judge_every``
windows (docs/diagnosis.md §1, "When it is judged"), each judgement made only when read
(:meth:`DiagnosisEngine.later`). Checked on simulated recordings with a fault setting in,
a speed change and a gap: every window's diagnosis is the full judgement (an engine that
judges every window) at a window of the same segment at most ``judge_every - 1`` windows
back, whenever and in whatever order it is read; a segment's first window and the end of a
recording are judged on their own windows.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from pdm.diagnosis import Diagnosis, DiagnosisEngine, PendingDiagnosis
from pdm.dsp.features import ChannelSpec, FeatureExtractor, FeatureFrame
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

N = 4096
HOP = N // 2


def _frames(spec: SimSpec) -> tuple[list[ChannelSpec], list[FeatureFrame]]:
    chans = [ChannelSpec(c, spec.bearing) for c in spec.channels]
    fx = FeatureExtractor(spec.fs, N, chans, rpm=spec.rpm, envelope_band_hz=(2000.0, 6000.0))
    x = simulate(spec).T.astype(np.float32)
    return chans, [fx.extract(x[:, s : s + N]) for s in range(0, x.shape[1] - N + 1, HOP)]


def _recording(kind: str) -> tuple[list[ChannelSpec], list[FeatureFrame | None]]:
    """Frames of a simulated recording; None marks a gap (a stream reset)."""
    healthy = SimSpec(duration_s=5.0, faults=(FaultSpec("unbalance", 0.02),), seed=1)
    chans, first = _frames(healthy)
    if kind == "fault sets in":  # the level steps: a new segment
        _, then = _frames(SimSpec(duration_s=6.0, faults=(FaultSpec("bpfo", 0.6),), seed=2))
        return chans, [*first, *then]
    if kind == "speed changes":  # 1480 → 1620 r/min: a new segment
        spec = SimSpec(duration_s=6.0, rpm=1620.0, faults=(FaultSpec("bpfi", 0.3),), seed=3)
        _, then = _frames(spec)
        return chans, [*first, *then]
    _, then = _frames(SimSpec(duration_s=6.0, faults=(FaultSpec("bpfo", 0.3),), seed=4))
    return chans, [*first, None, *then]  # a gap


def _key(d: Diagnosis) -> tuple[object, ...]:
    return (d.label, d.confidence, d.channel, d.windows, tuple(c.margin_db for c in d.channels))


@pytest.mark.parametrize("kind", ["fault sets in", "speed changes", "a gap"])
def test_every_window_gets_a_due_full_judgement_whenever_it_is_read(kind: str) -> None:
    chans, frames = _recording(kind)
    sched = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)  # judge_every = 8
    full = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0, judge_every=1)
    assert sched.judge_every == 8
    pending: list[PendingDiagnosis] = []
    eager: list[Diagnosis] = []
    truth: list[Diagnosis] = []
    where: list[tuple[int, int]] = []  # (segment, windows averaged) after each window
    for f in frames:
        if f is None:
            sched.reset()
            full.reset()
            continue
        sched.update(f)
        full.update(f)
        pending.append(sched.later())
        truth.append(full.judge())
        where.append((sched.average.segments, sched.average.count))
    assert len({s for s, _ in where}) >= 2, "the recording must hold a new segment"
    ends = sched.judge(), full.judge()
    # Read late and out of order: the same answers as the eager engine's below.
    order = list(range(len(pending)))
    random.Random(0).shuffle(order)
    late = {i: pending[i].result() for i in order}
    eager_engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    for f in frames:
        if f is None:
            eager_engine.reset()
            continue
        eager_engine.update(f)
        eager.append(eager_engine.diagnosis())
    for i in range(len(pending)):
        d = late[i]
        assert _key(d) == _key(eager[i]), f"window {i}: read late differs from read at once"
        seg, _count = where[i]
        # The window its judgement was due at: same segment, that many windows averaged.
        due = [j for j in range(i + 1) if where[j] == (seg, d.windows)]
        assert due, f"window {i}: judged on another segment's windows ({d.windows})"
        j = due[-1]
        assert i - j < sched.judge_every, f"window {i}: judged {i - j} windows back"
        assert _key(d) == _key(truth[j]), f"window {i}: not the full judgement of window {j}"
        if where[i][1] == 1:  # a segment's first window is judged on its own
            assert j == i
    assert _key(ends[0]) == _key(ends[1]) == _key(truth[-1])


def test_an_unread_window_costs_no_judgement() -> None:
    chans, frames = _recording("a gap")
    engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    handed = []
    for f in frames[:12]:
        assert f is not None
        engine.update(f)
        handed.append(engine.later())
    assert not any(p.judged for p in handed)
    assert handed[11].result() is handed[7].result()  # one judgement, due at the 8th window
    assert handed[7].judged and not handed[3].judged


def test_the_averages_are_the_plain_exponential_average_to_the_bit() -> None:
    """Both spectra in one buffer, averaged in one pass (docs/diagnosis.md §10): the same
    float32 numbers as each average on its own, ``avg += a·(x − avg)``, through speed
    wobbles (re-indexed windows), a band change and windows without an envelope."""
    from pdm.diagnosis.average import SpectrumAverage, reindex

    rng = np.random.default_rng(0)
    ch, n, hop, fr = 2, 4096, 1024, 29.95
    avg = SpectrumAverage(ch, 12000.0, n, hop)
    ref_acc: np.ndarray | None = None
    ref_env: np.ndarray | None = None
    count = env_count = 0
    band, n_env = (2000.0, 5000.0), 200
    for w in range(200):
        if w == 120:
            band, n_env = (3000.0, 6000.0), 150
            ref_env, env_count = None, 0
        hz = fr * (1 + rng.normal(0, 0.003)) if w % 3 else fr
        spec = rng.standard_normal((ch, n // 2 + 1)) + 1j * rng.standard_normal((ch, n // 2 + 1))
        spec = spec.astype(np.complex64)
        env = None if w % 17 == 5 else rng.random((ch, 2 * n_env)).astype(np.float32)
        assert avg.add(spec, env, hz, band)
        count += 1
        k = avg._acc_bins  # noqa: SLF001  (the bins the average keeps)
        v = spec[:, :k].view(np.float32)
        x_acc = (v * v)[:, 0::2] + (v * v)[:, 1::2]
        x_env = None if env is None else env[:, 0::2] + env[:, 1::2]
        ratio = hz / fr
        # Lines move by over half a bin at the highest bin of the segment's first window.
        if abs(ratio - 1) * max(k, 200) > 0.5:
            x_acc = reindex(x_acc.astype(np.float64), ratio)
            x_env = None if x_env is None else reindex(x_env.astype(np.float64), ratio)
        a = 1.0 / min(count, avg.n_mem)
        ref_acc = (
            x_acc.astype(np.float32) if ref_acc is None else ref_acc + (x_acc - ref_acc) * a
        ).astype(np.float32)
        if x_env is not None:
            env_count += 1
            b = 1.0 / min(env_count, avg.n_mem)
            ref_env = (
                x_env.astype(np.float32) if ref_env is None else ref_env + (x_env - ref_env) * b
            ).astype(np.float32)
        assert np.array_equal(avg.acc, ref_acc), w
        assert np.array_equal(avg.env, ref_env), w
