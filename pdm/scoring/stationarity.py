"""Is a stretch of "healthy" windows stationary? Trends and steps a teach-in must not learn.

A teach-in (:mod:`pdm.scoring.teachin`) learns whatever it is shown. A fault that starts
while it learns would become part of "healthy", so before it trains, the collected
windows are tested here. The test looks at each model feature, in the model's own
units: the logarithm for amplitudes and shape factors (a fault multiplies them), the
value for the rest.

Method
------
The windows, in time order, are cut into ``K`` segments of equal count (4 ≤ K ≤ 12, at
least :data:`MIN_SEGMENT` windows each); each segment is summarised by its median.

* **Spread** ``s``: the robust standard deviation (1.4826 × the median absolute
  deviation) of the windows around their own segment's median, pooled. Measured
  *within* segments, so a trend or a step does not inflate it.
* **Step**: for each boundary between segments, the median of the segment medians after
  it minus that before it; the boundary where this is largest is the change point.
* **Trend**: the Theil–Sen slope of the segment medians against time, times the
  collection's span: the total change (at most the range of the segment medians).

A feature *departs* when its step or its trend exceeds all of

* :data:`K_SPREAD` (3) × its spread: a change the model would see, as the detector
  measures departures in robust standard deviations;
* for a logged feature, :data:`MIN_CHANGE` (25 %): ISO 10816-1/-3 call a change in
  vibration magnitude of 25 % significant, whatever the zone; below it a stable
  machine's slow drift (temperature, a load that breathes) would stop every teach-in;
* :data:`Z_NOISE` (5) × the standard error of the difference of two medians on the
  windows at hand (overlapping windows count once per ``window / hop``), so a short
  collection cannot fake a change by chance.

The verdict names the feature that departs most (relative to its threshold) and the
change point. It is a **step** when neither side of the change point moves by more than
half the threshold on its own (the machine changed, then settled), else a **trend**
(still changing). Its **direction** is ``up`` when that feature is higher after the
change (or when it counts both ways): the direction of damage.

The thresholds are physical (25 %) and statistical (3 robust sd, 5 standard errors),
not fitted to any recording; tests/scoring/test_teachin.py checks them on the simulator over
speeds, noise levels and seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm.scoring.vector import direction, log_floor

__all__ = [
    "K_SPREAD",
    "MIN_CHANGE",
    "MIN_SEGMENT",
    "Z_NOISE",
    "Departure",
    "find_departure",
    "stationary_prefix",
]

#: A departure must exceed this many robust standard deviations of the within-segment spread.
K_SPREAD = 3.0
#: …and, for logged features, this relative change (ISO 10816: 25 % is significant).
MIN_CHANGE = math.log(1.25)
#: …and this many standard errors of the estimate (short collections).
Z_NOISE = 6.0
#: Fewest windows per segment; with fewer than 3 segments' worth nothing is judged.
MIN_SEGMENT = 6
_MAX_SEGMENTS = 12
_MIN_SEGMENTS = 3
_MAD_TO_SD = 1.4826
# Standard error of a median of m independent normal values: 1.2533 s / √m.
_MEDIAN_SE = 1.2533


@dataclass(frozen=True)
class Departure:
    """A change in the collected windows that a teach-in must not learn.

    Attributes
    ----------
    kind : ``"step"`` (changed, then settled) or ``"trend"`` (still changing)
    feature : the feature that departs most (qualified name)
    direction : ``"up"`` (higher after the change, or a both-ways feature) or ``"down"``
    change : the feature's change, in log units for logged features (``factor`` is
        ``exp(change)``), else in its own unit
    threshold, spread : what ``change`` was judged against, same units
    t_change : time of the change point, POSIX s (the first window after it)
    index : position of the first window after the change point in the arrays given
    features : every feature that departs, most first
    span_s : time covered by the windows judged, s
    """

    kind: str
    feature: str
    direction: str
    change: float
    threshold: float
    spread: float
    logged: bool
    t_change: float
    index: int
    features: tuple[str, ...]
    span_s: float

    @property
    def factor(self) -> float | None:
        """``exp(change)`` for a logged feature (2.0: doubled), else None."""
        return math.exp(self.change) if self.logged else None

    def reason(self) -> str:
        """One line for the log, the event and the score row."""
        if self.logged:
            f = math.exp(self.change)
            how = f"×{f:.2f}" if f >= 1 else f"×{f:.2f} ({(1 - f) * 100:.0f} % down)"
            limit = f"×{math.exp(self.threshold):.2f}"
        else:
            how, limit = f"{self.change:+.3g}", f"±{self.threshold:.3g}"
        what = "stepped" if self.kind == "step" else "trends"
        others = len(self.features) - 1
        more = f" (and {others} more feature{'s' if others != 1 else ''})" if others else ""
        hint = (
            "a fault may be developing, or the load rose"
            if self.direction == "up"
            else "the machine settled or the load fell"
        )
        return (
            f"{self.feature} {what} {self.direction} {how}{more} around "
            f"{_iso(self.t_change)} within {self.span_s:.0f} s of healthy windows "
            f"(threshold {limit}): {hint}"
        )


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _theil_sen(t: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Theil–Sen slopes (d,) of the columns of ``y`` (k, d) against ``t`` (k,)."""
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    ok = dt > 0
    if not ok.any():
        return np.zeros(y.shape[1])
    return np.asarray(np.median((y[j[ok]] - y[i[ok]]) / dt[ok, None], axis=0), dtype=np.float64)


def find_departure(
    x: npt.ArrayLike,
    t: npt.ArrayLike,
    names: Sequence[str],
    *,
    windows_per_sample: float = 1.0,
) -> Departure | None:
    """The most significant trend or step in healthy windows, or None when they are stationary.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Raw feature values of n windows in time order (finite).
    t : array_like, shape (n,)
        Their start times, POSIX s, increasing.
    names : d qualified feature names (they decide the log and the direction)
    windows_per_sample : float
        ``window / hop``: how many consecutive windows share a sample (their estimates
        are not independent).

    Returns
    -------
    Departure or None
        None also when there are fewer than 3 segments' worth of windows
        (``3 × MIN_SEGMENT``): too few to judge.
    """
    xx = np.asarray(x, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)
    n, d = xx.shape if xx.ndim == 2 else (0, 0)
    if n != len(tt) or d != len(names):
        raise ValueError(f"x {xx.shape}, t {tt.shape} and {len(names)} names do not match")
    k = min(_MAX_SEGMENTS, n // MIN_SEGMENT)
    if k < _MIN_SEGMENTS or not np.isfinite(xx).all():
        return None
    floors = [log_floor(nm) for nm in names]
    logged = np.array([f is not None for f in floors])
    y = np.where(logged, np.log(np.maximum(xx, [f or 1.0 for f in floors])), xx)
    parts = np.array_split(np.arange(n), k)
    med = np.stack([np.median(y[p], axis=0) for p in parts])  # (k, d)
    t_seg = np.array([float(np.median(tt[p])) for p in parts])
    dev = np.concatenate([np.abs(y[p] - med[i]) for i, p in enumerate(parts)])
    spread = np.maximum(_MAD_TO_SD * np.median(dev, axis=0), 1e-9)
    eff = max(1.0, float(windows_per_sample))
    span = float(tt[-1] - tt[0])
    floor_change = np.where(logged, MIN_CHANGE, 0.0)

    # Step: for each feature, the boundary where the medians before and after differ most
    # relative to the threshold (which depends on how many windows each side has).
    step = np.zeros(d)
    thr_step = np.full(d, np.inf)
    for j in range(1, k):
        n_before, n_after = sum(len(p) for p in parts[:j]), sum(len(p) for p in parts[j:])
        se = _MEDIAN_SE * spread * math.sqrt(eff / n_before + eff / n_after)
        thr = np.maximum.reduce([K_SPREAD * spread, floor_change, Z_NOISE * se])
        diff = np.median(med[j:], axis=0) - np.median(med[:j], axis=0)
        better = np.abs(diff) / thr > np.abs(step) / thr_step
        step = np.where(better, diff, step)
        thr_step = np.where(better, thr, thr_step)
    # Trend: Theil–Sen over the segment medians, as a total change over the span.
    # Never more than the segment medians' own range: Theil–Sen through a step overshoots it
    # (by a quarter for a step in the middle), which would make a 20 % step a "25 % trend".
    trend = _theil_sen(t_seg, med) * span
    trend = np.sign(trend) * np.minimum(np.abs(trend), np.ptp(med, axis=0))
    # A line's total change is 1.5 × the difference of its first and last thirds' medians.
    se_trend = 1.5 * _MEDIAN_SE * spread * math.sqrt(6.0 * eff / n)
    thr_trend = np.maximum.reduce([K_SPREAD * spread, floor_change, Z_NOISE * se_trend])
    ratio = np.maximum(np.abs(step) / thr_step, np.abs(trend) / thr_trend)
    flagged = np.flatnonzero(ratio > 1.0)
    if flagged.size == 0:
        return None
    order = flagged[np.argsort(-ratio[flagged], kind="stable")]
    f = int(order[0])
    m = med[:, f]
    # Where it changed: the least-squares split of the feature's segment medians (the
    # boundary that best separates two levels; for a ramp, within it).
    b = max(
        range(1, k),
        key=lambda j: j * (k - j) / k * (float(np.mean(m[:j])) - float(np.mean(m[j:]))) ** 2,
    )
    use_step = abs(step[f]) / thr_step[f] >= abs(trend[f]) / thr_trend[f]
    thr = float(thr_step[f] if use_step else thr_trend[f])
    # A step settles: neither side moves by half the threshold on its own.
    settled = True
    for side, ts in ((med[:b, [f]], t_seg[:b]), (med[b:, [f]], t_seg[b:])):
        if len(ts) >= 3:
            inner = float(_theil_sen(ts, side)[0] * (ts[-1] - ts[0]))
            settled = settled and abs(inner) < 0.5 * thr
    change = float(step[f] if use_step else trend[f])  # what exceeded its threshold
    up = direction(names[f]) == "both" or change > 0
    first_after = int(parts[b][0])
    return Departure(
        kind="step" if settled else "trend",
        feature=names[f],
        direction="up" if up else "down",
        change=change,
        threshold=thr,
        spread=float(spread[f]),
        logged=bool(logged[f]),
        t_change=float(tt[first_after]),
        index=first_after,
        features=tuple(names[i] for i in order),
        span_s=span,
    )


def stationary_prefix(
    x: npt.ArrayLike,
    t: npt.ArrayLike,
    names: Sequence[str],
    *,
    windows_per_sample: float = 1.0,
) -> int:
    """How many of the first windows are stationary: cut before each change until none is left.

    Each cut also drops the segment just before the change point (the change may lie
    anywhere within it). Returns 0 when what is left is too short to judge
    (fewer than ``3 × MIN_SEGMENT`` windows).
    """
    xx = np.asarray(x, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)
    n = len(xx)
    while n >= _MIN_SEGMENTS * MIN_SEGMENT:
        dep = find_departure(xx[:n], tt[:n], names, windows_per_sample=windows_per_sample)
        if dep is None:
            return n
        k = min(_MAX_SEGMENTS, n // MIN_SEGMENT)
        seg = max(1, n // k)
        n = max(0, dep.index - seg)
    return 0
