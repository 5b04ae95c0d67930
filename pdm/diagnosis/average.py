"""Spectra averaged over the recent windows of a segment at one speed.

:class:`SpectrumAverage` keeps, per channel, the exponentially averaged power
(amplitude², g²) of the acceleration spectrum up to a little over 10 × shaft speed and of
the envelope spectrum the extractor computed, on the bins of the segment's first window
(spacing ``df = fs / n``). Its state is explicit and small: two arrays and a few numbers.

* **Memory.** Window ``c`` of a segment is averaged in with weight ``max(1/c, 1/N)``:
  a plain mean of the first ``N`` windows, then an exponential average with time
  constant ``N`` windows, where ``N = memory × n / hop`` (``memory`` window lengths of
  new data; 16 by default: 32 windows at 50 % overlap). It holds
  ``(n_acc + n_env) × 4`` bytes per channel (float32; ≈ 1.7 kB for a 16384-sample window
  at 25.6 kHz of a 1480 r/min machine, ≈ 10 kB for a 65536-sample window at 48 kHz).
* **Segments.** A new segment starts (the averages restart) at a stream reset, when the
  tracked speed moves by more than ``segment_tolerance`` (3 %) from the segment's
  reference speed for a window length of new data — ``max(2, ceil(n / hop))`` windows
  running, agreeing with the first of them within the tolerance: two at 50 % overlap,
  sixteen at 93.75 %, whose windows share most of their samples and are no independent
  confirmation (the windows of such a run are skipped, not averaged at a speed they may
  not be at; one stray speed estimate is skipped, not believed; a window whose speed was
  not measured is taken at the segment's speed, and a segment that begins so at the
  nominal speed),
  when the total power of the acceleration or the envelope spectrum leaves the segment's
  level by more than :data:`LEVEL_DB` (3 dB) for over a window length of new data (a fault
  set in, the load stepped: the new state is judged on its own windows, not
  diluted in the old ones; a knock lasts one window and does not count), and, for the
  envelope only, when the demodulation band changes.
* **The segment's speed.** A segment begins at an assumed speed — the nominal when its
  first window's speed was not measured, else that window's one reading — and keeps it,
  every window averaged as it is, until a measured reading within the tolerance comes from
  a window sharing no sample with the first reading's (``ceil(n / hop)`` windows on); its
  speed is then the median of the readings within the tolerance so far, and stays. One
  reading (a weak 1× that a noise line let stand, the speed read off the noise line) never
  sets it alone; moving it later would mislabel the windows already re-indexed onto it by
  ``order × change`` (bins, not a fraction of one, at the high orders). A segment begun by
  a confirmed change of speed starts confirmed.
* **Re-indexing.** Within a segment at a confirmed speed, a window whose speed differs from
  the reference by more than half a bin at the highest line of interest is re-indexed onto
  the reference's bins (linear interpolation at ``k · f_w / f_ref``), so lines stay where
  the reference speed puts them: the average is in shaft orders.
* **Independent windows.** Overlapping Hann windows are not independent; the
  effective count ``k_eff`` of a plain mean of ``c`` windows is
  ``c / (1 + 2 Σ_j (1 − j/c) ρ_j)`` with ``ρ_j`` the squared overlap correlation of
  windows ``j`` hops apart (Welch 1967); an exponential average of time constant ``N``
  is worth ``2N − 1`` windows' mean. The rules' statistical thresholds use ``k_eff``.
"""

from __future__ import annotations

import collections
import functools
import math
import statistics
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "AverageState",
    "SpectrumAverage",
    "acc_power_scale",
    "effective_windows",
    "env_power_scale",
    "reindex",
]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

#: Highest order read in the acceleration spectrum (looseness reads 10×), with margin.
ACC_TOP_ORDER = 10.8
#: A level change of either spectrum's total power by this much (dB) starts a new segment.
LEVEL_DB = 3.0
#: Second differences of readings (a window length apart) that estimate the readings' noise.
READING_PAIRS = 16
#: Fewer than this estimate no noise (the readings are taken as exact).
MIN_READING_PAIRS = 5
#: A change of speed is this many of the readings' standard deviations at least (when that
#: exceeds the tolerance), and a reading within this many of the segment's speed is not
#: re-indexed (``NOISE_SIGMAS_CHANGE`` and ``NOISE_SIGMAS_SAME``).
NOISE_SIGMAS_CHANGE = 3.0
NOISE_SIGMAS_SAME = 2.0
#: The readings' noise is believed up to this (relative): noisier readings say nothing.
MAX_READING_NOISE = 0.05


def acc_power_scale(n: int) -> float:
    """|X|² of the extractor's Hann-windowed rfft → amplitude², g²: ``(2 / Σw)²`` with
    ``Σw = n/2`` for a periodic Hann window (:mod:`pdm.dsp.spectrum`)."""
    return (4.0 / n) ** 2


def env_power_scale(n: int) -> float:
    """The envelope spectrum's squared parts summed → amplitude², g²: its amplitude is
    ``sqrt(power)·scale·2/(m/2)`` with ``scale = 2m/n`` (:mod:`pdm.dsp.envelope`), so
    ``8/n`` whatever the decimated length ``m``."""
    return (8.0 / n) ** 2


def effective_windows(count: float, n: int, hop: int) -> float:
    """Independent windows a plain mean of ``count`` Hann windows of ``n`` samples,
    ``hop`` apart, is worth (Welch's variance formula; ≥ 1)."""
    if count <= 1:
        return 1.0
    c = math.ceil(count)
    rho = []
    for j in range(1, c):
        lag = j * hop
        if lag >= n:
            break
        rho.append(_overlap_rho(n, lag))
    denom = 1.0 + 2.0 * sum((1.0 - (j + 1) / count) * r for j, r in enumerate(rho))
    return max(1.0, count / denom)


@functools.lru_cache(maxsize=256)
def _overlap_rho(n: int, lag: int) -> float:
    """Squared normalised overlap of a periodic Hann window of ``n`` samples with itself
    ``lag`` samples later, ``(Σ w[i]·w[i+lag] / Σ w²)²``.

    The same few (n, lag) pairs come back for every machine of a pipeline shape: worked
    out once a process, not on every judgement that meets a new window count (measured:
    ~2 ms each on the processing thread, a few per machine in its first minute).
    """
    w = _hann(n)
    return (float(np.dot(w[: n - lag], w[lag:])) / float(np.dot(w, w))) ** 2


@functools.lru_cache(maxsize=16)
def _hann(n: int) -> npt.NDArray[np.float64]:
    """(n,) periodic Hann window (read-only: cached)."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    w.flags.writeable = False
    return w


@dataclass(frozen=True, slots=True)
class AverageState:
    """What a judgement reads of a :class:`SpectrumAverage` at one window (a copy: the
    average goes on): see :meth:`SpectrumAverage.state`.

    Attributes
    ----------
    acc, env : (n_channels, n_acc) / (n_channels, n_env) averaged amplitude², g², float64;
        ``env`` None when no envelope was averaged in (``acc`` None: no window yet)
    count, env_count : windows averaged into each in this segment
    k_acc, k_env : independent windows each is worth
    df : bin spacing, Hz
    ref_shaft_hz, mean_shaft_hz : the segment's reference speed and the windows' mean, Hz
    band : the envelope average's demodulation band, Hz
    segment : :attr:`SpectrumAverage.segments` then
    searched : the windows' speeds were searched (not given)
    tracked : windows averaged whose searched speed stood (a measurement)
    """

    acc: F64 | None
    env: F64 | None
    count: int
    env_count: int
    k_acc: float
    k_env: float
    df: float
    ref_shaft_hz: float
    mean_shaft_hz: float
    band: tuple[float, float] | None
    segment: int
    searched: bool = False
    tracked: int = 0


class SpectrumAverage:
    """Averaged acceleration and envelope power spectra of one segment, all channels.

    Parameters
    ----------
    n_channels : channels of every window
    fs, n, hop : sample rate (Hz), window length and hop (samples)
    memory : time constant in window lengths of new data (see the module docstring)
    segment_tolerance : relative speed change that starts a new segment
    acc_bins : acceleration bins to keep, or None for those up to ``ACC_TOP_ORDER``
        × shaft speed (set the whole spectrum for display)
    """

    def __init__(
        self,
        n_channels: int,
        fs: float,
        n: int,
        hop: int,
        *,
        memory: float = 16.0,
        segment_tolerance: float = 0.03,
        acc_bins: int | None = None,
    ) -> None:
        if not 1 <= hop <= n:
            raise ValueError(f"{hop=} must be in [1, n={n}]")
        if memory <= 0:
            raise ValueError(f"{memory=} must be > 0")
        if not 0 < segment_tolerance < 0.5:
            raise ValueError(f"{segment_tolerance=} must be in (0, 0.5)")
        self.n_channels = n_channels
        self.fs = float(fs)
        self.n = int(n)
        self.hop = int(hop)
        self.df = self.fs / self.n
        self.n_mem = max(1.0, memory * self.n / self.hop)
        self.segment_tolerance = segment_tolerance
        self.fixed_acc_bins = acc_bins
        self._acc_scale = acc_power_scale(self.n)
        self._env_scale = env_power_scale(self.n)
        self._k_eff_cache: dict[int, float] = {}
        # Windows in a row whose level moved: more than one window length of new data.
        self._level_need = math.ceil(self.n / self.hop) + 1
        # Windows in a row off the reference speed (agreeing with each other) that confirm a
        # change of speed: the last is disjoint from the last window at the segment's speed
        # (a window length of new data), and never fewer than two (a stray is skipped). At
        # 50 % overlap two; at 93.75 % sixteen, not two windows sharing 15/16 of their data.
        self._speed_need = max(2, math.ceil(self.n / self.hop))
        # Windows apart that share no sample: two readings so far apart are independent.
        self._disjoint = math.ceil(self.n / self.hop)
        self._windows = 0  # windows offered (add calls), for the readings' distance
        # The speed readings' own noise (module docstring, "Noisy readings"): the recent
        # measured readings (window, log speed), and the second differences of readings a
        # window length apart. Kept across segments (a property of the machine and the window),
        # cleared at a stream reset.
        self._recent: collections.deque[tuple[int, float]] = collections.deque(
            maxlen=2 * self._disjoint + READING_PAIRS + 1
        )
        self._jumps: collections.deque[float] = collections.deque(maxlen=READING_PAIRS)
        self._last_jump = -(10**9)  # the window of the last difference kept
        self._noise = 0.0  # reading_noise, as the differences kept last gave it
        self._confirmed_start = False  # the next segment begins at a confirmed speed
        self._layout = (-1, -1)  # (acc, env) bins of the state buffers: see _lay_out
        self.segments = 0
        self.skipped = 0
        self.level_changes = 0
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def restart(self) -> None:
        """A stream reset (a gap, time going back): a new segment, and the speed readings'
        noise learnt anew."""
        self._recent.clear()
        self._jumps.clear()
        self._last_jump = -(10**9)
        self._noise = 0.0
        self.reset()

    @property
    def reading_noise(self) -> float:
        """The relative standard deviation of one window's speed reading (0: not known, or
        the readings agree): from the median of ``|ln f_i − 2 ln f_j + ln f_k|`` over the
        last readings, each a window length of new data after the next (independent
        readings: ``σ = median / (0.6745 · √6)``). A second difference, so that a steady
        drift of the speed (a ramp, a slow wander) is not taken for noise; the median, so
        that a real change of speed among them is not either."""
        return self._noise

    def _note_reading(self, shaft_hz: float) -> None:
        """Keep a measured reading and, once a window length of new data after the last,
        its second difference with the readings a window length before it and before that
        (overlapping windows share their noise; a step of speed then spoils two or three of
        the differences kept, which the median ignores)."""
        if self._recent and self._recent[-1][0] == self._windows:
            return  # the same window offered again (a change of level restarted the segment)
        here = math.log(shaft_hz)
        self._recent.append((self._windows, here))
        if self._windows - self._last_jump < self._disjoint:
            return  # one difference a window length: a step of speed spoils few of them
        back: list[float] = []
        edge = self._windows
        for w, old in list(self._recent)[-2::-1]:
            if edge - w >= self._disjoint:
                back.append(old)
                edge = w
                if len(back) == 2:
                    self._jumps.append(abs(here - 2.0 * back[0] + back[1]))
                    self._last_jump = self._windows
                    if len(self._jumps) >= MIN_READING_PAIRS:
                        mid = statistics.median(self._jumps)
                        self._noise = min(mid / (0.6745 * math.sqrt(6.0)), MAX_READING_NOISE)
                    break

    def reset(self) -> None:
        """Start a new segment: forget both averages."""
        self.acc: F32 | None = None
        self.env: F32 | None = None
        self.count = 0
        self.env_count = 0
        self.ref_shaft_hz = math.nan
        self.mean_shaft_hz = math.nan
        self.band: tuple[float, float] | None = None
        self.searched = False
        self.tracked = 0
        self._pending_hz = math.nan  # the first speed of a run off the reference
        self._pending_run = 0  # windows in that run
        # The reference speed is confirmed (two measured readings from windows sharing no
        # sample, or a confirmed change of speed), not assumed or one reading's; until then
        # the measured readings within the tolerance and the windows they came in.
        self._ref_confirmed = False
        self._readings: list[tuple[int, float]] = []
        self._confirmed_start = False
        self._top_hz = math.nan
        self._level: tuple[float, float] | None = None  # log10 of the total acc, env power
        self._level_run = 0
        self.segments += 1

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the averages."""
        return sum(a.nbytes for a in (self.acc, self.env) if a is not None)

    def k_eff(self, count: int | None = None) -> float:
        """Independent windows the current average is worth (see the module docstring)."""
        c = self.count if count is None else count
        eq = min(float(c), 2.0 * self.n_mem - 1.0)
        key = round(eq * 4)
        k = self._k_eff_cache.get(key)
        if k is None:
            k = self._k_eff_cache[key] = effective_windows(eq, self.n, self.hop)
        return k

    def acc_power(self) -> F64:
        """(n_channels, n_acc) averaged acceleration amplitude², g² (a bin-centred sine of
        amplitude A reads A²)."""
        assert self.acc is not None, "no window averaged yet"
        return self.acc.astype(np.float64) * self._acc_scale

    def env_power(self) -> F64 | None:
        """(n_channels, n_env) averaged envelope amplitude², g², or None."""
        return None if self.env is None else self.env.astype(np.float64) * self._env_scale

    def state(self) -> AverageState:
        """The averages as they stand (copies, float64 amplitude²), for a judgement now or
        later."""
        empty = self.count == 0 or self.acc is None
        return AverageState(
            None if empty else self.acc_power(),
            None if empty else self.env_power(),
            self.count,
            self.env_count,
            self.k_eff(self.count),
            self.k_eff(self.env_count),
            self.df,
            self.ref_shaft_hz,
            self.mean_shaft_hz,
            self.band,
            self.segments,
            self.searched,
            self.tracked,
        )

    # -- one window ----------------------------------------------------------------------
    def add(
        self,
        spectrum: npt.NDArray[np.complex64],
        env_parts: npt.NDArray[np.float32] | None,
        shaft_hz: float,
        band: tuple[float, float] | None,
        measured: bool = True,
        nominal_hz: float = math.nan,
    ) -> bool:
        """Average one window in; False when it was skipped (no speed, a stray speed).

        Parameters
        ----------
        spectrum : (n_channels, n//2+1) complex64, ``rfft(w·(x − mean))`` (the extractor's)
        env_parts : (n_channels, 2·n_env) float32, the envelope spectrum's squared real and
            imaginary parts as the extractor keeps them (``FeatureFrame.env_parts``), or None
        shaft_hz : the window's shaft frequency, Hz
        band : the envelope band the window was demodulated in
        measured : False when the window's speed is no measurement (searched, and no speed
            stood out of its noise): it is then taken at the segment's speed — it neither
            starts a segment nor is re-indexed — and a segment that begins so at
            ``nominal_hz``. A measured speed within ``segment_tolerance`` of a segment's
            speed not yet confirmed is collected and the window taken at that speed; a
            reading from a window sharing no sample with the first one's confirms, and the
            median of the readings becomes the segment's speed (its windows so far kept as
            they are). One measured further off is a change of speed, confirmed as any
            other (a window length of new data: see the module docstring)
        nominal_hz : the nominal shaft frequency, Hz (NaN: the window's own)
        """
        given_hz = shaft_hz
        self._windows += 1
        if not measured:
            if self.count:
                shaft_hz = self.ref_shaft_hz
            elif math.isfinite(nominal_hz) and nominal_hz > 0:
                shaft_hz = nominal_hz
        if not (math.isfinite(shaft_hz) and shaft_hz > 0):
            self.skipped += 1
            return False
        if measured:
            self._note_reading(shaft_hz)
        # Readings noisier than the tolerance (a window whose bins are coarse against the
        # shaft's lines: the speed read to a fraction of a bin) would restart the segment on
        # their own scatter and smear the lines they re-index: a change of speed must then
        # stand NOISE_SIGMAS_CHANGE of their deviations clear of the segment's speed.
        noise = self.reading_noise
        tolerance = max(self.segment_tolerance, NOISE_SIGMAS_CHANGE * noise)
        ratio = shaft_hz / self.ref_shaft_hz if self.count else 1.0
        if self.count and measured and not self._ref_confirmed and abs(ratio - 1.0) <= tolerance:
            # The segment's speed so far is assumed or one reading's: this reading is
            # collected and the window taken at the segment's speed, as the windows before
            # it. A reading from a window sharing no sample with the first one's confirms:
            # the segment's speed is then the median of the readings (one reading — a noise
            # line that let a weak 1x stand — never sets it alone; one further off than the
            # tolerance is a change, confirmed as any), the windows' mean speed their mean.
            self._readings.append((self._windows, shaft_hz))
            if self._windows - self._readings[0][0] >= self._disjoint:
                hz = sorted(r for _, r in self._readings)
                mid = len(hz) // 2
                self.ref_shaft_hz = hz[mid] if len(hz) % 2 else 0.5 * (hz[mid - 1] + hz[mid])
                self.mean_shaft_hz = shaft_hz = math.fsum(hz) / len(hz)  # this one's in
                self._ref_confirmed = True
                self._readings = []
            ratio = 1.0
        if abs(ratio - 1.0) > tolerance:
            # Off the segment's speed: skipped (not averaged at a speed it may not be at)
            # until a run of windows agreeing with the run's first confirms a change.
            pending = self._pending_hz
            if math.isfinite(pending) and abs(shaft_hz / pending - 1.0) <= tolerance:
                self._pending_run += 1
            else:
                self._pending_hz, self._pending_run = shaft_hz, 1
            if self._pending_run >= self._speed_need:
                self.reset()  # the speed really moved: a new segment from this window
                self._confirmed_start = True  # at a speed the run confirmed
                ratio = 1.0
            else:
                self.skipped += 1
                return False
        self._pending_hz, self._pending_run = math.nan, 0
        if self.count and abs(ratio - 1.0) <= NOISE_SIGMAS_SAME * noise:
            # Within the readings' noise of the segment's speed: taken at it (re-indexing by
            # the reading would move its lines by the reading's error, not the shaft's).
            ratio, shaft_hz = 1.0, self.ref_shaft_hz
        if self.count == 0:
            self.ref_shaft_hz = self.mean_shaft_hz = shaft_hz
            self._ref_confirmed = self._confirmed_start
            self._readings = [(self._windows, shaft_hz)] if measured else []
            self._confirmed_start = False
            n_bins = spectrum.shape[-1]
            k = self.fixed_acc_bins or math.ceil(ACC_TOP_ORDER * shaft_hz / self.df) + 80
            self._acc_bins = min(n_bins, k)
            n_env = env_parts.shape[-1] // 2 if env_parts is not None else 0
            self._top_hz = max(self._acc_bins, n_env) * self.df
        if band != self.band:
            self.env, self.env_count, self.band = None, 0, band

        # A window without an envelope keeps the envelope average as it is.
        n_env = env_parts.shape[-1] // 2 if env_parts is not None else max(self._layout[1], 0)
        if self._layout != (self._acc_bins, n_env):
            self._lay_out(self._acc_bins, n_env)
        # |X|² and the envelope's power, written into the scratch halves (no allocation).
        v = spectrum[:, : self._acc_bins].view(np.float32)
        np.multiply(v, v, out=self._sq)
        acc = np.add(self._sq[:, 0::2], self._sq[:, 1::2], out=self._new_acc)
        env = None
        if env_parts is not None:
            env = np.add(env_parts[:, 0::2], env_parts[:, 1::2], out=self._new_env)
        # The machine's state changed (a fault set in, the load stepped): the level of either
        # spectrum left the segment's by more than LEVEL_DB for over a window length of new
        # data. Averaging across that would hide the new state behind the old one.
        la = math.log10(float(_total(acc, None)) + 1e-30)
        le = math.log10(float(_total(env, None)) + 1e-30) if env is not None else 0.0
        if self.count == 0 or self._level is None:
            self._level = (la, le)
        elif max(abs(la - self._level[0]), abs(le - self._level[1])) > LEVEL_DB / 10.0:
            self._level_run += 1
            if self._level_run >= self._level_need:
                self.reset()
                self.level_changes += 1
                self._windows -= 1  # the same window, offered again
                return self.add(spectrum, env_parts, given_hz, band, measured, nominal_hz)
        else:
            self._level_run = 0
            w = 1.0 / min(self.count + 1, self.n_mem)
            self._level = (
                self._level[0] + w * (la - self._level[0]),
                self._level[1] + w * (le - self._level[1]),
            )
        self.count += 1
        searched = math.isfinite(nominal_hz)
        self.searched = self.searched or searched
        self.tracked += searched and measured
        self.mean_shaft_hz += (shaft_hz - self.mean_shaft_hz) / min(self.count, self.n_mem)
        a_acc = 1.0 / min(self.count, self.n_mem)
        if env is not None:
            self.env_count += 1
        a_env = 1.0 / min(max(self.env_count, 1), self.n_mem)
        # A segment's (or a band's) first window is taken as it is.
        acc_first, env_first = self.acc is None, self.env is None
        # Re-index onto the reference speed's bins when the lines would move by > 0.5 bin.
        if abs(ratio - 1.0) * self._top_hz > 0.5 * self.df:
            _ema(self._acc, reindex(acc.astype(np.float64), ratio), a_acc, acc_first)
            if env is not None:
                x = reindex(env.astype(np.float64), ratio)
                _ema(self._env, x, a_env, env_first)
        elif env is not None and a_acc == a_env and acc_first == env_first:
            # Both spectra at one weight (the usual case): one pass over the state buffer.
            _ema(self._state, self._scratch, a_acc, acc_first)
        else:
            _ema(self._acc, acc, a_acc, acc_first)
            if env is not None:
                _ema(self._env, env, a_env, env_first)
        self.acc = self._acc
        if env is not None:
            self.env = self._env
        return True

    def _lay_out(self, n_acc: int, n_env: int) -> None:
        """The state for ``n_acc`` acceleration and ``n_env`` envelope bins: both averages
        in one float32 buffer (acc rows, then env rows: each a C-contiguous view) so that a
        window is averaged in with one pass, and a scratch buffer of the same layout for
        the window's own power. The acceleration average carries over (a band change
        may change the envelope's length within a segment)."""
        ch = self.n_channels
        state = np.zeros(ch * (n_acc + n_env), dtype=np.float32)
        if self.acc is not None and self.acc.shape == (ch, n_acc):
            state[: ch * n_acc] = self.acc.reshape(-1)
        env_kept = self.env is not None and self.env.shape == (ch, n_env)
        if env_kept:
            assert self.env is not None
            state[ch * n_acc :] = self.env.reshape(-1)
        self._state = state
        self._scratch = np.empty_like(state)
        self._sq = np.empty((ch, 2 * n_acc), dtype=np.float32)
        self._acc = state[: ch * n_acc].reshape(ch, n_acc)
        self._env = state[ch * n_acc :].reshape(ch, n_env)
        self._new_acc = self._scratch[: ch * n_acc].reshape(ch, n_acc)
        self._new_env = self._scratch[ch * n_acc :].reshape(ch, n_env)
        self.acc = self._acc if self.acc is not None and self.acc.shape == (ch, n_acc) else None
        self.env = self._env if env_kept else None
        self._layout = (n_acc, n_env)


#: ``_total(x, None)``: the sum of every element, ``ndarray.sum``'s very reduction (the same
#: pairwise order, so the same float32 result) without its Python wrapper.
_total = np.add.reduce


def _ema(avg: F32, x: npt.NDArray[np.floating], a: float, first: bool) -> None:
    """``avg ← avg + a·(x − avg)`` in place, ``avg ← x`` for a segment's ``first`` window;
    float32: an average of float32 spectra needs no more (its relative error stays ~1e-7
    per step). ``x`` (float32 scratch, or a float64 re-indexed copy) is overwritten."""
    if first:
        avg[...] = x
        return
    np.subtract(x, avg, out=x)
    x *= a
    avg += x


def reindex(p: F64, ratio: float) -> F64:
    """``p`` read at bins ``k · ratio`` (linear interpolation): a line at order o of a window
    whose shaft runs ``ratio`` × the reference lands where the reference puts order o."""
    n = p.shape[-1]
    pos = np.arange(n) * ratio
    i0 = np.minimum(pos.astype(np.intp), n - 2)
    w = np.clip(pos - i0, 0.0, 1.0)
    out = p[..., i0] * (1.0 - w) + p[..., i0 + 1] * w
    out[..., pos > n - 1] = p[..., -1:]  # beyond the spectrum: the last bin
    return out
