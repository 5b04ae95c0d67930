"""The evidence of a judgement: lines as found, what a family's lines say, a channel's verdict.

Value objects only (:mod:`pdm.diagnosis.rules` says what the rules are); the text of the
notes and reasons is built when first read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from pdm.diagnosis.rules import CAGE_SUPPORT, FAMILY_LABEL, SYMBOL

__all__ = ["ChannelVerdict", "FamilyEvidence", "LineEvidence"]


class LineEvidence(NamedTuple):
    """One spectral line as found.

    Attributes
    ----------
    name : e.g. ``"BPFO 2×"``, ``"BPFI 1× − 1×shaft"``, ``"1×"``
    kind : ``"harmonic"``, ``"sideband"``, ``"order"``, or ``"neighbour"`` (BPFO ± FTF, read to
        tell an outer race from a cage's comb; never support)
    expected_hz : where kinematics and the family's found offset put it, Hz
    found_hz : the strongest bin in the search range, Hz
    amplitude_g : the line's amplitude in g (main-lobe energy; envelope or acceleration)
    prominence_db : ``10·log10(peak / local floor)``, dB
    threshold_db : what a significant line needs here (statistics and physics), dB
    significant : over the threshold, and a local maximum
    shared_with : another family's line this line coincides with ('' if none)
    at_shaft : the shaft harmonic it sits on within the resolution, else 0
    """

    name: str
    kind: str
    expected_hz: float
    found_hz: float
    amplitude_g: float
    prominence_db: float
    threshold_db: float
    significant: bool
    shared_with: str = ""
    at_shaft: int = 0

    def text(self) -> str:
        extra = f", shared with {self.shared_with}" if self.shared_with else ""
        extra += f", on {self.at_shaft}× shaft" if self.at_shaft else ""
        return (
            f"{self.name} {self.found_hz:.1f} Hz: {self.amplitude_g:.3g} g, "
            f"{self.prominence_db:+.1f} dB over the floor{extra}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "expected_hz": round(self.expected_hz, 3),
            "found_hz": round(self.found_hz, 3),
            "amplitude_g": float(f"{self.amplitude_g:.6g}"),
            "prominence_db": round(self.prominence_db, 2),
            "threshold_db": round(self.threshold_db, 2),
            "significant": self.significant,
            "shared_with": self.shared_with or None,
            "on_shaft_harmonic": self.at_shaft or None,
        }


class FamilyEvidence(NamedTuple):
    """What one fault family's lines say.

    Attributes
    ----------
    family : ``outer_race``, ``inner_race``, ``ball``, ``cage``, ``unbalance``,
        ``misalignment`` or ``looseness``
    present : the family's rule is met (:mod:`pdm.diagnosis.rules`)
    score_db : ranking score (bearing: fundamental prominence plus support; running speed:
        dB of the lines' velocity over the gate), −inf when the shape is not there
    fundamental_hz : the fundamental as found (bearing) or the shaft frequency, Hz
    offset : the found fractional offset ``ε`` from kinematics (bearing)
    harmonics : significant harmonics (the fundamental included)
    sidebands : significant predicted sidebands (running speed: sub-harmonics)
    lines : every line read, fundamental first
    support : supporting lines that count (bearing: significant, unshared, not on a shaft
        harmonic where the envelope shows a running-speed comb)
    status : why (not) present, a key of the note (``present``, ``weak``, ``shared``,
        ``on_shaft``, ``on_mains``, ``shaft_locked``, ``unsupported``, ``lone_line``,
        ``no_ftf_sideband``, ``other_comb``, ``beyond``, ``near_dc``;
        running speed: ``present``, ``no_shape``, ``below_gate``)
    velocity_mm_s : running speed: velocity RMS of the deciding lines, mm/s
    gate_mm_s : running speed: the severity gate, mm/s
    detail : a number the note quotes (the 2×/1× ratio, the dominance, a cage's better
        spacing, the harmonic a hidden fundamental is judged on, Hz, …)
    """

    family: str
    present: bool
    score_db: float
    fundamental_hz: float
    offset: float
    harmonics: int
    sidebands: int
    lines: tuple[LineEvidence, ...]
    support: int = 0
    status: str = ""
    velocity_mm_s: float = math.nan
    gate_mm_s: float = math.nan
    detail: float = math.nan

    @property
    def label(self) -> str:
        return FAMILY_LABEL[self.family]

    @property
    def bearing(self) -> bool:
        return self.family in SYMBOL

    @property
    def note(self) -> str:
        """Why the family is (not) present, in words, with its numbers."""
        if self.bearing:
            return _bearing_note(self)
        return _speed_note(self)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "present": self.present,
            "score_db": _r(self.score_db),
            "fundamental_hz": _r(self.fundamental_hz, 3),
            "harmonics": self.harmonics,
            "sidebands": self.sidebands,
            "note": self.note,
            "lines": [ln.as_dict() for ln in self.lines],
        }
        if self.bearing:
            out["offset_pct"] = _r(100.0 * self.offset, 2)
        else:
            out["velocity_rms_mm_s"] = _r(self.velocity_mm_s, 3)
        return out


def _bearing_note(f: FamilyEvidence) -> str:
    sym = SYMBOL[f.family]
    fund = f.lines[0] if f.lines else None
    if fund is None:
        return (
            f"{sym} lies beyond the envelope spectrum"
            if f.status == "beyond"
            else f"{sym} is too close to 0 Hz at this resolution"
        )
    db = f"{fund.prominence_db:+.1f} dB over the floor"
    if f.status == "present" and f.family != "cage" and math.isfinite(f.detail):
        by = next((ln for ln in f.lines if ln.found_hz == f.detail), None)
        seen = f"{by.name} {by.found_hz:.2f} Hz, {by.prominence_db:+.1f} dB" if by else ""
        return (
            f"{sym} hidden beneath a line of the machine at {fund.found_hz:.2f} Hz (the motor's "
            f"pull, or one its healthy spectra hold), judged on its harmonic behind it ({seen} "
            f"over the floor); {f.harmonics} harmonic(s), {f.sidebands} sideband(s) significant"
        )
    if f.status == "present":
        text = (
            f"{sym} at {fund.found_hz:.2f} Hz ({100 * f.offset:+.1f} % from kinematics), {db}; "
            f"{f.harmonics} harmonic(s), {f.sidebands} sideband(s) significant"
        )
        if f.family == "cage" and f.sidebands == 0:
            text += (
                "; a bare FTF comb (no other line modulated at ± FTF): another bearing's cage "
                "on this shaft would look the same, so it is no better than even"
            )
        return text
    if f.status == "other_comb":
        kin = fund.expected_hz / (1.0 + f.offset)
        return (
            f"{sym} {db}, but the comb fits a spacing of {f.detail:.2f} Hz "
            f"({100 * (f.detail / kin - 1):+.1f} % from this bearing's FTF) better: another "
            "bearing's cage on this shaft, or a sub-harmonic series of the shaft speed"
        )
    if f.status == "weak":
        return f"{sym} {db} (needs {fund.threshold_db:.1f})"
    if f.status == "shared":
        return f"{sym} {db} is {fund.shared_with}'s line"
    if f.status == "on_shaft":
        return (
            f"{sym} {db} sits on {fund.at_shaft}× shaft, and the envelope shows (or cannot "
            "rule out) a running-speed comb that could put a line there"
        )
    if f.status == "on_mains":
        return (
            f"{sym} {db} sits on {fund.found_hz:.1f} Hz, a harmonic of twice the line "
            "frequency (50/60 Hz mains): an AC motor's pull there cannot be told from it"
        )
    if f.status == "shaft_locked":
        return (
            f"{sym} {db} sits on {fund.at_shaft}× shaft, as do all its supporting lines: a source turning with the shaft (a gear's "
            "mesh, a blade pass, a coupling) puts its lines exactly on shaft orders, a bearing's "
            "slip off them; without the machine's healthy spectra the two cannot be told apart"
        )
    if f.status == "lone_line":
        return (
            f"{sym} {db}, but neither a harmonic as strong as an impact train's (k-th at "
            "≥ 1/(1.5 k) of it) nor a sideband pair symmetric about it (± the same shaft "
            "order) is significant: a stationary line of the machine (a tone, tones beating "
            "in the band), not an impact train — no bearing fault"
        )
    if f.status == "no_ftf_sideband":
        return f"{sym} {db}, but no FTF sideband (the cage's modulation of a ball)"
    need = CAGE_SUPPORT if f.family == "cage" else 1
    return (
        f"{sym} {db}, but {f.support} supporting line(s) of {need} needed (harmonics or "
        "sidebands, not another family's, not on a shaft comb)"
    )


def _mm_s(v: float) -> str:
    """A velocity as the reasons print it: two decimals, never a bare "0.00"."""
    return f"{v:.2f} mm/s" if v >= 0.005 else "below 0.01 mm/s"


def _speed_note(f: FamilyEvidence) -> str:
    gate = f"gate {f.gate_mm_s:.2f} mm/s"
    if f.family == "looseness":
        return (
            f"{f.harmonics} harmonics 2×–10× and {f.sidebands} sub-harmonics significant, "
            f"series {_mm_s(f.velocity_mm_s)} ({gate})"
        )
    if f.family == "misalignment":
        return f"2× is {f.detail:.2f} × the 1× line, 1× and 2× {_mm_s(f.velocity_mm_s)} ({gate})"
    one = f.lines[0] if f.lines else None
    if one is not None and not one.significant:
        # Its velocity counts only when the line stands out: of the floor, or with a model of
        # the machine's healthy 1× (docs/diagnosis.md §6), which a steady unbalance does not.
        return (
            f"1× not significant ({one.prominence_db:+.1f} dB over the floor or the machine's "
            f"healthy 1×, needs {one.threshold_db:.1f}; {gate})"
        )
    dom = f"{f.detail:.1f} × 2× and 3×" if math.isfinite(f.detail) else "no 2×/3× line"
    return f"1× {_mm_s(f.velocity_mm_s)} ({dom}; {gate})"


class ChannelVerdict:
    """One channel's judgement; its evidence and reasons are built when first read.

    Attributes
    ----------
    label : one of :data:`DIAGNOSES`
    margin_db : how clearly the label won, dB (the input of the confidence)
    calibration : the confidence map to read ``margin_db`` with when not the label's own
        (``"bearing_contested"``: a named bearing family with another one present;
        ``"bearing_cage_bare"``: a cage named on a bare FTF comb, at most even), or ''
    strength_db : a bearing verdict's best family score (dB), how strong its evidence is;
        nan for the others
    families : every family examined, bearing families first
    reasons : human-readable lines with numbers, the deciding one first
    """

    __slots__ = (
        "_best",
        "_build",
        "_families",
        "_pre",
        "_reasons",
        "_rival",
        "calibration",
        "label",
        "margin_db",
        "strength_db",
    )

    def __init__(
        self,
        label: str,
        margin_db: float,
        families: tuple[FamilyEvidence, ...] | Callable[[], tuple[FamilyEvidence, ...]],
        *,
        channel: str = "",
        best: str = "",
        rival: str = "",
        reasons: tuple[str, ...] | None = None,
        calibration: str = "",
        strength_db: float = math.nan,
    ) -> None:
        self.label = label
        self.margin_db = margin_db
        self.calibration = calibration
        self.strength_db = strength_db
        self._families: tuple[FamilyEvidence, ...] | None = None
        self._build: Callable[[], tuple[FamilyEvidence, ...]] | None = None
        if callable(families):
            self._build = families
        else:
            self._families = families
        self._pre = f"{channel}: " if channel else ""
        self._best = best
        self._rival = rival
        self._reasons = reasons

    @property
    def families(self) -> tuple[FamilyEvidence, ...]:
        if self._families is None:
            assert self._build is not None
            self._families, self._build = self._build(), None
        return self._families

    def family(self, name: str) -> FamilyEvidence | None:
        return next((f for f in self.families if f.family == name), None)

    @property
    def named_families(self) -> tuple[str, ...]:
        """The families the label rests on: the named one, and for ``bearing_uncertain`` or a
        contested verdict the rival too ('' entries left out)."""
        return tuple(f for f in (self._best, self._rival) if f)

    @property
    def reasons(self) -> tuple[str, ...]:
        if self._reasons is None:
            self._reasons = _reasons(self)
        return self._reasons

    def __repr__(self) -> str:
        return f"ChannelVerdict({self.label!r}, margin_db={self.margin_db:.1f})"


def _reasons(v: ChannelVerdict) -> tuple[str, ...]:
    pre = v._pre
    fams = v.families
    bearing = [f for f in fams if f.bearing]
    speed = [f for f in fams if not f.bearing]
    speed_fault = next((f for f in speed if f.present), None)
    best = v.family(v._best) if v._best else None
    rival = v.family(v._rival) if v._rival else None
    out: list[str] = []

    def named(f: FamilyEvidence) -> list[str]:
        lines = [f"{pre}{f.family.replace('_', ' ')}: {f.note}"]
        lines += [f"{pre}  {ln.text()}" for ln in f.lines[1:] if ln.significant][:6]
        return lines

    races = {"outer_race", "inner_race"}
    if v.label == "bearing_uncertain" and v.calibration == "below_floor" and best is not None:
        out.append(
            f"{pre}bearing fault, type uncertain: {SYMBOL[best.family]} is present, but its "
            f"margin ({v.margin_db:+.1f} dB over its threshold at most) is under the confidence "
            "floor: less likely right than not, so not named"
        )
        out += named(best)
    elif (
        v.label == "bearing_uncertain"
        and best is not None
        and rival is not None
        and not rival.present
        and best.score_db < rival.lines[0].prominence_db
    ):
        out.append(
            f"{pre}bearing fault, type uncertain: {SYMBOL[best.family]} is present, but its "
            f"lines together ({best.score_db:.1f} dB) do not lead {SYMBOL[rival.family]}, "
            f"which stands out by itself ({rival.lines[0].prominence_db:+.1f} dB): which defect "
            "it is cannot be said"
        )
        out += named(best)[:1] + named(rival)[:1]
    elif (
        v.label == "bearing_uncertain"
        and best is not None
        and rival is not None
        and {best.family, rival.family} <= races
    ):  # seen or present: lines at both races' rates (pdm.diagnosis.verdict)
        out.append(
            f"{pre}bearing fault, type uncertain: {SYMBOL[best.family]} is present and "
            f"{SYMBOL[rival.family]} stands out too ({rival.lines[0].prominence_db:+.1f} dB "
            f"against {best.lines[0].prominence_db:+.1f} dB): a defect of one race puts no "
            "line at the other's rate; a rolling element striking both races, or damage on "
            "both, does"
        )
        out += named(best)[:1] + named(rival)[:1]
    elif v.label == "bearing_uncertain" and best is not None and rival is not None:
        out.append(
            f"{pre}bearing fault, type uncertain: {SYMBOL[best.family]} "
            f"({best.score_db:.1f} dB) and {SYMBOL[rival.family]} ({rival.score_db:.1f} dB) "
            f"are both present and score within {best.score_db - rival.score_db:.1f} dB"
        )
        out += named(best)[:1] + named(rival)[:1]
    elif best is not None and best.bearing:
        out += named(best)
        others = [f for f in bearing if f is not best]
        nxt = rival or max(others, key=lambda f: f.score_db, default=None)
        if nxt is not None:
            out.append(f"{pre}next: {nxt.family.replace('_', ' ')}: {nxt.note}")
        if speed_fault is not None:
            out.append(f"{pre}also {speed_fault.label}: {speed_fault.note}")
    elif best is not None:
        out.append(f"{pre}{best.label}: {best.note}")
        out += [f"{pre}  {ln.text()}" for ln in best.lines if ln.significant][:4]
    else:
        lines = [f for f in bearing if f.lines]
        if lines:
            top = max(lines, key=lambda f: f.lines[0].prominence_db)
            out.append(f"{pre}no bearing defect family present; strongest: {top.note}")
        elif bearing:
            out.append(f"{pre}no bearing defect line can be read: {bearing[0].note}")
        unb = next((f for f in speed if f.family == "unbalance"), None)
        if unb is not None:
            out.append(f"{pre}no running-speed fault; {unb.note}")
    return tuple(out) or (f"{pre}nothing to judge",)


def _r(v: float, nd: int = 2) -> float | None:
    return round(v, nd) if math.isfinite(v) else None
