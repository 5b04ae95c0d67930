"""A cage comb's alternatives and its modulation of other lines: what tells this bearing's
cage from another bearing's on the same shaft or a half-order series.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from pdm.diagnosis.evidence import LineEvidence
from pdm.diagnosis.layout import BearingLayout
from pdm.diagnosis.lines import F64, LinesRead, over_floor_db, read_lines
from pdm.diagnosis.rules import SYMBOL, Rules

__all__ = ["CageCheck", "check_cage"]

#: Where any bearing's cage turns, in shaft orders: FTF = ½ (1 − d/D·cos α) is 0.33–0.47 for
#: the common series (d/D 0.07–0.35) and the half-order sub-harmonic series sits at 0.5. A
#: comb found here at another spacing than this bearing's FTF is not its cage.
_CAGE_SPACINGS = (0.30, 0.55)


def _floor_at(p: F64, centre: F64, gap: F64, fh: int) -> F64:
    """Local floor (median of ``fh`` bins each side outside ``± gap`` bins) of row ``p`` at
    bins ``centre`` (L,); near an edge the neighbourhood continues on the other side."""
    n = p.shape[-1]
    offs = np.arange(1, fh + 1)
    c = np.rint(centre)
    g = np.ceil(gap)
    left = (c - g)[:, None] - offs
    right = (c + g)[:, None] + offs
    left = np.where(left >= 1, left, right + fh)
    right = np.where(right <= n - 2, right, left - fh)
    idx = np.clip(np.concatenate([left, right], axis=-1), 1, n - 2).astype(np.intp)
    return np.maximum(np.median(p[idx], axis=-1), np.finfo(np.float64).tiny)


def _comb_fit(p: F64, df: float, fr: float, spacings: F64, harmonics: int, fh: int) -> F64:
    """How well combs of ``harmonics`` lines at each spacing (shaft orders) fit the envelope
    row ``p``: the summed dB over the local floor of the bins nearest every harmonic inside
    the spectrum, negative parts counted as 0 (S,). The nearest bin only: combs a fraction
    of a per cent apart part at their high harmonics, where a wider read would join them."""
    n = p.shape[-1]
    top = min(n - 3, math.ceil(harmonics * spacings.max() * fr / df) + fh + 2)
    centre = np.arange(top + 1, dtype=np.float64)
    floor = _floor_at(p, centre, np.full(centre.size, 2.0), fh)
    db = over_floor_db(p[: top + 1], floor)
    pos = np.rint(np.outer(spacings, np.arange(1, harmonics + 1)) * fr / df).astype(np.intp)
    ok = (pos >= 2) & (pos <= top)
    return np.where(ok, np.clip(db[np.clip(pos, 0, top)], 0.0, None), 0.0).sum(axis=1)


class CageCheck(NamedTuple):
    """What stands for and against a cage comb (one row)."""

    other_hz: float  # the comb spacing that fits better than this bearing's FTF, Hz, or nan
    lines: tuple[LineEvidence, ...]  # ± FTF around the other families' carriers and 1×


def check_cage(
    lay: BearingLayout,
    rd: LinesRead,
    row: int,
    env: F64,
    df: float,
    fr: float,
    k_eff: float,
    rules: Rules,
) -> CageCheck:
    """A cage comb's alternatives and its modulation of other lines (:mod:`pdm.diagnosis.rules`).

    * **Another spacing.** FTF ≈ 0.4 × shaft on nearly every bearing: the comb of another
      bearing's cage on the same shaft, or a half-order series, looks like this one's. Combs
      at every spacing of :data:`_CAGE_SPACINGS` are fitted; one outside this bearing's
      FTF ± slip that fits better is what the lines are.
    * **Modulation.** A damaged cage turns unevenly: it modulates what the rolling elements
      carry at FTF. Lines at ± FTF around a significant carrier — BPFO, BPFI, 2×BSF of this
      bearing, or 1× shaft — that are not themselves FTF harmonics are that modulation.
    """
    fi = lay.families.index("cage")
    a, _b = lay.spans[fi]
    ftf_hz = float(rd.expected[row, a])  # the comb's fitted spacing: finer than a bin
    tau = rules.slip_tolerance
    fh = int(min(64, max(8, round(0.5 * fr / df))))
    p = env[row]
    lo, hi = _CAGE_SPACINGS
    # As many harmonics as the spectrum holds at the widest spacing (up to 24): the further
    # out, the better two spacings a per cent apart are told apart.
    harmonics = min(24, max(3, int((p.shape[-1] - fh - 4) * df / (fr * hi))))
    step = 0.5 * df / (harmonics * fr)
    grid = np.arange(lo, hi + step, step)
    kin = lay.carrier[a]  # this bearing's kinematic FTF, orders
    own = np.abs(grid / kin - 1.0) <= tau + step / kin
    fit = _comb_fit(p, df, fr, grid, harmonics, fh)
    other = math.nan
    if own.any() and (~own).any():
        j = int(np.argmax(np.where(own, -np.inf, fit)))
        if fit[j] > float(fit[own].max()) + rules.min_line_db:
            other = float(grid[j]) * fr
    # Modulation: ± FTF around the significant carriers that are not FTF harmonics.
    carriers: list[tuple[str, float]] = []
    for f2, (a2, _b2) in zip(lay.families, lay.spans, strict=True):
        if f2 != "cage" and rd.sig[row, a2]:
            carriers.append((f"{SYMBOL[f2]} 1×", float(rd.found[row, a2])))
    s0 = lay.shaft[0]
    if lay.shaft[1] > s0 and rd.sig[row, s0]:
        carriers.append(("shaft 1×", float(rd.found[row, s0])))
    names: list[str] = []
    hz: list[float] = []
    for name, fc in carriers:
        for sign in (-1.0, 1.0):
            f = fc + sign * ftf_hz
            h = round(f / ftf_hz)
            if f <= 2 * df or abs(f - h * ftf_hz) <= 2 * df + 0.005 * f:
                continue  # on the FTF comb itself: no evidence beyond the comb
            names.append(f"{name} {'+' if sign > 0 else '−'} FTF")
            hz.append(f)
    if not hz:
        return CageCheck(other, ())
    pos = np.array(hz) / df
    half = np.full(pos.size, 1.0 + 0.005 * pos)
    floor = _floor_at(p, pos, half + 2.0, fh)
    n = p.shape[-1]
    got = read_lines(
        p[None],
        df,
        np.array(hz)[None],
        np.zeros(pos.size),
        np.full(pos.size, 2.0),
        np.full(pos.size, n - 1.0),
        half,
        floor[None],
        np.full(pos.size, k_eff),
        rules.p_false,
        np.full(pos.size, rules.min_line_db),
    )
    lines = tuple(
        LineEvidence(
            nm,
            "modulation",
            float(got.expected[0, i]),
            float(got.found[0, i]),
            float(got.amp[0, i]),
            float(got.prom[0, i]),
            float(got.thr[0, i]),
            bool(got.sig[0, i]),
        )
        for i, nm in enumerate(names)
    )
    return CageCheck(other, lines)
