"""Sensor health, per window and per channel: is this signal a measurement at all?

A healthy accelerometer on a sick machine still gives a *measurement*: large
tones, sharp impacts, a rising noise floor. A sick sensor or acquisition chain
gives something no machine produces. :func:`check_window` looks for five such
signatures in a window of ``(n_channels, n)`` samples in g:

=============  =============================================================
``flatline``   peak-to-peak below ``flatline_p2p_g``, or one value repeated
               for longer than ``flatline_run_s`` (stuck ADC, frozen driver)
``clipping``   more than ``clip_share`` of the samples at or beyond
               ``clip_level`` × the channel's full scale (only when it is known)
``dropout``    exact zeros for longer than ``dropout_run_s`` (disconnected
               IEPE sensor, a DAQ gap filled with zeros)
``nan``        more than ``nan_share`` of the samples NaN, ±inf or beyond
               :data:`~pdm.dsp.windows.MAX_ABS_G` (unreadable, or not a measurement)
``dc_bias``    ``|mean|`` above ``dc_bias_g`` (failing sensor, wrong scaling)
=============  =============================================================

The limits are :class:`HealthLimits`; the docstring there says why each
default is what it is. The alarm state machine
(:func:`pdm.alarms.state.step`) debounces the per-window verdicts per sensor;
:func:`by_sensor` folds channels into the per-sensor mappings that
:func:`pdm.alarms.state.window_result` takes. Nothing here raises alarms or
drives relays.

Cost
----
This runs on every window of every sensor. A healthy window costs two
vectorised reductions per channel (min and max) and a look at one sample in
every ``s`` (``s`` = half the shortest run limit, 256 samples at 25.6 kHz);
only a channel the screen cannot clear — non-finite, nearly flat, a peak
near full scale or above the DC limit, or two samples ``s`` apart equal —
gets the statistic that decides (clipped count, sum, run lengths), and only a
faulty one gets the numbers for its detail. The screen is exact, not a
heuristic: ``|mean| ≤ max|x|``, and a run of at least ``2·s`` equal samples
always holds two equal samples ``s`` apart whose whole block is constant.

Measured on the demo pipeline's windows (2 channels × 8192 float32 samples),
best of repeated runs on one core: about 6–9 µs per window, 12–18 % of one
``scipy.fft.rfft`` of the same window (≈ 50 µs) and 4–6 % of the feature
extraction (``FeatureExtractor.extract_batch``); about 7–10 % of the rfft for
16384-sample windows. Half of it is numpy's fixed cost per call (≈ 0.5–1 µs
each), the rest the two passes over the data (min and max: ≈ 6 % of the rfft
alone), the floor of any check that must see every sample (a NaN, a clipped
sample).

>>> import numpy as np
>>> x = np.zeros((2, 2560), dtype=np.float32)
>>> x[0] = 0.1 * np.sin(2 * np.pi * 50 * np.arange(2560) / 25600)
>>> [h.faults for h in check_window(x, 25600.0, [16.0, None])]
[(), ('flatline', 'dropout')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.dsp.windows import MAX_ABS_G

__all__ = [
    "FAULTS",
    "STANDARD_G",
    "ChannelHealth",
    "Fault",
    "HealthLimits",
    "by_sensor",
    "check_window",
    "check_windows",
    "full_scale_g",
]

Fault = Literal["flatline", "clipping", "dropout", "nan", "dc_bias"]
#: Every fault name, in the order :attr:`ChannelHealth.faults` lists them.
FAULTS: tuple[Fault, ...] = ("flatline", "clipping", "dropout", "nan", "dc_bias")

#: Standard gravity, m/s² per g (the windower's conversion).
STANDARD_G = 9.80665


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """Where a signal stops being a measurement. Every limit is overridable.

    Attributes
    ----------
    flatline_p2p_g : float
        A window whose peak-to-peak is below this, g, is a flatline. Default
        1e-4 g: a live IEPE accelerometer's own broadband noise (typically
        0.05–0.5 mg rms) gives a peak-to-peak of about 0.4 mg or more over a
        few thousand samples even on a stopped machine, while a dead channel
        behind a 24-bit ADC shows only µg of converter noise.
    flatline_run_s : float
        One value repeated for longer than this, s, is a flatline (a stuck
        ADC or a driver re-sending its last sample). Default 0.05 s: a live
        signal sampled at a sane resolution changes within a few samples;
        50 ms is more than a shaft revolution above 1200 r/min, and a few
        hundred samples at any vibration sample rate.
    clip_level : float
        A sample with ``|x| ≥ clip_level × full scale`` counts as clipped, no
        unit. Default 0.98: sensors and ADC front ends saturate softly and
        full-scale figures are nominal, so the rail is "within 2 %" of it.
    clip_share : float
        Clipping when more than this fraction of the samples is clipped, no
        unit. Default 0.001 (8 samples of 8192): a few samples on the rail
        already put spurious harmonics and a false noise floor in the
        spectrum, yet one stray sample near full scale does not.
    dropout_run_s : float
        Exact zeros for longer than this, s, are a dropout. Default 0.02 s:
        exact zero is one ADC code, which a live signal only crosses; hundreds
        of consecutive zeros are a disconnected sensor (some front ends
        output 0 on an open circuit) or a DAQ gap padded with zeros. Shorter
        than ``flatline_run_s`` because zeros are the more specific sign.
    nan_share : float
        Fault when more than this fraction of the samples is NaN or ±inf, no
        unit. Default 0: a single unreadable sample makes the window's
        spectrum and features meaningless.
    dc_bias_g : float
        Fault when ``|mean|`` is above this, g. Default 2 g: IEPE sensors are
        AC-coupled (mean ≈ 0), and a DC-responding MEMS sensor reads at most
        1 g of gravity, so a mean above 2 g means a failing sensor or a wrong
        unit or scale (an m/s² channel declared as g reads 9.8 "g" of
        gravity). No real vibration has a mean: unbalance or bearing impacts
        average out over a window.
    """

    flatline_p2p_g: float = 1e-4
    flatline_run_s: float = 0.05
    clip_level: float = 0.98
    clip_share: float = 0.001
    dropout_run_s: float = 0.02
    nan_share: float = 0.0
    dc_bias_g: float = 2.0

    def __post_init__(self) -> None:
        for name in ("flatline_p2p_g", "flatline_run_s", "dropout_run_s", "dc_bias_g"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        if not (isinstance(self.clip_level, int | float) and 0 < self.clip_level <= 1):
            raise ValueError(f"clip_level={self.clip_level!r} must be in (0, 1]")
        for name in ("clip_share", "nan_share"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ValueError(f"{name}={value!r} must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    """One channel's verdict on one window.

    Attributes
    ----------
    ok : True when no fault was found
    faults : the faults found, in :data:`FAULTS` order (empty when ok)
    detail : one line with the numbers, e.g. ``"clipping: 2.3 % of samples at
        ±16 g (|x| ≥ 15.68 g)"``; several faults are joined by ``"; "``.
        ``"ok"`` for a healthy channel.
    """

    ok: bool
    faults: tuple[Fault, ...] = ()
    detail: str = "ok"


_OK = ChannelHealth(True)


def full_scale_g(pipeline: Pipeline) -> list[float | None]:
    """Each channel's full scale in g, in ``pipeline.columns`` order; None where unknown.

    Windows are in g whatever the channel's unit, so an m/s² full scale is
    divided by :data:`STANDARD_G` (a ±156.9 m/s² sensor is a ±16 g one).
    """
    out: list[float | None] = []
    for column in pipeline.columns:
        _sensor, ch = pipeline.channel(column)
        if ch.full_scale is None:
            out.append(None)
        else:
            out.append(ch.full_scale if ch.unit == "g" else ch.full_scale / STANDARD_G)
    return out


def check_window(
    data: npt.ArrayLike,
    fs: float,
    full_scale_g: Sequence[float | None],
    limits: HealthLimits | None = None,
) -> list[ChannelHealth]:
    """The health of each channel of one window.

    Parameters
    ----------
    data : (n_channels, n) float32 or float64
        Acceleration in g, as :attr:`pdm.dsp.windows.Window.data`; NaN marks
        unreadable samples.
    fs : float
        Sample rate, Hz (turns the run limits from seconds into samples).
    full_scale_g : sequence of float or None, length n_channels
        Each channel's full scale in g (see :func:`full_scale_g`); None where
        unknown, and then clipping is not judged for that channel.
    limits : HealthLimits, optional
        Default ``HealthLimits()``.

    Returns
    -------
    list of ChannelHealth
        One per channel, in order.

    Notes
    -----
    A window shorter than a run limit cannot hold a run that long; a run
    that fills the whole window is then judged a fault (a short window of
    zeros is a dropout), anything shorter is not.
    """
    x = _as_float(data, 2, "(n_channels, n)")
    return _check(x, fs, _plan(full_scale_g, x.shape, fs, limits))


def check_windows(
    data: npt.ArrayLike,
    fs: float,
    full_scale_g: Sequence[float | None],
    limits: HealthLimits | None = None,
    *,
    stats: npt.NDArray[np.floating] | None = None,
) -> list[list[ChannelHealth]]:
    """:func:`check_window` over a batch: ``(n_windows, n_channels, n)`` in one pass.

    Same verdicts as calling :func:`check_window` on each window; cheaper per
    window because the reductions run once over the whole batch. ``stats``
    (``(n_windows · n_channels, 3)``: each row's min, max and sum, as the feature
    extraction computed them over the same samples) saves the three passes that find them.

    Returns
    -------
    list of list of ChannelHealth
        ``out[w][c]`` for window ``w``, channel ``c``.
    """
    x = _as_float(data, 3, "(n_windows, n_channels, n)")
    n_windows, n_channels, n = x.shape
    plan = _plan(full_scale_g, x.shape, fs, limits)
    if stats is not None and np.shape(stats) != (n_windows * n_channels, 3):
        raise ValueError(f"stats shape {np.shape(stats)} != ({n_windows * n_channels}, 3)")
    flat = _check(x.reshape(n_windows * n_channels, n), fs, plan, stats)
    return [flat[w * n_channels : (w + 1) * n_channels] for w in range(n_windows)]


# --------------------------------------------------------------------------- the checks

_DEFAULT = HealthLimits()


def _as_float(data: npt.ArrayLike, ndim: int, layout: str) -> npt.NDArray[np.floating]:
    # Row reductions over a transposed (Fortran-ordered) array are ~20× slower than a copy.
    x = np.ascontiguousarray(data)
    if x.ndim != ndim:
        raise ValueError(f"data shape {x.shape} must be {layout}")
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if x.shape[-1] < 1:
        raise ValueError(f"data shape {x.shape}: a window needs at least one sample")
    return x


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a window shape, rate, full scales and limits fix, worked out once."""

    limits: HealthLimits
    levels: tuple[tuple[float, float], ...]  # per row: (full scale g, clip level g)
    run_flat: int  # shortest faulty run of one value, samples
    run_zero: int  # shortest faulty run of zeros, samples
    step: int  # subsampling step of the run screen, samples


_PLANS: dict[tuple[object, ...], _Plan] = {}


def _plan(
    full_scale_g: Sequence[float | None],
    shape: tuple[int, ...],
    fs: float,
    limits: HealthLimits | None,
) -> _Plan:
    """The plan for windows of ``shape`` (..., n_channels, n); the same few come back every window."""
    lim = limits or _DEFAULT
    # By value: a service's machines have limits of their own but mostly equal, and a
    # cache keyed by identity (and cleared at 64 entries) missed on every window with
    # more than 64 machines a process.
    key = (tuple(full_scale_g), shape, fs, lim)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(key[0], shape, fs, lim)
        if len(_PLANS) >= 1024:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _make_plan(
    full_scale_g: tuple[float | None, ...], shape: tuple[int, ...], fs: float, lim: HealthLimits
) -> _Plan:
    *lead, n_channels, n = shape
    if len(full_scale_g) != n_channels:
        raise ValueError(f"full_scale_g has {len(full_scale_g)} entries for {n_channels} channels")
    if not (isinstance(fs, int | float) and math.isfinite(fs) and fs > 0):
        raise ValueError(f"{fs=} must be > 0")
    levels = []
    for i, f in enumerate(full_scale_g):
        if f is None:
            levels.append((math.nan, math.inf))
        elif not (math.isfinite(f) and f > 0):
            raise ValueError(f"full_scale_g[{i}]={f!r} must be > 0 or None")
        else:
            levels.append((float(f), lim.clip_level * float(f)))
    # Shortest run (samples) that is a fault: "longer than the limit", or the whole window.
    run_flat = min(math.floor(lim.flatline_run_s * fs) + 1, n)
    run_zero = min(math.floor(lim.dropout_run_s * fs) + 1, n)
    # Any run of >= 2s equal samples holds a whole block [j·s, (j+1)·s], so two
    # equal samples s apart (s >= 1, 2s <= the shortest faulty run).
    step = max(1, min(run_flat, run_zero) // 2)
    return _Plan(lim, tuple(levels) * math.prod(lead), run_flat, run_zero, step)


def _check(
    x: npt.NDArray[np.floating],
    fs: float,
    plan: _Plan,
    stats: npt.NDArray[np.floating] | None = None,
) -> list[ChannelHealth]:
    """The checks over rows ``x`` (m, n); ``plan.levels[r]`` belongs to row r; ``stats``
    (m, 3): the rows' min, max and sum when already known.

    Screens every row with its min and max and a subsample; a row the screen
    cannot clear gets the one statistic that decides, and a row with a fault
    gets :func:`_exact` for the numbers of its detail.
    """
    m, n = x.shape
    lim, levels, run_flat, run_zero, s = (
        plan.limits,
        plan.levels,
        plan.run_flat,
        plan.run_zero,
        plan.step,
    )
    if stats is None:
        mn = np.minimum.reduce(x, axis=1).tolist()
        mx = np.maximum.reduce(x, axis=1).tolist()
    else:
        mn, mx = stats[:, 0].tolist(), stats[:, 1].tolist()
    p2p_limit, dc = lim.flatline_p2p_g, lim.dc_bias_g
    suspect: set[int] = set()
    big: list[tuple[int, float]] = []  # (row, peak) where the peak allows |mean| > dc_bias_g
    for r, (lo, hi) in enumerate(zip(mn, mx, strict=True)):
        p2p = hi - lo  # NaN if the row holds a NaN (min/max propagate it), inf for ±inf
        if not (p2p_limit <= p2p < math.inf and p2p > 0):
            suspect.add(r)
            continue
        peak = hi if hi > -lo else -lo
        if peak > MAX_ABS_G:  # not a measurement (the extractor marks the window invalid)
            suspect.add(r)
            continue
        clip = levels[r][1]
        if peak >= clip and np.count_nonzero(np.abs(x[r]) >= clip) > lim.clip_share * n:
            suspect.add(r)
        elif peak > dc:
            big.append((r, peak))
    if big:
        # |mean| <= peak, so only these rows need their sum: one pass for all rows
        # (einsum is ~3× faster than sum for float32 rows). Its rounding error is at
        # most n·eps·Σ|x| <= n·eps·n·peak whatever the order of summation, so with
        # that margin no bias is missed; _exact then decides in float64.
        sums = (np.einsum("ij->i", x) if stats is None else stats[:, 2]).tolist()
        eps = n * float(np.finfo(np.float32).eps)
        suspect.update(r for r, peak in big if abs(sums[r]) > n * (dc - eps * peak))
    # The run screen (see _make_plan). Rows already suspect need no screen; a
    # constant row has p2p 0 and is one of them.
    if n > s and len(suspect) < m:
        pairs = x[:, s::s] == x[:, : n - s : s]  # sample j·s+s against sample j·s
        if np.count_nonzero(pairs):
            half, k = s // 2, pairs.shape[1]
            for i in np.flatnonzero(pairs).tolist():
                r, j = divmod(i, k)
                if r in suspect:
                    continue
                a = j * s
                row = x[r]
                # The midpoint first: it rules out almost every chance equality for free.
                if row[a + half] == row[a]:
                    block = row[a : a + s + 1]
                    if block.min() == block.max():
                        suspect.add(r)
    if not suspect:
        return [_OK] * m
    return [
        _exact(x[r], fs, levels[r], lim, run_flat, run_zero) if r in suspect else _OK
        for r in range(m)
    ]


def _longest_run(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """(length, start) of the longest run of True in ``mask``; (0, 0) when none."""
    if not mask.any():
        return 0, 0
    edges = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    i = int(lengths.argmax())
    return int(lengths[i]), int(starts[i])


def _pct(share: float) -> str:
    pct = 100.0 * share
    return f"{pct:.0f}" if pct >= 10 else f"{pct:.1f}" if pct >= 1 else f"{pct:.2g}"


def _exact(
    row: npt.NDArray[np.floating],
    fs: float,
    level: tuple[float, float],
    lim: HealthLimits,
    run_flat: int,
    run_zero: int,
) -> ChannelHealth:
    """Every statistic of one suspicious row, and the verdict with its numbers."""
    n = row.shape[0]
    faults: list[Fault] = []
    details: list[str] = []
    finite = np.abs(row) <= MAX_ABS_G  # False for NaN and ±inf too
    n_finite = int(np.count_nonzero(finite))
    bad = n - n_finite
    values = row if bad == 0 else row[finite]

    # Runs are counted on the raw row: a NaN equals nothing, so it ends a run.
    same, same_at = _longest_run(row[1:] == row[:-1])
    same = same + 1 if same else int(n_finite > 0)
    zeros, _ = _longest_run(row == 0)
    if n_finite:
        p2p = float(values.max()) - float(values.min())
        low_p2p, stuck = p2p < lim.flatline_p2p_g, same >= run_flat
        if low_p2p or stuck:
            faults.append("flatline")
            parts = [f"peak-to-peak {p2p:.3g} g"] if low_p2p else []
            if stuck:
                parts.append(
                    f"{float(row[same_at]):+.4g} g held for {same} samples ({same / fs:.3g} s)"
                )
            details.append("flatline: " + ", ".join(parts))
        full_scale, clip = level
        if math.isfinite(clip):
            clipped = int(np.count_nonzero(np.abs(values) >= clip))
            share = clipped / n_finite
            if share > lim.clip_share:
                faults.append("clipping")
                details.append(
                    f"clipping: {_pct(share)} % of samples at ±{full_scale:g} g (|x| ≥ {clip:.4g} g)"
                )
        if zeros >= run_zero:
            faults.append("dropout")
            details.append(f"dropout: {zeros} zero samples in a row ({zeros / fs:.3g} s)")
    if bad / n > lim.nan_share:
        faults.append("nan")
        absurd = bad - (n - int(np.count_nonzero(np.isfinite(row))))
        what = [f"{bad - absurd} of {n} samples not finite"] if bad > absurd else []
        if absurd:
            what.append(f"{absurd} of {n} beyond ±{MAX_ABS_G:g} g (not a measurement)")
        details.append(f"nan: {', '.join(what)} ({_pct(bad / n)} %)")
    if n_finite:
        mean = float(values.mean(dtype=np.float64))
        if abs(mean) > lim.dc_bias_g:
            faults.append("dc_bias")
            details.append(f"dc_bias: mean {mean:+.3g} g (limit ±{lim.dc_bias_g:g} g)")
    if not faults:
        return _OK
    return ChannelHealth(False, tuple(faults), "; ".join(details))


# --------------------------------------------------------------------------- per sensor


def by_sensor(
    health: Sequence[ChannelHealth], columns: Sequence[str], sensor_of: Mapping[str, str]
) -> tuple[dict[str, tuple[Fault, ...]], dict[str, str]]:
    """Fold one window's channel verdicts into per-sensor ones.

    Returns ``(health, health_detail)`` as :func:`pdm.alarms.state.window_result`
    takes them: a sensor's faults are the union over its channels (in
    :data:`FAULTS` order); its detail names the faulty channels,
    ``"x_g: flatline: …; y_g: …"``. Sensors with no faulty channel are left out.
    """
    if len(health) != len(columns):
        raise ValueError(f"{len(health)} channel verdicts for {len(columns)} columns")
    faults: dict[str, set[Fault]] = {}
    details: dict[str, list[str]] = {}
    for h, column in zip(health, columns, strict=True):
        if h.ok:
            continue
        sensor = sensor_of[column]
        faults.setdefault(sensor, set()).update(h.faults)
        details.setdefault(sensor, []).append(f"{column}: {h.detail}")
    return (
        {s: tuple(f for f in FAULTS if f in fs) for s, fs in faults.items()},
        {s: "; ".join(d) for s, d in details.items()},
    )
