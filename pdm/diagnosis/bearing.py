"""The bearing families of every channel from their lines as read: shared lines, shaft combs,
mains lines, support, the impact-train test and the cage's checks, then each family's status
and score (the rules of :mod:`pdm.diagnosis.rules`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.cage import CageCheck, check_cage
from pdm.diagnosis.evidence import FamilyEvidence, LineEvidence
from pdm.diagnosis.impact import impact_train
from pdm.diagnosis.layout import BearingLayout
from pdm.diagnosis.lines import F64, LinesRead, line_threshold_db
from pdm.diagnosis.rules import BEARING_FAMILIES, CAGE_SUPPORT, FAMILY_LABEL, Rules

__all__ = ["BearingSummary", "judge_bearing"]

#: Twice the line frequency of 50 and 60 Hz mains and its first harmonics, Hz.
_MAINS_HZ: tuple[float, ...] = (100.0, 120.0, 200.0, 240.0, 300.0, 360.0, 400.0, 480.0)
_MAINS = np.array(_MAINS_HZ)


class BearingSummary(NamedTuple):
    """What the verdict needs of a bearing family (the evidence objects come later)."""

    family: str
    status: str
    score_db: float
    prom: float  # the fundamental's prominence, dB
    thr: float  # its threshold, dB
    clean: bool  # significant, unshared, off any shaft comb
    cage_comb: int  # cage: clean FTF harmonics from 3× up
    above_comb: bool = True  # outer race: its fundamental stands out of the FTF comb
    bare: bool = False  # cage: a comb without modulation of another line at ± FTF
    seen: bool = False  # the fundamental stands out by the statistics alone (no 6 dB minimum),
    # and is neither shared nor on a shaft comb nor on a mains line

    @property
    def present(self) -> bool:
        return self.status == "present"

    @property
    def label(self) -> str:
        return FAMILY_LABEL[self.family]


def judge_bearing(
    lay: BearingLayout,
    rd: LinesRead,
    offsets: F64,
    df: float,
    fr: float,
    rules: Rules,
    env: F64,
    k_eff: float,
    baseline: bool = False,
    machine_db: F64 | None = None,
    machine_lobe_db: F64 | None = None,
) -> tuple[list[list[BearingSummary]], Callable[[int], list[FamilyEvidence]]]:
    """Every bearing family of every row from its lines as read (``rd``: (C, L) of ``lay``;
    ``env``: the rows' envelope power, for the cage's checks and the lines' interpolated
    frequencies; ``baseline``: the lines were judged over the machine's healthy spectra;
    ``machine_db``: (C, L), with them, how far (dB) those spectra stand over the floor where
    each line was found; ``machine_lobe_db``: (C, L), the most they stand over it within the
    main lobe, ± 2 bins, of where each line was found).

    Returns per row the families' summaries (the usable ones, in BEARING_FAMILIES order)
    and a function that builds a row's evidence objects when they are read.
    """
    n_rows = rd.found.shape[0]
    n_fam = len(lay.families)
    if not n_fam:
        return [[] for _ in range(n_rows)], lambda c: _skipped(lay)
    fam = lay.fam
    ix = lay.train_index  # the layout's fixed indices, found once per layout
    fund = ix.fund

    nb = lay.shaft[0]  # bearing lines are 0 … nb−1, shaft lines after
    found = rd.found[:, :nb]
    sig: npt.NDArray[np.bool_] = np.asarray(rd.sig[:, :nb], dtype=bool)
    # A sideband is a line of its own, its spacing away from its carrier. Each is read
    # within a bin of where slip puts it, so where the spacing is a few bins (2 × BSF ± FTF
    # at 600 r/min: 2.6 bins) the sideband's search can reach the carrier's own line, or a
    # line of another series beside it. A "sideband" found nearer its carrier as found than
    # half its spacing is the carrier's line, no modulation of it: it counts for nothing.
    sbc = ix.sb_carrier
    is_sb = sbc >= 0
    gap = np.abs(found[:, is_sb] - found[:, sbc[is_sb]])
    sig[:, is_sb] &= gap >= 0.5 * np.abs(lay.delta[:nb][is_sb]) * fr
    fam_b = fam[:nb]
    # Lines on a shaft harmonic where the family's envelope shows a running-speed comb.
    sig_sh = np.asarray(rd.sig[:, nb:], dtype=bool)
    comb = np.empty((n_rows, n_fam), dtype=bool)
    for fi, free in enumerate(lay.comb_free):
        need = max(1, math.ceil(free.size / 4))
        comb[:, fi] = free.size < 2 or False
        if free.size >= 2:
            comb[:, fi] = sig_sh[:, free].sum(axis=1) >= need
    h = np.rint(found / fr)
    on = (h >= 1) & (np.abs(found - h * fr) <= df + 0.001 * found)
    at = np.where(on, h, 0).astype(np.intp)
    on_comb = on & comb[:, fam_b]
    # An AC motor's electromagnetic forces pull at twice the line frequency and its
    # harmonics (100, 200 … Hz or 120, 240 … Hz); they modulate everything the housing
    # carries and stand in envelope spectra whatever the speed.
    # A line there supports nothing either (an impact train's harmonic is no mains line).
    # A tone's strongest bin is within half a bin of it; the grid within 0.1 %.
    near = np.abs(found[..., None] - _MAINS)  # (C, nb, M)
    on_mains = np.asarray((near <= (0.5 * df + 0.001 * found)[..., None]).any(axis=-1))
    mains = on_mains[:, fund]
    # Harmonic k of a line exactly on the mains line m is the pull's harmonic k m (beyond
    # the lines listed): a family's harmonic off it by more than a bin and the grid's 0.1 %
    # (both lines' quantisation and a weak line's pull, as for shaft harmonics) says its
    # fundamental is not on m.
    fund_of = ix.fund_of
    k_line = ix.order_k
    pull = k_line * _MAINS[np.argmin(near, axis=-1)][:, fund_of]
    off_pull = np.abs(found - pull) > df + 0.001 * found
    # A harmonic is a line at k × its fundamental *as found*: the comb reads each harmonic
    # within ± 1 bin of k (1 + ε) f, which lets a line of another series pass (a 6205's
    # 2 × BPFI sits 0.7 % from 3 × BPFO). Interpolated between bins (each line within half a
    # bin even with a neighbour pulling it), harmonic k of a line at f is within (k + 1) / 2
    # bins of k f (``exact``). Further off, it is the family's only when it puts the
    # fundamental within the main lobe (± 2 bins) of the line found there (``lobe``: the
    # train's fundamental merged with a stronger line of the machine beside it, a blade pass
    # on 3 × beside an 8-ball bearing's BPFO at 3.05 ×) and stands out as a fundamental must
    # (``behind``: the train's fundamental is at least as strong as its harmonics,
    # |H(kf)| ≤ |H(f)|, so it stands out beneath the line); and of two families reading one
    # line, the one it is an exact harmonic of holds it.
    f_at = _interpolated_hz(env, found, df)
    exact, lobe = _coherent(f_at, k_line, fund_of, df)
    behind = lobe & ~exact & (rd.prom[:, :nb] >= rd.thr[:, fund_of])
    sig_own = sig & (exact | behind)
    # Shared lines: the family with the stronger significant fundamental holds them.
    fund_sig: npt.NDArray[np.bool_] = sig[:, fund]
    # Ranked by the fundamental's prominence, less 2 dB per 1 % off kinematics: of two
    # families that read the same line, the one whose kinematics put it nearer holds it.
    # The offset is that of the line found, interpolated (f_at), from the family's
    # kinematics: two families reading one line are ranked by where the line is, not by
    # their combs' offsets, which the harmonics set and the ± 1-bin reading of each line
    # leaves up to a bin and a half from the line read (a 13-roller bearing's BPFO at
    # 600 r/min, 0.4 % from its kinematics, read as 2 × BSF 5.6 % off with the comb at +1.2 %).
    kin_hz = lay.carrier[fund] * fr
    off_found = f_at[:, fund] / np.maximum(kin_hz, _TINY) - 1.0
    strength = np.where(fund_sig, rd.prom[:, fund] - 200.0 * np.abs(off_found), -1e9)
    strength = strength - 1e-6 * np.arange(n_fam)
    rank = strength[:, fam_b] + 1e6 * exact  # (C, nb): an exact harmonic's family first
    close = np.abs(found[:, :, None] - found[:, None, :]) <= (2.0 * df + 0.005 * found)[..., None]
    close &= fam_b[:, None] != fam_b[None, :]
    close &= rank[:, None, :] > rank[:, :, None]
    held0 = sig_own & fund_sig[:, fam_b] & lay.supports[:nb]
    fund_shared: npt.NDArray[np.bool_] = np.asarray(
        (close[:, fund, :] & held0[:, None, :]).any(axis=-1), dtype=bool
    )  # (C, F)
    held = held0 & ~fund_shared[:, fam_b]
    by = close & held[:, None, :]
    shared: npt.NDArray[np.bool_] = np.asarray(by.any(axis=-1), dtype=bool)
    owner = np.where(shared, np.argmax(by, axis=-1), -1)
    clean = sig_own & ~shared & ~on_comb & ~on_mains
    support = clean & ix.may_support
    n_clean = np.add.reduceat(support, fund, axis=1)
    free = ~shared & ~on_comb & ~on_mains
    own, thr_b = rd.line_db[:, :nb], rd.thr[:, :nb]
    # A stationary line sharing a line's main lobe: the motor's pull, and with a model a line
    # the machine's healthy spectra hold within it (standing over the floor by the line's
    # threshold).
    merged = on_mains
    if machine_lobe_db is not None:
        merged = on_mains | (machine_lobe_db[:, :nb] >= thr_b)
    train = impact_train(
        lay, rd.prom[:, :nb], found, support & exact, free, df, rules, f_at, merged, own, thr_b
    )
    # The motor's pull is a stationary line with harmonics of its own at the mains comb's
    # spacing, and no modulation at shaft rate: a family whose fundamental sits on a mains
    # line but carries a sideband pair at ± the same shaft order about it (each off the
    # mains comb) is a train turning with the shaft — an inner race's — and the mains rule
    # yields to it. Its harmonics prove nothing here: those of a line on a mains harmonic
    # fall on mains harmonics too.
    #
    # A harmonic resolves what the fundamental cannot: the k-th harmonic of a line exactly on
    # a mains harmonic or a shaft order is on one too (k × 120 Hz, k × h × shaft), and k times
    # further off it than the fundamental when the line is not exactly there. A family whose
    # fundamental sits within the resolution of a mains line or of a shaft order in a
    # running-speed comb, but which carries a harmonic at an impact train's strength that is
    # on neither (a supporting line, so off both by more than its own resolution), is a
    # series at its own rate: the rules yield to it (a 6309's BPFO at 119.5 Hz with 2×, 3×
    # at 239.1, 358.6 Hz; its BPFI at 4.95 × beside a gear's 5 ×, 2 × at 9.9 ×). The
    # harmonic must be an exact one (at k × the fundamental as found): only then does it
    # measure that line's rate, and not another series' beside it.
    off = impact_train(
        lay, rd.prom[:, :nb], found, support & exact & off_pull, free, df, rules, f_at, merged,
        own, thr_b,
    )  # fmt: skip
    fund_on_comb = on_comb[:, fund] & ~(train.harmonic | train.pair)
    # A train behind a line of the machine: where the race's fundamental sits within the main
    # lobe of a stronger stationary line, the prominence read there is that line's, and the
    # impact-train bound (harmonics against the fundamental) measures nothing of the train.
    # Its harmonics still show it (``behind``): not harmonics of the line found (a stationary
    # line's own, two tones beating, sit at exactly k × it), standing out as a fundamental.
    masked = np.add.reduceat(support & behind, fund, axis=1) > 0
    # A fundamental hidden beneath a line of the machine: where the fundamental read is a
    # significant mains line (without a model) or a line the machine's healthy spectra hold
    # (with one), a train within that line's main lobe cannot be read there at this
    # resolution — on the Hann window's skirt it is no peak, and over the healthy reference it
    # is nothing (a 6309's 2 × BSF at 96.6 Hz, two 1.56 Hz bins from the motor's 100 Hz
    # pull). Its harmonic behind the line, off the pull's harmonics, is the train's own
    # evidence (a stationary line's harmonics sit at exactly k × it): the family is judged on
    # it, its prominence for the fundamental's, and that harmonic is not also its support.
    # The line must stand at least as far out as that harmonic: an impact train's
    # fundamental is at least as strong as its harmonics (|H(kf)| ≤ |H(f)|), so a line
    # weaker than the harmonic hides no such fundamental.
    behind_off = support & behind & off_pull
    h_prom = np.maximum.reduceat(np.where(behind_off, rd.prom[:, :nb], -np.inf), fund, axis=1)
    if machine_db is None:
        line_db = np.where(on_mains[:, fund] & sig[:, fund], rd.prom[:, fund], -np.inf)
    else:
        line_db = np.where(machine_db[:, fund] >= rd.thr[:, fund], machine_db[:, fund], -np.inf)
    hidden = np.isfinite(h_prom) & (line_db >= h_prom)
    fund_prom = np.where(hidden, h_prom, rd.prom[:, fund])
    fund_ok = sig[:, fund] | hidden
    # The harmonic it is judged on, for the note (Hz; nan where nothing is hidden).
    at_best = behind_off & (rd.prom[:, :nb] >= h_prom[:, fam_b])
    hidden_hz = np.where(
        hidden, np.maximum.reduceat(np.where(at_best, found, -np.inf), fund, axis=1), np.nan
    )
    n_clean = n_clean - hidden
    mains = mains & ~(train.pair | off.harmonic | hidden)
    clean[:, fund] = fund_ok & ~shared[:, fund] & ~fund_on_comb & ~mains
    # Locked to the shaft: a source turning with the shaft (a gear's mesh, a fan's blade
    # pass, a coupling) puts its lines, their harmonics and its ± shaft sidebands exactly
    # on shaft orders, while a bearing's defect lines sit at kinematic, non-integer orders
    # and slip. A family whose fundamental and every supporting line sit on shaft orders
    # (interpolated, within a quarter bin and the speed's 0.1 %) is what such a source
    # shows, and cannot be told from it without the machine's healthy spectra; with them
    # (``baseline``) the source's lines are part of the reference and the test is moot.
    locked_line = _on_shaft_order(f_at, df, fr)
    # A fundamental on a shaft order, alone or with its lines, is no sign of a defect
    # elsewhere in the bearing either (a blade pass at 8 × beside an NU206's BPFI at 7.76 ×
    # made an outer race uncertain and a ball's confidence 0.02): neither another race
    # seen nor a rival a named family must lead.
    on_order = locked_line[:, fund] if not baseline else np.zeros((n_rows, n_fam), dtype=bool)
    loose = np.add.reduceat(support & ~locked_line, fund, axis=1)
    # A line on a shaft order with its harmonics there says nothing more: those of any line on
    # an order fall on orders too (an 8-ball bearing's BPFO, 3.05 ×, slips onto 3 × at 1.6 %).
    # Shaft-rate sidebands on orders are the source's modulation by the shaft it turns with.
    shaft_sb = (np.array(lay.kinds[:nb]) == "sideband") & ~lay.moves[:nb] & (lay.delta[:nb] != 0)
    on_sb = np.add.reduceat(support & locked_line & shaft_sb, fund, axis=1) > 0
    locked = on_order & (loose == 0) & on_sb
    clean[:, fund] &= ~on_order
    # A race against the FTF comb: its neighbours fundamental ± FTF (significant ones).
    neigh = np.where(sig & lay.neighbour[:nb], rd.prom[:, :nb], -np.inf)
    neigh_max = np.maximum.reduceat(neigh, fund, axis=1)
    above_comb = rd.prom[:, fund] >= neigh_max + rules.compete_db
    ftf_sb: npt.NDArray[np.bool_] = np.asarray(
        np.add.reduceat(support & lay.ftf_sideband[:nb], fund, axis=1) > 0, dtype=bool
    )
    cage_comb = (support & lay.cage_high[:nb] & ~_ball_beside_cage(lay, found, sig, df)).sum(axis=1)
    # A modulated carrier shares its power with its sidebands (BPFI ± shaft, 2×BSF ± FTF):
    # the family's line is the carrier with the clean sidebands of its first harmonic,
    # 10·log10 of their summed peak/floor ratios. Then 3 dB per supporting line (two).
    ratio = np.where(lay.first_sb[:nb] & support, 10.0 ** (rd.prom[:, :nb] / 10.0), 0.0)
    carrier = 10.0 ** (fund_prom / 10.0) + np.add.reduceat(ratio, fund, axis=1)
    score = 10.0 * np.log10(carrier) + rules.support_db * np.minimum(n_clean, 2)

    # A fundamental seen by the statistics alone (its 6 dB physical minimum left out): what
    # a race shows of a defect elsewhere in the bearing (in :mod:`pdm.diagnosis.verdict`).
    stat_thr = np.array(
        [
            max(
                rules.min_line_db,
                line_threshold_db(
                    k_eff, int(2 * rules.slip_tolerance * lay.carrier[a] * fr / df) + 3,
                    rules.p_false,
                ),
            )
            for a, _b in lay.spans
        ]
    )  # fmt: skip
    seen = (rd.prom[:, fund] >= stat_thr) & ~fund_shared & ~fund_on_comb & ~mains & ~on_order

    summaries = []
    checks: dict[int, CageCheck] = {}
    for c in range(n_rows):
        row = []
        for fi, family in enumerate(lay.families):
            bare = False
            if not fund_ok[c, fi]:
                status = "weak"
            elif fund_shared[c, fi]:
                status = "shared"
            elif fund_on_comb[c, fi]:
                status = "on_shaft"
            elif mains[c, fi]:
                status = "on_mains"
            elif locked[c, fi]:
                status = "shaft_locked"
            elif n_clean[c, fi] < (CAGE_SUPPORT if family == "cage" else 1):
                status = "unsupported"
            elif family == "ball" and not ftf_sb[c, fi]:
                status = "no_ftf_sideband"
            elif family in ("outer_race", "inner_race") and not (train.any[c, fi] or masked[c, fi]):
                status = "lone_line"
            else:
                status = "present"
            if family == "cage" and status == "present":
                chk = checks[c] = check_cage(lay, rd, c, env, df, fr, k_eff, rules)
                if math.isfinite(chk.other_hz):
                    status = "other_comb"
                bare = not any(ln.significant for ln in chk.lines)
            row.append(
                BearingSummary(
                    family,
                    status,
                    float(score[c, fi]),
                    float(fund_prom[c, fi]),
                    float(rd.thr[c, fund[fi]]),
                    bool(clean[c, fund[fi]] and not mains[c, fi] and status != "other_comb"),
                    int(cage_comb[c]) if family == "cage" else 0,
                    bool(above_comb[c, fi]),
                    bare,
                    bool(seen[c, fi]),
                )
            )
        summaries.append(row)

    def build(c: int) -> list[FamilyEvidence]:
        names = lay.names
        lines = [
            LineEvidence(
                names[i],
                lay.kinds[i],
                float(rd.expected[c, i]),
                float(rd.found[c, i]),
                float(rd.amp[c, i]),
                float(rd.prom[c, i]),
                float(rd.thr[c, i]),
                bool(rd.sig[c, i]),
                names[owner[c, i]] if owner[c, i] >= 0 else "",
                int(at[c, i]),
            )
            for i in range(nb)
        ]
        out = {}
        for fi, (family, (a, b)) in enumerate(zip(lay.families, lay.spans, strict=True)):
            own = tuple(lines[a:b])
            chk = checks.get(c) if family == "cage" else None
            extra = chk.lines if chk is not None else ()
            out[family] = FamilyEvidence(
                family,
                summaries[c][fi].present,
                summaries[c][fi].score_db,
                float(rd.found[c, fund[fi]]),
                float(offsets[c, fi]),
                sum(ln.significant and ln.kind == "harmonic" for ln in own),
                sum(ln.significant and ln.kind in ("sideband", "modulation") for ln in own + extra),
                own + extra,
                int(n_clean[c, fi]),
                summaries[c][fi].status,
                detail=chk.other_hz if chk is not None else float(hidden_hz[c, fi]),
            )
        for f in _skipped(lay):
            out[f.family] = f
        return [out[f] for f, _k, _m in BEARING_FAMILIES if f in out]

    return summaries, build


def _ball_beside_cage(
    lay: BearingLayout, found: F64, sig: npt.NDArray[np.bool_], df: float
) -> npt.NDArray[np.bool_]:
    """(C, nb): the cage's comb lines that are a ball's own. The cage carries a damaged ball
    through the load zone, so the odd BSF line (the two races struck unequally) is modulated
    at FTF like everything the ball does: where that line is significant, lines at BSF and
    BSF ± FTF (each within 2 bins and 0.5 %, as shared lines) are the ball's. Where BSF is
    near a whole multiple of FTF (a 6205's is 5.92 ×) they sit on the cage's 5th–7th
    harmonics, and would make the ball's modulation read as a cage's comb."""
    nb = found.shape[1]
    out = np.zeros(found.shape, dtype=bool)
    if "ball" not in lay.families or "cage" not in lay.families:
        return out
    fi = lay.families.index("ball")
    odd = (lay.fam[:nb] == fi) & (np.array(lay.kinds[:nb]) == "sideband") & (lay.delta[:nb] == 0)
    if not odd.any():
        return out
    i = int(np.flatnonzero(odd)[0])
    ftf = found[:, lay.spans[lay.families.index("cage")][0]]  # the cage's fundamental as found
    for j in (-1.0, 0.0, 1.0):
        at = (found[:, i] + j * ftf)[:, None]
        out |= np.abs(found - at) <= 2.0 * df + 0.005 * found
    return out & sig[:, i : i + 1] & lay.cage_high[:nb]


def _interpolated_hz(env: F64, found: F64, df: float) -> F64:
    """(C, nb) the frequency of each line found (Hz, on a bin of ``env``, the rows' averaged
    envelope power) interpolated between bins: the Hann window's ratio of the larger
    neighbour's amplitude to the peak's (Grandke 1983), within a few hundredths of a bin for
    a line well out of the noise and never more than half a bin from the bin found."""
    n_rows, n_env = env.shape
    k = np.clip(np.rint(found / df).astype(np.intp), 1, n_env - 2)
    at = (k + (np.arange(n_rows) * n_env)[:, None])[..., None] + _NEIGHBOURS
    left, peak, right = np.moveaxis(np.sqrt(env.reshape(-1).take(at)), -1, 0)
    up = right > left
    alpha = np.where(up, right, left) / np.maximum(peak, _TINY)
    delta = np.clip((2.0 * alpha - 1.0) / (alpha + 1.0), 0.0, 0.5)
    return np.asarray((k + np.where(up, delta, -delta)) * df, dtype=np.float64)


def _coherent(
    f_at: F64, k: F64, fund_of: npt.NDArray[np.intp], df: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(C, nb) twice: whether each line is an *exact* harmonic ``k`` (≥ 2) of its family's
    fundamental ``fund_of`` as found (``f_at``, interpolated, each within half a bin: within
    ``(k + 1) / 2`` bins of ``k`` × it), and whether it puts the fundamental within the
    Hann main *lobe* (± 2 bins) of the line found there, each line again within half a bin
    (``(2.5 k + 0.5)`` bins: the fundamental merged with a stronger line beside it). Fundamentals and sidebands (``k`` = 1) are both (the sideband
    pair's symmetry is :func:`pdm.diagnosis.impact.impact_train`'s)."""
    off = np.abs(f_at - k * f_at[:, fund_of])
    exact = (k < 2) | (off <= 0.5 * (k + 1.0) * df)
    lobe = off <= (2.5 * k + 0.5) * df  # the fundamental ± 2 bins, each line ± half a bin
    return np.asarray(exact, dtype=bool), np.asarray(exact | lobe, dtype=bool)


def _on_shaft_order(f: F64, df: float, fr: float) -> npt.NDArray[np.bool_]:
    """(C, nb): whether each line found sits on a shaft order: its frequency interpolated
    between bins (``f``, Hz: :func:`_interpolated_hz`, found once a judgement) within a
    quarter bin and 0.1 % (the speed's precision, §1) of a whole multiple of ``fr``."""
    h = np.rint(f / fr)
    return (h >= 1) & (np.abs(f - h * fr) <= 0.25 * df + 0.001 * f)


_NEIGHBOURS = np.array([-1, 0, 1], dtype=np.intp)
_TINY = float(np.finfo(np.float64).tiny)


def _skipped(lay: BearingLayout) -> list[FamilyEvidence]:
    return [
        FamilyEvidence(family, False, -math.inf, math.nan, 0.0, 0, 0, (), 0, why)
        for family, why in lay.skipped
    ]
