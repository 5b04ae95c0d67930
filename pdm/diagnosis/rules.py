"""Judging fault families on averaged spectra: line prominence, harmonics, sidebands.

Everything here is a pure function of averaged spectra (:mod:`pdm.diagnosis.average`),
the shaft frequency and the bearing's defect multiples. The rules, with the reasons
for each, are in ``docs/diagnosis.md``; in short:

* A **line** is the strongest local maximum within its search range of a power spectrum
  (the skirt of a stronger neighbour is not a line, nor hides one). Its
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
  harmonics' lines (the fundamental weighted as much as the others together); the lines
  are then read at ``h·(1 + ε)·f`` ± 1 bin, and a harmonic counts at ``k`` × the
  fundamental as found (or, beneath a stronger line of the machine, within its lobe). Sidebands are read where physics puts them:
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
  ball one of them an FTF sideband. A fundamental hidden beneath a line of the machine (the
  line read there a significant mains line, or one the machine's healthy spectra hold, at
  least as strong as the harmonic) is judged on its harmonic behind that line, off the pull's
  harmonics: a stationary line's harmonics sit at exactly k × it, and an impact train's
  fundamental is at least as strong as its harmonics.
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

Here: the thresholds (:class:`Rules`) and the families they judge. The work is in the
modules of this room: lines are read (:mod:`~pdm.diagnosis.lines`) where the plan
(:mod:`~pdm.diagnosis.plan`, :mod:`~pdm.diagnosis.layout`) puts them; the bearing families
(:mod:`~pdm.diagnosis.bearing`, with :mod:`~pdm.diagnosis.impact` and
:mod:`~pdm.diagnosis.cage`) and the running-speed ones (:mod:`~pdm.diagnosis.speed`) are
judged for all channels that share a bearing in one vectorised pass, and ranked in
:mod:`~pdm.diagnosis.verdict`; the evidence objects and their text
(:mod:`~pdm.diagnosis.evidence`) are built only when read.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BEARING_FAMILIES",
    "CAGE_SUPPORT",
    "DIAGNOSES",
    "FAMILY_LABEL",
    "ORDERS",
    "SPEED_FAMILIES",
    "SYMBOL",
    "Rules",
]

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
SYMBOL = {"outer_race": "BPFO", "inner_race": "BPFI", "ball": "2×BSF", "cage": "FTF"}
#: Orders read in the acceleration spectrum for the running-speed families.
ORDERS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
#: Supporting harmonics a cage needs: its comb is dense (FTF ≈ 0.4 × shaft), and two of
#: eight lines can fall on any structure of the low envelope spectrum (half-orders, ...).
CAGE_SUPPORT = 3


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
