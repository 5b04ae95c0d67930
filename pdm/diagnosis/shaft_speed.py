"""The running speed read off the averaged acceleration spectra (a nameplate speed is rarely
the running speed: an induction motor slips with its load)."""

from __future__ import annotations

import math

import numpy as np

from pdm.diagnosis.lines import F64
from pdm.diagnosis.rules import Rules

__all__ = ["median", "refine_speed"]


def median(a: F64) -> float:
    """``np.median`` of a 1-d array, the same value (the middle element, or the mean of the two
    middle ones), by a partition instead of its general machinery: ~1 µs against ~11 for the
    few dozen bins a judgement reads around each of its lines. Non-finite values go to
    ``np.median`` itself (where it places NaN)."""
    n = a.shape[0]
    h = n // 2
    if n == 0 or not np.isfinite(a).all():
        return float(np.median(a))
    if n % 2:
        return float(np.partition(a, h)[h])
    s = np.partition(a, (h - 1, h))
    return float((s[h - 1] + s[h]) / 2.0)


def refine_speed(acc_power: F64, df: float, shaft_hz: float, rules: Rules = Rules()) -> float:
    """The running speed (Hz) read off the averaged acceleration spectra, near ``shaft_hz``.

    A speed given as a number (a nameplate, a setpoint) is rarely the running speed: an
    induction motor slips by a few per cent with its load, and lines at high orders move
    by that times the order. The 1×, 2× and 3× lines are looked for within
    ± ``order_tolerance`` of where ``shaft_hz`` puts them in the sum of the channels'
    averaged power; each that stands out (at least 10 dB over the median of its
    neighbourhood) is interpolated and divided by its order, and the speed is the *median*
    of those estimates. Not the most prominent one alone: at a few bins per order another
    line of the machine within a bin or two (an electrical line beside 2×, a structural
    one) merges with one harmonic's main lobe and pulls its interpolated peak by up to half
    a bin — the healthy CWRU recording's 2× merges with a line at 58.2 Hz and read 1776
    r/min of its 1796 — while the orders of one shaft must agree. Rounded to 0.05 % (so
    the lines' layout is reused while the speed holds); ``shaft_hz`` when no line stands out.

    Parameters
    ----------
    acc_power : (C, n) averaged acceleration amplitude², g²
    df : bin spacing, Hz
    shaft_hz : the speed given or tracked, Hz
    """
    p = np.asarray(acc_power, dtype=np.float64).sum(axis=0)
    n = p.shape[0]
    tol = rules.order_tolerance
    found: list[float] = []
    one_x = False  # found[0] is 1×
    for h in (1, 2, 3):
        lo = max(2, math.floor(h * shaft_hz * (1 - tol) / df))
        hi = min(n - 2, math.ceil(h * shaft_hz * (1 + tol) / df))
        if hi - lo < 1:
            continue
        k = lo + int(np.argmax(p[lo : hi + 1]))
        around = p[max(1, k - 24) : k + 25]
        prom = p[k] / max(median(around), 1e-300)
        if prom <= 10.0:
            continue
        a, b, c = (math.log(max(x, 1e-300)) for x in p[k - 1 : k + 2])
        den = a - 2 * b + c
        delta = 0.5 * (a - c) / den if den < 0 else 0.0
        found.append((k + max(-0.5, min(0.5, delta))) * df / h)
        if len(found) == 2 and one_x and abs(found[1] - found[0]) * h > 0.5 * df:
            # 1× and a higher order further apart than a merged neighbour pulls (half a bin
            # at the higher) are not one shaft's: 1× is believed. No defect line comes near
            # it; an 8-element bearing's BPFO sits at 3.04–3.06×, a BSF near 2×.
            del found[1]
        one_x = one_x or h == 1
    best_hz = float(np.median(found)) if found else shaft_hz
    q = 0.0005
    return shaft_hz * (1.0 + round((best_hz / shaft_hz - 1.0) / q) * q)
