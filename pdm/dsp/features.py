"""Per-window vibration features from one real FFT per channel.

:class:`FeatureExtractor` is built once per (sample rate, window length,
channels, machine) with everything that does not change between windows
precomputed (window, band weights, envelope plan); :meth:`FeatureExtractor.extract`
then costs one Hann-windowed ``rfft`` of the window plus a short inverse FFT
for the envelope and a handful of vectorised reductions.

Features, per channel (acceleration in g throughout; names carry units):

==========================  =====================================================
``mean_g``                  mean (DC bias)
``rms_g``                   RMS of the AC part (mean removed)
``peak_g``                  largest ``|x − mean|``
``p2p_g``                   max − min
``crest``                   peak / rms
``kurtosis``                Pearson kurtosis (3 for Gaussian noise, > 3 for impacts)
``skewness``                third standardised moment
``velocity_rms_mm_s``       velocity RMS in the ISO 10816-3 band, integrated in the
                            frequency domain (10–1000 Hz; 2–1000 Hz below 600 r/min)
``band_<name>_rms_g``       RMS in each configured band
``order_0_5x_g`` …          peak amplitude of 0.5×, 1×, 2×, 3× running speed
``env_<d>_g``, ``env_<d>_2x_g``  envelope-spectrum amplitude at a bearing defect
                            frequency ``d`` ∈ {bpfo, bpfi, bsf, ftf} and its 2nd
                            harmonic, searched within ± slip tolerance
==========================  =====================================================

and per window: ``shaft_speed_rpm`` (given, or found in the spectrum: the speed the order
and defect features were read at), ``speed_measured`` (False when the speed was searched and
none stood out: ``shaft_speed_rpm`` is then the strongest harmonic's peak, no measurement)
and the envelope band used. ``iso_zone`` (A–D) is derived from ``velocity_rms_mm_s``.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from pdm.dsp.bearings import DEFECTS, BearingGeometry
from pdm.dsp.envelope import (
    BandChoice,
    BandSchedule,
    BandScorer,
    EnvelopePlan,
    band_holds,
    candidate_bands,
    candidate_floor_hz,
    envelope_power,
    plan_envelope,
    select_band,
)
from pdm.dsp.iso import iso_band_hz, iso_zone
from pdm.dsp.kernels import (
    moments_windowed,
    rms_columns,
    shaft_speeds_into,
    squares_into,
    window_time_features,
)
from pdm.dsp.spectrum import (
    ToneSearch,
    band_weights,
    hann,
    power_from_parts,
    rfft_freqs,
    squared_parts,
)
from pdm.dsp.windows import MAX_ABS_G

__all__ = [
    "ChannelSpec",
    "FeatureExtractor",
    "FeatureFrame",
    "compile_kernels",
    "extract_many",
    "feature_names",
]

STANDARD_G = 9.80665  # m/s² per g
_SCRATCH = threading.local()  # FeatureExtractor._buffer's buffers, per thread
ORDERS: tuple[tuple[str, float], ...] = (
    ("order_0_5x_g", 0.5),
    ("order_1x_g", 1.0),
    ("order_2x_g", 2.0),
    ("order_3x_g", 3.0),
)
TIME_FEATURES = ("mean_g", "rms_g", "peak_g", "p2p_g", "crest", "kurtosis", "skewness")
ENV_FEATURES = tuple(f"env_{d}{h}_g" for d in DEFECTS for h in ("", "_2x"))


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One input channel: its name and, if it sits on one, its bearing."""

    name: str
    bearing: BearingGeometry | None = None


def feature_names(band_names: Sequence[str] = ()) -> tuple[str, ...]:
    """Numeric per-channel feature names, in the order of :attr:`FeatureFrame.values`."""
    return (
        *TIME_FEATURES,
        "velocity_rms_mm_s",
        *(f"band_{b}_rms_g" for b in band_names),
        *(name for name, _ in ORDERS),
        *ENV_FEATURES,
    )


@dataclass(slots=True)
class FeatureFrame:
    """The features of one window, all channels.

    Attributes
    ----------
    names : feature names, the columns of ``values``
    values : (n_channels, n_features) float64; NaN where a feature does not apply
        (no bearing on that channel) or the window held invalid samples
    channels : channel names, the rows of ``values``
    shaft_speed_rpm : running speed used for orders and defect frequencies
    envelope_band_hz : (low, high) demodulation band used, snapped to bins
    envelope_band_key : the band as requested (what to pass back to
        :meth:`FeatureExtractor.extract` to use the same band again)
    band_choice : in ``auto`` mode, the automatic band's state after this pass (the band,
        the criterion that chose it and its score; see :func:`pdm.dsp.envelope.select_band`)
    valid : False when the window contained NaN/inf samples or one beyond
        :data:`~pdm.dsp.windows.MAX_ABS_G` (not a measurement: every feature is NaN)
    spectrum : (n_channels, n//2+1) complex64, ``rfft(w·(x − mean))``, kept for display
    env_parts : squared real/imaginary parts of the envelope spectrum
        (:func:`pdm.dsp.spectrum.squared_parts`), kept for display
    """

    names: tuple[str, ...]
    values: npt.NDArray[np.float64]
    channels: tuple[str, ...]
    shaft_speed_rpm: float
    envelope_band_hz: tuple[float, float]
    envelope_band_key: tuple[float, float]
    valid: bool
    spectrum: npt.NDArray[np.complex64] = field(repr=False)
    env_parts: npt.NDArray[np.float32] = field(repr=False)
    _extractor: FeatureExtractor = field(repr=False)
    _env_plan: EnvelopePlan = field(repr=False)
    #: (n_channels, 3): min, max and sum of each channel's samples (g), as the extraction
    #: computed them — the sensor health check reads these instead of three more passes.
    stats: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    band_choice: BandChoice | None = None
    #: False when the speed was searched and none stood out of the noise in this window
    #: (``shaft_speed_rpm`` is then the strongest harmonic's peak: no measurement, which the
    #: diagnosis's averages must not take for a change of speed); True for a given speed.
    speed_measured: bool = True
    #: The middle of the searched range (the nominal speed), r/min; NaN when not searched.
    nominal_speed_rpm: float = math.nan

    def as_dicts(self) -> list[dict[str, float | str | None]]:
        """One dict per channel: ``channel``, every feature, ``iso_zone``, ``shaft_speed_rpm``,
        ``speed_measured``."""
        zones = self.iso_zones
        out: list[dict[str, float | str | None]] = []
        for c, ch in enumerate(self.channels):
            row: dict[str, float | str | None] = {"channel": ch}
            for name, v in zip(self.names, self.values[c].tolist(), strict=True):
                row[name] = v if math.isfinite(v) else None
            row["iso_zone"] = zones[c]
            row["shaft_speed_rpm"] = (
                self.shaft_speed_rpm if math.isfinite(self.shaft_speed_rpm) else None
            )
            row["speed_measured"] = self.speed_measured
            row["env_band_lo_hz"], row["env_band_hi_hz"] = self.envelope_band_hz
            out.append(row)
        return out

    @property
    def iso_zones(self) -> tuple[str, ...]:
        """ISO 10816-3 zone letter per channel (``'?'`` when invalid)."""
        ex = self._extractor
        col = len(TIME_FEATURES)
        return tuple(
            iso_zone(v, group=ex.iso_group, foundation=ex.foundation)
            for v in self.values[:, col].tolist()
        )

    @property
    def power(self) -> npt.NDArray[np.float32]:
        """Unscaled power spectrum ``|rfft(w·(x − mean))|²``, (n_channels, n//2+1)."""
        return power_from_parts(squared_parts(self.spectrum))

    @property
    def env_power(self) -> npt.NDArray[np.float32]:
        """Unscaled envelope power spectrum, (n_channels, n_env_bins)."""
        return power_from_parts(self.env_parts)

    def amplitude_spectrum(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(freqs_hz, amplitude_g)``: (n_bins,), (n_channels, n_bins); a bin-centred sine of amplitude A reads A."""
        ex = self._extractor
        return ex.freqs, np.sqrt(self.power.astype(np.float64)) * (2.0 / ex.sum_w)

    def envelope_spectrum(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(freqs_hz, amplitude_g)`` of the envelope, same bin spacing as the spectrum."""
        plan = self._env_plan
        df = self._extractor.fs / self._extractor.n
        freqs = np.arange(plan.n_env_bins, dtype=np.float64) * df
        return freqs, np.sqrt(self.env_power.astype(np.float64)) * (
            plan.scale * 2.0 / (plan.m / 2.0)
        )


@functools.lru_cache(maxsize=256)
def _shared_plan(fs: float, n: int, band: tuple[float, float], env_max_hz: float) -> EnvelopePlan:
    """:func:`~pdm.dsp.envelope.plan_envelope`, one object for equal settings: a pass tells
    its parts' plans apart by identity (comparing the dataclasses cost more than the rest
    of a pass's bookkeeping)."""
    return plan_envelope(fs, n, band, env_max_hz)


class _StageClock:
    """Adds the seconds since its last mark to ``into[stage]``: the per-stage profile of
    ``pdm-edge bench --profile-dsp``, taken on the one pass itself (a copy of the stages
    in the bench would drift from them)."""

    __slots__ = ("into", "t")

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.t = time.perf_counter()

    def __call__(self, stage: str) -> None:
        t = time.perf_counter()
        self.into[stage] = self.into.get(stage, 0.0) + (t - self.t)
        self.t = t


def _no_clock(stage: str) -> None:
    """The stage clock when nobody asked for one."""


class FeatureExtractor:
    """Computes :func:`feature_names` for windows of fixed length and sample rate.

    Parameters
    ----------
    fs : sample rate, Hz
    n : window length, samples
    channels : the channels, in the row order of the windows to come
    rpm : fixed running speed (r/min), or None to search ``rpm_range`` in each window
    rpm_range : (min, max) r/min searched when ``rpm`` is None; with neither, the
        speed is unknown and order and defect features are NaN
    envelope_band_hz : (low, high) Hz, or ``"auto"``: chosen by :meth:`choose_band`
    slip_tolerance : defect lines are searched within ± this fraction of their frequency
    bands : extra ``(name, low_hz, high_hz)`` bands for band RMS
    iso_group, foundation : ISO 10816-3 machine group (1, 2) and foundation
    orders_tolerance : order lines are searched within ± this fraction (≥ 1 bin)

    In ``auto`` mode a stream chooses the band when :class:`~pdm.dsp.envelope.BandSchedule`
    says so (:class:`pdm.processing.FeatureStream`), and demodulates the band in force in
    between: a choice costs about as much as three batched FFTs of 8 windows.

    Examples
    --------
    >>> import numpy as np
    >>> fs, n = 25600.0, 16384
    >>> t = np.arange(n) / fs
    >>> x = (0.5 * np.sin(2 * np.pi * 100.0 * t)).astype(np.float32)[None, :]
    >>> fx = FeatureExtractor(fs, n, [ChannelSpec("x")], rpm=6000.0, envelope_band_hz=(2000, 5000))
    >>> row = fx.extract(x).as_dicts()[0]
    >>> round(row["rms_g"], 4), round(row["order_1x_g"], 3)
    (0.3536, 0.5)
    """

    def __init__(
        self,
        fs: float,
        n: int,
        channels: Sequence[ChannelSpec],
        *,
        rpm: float | None = None,
        rpm_range: tuple[float, float] | None = None,
        envelope_band_hz: tuple[float, float] | str = "auto",
        slip_tolerance: float = 0.03,
        bands: Sequence[tuple[str, float, float]] = (),
        iso_group: int = 2,
        foundation: str = "rigid",
        orders_tolerance: float = 0.02,
    ) -> None:
        if fs <= 0:
            raise ValueError(f"{fs=} must be > 0")
        if n < 256:
            raise ValueError(f"{n=} must be >= 256 samples")
        if not channels:
            raise ValueError("at least one channel is needed")
        if rpm is not None and rpm <= 0:
            raise ValueError(f"{rpm=} must be > 0")
        if rpm_range is not None and not 0 < rpm_range[0] < rpm_range[1]:
            raise ValueError(f"{rpm_range=} must satisfy 0 < min < max")
        self.fs = float(fs)
        self.n = int(n)
        self.channels = tuple(channels)
        self.rpm = rpm
        self.rpm_range = rpm_range
        self.slip_tolerance = float(slip_tolerance)
        self.orders_tolerance = float(orders_tolerance)
        self.iso_group = iso_group
        self.foundation = foundation
        self.band_names = tuple(b[0] for b in bands)
        self.names = feature_names(self.band_names)

        self.window = hann(n)
        self.sum_w = float(np.sum(self.window, dtype=np.float64))
        self.sum_w2 = float(np.sum(self.window.astype(np.float64) ** 2))
        self.freqs = rfft_freqs(n, fs)
        self.df = fs / n
        self._win_rows_cache: dict[int, npt.NDArray[np.int64]] = {}

        # Band RMS and velocity RMS are weighted sums of the power spectrum: one matmul.
        if rpm is not None:
            nominal, lo_rpm, max_rpm = rpm, rpm, rpm
        elif rpm_range is not None:
            nominal, lo_rpm, max_rpm = (
                0.5 * (rpm_range[0] + rpm_range[1]),
                rpm_range[0],
                rpm_range[1],
            )
        else:  # speed unknown: sizes below still need a speed; values come out NaN
            nominal, lo_rpm, max_rpm = float("nan"), None, 3600.0
        self.speed_known = rpm is not None or rpm_range is not None
        v_lo, v_hi = iso_band_hz(lo_rpm)
        nyq = fs / 2
        if v_lo >= nyq:
            raise ValueError(f"fs={fs} Hz is too low for the ISO velocity band {v_lo}-{v_hi} Hz")
        f = self.freqs
        with np.errstate(divide="ignore"):
            vel_w = np.where(
                f > 0, (STANDARD_G * 1000.0 / (2 * np.pi * np.maximum(f, 1e-12))) ** 2, 0.0
            )
        cols = [band_weights(f, v_lo, min(v_hi, nyq), vel_w)]
        for name, lo, hi in bands:
            if not 0 <= lo < hi:
                raise ValueError(f"band {name!r}: {lo=}, {hi=} must satisfy 0 <= low < high")
            if hi > nyq:
                raise ValueError(f"band {name!r}: high edge {hi} Hz is above Nyquist ({nyq} Hz)")
            cols.append(band_weights(f, lo, hi))
        # Rows repeated: the weights apply to squared real and imaginary parts alike.
        self._band_w = np.repeat(np.stack(cols, axis=1).astype(np.float32), 2, axis=0)
        self._n_bands = self._band_w.shape[1]
        # The squared parts some band weighs: the others are never squared.
        used = np.flatnonzero(np.any(self._band_w != 0, axis=1))
        self._band_sq = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
        self._band_w_used = self._band_w[self._band_sq[0] : self._band_sq[1]]
        self._band_scale = 2.0 / (self.n * self.sum_w2)

        # The highest defect frequency decides how much envelope spectrum is needed.
        max_shaft_hz = max_rpm / 60.0
        mults = [ch.bearing.defect_multiples() for ch in self.channels if ch.bearing is not None]
        max_mult = max((max(m.values()) for m in mults), default=6.0)
        self.env_max_hz = max(
            2.0 * max_mult * max_shaft_hz * (1 + self.slip_tolerance) + 4 * self.df, 50.0
        )
        # Defect multiples per channel, (n_channels, 8): fundamental and 2x of each defect.
        table = np.full((len(self.channels), len(ENV_FEATURES)), np.nan)
        for c, ch in enumerate(self.channels):
            if ch.bearing is not None:
                m = ch.bearing.defect_multiples()
                table[c] = [m[d] * h for d in DEFECTS for h in (1.0, 2.0)]
        self._defect_mult = table
        self._order_row = np.array([[m for _, m in ORDERS]])
        self._channel_names = tuple(ch.name for ch in self.channels)
        n_bins = n // 2 + 1
        max_order_bin = max(m for _, m in ORDERS) * max_shaft_hz / self.df
        self._order_search = ToneSearch(
            n_bins, max_order_bin * self.orders_tolerance, n, self.sum_w2
        )
        self._has_bearing = bool(np.any(np.isfinite(table)))

        self._fixed_band: tuple[float, float] | None = None
        self._band_scorer: BandScorer | None = None
        if isinstance(envelope_band_hz, str):
            if envelope_band_hz != "auto":
                raise ValueError(
                    f"envelope_band_hz={envelope_band_hz!r} must be (low, high) or 'auto'"
                )
            # Leave out bands where the machine's own lines live (candidate_floor_hz) and bands
            # too narrow to hold the defect lines and their sidebands; the floor is judged over
            # the same range, below the anti-alias filter's roll-off (the top tenth before Nyquist).
            min_lo = candidate_floor_hz(max_shaft_hz, self.env_max_hz)
            min_width = 2.0 * self.env_max_hz
            candidates = candidate_bands(fs, min_lo, min_width, n=n)
            if not candidates:
                # A band of last resort (a fast machine at a low rate: a 22205 at 5600 r/min
                # at 12 kHz wants 3.4 kHz, the tree's widest above the floor is 3 kHz): two
                # components of the band beat at their spacing, so a band as wide as the
                # envelope's range still carries every line it analyses — only not both
                # sidebands, about the resonance, of the lines above half its width.
                candidates = candidate_bands(fs, min_lo, self.env_max_hz, n=n)
            if not candidates or min_lo >= 0.9 * nyq:
                raise ValueError(
                    f"envelope band 'auto' has no candidate band at fs={fs} Hz; give the band explicitly"
                )
            self._band_scorer = BandScorer(fs, n, candidates, self.env_max_hz, (min_lo, 0.9 * nyq))
        else:
            self._fixed_band = (float(envelope_band_hz[0]), float(envelope_band_hz[1]))
        # Line families that judge the automatic band, per channel: (n_channels, 3, 2)
        # multiples of the shaft frequency, BPFO, BPFI, BSF at 1x and 2x (FTF is left out:
        # its lines interleave with the shaft's own 1x modulation).
        self._line_mult = np.full((len(self.channels), 3, 2), np.nan)
        for c, ch in enumerate(self.channels):
            if ch.bearing is not None:
                m = ch.bearing.defect_multiples()
                self._line_mult[c] = [[m[d], 2 * m[d]] for d in ("bpfo", "bpfi", "bsf")]
        self._plan_cache: dict[tuple[float, float], EnvelopePlan] = {}
        self._env_search: dict[int, ToneSearch] = {}
        if self._fixed_band is not None:
            self.plan_for(self._fixed_band)  # validate now, not at the first window
        self._nominal_rpm = nominal
        # The running speed, Hz, when it is not searched (NaN: unknown).
        self._given_shaft_hz = rpm / 60.0 if rpm is not None else math.nan
        # The speed search's harmonics and the bins each is searched in (h, first, last).
        ranges = []
        if rpm_range is not None:
            lo_hz, hi_hz = rpm_range[0] / 60.0, rpm_range[1] / 60.0
            k_max = min(n_bins - 2, math.ceil(3 * hi_hz / self.df) + 1)
            for h in (1, 2, 3):
                k_lo = max(1, math.floor(h * lo_hz / self.df))
                k_hi = min(k_max - 1, math.ceil(h * hi_hz / self.df))
                if k_hi >= k_lo:
                    ranges.append((h, k_lo, k_hi))
        self._speed_ranges = np.array(ranges, dtype=np.int64).reshape(-1, 3)
        # What decides the numbers of the stages a pass shares (see batch_key). Left out is
        # what each part of a pass brings along: its channels' bearings, its speed (fixed,
        # searched in its own range, or unknown) and what the speed sizes — the envelope's
        # length (env_max_hz: parts are grouped by envelope plan) and the widest window the
        # order and defect searches look in (each part's own, applied per row).
        self._batch_key: tuple[object, ...] | None = None
        if self._fixed_band is not None:
            self._batch_key = (
                self.fs, self.n, self._fixed_band, self.slip_tolerance, self.orders_tolerance,
                v_lo, v_hi, tuple(bands), self._has_bearing,
            )  # fmt: skip

    @property
    def auto_band(self) -> bool:
        """True when the envelope band is chosen automatically (:meth:`choose_band`)."""
        return self._fixed_band is None

    def plan_for(self, band: tuple[float, float]) -> EnvelopePlan:
        """The (cached) envelope plan of a band."""
        plan = self._plan_cache.get(band)
        if plan is None:
            plan = _shared_plan(self.fs, self.n, band, self.env_max_hz)
            self._plan_cache[band] = plan
            if plan.m not in self._env_search:
                max_half = self.env_max_hz / self.df * self.slip_tolerance
                self._env_search[plan.m] = ToneSearch(
                    plan.n_env_bins, max_half, plan.m, plan.sum_w2
                )
        return plan

    def choose_band(
        self,
        x_spec: npt.NDArray[np.complexfloating],
        shaft_hz: float = float("nan"),
        previous: BandChoice | None = None,
    ) -> BandChoice:
        """The envelope band for ``auto`` mode, judged on one window's spectrum.

        Candidates are the fast kurtogram's bands (:func:`~pdm.dsp.envelope.candidate_bands`);
        each is scored by :class:`~pdm.dsp.envelope.BandScorer` and the band chosen by
        :func:`~pdm.dsp.envelope.select_band`: by the prominence of the bearings' defect
        lines in its envelope spectrum (when the channels have bearings and ``shaft_hz``
        is known), else by impulsive energy above the floor, with hysteresis against
        ``previous``.

        Parameters
        ----------
        x_spec : (n_channels, n//2+1) complex, ``rfft(w·(x − mean))`` of one window
        shaft_hz : running speed, Hz (NaN: unknown, the lines are not judged)
        previous : the state the last choice returned (None: a first choice)
        """
        if self._band_scorer is None:
            raise ValueError("choose_band() is for envelope_band_hz='auto'")
        line_bins = None
        if self._has_bearing and math.isfinite(shaft_hz):
            line_bins = self._line_mult * (shaft_hz / self.df)
        scores = self._band_scorer(x_spec, line_bins, self.slip_tolerance)
        return select_band(scores, previous)

    def band_holds(self, frame: FeatureFrame) -> bool:
        """Whether the band in force (``frame.band_choice``) still stands, judged on
        ``frame``'s window by :func:`~pdm.dsp.envelope.band_holds`: every candidate's level
        and that band's own spectral kurtosis and lines, for the cost of its own transforms
        (a seventh of a choice's; see :class:`~pdm.dsp.envelope.BandSchedule`). True when
        there is nothing to judge (a fixed band, an invalid window)."""
        choice = frame.band_choice
        if self._band_scorer is None or choice is None or not frame.valid:
            return True
        bands = self._band_scorer.bands
        if choice.band not in bands:
            return False
        shaft_hz = frame.shaft_speed_rpm / 60.0
        line_bins = None
        if self._has_bearing and math.isfinite(shaft_hz):
            line_bins = self._line_mult * (shaft_hz / self.df)
        scores = self._band_scorer(
            frame.spectrum, line_bins, self.slip_tolerance, only=bands.index(choice.band)
        )
        return band_holds(scores, choice)

    def extract(
        self,
        x: npt.ArrayLike,
        *,
        envelope_band_hz: tuple[float, float] | None = None,
        band_state: BandChoice | None = None,
        stage_s: dict[str, float] | None = None,
    ) -> FeatureFrame:
        """Features of one window.

        Parameters
        ----------
        x : (n_channels, n) acceleration in g (float32 is fastest)
        envelope_band_hz : the band to demodulate in ``auto`` mode (a band an earlier
            :meth:`choose_band` gave: a stream chooses again when its
            :class:`~pdm.dsp.envelope.BandSchedule` says so); when None in ``auto`` mode
            it is chosen from this window.
        band_state : in ``auto`` mode, the automatic band's state (hysteresis): the
            previous choice when the band is chosen here, else handed on to the frames
        stage_s : when given, the seconds each stage of the pass took are added to it
            (``moments``, ``rfft``, ``envelope``, …: ``pdm-edge bench --profile-dsp``)
        """
        x = np.asarray(x, dtype=np.float32)
        return self.extract_batch(
            x[None, ...], envelope_band_hz=envelope_band_hz, band_state=band_state, stage_s=stage_s
        )[0]

    def extract_batch(
        self,
        xs: npt.ArrayLike,
        *,
        envelope_band_hz: tuple[float, float] | None = None,
        band_state: BandChoice | None = None,
        stage_s: dict[str, float] | None = None,
    ) -> list[FeatureFrame]:
        """Features of several windows in one pass; identical to calling :meth:`extract` on each.

        Batching is how the DSP core scales: pocketfft vectorises across rows,
        and every per-call cost is paid once for the batch (measured: 4 windows of
        3 channels cost about half as much per window as one; see ``pdm-edge bench``).

        Parameters
        ----------
        xs : (n_windows, n_channels, n) acceleration in g
        envelope_band_hz, band_state, stage_s : as for :meth:`extract`; in ``auto`` mode
            without a band, it is chosen from the batch's first window
        """
        xs = np.asarray(xs, dtype=np.float32)
        n_ch = len(self.channels)
        if xs.ndim != 3 or xs.shape[1:] != (n_ch, self.n):
            raise ValueError(
                f"window shape {xs.shape[1:] if xs.ndim == 3 else xs.shape} != "
                f"(n_channels={n_ch}, n={self.n})"
            )
        return self._extract(
            [(self, [xs.reshape(-1, self.n)], xs.shape[0])], envelope_band_hz, band_state, stage_s
        )[0]

    def extract_scheduled(
        self,
        windows: npt.ArrayLike | Sequence[npt.ArrayLike],
        schedule: BandSchedule,
        *,
        stage_s: dict[str, float] | None = None,
    ) -> tuple[BandSchedule, list[FeatureFrame]]:
        """One pass of an ``auto``-band stream over consecutive windows: the band chosen on
        the first when ``schedule`` is due, else the band in force demodulated, and looked at
        (:meth:`band_holds`) when a look is due. Returns the schedule after the pass, and
        the frames.

        Parameters
        ----------
        windows : (n_windows, n_channels, n) in g, or a sequence of (n_channels, n) windows
        schedule : the stream's :class:`~pdm.dsp.envelope.BandSchedule` before the pass
        stage_s : as for :meth:`extract` (a look counts as ``band_choice``)
        """
        if isinstance(windows, np.ndarray) and windows.ndim == 3:
            xs = np.asarray(windows, dtype=np.float32)
            n_ch = len(self.channels)
            if xs.shape[1:] != (n_ch, self.n):
                raise ValueError(f"window shape {xs.shape[1:]} != (n_channels={n_ch}, n={self.n})")
            part = (self, [xs.reshape(-1, self.n)], xs.shape[0])
        else:
            wins = self._checked(windows, "")  # type: ignore[arg-type]
            part = (self, wins, len(wins))
        choice = schedule.choice
        if not self.auto_band:
            return schedule, self._extract([part], None, None, stage_s)[0]
        if schedule.due or choice is None:
            frames = self._extract([part], None, choice, stage_s)[0]
            return schedule.chose(frames[0].band_choice, part[2]), frames
        frames = self._extract([part], choice.band, choice, stage_s)[0]
        schedule = schedule.aged(part[2])
        if schedule.look_due:
            t = time.perf_counter()
            schedule = schedule.looked_at(self.band_holds(frames[0]))
            if stage_s is not None:
                stage_s["band_choice"] = stage_s.get("band_choice", 0.0) + time.perf_counter() - t
        return schedule, frames

    def extract_windows(
        self,
        windows: Sequence[npt.NDArray[np.float32]],
        *,
        envelope_band_hz: tuple[float, float] | None = None,
        band_state: BandChoice | None = None,
    ) -> list[FeatureFrame]:
        """:meth:`extract_batch` of separate (n_channels, n) windows, gathered into the
        pass with one copy (none for a single float32 window)."""
        wins = self._checked(windows, "")
        return self._extract([(self, wins, len(wins))], envelope_band_hz, band_state)[0]

    def _checked(
        self, windows: Sequence[npt.ArrayLike], where: str
    ) -> list[npt.NDArray[np.float32]]:
        """``windows`` as float32 arrays of this extractor's (n_channels, n); ``ValueError``
        (prefixed with ``where``) for any other shape."""
        n_ch = len(self.channels)
        out = [np.asarray(w, dtype=np.float32) for w in windows]
        for w in out:
            if w.shape != (n_ch, self.n):
                raise ValueError(
                    f"{where}window shape {w.shape} != (n_channels={n_ch}, n={self.n})"
                )
        return out

    @property
    def batch_key(self) -> tuple[object, ...] | None:
        """Extractors with equal keys share a pass of :func:`extract_many`: the same sample
        rate, window, envelope band, tolerances, velocity and RMS bands, so that the moments,
        the FFT and the band RMS are computed alike for all. What may differ is what each
        machine brings along, and each part of the pass keeps its own: the channels and their
        bearings, and the speed — fixed, searched in the part's own range on its own rows, or
        unknown — with what the speed sizes (the envelope's length: parts with the same
        envelope plan are demodulated together; the widest order and defect search).
        None: never shared (the automatic envelope band is decided per window)."""
        return self._batch_key

    def _extract(
        self,
        parts: Sequence[tuple[FeatureExtractor, list[npt.NDArray[np.float32]], int]],
        envelope_band_hz: tuple[float, float] | None,
        band_state: BandChoice | None = None,
        stage_s: dict[str, float] | None = None,
    ) -> list[list[FeatureFrame]]:
        """The one pass: ``parts`` are (extractor, blocks of rows (·, n), n_windows),
        all of extractors with this one's :attr:`batch_key` (or this one alone); returns each
        part's frames. ``self`` lends the scratch buffers, plans and band weights."""
        tick = _no_clock if stage_s is None else _StageClock(stage_s)
        n = self.n
        blocks = [b for p in parts for b in p[1]]
        rows = sum(b.shape[0] for b in blocks)
        # Per window of the whole pass, its channel count.
        win_ch = [len(ex.channels) for ex, _x, n_win in parts for _ in range(n_win)]
        n_win_all = len(win_ch)

        # pocketfft transforms rows four at a time (SIMD) and a remainder one by one: 3 rows
        # cost 2.5x, 6 rows 1.5x per row what 4 or 8 cost (measured here). So the FFTs run
        # over rows padded with zeros to a multiple of four, and the pad is cut off after.
        rows_fft = -(-rows // 4) * 4
        d_all = self._buffer("d", (rows_fft, n))
        d_all[rows:] = 0.0
        d = d_all[:rows]
        # Time-domain moments and the FFT's input w·(x − mean), two compiled passes per row
        # (pdm/dsp/kernels.py; as nine numpy passes they cost 0.7 of the FFT at batch 8).
        # No copy gathers the blocks first.
        m, minmax = moments_windowed([np.ascontiguousarray(b) for b in blocks], self.window, d)
        # The time-domain features (columns 0-6) and the health check's min, max and sum,
        # one compiled loop. A row holding NaN, inf or a sample beyond MAX_ABS_G is not a
        # measurement: its window is invalid, and its values NaN from here on, so nothing
        # below overflows or warns for them.
        values = np.empty((rows, len(self.names)), dtype=np.float64)
        stats = np.empty((rows, 3), dtype=np.float64)
        win_rows = self._win_rows(n_win_all) if len(parts) == 1 else np.array(win_ch, np.int64)
        finite_row, valid, n_bad = window_time_features(
            m, minmax, n, MAX_ABS_G, values, stats, win_rows
        )
        if n_bad:
            d[~finite_row] = np.nan
        tick("moments")

        # The one FFT.
        spec_all = sfft.rfft(d_all, axis=-1, overwrite_x=True)
        tick("rfft")
        spec = spec_all[:rows]

        # Each part's speed per window, found in its own rows; and per row, its window's
        # speed in bins, (rows, 1).
        row0: list[int] = []  # per part: its first row in the pass, and the end
        if len(parts) == 1:  # one machine (a stream's pass): no per-part bookkeeping
            shaft_hz, shaft_bins, measured = self._speeds(spec, valid, n_win_all)
        else:  # each part's into its slices (its windows', its rows')
            row0 = [0, *itertools.accumulate(len(ex.channels) * nw for ex, _x, nw in parts)]
            win0 = [0, *itertools.accumulate(nw for _ex, _x, nw in parts)]
            shaft_hz = np.empty(n_win_all, dtype=np.float64)
            shaft_bins = np.empty((rows, 1), dtype=np.float64)
            measured = np.empty(n_win_all, dtype=np.bool_)
            for i, (ex, _x, _nw) in enumerate(parts):
                ws, rs = slice(win0[i], win0[i + 1]), slice(row0[i], row0[i + 1])
                ex._speeds_into(spec[rs], valid[ws], shaft_hz[ws], shaft_bins[rs], measured[ws])
        tick("speed")

        i = len(TIME_FEATURES)
        k = i + self._n_bands
        self._band_rms(spec, values, i)
        tick("bands")

        if len(parts) == 1:
            self._order_search.at_multiples(
                spec.view(np.float32), False, self._order_row, shaft_bins,
                self.orders_tolerance, values, k,
            )  # fmt: skip
        else:  # each part's rows read as its own search would read them
            search = _widest([ex._order_search for ex, _x, _nw in parts])
            v = spec.view(np.float32)
            for p, (ex, _x, _nw) in enumerate(parts):
                rs = slice(row0[p], row0[p + 1])
                search.at_multiples(
                    v[rs], False, self._order_row, shaft_bins[rs], self.orders_tolerance,
                    values[rs], k, narrower=ex._order_search,
                )  # fmt: skip
        k += len(ORDERS)
        tick("orders")

        band = envelope_band_hz or self._fixed_band
        choice = band_state if self.auto_band else None
        if band is None:
            choice = self.choose_band(spec[: win_ch[0]], float(shaft_hz[0]), band_state)
            band = choice.band
            tick("band_choice")
        if len(parts) == 1:  # one machine: one plan, its whole block in one transform
            plan = self.plan_for(band)
            pe = envelope_power(spec_all, plan)[:rows]  # padded to rows of four as the FFT's
            tick("envelope")
            if self._has_bearing and self.speed_known:
                self._env_search[plan.m].at_multiples(
                    pe, True, self._defect_mult, shaft_bins, self.slip_tolerance, values, k,
                    plan.scale,
                )  # fmt: skip
            else:
                values[:, k:] = np.nan
            tick("defect_lines")
            frames = self._frames(
                values, stats, spec, pe, valid, shaft_hz, measured, plan, band, choice
            )
            tick("frames")
            return [frames]
        # The envelope, one transform per envelope plan (its length follows the highest
        # defect line, hence the speed): a group is a run of parts with one plan, and
        # extract_many puts equal plans side by side.
        plans = [ex.plan_for(band) for ex, _x, _nw in parts]
        cuts = [j for j in range(1, len(parts)) if plans[j] is not plans[j - 1]]
        groups = list(zip([0, *cuts], [*cuts, len(parts)], strict=True))
        pe_of: list[npt.NDArray[np.float32]] = []  # per part: its rows' envelope spectra
        lines = self._has_bearing and any(ex.speed_known for ex, _x, _nw in parts)
        for a, b in groups:
            plan = plans[a]
            r_a, r_b = row0[a], row0[b]
            if len(groups) == 1:  # the whole block, padded to rows of four as the FFT's
                pe = envelope_power(spec_all, plan)[:rows]
            else:
                pe = self._envelope_rows(spec[r_a:r_b], plan)
            pe_of += [pe[row0[j] - r_a : row0[j + 1] - r_a] for j in range(a, b)]
            tick("envelope")
            if not lines:
                values[r_a:r_b, k:] = np.nan
                continue
            search = _widest([ex._env_search[plan.m] for ex, _x, _nw in parts[a:b]])
            for j in range(a, b):
                ex = parts[j][0]
                rs = slice(row0[j], row0[j + 1])
                search.at_multiples(
                    pe[row0[j] - r_a : row0[j + 1] - r_a], True, ex._defect_mult,
                    shaft_bins[rs], self.slip_tolerance, values[rs], k, plan.scale,
                    narrower=ex._env_search[plan.m],
                )  # fmt: skip
            tick("defect_lines")
        out: list[list[FeatureFrame]] = []
        w0 = 0
        for p, (ex, _x, n_win) in enumerate(parts):
            rs, ws = slice(row0[p], row0[p + 1]), slice(w0, w0 + n_win)
            arrays = (
                values[rs], stats[rs], spec[rs], pe_of[p], valid[ws], shaft_hz[ws], measured[ws]
            )  # fmt: skip
            out.append(ex._frames(*arrays, plans[p], band, choice))
            w0 += n_win
        tick("frames")
        return out

    def _frames(
        self,
        values: npt.NDArray[np.float64],
        stats: npt.NDArray[np.float64],
        spec: npt.NDArray[np.complex64],
        pe: npt.NDArray[np.float32],
        valid: npt.NDArray[np.bool_],
        shaft_hz: npt.NDArray[np.float64],
        measured: npt.NDArray[np.bool_],
        plan: EnvelopePlan,
        band: tuple[float, float],
        choice: BandChoice | None,
    ) -> list[FeatureFrame]:
        """The frames of a pass of this extractor alone, from its rows' arrays (windows'
        rows in order; ``values`` of invalid windows are set to NaN here)."""
        n_ch = len(self.channels)
        names, channels = self.names, self._channel_names
        band_hz = (plan.lo_hz, plan.hi_hz)
        frames = []
        # Python scalars once for the pass (indexing numpy arrays per frame cost more).
        rpm_l = (shaft_hz * 60.0).tolist()
        measured_l = measured.tolist()
        nominal = self._nominal_rpm if self.rpm is None else math.nan
        for w, ok in enumerate(valid.tolist()):
            sl = slice(w * n_ch, (w + 1) * n_ch)
            if not ok:
                values[sl] = np.nan
            frames.append(
                FeatureFrame(
                    names=names,
                    values=values[sl],
                    channels=channels,
                    shaft_speed_rpm=rpm_l[w] if ok else math.nan,
                    envelope_band_hz=band_hz,
                    envelope_band_key=band,
                    valid=ok,
                    spectrum=spec[sl],
                    env_parts=pe[sl],
                    _extractor=self,
                    _env_plan=plan,
                    stats=stats[sl],
                    band_choice=choice,
                    speed_measured=measured_l[w],
                    nominal_speed_rpm=nominal,
                )
            )
        return frames

    def _envelope_rows(
        self, spec: npt.NDArray[np.complex64], plan: EnvelopePlan
    ) -> npt.NDArray[np.float32]:
        """:func:`~pdm.dsp.envelope.envelope_power` of some of a pass's rows, (rows, n//2+1),
        as the pass's own block would give it: padded with zero rows to a multiple of four
        (pocketfft transforms four rows at a time and the rest one by one, ~2.5x the cost
        per row), the zero rows made where the band's bins are gathered."""
        rows = spec.shape[0]
        return envelope_power(spec, plan, -(-rows // 4) * 4)[:rows]

    def _win_rows(self, n_win: int) -> npt.NDArray[np.int64]:
        """(n_win,) int64, this extractor's channel count each: the rows of each window of
        a pass of its own (cached by count: the same few recur)."""
        out = self._win_rows_cache.get(n_win)
        if out is None:
            if len(self._win_rows_cache) > 64:
                self._win_rows_cache.clear()
            out = np.full(n_win, len(self.channels), dtype=np.int64)
            self._win_rows_cache[n_win] = out
        return out

    @staticmethod
    def _buffer(name: str, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
        """Scratch rows for one pass, shared by every extractor on this thread (a pass
        leaves nothing in them): grown when a pass needs more rows, never shrunk.

        Fresh 100+ kB temporaries per window cost more in page faults than the arithmetic
        done in them (~2x on the whole extractor), and buffers of its own per extractor
        were cold in cache whenever a service with a hundred machines came back to one.
        """
        bufs: dict[tuple[str, int], npt.NDArray[np.float32]] | None = getattr(
            _SCRATCH, "bufs", None
        )
        if bufs is None:
            bufs = _SCRATCH.bufs = {}
        key = (name, shape[1])
        buf = bufs.get(key)
        if buf is None or buf.shape[0] < shape[0]:
            # 64-byte aligned: SIMD loads straddling cache lines ran at half speed.
            size = shape[0] * shape[1]
            raw = np.empty(size + 16, dtype=np.float32)
            start = (-raw.ctypes.data % 64) // 4
            buf = bufs[key] = raw[start : start + size].reshape(shape)
        return buf[: shape[0]]

    def _band_rms(
        self, spec: npt.NDArray[np.complex64], values: npt.NDArray[np.float64], col: int
    ) -> None:
        """Each row's RMS in each band (velocity first) into ``values[:, col:col + bands]``:
        the squared parts of the spectrum times the band weights, one BLAS product, as the
        RMS of :func:`~pdm.dsp.spectrum.band_mean_square` gives it.

        Only the parts some band weighs are squared and summed (a tenth of the spectrum for
        the velocity band alone; the whole squared spectrum of a batch had cost 0.2 of its
        FFT): the weights are 0 elsewhere.
        """
        lo, hi = self._band_sq
        sq = squares_into(
            spec.view(np.float32), lo, hi, self._buffer("bands", (len(spec), hi - lo))
        )
        rms_columns(sq @ self._band_w_used, self._band_scale, values, col)

    def _speeds(
        self, spec: npt.NDArray[np.complex64], valid: npt.NDArray[np.bool_], n_win: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """The running speed (Hz) of each of ``n_win`` windows whose spectra are ``spec``
        ((n_win·n_channels, n//2+1), C-contiguous; rows ``w·n_channels …``), and of each
        row's window in bins, (rows, 1): fixed, unknown (NaN), or searched in the window
        (the nominal speed for a window not ``valid``).

        The search finds the speed the harmonic series 1×-3× agrees on, not the strongest
        line: in each harmonic's search range the lines (interpolated local maxima) are
        measured in dB above the range's floor (a median of the bins around it); every line
        proposes the speed ``f/h``, scored by the lines of every harmonic within half a bin
        of ``h·speed``, each capped at 20 dB (one strong line alone — a 2×LF line, a blade
        pass — cannot outvote two agreeing ones) and halved on an electrical line
        (multiples of 100 and 120 Hz). A proposal stands when noise would rarely make its
        lines; the best one's speed is read off its agreeing line that reads it best (a
        higher harmonic divides the error by its order). None stands: the strongest
        harmonic's peak, and the window's ``measured`` is False (a speed given: True).
        (:func:`pdm.dsp.kernels.shaft_speeds_hz`; docs/benchmarks.md.)
        """
        hz = np.empty(n_win, dtype=np.float64)
        bins = np.empty((n_win * len(self.channels), 1), dtype=np.float64)
        measured = np.empty(n_win, dtype=np.bool_)
        self._speeds_into(spec, valid, hz, bins, measured)
        return hz, bins, measured

    def _speeds_into(
        self,
        spec: npt.NDArray[np.complex64],
        valid: npt.NDArray[np.bool_],
        hz: npt.NDArray[np.float64],
        bins: npt.NDArray[np.float64],
        measured: npt.NDArray[np.bool_],
    ) -> None:
        """:meth:`_speeds` into arrays the caller holds (a shared pass's slices for this
        part): ``hz`` (n_win,), ``bins`` (n_win·n_channels, 1) float64, C-contiguous;
        ``measured`` (n_win,) bool."""
        if self.rpm is None and self.rpm_range is not None and len(self._speed_ranges):
            lo, hi = self.rpm_range
            shaft_speeds_into(
                spec.view(np.float32), len(self.channels), self._speed_ranges, self.df,
                (lo / 60.0, hi / 60.0), self._nominal_rpm / 60.0, valid, hz, bins, measured,
            )  # fmt: skip
            return
        if self.rpm is None and self.rpm_range is not None:  # no harmonic fits the spectrum
            speed = self._nominal_rpm / 60.0
            measured.fill(False)
        else:
            speed = self._given_shaft_hz
            measured.fill(True)
        hz.fill(speed)
        bins.fill(speed / self.df)


def _widest(searches: Sequence[ToneSearch]) -> ToneSearch:
    """Of a pass's parts' searches (alike but for the widest window, which each part's speed
    sizes), the widest: it searches every part's rows, each capped at its own part's width
    (:meth:`~pdm.dsp.spectrum.ToneSearch.at_multiples` with ``narrower``)."""
    return max(searches, key=lambda t: t.width)  # the first of the widest


def extract_many(
    jobs: Sequence[tuple[FeatureExtractor, Sequence[npt.ArrayLike]]],
) -> list[list[FeatureFrame]]:
    """The windows of many extractors (machines), in as few passes as their configurations allow.

    ``jobs`` are (extractor, windows: (n_windows, n_channels, n) in g, or a sequence of
    (n_channels, n) windows — gathered into the pass with one copy); returns each job's
    frames, as ``extractor.extract_batch(windows)`` gives them. Extractors with the same
    :attr:`~FeatureExtractor.batch_key` share one pass — one ``rfft`` call over all their
    rows, which pocketfft vectorises (a window of a 3-channel sensor alone costs about
    twice as much as one in a batch of eight; ``pdm-edge bench``), whatever their speeds;
    the others run alone. The spectrum, the speed, the time-domain and order features are
    what the extractor computes alone, to the bit; the band RMS (velocity included) and the
    envelope's features may differ by float32 rounding (BLAS picks its kernel by the number
    of rows; two envelopes share one complex FFT, and a row's partner may be another
    machine's), as between batches of different sizes of one extractor.
    """
    out: list[list[FeatureFrame] | None] = [None] * len(jobs)
    groups: dict[tuple[object, ...], list[int]] = {}
    checked: list[tuple[FeatureExtractor, list[npt.NDArray[np.float32]], int]] = []
    for j, (ex, xs) in enumerate(jobs):
        wins = ex._checked(xs, f"job {j}: ")
        checked.append((ex, wins, len(wins)))
        key = ex.batch_key
        groups.setdefault(key if key is not None else ("alone", j), []).append(j)
    for idx in groups.values():
        lead = checked[idx[0]][0]
        band = lead._fixed_band
        if len(idx) > 1 and band is not None:
            # Parts with one envelope plan side by side: one envelope transform for them
            # (plan_for gives equal settings the same plan object).
            rank: dict[int, int] = {}
            ranks = [rank.setdefault(id(checked[j][0].plan_for(band)), len(rank)) for j in idx]
            if len(rank) > 1:
                idx = [j for _r, j in sorted(zip(ranks, idx, strict=True))]
        frames = lead._extract([checked[j] for j in idx], None)
        for j, f in zip(idx, frames, strict=True):
            out[j] = f
    return [f if f is not None else [] for f in out]


def compile_kernels() -> None:
    """Compile the extractor's numba kernels (:mod:`pdm.dsp.kernels`), or load them from
    numba's cache, for the argument types a pass gives them: one small extraction with the
    speed searched, a bearing and the automatic band, which calls every kernel.

    The first process to call a kernel compiles it (seconds: ~5 s for all of them on a
    2-core VM) and numba keeps the machine code on disk for the next; ``scripts/setup-venv.sh``
    calls this once after an install, so that the first ``pdm-edge`` command does not pay it.
    """
    from pdm.dsp.bearings import lookup_bearing

    n = 4096
    chans = [ChannelSpec("x", lookup_bearing("6205"))]
    ex = FeatureExtractor(25600.0, n, chans, rpm_range=(1330.0, 1630.0))
    x = np.random.default_rng(0).normal(0.0, 0.1, (1, n)).astype(np.float32)
    ex.extract(x)
    # Machines sharing a pass (extract_many, as the service's rounds call it): their lines
    # read part by part, row slices of the pass's arrays.
    fixed = [
        FeatureExtractor(25600.0, n, chans, rpm=r, envelope_band_hz=(2e3, 5e3))
        for r in (1480.0, 1780.0)
    ]
    extract_many([(f, [x]) for f in fixed])
