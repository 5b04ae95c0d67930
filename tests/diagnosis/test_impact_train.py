"""The impact-train test read with indices found once per layout
(:attr:`pdm.diagnosis.layout.BearingLayout.train_index`): the same answers, row for row, as
the line-by-line reading it replaced (kept here as the reference), over every catalogued
bearing at several resolutions and random lines; and the other arrays ``judge_bearing``
takes from it, as it built them at every call before."""

from __future__ import annotations

import numpy as np
import pytest

from pdm.diagnosis.impact import ImpactTrain, impact_train
from pdm.diagnosis.layout import BearingLayout, bearing_layout
from pdm.diagnosis.rules import Rules
from pdm.dsp.bearings import BEARINGS


def reference(
    lay: BearingLayout,
    prom: np.ndarray,
    found: np.ndarray,
    support: np.ndarray,
    free: np.ndarray,
    df: float,
    rules: Rules,
) -> ImpactTrain:
    """The reading before the indices were cached: each lower sideband's mate and carrier
    looked up at every call, its pair OR-ed into its family one at a time."""
    nb = lay.shaft[0]
    fund = np.array([a for a, _b in lay.spans], dtype=np.intp)
    fam_b = lay.fam[:nb]
    is_harm = np.array([k == "harmonic" for k in lay.kinds[:nb]], dtype=bool)
    fund_of = fund[fam_b]
    order_k = np.where(is_harm, np.rint(lay.carrier[:nb] / lay.carrier[fund_of]), 1.0)
    above = 10.0 ** (np.clip(prom, 0.0, None) / 10.0) - 1.0
    strong = above >= above[:, fund_of] / (1.5 * order_k) ** 2
    harmonic = np.add.reduceat(support & is_harm & strong, fund, axis=1) > 0
    train = np.zeros_like(harmonic)
    mirror = free & (prom >= rules.min_line_db)
    kinds = np.array(lay.kinds[:nb])
    fam_l, carrier_l, delta_l = fam_b, lay.carrier[:nb], lay.delta[:nb]
    is_sb = kinds == "sideband"
    for i in np.flatnonzero(is_sb & (delta_l < 0.0)):
        same = (fam_l == fam_l[i]) & (carrier_l == carrier_l[i])
        mate = np.flatnonzero(is_sb & same & (delta_l == -delta_l[i]))
        carrier_line = np.flatnonzero(is_harm & same)
        if mate.size and carrier_line.size:
            j, hc = int(mate[0]), int(carrier_line[0])
            even = np.abs(found[:, i] + found[:, j] - 2.0 * found[:, hc]) <= 1.5 * df
            train[:, fam_l[i]] |= (
                (support[:, i] & mirror[:, j]) | (support[:, j] & mirror[:, i])
            ) & even
    return ImpactTrain(harmonic, train)


CASES = [
    (name, top, df_orders)
    for name in sorted(BEARINGS)
    for top, df_orders in ((30.0, 0.03), (12.0, 0.08), (4.0, 0.3))
]


@pytest.mark.parametrize(("bearing", "top_order", "df_orders"), CASES)
def test_the_same_trains_as_line_by_line(bearing: str, top_order: float, df_orders: float) -> None:
    rules = Rules()
    mult = BEARINGS[bearing].defect_multiples()
    lay = bearing_layout(
        tuple(mult[k] for k in ("bpfo", "bpfi", "bsf", "ftf")), top_order, df_orders, rules
    )
    nb = lay.shaft[0]
    fr, df = 25.0, 25.0 * df_orders
    rng = np.random.default_rng(sum(map(ord, bearing)) * 100 + int(top_order))
    rows = 40
    prom = rng.uniform(-3.0, 25.0, (rows, nb))
    # Lines found about where the layout puts them, some pairs even and some not.
    nominal = lay.carrier[:nb] + lay.delta[:nb]
    found = nominal * fr + rng.normal(0.0, 1.0, (rows, nb)) * df
    support = rng.random((rows, nb)) < 0.6
    free = rng.random((rows, nb)) < 0.7
    got = impact_train(lay, prom, found, support, free, df, rules)
    want = reference(lay, prom, found, support, free, df, rules)
    assert got.harmonic.dtype == want.harmonic.dtype and got.pair.dtype == want.pair.dtype
    assert got.harmonic.shape == want.harmonic.shape == (rows, len(lay.families))
    np.testing.assert_array_equal(got.harmonic, want.harmonic)
    np.testing.assert_array_equal(got.pair, want.pair)
    if lay.train_index.low.size:  # the random lines make some pairs, not all
        assert 0 < want.pair.sum() < want.pair.size


@pytest.mark.parametrize(("bearing", "top_order", "df_orders"), CASES)
def test_the_layouts_fixed_arrays_as_judge_bearing_built_them(
    bearing: str, top_order: float, df_orders: float
) -> None:
    """``judge_bearing`` takes each line's harmonic order and whether it may support its
    family from the layout (found once per layout): the same arrays as it built at every
    call before (kept here as the reference)."""
    mult = BEARINGS[bearing].defect_multiples()
    lay = bearing_layout(
        tuple(mult[k] for k in ("bpfo", "bpfi", "bsf", "ftf")), top_order, df_orders, Rules()
    )
    nb = lay.shaft[0]
    fund = np.array([a for a, _b in lay.spans], dtype=np.intp)
    fund_of = fund[lay.fam[:nb]]
    k_line = np.where(
        np.array(lay.kinds[:nb]) == "harmonic",
        np.rint(lay.carrier[:nb] / lay.carrier[fund_of]),
        1.0,
    )
    not_fund = np.ones(nb, dtype=bool)
    not_fund[fund] = False
    ix = lay.train_index
    np.testing.assert_array_equal(ix.fund, fund)
    np.testing.assert_array_equal(ix.fund_of, fund_of)
    np.testing.assert_array_equal(ix.order_k, k_line)
    assert ix.order_k.dtype == k_line.dtype
    np.testing.assert_array_equal(ix.may_support, not_fund & lay.supports[:nb])
    if top_order == 30.0:  # the finest layout reads harmonics and sidebands: not vacuous
        assert (ix.order_k >= 2).any() and ix.may_support.any()
