"""The DSP figures of ``pdm-edge bench``: the feature extractor against a bare FFT of the
same windows, timed in alternation in one process on one core.

How each figure is computed
---------------------------
The extractor is the one a reliability engineer gets from the command line with the speed
searched: ``--fs 25600 --window 16384 --overlap 0.5 --nominal-rpm 1480 --rpm-range
1330,1630 --bearing 6205`` on three channels (x, y, z), everything else the pipeline's
defaults — among them ``envelope.band_hz = "auto"``, the automatic envelope band
(:class:`pdm.dsp.envelope.BandScorer`, chosen at a segment's start and again every
``auto_band_refresh`` = 64 windows, :class:`pdm.processing.FeatureStream`).

The windows: 16384 samples × 3 channels of float32 acceleration (g) at 25.6 kHz — shaft
tones, an outer-race-like impact train ringing at 3.5 kHz, noise — each at its own speed
(uniform within ±4 % of 1480 r/min), so the speed found differs from window to window as it
does on a real machine (identical windows would let the tone searches reuse every plan).
A pool of 64 windows is cycled through, the same by the extractor and by the FFT.

``dsp_ratio_to_batched_rfft``
    A batch of ``B`` = 8 windows, ``FeatureExtractor.extract_batch(xs)`` with ``xs`` of
    shape (8, 3, 16384) float32, against ``scipy.fft.rfft(xs, axis=-1)`` of the same
    array (same shape, dtype and ``workers``: the default, one thread). The band is
    chosen as a stream chooses it: on the first call of every 64 windows (every 8th
    call) the extractor scores the candidate bands, on the others it demodulates the band
    in force, so its cost is amortised over the 64 windows exactly as a stream pays it.
``dsp_ratio_single``
    One window at a time, ``extract(x)`` with ``x`` (3, 16384) against ``rfft(x)``, the band
    chosen on every 64th call.
``dsp_ratio_single_vs_padded_rfft``
    The same against ``rfft`` of ``x`` padded with a zero row to (4, 16384): pocketfft
    transforms rows four at a time and the rest one by one, the extractor pads its rows to
    four, and this is the bare FFT at its fastest.

Each round times ``reps`` calls of the FFT, then ``reps`` calls of the extractor (``reps`` a
whole number of band periods); the figure is the median over the rounds of the per-round
ratio, and ``…_spread`` gives the lowest and highest round. Nothing else runs in the process
meanwhile; a run on a shared machine is still noisy, so compare ratios of one run, and runs
repeated.

``dsp_mixed_speed_us_per_window``
    A service round over a mixed fleet (:func:`mixed_speed_figures`): one window of each of
    8 machines — at 990, 1480, 1780 and 2960 r/min, each speed once fixed and once searched
    (±10 %), the 2–6 kHz band for all — through :func:`~pdm.dsp.features.extract_many` as
    the service's round calls it (one pass: the batch key leaves the speed out), µs per
    window; ``…_rfft_us_per_window`` the bare ``rfft`` of the same (8, 3, 16384) array,
    ``…_ratio_to_batched_rfft`` their ratio, and ``…_alone_…`` each machine in a pass of
    its own, as the round ran them while the key held the speed.

Variants (``dsp_variants``): the same two ratios with the band fixed as ``pipelines/demo.toml``
fixes it (2–6 kHz), and with the speed fixed too (``rpm = 1480``: the cheapest configuration,
the one ``bench_run``'s service load uses). ``dsp_stream_ratio_to_batched_rfft`` (:mod:`pdm.tools.bench`):
the windower too, float32 chunks in, features out, in the service load's configuration; it
gives ``dsp_sensors_per_core``.

``profile_dsp`` splits the headline batch into the extractor's stages
(``FeatureExtractor.extract_batch(..., stage_s=...)``, timed on the pass itself), each as a
fraction of the same round's bare FFT; ``growth`` measures how the costs grow with the window
length, the channel count and the sample rate (docs/benchmarks.md shows both tables and the
commands).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from pdm.dsp.envelope import BAND_MAX_WINDOWS, BandSchedule
from pdm.dsp.features import FeatureExtractor, extract_many

__all__ = [
    "StreamCalls",
    "dsp_figures",
    "fit_growth",
    "growth",
    "mixed_speed_figures",
    "mixed_speed_fleet",
    "profile_dsp",
    "speed_searched_extractor",
    "windows",
]

FS = 25600.0
N = 16384
CHANNELS = 3
OVERLAP = 0.5
NOMINAL_RPM = 1480.0
RPM_RANGE = (1330.0, 1630.0)
BATCH = 8
POOL = 64  # distinct windows cycled through
DEMO_BAND = (2000.0, 6000.0)  # pipelines/demo.toml's fixed band
MIXED_RPM = (990.0, 1480.0, 1780.0, 2960.0)  # bench_run's fleet's speeds

F32 = npt.NDArray[np.float32]


def windows(
    count: int,
    *,
    n: int = N,
    fs: float = FS,
    channels: int = CHANNELS,
    seed: int = 0,
    rpm: float = NOMINAL_RPM,
) -> F32:
    """``count`` bench windows, (count, channels, n) float32 in g, each at its own speed.

    Shaft tones at 1× and 2×, an impact train at the 6205's outer-race frequency ringing at
    3.5 kHz, and broadband noise; speeds uniform within ±4 % of ``rpm``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    ring_t = np.arange(int(0.008 * fs)) / fs
    ring = np.exp(-ring_t / 0.0012) * np.sin(2 * np.pi * 3500.0 * ring_t)
    out = np.empty((count, channels, n), dtype=np.float32)
    for i in range(count):
        fr = rpm * rng.uniform(0.96, 1.04) / 60.0
        x = 0.05 * np.sin(2 * np.pi * fr * t + rng.uniform(0, 6.3))
        x += 0.02 * np.sin(2 * np.pi * 2 * fr * t + rng.uniform(0, 6.3))
        impacts = np.zeros(n)
        hits = np.arange(rng.uniform(0, 1 / (3.585 * fr)), t[-1], 1 / (3.585 * fr))
        impacts[(hits * fs).astype(int)] = 1.0
        x = x + 0.5 * np.convolve(impacts, ring)[:n]
        out[i] = x + 0.02 * rng.standard_normal((channels, n))
    return out


def _extractor(
    *,
    n: int,
    fs: float,
    channels: int,
    speed: str = "searched",
    band: str = "auto",
    rpm: float = NOMINAL_RPM,
    rpm_range: tuple[float, float] = RPM_RANGE,
) -> FeatureExtractor:
    """The extractor the quick flags build (see the module docstring): at ``rpm``, or
    searched around it in ``rpm_range``."""
    from pdm.config import pipeline_from_flags
    from pdm.processing import build_extractor

    speed_flags: dict[str, Any] = (
        {"nominal_rpm": rpm, "rpm_range": f"{rpm_range[0]:g},{rpm_range[1]:g}"}
        if speed == "searched"
        else {"rpm": rpm}
    )
    pipeline = pipeline_from_flags(
        fs=fs,
        columns=[f"{a}_g" for a in "xyzuvwpq"[:channels]],
        window=n,
        overlap=OVERLAP,
        bearing="6205",
        envelope_band=None if band == "auto" else f"{DEMO_BAND[0]:g},{DEMO_BAND[1]:g}",
        **speed_flags,
    )
    return build_extractor(pipeline, fs)


def speed_searched_extractor(
    *, n: int = N, fs: float = FS, channels: int = CHANNELS
) -> FeatureExtractor:
    """The headline's extractor: speed searched, automatic band (the module docstring)."""
    return _extractor(n=n, fs=fs, channels=channels)


@dataclass
class StreamCalls:
    """Calls an extractor on a pool of windows the way a stream does
    (:meth:`~pdm.dsp.features.FeatureExtractor.extract_scheduled`, as
    :class:`pdm.processing.FeatureStream` calls it): the automatic band chosen when the
    stream's :class:`~pdm.dsp.envelope.BandSchedule` says so, the band in force demodulated
    and looked at in between.

    ``pool`` is (n_calls, batch, channels, n) for batches, or (n_calls, channels, n) for one
    window a call. With ``segment_windows``, a new segment starts every that many windows
    (the stream chooses again on its first window).
    """

    ex: FeatureExtractor
    pool: F32
    segment_windows: int | None = None
    calls: int = 0
    schedule: BandSchedule = field(default_factory=BandSchedule)

    @property
    def per_call(self) -> int:
        """Windows per call."""
        return 1 if self.pool.ndim == 3 else self.pool.shape[1]

    @property
    def period(self) -> int:
        """Calls that repeat the same pattern of choices and looks once the schedule is
        steady (a segment when segments are cut; 1 with a fixed band)."""
        if not self.ex.auto_band:
            return 1
        return max(1, (self.segment_windows or BAND_MAX_WINDOWS) // self.per_call)

    def __call__(self, stage_s: dict[str, float] | None = None) -> object:
        xs = self.pool[self.calls % len(self.pool)]
        if self.segment_windows and (self.calls * self.per_call) % self.segment_windows == 0:
            self.schedule = self.schedule.new_segment()
        self.calls += 1
        self.schedule, frames = self.ex.extract_scheduled(
            xs[None] if self.pool.ndim == 3 else xs, self.schedule, stage_s=stage_s
        )
        return frames


@dataclass
class _Base:
    """A bare ``scipy.fft.rfft`` of the same batches, in the same order."""

    pool: F32
    calls: int = 0

    def __call__(self) -> object:
        xs = self.pool[self.calls % len(self.pool)]
        self.calls += 1
        return sfft.rfft(xs, axis=-1)


@dataclass(frozen=True)
class Paired:
    """One paired measurement: medians over rounds and the rounds' spread."""

    ratio: float
    lo: float
    hi: float
    fn_us: float  # per call
    base_us: float  # per call
    stages: dict[str, float]  # stage → median fraction of the same round's base

    def figures(self, key: str, per: int) -> dict[str, Any]:
        """``key``, ``key_spread`` and the µs per window of both sides."""
        return {
            key: round(self.ratio, 3),
            f"{key}_spread": [round(self.lo, 3), round(self.hi, 3)],
            f"{key}_extract_us_per_window": round(self.fn_us / per, 1),
            f"{key}_rfft_us_per_window": round(self.base_us / per, 1),
        }


def paired(
    fn: Callable[..., object],
    base: Callable[[], object],
    *,
    rounds: int,
    reps: int,
    stages: bool = False,
) -> Paired:
    """Median over ``rounds`` of time(fn)/time(base), each round ``reps`` calls of each,
    base first; with ``stages``, ``fn`` is given a dict to add its stage times to."""
    for _ in range(reps):  # warm caches, plans and buffers
        fn(), base()
    ratios, t_fn, t_base = [], [], []
    per_stage: dict[str, list[float]] = {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            base()
        tb = (time.perf_counter() - t0) / reps
        st: dict[str, float] | None = {} if stages else None
        t0 = time.perf_counter()
        if st is None:
            for _ in range(reps):
                fn()
        else:
            for _ in range(reps):
                fn(st)
        tf = (time.perf_counter() - t0) / reps
        ratios.append(tf / tb)
        t_fn.append(tf)
        t_base.append(tb)
        if st is not None:
            st["(call overhead)"] = tf * reps - sum(st.values())
            for k, v in st.items():
                per_stage.setdefault(k, []).append(v / reps / tb)
    return Paired(
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(t_fn) * 1e6,
        statistics.median(t_base) * 1e6,
        {k: statistics.median(v) for k, v in per_stage.items()},
    )


def _pool(batch: int, *, n: int = N, fs: float = FS, channels: int = CHANNELS) -> F32:
    """:data:`POOL` windows (at least 8 batches) as (n_batches, batch, channels, n)."""
    n_batches = max(8, POOL // batch)
    return windows(n_batches * batch, n=n, fs=fs, channels=channels).reshape(
        n_batches, batch, channels, n
    )


def _measure(
    ex: FeatureExtractor,
    pool: F32,
    *,
    rounds: int,
    min_reps: int,
    stages: bool = False,
    pad_base: bool = False,
    segment_windows: int | None = None,
) -> Paired:
    """``ex`` on ``pool`` as a stream calls it, against the bare FFT of the same arrays;
    a pool of batches of one window is called one window at a time. Each round is a whole
    number of the stream's periods (:attr:`StreamCalls.period`), after one period to warm
    up (which brings the band's schedule to its steady state). With ``pad_base`` the FFT's
    rows are padded with zeros to a multiple of four, as the extractor pads its own (the
    bare FFT at its fastest); ``segment_windows`` cuts the stream into segments."""
    if pool.shape[1] == 1:
        pool = pool[:, 0]  # (n_calls, channels, n): rfft of (channels, n), extract of one
    stream = StreamCalls(ex, pool, segment_windows)
    reps = stream.period * max(1, math.ceil(min_reps / stream.period))
    base = pool
    if pad_base:
        rows = pool.shape[-2]
        base = np.zeros((*pool.shape[:-2], -(-rows // 4) * 4, pool.shape[-1]), dtype=pool.dtype)
        base[..., :rows, :] = pool
    return paired(stream, _Base(base), rounds=rounds, reps=reps, stages=stages)


def mixed_speed_fleet(
    *, n: int = N, fs: float = FS, channels: int = CHANNELS
) -> list[FeatureExtractor]:
    """The machines of :func:`mixed_speed_figures`: at each of :data:`MIXED_RPM` one with the
    speed fixed and one with it searched (±10 %), every one with the 2–6 kHz band of
    ``pipelines/demo.toml`` (the automatic band is chosen per machine and never shared)."""
    fleet = []
    for speed in ("fixed", "searched"):
        for rpm in MIXED_RPM:
            fleet.append(_extractor(n=n, fs=fs, channels=channels, speed=speed, band="fixed",
                                    rpm=rpm, rpm_range=(0.9 * rpm, 1.1 * rpm)))  # fmt: skip
    return fleet


def mixed_speed_figures(*, rounds: int) -> dict[str, Any]:
    """A service round over a mixed fleet (:func:`mixed_speed_fleet`): one window of each
    of 8 machines at different speeds, extracted by :func:`~pdm.dsp.features.extract_many`
    as the service's round calls it (one pass), against ``rfft`` of the same (8, 3, 16384)
    windows; and the same windows each in a pass of its own (what the round did while the
    batch key held the speed), against the same ``rfft``."""
    fleet = mixed_speed_fleet()
    n_calls = max(8, POOL // len(fleet))
    # (n_calls, machines, channels, n): each machine's windows at its own speed.
    rpms = [rpm for _speed in ("fixed", "searched") for rpm in MIXED_RPM]
    pool = np.stack([windows(n_calls, rpm=r, seed=j) for j, r in enumerate(rpms)], axis=1)
    calls = [0, 0]

    def jobs(which: int) -> list[tuple[FeatureExtractor, list[F32]]]:
        """Each machine's window of the next call, as the service's round hands them on."""
        xs = pool[calls[which] % n_calls]
        calls[which] += 1
        return [(ex, [xs[j]]) for j, ex in enumerate(fleet)]

    def together() -> object:
        return extract_many(jobs(0))

    def apart() -> object:
        return [ex.extract_windows(wins) for ex, wins in jobs(1)]

    m = len(fleet)
    shared = paired(together, _Base(pool), rounds=rounds, reps=16)
    alone = paired(apart, _Base(pool), rounds=rounds, reps=16)
    return {
        "dsp_mixed_speed_us_per_window": round(shared.fn_us / m, 1),
        "dsp_mixed_speed_rfft_us_per_window": round(shared.base_us / m, 1),
        "dsp_mixed_speed_ratio_to_batched_rfft": round(shared.ratio, 3),
        "dsp_mixed_speed_ratio_to_batched_rfft_spread": [
            round(shared.lo, 3),
            round(shared.hi, 3),
        ],
        "dsp_mixed_speed_alone_us_per_window": round(alone.fn_us / m, 1),
        "dsp_mixed_speed_alone_ratio_to_batched_rfft": round(alone.ratio, 3),
    }


def dsp_figures(*, quick: bool = False) -> dict[str, Any]:
    """The honest DSP ratios (module docstring); keys as docs/benchmarks.md lists them."""
    rounds = 5 if quick else 21
    out: dict[str, Any] = {}
    pool8 = _pool(BATCH)
    pool1 = _pool(1)
    searched = speed_searched_extractor()
    out.update(_measure(searched, pool8, rounds=rounds, min_reps=16).figures(
        "dsp_ratio_to_batched_rfft", BATCH))  # fmt: skip
    out.update(_measure(searched, pool1, rounds=rounds, min_reps=64).figures(
        "dsp_ratio_single", 1))  # fmt: skip
    # pocketfft transforms rows four at a time and a remainder one by one: a lone 3-row
    # rfft costs about what a 4-row one does, and the extractor pads its rows to four.
    # Against the bare FFT at its fastest (padded the same way), the single ratio is higher.
    padded = _measure(searched, pool1, rounds=rounds, min_reps=64, pad_base=True)
    out["dsp_ratio_single_vs_padded_rfft"] = round(padded.ratio, 3)
    variants: dict[str, Any] = {}
    # The automatic band at a segment's start, where the schedule chooses most often (5
    # choices in its first 1024 windows), and with a choice every 64 windows, the policy
    # before the schedule (a segment every 64 windows costs exactly that).
    for name, seg in (("segment_start", BAND_MAX_WINDOWS), ("band_every_64_windows", 64)):
        b = _measure(searched, pool8, rounds=rounds, min_reps=16, segment_windows=seg)
        variants[name] = {"dsp_ratio_to_batched_rfft": round(b.ratio, 3)}
    for name, speed in (("fixed_band", "searched"), ("fixed_speed_fixed_band", "fixed")):
        ex = _extractor(n=N, fs=FS, channels=CHANNELS, speed=speed, band="fixed")
        b = _measure(ex, pool8, rounds=rounds, min_reps=16)
        s = _measure(ex, pool1, rounds=rounds, min_reps=64)
        variants[name] = {
            "dsp_ratio_to_batched_rfft": round(b.ratio, 3),
            "dsp_ratio_single": round(s.ratio, 3),
        }
    out["dsp_variants"] = variants
    out.update(mixed_speed_figures(rounds=rounds))
    return out


def profile_dsp(*, quick: bool = False, batch: int = BATCH) -> dict[str, Any]:
    """Per-stage cost of the headline extraction, each a fraction of the same round's bare
    FFT of the same batch (medians over rounds; the band choice amortised as a stream pays it)."""
    rounds = 5 if quick else 21
    ex = speed_searched_extractor()
    p = _measure(ex, _pool(batch), rounds=rounds, min_reps=16 if batch > 1 else 64, stages=True)
    return {
        "profile_batch_windows": batch,
        "profile_ratio": round(p.ratio, 3),
        "profile_rfft_us_per_window": round(p.base_us / batch, 1),
        "profile_stages": {k: round(v, 3) for k, v in p.stages.items()},
    }


def fit_growth(xs: Sequence[float], ys: Sequence[float], *, unit: str) -> dict[str, Any]:
    """How ``ys`` grows with ``xs``: the log-log slope, and which of ``a + b·x`` ("linear")
    and ``a + b·x·log2 x`` ("n log n") fits better (least squares on relative residuals),
    with that fit's ``a`` (the part that does not grow) and ``b``."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    slope = float(np.polyfit(np.log(x), np.log(y), 1)[0])
    fits = {}
    for name, g in (("linear", x), ("n log n", x * np.log2(x))):
        a = np.stack([np.ones_like(x), g], axis=1)
        coef, *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
        resid = (a @ coef - y) / y
        fits[name] = (float(np.sqrt(np.mean(resid**2))), coef)
    shape = min(fits, key=lambda k: fits[k][0])
    a0, b0 = fits[shape][1]
    return {
        "loglog_slope": round(slope, 3),
        "shape": shape,
        "rms_rel_residual": {k: round(v[0], 4) for k, v in fits.items()},
        f"a_{unit}": round(float(a0), 1),
        "b": float(f"{b0:.4g}"),
    }


def growth(*, quick: bool = False) -> dict[str, Any]:
    """Extraction cost against window length, channels and sample rate (fixed window
    duration), each point the headline's measurement (batch of 8, speed searched, automatic
    band amortised) at that shape: µs per window and the ratio to the FFT of the same shape.

    Every point is measured in three passes over all points (one with ``quick``), and the
    median of the passes is kept, so that a busy minute on a shared machine moves one pass
    of every point rather than one axis. The 16384-sample, 3-channel, 25.6 kHz point is on
    all three axes: three measurements of one configuration, a check on the noise.

    The machines axis (1 to saturation) belongs to the service benchmark
    (``pdm/tools/bench_run.py``), which will add it here as ``growth["machines"]``; this function
    measures the DSP alone.
    """
    rounds, passes = (3, 1) if quick else (9, 3)
    axes: dict[str, list[tuple[float, dict[str, Any]]]] = {
        "window_samples": [(n, {"n": n}) for n in (4096, 8192, 16384, 32768, 65536)],
        "channels": [(c, {"channels": c}) for c in (1, 2, 3, 4, 6, 8)],
        "sample_rate_hz": [
            (fs, {"fs": fs, "n": int(fs * N / FS)}) for fs in (12800.0, 25600.0, 51200.0, 102400.0)
        ],
    }
    points = [(axis, value, {"n": N, "fs": FS, "channels": CHANNELS, **kw})
              for axis, pts in axes.items() for value, kw in pts]  # fmt: skip
    runs: list[list[Paired]] = [[] for _ in points]
    for _ in range(passes):
        for i, (_axis, _value, shape) in enumerate(points):
            ex = speed_searched_extractor(**shape)
            runs[i].append(_measure(ex, _pool(BATCH, **shape), rounds=rounds, min_reps=8))
    out: dict[str, Any] = {}
    for axis in axes:
        rows: list[dict[str, Any]] = []
        for (ax, value, _shape), got in zip(points, runs, strict=True):
            if ax != axis:
                continue
            rows.append(
                {
                    axis: value,
                    "extract_us_per_window": round(
                        statistics.median(p.fn_us for p in got) / BATCH, 1
                    ),
                    "rfft_us_per_window": round(
                        statistics.median(p.base_us for p in got) / BATCH, 1
                    ),
                    "ratio": round(statistics.median(p.ratio for p in got), 3),
                    "ratio_passes": [round(p.ratio, 3) for p in got],
                }
            )
        xs = [r[axis] for r in rows]
        out[axis] = {
            "points": rows,
            "extract_fit": fit_growth(xs, [r["extract_us_per_window"] for r in rows], unit="us"),
            "rfft_fit": fit_growth(xs, [r["rfft_us_per_window"] for r in rows], unit="us"),
            "window_s": N / FS if axis == "sample_rate_hz" else None,
        }
    return {"growth": out, "growth_passes": passes, "growth_rounds": rounds}
