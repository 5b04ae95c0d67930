"""``pdm-edge bench``: DSP speed as ratios measured in one run, medians of many.

The machine this runs on is shared and noisy, so nothing here is an absolute
target: every figure that matters is a ratio to a bare ``scipy.fft.rfft`` of
the same (3, 16384) float32 window, timed in alternation with it, and the
median over rounds is reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
import scipy.fft as sfft

from pdm.dsp.bearings import BEARINGS
from pdm.dsp.envelope import BandChoice
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.dsp.windows import Windower
from pdm.sources.base import Chunk

__all__ = ["run_bench"]

FS = 25600.0
N = 16384
CHANNELS = 3
OVERLAP = 0.5
RPM = 1480.0
ENVELOPE_BAND = (2000.0, 5000.0)


def _window(seed: int = 0) -> np.ndarray:
    """A realistic (3, N) float32 window: shaft tones, bearing-like impacts and noise, in g."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / FS
    fr = RPM / 60
    x = 0.05 * np.sin(2 * np.pi * fr * t) + 0.02 * np.sin(2 * np.pi * 2 * fr * t)
    impacts = np.zeros(N)
    impacts[(np.arange(0, t[-1], 1 / 88.5) * FS).astype(int)] = 1.0
    ring = np.exp(-np.arange(200) / 30) * np.sin(2 * np.pi * 3500 * np.arange(200) / FS)
    x = x + 0.5 * np.convolve(impacts, ring)[:N]
    return (x + 0.02 * rng.standard_normal((CHANNELS, N))).astype(np.float32)


def _time_per_call(fn: Callable[[], object], reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def _ratio(
    fn: Callable[[], object], base: Callable[[], object], rounds: int, reps: int
) -> tuple[float, float, float]:
    """Median over rounds of time(fn)/time(base), timed alternately; and both medians in µs."""
    fn(), base()  # warm caches and plans
    ratios, t_fn, t_base = [], [], []
    for _ in range(rounds):
        b = _time_per_call(base, reps)
        f = _time_per_call(fn, reps)
        ratios.append(f / b)
        t_fn.append(f)
        t_base.append(b)
    return statistics.median(ratios), statistics.median(t_fn) * 1e6, statistics.median(t_base) * 1e6


def _scipy_reference(x: np.ndarray) -> None:
    """The plain way: welch + butter/sosfiltfilt + hilbert + scipy.stats (for comparison only)."""
    import scipy.signal as sig
    import scipy.stats as st

    sig.welch(x, FS, nperseg=4096, axis=-1)
    sos = sig.butter(4, ENVELOPE_BAND, btype="bandpass", fs=FS, output="sos")
    env = np.abs(sig.hilbert(sig.sosfiltfilt(sos, x, axis=-1), axis=-1))
    sfft.rfft(env - env.mean(axis=-1, keepdims=True), axis=-1)
    st.kurtosis(x, axis=-1)
    st.skew(x, axis=-1)
    np.sqrt(np.mean(x**2, axis=-1))


def bench_scoring(*, quick: bool = False) -> dict[str, Any]:
    """Per-window scoring time with onnxruntime (one intra-op thread), default detector.

    The model is trained on the feature vectors of the bench window's shape
    (2 channels × the default model features), so the graph is the size a real
    pipeline gets.
    """
    from pdm.config import ModelSettings
    from pdm.scoring.detectors import fit_detector, raw_scores
    from pdm.scoring.export import build_model
    from pdm.scoring.preprocess import Preprocess
    from pdm.scoring.runtime import make_session
    from pdm.scoring.vector import MODEL_FEATURES

    detector = ModelSettings().detector
    per_channel = [f for f in MODEL_FEATURES if f != "band_*"] + ["band_high_rms_g"]
    names = [f"{ch}.{f}" for ch in ("x_g", "y_g") for f in per_channel]
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(-3.0, 0.3, (600, len(names)))).astype(np.float32)
    pre = Preprocess.fit(x, names)
    det = fit_detector(detector, pre.detector_input(x))
    raw = raw_scores(det, pre.detector_input(x))
    offset = float(np.median(raw))
    model = build_model(pre, det, offset=offset, span=float(np.max(raw) - offset) or 1.0)
    session = make_session(model.SerializeToString(), threads=1, where="bench model")
    rounds, reps = (5, 200) if quick else (31, 400)
    out: dict[str, Any] = {"score_detector": detector, "score_features": len(names)}
    for batch in (1, 64):
        feed = {"features": x[:batch]}

        def call(feed: dict[str, Any] = feed) -> object:
            return session.run(["score"], feed)

        for _ in range(20):
            call()
        times = [_time_per_call(call, max(1, reps // batch * 4)) for _ in range(rounds)]
        out[f"score_us_batch{batch}"] = round(statistics.median(times) * 1e6 / batch, 2)
    return out


def bench_diagnosis(
    extractor: FeatureExtractor,
    xs: np.ndarray,
    base: Callable[[], object],
    rounds: int,
    reps: int,
) -> tuple[float, float]:
    """Per-window cost of the diagnosis engine as ``score`` runs it, and its ratio to a bare rfft.

    The extractor's frames of the batch ``xs`` are fed to one engine again and again, each
    window's spectra averaged in and the machine's diagnosis asked for (what a score row
    carries), so the periodic judgement (every two averaging time constants: 64 windows
    here) is paid in its share. Timed like the extraction: per call, alternating with the rfft,
    median over rounds.
    """
    from pdm.diagnosis import DiagnosisEngine

    frames = extractor.extract_batch(xs)
    hop = round(N * (1 - OVERLAP))
    engine = DiagnosisEngine(extractor.fs, extractor.n, hop, extractor.channels)

    def step() -> None:
        for frame in frames:
            engine.update(frame)
            engine.diagnosis()

    for _ in range(8):  # past the first judgements of the segment (1, 2, 4, … windows)
        step()
    ratio, t_us, _ = _ratio(step, base, rounds, max(reps, 128 // len(frames)))
    return t_us / len(frames), ratio / len(frames)


def _history_figures(dsp_rows_per_s: float, *, quick: bool) -> dict[str, Any]:
    """History write speed against its target: twice the feature rows (one per channel and
    window) that ``dsp_sensors_per_core`` tri-axial sensors produce."""
    from pdm.bench_history import bench_history

    out = bench_history(quick=quick)
    target = 2.0 * dsp_rows_per_s
    out["history_target_rows_per_s"] = round(target)
    for store in ("sqlite", "influx1"):
        rate = out.get(f"history_rows_per_s_{store}")
        out[f"history_{store}_over_target"] = None if rate is None else round(rate / target, 2)
    return out


def run_bench(*, quick: bool = False, batch: int = 8) -> dict[str, Any]:
    """Run the DSP benchmark; returns the figures (see docs/benchmarks.md)."""
    rounds, reps = (5, 8) if quick else (31, 24)
    x = _window()
    xs = np.stack([_window(seed) for seed in range(batch)])
    base = lambda: sfft.rfft(x, axis=-1)  # noqa: E731
    chans = [ChannelSpec(f"c{i}", BEARINGS["6205"]) for i in range(CHANNELS)]
    bands = [("high", 1000.0, 10000.0)]
    fixed = FeatureExtractor(FS, N, chans, rpm=RPM, envelope_band_hz=ENVELOPE_BAND, bands=bands)
    search = FeatureExtractor(
        FS, N, chans, rpm_range=(0.9 * RPM, 1.1 * RPM), envelope_band_hz=ENVELOPE_BAND, bands=bands
    )
    auto = FeatureExtractor(FS, N, chans, rpm=RPM, envelope_band_hz="auto", bands=bands)

    r_batch, t_batch, t_rfft = _ratio(lambda: fixed.extract_batch(xs), base, rounds, reps)
    r_batch /= batch
    t_batch /= batch
    r_single, t_single, _ = _ratio(lambda: fixed.extract(x), base, rounds, reps)
    r_search, _, _ = _ratio(lambda: search.extract_batch(xs), base, rounds, reps)
    r_search /= batch
    r_rfft_batch, _, _ = _ratio(lambda: sfft.rfft(xs.reshape(-1, N), axis=-1), base, rounds, reps)
    r_rfft_batch /= batch
    t_diag, r_diag = bench_diagnosis(fixed, xs, base, rounds, reps)

    # "auto": the band is re-chosen every auto_band_refresh windows, as FeatureStream does.
    calls = [0]
    state: list[BandChoice | None] = [None]
    refresh_batches = max(1, auto.auto_band_refresh // batch)

    def auto_step() -> None:
        if calls[0] % refresh_batches == 0:
            state[0] = auto.extract_batch(xs, band_state=state[0])[0].band_choice
        else:
            assert state[0] is not None
            auto.extract_batch(xs, envelope_band_hz=state[0].band, band_state=state[0])
        calls[0] += 1

    r_auto, _, _ = _ratio(auto_step, base, rounds, max(reps, refresh_batches))
    r_auto /= batch

    # Streaming, as `features`/replay run it: windower + FeatureStream-style batches,
    # one hop of new samples per window.
    hop = round(N * (1 - OVERLAP))
    w = Windower(N, hop, np.ones(CHANNELS))
    copies = -(-hop * batch // N)
    stream_data = np.ascontiguousarray(np.tile(x.T.astype(np.float64), (copies, 1))[: hop * batch])
    clock = [0.0]
    names = tuple(c.name for c in chans)

    def stream_step() -> None:
        chunk = Chunk(stream_data, FS, clock[0], names)
        clock[0] += len(stream_data) / FS
        wins = w.push(chunk)[0]
        assert len(wins) == batch  # one hop of new samples per window
        fixed.extract_batch(np.stack([win.data for win in wins]))

    # Prime the windower with n - hop samples: from then on each step completes `batch` windows.
    w.push(Chunk(stream_data[: N - hop], FS, 0.0, names))
    clock[0] = (N - hop) / FS
    for _ in range(3):
        stream_step()
    r_stream, t_stream, _ = _ratio(stream_step, base, rounds, reps)
    r_stream /= batch
    t_stream /= batch

    ref_rounds = 3 if quick else 7
    r_ref, _, _ = _ratio(lambda: _scipy_reference(x), base, ref_rounds, 3)

    windows_per_sensor_s = FS / hop
    scoring = bench_scoring(quick=quick)
    sensors_per_core = 1e6 / (t_stream * windows_per_sensor_s)
    history = _history_figures(sensors_per_core * windows_per_sensor_s * CHANNELS, quick=quick)
    from pdm.bench_alarms import bench_decision

    decision = bench_decision(quick=quick)
    from pdm.bench_run import bench_run

    run = bench_run(sensors_per_core, quick=quick)
    return {
        **run,
        **scoring,
        **history,
        **decision,
        "dsp_ratio_to_rfft": round(r_batch, 3),
        "dsp_ratio_to_rfft_batch1": round(r_single, 3),
        "dsp_ratio_to_rfft_speed_search": round(r_search, 3),
        "dsp_ratio_to_rfft_auto_band": round(r_auto, 3),
        "dsp_stream_ratio_to_rfft": round(r_stream, 3),
        "rfft_batched_ratio_to_rfft": round(r_rfft_batch, 3),
        "dsp_ratio_to_batched_rfft": round(r_batch / r_rfft_batch, 3),
        "dsp_sensors_per_core": round(sensors_per_core, 1),
        "scipy_reference_ratio_to_rfft": round(r_ref, 1),
        "rfft_us": round(t_rfft, 1),
        "extract_us_per_window": round(t_batch, 1),
        "extract_us_batch1": round(t_single, 1),
        "diagnosis_us_per_window": round(t_diag, 1),
        "diagnosis_share_of_extract": round(r_diag / r_batch, 3),
        "batch_windows": batch,
        "window": {
            "channels": CHANNELS,
            "samples": N,
            "dtype": "float32",
            "fs_hz": FS,
            "overlap": OVERLAP,
        },
        "envelope_band_hz": list(ENVELOPE_BAND),
        "rounds": rounds,
        "reps_per_round": reps,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_count": os.cpu_count(),
    }
