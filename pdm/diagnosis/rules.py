"""Judging fault families on averaged spectra: line prominence, harmonics, sidebands.

Everything here is a pure function of averaged spectra (:mod:`pdm.diagnosis.average`),
the shaft frequency and the bearing's defect multiples. The rules, with the reasons
for each, are in ``docs/diagnosis.md``; in short:

* A **line** is the strongest bin within its search range of a power spectrum, and must
  be a local maximum (the skirt of a stronger neighbour is not a line). Its
  *prominence* is ``10·log10(peak / floor)`` dB, the *local floor* being the median of
  the bins around it outside a gap that holds its own search range and main lobe.
* A line is **significant** when its prominence passes a statistical threshold (an
  averaged noise bin passes it with probability :attr:`Rules.p_false` anywhere in the
  bins searched: the power of ``K`` independent averaged windows follows a Gamma(K)
  law) and a physical minimum (:attr:`Rules.min_line_db`).
* A **bearing family** — outer race BPFO, inner race BPFI, ball 2 × BSF (a spalled
  ball strikes both races once per spin revolution), cage FTF — is searched in the
  envelope spectrum as a comb: one offset ``ε`` within ± ``slip_tolerance`` (slip moves
  every harmonic by the same fraction) maximises the summed prominence of its
  harmonics (the fundamental weighted as much as the others together); the lines are
  then read at ``h·(1 + ε)·f`` ± 1 bin. Sidebands are read where physics puts them:
  BPFI ± 1× and ± 2× shaft (the defect turns through the load zone), 2 × BSF ± FTF (the
  cage carries the ball through it), and the odd BSF line of a ball.
* A line another family holds (found within 2 bins and 0.5 % of one of its lines; the
  family with the stronger fundamental holds it) is *shared*: evidence for neither.
* A line on a shaft harmonic (within a bin and 0.1 %) counts only when the envelope
  shows no running-speed comb: significant shaft harmonics that none of the family's own
  lines explains (a quarter of them, at least one), or too few such harmonics to tell. A
  fundamental on a harmonic of twice the line frequency (100/120 Hz, …: an AC motor's
  electromagnetic pull) cannot be told from it: the family is not present.
* A family is **present** when its fundamental is significant, at least
  :attr:`Rules.min_fundamental_db` over the floor, neither shared, nor on a shaft comb,
  nor on a mains line, and a supporting line (a harmonic or sideband, significant, not
  shared, not on a shaft comb) confirms it — three for the cage (a comb of FTF harmonics), and for the
  ball one of them an FTF sideband.
* Present families are ranked by **score**: the fundamental's prominence plus
  :attr:`Rules.support_db` per supporting line, two at most. The best is named unless
  another present family scores within :attr:`Rules.compete_db`: ``bearing_uncertain``.
  When ball and cage are both present, three clean FTF harmonics from 3 × FTF up are a
  cage's comb (the ball is dropped); otherwise the FTF lines are the ball's modulation.
  BPFO = n × FTF: with the cage present, an outer race must stand 6 dB over BPFO ± FTF,
  its neighbours in the cage's comb, or its lines are the cage's.
* **Running-speed families** are read in the acceleration spectrum at 0.5×, 1×, 1.5×,
  2×, 2.5×, 3×, 4× … 10× shaft speed: looseness (many harmonics, or sub-harmonics),
  misalignment (2× at least 1×), unbalance (1× at least twice 2× and 3×). Each needs
  the velocity RMS of its lines at the machine's ISO 10816-3 zone B/C boundary: a 1×
  line is in every machine, and below B/C the machine is fit for long-term operation; it
  is unbalance when it dominates *and* is that large.

The numeric work for all channels that share a bearing is done in one vectorised pass;
the evidence objects and their text are built only when read
(:attr:`ChannelVerdict.families`, :attr:`ChannelVerdict.reasons`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import gammainccinv

from pdm.dsp.iso import zone_limits

__all__ = [
    "BEARING_FAMILIES",
    "DIAGNOSES",
    "FAMILY_LABEL",
    "SPEED_FAMILIES",
    "ChannelVerdict",
    "FamilyEvidence",
    "LineEvidence",
    "Rules",
    "judge_channel",
    "judge_channels",
    "line_threshold_db",
    "refine_speed",
]

F64 = npt.NDArray[np.float64]

#: Every diagnosis label, as ``pdm-edge score`` has always written them.
DIAGNOSES: tuple[str, ...] = (
    "bearing_outer_race",
    "bearing_inner_race",
    "bearing_ball",
    "bearing_cage",
    "bearing_uncertain",
    "unbalance",
    "misalignment",
    "looseness",
    "unknown",
)

#: Bearing families: (family, defect key of the fundamental, multiple of that defect).
BEARING_FAMILIES: tuple[tuple[str, str, float], ...] = (
    ("outer_race", "bpfo", 1.0),
    ("inner_race", "bpfi", 1.0),
    ("ball", "bsf", 2.0),  # a spalled ball strikes both races once per spin revolution
    ("cage", "ftf", 1.0),
)
SPEED_FAMILIES: tuple[str, ...] = ("looseness", "misalignment", "unbalance")
FAMILY_LABEL: dict[str, str] = {
    "outer_race": "bearing_outer_race",
    "inner_race": "bearing_inner_race",
    "ball": "bearing_ball",
    "cage": "bearing_cage",
    "unbalance": "unbalance",
    "misalignment": "misalignment",
    "looseness": "looseness",
}
_SYMBOL = {"outer_race": "BPFO", "inner_race": "BPFI", "ball": "2×BSF", "cage": "FTF"}
#: Orders read in the acceleration spectrum for the running-speed families.
ORDERS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
_G0_MM = 9.80665 * 1000.0  # mm/s² per g
#: Σ|W(k)|² / |W(0)|² of a Hann window's main lobe: the energy of ±2 bins is 1.5 × the
#: peak bin's for a tone on a bin centre, and the same sum holds between bins.
_HANN_LOBE_ENERGY = 1.5
#: Harmonics read for the cage: its lines are low, and a cage fault's comb is long.
_CAGE_HARMONICS = 8
#: Twice the line frequency of 50 and 60 Hz mains and its first harmonics, Hz.
_MAINS_HZ: tuple[float, ...] = (100.0, 120.0, 200.0, 240.0, 300.0, 360.0, 400.0, 480.0)
#: Supporting harmonics a cage needs: its comb is dense (FTF ≈ 0.4 × shaft), and two of
#: eight lines can fall on any structure of the low envelope spectrum (half-orders, ...).
_CAGE_SUPPORT = 3


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds of the rules (the module docstring); defaults chosen on the simulator.

    Attributes
    ----------
    slip_tolerance : bearing lines are searched within ± this fraction of their
        kinematic frequency (slip puts them 1–2 % off; the pipeline's ``slip_tolerance``)
    order_tolerance : running-speed lines within ± this fraction
    p_false : probability that an averaged noise bin passes a line's statistical
        threshold anywhere in its search range
    min_line_db : a line counts only from this prominence on, whatever the statistics say
    min_fundamental_db : a family's fundamental must stand this far above the floor
    compete_db : present bearing families whose scores are this close compete
        (``bearing_uncertain``)
    support_db : score added per supporting line (two at most)
    harmonics : harmonics read per family (those inside the envelope spectrum; the
        cage reads eight)
    dominance : unbalance: 1× at least this many times 2× and 3× (acceleration)
    looseness_lines : looseness: this many significant harmonics among 2×…10×, or half
        as many with a significant 0.5×/1.5×/2.5× sub-harmonic
    severity : running-speed families need the velocity RMS of their lines at this
        fraction of the machine's ISO 10816-3 zone B/C boundary (below it the machine is
        fit for unrestricted long-term operation, whatever its spectrum's shape)
    min_bins_per_order : with fewer bins per shaft order the running-speed families are not
        judged: the half-orders run into the orders
    min_bins_per_order_bearing : with fewer, nothing is: defect lines cannot be told from
        shaft harmonics
    """

    slip_tolerance: float = 0.03
    order_tolerance: float = 0.02
    p_false: float = 0.01
    min_line_db: float = 3.0
    min_fundamental_db: float = 6.0
    compete_db: float = 6.0
    support_db: float = 3.0
    harmonics: int = 3
    dominance: float = 2.0
    looseness_lines: int = 4
    severity: float = 1.0
    min_bins_per_order: float = 6.0
    min_bins_per_order_bearing: float = 3.5

    def __post_init__(self) -> None:
        for name in ("slip_tolerance", "order_tolerance"):
            v = getattr(self, name)
            if not 0 < v < 0.2:
                raise ValueError(f"{name}={v} must be in (0, 0.2)")
        if not 0 < self.p_false < 0.5:
            raise ValueError(f"p_false={self.p_false} must be in (0, 0.5)")
        if self.harmonics < 1:
            raise ValueError(f"harmonics={self.harmonics} must be >= 1")


# --------------------------------------------------------------------------- evidence


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
    present : the family's rule is met (module docstring)
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
        ``on_shaft``, ``on_mains``, ``unsupported``, ``no_ftf_sideband``, ``beyond``,
        ``near_dc``;
        running speed: ``present``, ``no_shape``, ``below_gate``)
    velocity_mm_s : running speed: velocity RMS of the deciding lines, mm/s
    gate_mm_s : running speed: the severity gate, mm/s
    detail : a number the note quotes (the 2×/1× ratio, the dominance, …)
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
        return self.family in _SYMBOL

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
    sym = _SYMBOL[f.family]
    fund = f.lines[0] if f.lines else None
    if fund is None:
        return (
            f"{sym} lies beyond the envelope spectrum"
            if f.status == "beyond"
            else f"{sym} is too close to 0 Hz at this resolution"
        )
    db = f"{fund.prominence_db:+.1f} dB over the floor"
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
    if f.status == "lone_line":
        return (
            f"{sym} {db}, but neither a harmonic as strong as an impact train's (k-th at "
            "≥ 1/(1.5 k) of it) nor a sideband pair symmetric about it (± the same shaft "
            "order) is significant: a stationary line of the machine (a tone, tones beating "
            "in the band), not an impact train — no bearing fault"
        )
    if f.status == "no_ftf_sideband":
        return f"{sym} {db}, but no FTF sideband (the cage's modulation of a ball)"
    need = _CAGE_SUPPORT if f.family == "cage" else 1
    return (
        f"{sym} {db}, but {f.support} supporting line(s) of {need} needed (harmonics or "
        "sidebands, not another family's, not on a shaft comb)"
    )


def _speed_note(f: FamilyEvidence) -> str:
    gate = f"gate {f.gate_mm_s:.2f} mm/s"
    if f.family == "looseness":
        return (
            f"{f.harmonics} harmonics 2×–10× and {f.sidebands} sub-harmonics significant, "
            f"series {f.velocity_mm_s:.2f} mm/s ({gate})"
        )
    if f.family == "misalignment":
        return f"2× is {f.detail:.2f} × the 1× line, 1× and 2× {f.velocity_mm_s:.2f} mm/s ({gate})"
    dom = f"{f.detail:.1f} × 2× and 3×" if math.isfinite(f.detail) else "no 2×/3× line"
    return f"1× {f.velocity_mm_s:.2f} mm/s ({dom}; {gate})"


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

    if (
        v.label == "bearing_uncertain"
        and best is not None
        and rival is not None
        and not rival.present
    ):
        out.append(
            f"{pre}bearing fault, type uncertain: {_SYMBOL[best.family]} is present and "
            f"{_SYMBOL[rival.family]} stands out too ({rival.lines[0].prominence_db:+.1f} dB "
            f"against {best.lines[0].prominence_db:+.1f} dB): a defect of one race puts no "
            "line at the other's rate; a rolling element striking both races, or damage on "
            "both, does"
        )
        out += named(best)[:1] + named(rival)[:1]
    elif v.label == "bearing_uncertain" and best is not None and rival is not None:
        out.append(
            f"{pre}bearing fault, type uncertain: {_SYMBOL[best.family]} "
            f"({best.score_db:.1f} dB) and {_SYMBOL[rival.family]} ({rival.score_db:.1f} dB) "
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


# --------------------------------------------------------------------------- statistics


@lru_cache(maxsize=1024)
def line_threshold_db(k_eff: float, bins: int, p_false: float) -> float:
    """Prominence (dB over a median floor) that averaged noise passes with probability
    ``p_false`` somewhere among ``bins`` bins.

    The power of a noise bin averaged over ``k_eff`` independent windows is
    Gamma(k, 1/k) distributed (χ² with 2k degrees of freedom, mean 1); the floor is its
    median. ``k_eff`` is rounded to a quarter so the cache stays small.
    """
    k = max(0.25, round(4.0 * k_eff) / 4.0)
    q = max(p_false / max(1, bins), 1e-12)
    tail = float(gammainccinv(k, q)) / k
    median = float(gammainccinv(k, 0.5)) / k
    return 10.0 * math.log10(tail / median)


# --------------------------------------------------------------------------- reading lines


@dataclass(frozen=True, slots=True)
class _Read:
    """Lines read from (C, n) spectra at (C, L) positions: every field (C, L)."""

    expected: F64
    found: F64
    amp: F64
    prom: F64
    thr: F64
    sig: npt.NDArray[np.bool_]

    def part(self, a: int, b: int) -> _Read:
        """Lines ``a … b−1``."""
        return _Read(
            self.expected[:, a:b],
            self.found[:, a:b],
            self.amp[:, a:b],
            self.prom[:, a:b],
            self.thr[:, a:b],
            self.sig[:, a:b],
        )


def _read(
    p: F64,
    df: float,
    hz: F64,
    base: F64,
    lo_b: F64,
    hi_b: F64,
    half: F64,
    floor: F64,
    k_eff: F64,
    p_false: float,
    min_db: F64,
    healthy: F64 | None = None,
) -> _Read:
    """Read lines at ``hz`` (C, L) ± ``half`` (L,) bins (≥ 1) in every row of ``p`` (C, n).

    ``base`` (L,): the bin where each line's spectrum starts in ``p`` (spectra are
    concatenated); ``lo_b``, ``hi_b`` (L,): the bins it may be read in; ``floor`` (C, L):
    its local floor; ``k_eff`` (L,): independent windows behind its spectrum. ``healthy``
    (C, n), the machine's healthy power on the same bins (:mod:`pdm.diagnosis.baseline`):
    a line is then the bin that stands most over ``max(floor, healthy)``, and its
    prominence is over that.
    """
    n = p.shape[-1]
    centre = hz / df + base
    h = np.maximum(half, 1.0)
    lo = np.maximum(np.floor(centre - h), lo_b)
    hi = np.minimum(np.ceil(centre + h), hi_b - 2)
    width = int(np.max(hi - lo)) + 1
    # Flat indices into p: a 1-D take is much cheaper than broadcast 2-D fancy indexing.
    flat = p.reshape(-1)
    row0 = (np.arange(p.shape[0]) * n)[:, None]
    cand = (lo + row0)[..., None] + np.arange(width)  # (C, L, W)
    idx = cand.astype(np.intp)
    vals = flat.take(idx, mode="clip")
    vals[cand > (hi + row0)[..., None]] = -1.0
    if healthy is None:
        j = np.argmax(vals, axis=-1)
        k = (lo + j).astype(np.intp)  # bin within the row
        kf = k + row0.astype(np.intp)
        peak = vals.max(axis=-1)
        ref = floor
        # A peak, not the skirt of a stronger line next to the range: a local maximum.
        local = (peak >= flat.take(kf - 1, mode="clip")) & (peak >= flat.take(kf + 1, mode="clip"))
    else:
        hflat = healthy.reshape(-1)
        over = vals / np.maximum(floor[..., None], hflat.take(idx, mode="clip"))
        j = np.argmax(over, axis=-1)
        k = (lo + j).astype(np.intp)
        kf = k + row0.astype(np.intp)
        peak = np.take_along_axis(vals, j[..., None], axis=-1)[..., 0]
        ref = np.maximum(floor, hflat.take(kf, mode="clip"))

        def excess(at: npt.NDArray[np.intp]) -> F64:
            return flat.take(at, mode="clip") / np.maximum(floor, hflat.take(at, mode="clip"))

        top = peak / ref
        local = (top >= excess(kf - 1)) & (top >= excess(kf + 1))
    prom = 10.0 * np.log10(np.maximum(peak, 1e-300) / ref)
    lobe = flat.take(kf[..., None] + np.arange(-2, 3), mode="clip")
    amp = np.sqrt(lobe.sum(axis=-1) / _HANN_LOBE_ENERGY)
    bins = (hi - lo + 1).astype(np.intp)
    thr = np.maximum(_thresholds(k_eff, bins, p_false), min_db)
    found = ((k - base) * df).astype(np.float64)
    return _Read(hz, found, amp, prom, thr, (prom >= thr) & local)


def _thresholds(k_eff: F64, bins: npt.NDArray[np.intp], p_false: float) -> F64:
    """:func:`line_threshold_db` of every (C, L) line, from a table per distinct ``k_eff``
    (one per spectrum) indexed by the bins searched."""
    out = np.empty(bins.shape)
    top = int(bins.max()) + 1
    for kk in set(k_eff.tolist()):
        lut = np.array([line_threshold_db(kk, b, p_false) for b in range(top)])
        sel = k_eff == kk
        out[:, sel] = lut[bins[:, sel]]
    return out


# --------------------------------------------------------------------------- bearing layout


@dataclass(frozen=True)
class _Layout:
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


@lru_cache(maxsize=64)
def _layout(
    mult: tuple[float, float, float, float], top_order: float, df_orders: float, rules: Rules
) -> _Layout:
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
        sym = _SYMBOL[family]
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
    return _Layout(
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


# --------------------------------------------------------------------------- bearing


class _Summary(NamedTuple):
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


def _bearing_hz(lay: _Layout, offsets: F64, fr: float) -> F64:
    """(C, L) frequencies of every line of the layout at each row's family offsets."""
    fam = lay.fam
    is_fam = fam >= 0
    e = np.zeros((offsets.shape[0], len(lay.names)))
    e[:, is_fam] = offsets[:, fam[is_fam]]
    hz = (lay.carrier * (1.0 + e) + lay.delta * np.where(lay.moves, 1.0 + e, 1.0)) * fr
    hz[:, ~is_fam] = lay.carrier[~is_fam] * fr
    return hz


def _bearing_min_db(lay: _Layout, df: float, fr: float, k_eff: float, rules: Rules) -> F64:
    """Per line, the prominence it needs whatever the statistics (fundamentals need more)."""
    min_db = np.maximum(lay.min_db, rules.min_line_db)
    for a, _b in lay.spans:
        bins_fund = int(2 * rules.slip_tolerance * lay.carrier[a] * fr / df) + 3
        min_db[a] = max(
            rules.min_fundamental_db, line_threshold_db(k_eff, bins_fund, rules.p_false)
        )
    return min_db


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
    db = 10.0 * np.log10(np.maximum(p[: top + 1], 1e-300) / floor)
    pos = np.rint(np.outer(spacings, np.arange(1, harmonics + 1)) * fr / df).astype(np.intp)
    ok = (pos >= 2) & (pos <= top)
    return np.where(ok, np.clip(db[np.clip(pos, 0, top)], 0.0, None), 0.0).sum(axis=1)


class _CageCheck(NamedTuple):
    """What stands for and against a cage comb (one row)."""

    other_hz: float  # the comb spacing that fits better than this bearing's FTF, Hz, or nan
    lines: tuple[LineEvidence, ...]  # ± FTF around the other families' carriers and 1×


def _cage_check(
    lay: _Layout,
    rd: _Read,
    row: int,
    env: F64,
    df: float,
    fr: float,
    k_eff: float,
    rules: Rules,
) -> _CageCheck:
    """A cage comb's alternatives and its modulation of other lines (module docstring).

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
            carriers.append((f"{_SYMBOL[f2]} 1×", float(rd.found[row, a2])))
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
        return _CageCheck(other, ())
    pos = np.array(hz) / df
    half = np.full(pos.size, 1.0 + 0.005 * pos)
    floor = _floor_at(p, pos, half + 2.0, fh)
    n = p.shape[-1]
    got = _read(
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
    return _CageCheck(other, lines)


def _bearing(
    lay: _Layout,
    rd: _Read,
    offsets: F64,
    df: float,
    fr: float,
    rules: Rules,
    env: F64,
    k_eff: float,
) -> tuple[list[list[_Summary]], Callable[[int], list[FamilyEvidence]]]:
    """Every bearing family of every row from its lines as read (``rd``: (C, L) of ``lay``;
    ``env``: the rows' envelope power, for the cage's checks).

    Returns per row the families' summaries (the usable ones, in BEARING_FAMILIES order)
    and a function that builds a row's evidence objects when they are read.
    """
    n_rows = rd.found.shape[0]
    n_fam = len(lay.families)
    if not n_fam:
        return [[] for _ in range(n_rows)], lambda c: _skipped(lay)
    fam = lay.fam
    fund = np.array([a for a, _b in lay.spans], dtype=np.intp)

    nb = lay.shaft[0]  # bearing lines are 0 … nb−1, shaft lines after
    found = rd.found[:, :nb]
    sig: npt.NDArray[np.bool_] = np.asarray(rd.sig[:, :nb], dtype=bool)
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
    on_mains = np.zeros_like(found, dtype=bool)
    for line in _MAINS_HZ:
        # A tone's strongest bin is within half a bin of it; the grid within 0.1 %.
        on_mains |= np.abs(found - line) <= 0.5 * df + 0.001 * found
    mains = on_mains[:, fund]
    # Shared lines: the family with the stronger significant fundamental holds them.
    fund_sig: npt.NDArray[np.bool_] = sig[:, fund]
    # Ranked by the fundamental's prominence, less 2 dB per 1 % off kinematics: of two
    # families that read the same line, the one whose kinematics put it nearer holds it.
    strength = np.where(fund_sig, rd.prom[:, fund] - 200.0 * np.abs(offsets), -1e9)
    strength = strength - 1e-6 * np.arange(n_fam)
    close = np.abs(found[:, :, None] - found[:, None, :]) <= (2.0 * df + 0.005 * found)[..., None]
    close &= fam_b[:, None] != fam_b[None, :]
    close &= strength[:, fam_b][:, None, :] > strength[:, fam_b][:, :, None]
    held0 = sig & fund_sig[:, fam_b] & lay.supports[:nb]
    fund_shared: npt.NDArray[np.bool_] = np.asarray(
        (close[:, fund, :] & held0[:, None, :]).any(axis=-1), dtype=bool
    )  # (C, F)
    held = held0 & ~fund_shared[:, fam_b]
    by = close & held[:, None, :]
    shared = by.any(axis=-1)
    owner = np.where(shared, np.argmax(by, axis=-1), -1)
    not_fund = np.ones(nb, dtype=bool)
    not_fund[fund] = False
    clean = sig & ~shared & ~on_comb & ~on_mains
    support = clean & not_fund & lay.supports[:nb]
    n_clean = np.add.reduceat(support, fund, axis=1)
    # A race against the FTF comb: its neighbours fundamental ± FTF (significant ones).
    neigh = np.where(sig & lay.neighbour[:nb], rd.prom[:, :nb], -np.inf)
    neigh_max = np.maximum.reduceat(neigh, fund, axis=1)
    above_comb = rd.prom[:, fund] >= neigh_max + rules.compete_db
    ftf_sb: npt.NDArray[np.bool_] = np.asarray(
        np.add.reduceat(support & lay.ftf_sideband[:nb], fund, axis=1) > 0, dtype=bool
    )
    cage_comb = (support & lay.cage_high[:nb]).sum(axis=1)
    # What makes a line an impact train: a defect striking at a rate is a train of impulses,
    # which has lines at 2×, 3× the rate; an inner-race defect turning through the load zone
    # is that train amplitude-modulated by the shaft, and the envelope of a real modulation
    # puts its sidebands on *both* sides of the carrier at equal strength. A line with
    # neither — no harmonic of its own and at most one-sided sidebands — is what a
    # stationary tone of the machine (a structural or electrical line, two tones beating in
    # the band) looks like: not a bearing fault. A pair is one modulation only when it sits
    # symmetrically about the carrier as found (within the three lines' bin quantisation,
    # 1.5 bins): lines of the machine that happen to fall inside the sidebands' search
    # ranges on either side are not.
    #
    # How strong a harmonic must be: an impact rings the band's resonance and decays with a
    # time constant τ, so the envelope's harmonic k of a train at rate f has
    # |H(k f)| / |H(f)| = √((1 + (2πfτ)²) / (1 + (2πkfτ)²)) ≥ 1/k, whatever τ. The envelope
    # |z| of two stationary tones r ≤ 1 apart in amplitude beating at f has harmonics of
    # at most 1/5 (k = 2) and 3/35 (k = 3) of its fundamental (|cos| at r = 1), and noise
    # modulated sinusoidally at f none. So a harmonic supports an impact train when its
    # amplitude is at least the fundamental's / (1.5 k): 3.5 dB under the impacts' bound
    # (slip jitter broadens higher harmonics), 4.5 dB over the beats'. Amplitudes are read
    # as the lines' power above their floors (the envelope's noise floor is flat across
    # these few orders): a weak harmonic's reading is mostly the floor's.
    is_harm = np.array([k == "harmonic" for k in lay.kinds[:nb]], dtype=bool)
    fund_of = fund[fam_b]  # (nb,) each line's family fundamental
    order_k = np.where(is_harm, np.rint(lay.carrier[:nb] / lay.carrier[fund_of]), 1.0)
    above = 10.0 ** (np.clip(rd.prom[:, :nb], 0.0, None) / 10.0) - 1.0  # line / floor − 1
    strong = above >= above[:, fund_of] / (1.5 * order_k) ** 2
    train = np.add.reduceat(support & is_harm & strong, fund, axis=1) > 0
    mirror = ~shared & ~on_comb & (rd.prom[:, :nb] >= rules.min_line_db)
    kinds = np.array(lay.kinds[:nb])
    fam_l, carrier_l, delta_l = fam_b, lay.carrier[:nb], lay.delta[:nb]
    is_sb = (kinds == "sideband") & ~lay.moves[:nb]
    for i in np.flatnonzero(is_sb & (delta_l < 0.0)):
        same = (fam_l == fam_l[i]) & (carrier_l == carrier_l[i])
        mate = np.flatnonzero(is_sb & same & (delta_l == -delta_l[i]))
        carrier_line = np.flatnonzero(is_harm & same)
        if mate.size and carrier_line.size:
            j, hc = int(mate[0]), int(carrier_line[0])
            even = np.abs(found[:, i] + found[:, j] - 2.0 * found[:, hc]) <= 1.5 * df
            # A modulation's sidebands are equal: one significant, its mirror standing out
            # of the floor by any line's physical minimum (the statistics' threshold is
            # for a line alone, not for the predicted twin of one found).
            train[:, fam_l[i]] |= (
                (support[:, i] & mirror[:, j]) | (support[:, j] & mirror[:, i])
            ) & even
    # A modulated carrier shares its power with its sidebands (BPFI ± shaft, 2×BSF ± FTF):
    # the family's line is the carrier with the clean sidebands of its first harmonic,
    # 10·log10 of their summed peak/floor ratios. Then 3 dB per supporting line (two).
    ratio = np.where(lay.first_sb[:nb] & support, 10.0 ** (rd.prom[:, :nb] / 10.0), 0.0)
    carrier = 10.0 ** (rd.prom[:, fund] / 10.0) + np.add.reduceat(ratio, fund, axis=1)
    score = 10.0 * np.log10(carrier) + rules.support_db * np.minimum(n_clean, 2)
    fund_at = on_comb[:, fund]

    # A fundamental seen by the statistics alone (its 6 dB physical minimum left out): what
    # a race shows of a defect elsewhere in the bearing (below, in _verdict).
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
    seen = (rd.prom[:, fund] >= stat_thr) & ~fund_shared & ~(fund_at & comb) & ~mains

    summaries = []
    checks: dict[int, _CageCheck] = {}
    for c in range(n_rows):
        row = []
        for fi, family in enumerate(lay.families):
            bare = False
            if not fund_sig[c, fi]:
                status = "weak"
            elif fund_shared[c, fi]:
                status = "shared"
            elif fund_at[c, fi] and comb[c, fi]:
                status = "on_shaft"
            elif mains[c, fi]:
                status = "on_mains"
            elif n_clean[c, fi] < (_CAGE_SUPPORT if family == "cage" else 1):
                status = "unsupported"
            elif family == "ball" and not ftf_sb[c, fi]:
                status = "no_ftf_sideband"
            elif family in ("outer_race", "inner_race") and not train[c, fi]:
                status = "lone_line"
            else:
                status = "present"
            if family == "cage" and status == "present":
                chk = checks[c] = _cage_check(lay, rd, c, env, df, fr, k_eff, rules)
                if math.isfinite(chk.other_hz):
                    status = "other_comb"
                bare = not any(ln.significant for ln in chk.lines)
            row.append(
                _Summary(
                    family,
                    status,
                    float(score[c, fi]),
                    float(rd.prom[c, fund[fi]]),
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
                detail=chk.other_hz if chk is not None else math.nan,
            )
        for f in _skipped(lay):
            out[f.family] = f
        return [out[f] for f, _k, _m in BEARING_FAMILIES if f in out]

    return summaries, build


def _skipped(lay: _Layout) -> list[FamilyEvidence]:
    return [
        FamilyEvidence(family, False, -math.inf, math.nan, 0.0, 0, 0, (), 0, why)
        for family, why in lay.skipped
    ]


# --------------------------------------------------------------------------- running speed


def _velocity(amp_g: float, hz: float) -> float:
    """Velocity RMS (mm/s) of an acceleration tone of amplitude ``amp_g`` (0-peak, g)."""
    return amp_g * _G0_MM / (2 * math.pi * hz) / math.sqrt(2) if hz > 0 else 0.0


class _SpeedSum(NamedTuple):
    """What the verdict needs of a running-speed family."""

    family: str
    present: bool
    score_db: float

    @property
    def label(self) -> str:
        return FAMILY_LABEL[self.family]


def _speed(
    rd: _Read, orders: list[float], fr: float, gate: float, rules: Rules
) -> tuple[list[list[_SpeedSum]], Callable[[int], list[FamilyEvidence]]]:
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
            row.append(_SpeedSum(name, bool(shape) and vel >= gate, score))
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


# --------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class _Plan:
    """Where every line of a judgement is read, in bins of the envelope and acceleration
    spectra side by side: fixed for a bearing, spectrum lengths and ``df / shaft``, so built
    once per segment and cached."""

    lay: _Layout | None
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
def _plan(
    mult: tuple[float, float, float, float] | None,
    n_env: int,
    n_acc: int,
    df_orders: float,
    rules: Rules,
) -> _Plan:
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
        lay = _layout(mult, round((n_env - 4) * df_orders, 3), df_orders, rules)
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
        return _Plan(
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
    return _Plan(
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
        prom = p[k] / max(float(np.median(around)), 1e-300)
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
    bearing: list[list[_Summary]] = [[] for _ in range(rows)]
    build: Callable[[int], list[FamilyEvidence]] = lambda c: []  # noqa: E731
    speed: list[list[_SpeedSum]] = [[] for _ in range(rows)]
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
    plan = _plan(
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
        log_env = np.log10(np.maximum(p[:, : plan.n_env], 1e-300))
        if pb is None:
            db = (
                log_env[:, plan.comb_idx].max(axis=-1)
                - np.log10(floor[:, lay.harm_line])[:, None, :]
            )
        else:  # over max(floor, healthy) at every bin the comb reads
            ref = np.maximum(floor[:, lay.harm_line][:, None, :, None], pb[:, plan.comb_idx])
            db = (log_env[:, plan.comb_idx] - np.log10(ref)).max(axis=-1)
        db = np.clip(db, 0.0, None) * lay.weight  # (C, E, H), B over the floor
        offsets = plan.eps[np.argmax(np.add.reduceat(db, lay.starts, axis=2), axis=1)]
        hz[:, :n_lay] = _bearing_hz(lay, offsets, shaft_hz)
    keff = np.where(plan.is_env, k_env, k_eff)
    min_db = np.maximum(plan.min_db, rules.min_line_db)
    if lay is not None:
        min_db[:n_lay] = _bearing_min_db(lay, df, shaft_hz, k_env, rules)
    rd = _read(
        p, df, hz, plan.base, plan.lo, plan.hi, plan.half, floor, keff, rules.p_false, min_db, pb
    )
    if lay is not None:
        bearing, build = _bearing(
            lay, rd.part(0, n_lay), offsets, df, shaft_hz, rules, p[:, : plan.n_env], k_env
        )
    if plan.orders:
        gate = rules.severity * zone_limits(iso_group, foundation)[1]
        speed, build_speed = _speed(
            rd.part(n_lay, plan.n_lines), list(plan.orders), shaft_hz, gate, rules
        )

    def families(c: int) -> Callable[[], tuple[FamilyEvidence, ...]]:
        return lambda: (*build(c), *build_speed(c))

    return [_verdict(bearing[c], speed[c], families(c), rules, names[c]) for c in range(rows)]


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
    bearing: list[_Summary],
    speed: list[_SpeedSum],
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
        both = next((f for f in bearing if f.family == other and f.seen), None)
        competing = rival
        if rival is None and both is not None and best.prom - both.prom < rules.compete_db:
            # One race's defect puts no line at the other race's rate; lines at both, the
            # named one not clearly stronger, are what a rolling element striking both races
            # (or damage on both) shows: no confident race.
            competing = both
        elif rival is not None and best.score_db - rival.score_db >= rules.compete_db:
            competing = None
        if competing is not None:
            if speed_fault is not None:
                return ChannelVerdict(
                    speed_fault.label,
                    speed_fault.score_db,
                    build,
                    channel=channel,
                    best=speed_fault.family,
                )
            return ChannelVerdict(
                "bearing_uncertain",
                strength,
                build,
                channel=channel,
                best=best.family,
                rival=competing.family,
                strength_db=best.score_db,
            )
        if rival is not None:
            # Another family is present too, with its own characteristic lines: the named one
            # won, but by how much beyond the point where the two would be uncertain is what
            # the confidence rests on (calibrated apart: "bearing_contested").
            margin = min(strength, best.score_db - rival.score_db - rules.compete_db)
            kind = "bearing_contested"
        else:
            # The strongest other fundamental that nothing else explains (significant, on no
            # shaft comb, no other family's line) is a rival even when its family is incomplete.
            runner = max((f.prom for f in bearing if f is not best and f.clean), default=0.0)
            margin = min(strength, best.score_db - runner)
            kind = ""
        if best.bare:
            # A bare FTF comb cannot be told from another bearing's cage on the same shaft
            # (every cage turns at ≈ 0.4 × shaft): no better than even, whatever its size.
            kind = "bearing_cage_bare"
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
