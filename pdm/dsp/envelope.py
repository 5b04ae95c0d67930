"""Envelope (demodulation) analysis from the bins of the one FFT already taken.

A bearing defect strikes a structural resonance once per defect period; the
resonance rings at kHz, the strikes repeat at BPFO/BPFI/... Hz. Demodulating a
band around the resonance and taking the spectrum of its envelope shows the
strike rate. The plain method (band-pass filter, Hilbert transform, FFT of
the full-length envelope) costs several full-length transforms; here:

1. the band's bins ``X[k1:k2]`` of the window's ``rfft`` are the analytic
   band signal's spectrum, already shifted to base band by indexing them from 0;
2. an inverse FFT of only ``M >= (k2 − k1) + K_env`` points gives that
   analytic signal decimated to ``M`` samples across the same window (the
   envelope's magnitude does not care about the frequency shift), where
   ``K_env`` bins cover the envelope frequencies of interest, so the
   envelope spectrum there is free of aliasing from the band's own width;
3. ``|z|`` is the envelope, still carrying the Hann window as a slow
   amplitude weighting, which is exactly the windowing its own ``rfft`` needs.

``z`` holds ``nb`` bins, so its ``M`` samples are exact; ``|z|`` is not band-limited (the
magnitude of a sum of tones or of an impulse train has harmonics beyond ``nb``), and its
``M``-point spectrum folds what lies beyond ``M − K_env``: measured up to ~12 dB over the
floor, a few lines off the orders, mostly with narrow bands or dense combs
(scripts/envelope_alias.py). The squared envelope ``|z|²`` would be exact, but its
prominences are not ``|z|``'s, and the diagnosis judged worse with it (docs/diagnosis.md §14).

The envelope spectrum has the same bin spacing ``fs/N`` as the main spectrum.
Its amplitude scaling follows :mod:`pdm.dsp.spectrum` with ``n = M`` and
``Σw² = 3M/8`` (a periodic Hann sampled at M points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from pdm.dsp.kernels import band_bins, envelope_pairs, pair_spectra_parts

__all__ = [
    "BandChoice",
    "BandSchedule",
    "BandScorer",
    "BandScores",
    "EnvelopePlan",
    "band_holds",
    "candidate_bands",
    "envelope_power",
    "plan_envelope",
    "select_band",
]

# E[w⁴]/E[w²]² of a Hann window: the kurtosis a steady band gains from the
# window alone, divided out so that Gaussian noise reads SK ≈ 0.
_HANN_KURTOSIS_GAIN = (35 / 128) / (3 / 8) ** 2


@dataclass(frozen=True, slots=True)
class EnvelopePlan:
    """Bins and lengths for one envelope band at one (fs, N).

    Attributes
    ----------
    lo_hz, hi_hz : band edges actually used (snapped to bins), Hz
    k1, k2 : the band is ``X[:, k1:k2]``
    m : length of the decimated envelope (samples across the window)
    n_env_bins : envelope spectrum bins kept (``0 .. n_env_bins-1``, spacing fs/N)
    scale : multiply ``|ifft|`` by this to get the envelope in the signal's unit
    """

    lo_hz: float
    hi_hz: float
    k1: int
    k2: int
    m: int
    n_env_bins: int
    scale: float

    @property
    def sum_w2(self) -> float:
        """Σw² of the Hann weighting carried by the decimated envelope."""
        return 3.0 * self.m / 8.0


def plan_envelope(
    fs: float, n: int, band_hz: tuple[float, float], env_max_hz: float
) -> EnvelopePlan:
    """Plan the envelope of ``band_hz`` for windows of ``n`` samples at ``fs`` Hz.

    ``env_max_hz`` is the highest envelope frequency wanted (e.g. a bit over
    2 × the highest defect frequency). Raises ``ValueError`` naming the value
    when the band does not fit.
    """
    lo, hi = band_hz
    nyq = fs / 2
    if not 0 < lo < hi:
        raise ValueError(f"envelope band {band_hz} must satisfy 0 < low < high")
    if hi > nyq:
        raise ValueError(f"envelope band high edge {hi} Hz is above Nyquist ({nyq} Hz at fs={fs})")
    df = fs / n
    k1 = max(1, round(lo / df))
    k2 = min(n // 2, round(hi / df) + 1)
    nb = k2 - k1
    if nb < 4:
        raise ValueError(f"envelope band {band_hz} Hz spans only {nb} bins at fs={fs}, n={n}")
    n_env = min(int(np.ceil(env_max_hz / df)) + 1, nb)
    m = sfft.next_fast_len(nb + n_env)
    # ifft divides by m; the analytic band signal of the windowed window is 2/n · Σ X e^{...}.
    return EnvelopePlan(k1 * df, (k2 - 1) * df, k1, k2, m, n_env, 2.0 * m / n)


def envelope_power(
    x_spec: npt.NDArray[np.complexfloating], plan: EnvelopePlan, rows: int | None = None
) -> npt.NDArray[np.float32]:
    """Unscaled envelope power spectrum ``|rfft(|z|)|²`` for bins ``0 .. n_env_bins-1``.

    Parameters
    ----------
    x_spec : (n_channels, n//2+1) complex, ``rfft(w·x)`` of the window (transformed as
        complex64, float32 parts: what the extractor's FFT gives)
    plan : from :func:`plan_envelope`
    rows : transform this many rows, ``x_spec``'s and zero rows after them (pocketfft
        transforms rows four at a time: a pass pads its rows so), without copying
        ``x_spec`` into a padded array first; default: ``x_spec``'s rows

    Returns
    -------
    (rows, 2·n_env_bins) float32, squared real and imaginary parts
    interleaved as :func:`pdm.dsp.spectrum.squared_parts` gives them; multiply
    by ``plan.scale²`` for the signal's unit squared, then read it like any
    power spectrum with ``n = plan.m`` and ``Σw² = plan.sum_w2``.
    """
    spec = np.ascontiguousarray(x_spec, dtype=np.complex64)
    # In place: band_bins gave a fresh array (complex64 transforms stay complex64).
    z = sfft.ifft(band_bins(spec, plan.k1, plan.k2, plan.m, rows), axis=-1, overwrite_x=True)
    # The envelope is w·a(t): its mean shows as the Hann kernel at bins 0 and ±1, half
    # the mean envelope at bin 1, which would swamp the lowest defect lines (FTF).
    # Removing mean(a)·w takes exactly that out and leaves the modulation alone (before
    # the transform, so that the large mean adds no float32 rounding to the lines).
    # Two rows' envelopes go through one complex FFT (real and imaginary parts), which
    # pair_spectra_parts separates: a real FFT of m = 1568 = 2⁵·7² points (the default
    # band at 25.6 kHz) costs pocketfft 1.4x what half a complex one does.
    pairs, finite = envelope_pairs(z, _hann_cache(plan.m))
    c = sfft.fft(pairs, axis=-1, overwrite_x=True)
    return pair_spectra_parts(c, finite, plan.n_env_bins)


_HANN: dict[int, npt.NDArray[np.float32]] = {}


def _hann_cache(m: int) -> npt.NDArray[np.float32]:
    """Periodic Hann of length ``m`` (the weighting the decimated envelope carries), cached."""
    w = _HANN.get(m)
    if w is None:
        w = _HANN[m] = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m)).astype(np.float32)
    return w


# --------------------------------------------------------------------------- automatic band
#
# The band is judged the way an analyst judges it: a band is worth demodulating when the
# signal there stands above the sensor's floor, and the best such band is the one whose
# envelope spectrum shows the bearing's defect lines most clearly. Spectral kurtosis alone
# is not enough: a band at the floor can be very kurtotic (quantisation steps, spikes of
# electrical noise) while holding none of the fault (CWRU 48 kHz: 10.5–12 and 17–19 kHz
# were chosen, 40–60 dB under the band where the impacts ring).

#: Variance of the SK estimate of stationary Gaussian noise is ``SK_NOISE_VARIANCE / nb``
#: for a band of ``nb`` bins. For ``nb`` independent complex Gaussian samples
#: ``z_j = w_j·g_j`` weighted by the Hann window (moments S_k = mean(w^k) = 3/8, 35/128,
#: 231/1024, 6435/32768 for k = 2, 4, 6, 8), the delta method on
#: ``mean|z|⁴ / mean(|z|²)²`` gives ``20·S8/S4² + 16·S4/S2² − 32·S6/(S2·S4)`` ≈ 13.24
#: (4 without the window; pinned by a test on simulated noise).
SK_NOISE_VARIANCE = (
    20 * (6435 / 32768) / (35 / 128) ** 2
    + 16 * (35 / 128) / (3 / 8) ** 2
    - 32 * (231 / 1024) / ((3 / 8) * (35 / 128))
)

#: A band rises above the floor when its mean power spectral density exceeds the floor by
#: this many of the floor's own standard deviations (dB: colored noise is not flat) ...
FLOOR_GATE_SIGMAS = 2.0
#: ... and by at least this (dB; 1 dB is 26 % more power than the floor).
FLOOR_GATE_MIN_DB = 1.0
#: SK counts as impulsive when it exceeds this many standard deviations of Gaussian noise's.
SK_Z_MIN = 8.0
#: A line family counts as present when its prominence (dB over the local envelope floor,
#: mean over its harmonics) reaches this.
LINES_MIN_DB = 12.0
#: The automatic band changes only for a band that scores this much better (dB, same
#: criterion). A line family's prominence wanders by 1.1–1.9 dB (standard deviation) from
#: window to window on a steady fault, the difference between two good bands' by ≤ 1.8 dB
#: (CWRU and simulated faults, scripts/auto_band_figures.py): 4 dB is over two of those.
HYSTERESIS_DB = 4.0
#: Bands within this of the best score are as good as it (about one such deviation); of
#: them, the one holding most signal power above the floor is chosen: where the fault's
#: energy is, and the largest envelope amplitudes.
TIE_DB = 2.0
#: A band's envelope is a steady tone's (or a few steady tones', beating) rather than noise's or
#: impacts' when its spectral kurtosis is at or below this: steady tones of power fractions
#: ``f_i`` of the band's power over Gaussian noise give ``SK = −Σ f_i²`` (one tone alone −1,
#: noise 0, impacts > 0), so −0.25 is one tone carrying half the band's power, or two carrying
#: 71 % of it. Such a band's envelope lines are the tones' beats, not an impact train:
#: :func:`select_band` judges lines in other bands first. The estimate must be off noise's too,
#: by :data:`TONAL_SK_Z` of its standard deviations (a band of 300 bins, the narrowest a slow
#: machine's candidates reach, reads two tones carrying it at about −3.5).
TONAL_SK = -0.25
TONAL_SK_Z = -2.0
#: Bins either side of a line, beyond its search range, whose median is its local floor.
_FLOOR_BINS = 8
#: Blocks the floor range is cut into; the floor is the median of their mean PSDs.
_FLOOR_BLOCKS = 32
#: Order of the criteria (higher wins), as :attr:`BandChoice.criterion` names them.
CRITERIA: tuple[str, ...] = ("energy", "impulsive", "lines")


#: The automatic band's candidates start no lower than this (Hz) on any machine: below it the
#: direct spectrum belongs to the machine's slow lines whatever its speed — twice the mains
#: frequency and its harmonics (100/120 Hz …), belts, blade passes, the frame's and the
#: foundation's own modes, the 10–1000 Hz range ISO 10816 reads as velocity — and the
#: resonances that carry bearing impacts ring at kHz. It decides only on slow machines (below
#: about 1500 r/min, where 20 × shaft and the envelope's range both fall under it).
CANDIDATE_MIN_HZ = 500.0
#: Harmonics of the shaft a loose or rubbing machine shows in its direct spectrum (looseness
#: up to 10–20 × running speed): a band above them does not demodulate the shaft's comb.
SHAFT_HARMONICS = 20


def candidate_floor_hz(max_shaft_hz: float, env_max_hz: float) -> float:
    """The lowest edge an automatic band's candidate may start at, Hz.

    Demodulation needs the band to hold the resonance the impacts ring and none of the
    machine's own direct lines that would beat in the envelope: lines in the band beat at
    their spacing, lines outside it do not. So the band starts above (a) the shaft's
    harmonics (:data:`SHAFT_HARMONICS` × the highest running speed), (b) the defect lines and
    their harmonics up to what the envelope spectrum analyses (``env_max_hz``: twice the
    highest defect frequency with the slip allowance) and (c) :data:`CANDIDATE_MIN_HZ`. Its
    width (twice ``env_max_hz``, to carry the lines' sidebands) is asked by
    :func:`candidate_bands`; which candidate holds the resonance is :func:`select_band`'s.
    The former floor, ten times the highest defect frequency (five times ``env_max_hz``),
    left resonances of 2–4 kHz untried on fast machines (a 6203 at 6000 r/min: ≈ 5 kHz).
    """
    return max(CANDIDATE_MIN_HZ, SHAFT_HARMONICS * max_shaft_hz, env_max_hz)


def candidate_bands(
    fs: float, min_lo_hz: float, min_width_hz: float, *, n: int | None = None, max_level: int = 12
) -> list[tuple[float, float]]:
    """Candidate demodulation bands: the 1/3-binary tree of Antoni's fast kurtogram.

    Levels 1, 1.6, 2, 2.6, … tile ``0 … nyq`` (``nyq = fs/2``) with bands of width
    ``nyq/2, nyq/3, nyq/4, nyq/6, nyq/8, nyq/12, …``; bands starting below
    ``min_lo_hz`` or narrower than ``min_width_hz`` are left out. Widest first.
    With the window length ``n``, the edges fall on whole bins (``fs/n``) and every band
    of a level has the same number of bins, ``⌊(n/2)/parts⌋``, so a level's bands are
    contiguous runs of the spectrum (:class:`BandScorer` transforms them without copying).

    J. Antoni, "Fast computation of the kurtogram for the detection of transient
    faults", Mechanical Systems and Signal Processing 21 (2007) 108–124.
    """
    nyq = fs / 2
    out: list[tuple[float, float]] = []
    for level in range(1, max_level + 1):
        for parts in (2**level, 3 * 2 ** (level - 1)):
            width = nyq / parts
            if n is not None:
                width = (n // 2 // parts) * fs / n
            if width < min_width_hz or width <= 0:
                continue
            out += [(i * width, (i + 1) * width) for i in range(parts) if i * width >= min_lo_hz]
    return sorted(set(out), key=lambda b: (-(b[1] - b[0]), b[0]))


@dataclass(frozen=True, slots=True)
class BandScores:
    """What :class:`BandScorer` measured on one window, per channel row and candidate band.

    Attributes
    ----------
    bands : (n_bands,) the candidates, (lo_hz, hi_hz)
    level_db : (n_rows, n_bands) mean power spectral density in the band over the row's
        broadband floor, dB
    gate_db : (n_rows,) the level a band must reach to rise above that row's floor, dB
    excess_db : (n_rows, n_bands) the band's power above the floor (``(level − 1)·nb``
        with the level in floor units), dB over the floor's power in one bin
    sk : (n_rows, n_bands) spectral kurtosis of the band's complex envelope (0 for
        Gaussian noise, > 0 for repetitive impacts)
    sk_z : (n_rows, n_bands) ``sk`` in standard deviations of Gaussian noise's estimate
    lines_db : (n_rows, n_bands) prominence of the strongest defect-line family in the
        band's envelope spectrum, dB; NaN where not judged (no lines given, or the band
        was not on the short list)
    """

    bands: tuple[tuple[float, float], ...]
    level_db: npt.NDArray[np.float64]
    gate_db: npt.NDArray[np.float64]
    excess_db: npt.NDArray[np.float64]
    sk: npt.NDArray[np.float64]
    sk_z: npt.NDArray[np.float64]
    lines_db: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BandChoice:
    """The automatic band, and why: the state :func:`select_band` steps (its hysteresis).

    Attributes
    ----------
    band : (lo_hz, hi_hz) as a candidate names it (what the extractor's plan is keyed by)
    criterion : ``"lines"`` (a defect-line family stands out), ``"impulsive"``
        (significant spectral kurtosis) or ``"energy"`` (neither: the band with most
        signal above the floor); ``"none"`` when the window gave nothing to judge by
    score_db : the band's score by that criterion at the last evaluation, dB
    level_db : (n_rows, n_bands) every candidate's level over the floor in the window the
        choice was judged on (:attr:`BandScores.level_db`): what :func:`band_holds` compares
        later windows with; None when that window gave nothing to judge by
    """

    band: tuple[float, float]
    criterion: str
    score_db: float
    level_db: npt.NDArray[np.float64] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class _Group:
    """Candidates of one width, side by side: ``count`` bands of ``nb`` bins from ``start``."""

    index: npt.NDArray[np.intp]  # positions in BandScorer.bands
    start: int
    count: int
    nb: int
    m_sk: int  # inverse-FFT length for SK alone: a fast one >= nb (padding changes no moment)
    m_env: int  # ... for the envelope spectrum too: >= nb + n_env, free of aliasing there,
    # and >= 2·(n_env − 1), so that its real FFT holds the n_env bins read


_Gather = tuple[
    npt.NDArray[np.intp], npt.NDArray[np.bool_], npt.NDArray[np.intp], npt.NDArray[np.bool_]
]


class BandScorer:
    """Scores candidate envelope bands on a window's spectrum (built once per extractor).

    For every candidate band and channel row, from the window's own ``rfft`` bins:

    * ``level_db``: the band's mean power spectral density over the row's broadband
      floor, the median of the mean PSDs of :data:`_FLOOR_BLOCKS` blocks across
      ``floor_range_hz`` (the level half the spectrum sits at or below: the sensor's and
      the machine's broadband noise, not its resonances); and ``gate_db``, how far above
      it a band must rise to stand out of the floor's own ups and downs:
      :data:`FLOOR_GATE_SIGMAS` times the floor's spread (its median over its 10th
      percentile, in dB, as a Gaussian standard deviation), at least
      :data:`FLOOR_GATE_MIN_DB`;
    * ``sk``: spectral kurtosis ``E|z|⁴/(E|z|²)² − 2`` of the band's complex envelope
      ``z`` (the band's bins inverse-transformed, the Hann window's own kurtosis divided
      out), and ``sk_z``, the same in standard deviations of Gaussian noise's estimate,
      ``sqrt(SK_NOISE_VARIANCE / nb)``;
    * ``lines_db`` (when line frequencies are given): the envelope spectrum
      ``|rfft(|z|)|²`` and, for each family of lines (e.g. BPFO at 1× and 2×), the mean
      over its harmonics of ``10·log10(line / floor)``: the line the largest bin within
      ``± slip`` of its frequency (at least ± 1 bin), the floor the local noise (median of
      :data:`_FLOOR_BINS` bins each side beyond the search, over ln 2: the mean of
      exponentially distributed power); the strongest family counts.

    Cost: the bands of one width are side by side in the spectrum, so each width is one
    inverse FFT over all of them (``z`` zero-padded to ``m ≥ nb + n_env`` points when the
    lines are judged, so that ``|z|`` is free of aliasing up to the envelope frequencies
    wanted, as in :func:`plan_envelope`) and one real FFT of their envelopes: about as
    many points as two or three FFTs of the window per width, for every row.

    Parameters
    ----------
    fs, n : sample rate (Hz) and window length (samples) of the spectra to come
    candidates : the bands, (lo_hz, hi_hz), e.g. from :func:`candidate_bands`
    env_max_hz : the highest envelope frequency a line family needs, Hz
    floor_range_hz : (lo, hi) Hz over which the broadband floor is estimated
    """

    def __init__(
        self,
        fs: float,
        n: int,
        candidates: list[tuple[float, float]],
        env_max_hz: float,
        floor_range_hz: tuple[float, float],
    ) -> None:
        if not candidates:
            raise ValueError("no candidate bands (sample rate too low for the envelope?)")
        df = fs / n
        n_bins = n // 2 + 1
        self.bands = tuple(candidates)
        self.n_env = int(np.ceil(env_max_hz / df)) + 1 + _FLOOR_BINS + 2
        k1 = np.array([max(1, round(lo / df)) for lo, _hi in self.bands])
        nb = np.array([round(hi / df) - max(1, round(lo / df)) for lo, hi in self.bands])
        if np.any(k1 + nb > n_bins) or np.any(nb < 4):
            raise ValueError(f"candidate bands must lie within 0 … {fs / 2} Hz, >= 4 bins wide")
        self._k1, self._k2 = k1, k1 + nb
        self._nb = nb.astype(np.float64)
        self._sk_sd = np.sqrt(SK_NOISE_VARIANCE / self._nb)
        runs: list[tuple[list[int], int, int]] = []  # (bands, start bin, nb), widest first
        for b in np.lexsort((k1, -nb)).tolist():
            idx, start, width = runs[-1] if runs else ([], -1, -1)
            if nb[b] == width and k1[b] == start + len(idx) * width:
                idx.append(b)
            else:
                runs.append(([b], int(k1[b]), int(nb[b])))
        self._groups = tuple(
            _Group(
                np.array(idx),
                start,
                len(idx),
                width,
                sfft.next_fast_len(width),
                # A band narrower than the envelope range read (a short window: few bins
                # per band, the floor's bins beyond the lines) still needs n_env bins.
                sfft.next_fast_len(max(width + self.n_env, 2 * (self.n_env - 1))),
            )
            for idx, start, width in runs
        )
        f_lo, f_hi = floor_range_hz
        edges = np.linspace(max(1, f_lo / df), min(n_bins - 1, f_hi / df), _FLOOR_BLOCKS + 1)
        self._floor_edges = np.round(edges).astype(np.intp)
        if np.any(np.diff(self._floor_edges) < 1):
            raise ValueError(f"floor range {floor_range_hz} Hz is too narrow at fs={fs}, n={n}")
        # Every band and floor block is a run of bins between two of these cuts: the power
        # is summed once per stretch between cuts, and each run's sum is a difference of
        # their cumulative sums (a cumulative sum over all bins cost a third of a choice).
        self._cuts = np.unique(np.concatenate([self._k1, self._k2, self._floor_edges]))
        at = {int(c): i for i, c in enumerate(self._cuts.tolist())}
        self._k1_at = np.array([at[int(k)] for k in self._k1])
        self._k2_at = np.array([at[int(k)] for k in self._k2])
        self._floor_at = np.array([at[int(k)] for k in self._floor_edges])

    def __call__(
        self,
        x_spec: npt.NDArray[np.complexfloating],
        line_bins: npt.NDArray[np.float64] | None = None,
        slip: float = 0.03,
        *,
        only: int | None = None,
    ) -> BandScores:
        """Score every candidate on one window.

        Parameters
        ----------
        x_spec : (n_rows, n//2+1) complex, ``rfft(w·x)`` of the window's channels
        line_bins : (n_rows, n_families, n_harmonics) line frequencies in bins
            (``f / (fs/n)``), NaN where a row has none; None to skip the lines
        slip : lines are searched within ± this fraction of their frequency
        only : a candidate's index: every band's level is measured, but the spectral
            kurtosis and the lines of that band alone (the others NaN) — the same numbers
            as scoring them all, for the cost of one band's transforms
        """
        x_spec = np.asarray(x_spec)
        n_rows = x_spec.shape[0]
        level, floor, gate_db = self._levels(x_spec)
        with np.errstate(divide="ignore", invalid="ignore"):
            level_db = 10.0 * np.log10(level / floor[:, None])
            excess_db = 10.0 * np.log10((level / floor[:, None] - 1.0) * self._nb)
        sk = np.full((n_rows, len(self.bands)), np.nan)
        gather = None if line_bins is None else self._line_gather(line_bins, slip)
        # (rows, envelope bins, bands): each line's search gathers its bins for all bands at once
        groups = self._groups if only is None else (self._alone(only),)
        scored = len(self.bands) if only is None else 1
        power = None if gather is None else np.empty((n_rows, self.n_env, scored))
        for g in groups:
            run = x_spec[:, g.start : g.start + g.count * g.nb].reshape(n_rows, g.count, g.nb)
            m = g.m_sk if gather is None else g.m_env
            z = sfft.ifft(run, n=m, axis=-1)  # (rows, bands, m)
            env = np.abs(z)
            a2 = env * env
            m2 = a2.mean(axis=-1)
            m4 = np.vecdot(a2, a2) / m
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                sk[:, g.index] = m4 / (m2 * m2) / _HANN_KURTOSIS_GAIN - 2.0
            if power is not None:
                # The envelope's mean leaves the Hann kernel in bins 0 and 1 only; no line
                # or floor bin is read there (see _line_gather), so it stays.
                spec = sfft.rfft(env, axis=-1, overwrite_x=True)[..., : self.n_env]
                sq = spec.real * spec.real
                sq += spec.imag * spec.imag
                power[:, :, g.index if only is None else slice(0, 1)] = sq.transpose(0, 2, 1)
        sk_z = sk / self._sk_sd
        lines_db = np.full((n_rows, len(self.bands)), np.nan)
        if power is not None and gather is not None:
            lines_db[:, slice(None) if only is None else [only]] = self._prominence(power, gather)
        return BandScores(self.bands, level_db, gate_db, excess_db, sk, sk_z, lines_db)

    def _alone(self, b: int) -> _Group:
        """Band ``b`` as a group of its own, transformed at its width's lengths."""
        width = int(self._k2[b] - self._k1[b])
        g = next(g for g in self._groups if g.nb == width)
        return _Group(np.array([b]), int(self._k1[b]), 1, width, g.m_sk, g.m_env)

    def _levels(
        self, x_spec: npt.NDArray[np.complexfloating]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each candidate's mean power per bin (n_rows, n_bands), each row's floor and its
        gate (dB), from the power between the cut points."""
        n_rows = x_spec.shape[0]
        cuts = self._cuts
        head = x_spec[:, : cuts[-1]]
        p = head.real * head.real
        p += head.imag * head.imag
        cum = np.zeros((n_rows, len(cuts)))
        np.cumsum(np.add.reduceat(p, cuts[:-1], axis=1, dtype=np.float64), axis=1, out=cum[:, 1:])
        e = self._floor_at
        blocks = (cum[:, e[1:]] - cum[:, e[:-1]]) / np.diff(self._floor_edges)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Silent blocks (a pure tone, a zero-padded window) are -inf dB; their percentiles
            # may be NaN, which fails every gate as intended.
            blocks_db = 10.0 * np.log10(blocks)
            q10, q50 = _percentiles(blocks_db, (10.0, 50.0))
        floor = 10.0 ** (q50 / 10.0)
        gate_db = np.maximum(FLOOR_GATE_MIN_DB, FLOOR_GATE_SIGMAS * (q50 - q10) / 1.2816)
        level = (cum[:, self._k2_at] - cum[:, self._k1_at]) / self._nb
        return level, floor, gate_db

    def _line_gather(self, line_bins: npt.NDArray[np.float64], slip: float) -> _Gather:
        """Envelope bins to read for each line: its search range (with a mask for the
        unused end), its local floor, and which lines lie on the spectrum at all."""
        c = np.asarray(line_bins, dtype=np.float64)
        finite = np.isfinite(c)
        half = np.where(finite, np.maximum(1.0, np.abs(c) * slip), 1.0)
        width = 2 * int(np.ceil(np.max(half))) + 1
        c_safe = np.where(finite, c, 0.0)
        lo = np.ceil(c_safe - half).astype(np.intp)
        hi = np.floor(c_safe + half).astype(np.intp)
        search = lo[..., None] + np.arange(width)
        in_search = search <= hi[..., None]
        side = np.arange(1, _FLOOR_BINS + 1)
        floor_bins = np.concatenate(
            [(lo - 2)[..., None] - side[::-1], (hi + 2)[..., None] + side], axis=-1
        )
        ok = finite & (floor_bins[..., 0] >= 2) & (hi + 2 + _FLOOR_BINS < self.n_env)
        top = self.n_env - 1
        return np.clip(search, 0, top), in_search, np.clip(floor_bins, 0, top), ok

    @staticmethod
    def _prominence(power: npt.NDArray[np.floating], gather: _Gather) -> npt.NDArray[np.float64]:
        """(rows, bands): the strongest family's mean prominence over its harmonics, dB,
        from envelope power spectra ``power`` (rows, n_env, bands)."""
        search, in_search, floor_bins, ok = gather
        rows = np.arange(power.shape[0])[:, None, None, None]
        # (rows, families, harmonics, bins) gathered from each band: (..., bins, bands)
        line = np.where(in_search[..., None], power[rows, search], 0.0).max(axis=-2)
        # the median of the 2·_FLOOR_BINS floor bins (an even count): the mean of the middle two
        mid = _FLOOR_BINS - 1, _FLOOR_BINS
        noise = np.partition(power[rows, floor_bins], mid, axis=-2)[..., mid[0] : mid[1] + 1, :]
        noise = noise.mean(axis=-2) / math.log(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            prom = 10.0 * np.log10(line / noise)
        prom = np.where(ok[..., None] & np.isfinite(prom), prom, np.nan)
        return _nanmax(_nanmean(prom, axis=2), axis=1)


def _percentiles(
    a: npt.NDArray[np.float64], qs: tuple[float, ...]
) -> tuple[npt.NDArray[np.float64], ...]:
    """``np.percentile(a, qs, axis=1)`` (linear interpolation, NaN sorting last as in numpy's
    sort) without its overhead, which was a tenth of a band choice."""
    s = np.sort(a, axis=1)
    n = s.shape[1]
    out = []
    for q in qs:
        v = q / 100.0 * (n - 1)
        j = min(math.floor(v), n - 2)
        t = v - j
        lo, hi = s[:, j], s[:, j + 1]
        with np.errstate(invalid="ignore"):  # inf − inf: NaN, as numpy gives it
            out.append(lo + (hi - lo) * t if t < 0.5 else hi - (hi - lo) * (1.0 - t))
    # numpy's percentile is NaN for a row holding a NaN
    nan = np.isnan(s[:, -1])
    return tuple(np.where(nan, np.nan, o) for o in out)


def _nanmax(a: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
    """``np.nanmax`` without its all-NaN warning (warning filters are not thread-safe)."""
    out = np.max(np.where(np.isnan(a), -np.inf, a), axis=axis)
    return np.where(out == -np.inf, np.nan, out)


def _nanmean(a: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
    """``np.nanmean`` without its all-NaN warning."""
    finite = np.isfinite(a)
    count = finite.sum(axis=axis)
    total = np.where(finite, a, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def select_band(
    scores: BandScores,
    previous: BandChoice | None = None,
    *,
    sk_z_min: float = SK_Z_MIN,
    lines_min_db: float = LINES_MIN_DB,
    hysteresis_db: float = HYSTERESIS_DB,
    tie_db: float = TIE_DB,
) -> BandChoice:
    """The automatic band for this window, one step from ``previous`` (a pure step).

    Per band (the best of its channel rows), by the first criterion any band meets:

    1. ``lines``: the defect-line prominence, where it reaches ``lines_min_db`` (lines
       that stand out so far prove a modulated signal), among the bands that rise above
       their row's floor (all bands when none of those shows lines);
    2. ``impulsive``: among the bands that rise above their row's floor
       (``level_db ≥ gate_db``: a band at the floor is no candidate, however kurtotic;
       quantisation steps and electrical spikes are kurtotic too) with
       ``sk_z ≥ sk_z_min``, the impulsive energy above the floor
       ``level_db + 10·log10(sk)`` (a very kurtotic band with little power loses to a
       less kurtotic band that rings loud);
    3. ``energy``: among the bands above the floor (all bands when none is), ``level_db``:
       where the structure responds most.

    Bands whose envelope is a few steady tones' (:data:`TONAL_SK`: tones beating in the band,
    a line of the machine's harmonics) are left out of the lines when another band shows lines
    *and* is impulsive (``sk_z ≥ sk_z_min / 2``): the tones' beat makes their envelope lines, and the
    band beside them where the impacts ring resolved shows the train. Where no band with lines
    is impulsive the tonal bands stay in (the tones may be the train itself: a fast defect rate
    whose rings overlap). A band full of a gear's many mesh harmonics reads as noise here
    (SK ≈ −1/their number) and is not told apart.

    ``previous`` stays unless the best beats it by ``hysteresis_db`` (one window's scores
    are no more precise than that), so the band does not wander on noise. It keeps its
    criterion down to ``lines_min_db − hysteresis_db`` and ``sk_z_min / 2``, and without
    the floor gate (the gate admits new bands, it does not throw out the one in use when it
    dips by a fraction of a dB). Else, of the bands within ``tie_db`` of the best, the one
    with most signal power above the floor (``excess_db``) is chosen (for ``lines``, of the
    bands whose lines are within ``tie_db`` of the best, whether they reach ``lines_min_db``
    or not).
    """
    gate = scores.level_db >= scores.gate_db[:, None]
    if not gate.any():
        gate = np.isfinite(scores.level_db)
    impulsive_db = scores.level_db + 10.0 * np.log10(np.maximum(scores.sk, 1e-12))
    lines = _nanmax(scores.lines_db, axis=0)
    # significantly impulsive, as significantly as a tonal band is tonal: half the threshold
    # a new band is chosen by (4 standard deviations of noise's estimate), which the band in
    # use keeps its 'impulsive' by
    impulsive = np.any(scores.sk_z >= sk_z_min / 2, axis=0)
    # Steady tones carry the band in every row that reads it: its lines may be their beat.
    # Where another band shows lines and is impulsive (the impacts, resolved), lines are judged
    # among the bands that are not tonal. Where no band is, the tones may be the train itself:
    # a fast defect rate whose rings overlap fills its band with steady lines k × the rate (a
    # 22205's outer race at 5600 r/min ringing 3.5 kHz reads SK −0.56), and nothing changes.
    tonal = np.all((scores.sk <= TONAL_SK) & (scores.sk_z <= TONAL_SK_Z), axis=0)
    if bool(np.any(tonal)) and bool(np.any(~tonal & impulsive & (lines >= lines_min_db))):
        lines = np.where(tonal, np.nan, lines)
        gate = gate & ~tonal
    strong = _nanmax(np.where(scores.sk_z >= sk_z_min, impulsive_db, np.nan), axis=0)
    # Lines are judged where the signal rises above the floor: a band at the floor's edge
    # (a resonance's skirt) shows the same lines as the band that holds the resonance, a
    # window's line prominence is no more precise than TIE_DB, and such a band must not win
    # on one window's luck (a 6309's ball fault ringing at 3.5 kHz demodulated at
    # 4.3–5.3 kHz, docs/diagnosis.md §13). Bands at the floor count only when no band above
    # it shows lines.
    above = gate.any(axis=0)
    lines_where = above if bool(np.any(above & (lines >= lines_min_db))) else np.ones_like(above)
    # What new bands are judged by: each criterion where its threshold is met, above the floor.
    new = (
        _nanmax(np.where(gate, scores.level_db, np.nan), axis=0),
        _nanmax(np.where(gate, strong, np.nan), axis=0),
        np.where(lines_where & (lines >= lines_min_db), lines, np.nan),
    )
    # The band in use: judged without the floor gate (the gate admits new bands, it does not
    # throw out the one in use when it dips by a fraction of a dB), and it keeps the
    # criterion it was chosen by down to a lower threshold (hysteresis on the thresholds too:
    # a line near 12 dB must not flip the band at every choice).
    held = [_nanmax(scores.level_db, axis=0), strong, new[2]]
    kept = previous.criterion if previous is not None else "none"
    kept_tier = CRITERIA.index(kept) if kept in CRITERIA else -1
    if kept_tier == 1:
        held[1] = _nanmax(np.where(scores.sk_z >= sk_z_min / 2, impulsive_db, np.nan), axis=0)
    elif kept_tier == 2:
        held[2] = np.where(lines >= lines_min_db - hysteresis_db, lines, np.nan)
    i = -1
    if previous is not None and previous.band in scores.bands:
        i = scores.bands.index(previous.band)
    for tier in (2, 1, 0):
        if np.isfinite(new[tier]).any() or (i >= 0 and bool(np.isfinite(held[tier][i]))):
            break
    else:  # nothing to judge by (an invalid window): stay
        return previous if previous is not None else BandChoice(scores.bands[0], "none", -np.inf)
    score = new[tier]
    top = np.max(score, initial=-np.inf, where=np.isfinite(score))
    if i >= 0 and held[tier][i] >= top - hysteresis_db:
        return BandChoice(
            previous.band if previous else scores.bands[i],
            CRITERIA[tier],
            float(held[tier][i]),
            scores.level_db,
        )
    as_good = np.isfinite(score) & (score >= top - tie_db)
    if tier == 2:
        # A band's lines are as good as the best's within TIE_DB, whether or not they reach
        # LINES_MIN_DB themselves on this window (the threshold says that lines are there;
        # which of the bands holding them is best is the tie's to say).
        as_good = lines_where & np.isfinite(lines) & (lines >= top - tie_db)
    excess = _nanmax(scores.excess_db, axis=0)
    best = int(np.argmax(np.where(as_good & np.isfinite(excess), excess, -np.inf)))
    judged = lines if tier == 2 else score
    if not as_good[best]:  # no excess power anywhere (a flat spectrum): the best score
        best = int(np.argmax(np.where(as_good, judged, -np.inf)))
    return BandChoice(scores.bands[best], CRITERIA[tier], float(judged[best]), scores.level_db)


# --------------------------------------------------------------------------- when to choose again
#
# The resonance that carries a bearing's impacts is a property of the machine and its mounting:
# it does not move from window to window, so the band is a segment's decision, not a window's.
# A stream chooses it on a segment's first window and confirms it after 64 windows, then after
# 128, 256, 512 and 1024 more while each confirmation keeps the band, and every 1024 windows
# from then on; a choice that moves the band starts the doubling again at 64. Between choices
# the band in force is looked at on one window in every 128, for the price of one band's
# transforms (:func:`band_holds`): when the spectrum or the band's evidence has changed as
# much as a choice's hysteresis, the next choice comes 64 windows after the last one (at
# once if that is past). A stream thus never chooses more often than every 64 windows — the rate every choice
# was made at before, and the most the new policy can cost — and answers a change it sees as
# fast as that rate did.

#: Windows from a segment's first choice (or one that moved the band) to its confirmation.
BAND_FIRST_WINDOWS = 64
#: The longest interval between two choices, windows (5.5 min at 25.6 kHz, 16384 samples,
#: 50 % overlap): a change that none of the watched figures shows is found within it.
BAND_MAX_WINDOWS = 1024
#: Windows between two looks at the band in force (:func:`band_holds`): a look costs half a
#: batched FFT of 8 windows, a choice 3.5 (25.6 kHz, 3 × 16384 samples).
BAND_LOOK_WINDOWS = 128


def band_holds(
    scores: BandScores,
    choice: BandChoice,
    *,
    hysteresis_db: float = HYSTERESIS_DB,
    sk_z_min: float = SK_Z_MIN,
    lines_min_db: float = LINES_MIN_DB,
) -> bool:
    """Whether the band in force still stands as it was chosen, judged on a later window's
    ``scores`` (every band's level; the spectral kurtosis and lines of ``choice.band`` at
    least: :class:`BandScorer` with ``only``). A pure function.

    False — choose again — when:

    * the spectrum's shape changed: a candidate's level over the floor (any row) moved by
      the hysteresis a better band must show (``hysteresis_db``; one window's scores are no
      more precise than that) from where it stood at the choice (``choice.level_db``; the
      levels wander by under 3 dB over whole steady recordings, CWRU and simulated);
    * the band lost the criterion it was chosen by, as :func:`select_band` holds it: its
      lines under ``lines_min_db − hysteresis_db``, its spectral kurtosis under
      ``sk_z_min / 2`` (not its score against the choice's: the band won on its best
      window among many, and reads a few dB lower on the next ones);
    * the band now meets a stronger criterion than it was chosen by: its defect lines reach
      ``lines_min_db``, or (chosen by energy) it rises above the floor with significant
      spectral kurtosis — a fault may have started, and another band may show it better.
    """
    if choice.criterion not in CRITERIA or choice.band not in scores.bands:
        return False  # chosen on a window with nothing to judge by
    i = scores.bands.index(choice.band)
    if choice.level_db is not None and choice.level_db.shape == scores.level_db.shape:
        with np.errstate(invalid="ignore"):
            moved = np.abs(scores.level_db - choice.level_db)
        if np.any(moved >= hysteresis_db):  # NaN (a silent band) compares False
            return False
    lines = _nanmax(scores.lines_db[:, i], axis=0)
    sk_z = scores.sk_z[:, i]
    if choice.criterion == "lines":
        return bool(lines >= lines_min_db - hysteresis_db)
    if lines >= lines_min_db:
        return False
    if choice.criterion == "impulsive":
        return bool(np.any(sk_z >= sk_z_min / 2))
    return not bool(np.any((scores.level_db[:, i] >= scores.gate_db) & (sk_z >= sk_z_min)))


@dataclass(frozen=True, slots=True)
class BandSchedule:
    """When a stream chooses its automatic band again: a pure step with explicit state.

    Attributes
    ----------
    choice : the band in force and why (None: nothing chosen yet)
    age : windows demodulated since the last choice (that choice's own included)
    interval : the age at which the band is chosen again
    confirmed : choices in a row that kept the band since a segment's first
    looked : the age at the last look at the band (:func:`band_holds`)
    """

    choice: BandChoice | None = None
    age: int = 0
    interval: int = 0
    confirmed: int = 0
    looked: int = 0

    @property
    def due(self) -> bool:
        """Choose on the next window (else demodulate ``choice.band``)."""
        return self.choice is None or self.age >= self.interval

    @property
    def look_due(self) -> bool:
        """Look at the band in force now (:meth:`looked_at`): only while the next choice is
        further than a first interval away."""
        return (
            self.choice is not None
            and self.interval - self.age > BAND_FIRST_WINDOWS
            and self.age - self.looked >= BAND_LOOK_WINDOWS
        )

    def chose(self, choice: BandChoice | None, windows: int) -> BandSchedule:
        """After a pass of ``windows`` windows that chose ``choice``: the band is confirmed
        when it stays (the next choice twice as far, up to :data:`BAND_MAX_WINDOWS`), else
        confirmed again after :data:`BAND_FIRST_WINDOWS`."""
        kept = (
            self.choice is not None
            and choice is not None
            and choice.band == self.choice.band
            and choice.criterion in CRITERIA  # not a window with nothing to judge by
            and self.interval > 0  # not a segment's first choice
        )
        confirmed = self.confirmed + 1 if kept else 0
        interval = min(BAND_FIRST_WINDOWS << confirmed, BAND_MAX_WINDOWS)
        return BandSchedule(choice, windows, interval, confirmed, 0)

    def aged(self, windows: int) -> BandSchedule:
        """After a pass of ``windows`` windows in the band in force."""
        # (constructed, not dataclasses.replace: a stream ages its schedule every pass, and
        # replace() cost more than the rest of the schedule's bookkeeping)
        return BandSchedule(
            self.choice, self.age + windows, self.interval, self.confirmed, self.looked
        )

    def looked_at(self, holds: bool) -> BandSchedule:
        """After a look: when the band no longer holds, the next choice comes
        :data:`BAND_FIRST_WINDOWS` after the last one (at once if that is past)."""
        if holds:
            return replace(self, looked=self.age)
        return replace(self, looked=self.age, interval=BAND_FIRST_WINDOWS, confirmed=0)

    def new_segment(self) -> BandSchedule:
        """A new segment (a gap, a restart): choose on its first window, the choice in force
        kept as the hysteresis' reference."""
        return BandSchedule(self.choice)
