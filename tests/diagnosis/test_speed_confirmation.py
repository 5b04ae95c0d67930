"""A change of speed is confirmed by independent data (docs/diagnosis.md §1, segments).

The averages start a new segment when the tracked speed leaves the segment's by more than
the tolerance (3 %) — confirmed, as a change of level is, over a window length of new data:
``max(2, ceil(n / hop))`` windows running off the segment's speed and agreeing with the
run's first within the tolerance. At 50 % overlap that is two windows (as before); at
93.75 % it is sixteen, not two windows sharing 15/16 of their samples (the CWRU inner race
in added noise: a few overlapping windows whose speed stood at the edge of the search
restarted the average and lost the race). The windows of a run are skipped, never averaged
into the old segment at a speed they are not at.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdm.diagnosis import DiagnosisEngine
from pdm.diagnosis.average import SpectrumAverage
from pdm.dsp.features import ChannelSpec, FeatureExtractor

SPEED_HZ = 1797.0 / 60
OFF = 1.04 * SPEED_HZ  # 4 % off: outside the 3 % tolerance


def _window() -> np.ndarray:
    return np.ones((1, 2049), dtype=np.complex64)


def _run(n: int, hop: int, speeds: list[float]) -> SpectrumAverage:
    avg = SpectrumAverage(1, 12000.0, n, hop)
    for hz in speeds:
        avg.add(_window(), None, hz, None)
    return avg


@pytest.mark.parametrize(
    ("n", "hop", "need"),
    [
        (4096, 4096, 2),  # no overlap: one stray is still skipped
        (4096, 2048, 2),  # 50 %: two windows running, as the service has always had
        (4096, 1024, 4),  # 75 %
        (4096, 256, 16),  # 93.75 %: the CLI's train/score
        (4000, 300, 14),  # a hop that does not divide the window: ceil(n / hop)
    ],
)
def test_a_change_of_speed_needs_a_window_length_of_new_data(n: int, hop: int, need: int) -> None:
    """Three windows at the segment's speed, then ``need − 1`` windows 4 % off: skipped,
    one segment, nothing of them averaged; one more off window confirms: a new segment
    from it, at its speed."""
    head = [SPEED_HZ] * 3
    short = _run(n, hop, head + [OFF] * (need - 1))
    assert (short.segments, short.count, short.skipped) == (1, 3, need - 1)
    assert short.ref_shaft_hz == SPEED_HZ
    held = _run(n, hop, head + [OFF] * need)
    assert (held.segments, held.count, held.skipped) == (2, 1, need - 1)
    assert held.ref_shaft_hz == OFF


def test_two_overlapping_windows_off_speed_are_not_a_change_at_high_overlap() -> None:
    """93.75 % overlap: two (and up to fifteen) windows running at a speed 4 % off, then the
    segment's speed again — the off windows are skipped, the rest averaged in one segment.
    Before, the second off window started a segment (at 50 % overlap it still does)."""
    for k in (2, 6, 15):
        avg = _run(4096, 256, [SPEED_HZ] * 4 + [OFF] * k + [SPEED_HZ] * 4)
        assert (avg.segments, avg.count, avg.skipped) == (1, 8, k)
        assert avg.ref_shaft_hz == SPEED_HZ
    assert _run(4096, 2048, [SPEED_HZ] * 4 + [OFF] * 2).segments == 2


def test_a_run_is_broken_by_the_segments_speed_or_a_disagreeing_speed() -> None:
    """93.75 % overlap: a run must be sixteen windows running, off the segment's speed and
    within 3 % of the run's first. A window back at the segment's speed ends the run (and is
    averaged); a window off but 8 % from the run's first starts a run of its own."""
    back = _run(4096, 256, [SPEED_HZ] + [OFF] * 10 + [SPEED_HZ] + [OFF] * 10)
    assert (back.segments, back.count, back.skipped) == (1, 2, 20)
    jump = _run(4096, 256, [SPEED_HZ] + [OFF] * 10 + [0.96 * SPEED_HZ] + [OFF] * 10)
    assert (jump.segments, jump.count, jump.skipped) == (1, 1, 21)
    agree = _run(4096, 256, [SPEED_HZ] + [OFF] * 8 + [1.01 * OFF] * 8)
    assert (agree.segments, agree.count) == (2, 1)
    assert agree.ref_shaft_hz == 1.01 * OFF


def test_a_speed_step_starts_a_segment_a_window_length_later() -> None:
    """A machine stepping from 1500 to 1620 r/min (8 %; 1×-3× lines standing, 12 kHz, 4096
    samples, 93.75 % overlap, speed searched 1400-1750 r/min): the step starts one new
    segment, at 1620 r/min, from a window no earlier than a window length of new-speed data
    (its start at the step or after), and no window wholly after the step is averaged into
    the old segment."""
    fs, n, hop = 12000.0, 4096, 256
    step = int(6.0 * fs)
    rng = np.random.default_rng(0)
    f = np.where(np.arange(2 * step) < step, 1500.0 / 60, 1620.0 / 60)
    phase = 2 * np.pi * np.cumsum(f) / fs
    x = sum(a * np.sin(k * phase) for k, a in ((1, 0.05), (2, 0.02), (3, 0.01)))
    x = (x + 0.01 * rng.standard_normal(x.size)).astype(np.float32)[None, :]
    chans = [ChannelSpec("x_g", None)]
    fx = FeatureExtractor(fs, n, chans, rpm_range=(1400.0, 1750.0))
    engine = DiagnosisEngine(fs, n, hop, chans)
    avg = engine.average
    restarts = []
    for s in range(0, x.shape[1] - n + 1, hop):
        before, count = avg.segments, avg.count
        engine.update(fx.extract(x[:, s : s + n]))
        if avg.segments != before:
            restarts.append(s)
        elif s >= step and avg.ref_shaft_hz < 1560.0 / 60:
            assert avg.count == count, f"window at {s} averaged into the old segment"
    assert len(restarts) == 1
    assert step <= restarts[0] <= step + 2 * n
    assert math.isclose(avg.ref_shaft_hz * 60, 1620.0, rel_tol=5e-3)
