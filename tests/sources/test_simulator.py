"""Tests of the seeded vibration simulator and of the committed fixtures."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import json
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from pdm.dsp.bearings import lookup_bearing
from pdm.errors import ConfigError
from pdm.sources.simulator import (
    BLOCK_SAMPLES,
    FaultSpec,
    SensorFaultSpec,
    SimSpec,
    Simulator,
    TransientSpec,
    ground_truth,
    impact_positions,
    main,
    simulate,
    spec_from_dict,
    spec_to_dict,
    write_fixtures,
    write_recording,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FS = 25600.0


def _amplitude_at(x: np.ndarray, fs: float, f_hz: float) -> float:
    """0-peak amplitude of a tone at ``f_hz`` (an exact bin) from a Hann-windowed rfft."""
    n = x.shape[0]
    k = f_hz * n / fs
    assert abs(k - round(k)) < 1e-9, "choose a duration that puts the tone on a bin"
    w = np.hanning(n)
    spec = np.fft.rfft((x - x.mean()) * w)
    return float(2 * np.abs(spec[round(k)]) / w.sum())


# ---------------------------------------------------------------- determinism


def test_same_seed_same_samples_different_seed_differs() -> None:
    spec = SimSpec(
        duration_s=3.0,
        faults=(FaultSpec("unbalance", 0.1), FaultSpec("bpfi", 0.5, onset_s=1.0)),
        seed=7,
    )
    a, b = simulate(spec), simulate(spec)
    assert a.dtype == np.float64 and a.shape == (76800, 2)
    assert_array_equal(a, b)
    c = simulate(dataclasses.replace(spec, seed=8))
    assert not np.array_equal(a, c)
    # Different seeds change every random part: noise, phases and slip.
    assert np.mean(a == c) < 0.01


@pytest.mark.parametrize("chunk", [1000, 8192, BLOCK_SAMPLES, BLOCK_SAMPLES + 1, 200_000])
def test_chunks_concatenate_to_simulate(chunk: int) -> None:
    spec = SimSpec(
        duration_s=6.0,  # several internal blocks, impacts straddle their edges
        faults=(
            FaultSpec("looseness", 0.05, onset_s=0.5, ramp_s=1.0),
            FaultSpec("bpfo", 0.7, onset_s=0.3),
            FaultSpec("bsf", 0.3),
        ),
        transients=(TransientSpec(BLOCK_SAMPLES / FS - 0.5 / FS, 5.0),),
        sensor_faults=(SensorFaultSpec("flatline", 2.5, 2.6),),
        seed=3,
    )
    whole = simulate(spec)
    with Simulator(spec, chunk_samples=chunk) as src:
        assert src.channels == spec.channels and src.sample_rate_hz == spec.fs
        chunks = list(src.chunks())
    assert all(c.n_samples == chunk for c in chunks[:-1])
    assert_array_equal(np.concatenate([c.data for c in chunks]), whole)
    starts = np.cumsum([0] + [c.n_samples for c in chunks[:-1]])
    assert_allclose([c.t0 for c in chunks], spec.start_time + starts / spec.fs, rtol=0, atol=1e-6)
    assert all(c.channels == ("x_g", "y_g") and c.fs == FS for c in chunks)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 40_000), min_size=1, max_size=5))
def test_any_chunking_gives_the_same_stream(sizes: list[int]) -> None:
    # Every chunk_samples value yields the same samples: compare each to simulate().
    spec = SimSpec(duration_s=3.0, faults=(FaultSpec("bpfi", 0.5),), seed=11)
    whole = simulate(spec)
    for size in sizes:
        got = np.concatenate([c.data for c in Simulator(spec, chunk_samples=size).chunks()])
        assert_array_equal(got, whole)


def test_shorter_recording_is_a_prefix_and_endless_stream_matches() -> None:
    faults = (FaultSpec("misalignment", 0.1), FaultSpec("bpfo", 0.5, onset_s=0.2))
    short = simulate(SimSpec(duration_s=2.0, faults=faults, seed=5))
    long = simulate(SimSpec(duration_s=5.0, faults=faults, seed=5))
    assert_array_equal(long[: short.shape[0]], short)
    endless = Simulator(SimSpec(duration_s=math.inf, faults=faults, seed=5), chunk_samples=10_000)
    head = np.concatenate([c.data for c in itertools.islice(endless.chunks(), 12)])
    assert_array_equal(head, long[:120_000])


def test_close_stops_the_stream_and_rejects_new_iterations() -> None:
    src = Simulator(SimSpec(duration_s=math.inf), chunk_samples=1000)
    it = src.chunks()
    next(it)
    src.close()
    assert len(list(it)) <= 1
    with pytest.raises(Exception, match="closed"):
        next(src.chunks())


# ---------------------------------------------------------------- known answers


def test_unbalance_tone_amplitude_reads_the_spec() -> None:
    # 3 s at 1480 rpm: 1× = 74/3 Hz sits exactly on bin 74.
    spec = SimSpec(duration_s=3.0, faults=(FaultSpec("unbalance", 0.3),), seed=1)
    x = simulate(spec)
    fr = spec.rpm / 60
    for ch in range(2):
        assert _amplitude_at(x[:, ch], spec.fs, fr) == pytest.approx(0.3, rel=0.01)
    comp = ground_truth(spec)["faults"][0]["components"][0]
    assert comp["frequency_hz"] == pytest.approx(fr)
    assert comp["accel_peak_g"] == 0.3
    # v = a·g0 / (2π f): 0.3 g at 24.667 Hz is 18.98 mm/s 0-peak.
    assert comp["velocity_peak_mm_s"] == pytest.approx(0.3 * 9.80665e3 / (2 * math.pi * fr))
    assert comp["velocity_rms_mm_s"] == pytest.approx(comp["velocity_peak_mm_s"] / math.sqrt(2))


@pytest.mark.parametrize("kind", ["misalignment", "looseness"])
def test_every_tone_component_matches_the_truth(kind: Literal["misalignment", "looseness"]) -> None:
    spec = SimSpec(duration_s=6.0, faults=(FaultSpec(kind, 0.2),), noise_rms_g=0.005, seed=2)
    x = simulate(spec)
    comps = ground_truth(spec)["faults"][0]["components"]
    assert len(comps) == (2 if kind == "misalignment" else 11)
    for comp in comps:
        got = _amplitude_at(x[:, 0], spec.fs, comp["frequency_hz"])
        assert got == pytest.approx(comp["accel_peak_g"], rel=0.01), comp
    if kind == "misalignment":
        by_order = {c["order"]: c["accel_peak_g"] for c in comps}
        assert by_order[2.0] > by_order[1.0]


def test_y_lags_x_by_90_degrees_on_running_speed() -> None:
    spec = SimSpec(duration_s=3.0, faults=(FaultSpec("unbalance", 0.2),), noise_rms_g=0.0)
    x = simulate(spec)
    k = 74  # 1× bin, see above
    X = np.fft.rfft(x, axis=0)[k]
    assert np.angle(X[1] / X[0], deg=True) == pytest.approx(-90.0, abs=0.1)


def test_impact_is_the_sampled_damped_sinusoid_at_a_fractional_instant() -> None:
    t_hit = 0.0123456789  # s, deliberately between samples
    spec = SimSpec(
        duration_s=0.05, noise_rms_g=0.0, transients=(TransientSpec(t_hit, 2.0),), seed=0
    )
    x = simulate(spec)[:, 0]
    fn, zeta = spec.resonance_hz, spec.damping_ratio
    wn = 2 * math.pi * fn
    sigma, wd = zeta * wn, wn * math.sqrt(1 - zeta**2)
    t_pk = math.atan2(wd, sigma) / wd
    peak = math.exp(-sigma * t_pk) * math.sin(wd * t_pk)
    t = np.arange(x.size) / spec.fs - t_hit
    expected = np.where(t > 0, 2.0 * np.exp(-sigma * t) * np.sin(wd * t) / peak, 0.0)
    assert_allclose(x, expected, rtol=0, atol=1e-12)
    # The continuous peak is the spec's amplitude; the sampled one is within a few %.
    assert 1.9 < x.max() <= 2.0


def test_bpfo_impacts_arrive_every_defect_period_after_onset_only() -> None:
    onset = 2.0
    base = SimSpec(duration_s=8.0, faults=(FaultSpec("unbalance", 0.05),), seed=21)
    spec = dataclasses.replace(base, faults=(*base.faults, FaultSpec("bpfo", 1.0, onset_s=onset)))
    x, clean = simulate(spec)[:, 0], simulate(base)[:, 0]
    truth = ground_truth(spec)
    fault = truth["faults"][1]
    n0 = fault["onset_sample"]
    assert n0 == round(onset * FS)
    bpfo = lookup_bearing("6205").defect_frequencies_hz(spec.rpm / 60)["bpfo"]
    assert fault["impact_rate_hz"] == pytest.approx(bpfo)
    assert truth["bearing"]["defect_frequencies_hz"]["bpfo"] == pytest.approx(bpfo)

    # Before onset the faulty recording is exactly the healthy one.
    assert_array_equal(x[:n0], clean[:n0])
    assert np.any(x[n0:] != clean[n0:])

    # Detect impacts in the signal itself: first crossing of 0.4 g after a quiet gap.
    period = FS / bpfo
    hot = np.flatnonzero(np.abs(x) > 0.4)
    starts = hot[np.r_[True, np.diff(hot) > period / 2]]
    assert starts.min() >= n0
    intervals = np.diff(starts)
    assert np.mean(intervals) == pytest.approx(period, rel=0.02)
    assert intervals.min() > 0.9 * period and intervals.max() < 1.1 * period
    # ... and they are the impacts the truth and impact_positions() describe.
    pos = impact_positions(spec, 1)
    assert starts.size == pos.size == fault["n_impacts"]
    assert fault["first_impact_sample"] == math.floor(pos[0]) + 1
    assert np.max(np.abs(starts - pos)) < 4  # ring reaches 0.4 g within a few samples
    slip = np.diff(pos) - period
    assert np.std(slip) == pytest.approx(np.sqrt(2) * 0.01 * period, rel=0.2)


def test_fault_onset_and_ramp_start_at_the_truth_sample() -> None:
    base = SimSpec(duration_s=2.0, seed=4)
    spec = dataclasses.replace(base, faults=(FaultSpec("looseness", 0.2, onset_s=0.7, ramp_s=0.5),))
    diff = simulate(spec)[:, 0] - simulate(base)[:, 0]
    f = ground_truth(spec)["faults"][0]
    n0, n_full = f["onset_sample"], f["full_amplitude_sample"]
    assert (n0, f["ramp_samples"], n_full) == (17920, 12800, 17920 + 12799)
    assert np.all(diff[:n0] == 0.0)
    assert diff[n0] != 0.0
    # The ramp grows linearly: the late part is ~2.5× the early part.
    early = np.abs(diff[n0 : n0 + 2560]).max()
    late = np.abs(diff[n0 + 10240 : n0 + 12800]).max()
    assert late > 2.5 * early


def test_inner_race_impacts_are_modulated_at_shaft_speed() -> None:
    spec = SimSpec(duration_s=4.0, faults=(FaultSpec("bpfi", 1.0),), noise_rms_g=0.0, seed=9)
    x = simulate(spec)[:, 0]
    pos = impact_positions(spec, 0)
    idx = np.floor(pos).astype(int)
    peaks = np.array([x[i : i + 20].max() for i in idx[:-1]])
    assert peaks.max() == pytest.approx(1.0, rel=0.05)
    assert peaks.min() == pytest.approx(0.5, rel=0.1)  # depth 0.5
    # Peak heights vary at 1×: their spectrum over impact times peaks at fr.
    t = pos[:-1] / spec.fs
    fr = spec.rpm / 60
    freqs = np.linspace(5, 60, 1101)
    power = [abs(np.sum((peaks - peaks.mean()) * np.exp(-2j * np.pi * f * t))) for f in freqs]
    assert freqs[int(np.argmax(power))] == pytest.approx(fr, abs=0.2)


def test_noise_rms_dc_bias_and_quantisation() -> None:
    spec = SimSpec(duration_s=4.0, noise_rms_g=0.05, dc_bias_g=0.3, lsb_g=0.002, seed=6)
    x = simulate(spec)
    assert_allclose(x.mean(axis=0), 0.3, atol=0.002)
    assert_allclose(x.std(axis=0), 0.05, rtol=0.02)
    assert_array_equal(np.round(x / 0.002) * 0.002, x)
    assert abs(float(np.asarray(np.corrcoef(x.T))[0, 1])) < 0.02  # channels have independent noise


def test_velocity_expectation_is_consistent() -> None:
    spec = SimSpec(faults=(FaultSpec("unbalance", 0.2),), noise_rms_g=0.02)
    exp = ground_truth(spec)["expected"]
    v1 = 0.2 * 9.80665e3 / (2 * math.pi * spec.rpm / 60) / math.sqrt(2)
    assert exp["tone_velocity_rms_mm_s_10_1000hz"] == pytest.approx(v1)
    assert exp["velocity_rms_mm_s_10_1000hz"] == pytest.approx(
        math.hypot(v1, exp["noise_velocity_rms_mm_s_10_1000hz"])
    )


# ---------------------------------------------------------------- sensor faults


def _sensor_spec(fill: str = "zero") -> SimSpec:
    return SimSpec(
        duration_s=3.0,
        faults=(FaultSpec("unbalance", 0.05),),
        transients=(TransientSpec(1.55, 30.0),),
        sensor_faults=(
            SensorFaultSpec("flatline", 0.5, 0.8),
            SensorFaultSpec("clipping", 1.5, 1.6, full_scale_g=16.0),
            SensorFaultSpec("dropout", 2.1, 2.4, fill=fill),  # type: ignore[arg-type]
            SensorFaultSpec("flatline", 2.7, 2.75, channels=("y_g",)),
        ),
        seed=13,
    )


def _check_sensor_spans(x: np.ndarray, clean: np.ndarray, truth: dict) -> None:
    changed = np.zeros(x.shape, dtype=bool)
    for sf in truth["sensor_faults"]:
        a, b = sf["start_sample"], sf["end_sample"]
        cols = [truth["channels"].index(c) for c in sf["channels"]]
        changed[a:b, cols] = True
        seg = x[a:b][:, cols]
        if sf["kind"] == "flatline":
            assert_array_equal(seg, np.broadcast_to(x[a - 1, cols], seg.shape))
        elif sf["kind"] == "clipping":
            fs_g = sf["full_scale_g"]
            assert np.abs(seg).max() == fs_g
            assert np.all(np.abs(clean[a:b][:, cols]) >= fs_g, where=np.abs(seg) == fs_g)
        else:
            expected = np.nan if sf["fill"] == "nan" else 0.0
            assert_array_equal(seg, np.full(seg.shape, expected))
    # isclose, not ==, so a recording read back from its %.6g CSV can be checked too.
    same = np.isclose(x, clean, rtol=1e-6, atol=1e-12) | (np.isnan(x) & np.isnan(clean))
    assert np.all(same[~changed]), "a sensor fault leaked outside its span"
    # Inside a dropout or flatline span, a sample keeps its clean value only by chance.
    for sf in truth["sensor_faults"]:
        if sf["kind"] != "clipping":
            a, b = sf["start_sample"], sf["end_sample"]
            cols = [truth["channels"].index(c) for c in sf["channels"]]
            assert np.mean(same[a:b][:, cols]) < 0.1


@pytest.mark.parametrize("fill", ["zero", "nan"])
def test_sensor_faults_occupy_exactly_their_spans(fill: str) -> None:
    spec = _sensor_spec(fill)
    truth = ground_truth(spec)
    assert [(s["start_sample"], s["end_sample"]) for s in truth["sensor_faults"]] == [
        (12800, 20480),
        (38400, 40960),
        (53760, 61440),
        (69120, 70400),
    ]
    x = simulate(spec)
    clean = simulate(dataclasses.replace(spec, sensor_faults=()))
    assert np.abs(clean).max() > 16.0  # the knock would exceed full scale
    _check_sensor_spans(x, clean, truth)


# ---------------------------------------------------------------- specs and files


def test_spec_validation_names_the_bad_value() -> None:
    with pytest.raises(ConfigError, match="full_scale_g"):
        SensorFaultSpec("clipping", 1.0, 2.0)
    with pytest.raises(ConfigError, match="end_s"):
        SensorFaultSpec("dropout", 2.0, 1.0)
    with pytest.raises(ConfigError, match="resonance_hz"):
        SimSpec(fs=6000.0)
    with pytest.raises(ConfigError, match="kind"):
        FaultSpec("rub", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="amplitude_g"):
        FaultSpec("bpfo", -1.0)
    with pytest.raises(ConfigError, match="not in channels"):
        SimSpec(sensor_faults=(SensorFaultSpec("dropout", 0, 1, channels=("z_g",)),))
    with pytest.raises(ConfigError, match="seed"):
        SimSpec(seed=-1)
    with pytest.raises(ConfigError, match="infinite"):
        simulate(SimSpec(duration_s=math.inf))


def test_spec_round_trips_through_json() -> None:
    spec = _sensor_spec()
    d = json.loads(json.dumps(spec_to_dict(spec)))
    assert spec_from_dict(d) == spec
    endless = SimSpec(duration_s=math.inf)
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(endless)))) == endless
    truth = ground_truth(spec)
    json.dumps(truth, allow_nan=False)
    assert spec_from_dict(truth["spec"]) == spec


def _read_csv(path: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = fh.read().splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    header = lines[len(comments)].split(",")
    rows = [ln.split(",") for ln in lines[len(comments) + 1 :]]
    times = [r[0] for r in rows] if header[0] == "time" else []
    first = 1 if header[0] == "time" else 0
    data = np.array([[float(v) for v in r[first:]] for r in rows])
    return comments, header, times, data


@pytest.mark.parametrize(("name", "time_column"), [("rec.csv", True), ("rec.csv.gz", False)])
def test_write_recording_round_trips(tmp_path: Path, name: str, time_column: bool) -> None:
    spec = SimSpec(duration_s=0.25, faults=(FaultSpec("bpfo", 0.5, onset_s=0.1),), seed=8)
    path = tmp_path / name
    write_recording(path, spec, time_column=time_column)
    comments, header, times, data = _read_csv(path)
    assert comments == ["# sample_rate_hz=25600", "# start_time=2026-01-01T00:00:00Z"]
    assert header == (["time"] if time_column else []) + ["x_g", "y_g"]
    x = simulate(spec)
    assert data.shape == x.shape
    assert_allclose(data, x, rtol=5e-6, atol=1e-9)  # %.6g
    if time_column:
        assert times[0] == "2026-01-01T00:00:00.000000Z"
        assert times[1] == "2026-01-01T00:00:00.000039Z"  # 39.0625 µs, rounded
        assert times[16] == "2026-01-01T00:00:00.000625Z"  # exact every 16 samples
    truth = json.loads((tmp_path / "rec.truth.json").read_text())
    assert truth == json.loads(json.dumps(ground_truth(spec)))
    assert truth["faults"][0]["onset_sample"] == 2560
    if name.endswith(".gz"):
        raw = path.read_bytes()
        assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
        assert not raw[3] & 0x08  # no file name stored


def test_cli_writes_an_ad_hoc_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "adhoc.csv.gz"
    argv = ["--out", str(out), "--rpm", "1800", "--duration", "0.5", "--seed", "3"]
    argv += ["--fault", "bpfo:0.5@0.2", "--fault", "unbalance:0.1@0+0.1"]
    argv += ["--sensor-fault", "clipping:0.3-0.4:0.2"]
    assert main(argv) == 0
    truth = json.loads((tmp_path / "adhoc.truth.json").read_text())
    assert truth["shaft_hz"] == 30.0
    assert [f["kind"] for f in truth["faults"]] == ["bpfo", "unbalance"]
    assert truth["faults"][0]["onset_sample"] == 5120
    assert truth["faults"][1]["ramp_samples"] == 2560
    assert truth["sensor_faults"][0]["full_scale_g"] == 0.2
    assert str(out) in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(out), "--fault", "bpfo"])
    assert exc.value.code == 2
    assert main(["--out", str(out), "--bearing", "9999"]) == 2
    assert "9999" in capsys.readouterr().err


# ---------------------------------------------------------------- fixtures


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_write_fixtures_is_reproducible_and_matches_the_committed_set(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    with ThreadPoolExecutor(max_workers=2) as pool:  # zlib releases the GIL
        first, second = pool.map(write_fixtures, dirs)
    names = [p.name for p in first]
    assert names == [p.name for p in second]
    for name in names:
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name

    meta_path = FIXTURES / "_meta.json"
    assert meta_path.exists(), (
        "no committed fixtures: run python -m pdm.sources.simulator --fixtures fixtures/"
    )
    meta = json.loads(meta_path.read_text())
    regen = "stale fixture: regenerate with python -m pdm.sources.simulator --fixtures fixtures/"
    same_zlib = meta["zlib_version"] == zlib.ZLIB_RUNTIME_VERSION
    assert set(meta["files"]) == set(names) - {"_meta.json"}
    for name, info in meta["files"].items():
        committed, fresh = FIXTURES / name, dirs[0] / name
        # The committed file is what _meta.json says (nobody edited it by hand) ...
        assert _sha(committed) == info["sha256"], f"{name} edited by hand? {regen}"
        # ... and what the current code generates. Deflate output may differ between
        # zlib builds, so compare the decompressed text when zlib is not the same.
        if "content_sha256" in info and not same_zlib:
            content = hashlib.sha256(gzip.decompress(fresh.read_bytes())).hexdigest()
            assert content == info["content_sha256"], f"{name}: {regen}"
        elif name != "README.md" or same_zlib:  # README lists gzip sizes
            assert _sha(fresh) == info["sha256"], f"{name}: {regen}"


def test_committed_fixtures_hold_their_ground_truth() -> None:
    truth = json.loads((FIXTURES / "sensor_faults.truth.json").read_text())
    _, header, _, x = _read_csv(FIXTURES / "sensor_faults.csv.gz")
    assert header == truth["channels"]
    assert x.shape == (truth["n_samples"], 2)
    clean = simulate(dataclasses.replace(spec_from_dict(truth["spec"]), sensor_faults=()))
    _check_sensor_spans(x, clean, truth)

    outer = json.loads((FIXTURES / "outer_race.truth.json").read_text())
    bpfo = outer["faults"][1]
    assert (bpfo["kind"], bpfo["onset_sample"]) == ("bpfo", 102400)
    assert bpfo["impact_rate_hz"] == pytest.approx(88.424, abs=1e-3)
    _, _, times, t = _read_csv(FIXTURES / "timed_iso8601.csv")
    assert t.shape == (25600, 2) and len(times) == 25600
    assert times[-1] == "2026-01-01T00:00:00.999961Z"
