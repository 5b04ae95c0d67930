"""The running-speed families (looseness, misalignment, unbalance) of every channel from its
order lines as read in the acceleration spectrum, gated by the machine's ISO 10816-3 zone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from pdm.diagnosis.evidence import FamilyEvidence, LineEvidence
from pdm.diagnosis.lines import LinesRead
from pdm.diagnosis.rules import FAMILY_LABEL, Rules

__all__ = ["SpeedSummary", "judge_speed"]

_G0_MM = 9.80665 * 1000.0  # mm/s² per g


def _velocity(amp_g: float, hz: float) -> float:
    """Velocity RMS (mm/s) of an acceleration tone of amplitude ``amp_g`` (0-peak, g)."""
    return amp_g * _G0_MM / (2 * math.pi * hz) / math.sqrt(2) if hz > 0 else 0.0


class SpeedSummary(NamedTuple):
    """What the verdict needs of a running-speed family."""

    family: str
    present: bool
    score_db: float

    @property
    def label(self) -> str:
        return FAMILY_LABEL[self.family]


def judge_speed(
    rd: LinesRead, orders: list[float], fr: float, gate: float, rules: Rules
) -> tuple[list[list[SpeedSummary]], Callable[[int], list[FamilyEvidence]]]:
    """The running-speed families of every row from its order lines as read, vectorised
    (the rules of :func:`_speed_row`, which builds the evidence objects when read)."""
    o = np.array(orders)
    i1 = orders.index(1.0)
    sig = rd.sig
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(sig, rd.amp * _G0_MM / (2 * math.pi * rd.found) / math.sqrt(2), 0.0)
    harm = (o >= 2.0) & (o == np.round(o))
    sub = np.isin(o, (0.5, 1.5, 2.5))
    n_harm = (sig & harm).sum(axis=1)
    n_sub = (sig & sub).sum(axis=1)
    need = rules.looseness_lines
    s1 = sig[:, i1]
    loose = s1 & ((n_harm >= need) | ((n_sub > 0) & (n_harm >= need // 2)))
    v_loose = np.sqrt((v * v).sum(axis=1))
    a1 = np.where(s1, rd.amp[:, i1], 0.0)
    mis = np.zeros_like(s1)
    v_mis = v[:, i1].copy()
    unb = s1.copy()
    for order in (2.0, 3.0):
        if order in orders:
            i = orders.index(order)
            unb &= a1 >= rules.dominance * rd.amp[:, i]
            if order == 2.0:
                mis = sig[:, i] & (rd.amp[:, i] >= a1)
                v_mis = np.hypot(v[:, i1], v[:, i])
    v_unb = v[:, i1]
    rows = []
    for c in range(sig.shape[0]):
        row = []
        for name, shape, vel in (
            ("looseness", loose[c], v_loose[c]),
            ("misalignment", mis[c], v_mis[c]),
            ("unbalance", unb[c], v_unb[c]),
        ):
            vel = float(vel)
            score = 20.0 * math.log10(vel / gate) if shape and vel > 0 else -math.inf
            row.append(SpeedSummary(name, bool(shape) and vel >= gate, score))
        rows.append(row)
    names = [f"{x:g}×" for x in orders]

    def build(c: int) -> list[FamilyEvidence]:
        lines = [
            LineEvidence(nm, "order", e0, f0, a0, p0, t0, s0)
            for nm, e0, f0, a0, p0, t0, s0 in zip(
                names,
                rd.expected[c].tolist(),
                rd.found[c].tolist(),
                rd.amp[c].tolist(),
                rd.prom[c].tolist(),
                rd.thr[c].tolist(),
                rd.sig[c].tolist(),
                strict=True,
            )
        ]
        return _speed_row(dict(zip(orders, lines, strict=True)), fr, gate, rules)

    return rows, build


def _speed_row(
    by: dict[float, LineEvidence], fr: float, gate: float, rules: Rules
) -> list[FamilyEvidence]:
    one = by[1.0]
    two, three = by.get(2.0), by.get(3.0)
    lines = tuple(by.values())

    def v(ln: LineEvidence | None) -> float:
        return _velocity(ln.amplitude_g, ln.found_hz) if ln is not None and ln.significant else 0.0

    def margin(vel: float) -> float:
        return 20.0 * math.log10(vel / gate) if vel > 0 else -math.inf

    def fam(
        name: str, shape: bool, vel: float, nh: int, ns: int, ls: tuple[LineEvidence, ...], d: float
    ) -> FamilyEvidence:
        present = shape and vel >= gate
        status = "present" if present else ("below_gate" if shape else "no_shape")
        score = margin(vel) if shape else -math.inf
        return FamilyEvidence(name, present, score, fr, 0.0, nh, ns, ls, 0, status, vel, gate, d)

    harm = [ln for o, ln in by.items() if o >= 2.0 and o.is_integer() and ln.significant]
    subs = [by[o] for o in (0.5, 1.5, 2.5) if o in by and by[o].significant]
    v_series = math.sqrt(sum(v(ln) ** 2 for ln in lines if ln.significant))
    need = rules.looseness_lines
    loose = one.significant and (len(harm) >= need or (bool(subs) and len(harm) >= need // 2))
    a1 = one.amplitude_g if one.significant else 0.0
    mis = two is not None and two.significant and two.amplitude_g >= a1
    ratio = two.amplitude_g / one.amplitude_g if two is not None and one.amplitude_g > 0 else 0.0
    rivals = [x.amplitude_g for x in (two, three) if x is not None]
    unb = one.significant and all(a1 >= rules.dominance * a for a in rivals)
    top_rival = max(rivals) if rivals else 0.0
    dom = one.amplitude_g / top_rival if top_rival > 0 else math.nan
    return [
        fam("looseness", loose, v_series, len(harm), len(subs), lines, math.nan),
        fam(
            "misalignment",
            mis,
            math.hypot(v(one), v(two)),
            int(one.significant) + int(two is not None and two.significant),
            0,
            tuple(x for x in (two, one) if x is not None),
            ratio,
        ),
        fam(
            "unbalance",
            unb,
            v(one),
            int(one.significant),
            0,
            tuple(x for x in (one, two, three) if x is not None),
            dom,
        ),
    ]
