"""A window whose speed is no measurement is not a change of speed (docs/diagnosis.md §13,
*Real faults at rates, speeds and noise they were never recorded at*).

Where the shaft lines do not stand out of the broadband floor (a well-balanced machine, a
noisy structure: the CWRU faults with white noise as strong as their healthy signal), the
per-window speed search admits no speed and reads the strongest peak of its range — noise's,
anywhere within ± 5 %. The averages used to take that for a measurement: they started a new
segment whenever two such windows agreed and lay > 3 % off, and judged the last one to five
windows at a speed up to 5 % off. Known answers here: a machine with no shaft line at all
keeps one segment at its nominal speed and its race named; a segment that began unmeasured
takes the speed measured within the segment tolerance of the assumed one for its own, once
a second reading from independent data confirms it, without restarting; one further off is
a change of speed, confirmed as any other.
"""

from __future__ import annotations

import math

import numpy as np

from pdm.diagnosis import DiagnosisEngine
from pdm.diagnosis.average import SpectrumAverage
from pdm.dsp.bearings import BEARINGS
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate


def test_a_machine_without_shaft_lines_is_averaged_at_its_nominal_speed() -> None:
    """A 6205 outer race at 1797 r/min, 12 kHz, and nothing turning with the shaft (no
    unbalance: no 1×-3× line at all), the speed searched ± 5 % about 1797 (the quick flag
    ``--nominal-rpm``): no window's speed stands, every window is averaged in one segment at
    the nominal speed and the race is named from all of them. Before, the strongest noise
    peaks' speeds (1707-1887 r/min) split the recording into segments of a few windows."""
    fs, n, rpm = 12000.0, 16384, 1797.0
    spec = SimSpec(
        fs=fs, duration_s=12.0, rpm=rpm, bearing=BEARINGS["6205"], channels=("x_g",),
        noise_rms_g=0.1, resonance_hz=3000.0, faults=(FaultSpec("bpfo", 0.5),), seed=3,
    )  # fmt: skip
    x = simulate(spec).T.astype(np.float32)
    chans = [ChannelSpec("x_g", BEARINGS["6205"])]
    fx = FeatureExtractor(fs, n, chans, rpm_range=(0.95 * rpm, 1.05 * rpm))
    hop = n // 2
    engine = DiagnosisEngine(fs, n, hop, chans)
    frames = [fx.extract(x[:, s : s + n]) for s in range(0, x.shape[1] - n + 1, hop)]
    assert not any(f.speed_measured for f in frames)  # nothing to measure a speed by
    assert {f.nominal_speed_rpm for f in frames} == {rpm}
    for f in frames:
        engine.update(f)
    avg = engine.average
    assert avg.segments == 1
    assert avg.count == len(frames)
    d = engine.diagnosis()
    assert d.label == "bearing_outer_race"
    assert math.isclose(d.channels[0].shaft_speed_rpm, rpm, rel_tol=1e-3)


def _window(n_bins: int = 2049) -> np.ndarray:
    return np.ones((1, n_bins), dtype=np.complex64)


def test_a_segment_begun_unmeasured_takes_the_measured_speed_once_confirmed() -> None:
    """Windows at a nominal 1850 r/min (a nameplate 3 % over the 1796 it runs at) whose
    speed is not measured, then one measured at 1796: still the nominal (one reading is not
    confirmed); then unmeasured ones at scattered speeds and measured ones at 1796 × 1.001:
    the second reading, two windows on (no sample shared at 50 % overlap), confirms — one
    segment at the median of the two readings, nothing skipped. (Until 2026-12-07 the first
    reading was the segment's speed at once: docs/diagnosis.md §13, *speedmean*.)"""
    avg = SpectrumAverage(1, 12000.0, 4096, 2048)
    nominal, true = 1850.0 / 60, 1796.0 / 60
    for hz in (1.04 * true, 0.96 * true):  # unmeasured: the strongest noise peak's
        assert avg.add(_window(), None, hz, None, measured=False, nominal_hz=nominal)
    assert avg.ref_shaft_hz == nominal
    assert avg.add(_window(), None, true, None, measured=True, nominal_hz=nominal)
    assert avg.ref_shaft_hz == nominal
    for i in range(6):
        hz = true * (1.05 if i % 2 else 0.95)
        assert avg.add(_window(), None, hz, None, measured=False, nominal_hz=nominal)
        assert avg.add(_window(), None, true * 1.001, None, measured=True, nominal_hz=nominal)
        assert math.isclose(avg.ref_shaft_hz, true * 1.0005)
    assert (avg.segments, avg.count, avg.skipped) == (1, 15, 0)


def test_one_measurement_far_from_the_assumed_speed_is_not_adopted() -> None:
    """A segment begun unmeasured at the nominal 1797 r/min, then one window whose speed
    stood at 1888 (5 % off: a rare line pattern in noise, seen at the edge of the CWRU noise
    sets' search): skipped as a stray, not the segment's speed; the next unmeasured windows
    stay at 1797."""
    avg = SpectrumAverage(1, 12000.0, 4096, 2048)
    nominal = 1797.0 / 60
    assert avg.add(_window(), None, 1.03 * nominal, None, measured=False, nominal_hz=nominal)
    assert not avg.add(_window(), None, 1888.0 / 60, None, measured=True, nominal_hz=nominal)
    for _ in range(3):
        assert avg.add(_window(), None, 0.97 * nominal, None, measured=False, nominal_hz=nominal)
    assert (avg.segments, avg.count, avg.skipped, avg.ref_shaft_hz) == (1, 4, 1, nominal)


def test_measured_speeds_still_start_a_segment() -> None:
    """Two measured windows running 10 % off the segment's speed are a real change: a new
    segment (one stray measured estimate is skipped, as before)."""
    avg = SpectrumAverage(1, 12000.0, 4096, 2048)
    true = 1796.0 / 60
    assert avg.add(_window(), None, true, None)
    assert not avg.add(_window(), None, 1.1 * true, None)  # one stray estimate: skipped
    assert avg.add(_window(), None, 1.1 * true, None)  # confirmed: a new segment
    assert (avg.segments, avg.count) == (2, 1)
    assert math.isclose(avg.ref_shaft_hz, 1.1 * true)


def test_one_marginal_reading_does_not_set_the_segments_speed() -> None:
    """A segment begun unmeasured at the nominal 3251.2 r/min (a 1× too weak to stand), one
    window whose speed stood at 3294.0 (+1.3 %: a weak 1× that a noise peak in the 3× range
    let stand, the speed read off that noise peak; the rig sweep's healthy gearbox, docs/
    diagnosis.md §13), the rest unmeasured: the segment stays at the nominal — at 3294 every
    line of order 13 (a gear mesh) sits 1.3 % × 13 = 0.17 orders off, 2.9 bins at 16384
    samples and 51.2 kHz. Before, that one reading became the segment's speed."""
    avg = SpectrumAverage(1, 51200.0, 16384, 8192)
    nominal = 3251.2 / 60
    for i in range(10):
        measured = i == 4
        hz = 3294.0 / 60 if measured else nominal * (1.02 if i % 2 else 0.98)
        assert avg.add(_window(), None, hz, None, measured=measured, nominal_hz=nominal)
    assert (avg.segments, avg.count, avg.skipped) == (1, 10, 0)
    assert avg.ref_shaft_hz == nominal


def test_a_stray_first_reading_is_outvoted_by_the_readings_after_it() -> None:
    """A segment whose first window's speed stood 2 % off the truth (within the tolerance,
    so no change of speed), the next ones at the truth: at the reading from a window sharing
    no sample with the first (two on at 50 % overlap) the segment's speed is the median of
    the three, the truth. Before, the first reading was the segment's speed for good."""
    avg = SpectrumAverage(1, 12000.0, 4096, 2048)
    true = 1796.0 / 60
    assert avg.add(_window(), None, 1.02 * true, None)
    assert avg.add(_window(), None, true, None)
    assert avg.ref_shaft_hz == 1.02 * true  # one reading and one sharing half its samples
    assert avg.add(_window(), None, true, None)
    assert avg.ref_shaft_hz == true
    for _ in range(5):
        assert avg.add(_window(), None, true, None)
    assert (avg.segments, avg.count, avg.skipped, avg.ref_shaft_hz) == (1, 8, 0, true)


def test_readings_that_share_samples_do_not_confirm_each_other() -> None:
    """93.75 % overlap (4096 samples, hop 256): a window sixteen hops on shares no sample
    with the first. Readings from the fifteen windows between share most of the first one's
    data (its noise peaks with it) and leave the speed provisional; the sixteenth confirms,
    the median of all seventeen readings."""
    avg = SpectrumAverage(1, 12000.0, 4096, 256)
    nominal, true = 1797.0 / 60, 1780.0 / 60
    assert avg.add(_window(), None, nominal, None, measured=False, nominal_hz=nominal)
    for i in range(16):
        assert avg.add(_window(), None, true * (1 + 1e-4 * i), None, nominal_hz=nominal)
        assert avg.ref_shaft_hz == nominal
    assert avg.add(_window(), None, true * 1.0016, None, nominal_hz=nominal)
    assert math.isclose(avg.ref_shaft_hz, true * 1.0008)
    assert (avg.segments, avg.count, avg.skipped) == (1, 18, 0)
