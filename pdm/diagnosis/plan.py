"""Where every line of a judgement is read: bins of the envelope and acceleration spectra side
by side, each line's search range and floor, the bearing comb's offsets (cached per segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.layout import BearingLayout, bearing_layout
from pdm.diagnosis.lines import F64
from pdm.diagnosis.rules import ORDERS, Rules

__all__ = ["LinePlan", "plan_lines"]


@dataclass(frozen=True)
class LinePlan:
    """Where every line of a judgement is read, in bins of the envelope and acceleration
    spectra side by side: fixed for a bearing, spectrum lengths and ``df / shaft``, so built
    once per segment and cached."""

    lay: BearingLayout | None
    n_lay: int  # bearing and envelope-shaft lines, first
    n_env: int  # envelope bins (0: none); the acceleration spectrum follows
    orders: tuple[float, ...]  # acceleration order lines, after the bearing lines
    n_lines: int
    nominal_bins: F64  # (L,) where each line sits at zero offset, bins of its spectrum
    base: F64  # (L,) the first bin of its spectrum in the concatenation
    lo: F64  # (L,) bins it may be read in
    hi: F64
    half: F64  # (L,) search half-width, bins
    min_db: F64  # (L,)
    is_env: npt.NDArray[np.bool_]  # (L,)
    floor_idx: npt.NDArray[np.intp]  # (L, 2·floor_half) bins of each line's floor
    floor_half: int
    comb_idx: npt.NDArray[np.intp]  # (E, H, 3) envelope bins the comb reads
    eps: F64  # (E,) comb offsets


@lru_cache(maxsize=64)
def plan_lines(
    mult: tuple[float, float, float, float] | None,
    n_env: int,
    n_acc: int,
    df_orders: float,
    rules: Rules,
) -> LinePlan:
    tau = rules.slip_tolerance
    lay = None
    nominal: list[F64] = []
    gap: list[F64] = []
    half: list[F64] = []
    min_db: list[F64] = []
    base: list[F64] = []
    lo: list[F64] = []
    hi: list[F64] = []
    at = 0
    comb_idx = np.zeros((0, 0, 3), dtype=np.intp)
    eps = np.zeros(0)
    if mult is not None and n_env:
        lay = bearing_layout(mult, round((n_env - 4) * df_orders, 3), df_orders, rules)
        f0 = (lay.carrier + lay.delta) / df_orders  # bins
        moving = lay.fam >= 0  # bearing lines move with their family's offset
        nominal.append(f0)
        gap.append(np.where(moving, tau * f0 + 3.0, np.maximum(lay.half, 1.0) + 2.0))
        half.append(lay.half)
        min_db.append(lay.min_db)
        base.append(np.zeros(f0.size))
        lo.append(np.full(f0.size, 2.0))
        hi.append(np.full(f0.size, n_env - 1.0))
        at = n_env
        if lay.families:
            eps = np.linspace(-tau, tau, lay.n_eps)
            pos = np.rint(np.outer(1.0 + eps, lay.harm / df_orders))  # (E, H)
            comb_idx = np.clip(pos[..., None] + np.arange(-1, 2), 2, n_env - 1).astype(np.intp)
    n_lay = len(lay.names) if lay is not None else 0
    orders: list[float] = []
    if n_acc:
        top = (n_acc - 4) * df_orders
        orders = [o for o in ORDERS if o * (1 + rules.order_tolerance) < top]
        if 1.0 not in orders:
            orders = []
    if orders:
        o_bins = np.array(orders) / df_orders
        h_o = np.maximum(rules.order_tolerance * o_bins, 1.0)
        nominal.append(o_bins)
        gap.append(h_o + 2.0)
        half.append(h_o)
        min_db.append(np.zeros(o_bins.size))
        base.append(np.full(o_bins.size, float(at)))
        lo.append(np.full(o_bins.size, at + 1.0))
        hi.append(np.full(o_bins.size, at + n_acc - 1.0))
    if not nominal:
        empty = np.zeros(0)
        return LinePlan(
            lay, 0, n_env, (), 0, empty, empty, empty, empty, empty, empty,
            np.zeros(0, dtype=bool), np.zeros((0, 2), dtype=np.intp), 1, comb_idx, eps,
        )  # fmt: skip
    nom = np.concatenate(nominal)
    bs = np.concatenate(base)
    lo_a = np.concatenate(lo)
    hi_a = np.concatenate(hi)
    fh = int(min(64, max(8, round(0.5 / df_orders))))  # half a shaft order, 8–64 bins
    offs = np.arange(1, fh + 1)
    c = np.rint(nom + bs)
    g = np.ceil(np.concatenate(gap))
    left = (c - g)[:, None] - offs
    right = (c + g)[:, None] + offs
    lo2, hi2 = lo_a[:, None], hi_a[:, None]
    # Near an edge the neighbourhood continues on the other side instead.
    left = np.where(left >= lo2, left, right + fh)
    right = np.where(right <= hi2, right, left - fh)
    idx = np.clip(np.concatenate([left, right], axis=-1), lo2, hi2).astype(np.intp)
    return LinePlan(
        lay=lay,
        n_lay=n_lay,
        n_env=n_env if lay is not None else 0,
        orders=tuple(orders),
        n_lines=nom.size,
        nominal_bins=nom,
        base=bs,
        lo=lo_a,
        hi=hi_a,
        half=np.concatenate(half),
        min_db=np.concatenate(min_db),
        is_env=np.arange(nom.size) < n_lay,
        floor_idx=idx,
        floor_half=fh,
        comb_idx=comb_idx,
        eps=eps,
    )
