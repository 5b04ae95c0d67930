"""Judging the averaged spectra of channels that share a bearing, in one vectorised pass: the
lines read where the plan puts them, the bearing and running-speed families, and the verdict
that ranks them (the rules of :mod:`pdm.diagnosis.rules`; docs/diagnosis.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.bearing import BearingSummary, judge_bearing
from pdm.diagnosis.confidence import confidence
from pdm.diagnosis.evidence import ChannelVerdict, FamilyEvidence
from pdm.diagnosis.layout import bearing_hz, bearing_min_db
from pdm.diagnosis.lines import F64, TINY, LinesRead, over_floor_db, read_lines
from pdm.diagnosis.plan import LinePlan, plan_lines
from pdm.diagnosis.rules import Rules
from pdm.diagnosis.speed import SpeedSummary, judge_speed
from pdm.dsp.iso import zone_limits

__all__ = [
    "BEARING_DEFECTS",
    "MIN_INDEPENDENT_WINDOWS",
    "judge_channel",
    "judge_channels",
    "names_bearing_defect",
]


def judge_channels(
    acc_power: F64 | None,
    env_power: F64 | None,
    df: float,
    shaft_hz: float,
    defect_multiples: dict[str, float] | None,
    k_eff: float,
    *,
    k_eff_env: float | None = None,
    rules: Rules = Rules(),
    iso_group: int = 2,
    foundation: str = "rigid",
    channels: Sequence[str] = (),
    healthy: tuple[F64 | None, F64 | None] | None = None,
    zero_power: F64 | None = None,
) -> list[ChannelVerdict]:
    """Judge the averaged spectra of channels that share a bearing, in one pass.

    Parameters
    ----------
    acc_power : (C, n_acc) averaged acceleration amplitude², g², bins ``k·df`` (or None)
    env_power : (C, n_env) averaged envelope amplitude², g², same bin spacing (or None)
    df : bin spacing, Hz
    shaft_hz : shaft frequency, Hz
    defect_multiples : the bearing's ``bpfo``/``bpfi``/``bsf``/``ftf`` in shaft orders,
        or None (no bearing: running-speed families only)
    k_eff : the independent windows the averages are worth (≥ 1)
    k_eff_env : the same for the envelope average when it differs (a band change
        restarts it)
    rules : thresholds; iso_group, foundation : the machine's ISO 10816-3 class
    channels : names, for the reasons (default: none)
    healthy : the machine's healthy (acceleration, envelope) power on the same bins
        (:meth:`pdm.diagnosis.baseline.Baseline.aligned`), or None: lines are judged over
        ``max(local floor, healthy)``
    zero_power : (C,) per channel, the power (g²) at or below which a bin is numerical zero:
        the square of one float32 step of the channel's level
        (:meth:`pdm.diagnosis.silence.Silence.state`). Bins below it are read as it: a line
        there is the samples' rounding (a noiseless tone's rounding repeats with it, in
        lines), not a measurement, and no line stands over such a floor by more than over
        the step. None: float64's smallest number only

    Returns
    -------
    list of ChannelVerdict, one per row
    """
    rows = next((x.shape[0] for x in (acc_power, env_power) if x is not None), 0)
    names = list(channels) or [""] * rows
    if not (math.isfinite(shaft_hz) and shaft_hz > 0 and df > 0):
        return [
            ChannelVerdict("unknown", 0.0, (), channel=nm, reasons=(f"{nm}: shaft speed unknown",))
            for nm in names
        ]
    bearing: list[list[BearingSummary]] = [[] for _ in range(rows)]
    build: Callable[[int], list[FamilyEvidence]] = lambda c: []  # noqa: E731
    speed: list[list[SpeedSummary]] = [[] for _ in range(rows)]
    build_speed: Callable[[int], list[FamilyEvidence]] = lambda c: []  # noqa: E731
    k_env = k_eff if k_eff_env is None else k_eff_env
    # Resolution: half-orders need min_bins_per_order bins per shaft order, bearing lines
    # (told from shaft harmonics within a bin) min_bins_per_order_bearing.
    per_order = shaft_hz / df
    if per_order < rules.min_bins_per_order_bearing:
        why = (
            f"{df:.3g} Hz bins against a {shaft_hz:.3g} Hz shaft: fewer than "
            f"{rules.min_bins_per_order_bearing:g} bins per shaft order cannot tell defect lines "
            f"from shaft harmonics; use windows at least "
            f"{2 ** math.ceil(math.log2(rules.min_bins_per_order * df / shaft_hz))}× as long"
        )
        return [
            ChannelVerdict("unknown", 0.0, (), channel=nm, reasons=(f"{nm}: {why}",))
            for nm in names
        ]
    has_env = env_power is not None and defect_multiples is not None and env_power.shape[1] > 16
    has_acc = (
        acc_power is not None and acc_power.shape[1] > 16 and per_order >= rules.min_bins_per_order
    )
    mult = (
        tuple(defect_multiples[k] for k in ("bpfo", "bpfi", "bsf", "ftf"))
        if has_env and defect_multiples is not None
        else None
    )
    plan = plan_lines(
        mult,
        env_power.shape[1] if has_env and env_power is not None else 0,
        acc_power.shape[1] if has_acc and acc_power is not None else 0,
        round(df / shaft_hz, 6),
        rules,
    )
    if plan.n_lines == 0:
        return [_verdict([], [], lambda: (), rules, nm) for nm in names]
    parts = [
        np.asarray(x, dtype=np.float64)
        for x, use in ((env_power, plan.n_env), (acc_power, plan.orders))
        if use and x is not None
    ]
    p = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    if zero_power is not None:
        p = np.maximum(p, np.asarray(zero_power, dtype=np.float64)[:, None])
    pb = None
    if healthy is not None:
        acc_h, env_h = healthy
        hp = [
            np.asarray(h, dtype=np.float64) if h is not None else np.zeros_like(x)
            for x, h, use in ((env_power, env_h, plan.n_env), (acc_power, acc_h, plan.orders))
            if use and x is not None
        ]
        pb = hp[0] if len(hp) == 1 else np.concatenate(hp, axis=1)
    lay, n_lay = plan.lay, plan.n_lay
    # Every line's floor in one gather (positions are fixed by the plan), then the comb.
    med = np.partition(p[:, plan.floor_idx], plan.floor_half, axis=-1)[..., plan.floor_half]
    floor = np.maximum(med, np.finfo(np.float64).tiny)
    hz = np.broadcast_to(plan.nominal_bins * df, floor.shape).copy()
    offsets = np.zeros((rows, 0))
    if lay is not None and lay.families:
        pe = p[:, : plan.n_env]
        # The comb sums lines, not skirts: a bin counts only where it is a local maximum (the
        # skirt of a line beside a harmonic's ± 1 bin would pull the comb off it: a gear's mesh
        # on 2 × BPFO and the skirt of the real BPFO beat the real BPFO with its 2nd harmonic).
        peak = np.zeros(pe.shape, dtype=bool)
        peak[:, 1:-1] = (pe[:, 1:-1] >= pe[:, :-2]) & (pe[:, 1:-1] >= pe[:, 2:])
        # Numerical zero (a dead channel's) has no prominence: over_floor_db's rule.
        log_env = np.log10(np.maximum(np.where(peak, pe, TINY), TINY))
        if pb is None:
            db = (
                log_env[:, plan.comb_idx].max(axis=-1)
                - _log_floor(floor[:, lay.harm_line])[:, None, :]
            )
        else:  # over max(floor, healthy) at every bin the comb reads
            ref = np.maximum(floor[:, lay.harm_line][:, None, :, None], pb[:, plan.comb_idx])
            db = (log_env[:, plan.comb_idx] - _log_floor(ref)).max(axis=-1)
        db = np.clip(db, 0.0, None) * lay.weight  # (C, E, H), B over the floor
        offsets = plan.eps[best_offset(np.add.reduceat(db, lay.starts, axis=2), axis=1)]
        hz[:, :n_lay] = bearing_hz(lay, offsets, shaft_hz)
    keff = np.where(plan.is_env, k_env, k_eff)
    min_db = np.maximum(plan.min_db, rules.min_line_db)
    if lay is not None:
        min_db[:n_lay] = bearing_min_db(lay, df, shaft_hz, k_env, rules)
    rd = read_lines(
        p, df, hz, plan.base, plan.lo, plan.hi, plan.half, floor, keff, rules.p_false, min_db, pb
    )
    if lay is not None:

        def judge(
            at: list[int] | slice, off: F64, lines: LinesRead
        ) -> tuple[list[list[BearingSummary]], Callable[[int], list[FamilyEvidence]]]:
            env = p[at, : plan.n_env]
            machine = near = None
            if pb is not None:
                # Where each line was found, how far the machine's healthy spectra stand over
                # the floor there (dB): a line they hold is the machine's, not the bearing's;
                # and the most they stand over it within the line's main lobe (± 2 bins).
                n_lay = lines.found.shape[1]
                kb = np.clip(np.rint(lines.found / df).astype(np.intp), 0, plan.n_env - 1)
                ph = pb[at, : plan.n_env]
                healthy_at = np.take_along_axis(ph, kb, axis=1)
                machine = over_floor_db(healthy_at, floor[at, :n_lay])
                lobe = np.clip(kb[..., None] + np.arange(-2, 3), 0, plan.n_env - 1)
                in_lobe = np.take_along_axis(ph[:, None, :], lobe, axis=2).max(axis=-1)
                near = over_floor_db(in_lobe, floor[at, :n_lay])
            return judge_bearing(
                lay, lines, off, df, shaft_hz, rules, env, k_env, baseline=pb is not None,
                machine_db=machine, machine_lobe_db=near,
            )  # fmt: skip

        bearing, build = judge(slice(None), offsets, rd.part(0, n_lay))
        if lay.families:
            bearing, build = _look_past_machine_lines(
                bearing, build, judge, db, offsets, rd, plan, p, floor, keff, min_db, pb,
                df, shaft_hz, rules,
            )  # fmt: skip
    if plan.orders:
        gate = rules.severity * zone_limits(iso_group, foundation)[1]
        speed, build_speed = judge_speed(
            rd.part(n_lay, plan.n_lines), list(plan.orders), shaft_hz, gate, rules
        )

    def families(c: int) -> Callable[[], tuple[FamilyEvidence, ...]]:
        return lambda: (*build(c), *build_speed(c))

    return [_verdict(bearing[c], speed[c], families(c), rules, names[c]) for c in range(rows)]


#: A bearing family is named only from this confidence on: more likely right than not
#: (docs/diagnosis.md §7); below it the verdict is ``bearing_uncertain``.
CONFIDENCE_FLOOR = 0.5

#: The labels that name a defect of a rolling bearing, one per defect family.
BEARING_DEFECTS = ("bearing_outer_race", "bearing_inner_race", "bearing_ball", "bearing_cage")

#: Independent windows an average must be worth before a defect it names counts as a
#: fault on its own (:func:`names_bearing_defect`). A bin of an average of K independent
#: power spectra scatters by 1/√K of its mean: ±1.8 dB at 6, well under the 6 dB and more
#: a defect line must stand over its floor; at 1–2 windows the largest of the hundreds of
#: bins a comb searches stands that high by chance (a healthy 22205 beside a gear's mesh
#: read an inner race at 0.57 on its first two windows, docs/diagnosis.md §13). The engine
#: judges anew at 1, 2, 4, 8, 16 … windows; at 50 % overlap 4 are worth 3.8 independent
#: windows and 8 are worth 7.6: the first judgement that counts is the eighth window's.
MIN_INDEPENDENT_WINDOWS = 6.0


def names_bearing_defect(label: str | None, confidence: float, k_eff: float) -> bool:
    """True when a diagnosis names a bearing defect family (not ``bearing_uncertain``) at
    :data:`CONFIDENCE_FLOOR` or more, from an average worth ``k_eff`` ≥
    :data:`MIN_INDEPENDENT_WINDOWS` independent windows.

    Judged over a model's healthy spectra, that is a fault by itself: ``score`` and the
    service raise such a window to ``alert`` whatever its anomaly score (docs/models.md,
    "A bearing defect the diagnosis names").

    >>> names_bearing_defect("bearing_ball", 0.94, 15.2)
    True
    >>> names_bearing_defect("bearing_ball", 0.94, 1.9), names_bearing_defect("bearing_uncertain", 0.9, 15.2)
    (False, False)
    """
    return (
        label in BEARING_DEFECTS
        and math.isfinite(confidence)
        and confidence >= CONFIDENCE_FLOOR
        and k_eff >= MIN_INDEPENDENT_WINDOWS
    )


#: Statuses of a race whose comb settled on a line of the machine, not an impact train.
_MACHINE_LINE = ("unsupported", "lone_line", "shaft_locked", "on_mains", "on_shaft")


def _look_past_machine_lines(
    bearing: list[list[BearingSummary]],
    build: Callable[[int], list[FamilyEvidence]],
    judge: Callable[
        [list[int], F64, LinesRead],
        tuple[list[list[BearingSummary]], Callable[[int], list[FamilyEvidence]]],
    ],
    db: F64,
    offsets: F64,
    rd: LinesRead,
    plan: LinePlan,
    p: F64,
    floor: F64,
    keff: F64,
    min_db: F64,
    pb: F64 | None,
    df: float,
    shaft_hz: float,
    rules: Rules,
) -> tuple[list[list[BearingSummary]], Callable[[int], list[FamilyEvidence]]]:
    """A second look for a race whose comb settled on a line of the machine.

    A stationary line within the slip of a race's kinematic frequency (a tone, two tones
    beating in the band, a gear's mesh, a blade pass, the motor's pull) outweighs a weaker
    impact train beside it in the comb search, and the race is then judged on the machine's
    line (unsupported, a lone line, locked to the shaft, on a mains line or a shaft comb): a
    fault there is missed. Where that happened, the comb is searched again with the line's
    main lobe (± 2 bins) left out and the row judged again; the second reading is kept where
    it makes a race present that was not — by the same rules, so a healthy machine's noise
    must still pass every test of an impact train.
    """
    lay = plan.lay
    assert lay is not None
    todo = [
        (c, fi)
        for c, row in enumerate(bearing)
        for fi, f in enumerate(row)
        if f.family in ("outer_race", "inner_race") and f.status in _MACHINE_LINE
    ]
    if not todo:
        return bearing, build
    fund = [a for a, _b in lay.spans]
    tot = np.add.reduceat(db, lay.starts, axis=2)  # (C, E, F) the comb's sums
    centre = plan.comb_idx[:, lay.starts, 1]  # (E, F) each fundamental's bin per offset
    again = offsets.copy()
    rows: list[int] = []
    for c, fi in todo:
        away = np.abs(centre[:, fi] - rd.found[c, fund[fi]] / df) > 2.0
        if away.any():
            again[c, fi] = plan.eps[int(best_offset(np.where(away, tot[c, :, fi], -np.inf)))]
            rows += [c] if c not in rows else []
    if not rows:
        return bearing, build
    b = slice(0, plan.n_lay)  # the bearing's lines only: the running-speed ones stand
    rd2 = read_lines(
        p[rows], df, bearing_hz(lay, again[rows], shaft_hz), plan.base[b], plan.lo[b],
        plan.hi[b], plan.half[b], floor[rows, b], keff[b], rules.p_false, min_db[b],
        None if pb is None else pb[rows],
    )  # fmt: skip
    bearing2, build2 = judge(rows, again[rows], rd2)
    second: dict[int, int] = {}
    for j, c in enumerate(rows):
        if any(
            b.present and not a.present and b.family in ("outer_race", "inner_race")
            for a, b in zip(bearing[c], bearing2[j], strict=True)
        ):
            bearing[c] = bearing2[j]
            second[c] = j
    if not second:
        return bearing, build
    return bearing, lambda c: build2(second[c]) if c in second else build(c)


def judge_channel(
    acc_power: F64 | None,
    env_power: F64 | None,
    df: float,
    shaft_hz: float,
    defect_multiples: dict[str, float] | None,
    k_eff: float,
    *,
    k_eff_env: float | None = None,
    rules: Rules = Rules(),
    iso_group: int = 2,
    foundation: str = "rigid",
    channel: str = "",
) -> ChannelVerdict:
    """:func:`judge_channels` for one channel's (n,) spectra."""
    return judge_channels(
        None if acc_power is None else np.asarray(acc_power)[None],
        None if env_power is None else np.asarray(env_power)[None],
        df,
        shaft_hz,
        defect_multiples,
        k_eff,
        k_eff_env=k_eff_env,
        rules=rules,
        iso_group=iso_group,
        foundation=foundation,
        channels=[channel],
    )[0]


def _verdict(
    bearing: list[BearingSummary],
    speed: list[SpeedSummary],
    build: Callable[[], tuple[FamilyEvidence, ...]],
    rules: Rules,
    channel: str,
) -> ChannelVerdict:
    present = [f for f in bearing if f.present]
    if len(present) > 1 and {"ball", "cage"} <= {f.family for f in present}:
        # A ball's impacts are modulated at FTF: FTF and its first harmonic, and FTF sidebands
        # around 2×BSF. A cage fault strikes once per cage turn: a long comb of FTF harmonics,
        # some of which fall where a ball's lines would. Three clean harmonics from 3×FTF up
        # are a cage's comb; otherwise the FTF lines are the ball's.
        cage = next(f for f in present if f.family == "cage")
        drop = "ball" if cage.cage_comb >= 3 else "cage"
        present = [f for f in present if f.family != drop]
    # An FTF-like comb in the spectrum: this bearing's cage, or one that fits another spacing
    # (another bearing's cage on the shaft, a half-order series).
    comb = any(f.family == "cage" and f.status in ("present", "other_comb") for f in bearing)
    if comb and len(present) > 1 and {"outer_race", "cage"} <= {f.family for f in present}:
        # BPFO = n × FTF: a cage fault's comb runs through BPFO. An outer race stands out of
        # the comb (its neighbours BPFO ± FTF); where it does not, its lines are the cage's.
        # Where it does, the comb is the race's sub-multiple series (rolling elements of
        # unequal size strike the defect unequally, once per cage turn): not a cage fault.
        outer = next(f for f in present if f.family == "outer_race")
        drop = "cage" if outer.above_comb else "outer_race"
        present = [f for f in present if f.family != drop]
    if comb:
        # A race whose line does not stand out of the comb (fundamental ± FTF) is one of the
        # comb's lines: a comb 0.4 × shaft apart meets BPFI and BPFO within the slip.
        present = [
            f for f in present if f.family not in ("outer_race", "inner_race") or f.above_comb
        ]
    present.sort(key=lambda f: -f.score_db)
    speed_fault = next((f for f in speed if f.present), None)
    if present:
        best = present[0]
        rival = present[1] if len(present) > 1 else None
        strength = best.prom - best.thr
        other = {"outer_race": "inner_race", "inner_race": "outer_race"}.get(best.family)
        # A line alone (no support) or a lone line (no harmonic at an impact train's bound, no
        # sideband pair) stronger than the named fundamental is a stationary line of the
        # machine: a train that strong would show its 2nd harmonic at most 9.5 dB under it
        # ((1.5 k)², k = 2), over any line's physical minimum. It is neither the other race
        # seen nor a rival.
        tone_db = rules.min_line_db + 20.0 * math.log10(3.0)
        others = [
            f
            for f in bearing
            if f is not best
            and not (f.status in ("unsupported", "lone_line") and f.prom > max(best.prom, tone_db))
        ]
        both = next((f for f in others if f.family == other and f.seen), None)
        competing = rival
        # The strongest other fundamental that nothing else explains (significant, on no
        # shaft comb, no other family's line) is a rival even when its family is incomplete.
        runner = max((f for f in others if f.clean), key=lambda f: f.prom, default=None)
        if rival is None and runner is not None and best.score_db < runner.prom:
            # The confidence floor: the named family's lines, harmonics and sidebands together
            # do not lead another family's fundamental (a margin under 0 dB, a confidence
            # under 0.44: docs/diagnosis.md §7). Some bearing defect is there; which one is
            # uncertain, and a label named at 0.02 would read as a call.
            competing = runner
        elif rival is None and both is not None and best.prom - both.prom < rules.compete_db:
            # One race's defect puts no line at the other race's rate; lines at both, the
            # named one not clearly stronger, are what a rolling element striking both races
            # (or damage on both) shows: no confident race.
            competing = both
        elif (
            rival is not None
            and rival.family == other
            and best.prom - rival.prom < rules.compete_db
        ):
            # The other race present too, its fundamental within 6 dB of the named one's:
            # lines at both races' rates, as when it is only seen (above) — support added to
            # the named one's score does not make one race's defect put a line at the other's.
            competing = rival
        elif rival is not None and best.score_db - rival.score_db >= rules.compete_db:
            competing = None
        if competing is not None:
            return _uncertain(best, strength, speed_fault, build, channel, rival=competing.family)
        if rival is not None:
            # Another family is present too, with its own characteristic lines: the named one
            # won, but by how much beyond the point where the two would be uncertain is what
            # the confidence rests on (calibrated apart: "bearing_contested").
            margin = min(strength, best.score_db - rival.score_db - rules.compete_db)
            kind = "bearing_contested"
        else:
            lead = best.score_db - runner.prom if runner is not None else math.inf
            margin = min(strength, lead)
            kind = ""
        if best.bare:
            # A bare FTF comb cannot be told from another bearing's cage on the same shaft
            # (every cage turns at ≈ 0.4 × shaft): no better than even, whatever its size.
            kind = "bearing_cage_bare"
        if confidence(best.label, margin, kind) < CONFIDENCE_FLOOR:
            # The floor: a family less likely right than not (its fundamental within half a dB
            # of its threshold, or of the line it must lead) is not named. Some bearing defect
            # may be there; which one is uncertain.
            return _uncertain(best, strength, speed_fault, build, channel, floor=True)
        return ChannelVerdict(
            best.label,
            margin,
            build,
            channel=channel,
            best=best.family,
            rival=rival.family if rival is not None else "",
            calibration=kind,
            strength_db=best.score_db,
        )
    if speed_fault is not None:
        return ChannelVerdict(
            speed_fault.label, speed_fault.score_db, build, channel=channel, best=speed_fault.family
        )
    return ChannelVerdict("unknown", 0.0, build, channel=channel)


def _uncertain(
    best: BearingSummary,
    strength: float,
    speed_fault: SpeedSummary | None,
    build: Callable[[], tuple[FamilyEvidence, ...]],
    channel: str,
    *,
    rival: str = "",
    floor: bool = False,
) -> ChannelVerdict:
    """``bearing_uncertain`` for ``best`` (against ``rival``, or under the confidence floor);
    a running-speed fault, when one is present, wins over an uncertain bearing verdict."""
    if speed_fault is not None:
        return ChannelVerdict(
            speed_fault.label, speed_fault.score_db, build, channel=channel, best=speed_fault.family
        )
    return ChannelVerdict(
        "bearing_uncertain",
        strength,
        build,
        channel=channel,
        best=best.family,
        rival=rival,
        calibration="below_floor" if floor else "",
        strength_db=best.score_db,
    )


def best_offset(score: F64, axis: int = -1) -> npt.NDArray[np.intp]:
    """The index of the comb's best offset along ``axis`` of ``score`` (the comb's sums, one
    per offset of an evenly spaced, symmetric grid); where several offsets tie, the tied one
    nearest the middle of the tied ones.

    The comb reads each line as the largest of three bins, so where the bins are coarse
    against the slip allowed (a 3 % slip of an 81 Hz BPFO is 0.8 of a 2.98 Hz bin) a run of
    neighbouring offsets reads the very same bins and ties exactly. The first of them —
    ``argmax``'s choice — is the run's lowest offset, as far below the line as the run
    reaches (−3 % for a line found 0.8 % below kinematics): a skewed fundamental and
    sidebands looked for in the wrong place, and a family's strength taken down 200 dB per
    unit of offset against the others'. The middle of the run is where the lines are; a comb
    that reads nothing (all zero) sits at kinematics.
    """
    s = np.moveaxis(np.asarray(score, dtype=np.float64), axis, -1)
    n = s.shape[-1]
    best = s.max(axis=-1, keepdims=True)
    tied = s >= best - 1e-9 * np.maximum(1.0, np.abs(best))
    first = np.argmax(tied, axis=-1)
    last = n - 1 - np.argmax(tied[..., ::-1], axis=-1)
    middle = 0.5 * (first + last)
    dist = np.where(tied, np.abs(np.arange(n) - middle[..., None]), np.inf)
    out: npt.NDArray[np.intp] = np.argmin(dist, axis=-1)
    return out


def _log_floor(floor: F64) -> F64:
    """``log10(floor)``, +inf where the floor is numerical zero: nothing stands over it
    (:func:`pdm.diagnosis.lines.over_floor_db`)."""
    with np.errstate(divide="ignore"):
        return np.where(floor > TINY, np.log10(np.maximum(floor, TINY)), np.inf)
