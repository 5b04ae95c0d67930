"""Sensor health: seeded simulator windows in, per-channel verdicts out.

Debouncing (faulty windows in a row before ``sensor_fault``) is the alarm state
machine's, tested in test_alarm_state.py and, on the sensor-fault fixture, in
test_alarm_replay.py.

Healthy sensors on a sick machine (strong bearing faults, a large unbalance)
must never be flagged; each injected sensor fault must be flagged, with its
own name, in every window that lies wholly inside it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest

from pdm.alarms.health import (
    FAULTS,
    STANDARD_G,
    ChannelHealth,
    HealthLimits,
    by_sensor,
    check_window,
    check_windows,
    full_scale_g,
)
from pdm.config import load_pipeline
from pdm.dsp.windows import Window, Windower
from pdm.sources.base import Chunk
from pdm.sources.csv import CsvRecording
from pdm.sources.simulator import (
    FaultSpec,
    SensorFaultSpec,
    SimSpec,
    Simulator,
    TransientSpec,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = load_pipeline(REPO / "pipelines" / "demo.toml")
FS = 25600.0
N = DEMO.acquisition.window_samples  # 8192 samples, 0.32 s
HOP = DEMO.acquisition.hop_samples  # 2048 samples, 0.08 s
FULL = full_scale_g(DEMO)  # ±16 g, both channels
LSB = 0.002  # the fixtures' quantisation step, g: the coarsest the simulator is run with
HEALTHY = FaultSpec("unbalance", 0.05)  # the demo machine's healthy running (as the fixtures)
LIMITS = HealthLimits()


def demo_spec(**changes: object) -> SimSpec:
    """The demo machine (25.6 kHz, 1480 r/min, SKF 6205, x/y sensors), 4 s, seeded."""
    spec = SimSpec(duration_s=4.0, faults=(HEALTHY,), lsb_g=LSB, seed=11)
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def windows_of(spec: SimSpec) -> list[Window]:
    """The demo pipeline's windows of a simulated recording (channels in g: scale 1)."""
    windower = Windower(N, HOP, np.ones(len(spec.channels)))
    out: list[Window] = []
    with Simulator(spec, chunk_samples=10_000) as src:
        for chunk in src.chunks():
            out += windower.push(chunk)[0]
    return out


def span_of(w: Window) -> tuple[int, int]:
    """The window's samples [first, end) counted from the start of the recording."""
    return w.index * HOP, w.index * HOP + N


def noise(n: int = N, *, seed: int = 0, rms: float = 0.02) -> np.ndarray:
    """(2, n) float32 white noise in g: never two equal samples, never an exact zero."""
    return (rms * np.random.default_rng(seed).standard_normal((2, n))).astype(np.float32)


# --------------------------------------------------------------------------- healthy sensors


SICK_MACHINES = {
    "healthy": (HEALTHY,),
    "strong outer race": (HEALTHY, FaultSpec("bpfo", 5.0)),
    "strong inner race": (HEALTHY, FaultSpec("bpfi", 4.0)),
    "ball and cage": (HEALTHY, FaultSpec("bsf", 3.0), FaultSpec("ftf", 1.0)),
    "large unbalance": (FaultSpec("unbalance", 1.0),),  # ≈ 45 mm/s rms: deep in zone D
    "misalignment and looseness": (FaultSpec("misalignment", 0.8), FaultSpec("looseness", 0.5)),
    "everything at once": (
        FaultSpec("unbalance", 1.0),
        FaultSpec("bpfo", 5.0),
        FaultSpec("bpfi", 3.0),
        FaultSpec("looseness", 0.5),
    ),
}


@pytest.mark.parametrize("machine", list(SICK_MACHINES))
def test_healthy_sensors_on_a_sick_machine_are_not_flagged(machine: str) -> None:
    spec = demo_spec(faults=SICK_MACHINES[machine])
    wins = windows_of(spec)
    assert len(wins) == 47
    for w in wins:
        assert check_window(w.data, FS, FULL) == [ChannelHealth(True)] * 2, w.index


def test_knocks_below_full_scale_are_not_clipping() -> None:
    # 12 g knocks on a ±16 g sensor (y sees 0.7 × 12 = 8.4 g): large, but a measurement.
    knocks = tuple(TransientSpec(0.05 + 0.05 * i, 12.0) for i in range(78))
    for w in windows_of(demo_spec(faults=(HEALTHY, FaultSpec("bpfo", 3.0)), transients=knocks)):
        assert max(np.abs(w.data).max(axis=1)) > 8.0
        assert all(h.ok for h in check_window(w.data, FS, FULL)), w.index


# --------------------------------------------------------------------------- sensor faults

START_S, END_S = 1.508, 2.7  # fault span, s; a window overlaps its start by only 307 samples
A, B = round(START_S * FS), round(END_S * FS)  # its samples [A, B)
# Clipping needs a signal beyond full scale: 40 g knocks every 20 ms inside the span,
# the last one early enough for its ringing to die out before the span ends.
KNOCKS = tuple(TransientSpec(START_S + 0.01 + 0.02 * i, 40.0) for i in range(58))

SENSOR_FAULTS = {
    "flatline": (SensorFaultSpec("flatline", START_S, END_S, channels=("x_g",)), ("flatline",)),
    # The knocks reach both sensors (y at 0.7 × 40 g), so both clip.
    "clipping": (SensorFaultSpec("clipping", START_S, END_S, full_scale_g=16.0), ("clipping",)),
    # A window of zeros is both: nothing moves (flatline) and it is zeros (dropout).
    "dropout to zeros": (
        SensorFaultSpec("dropout", START_S, END_S, channels=("x_g",), fill="zero"),
        ("flatline", "dropout"),
    ),
    "dropout to NaN": (
        SensorFaultSpec("dropout", START_S, END_S, channels=("x_g",), fill="nan"),
        ("nan",),
    ),
}


@functools.cache
def faulty_windows(name: str) -> list[Window]:
    """The demo machine's windows with SENSOR_FAULTS[name] over [START_S, END_S)."""
    fault, _expected = SENSOR_FAULTS[name]
    spec = demo_spec(sensor_faults=(fault,))
    if fault.kind == "clipping":
        spec = dataclasses.replace(spec, transients=KNOCKS)
    return windows_of(spec)


@pytest.fixture(params=list(SENSOR_FAULTS))
def faulty(request: pytest.FixtureRequest) -> tuple[str, tuple[str, ...], list[Window]]:
    return request.param, SENSOR_FAULTS[request.param][1], faulty_windows(request.param)


def test_windows_inside_a_sensor_fault_are_flagged_with_its_name(faulty) -> None:
    name, expected, wins = faulty
    inside = [w for w in wins if A <= span_of(w)[0] and span_of(w)[1] <= B]
    assert len(inside) == 11
    for w in inside:
        x, y = check_window(w.data, FS, FULL)
        assert (x.ok, x.faults) == (False, expected), (w.index, x.detail)
        if name == "clipping":
            assert (y.ok, y.faults) == (False, expected), (w.index, y.detail)
        else:
            assert y.ok, (w.index, y.detail)  # the other channel of the sensor is fine


def test_windows_outside_a_sensor_fault_are_not_flagged(faulty) -> None:
    _name, _expected, wins = faulty
    outside = [w for w in wins if span_of(w)[1] <= A or B <= span_of(w)[0]]
    assert len(outside) == 47 - 11 - 8  # 8 windows straddle an edge of the span
    for w in outside:
        assert all(h.ok for h in check_window(w.data, FS, FULL)), w.index


@pytest.mark.parametrize(
    ("name", "fault", "limit"),
    [
        ("flatline", "flatline", LIMITS.flatline_run_s * FS),
        ("dropout to zeros", "dropout", LIMITS.dropout_run_s * FS),
        ("dropout to NaN", "nan", 0),
    ],
)
def test_windows_straddling_a_sensor_fault_are_judged_by_its_length(
    name: str, fault: str, limit: float
) -> None:
    """A run fault counts once the part inside the window is longer than its limit.

    (Clipping depends on how many knocks a window holds, not on the overlap.)
    """
    judged = []
    for w in faulty_windows(name):
        lo, hi = span_of(w)
        overlap = min(hi, B) - max(lo, A)
        if not 0 < overlap < N:
            continue
        x = check_window(w.data, FS, FULL)[0]
        # The held value also sits on the sample before the span: a flatline run is
        # one longer than the overlap when the window starts before the span.
        if overlap > limit + 1:
            assert fault in x.faults, (w.index, overlap, x.detail)
            judged.append("fault")
        elif overlap < limit - 16:
            assert x.ok, (w.index, overlap, x.detail)
            judged.append("ok")
    assert judged.count("fault") >= 6 and judged.count("ok") == (0 if fault == "nan" else 1)


def test_dc_bias_is_flagged() -> None:
    for bias in (3.0, -2.5):
        for w in windows_of(demo_spec(dc_bias_g=bias, duration_s=1.0)):
            for h in check_window(w.data, FS, FULL):
                assert h.faults == ("dc_bias",), h.detail
                assert h.detail == f"dc_bias: mean {bias:+.3g} g (limit ±2 g)"
    # 1 g of gravity on a DC-responding sensor is within the default limit
    for w in windows_of(demo_spec(dc_bias_g=1.0, duration_s=1.0)):
        assert all(h.ok for h in check_window(w.data, FS, FULL))


def test_dc_bias_under_large_peaks() -> None:
    """Peaks far above the DC limit (impacts) do not hide a bias, nor fake one."""
    x = noise(rms=0.5)
    x[:, ::200] = 12.0  # one-sided impacts: 41 samples at +12 g, mean +0.06 g
    x[:, 100::200] = -12.0
    assert all(h.ok for h in check_window(x, FS, FULL))
    x[0] += 2.05
    x[1] -= 1.95
    h0, h1 = check_window(x, FS, FULL)
    assert h0.faults == ("dc_bias",) and h1.ok


def reference_faults(
    row: np.ndarray, fs: float, full_scale: float | None, lim: HealthLimits
) -> tuple[str, ...]:
    """The definitions, sample by sample, with no screening: what check_window must agree with."""
    n = len(row)
    finite = [v for v in row.tolist() if math.isfinite(v)]
    longest_same = longest_zero = 0
    run_same = run_zero = 0
    prev = None
    for v in row.tolist():
        run_same = run_same + 1 if (prev is not None and v == prev) else 1
        run_zero = run_zero + 1 if v == 0 else 0
        if math.isfinite(v):
            longest_same = max(longest_same, run_same)
        longest_zero = max(longest_zero, run_zero)
        prev = v
    out = []
    if finite:
        held_too_long = longest_same > lim.flatline_run_s * fs or longest_same == n
        if max(finite) - min(finite) < lim.flatline_p2p_g or held_too_long:
            out.append("flatline")
        if full_scale is not None:
            level = np.float32(lim.clip_level * full_scale) if row.dtype == np.float32 else None
            level = lim.clip_level * full_scale if level is None else level
            clipped = sum(abs(v) >= level for v in row[np.isfinite(row)])
            if clipped / len(finite) > lim.clip_share:
                out.append("clipping")
        if longest_zero > lim.dropout_run_s * fs or longest_zero == n:
            out.append("dropout")
    if (n - len(finite)) / n > lim.nan_share:
        out.append("nan")
    if finite and abs(math.fsum(finite) / len(finite)) > lim.dc_bias_g:
        out.append("dc_bias")
    return tuple(out)


def test_screened_verdicts_equal_the_definitions() -> None:
    """Random windows with faults near every limit: the cheap screen never changes a verdict."""
    rng = np.random.default_rng(2026)
    for case in range(400):
        fs = float(rng.choice([1000.0, 12000.0, 25600.0, 48000.0]))
        n = int(rng.integers(8, 2500))
        lim = HealthLimits(
            flatline_run_s=float(rng.uniform(0.0005, 0.05)),
            dropout_run_s=float(rng.uniform(0.0002, 0.03)),
            nan_share=float(rng.choice([0.0, 0.01])),
            clip_share=float(rng.choice([0.0, 0.001, 0.05])),
            dc_bias_g=float(rng.choice([0.5, 2.0, 2.0])),
        )
        x = rng.standard_normal((3, n)) * rng.choice([1e-5, 0.01, 0.05, 0.05, 3.0], size=(3, 1))
        lsb = rng.choice([0.0, 1e-4, 0.002, 0.05])
        if lsb:
            x = np.round(x / lsb) * lsb
        x += rng.choice([0.0, 0.0, 0.0, 0.6, -2.2], size=(3, 1))
        near = [lim.flatline_run_s * fs, lim.dropout_run_s * fs]  # run lengths at the limits
        for c in range(3):
            for _ in range(rng.integers(0, 3)):
                a = int(rng.integers(0, n))
                if rng.random() < 0.5:
                    length = max(1, int(rng.choice(near)) + int(rng.integers(-2, 3)))
                else:
                    length = int(rng.integers(1, max(2, int(0.06 * fs))))
                kind = rng.integers(0, 4)
                if kind == 0:
                    x[c, a : a + length] = 0.0
                elif kind == 1:
                    x[c, a : a + length] = x[c, a]
                elif kind == 2:
                    x[c, a : a + rng.integers(1, 4)] = np.nan
                else:
                    x[c, a : a + length] = np.clip(x[c, a : a + length] * 50, -4.0, 4.0)
        full = [None if rng.random() < 0.3 else float(rng.choice([4.0, 4.05, 16.0])) for _ in "abc"]
        data = x.astype(rng.choice([np.float32, np.float64]))
        got = [h.faults for h in check_window(data, fs, full, lim)]
        want = [reference_faults(data[c], fs, full[c], lim) for c in range(3)]
        assert got == want, (case, fs, n, lim, full)
        if data.dtype == np.float32:
            # With min, max and sum as the feature extraction computes them (float32 BLAS).
            mean = (data @ np.ones(n, np.float32)) * np.float32(1.0 / n)
            stats = np.stack([data.min(axis=1), data.max(axis=1), mean * n], axis=1)
            (win,) = check_windows(data[None], fs, full, lim, stats=stats.astype(np.float64))
            assert [h.faults for h in win] == want, (case, "stats", fs, n, lim, full)


# --------------------------------------------------------------------------- single checks


def test_a_single_nan_sample_flags_nan() -> None:
    x = noise()
    x[0, 1234] = np.nan
    h, other = check_window(x, FS, FULL)
    assert (h.ok, h.faults) == (False, ("nan",))
    assert h.detail == "nan: 1 of 8192 samples not finite (0.012 %)"
    assert other.ok
    x[1, 7] = -np.inf
    assert check_window(x, FS, FULL)[1].faults == ("nan",)


def test_nan_share_allows_a_few_and_the_rest_is_still_checked() -> None:
    x = noise()
    x[:, 100:110] = np.nan  # 10 of 8192 samples: 0.12 %
    lenient = HealthLimits(nan_share=0.01)
    assert all(h.ok for h in check_window(x, FS, FULL, lenient))
    x[0, 5000:5600] = 0.0  # 600 zeros (23 ms) among the readable samples
    x[1] += 3.0  # and a bias
    h0, h1 = check_window(x, FS, FULL, lenient)
    assert h0.faults == ("dropout",) and h1.faults == ("dc_bias",)
    assert check_window(x, FS, FULL)[0].faults == ("dropout", "nan")


def test_all_nan_window_is_nan_only() -> None:
    x = np.full((2, N), np.nan, dtype=np.float32)
    assert [h.faults for h in check_window(x, FS, FULL)] == [("nan",), ("nan",)]


@pytest.mark.parametrize("offset", [0, 1, 255, 256, 257, 1000, 4095, N - 513, N - 514])
def test_dropout_run_limit_is_exact(offset: int) -> None:
    """0.02 s at 25.6 kHz is 512 samples: 512 zeros in a row pass, 513 do not."""
    x = noise()
    x[0, offset : offset + 512] = 0.0
    assert check_window(x, FS, FULL)[0].ok
    end = min(offset + 513, N)
    x[0, end - 513 : end] = 0.0
    h = check_window(x, FS, FULL)[0]
    assert h.faults == ("dropout",)
    assert h.detail == "dropout: 513 zero samples in a row (0.02 s)"


@pytest.mark.parametrize("offset", [0, 3, 639, 640, 641, 3333, N - 1281])
def test_flatline_run_limit_is_exact(offset: int) -> None:
    """0.05 s at 25.6 kHz is 1280 samples: a value held for 1281 samples is a stuck ADC."""
    x = noise()
    x[0, offset : offset + 1280] = 0.0123
    assert check_window(x, FS, FULL)[0].ok
    x[0, offset : offset + 1281] = 0.0123
    h = check_window(x, FS, FULL)[0]
    assert h.faults == ("flatline",)
    assert h.detail == "flatline: +0.0123 g held for 1281 samples (0.05 s)"


def test_flatline_by_peak_to_peak() -> None:
    """A dead channel behind a 24-bit ADC: only µg of converter noise, no repeated values."""
    x = noise(rms=0.02)
    x[0] = noise(rms=5e-6, seed=1)[0] + 0.3
    h = check_window(x, FS, FULL)[0]
    assert h.faults == ("flatline",)
    assert h.detail.startswith("flatline: peak-to-peak ") and h.detail.endswith(" g")
    assert check_window(x, FS, FULL, HealthLimits(flatline_p2p_g=1e-5))[0].ok


def test_all_zero_window_is_dropout_and_flatline() -> None:
    x = np.zeros((2, N), dtype=np.float32)
    h = check_window(x, FS, FULL)[0]
    assert h.faults == ("flatline", "dropout")
    assert h.detail == (
        "flatline: peak-to-peak 0 g, +0 g held for 8192 samples (0.32 s); "
        "dropout: 8192 zero samples in a row (0.32 s)"
    )


def test_window_shorter_than_the_run_limits() -> None:
    """256 samples (10 ms) cannot hold a 20 ms run: a run filling the window counts."""
    x = noise(256)
    assert all(h.ok for h in check_window(x, FS, FULL))
    x[0, 50:200] = 0.0  # 150 zeros: not the whole window, not 20 ms
    x[1, 20:220] = 0.5  # 200 equal samples: same
    assert all(h.ok for h in check_window(x, FS, FULL))
    zeros = np.zeros((2, 256), dtype=np.float32)
    assert check_window(zeros, FS, FULL)[0].faults == ("flatline", "dropout")
    held = np.full((1, 256), 0.25, dtype=np.float32)
    assert check_window(held, FS, [None])[0].faults == ("flatline",)
    one = np.array([[0.1]], dtype=np.float32)  # a lone sample has no peak-to-peak
    assert check_window(one, FS, [None])[0].faults == ("flatline",)


# --------------------------------------------------------------------------- clipping


def clipped_sine(amplitude_g: float, rail_g: float, n: int = N) -> np.ndarray:
    """(1, n) a 100 Hz sine of ``amplitude_g`` limited to ± ``rail_g``, float32 g."""
    t = np.arange(n) / FS
    return np.clip(amplitude_g * np.sin(2 * np.pi * 100 * t), -rail_g, rail_g)[None].astype(
        np.float32
    )


def test_clipping_is_judged_only_when_full_scale_is_known() -> None:
    x = clipped_sine(40.0, 16.0)
    h = check_window(x, FS, [16.0])[0]
    assert h.faults == ("clipping",)
    share = np.mean(np.abs(x) >= 0.98 * 16)
    assert h.detail == f"clipping: {100 * share:.0f} % of samples at ±16 g (|x| ≥ 15.68 g)"
    assert check_window(x, FS, [None])[0].ok
    # the same sine within range is fine; a ±50 g sensor sees no clipping either
    assert check_window(clipped_sine(15.0, 16.0), FS, [16.0])[0].ok
    assert check_window(x, FS, [50.0])[0].ok


def test_clip_share_counts_samples_on_the_rail() -> None:
    x = noise(rms=1.0)
    x[0, :8] = 16.0  # 8 of 8192 samples: 0.098 %, not more than 0.1 %
    assert check_window(x, FS, FULL)[0].ok
    x[0, 100] = -15.7  # a ninth, on the other rail (≥ 0.98 × 16 g)
    assert check_window(x, FS, FULL)[0].faults == ("clipping",)
    assert check_window(x, FS, FULL, HealthLimits(clip_share=0.002))[0].ok


def test_full_scale_in_m_s2_is_converted_to_g(tmp_path: Path) -> None:
    text = (REPO / "pipelines" / "demo.toml").read_text(encoding="utf-8")
    text = text.replace(
        '{ column = "y_g", unit = "g", full_scale = 16.0, axis = "vertical" }',
        '{ column = "y_ms2", unit = "m/s2", full_scale = 156.9064, axis = "vertical" }',
    )
    text = text.replace('path = "../models/demo-pump"', 'path = "models/none"')
    path = tmp_path / "demo_ms2.toml"
    path.write_text(text, encoding="utf-8")
    pipeline = load_pipeline(path)
    fsg = full_scale_g(pipeline)
    assert fsg[0] == 16.0
    assert fsg[1] == pytest.approx(156.9064 / STANDARD_G) == pytest.approx(16.0)
    # A ±16 g sensor read in m/s²: the windower converts to g, the limit must follow.
    raw = np.stack([clipped_sine(10.0, 16.0)[0], clipped_sine(40.0, 16.0)[0] * STANDARD_G])
    windower = Windower(N, HOP, [1.0, 1.0 / STANDARD_G])
    (w,), _ = windower.push(Chunk(raw.T.astype(np.float64), FS, 0.0, pipeline.columns))
    x, y = check_window(w.data, FS, fsg)
    assert x.ok and y.faults == ("clipping",)
    # the m/s² figure taken for g would hide it
    assert check_window(w.data, FS, [16.0, 156.9064])[1].ok


def test_full_scale_unknown_is_none() -> None:
    cwru = load_pipeline(REPO / "pipelines" / "cwru_drive_end.toml")
    assert full_scale_g(cwru) == [None, None]
    assert FULL == [16.0, 16.0]


# --------------------------------------------------------------------------- batch, errors


def test_batch_gives_the_same_verdicts_as_one_window_at_a_time() -> None:
    x = np.stack([noise(seed=i) for i in range(6)])
    x[1, 0, :] = 0.0
    x[2, 1, 10] = np.nan
    x[3, 0] = clipped_sine(40.0, 16.0)[0]
    x[4, 1] += 2.5
    x[5, 0, 4000:5500] = 0.3
    batch = check_windows(x, FS, FULL)
    assert batch == [check_window(w, FS, FULL) for w in x]
    assert [[h.faults for h in win] for win in batch] == [
        [(), ()],
        [("flatline", "dropout"), ()],
        [(), ("nan",)],
        [("clipping",), ()],
        [(), ("dc_bias",)],
        [("flatline",), ()],
    ]


def test_float64_and_transposed_input() -> None:
    x = noise()
    x[0, :600] = 0.0
    expected = check_window(x, FS, FULL)
    assert check_window(x.astype(np.float64), FS, FULL) == expected
    assert check_window(np.asfortranarray(x), FS, FULL) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_window(noise()[0], FS, [None]), "must be (n_channels, n)"),
        (lambda: check_window(noise(), FS, [None]), "1 entries for 2 channels"),
        (lambda: check_window(noise(), 0.0, FULL), "fs=0.0 must be > 0"),
        (lambda: check_window(noise(), math.nan, FULL), "must be > 0"),
        (lambda: check_window(noise(), FS, [16.0, -1.0]), "full_scale_g[1]=-1.0"),
        (lambda: check_window(noise(0), FS, FULL), "at least one sample"),
        (lambda: check_windows(noise(), FS, FULL), "(n_windows, n_channels, n)"),
        (lambda: HealthLimits(flatline_run_s=-1.0), "flatline_run_s=-1.0"),
        (lambda: HealthLimits(clip_level=1.5), "clip_level=1.5"),
        (lambda: HealthLimits(nan_share=1.0), "nan_share=1.0"),
        (lambda: HealthLimits(dc_bias_g=math.inf), "dc_bias_g=inf"),
    ],
)
def test_errors_name_the_value(call, message: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_defaults_are_documented() -> None:
    assert dataclasses.asdict(LIMITS) == {
        "flatline_p2p_g": 1e-4,
        "flatline_run_s": 0.05,
        "clip_level": 0.98,
        "clip_share": 0.001,
        "dropout_run_s": 0.02,
        "nan_share": 0.0,
        "dc_bias_g": 2.0,
    }
    doc = HealthLimits.__doc__ or ""
    for name in dataclasses.asdict(LIMITS):
        assert f"{name} : float" in doc
    assert FAULTS == ("flatline", "clipping", "dropout", "nan", "dc_bias")


OK = ChannelHealth(True)
BAD = ChannelHealth(False, ("nan",), "nan: 1 of 8192 samples not finite (0.012 %)")


def test_by_sensor_folds_channels() -> None:
    sensor_of = {"x_g": "de", "y_g": "de", "z_g": "nde"}
    health = [ChannelHealth(False, ("nan",), "nan: …"), OK, OK]
    assert by_sensor(health, ["x_g", "y_g", "z_g"], sensor_of) == (
        {"de": ("nan",)},
        {"de": "x_g: nan: …"},
    )
    health = [BAD, ChannelHealth(False, ("clipping",), "clipping: …"), OK]
    faults, detail = by_sensor(health, ["x_g", "y_g", "z_g"], sensor_of)
    assert faults == {"de": ("clipping", "nan")}
    assert detail["de"] == f"x_g: {BAD.detail}; y_g: clipping: …"


# --------------------------------------------------------------------------- recordings


@pytest.mark.dataset
@pytest.mark.parametrize("rate", ["de12k", "de48k"])
def test_cwru_recordings_are_healthy(cwru: Path, rate: str) -> None:
    """Every channel (DE, FE, BA) of the normal and the drive-end fault recordings is healthy."""
    pipeline = load_pipeline(REPO / "pipelines" / "cwru_drive_end.toml")
    files = sorted((cwru / rate).glob("*.csv"))
    assert len(files) == 4
    for path in files:
        with CsvRecording(path) as rec:
            windower = Windower(
                pipeline.acquisition.window_samples,
                pipeline.acquisition.hop_samples,
                np.ones(len(rec.channels)),
            )
            wins = [w for chunk in rec.chunks() for w in windower.push(chunk)[0]]
            assert len(wins) >= 4
            verdicts = check_windows(
                np.stack([w.data for w in wins]),
                rec.sample_rate_hz,
                [None] * len(rec.channels),
            )
        bad = [
            (w.index, ch, h.detail)
            for w, health in zip(wins, verdicts, strict=True)
            for ch, h in zip(rec.channels, health, strict=True)
            if not h.ok
        ]
        assert bad == [], path.name


def test_plans_are_shared_by_equal_limits() -> None:
    """A service's machines each hold their own (mostly equal) limits: one plan serves them
    all, so more machines than the cache's size do not rebuild a plan every window."""
    import pdm.alarms.health as health

    x = noise()[None]
    health._PLANS.clear()
    for _ in range(200):
        check_windows(x, FS, FULL, HealthLimits(dc_bias_g=0.7))
    assert len(health._PLANS) == 1
    check_windows(x, FS, FULL, HealthLimits(dc_bias_g=0.8))
    assert len(health._PLANS) == 2
