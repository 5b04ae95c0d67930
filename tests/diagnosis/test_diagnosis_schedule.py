"""The engine's judgement schedule against the full judgement of every window.

The engine judges a window's routine diagnosis at a segment's 1st, 2nd, 4th … window and
then every ``judge_every`` windows, and a fresh one (a window at or above alert) at most
``fresh_within`` windows back — at the window itself with ``now`` (docs/diagnosis.md §1,
"When it is judged"); either only when read. Checked on simulated recordings with a fault
setting in, a speed change and a gap: every diagnosis is the full judgement (an engine that
judges every window) at a window of the same segment no further back than its bound,
whenever and in whatever order a routine one is read; a segment's first window and the end
of a recording are judged on their own windows.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import numpy as np
import pytest

from pdm.diagnosis import (
    Diagnosis,
    DiagnosisEngine,
    WindowVerdict,
    names_bearing_defect,
    routine_phase,
)
from pdm.diagnosis.verdict import MIN_INDEPENDENT_WINDOWS
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


def _truth(
    chans: list[ChannelSpec], frames: list[FeatureFrame | None]
) -> tuple[list[Diagnosis], list[tuple[int, int]], Diagnosis]:
    """The full judgement at every window, (segment, windows averaged) there, and at the end."""
    full = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    truth, where = [], []
    for f in frames:
        if f is None:
            full.reset()
            continue
        full.update(f)
        truth.append(full.judge())
        where.append((full.average.segments, full.average.count))
    assert len({s for s, _ in where}) >= 2, "the recording must hold a new segment"
    return truth, where, full.judge()


def _judged_at(i: int, d: Diagnosis, where: list[tuple[int, int]]) -> int:
    """The window of ``i``'s segment whose averages ``d`` judged (the latest with as many)."""
    due = [j for j in range(i + 1) if where[j] == (where[i][0], d.windows)]
    assert due, f"window {i}: judged on another segment's windows ({d.windows})"
    return due[-1]


@pytest.mark.parametrize("kind", ["fault sets in", "speed changes", "a gap"])
def test_every_routine_diagnosis_is_a_due_full_judgement_whenever_it_is_read(kind: str) -> None:
    chans, frames = _recording(kind)
    truth, where, end = _truth(chans, frames)
    sched = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    assert sched.judge_every == 32  # 8 time constants of 4 windows
    handed: list[WindowVerdict] = []
    for f in frames:
        if f is None:
            sched.reset()
        else:
            handed.append(sched.push(f))
    # Read late and out of order: the same answers as an engine read at every window.
    order = list(range(len(handed)))
    random.Random(0).shuffle(order)
    late = {i: handed[i].result() for i in order}
    eager_engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    eager = []
    for f in frames:
        if f is None:
            eager_engine.reset()
        else:
            eager_engine.update(f)
            eager.append(eager_engine.diagnosis())
    for i, d in late.items():
        assert _key(d) == _key(eager[i]), f"window {i}: read late differs from read at once"
        j = _judged_at(i, d, where)
        assert i - j < sched.judge_every, f"window {i}: judged {i - j} windows back"
        assert _key(d) == _key(truth[j]), f"window {i}: not the full judgement of window {j}"
        if where[i][1] == 1:  # a segment's first window is judged on its own
            assert j == i
    assert _key(sched.judge()) == _key(end) == _key(truth[-1])


@pytest.mark.parametrize("kind", ["fault sets in", "speed changes", "a gap"])
def test_an_alerting_window_gets_a_fresh_judgement_and_its_first_one_its_own(kind: str) -> None:
    """Windows pushed a batch of 8 at a time and read in order as a score reads them: those
    'alerting' (two runs) fresh, the first of each run at its own window."""
    chans, frames = _recording(kind)
    truth, where, _ = _truth(chans, frames)
    n = len(where)
    alerting = set(range(n // 5, n // 2)) | set(range(2 * n // 3, n))
    engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    assert engine.fresh_within == 2  # half a time constant
    i = 0
    batch: list[FeatureFrame] = []
    for f in [*frames, None]:
        if f is not None:
            batch.append(f)
            if len(batch) < 8:
                continue
        handed = [engine.push(x) for x in batch]
        for v in handed:
            if i in alerting:
                first = i - 1 not in alerting
                d = v.fresh(now=first)
                j = _judged_at(i, d, where)
                assert i - j <= (0 if first else engine.fresh_within), f"window {i}: {i - j} back"
                assert _key(d) == _key(truth[j]), f"window {i}: not the full judgement of {j}"
            else:
                v.result()
            i += 1
        batch = []
        if f is None and i < n:
            engine.reset()
    assert i == n


def test_a_score_flickering_about_alert_costs_a_judgement_per_fresh_period() -> None:
    """Every other window alerting, each read as the first of a run: judged at most once
    every ``fresh_within`` windows, not at every one."""
    chans, frames = _recording("fault sets in")
    engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    seen = []
    for i, f in enumerate(frames[:60]):  # one segment: healthy running
        assert f is not None
        v = engine.push(f)
        if i >= 20 and i % 2 == 0:
            seen.append(v.fresh(now=True))
    # One fresh judgement at most every fresh_within + 1 windows, and the routine one due
    # at the 32nd window; each read at its own window would make 20.
    assert len({id(d) for d in seen}) <= 40 // (engine.fresh_within + 1) + 2


def test_an_unread_window_costs_no_judgement() -> None:
    chans, frames = _recording("a gap")
    engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0)
    handed = [engine.push(f) for f in frames[:12] if f is not None]
    engine.drain()
    assert all(v.routine is not None and not v.routine.judged for v in handed)
    assert handed[11].result() is handed[7].result()  # one judgement, due at the 8th window
    assert handed[7].routine is not None and handed[7].routine.judged
    assert handed[3].routine is not None and not handed[3].routine.judged


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
    # The segment's speed: its first reading's, no window re-indexed, until the reading of
    # the first window sharing no sample with the first (n / hop = 4 on); then the median of
    # the readings so far (docs/diagnosis.md §1).
    readings: list[float] = []
    seg_hz = math.nan
    for w in range(200):
        if w == 120:
            band, n_env = (3000.0, 6000.0), 150
            ref_env, env_count = None, 0
        # A slow wander of the speed (±0.4 %), read exactly: no noise for the readings'
        # noise rule to take out (tests/diagnosis/test_noisy_speed_readings.py has it).
        hz = fr * (1 + 0.004 * math.sin(2 * math.pi * w / 97))
        spec = rng.standard_normal((ch, n // 2 + 1)) + 1j * rng.standard_normal((ch, n // 2 + 1))
        spec = spec.astype(np.complex64)
        env = None if w % 17 == 5 else rng.random((ch, 2 * n_env)).astype(np.float32)
        assert avg.add(spec, env, hz, band)
        count += 1
        assert avg.acc is not None
        k = avg.acc.shape[1]  # the bins the average keeps
        v = spec[:, :k].view(np.float32)
        x_acc = (v * v)[:, 0::2] + (v * v)[:, 1::2]
        x_env = None if env is None else env[:, 0::2] + env[:, 1::2]
        if w <= n // hop:
            readings.append(hz)
            seg_hz = float(np.median(readings)) if w == n // hop else math.nan
        ratio = hz / seg_hz if w > n // hop else 1.0
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


def _judged_windows(engine: DiagnosisEngine, frames: list[FeatureFrame]) -> list[int]:
    """The windows (1-based ticks) whose routine judgement a reader of every window's
    routine diagnosis gets judged."""
    ticks = []
    for f in frames:
        v = engine.push(f)
        v.result()
        assert v.routine is not None
        ticks.append(v.routine.tick)
    return sorted(set(ticks))


@pytest.fixture(scope="module")
def long_healthy() -> tuple[list[ChannelSpec], list[FeatureFrame]]:
    """One segment of healthy running, past the doubling three times over (judge_every 32)."""
    return _frames(SimSpec(duration_s=11.0, faults=(FaultSpec("unbalance", 0.02),), seed=5))


def test_machines_started_together_come_due_in_different_windows(
    long_healthy: tuple[list[ChannelSpec], list[FeatureFrame]],
) -> None:
    """The doubling's due points from the averages' memory on (4 windows here) offset by the
    engine's phase into the first half of their intervals (window 2^k + phase mod 2^(k-1)),
    then every judge_every windows: machines
    started together (a service start) are judged in different windows, each machine at
    most judge_every windows apart; phase 0 is the schedule as before."""
    chans, frames = long_healthy
    n = len(frames)
    assert n > 4 * 32
    at: dict[int, list[int]] = {}
    for phase in range(16):
        engine = DiagnosisEngine(25600.0, N, HOP, chans, memory=2.0, phase=phase)
        assert engine.judge_every == 32 and engine.average.n_mem == 4
        judged = _judged_windows(engine, frames)
        assert engine.average.segments == 1 and engine.average.count == n  # one segment
        doubling = [1, 2] + [2**k + phase % 2 ** (k - 1) for k in range(2, 6)]
        assert judged == [*doubling, *range(doubling[-1] + 32, n + 1, 32)], f"phase {phase}"
        if phase == 0:
            assert judged[:9] == [1, 2, 4, 8, 16, 32, 64, 96, 128]  # as before
        assert max(b - a for a, b in itertools.pairwise(judged)) <= 32
        assert n + 1 - judged[-1] <= 32
        for c in judged:
            at.setdefault(c, []).append(phase)
    # Sixteen machines: from the 32nd window on never two in one window (two from the 16th).
    assert all(len(p) == 1 for c, p in at.items() if c >= 32), at
    assert all(len(p) <= 2 for c, p in at.items() if c >= 16), at


def test_routine_phase_is_a_stable_hash_of_the_machine_id() -> None:
    """The same in every process (not Python's salted hash()): a service's workers and a
    replay place a machine's judgements alike; the bench fleet's ids spread over the grid."""
    assert routine_phase("m000") == 8_032_309_611_440_755_817
    assert routine_phase("") == 0
    slots = [routine_phase(f"m{i:03d}") % 256 for i in range(160)]
    assert max(slots.count(s) for s in set(slots)) <= 4  # 160 machines in 256 windows


def test_the_named_defect_question_is_answered_without_a_judgement_until_it_could_be() -> None:
    """The scorer asks every healthy window whether the routine diagnosis names a bearing
    defect: the same answer as judging it, but no judgement while the average is worth
    fewer than MIN_INDEPENDENT_WINDOWS independent windows (a segment's 1st, 2nd, 4th …)."""
    chans, frames = _recording("fault sets in")
    asked = DiagnosisEngine(25600.0, N, HOP, chans)
    read = DiagnosisEngine(25600.0, N, HOP, chans)
    named = unjudged = 0
    for f in frames:
        assert f is not None
        v, w = asked.push(f), read.push(f)
        got = v.named_bearing_defect()
        d = w.result()
        want = names_bearing_defect(d.label, d.confidence, d.k_eff)
        assert (got is not None) == want
        if got is not None:
            named += 1
            assert _key(got) == _key(d)
        assert v.routine is not None
        if v.routine.k_eff < MIN_INDEPENDENT_WINDOWS:
            assert not v.routine.judged
            unjudged += 1
        else:
            assert v.routine.judged
    assert named > 0, "the fault must be named for this to test anything"
    assert unjudged >= 2 * 3  # each segment's 1st, 2nd and 4th window at least


class _Counting(DiagnosisEngine):
    """An engine that counts its judgements (the windows they were made at)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.judged_at: list[int] = []

    def judge_state(self, avg, baseline=None, signal=None):  # type: ignore[no-untyped-def]
        self.judged_at.append(self._tick)
        return super().judge_state(avg, baseline, signal)


@pytest.mark.parametrize(
    ("alerting", "judged_at"),
    [
        # Past the average's memory (4 windows): the first of the run at its own window, then
        # one every fresh_within + 1 = 3 windows — the routine one due at window 32 is not a
        # second judgement beside a fresh one 1–2 windows old.
        (range(20, 44), [21, 24, 27, 30, 33, 36, 39, 42]),
        (range(30, 40), [31, 34, 37, 40]),
        # From the segment's start: the plain mean's doubling (1, 2, 4), then as above.
        (range(0, 12), [1, 2, 4, 7, 10]),
        # Two runs more than fresh_within apart: each first one at its own window.
        ([*range(20, 26), *range(36, 40)], [21, 24, 37, 40]),
    ],
)
def test_an_alerting_machine_is_judged_as_often_as_the_schedule_reads(
    alerting: Sequence[int], judged_at: list[int]
) -> None:
    """Windows of one healthy segment read as a score reads them (an alerting window its fresh
    diagnosis, the first of a run at its own window; the others nothing): the judgements made
    and the windows (1-based) they were made at."""
    chans, frames = _recording("fault sets in")
    engine = _Counting(25600.0, N, HOP, chans, memory=2.0)
    assert (engine.fresh_within, engine.judge_every, engine.phase) == (2, 32, 0)
    run = set(alerting)
    for i, f in enumerate(frames[:44]):
        assert f is not None
        v = engine.push(f)
        if i in run:
            v.fresh(now=i - 1 not in run)
    assert engine.average.segments == 1
    assert engine.judged_at == judged_at
