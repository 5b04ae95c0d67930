"""Where a bearing's families put their lines at one speed and resolution (built once per
segment and cached): every family's harmonics, sidebands and comb neighbours, then the
envelope's shaft harmonics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.lines import F64, line_threshold_db
from pdm.diagnosis.rules import BEARING_FAMILIES, SYMBOL, Rules

__all__ = ["BearingLayout", "TrainIndex", "bearing_hz", "bearing_layout", "bearing_min_db"]

#: Harmonics read for the cage: its lines are low, and a cage fault's comb is long.
_CAGE_HARMONICS = 8


@dataclass(frozen=True)
class BearingLayout:
    """Where a bearing's families put their lines at one (speed, resolution): fixed within a
    segment, so built once and cached.

    Lines are indexed ``0 … L−1``: every usable family's harmonics and sidebands in turn,
    then the envelope's shaft harmonics ``1× … K×``.
    """

    families: tuple[str, ...]  # usable families, in BEARING_FAMILIES order
    skipped: tuple[tuple[str, str], ...]  # (family, "beyond" | "near_dc")
    harm: F64  # (H,) harmonic orders of every usable family, in turn
    harm_fam: npt.NDArray[np.intp]  # (H,) family index of each
    starts: npt.NDArray[np.intp]  # (F,) first harmonic of each family
    weight: F64  # (H,) comb weights
    # per line (L = H + S + K):
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    fam: npt.NDArray[np.intp]  # family index, −1 for shaft lines
    carrier: F64  # order of the carrier (harmonics: the order itself; shaft: h)
    delta: F64  # sideband offset in orders (0 for harmonics and shaft lines)
    moves: npt.NDArray[np.bool_]  # the sideband offset moves with the slip (FTF)
    half: F64  # search half-width, bins
    min_db: F64  # prominence needed whatever the statistics
    spans: tuple[tuple[int, int], ...]  # per family: its lines [a, b)
    shaft: tuple[int, int]  # [a, b) of the shaft lines
    comb_free: tuple[npt.NDArray[np.intp], ...]  # per family: free shaft harmonics (indices)
    n_eps: int
    harm_line: npt.NDArray[np.intp]  # (H,) the line index of each harmonic
    supports: npt.NDArray[np.bool_]  # per line: may support its family (not a neighbour)
    neighbour: npt.NDArray[np.bool_]  # per line: an outer race's FTF-comb neighbour
    ftf_sideband: npt.NDArray[np.bool_]  # per line: a ball's FTF sideband
    cage_high: npt.NDArray[np.bool_]  # per line: a cage harmonic from 3×FTF up
    first_sb: npt.NDArray[np.bool_]  # per line: a modulation sideband of the first harmonic

    @cached_property
    def train_index(self) -> TrainIndex:
        """The indices the impact-train test reads (:func:`pdm.diagnosis.impact.impact_train`),
        fixed by the layout: found once per layout, not at every judgement."""
        nb = self.shaft[0]
        fund = np.array([a for a, _b in self.spans], dtype=np.intp)
        kinds = np.array(self.kinds[:nb])
        is_harm = kinds == "harmonic"
        fam, carrier, delta = self.fam[:nb], self.carrier[:nb], self.delta[:nb]
        fund_of = fund[fam]
        order_k = np.where(is_harm, np.rint(carrier / carrier[fund_of]), 1.0)
        # Each lower sideband with its mirror (the same family and carrier, −delta) and its
        # carrier's harmonic line; a sideband with either missing is no pair.
        is_sb = kinds == "sideband"
        low, high, mid = [], [], []
        for i in np.flatnonzero(is_sb & (delta < 0.0)):
            same = (fam == fam[i]) & (carrier == carrier[i])
            mate = np.flatnonzero(is_sb & same & (delta == -delta[i]))
            carrier_line = np.flatnonzero(is_harm & same)
            if mate.size and carrier_line.size:
                low.append(int(i))
                high.append(int(mate[0]))
                mid.append(int(carrier_line[0]))
        low_a = np.array(low, dtype=np.intp)
        # (P, F): which family each pair belongs to, to OR the pairs' verdicts per family.
        of_family = np.zeros((len(low), len(self.families)))
        of_family[np.arange(len(low)), fam[low_a]] = 1.0
        # Each sideband's carrier harmonic line (−1: no sideband, or the ball's BSF line,
        # which sits on no carrier).
        sb_carrier = np.full(nb, -1, dtype=np.intp)
        for i in np.flatnonzero(is_sb & (delta != 0.0)):
            line = np.flatnonzero(is_harm & (fam == fam[i]) & (carrier == carrier[i]))
            if line.size:
                sb_carrier[i] = line[0]
        return TrainIndex(
            fund,
            is_harm,
            fund_of,
            (1.5 * order_k) ** 2,
            order_k,
            ~np.isin(np.arange(nb), fund) & self.supports[:nb],
            low_a,
            np.array(high, dtype=np.intp),
            np.array(mid, dtype=np.intp),
            of_family,
            sb_carrier,
        )


class TrainIndex(NamedTuple):
    """A layout's indices for the impact-train test, over its ``nb`` bearing lines."""

    fund: npt.NDArray[np.intp]  # (F,) each family's fundamental line
    is_harm: npt.NDArray[np.bool_]  # (nb,) a harmonic line
    fund_of: npt.NDArray[np.intp]  # (nb,) each line's family fundamental
    harm_bound: F64  # (nb,) (1.5 k)²: a harmonic k's power bound divisor
    order_k: F64  # (nb,) each line's harmonic order k of its fundamental (1: not a harmonic)
    may_support: npt.NDArray[np.bool_]  # (nb,) no fundamental and may support its family
    low: npt.NDArray[np.intp]  # (P,) each sideband pair's lower line
    high: npt.NDArray[np.intp]  # (P,) its mirror
    carrier: npt.NDArray[np.intp]  # (P,) the carrier's harmonic line
    of_family: F64  # (P, F) 1 where the pair is of the family
    sb_carrier: npt.NDArray[np.intp]  # (nb,) each sideband's carrier harmonic line, else −1


@lru_cache(maxsize=64)
def bearing_layout(
    mult: tuple[float, float, float, float], top_order: float, df_orders: float, rules: Rules
) -> BearingLayout:
    """The layout of a bearing (multiples bpfo, bpfi, bsf, ftf) when the envelope spectrum
    reaches ``top_order`` and a bin is ``df_orders`` shaft orders wide."""
    m = dict(zip(("bpfo", "bpfi", "bsf", "ftf"), mult, strict=True))
    tau = rules.slip_tolerance
    top = top_order / (1 + tau)
    fams: list[str] = []
    skipped: list[tuple[str, str]] = []
    harm: list[float] = []
    harm_fam: list[int] = []
    starts: list[int] = []
    weight: list[float] = []
    lines: list[tuple[str, str, int, float, float, bool, float, float]] = []
    spans: list[tuple[int, int]] = []
    owns: list[list[float]] = []
    for family, key, k in BEARING_FAMILIES:
        f0 = k * m[key]
        count = _CAGE_HARMONICS if family == "cage" else rules.harmonics
        hs = [h * f0 for h in range(1, count + 1) if h * f0 <= top]
        if not hs:
            skipped.append((family, "beyond"))
            continue
        if f0 * (1 - tau) / df_orders < 3:
            skipped.append((family, "near_dc"))
            continue
        fi = len(fams)
        fams.append(family)
        starts.append(len(harm))
        harm += hs
        harm_fam += [fi] * len(hs)
        weight += [max(1.0, len(hs) - 1.0)] + [1.0] * (len(hs) - 1)
        sym = SYMBOL[family]
        a = len(lines)
        for i, o in enumerate(hs):
            lines.append((f"{sym} {i + 1}×", "harmonic", fi, o, 0.0, False, 1.0, 0.0))
        sb: list[tuple[str, float, float, bool]] = []
        if family == "inner_race":  # ± 1×, 2× shaft: fixed by the shaft, not by the slip
            sb = [(f"BPFI {i + 1}×", h, d, False) for i, h in enumerate(hs) for d in (-1, 1, -2, 2)]
        elif family == "ball":  # ± FTF: the cage slips with the ball
            ftf = m["ftf"]
            sb = [(f"2×BSF {i + 1}×", h, d * ftf, True) for i, h in enumerate(hs) for d in (-1, 1)]
            sb.append(("BSF 1×", m["bsf"], 0.0, True))  # the odd line: unequal race impacts
        half_sb = 1.0 + 0.005 / df_orders  # the speed is known to ~0.5 %
        for name, c, d, mv in sb:
            if 0 < c + d <= top:
                lines.append((_sb_name(name, d, mv), "sideband", fi, c, float(d), mv, half_sb, 0.0))
        if family in ("outer_race", "inner_race"):
            # BPFO = n × FTF: a cage fault's comb runs through it, and the comb's lines are
            # dense enough (0.4 × shaft apart) that one often sits within the slip of BPFI. Its
            # neighbours in that comb, fundamental ± FTF, tell the two apart (a race stands out
            # of them); not support.
            for d in (-m["ftf"], m["ftf"]):
                if hs[0] + d <= top:
                    lines.append(
                        (_sb_name(f"{sym} 1×", d, True), "neighbour", fi, hs[0], d, True, 1.0, 0.0)
                    )
        spans.append((a, len(lines)))
        own = [*hs, *(c + d for _n, c, d, _mv in sb if abs(d) != 2)]
        owns.append(own + ([1.0, 2.0] if family == "inner_race" else []))
    a = len(lines)
    k_max = [h for h in range(1, 25) if h * (1 + rules.order_tolerance) < top_order]
    for h in k_max:
        lines.append((f"shaft {h}×", "order", -1, float(h), 0.0, False, 0.002 * h / df_orders, 0.0))
    shaft = (a, len(lines))
    comb_free = []
    for own in owns:
        free = [
            i for i, h in enumerate(k_max) if all(abs(h - o) > tau * o + 2 * df_orders for o in own)
        ]
        comb_free.append(np.array(free, dtype=np.intp))
    fh_max = max(harm) if harm else 1.0
    n_eps = min(401, math.ceil(2 * tau * fh_max / (0.5 * df_orders)) + 1)
    first = {fi: harm[starts[fi]] for fi in range(len(fams))}
    return BearingLayout(
        families=tuple(fams),
        skipped=tuple(skipped),
        harm=np.array(harm),
        harm_fam=np.array(harm_fam, dtype=np.intp),
        starts=np.array(starts, dtype=np.intp),
        weight=np.array(weight),
        names=tuple(x[0] for x in lines),
        kinds=tuple(x[1] for x in lines),
        fam=np.array([x[2] for x in lines], dtype=np.intp),
        carrier=np.array([x[3] for x in lines]),
        delta=np.array([x[4] for x in lines]),
        moves=np.array([x[5] for x in lines], dtype=bool),
        half=np.array([x[6] for x in lines]),
        min_db=np.array([x[7] for x in lines]),
        spans=tuple(spans),
        shaft=shaft,
        comb_free=tuple(comb_free),
        n_eps=max(n_eps, 3),
        harm_line=np.array([i for i, x in enumerate(lines) if x[1] == "harmonic"], dtype=np.intp),
        supports=np.array([x[1] != "neighbour" for x in lines], dtype=bool),
        neighbour=np.array([x[1] == "neighbour" for x in lines], dtype=bool),
        ftf_sideband=np.array(
            [x[0].endswith("FTF") and x[1] == "sideband" for x in lines], dtype=bool
        ),
        cage_high=np.array(
            [
                x[2] >= 0
                and fams[x[2]] == "cage"
                and x[1] == "harmonic"
                and not x[0].startswith(("FTF 1×", "FTF 2×"))
                for x in lines
            ],
            dtype=bool,
        ),
        first_sb=np.array(
            [
                x[1] == "sideband" and x[4] != 0.0 and x[2] >= 0 and x[3] == first[x[2]]
                for x in lines
            ],
            dtype=bool,
        ),
    )


def _sb_name(carrier: str, delta: float, moves: bool) -> str:
    if delta == 0.0:
        return carrier
    sign = "+" if delta > 0 else "−"
    return f"{carrier} {sign} {'FTF' if moves else f'{abs(delta):g}×shaft'}"


def bearing_hz(lay: BearingLayout, offsets: F64, fr: float) -> F64:
    """(C, L) frequencies of every line of the layout at each row's family offsets."""
    fam = lay.fam
    is_fam = fam >= 0
    e = np.zeros((offsets.shape[0], len(lay.names)))
    e[:, is_fam] = offsets[:, fam[is_fam]]
    hz = (lay.carrier * (1.0 + e) + lay.delta * np.where(lay.moves, 1.0 + e, 1.0)) * fr
    hz[:, ~is_fam] = lay.carrier[~is_fam] * fr
    return hz


def bearing_min_db(lay: BearingLayout, df: float, fr: float, k_eff: float, rules: Rules) -> F64:
    """Per line, the prominence it needs whatever the statistics (fundamentals need more)."""
    min_db = np.maximum(lay.min_db, rules.min_line_db)
    for a, _b in lay.spans:
        bins_fund = int(2 * rules.slip_tolerance * lay.carrier[a] * fr / df) + 3
        min_db[a] = max(
            rules.min_fundamental_db, line_threshold_db(k_eff, bins_fund, rules.p_false)
        )
    return min_db
