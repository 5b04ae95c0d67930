"""``pdm-edge bench``: every figure a ratio or a rate measured in one run, medians of many.

The machine this runs on is shared and noisy, so the DSP figures are ratios: the feature
extractor against a bare ``scipy.fft.rfft`` of the *same* windows (same shape, dtype and
workers), timed in alternation in one process on one core, the median over rounds reported
(:mod:`pdm.tools.bench_dsp` says exactly how each is computed). The other phases — scoring
(this module), history (:mod:`pdm.tools.bench_history`), decisions (:mod:`pdm.tools.bench_alarms`) and
the whole service (:mod:`pdm.tools.bench_run`) — are measured against the DSP figure of the same
run. ``NOTES`` (printed with the figures) says what each DSP key is.
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
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.dsp.windows import Windower
from pdm.sources.base import Chunk
from pdm.tools.bench_signal import CHANNELS, ENVELOPE_BAND, FS, OVERLAP, RPM, N, synthetic_window

__all__ = ["run_bench"]


def _time_per_call(
    fn: Callable[[], object], reps: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    t0 = clock()
    for _ in range(reps):
        fn()
    return (clock() - t0) / reps


def _ratio(
    fn: Callable[[], object],
    base: Callable[[], object],
    rounds: int,
    reps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float, float]:
    """Median over rounds of time(fn)/time(base), timed alternately on ``clock``; and both
    medians in µs."""
    fn(), base()  # warm caches and plans
    ratios, t_fn, t_base = [], [], []
    for _ in range(rounds):
        b = _time_per_call(base, reps, clock)
        f = _time_per_call(fn, reps, clock)
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


#: How :func:`bench_diagnosis` reads a window's diagnosis, one engine each.
DIAGNOSIS_MODES = ("unread", "read", "alerting")


def bench_diagnosis(*, quick: bool = False) -> dict[str, float]:
    """Per-window CPU cost of the diagnosis engine in the stream path the service runs, on
    the pipelines of the service load's fleet, against the extraction of the same windows.

    One machine of each shape of :func:`pdm.tools.bench_run.fleet` (two tri-axial sensors on
    6205/6206 at a fixed speed; one on a 6310 with the speed searched), fed as the service
    is fed: one hop of its simulated signal a chunk, cut and extracted at once
    (``FeatureStream(batch=1)``, :meth:`~pdm.processing.FeatureStream.cut` +
    :meth:`~pdm.processing.FeatureStream.extract`). Right after each window's extraction its
    frame goes to three engines built as the stream builds its own, as ``take`` hands it
    over, each reading the diagnosis differently (:data:`DIAGNOSIS_MODES`, in turns):
    ``unread`` none (the service's windows below alert: averaged, never judged); ``read``
    the routine one (every row of ``score`` and ``replay``: a judgement every 8 averaging
    time constants, 256 windows here, past a segment's first ones); ``alerting`` the fresh
    one (a machine at or above alert: judged at most half a time constant back, 16 windows).
    The extraction and each engine's calls are timed per window with ``time.process_time``;
    a round is 256 windows of each machine (a whole routine period) after two rounds past
    the segment's first judgements; per round each engine's CPU time over the extraction's,
    the median over rounds reported, and the µs per window.
    """
    import tempfile
    from pathlib import Path

    from pdm.config import load_pipeline
    from pdm.processing import FeatureStream, build_engine
    from pdm.tools.bench_run import fleet, machine_signal, pipeline_toml

    rounds, period = (2, 256) if quick else (7, 256)
    machines = []
    with tempfile.TemporaryDirectory() as tmp:
        for mach in fleet(2):  # one machine of each shape
            f = Path(tmp) / f"{mach.id}.toml"
            f.write_text(pipeline_toml(mach, Path(tmp) / "none", "http://127.0.0.1:9/x", "log:"))
            pipeline = load_pipeline(f)
            signal = machine_signal(mach.shape, mach.rpm, False, 8.0, seed=mach.index)
            hop = mach.shape.hop
            chunks = [signal[s : s + hop] for s in range(0, len(signal) - hop + 1, hop)]
            stream = FeatureStream(pipeline, FS, batch=1, diagnose=False)
            engines = {m: build_engine(pipeline, stream.extractor) for m in DIAGNOSIS_MODES}
            machines.append((stream, engines, chunks, hop, tuple(pipeline.columns)))
    clock = time.process_time
    fed = [0]

    def round_() -> dict[str, float]:
        t = dict.fromkeys(("extract", *DIAGNOSIS_MODES), 0.0)
        order = list(DIAGNOSIS_MODES)
        for _ in range(period):
            k = fed[0]
            fed[0] += 1
            for stream, engines, chunks, hop, names in machines:
                t0 = clock()
                wfs = stream.extract(
                    stream.cut(Chunk(chunks[k % len(chunks)], FS, k * hop / FS, names))
                )
                t["extract"] += clock() - t0
                order = order[1:] + order[:1]  # which engine meets the frame first rotates
                for mode in order:
                    engine = engines[mode]
                    t0 = clock()
                    for wf in wfs:
                        engine.drain()  # as FeatureStream.take does before a batch
                        verdict = engine.push(wf.features)
                        if mode == "read":
                            verdict.result()
                        elif mode == "alerting":
                            verdict.fresh()
                    t[mode] += clock() - t0
        return t

    for _ in range(2):  # past the segment's first judgements (1, 2, 4, … 256 windows)
        round_()
    times = [round_() for _ in range(rounds)]
    windows = period * len(machines)
    out: dict[str, float] = {}
    names = {"unread": "diagnosis_unread", "read": "diagnosis", "alerting": "diagnosis_alerting"}
    for mode, key in names.items():
        out[f"{key}_us_per_window"] = round(
            statistics.median(t[mode] for t in times) / windows * 1e6, 1
        )
        out[f"{key}_share_of_extract"] = round(
            statistics.median(t[mode] / t["extract"] for t in times), 3
        )
    out["diagnosis_extract_us_per_window"] = round(
        statistics.median(t["extract"] for t in times) / windows * 1e6, 1
    )
    return out


def _history_figures(dsp_rows_per_s: float, *, quick: bool) -> dict[str, Any]:
    """History write speed against its target: twice the feature rows (one per channel and
    window) that ``dsp_sensors_per_core`` tri-axial sensors produce."""
    from pdm.tools.bench_history import bench_history

    out = bench_history(quick=quick)
    target = 2.0 * dsp_rows_per_s
    out["history_target_rows_per_s"] = round(target)
    for store in ("sqlite", "influx1"):
        rate = out.get(f"history_rows_per_s_{store}")
        out[f"history_{store}_over_target"] = None if rate is None else round(rate / target, 2)
    return out


def _stream_figures(*, quick: bool, batch: int = 8) -> dict[str, Any]:
    """Windower + extractor as ``features``/replay run them, in the service load's
    configuration (fixed speed and band, as pdm/tools/bench_run.py's machines): float32 chunks of
    one hop per window in, features out; against the bare ``rfft`` of the same batch."""
    rounds, reps = (5, 8) if quick else (21, 16)
    x = synthetic_window()
    xs = np.stack([synthetic_window(seed) for seed in range(batch)])
    chans = [ChannelSpec(f"c{i}", BEARINGS["6205"]) for i in range(CHANNELS)]
    fixed = FeatureExtractor(
        FS, N, chans, rpm=RPM, envelope_band_hz=(2000.0, 6000.0), bands=[("high", 1000.0, 10000.0)]
    )
    hop = round(N * (1 - OVERLAP))
    w = Windower(N, hop, np.ones(CHANNELS))
    copies = -(-hop * batch // N)
    stream_data = np.ascontiguousarray(np.tile(x.T, (copies, 1))[: hop * batch])
    clock = [0.0]
    names = tuple(c.name for c in chans)

    def stream_step() -> None:
        chunk = Chunk(stream_data, FS, clock[0], names)
        clock[0] += len(stream_data) / FS
        wins = w.push(chunk)[0]
        assert len(wins) == batch  # one hop of new samples per window
        fixed.extract_windows([win.data for win in wins])

    # Prime the windower with n - hop samples: from then on each step completes `batch` windows.
    w.push(Chunk(stream_data[: N - hop], FS, 0.0, names))
    clock[0] = (N - hop) / FS
    for _ in range(3):
        stream_step()
    # CPU time, as the service's figures it is divided into (run_vs_dsp_per_core): on a
    # loaded machine the wall clock counts the waits for a core, which would lower the
    # DSP's capacity and flatter the service.
    r_stream, t_stream, _ = _ratio(
        stream_step, lambda: sfft.rfft(xs, axis=-1), rounds, reps, time.process_time
    )
    # The former headline, kept for comparison with the tables measured before 2026-12-06:
    # a batch of 8 (fixed speed, fixed 2-5 kHz band) per window over ONE window's rfft.
    legacy = FeatureExtractor(
        FS, N, chans, rpm=RPM, envelope_band_hz=ENVELOPE_BAND, bands=[("high", 1000.0, 10000.0)]
    )
    r_legacy, _, _ = _ratio(
        lambda: legacy.extract_batch(xs), lambda: sfft.rfft(x, axis=-1), rounds, reps
    )
    ref_rounds = 3 if quick else 7
    r_ref, _, _ = _ratio(lambda: _scipy_reference(x), lambda: sfft.rfft(x, axis=-1), ref_rounds, 3)
    return {
        "dsp_stream_ratio_to_batched_rfft": round(r_stream, 3),
        "dsp_stream_us_per_window": round(t_stream / batch, 1),
        "dsp_ratio_to_rfft_legacy_unbatched_base": round(r_legacy / batch, 3),
        "scipy_reference_ratio_single": round(r_ref, 1),
        "windows_per_sensor_s": FS / hop,
    }


#: What the keys that are not the headline are (printed with the figures).
NOTES = {
    "dsp_ratio_to_batched_rfft": "headline: a batch of 8 windows (8, 3, 16384) float32 extracted, "
    "speed searched (--nominal-rpm 1480 --rpm-range 1330,1630), automatic envelope band "
    "chosen and looked at as a stream's BandSchedule does once steady (a choice every 1024 "
    "windows, a look at the band in force every 128; their cost amortised), over scipy.fft.rfft "
    "of the same array; median of per-round ratios, timed alternately on one core",
    "dsp_ratio_single": "headline: the same for one (3, 16384) window, extract(x) over rfft(x)",
    "dsp_ratio_single_vs_padded_rfft": "the same over rfft of x padded with a zero row to 4 rows "
    "(pocketfft's fastest: its SIMD transforms rows four at a time, as the extractor pads "
    "its own): the single ratio without that advantage",
    "dsp_variants": "the two ratios with the band fixed as pipelines/demo.toml does (2-6 kHz), "
    "and with the speed fixed too; the batched ratio at a segment's start (a new segment every "
    "1024 windows: 5 choices in each) and with a choice every 64 windows (the band's policy "
    "before its schedule)",
    "dsp_mixed_speed_us_per_window": "a service round over a mixed fleet: one (3, 16384) "
    "window from each of 8 machines at 990, 1480, 1780, 2960 r/min, fixed and searched (2-6 "
    "kHz band), extract_many as the round calls it, us per window; "
    "dsp_mixed_speed_rfft_us_per_window: rfft of the same (8, 3, 16384) array; _ratio_to_"
    "batched_rfft: their ratio; _alone_: each machine in a pass of its own (before issue 22)",
    "dsp_stream_ratio_to_batched_rfft": "windower + extractor in the service load's "
    "configuration (fixed speed and band), batches of 8, over the rfft of the same batch",
    "diagnosis_share_of_extract": "headline (target: at most 0.10): the diagnosis engine's "
    "CPU time per window over the extraction's (FeatureStream(batch=1) cut + extract as the "
    "service runs it) of the same windows, one machine of each shape of the service load's "
    "fleet, each window's frame handed to an engine right after its extraction and its "
    "routine diagnosis read (as every row of score and replay: a judgement every 256 "
    "windows); both timed per window with process_time, median of rounds; "
    "diagnosis_us_per_window: the engine's µs",
    "diagnosis_unread_share_of_extract": "the same, no diagnosis read (the service's "
    "windows below alert: averaged, never judged); diagnosis_unread_us_per_window in µs",
    "diagnosis_alerting_share_of_extract": "the same, every window's fresh diagnosis read (a "
    "machine at or above alert in the service: judged at most half an averaging time "
    "constant back, 16 windows); diagnosis_alerting_us_per_window in µs",
    "diagnosis_extract_us_per_window": "the extraction those shares divide by, µs per window",
    "dsp_sensors_per_core": "tri-axial 25.6 kHz sensors at 50 % overlap one core extracts, from "
    "the stream figure timed on CPU time (process_time, as the service's run_sensors_per_core; "
    "the service load's configuration)",
    "dsp_ratio_to_rfft_legacy_unbatched_base": "LEGACY, flattering: a batch of 8 extracted "
    "(fixed speed and band) per window, over ONE unbatched window's rfft; kept only to compare "
    "with tables measured before 2026-12-06 (then called dsp_ratio_to_rfft)",
    "run_sensors_per_core": "headline: the tri-axial 25.6 kHz sensors the whole service "
    "(pdm-edge run, fed over TCP, mixed fleet of run_load, faults injected) held in real time, "
    "over the cores it used meanwhile: CPU seconds (utime + stime, reaped children included) "
    "of the service process and its whole process tree (the workers) from /proc/<pid>/stat, "
    "over the measured interval's wall time (run_service_cores)",
    "run_vs_dsp_per_core": "headline: run_sensors_per_core / dsp_sensors_per_core (one core "
    "against one core); target >= 0.5",
    "dsp_fleet_sensors_per_core": "the DSP alone on the service load's own machines "
    "(pdm/tools/bench_fleet.py): the fleet's first 16 machines from the same pipeline files "
    "and signals, each round every machine's next hop through its windower and all the "
    "round's windows in one extract_many pass; CPU time, median of rounds; "
    "dsp_fleet_alone_sensors_per_core: each machine's window extracted alone",
    "run_vs_dsp_fleet_per_core": "run_sensors_per_core / dsp_fleet_sensors_per_core: the "
    "service against the DSP on the same machines (like with like); run_vs_dsp_per_core "
    "divides by the friendlier dsp_sensors_per_core (one shape, one speed, batches of 8)",
    "run_vs_dsp": "all cores against one: run_sensors (on every core the service used) over "
    "dsp_sensors_per_core (one core); NOT a per-core figure, kept for comparison with tables "
    "before 2026-12-06",
    "run_vs_dsp_in_time": "the same all-cores-against-one ratio at run_sensors_in_time; "
    "run_vs_dsp_per_core_in_time is its per-core counterpart",
    "e2e_ms_p50": "headline (with e2e_ms_p99; e2e_clock = sensor): from a window's last "
    "sample on the DAQ's clock (the end t0 + n/fs of the frame that completed it) to its alarm "
    "decision, the relay command included, at the load held; the sender's lateness and the "
    "time in socket buffers are inside it (pdm_decision_latency_from_sensor_seconds); "
    "target p99 <= 20",
    "e2e_ms_p99_from_arrival": "the former figure (with e2e_ms_p50_from_arrival): from the "
    "frame's arrival in the service (pdm_decision_latency_seconds), socket buffers excluded",
    "run_sender_late_ms_p99": "the DAQ process's own lateness at p99 (a frame sent after its "
    "last sample's time: it shares the two cores), part of e2e_ms_p99",
    "run_load": "the real-time load held: shapes, speeds, faults and what the actions did "
    "during the measured interval (transitions, captures, relay writes, webhooks)",
    "scipy_reference_ratio_single": "a plain scipy pipeline (welch, butter + sosfiltfilt, "
    "hilbert, scipy.stats) on one window over rfft of that window",
}


def run_bench(*, quick: bool = False) -> dict[str, Any]:
    """Run the whole benchmark; returns the figures (see docs/benchmarks.md)."""
    from pdm.tools.bench_dsp import dsp_figures

    dsp = dsp_figures(quick=quick)
    stream = _stream_figures(quick=quick)
    diagnosis = bench_diagnosis(quick=quick)
    windows_per_sensor_s = stream.pop("windows_per_sensor_s")
    sensors_per_core = 1e6 / (stream["dsp_stream_us_per_window"] * windows_per_sensor_s)
    scoring = bench_scoring(quick=quick)
    history = _history_figures(sensors_per_core * windows_per_sensor_s * CHANNELS, quick=quick)
    from pdm.tools.bench_alarms import bench_decision

    decision = bench_decision(quick=quick)
    from pdm.tools.bench_fleet import fleet_dsp_figures
    from pdm.tools.bench_run import bench_run

    fleet_dsp = fleet_dsp_figures(quick=quick)
    run = bench_run(sensors_per_core, quick=quick)
    per_core = run.get("run_sensors_per_core")
    fleet_per_core = fleet_dsp["dsp_fleet_sensors_per_core"]
    run["run_vs_dsp_fleet_per_core"] = (
        None if per_core is None or not fleet_per_core else round(per_core / fleet_per_core, 3)
    )
    return {
        **dsp,
        **stream,
        **diagnosis,
        "dsp_sensors_per_core": round(sensors_per_core, 1),
        **fleet_dsp,
        **run,
        **scoring,
        **history,
        **decision,
        "notes": NOTES,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_count": os.cpu_count(),
    }
