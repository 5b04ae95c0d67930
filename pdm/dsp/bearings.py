"""Rolling-element bearing geometry and its defect frequencies.

The kinematic formulas (shaft frequency ``fr`` in Hz, ``n`` rolling elements,
ball diameter ``d``, pitch diameter ``D``, contact angle ``phi``)::

    BPFO = n/2 · fr · (1 − d/D·cos φ)        outer-race defect
    BPFI = n/2 · fr · (1 + d/D·cos φ)        inner-race defect
    BSF  = D/(2d) · fr · (1 − (d/D·cos φ)²)  ball (rolling-element) spin
    FTF  = fr/2 · (1 − d/D·cos φ)            cage (fundamental train)

They assume pure rolling; real lines sit 1–2 % off because of slip, which is
why the feature extractor searches a tolerance band around them.

>>> g = BEARINGS["6205"]
>>> round(g.defect_frequencies_hz(1797 / 60)["bpfo"], 1)
107.4
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from pdm.core.text import HIDDEN_CHARS

__all__ = [
    "BEARINGS",
    "DEFECTS",
    "FACTOR_COLUMNS",
    "TABLE_COLUMNS",
    "BearingGeometry",
    "BearingTableError",
    "basic_designation",
    "defect_line_orders",
    "geometry_from_multiples",
    "lookup_bearing",
    "parse_bearing_table",
]

#: Defect names, in the order features are emitted.
DEFECTS: tuple[str, ...] = ("bpfo", "bpfi", "bsf", "ftf")


@dataclass(frozen=True, slots=True)
class BearingGeometry:
    """Geometry of a rolling-element bearing.

    Attributes
    ----------
    rolling_elements : int
        Number of balls or rollers.
    ball_diameter_mm, pitch_diameter_mm : float
        Rolling-element and pitch diameter, mm.
    contact_angle_deg : float
        Contact angle, degrees (0 for a deep-groove ball bearing under radial load).
    designation : str or None
        Catalogue designation when the geometry came from the built-in table.
    """

    rolling_elements: int
    ball_diameter_mm: float
    pitch_diameter_mm: float
    contact_angle_deg: float = 0.0
    designation: str | None = None

    def __post_init__(self) -> None:
        if self.rolling_elements < 1:
            raise ValueError(f"rolling_elements={self.rolling_elements} must be >= 1")
        if not 0 < self.ball_diameter_mm < self.pitch_diameter_mm:
            raise ValueError(
                f"ball_diameter_mm={self.ball_diameter_mm} must be > 0 and smaller than "
                f"pitch_diameter_mm={self.pitch_diameter_mm}"
            )
        if not 0 <= self.contact_angle_deg < 90:
            raise ValueError(f"contact_angle_deg={self.contact_angle_deg} must be in [0, 90)")

    def defect_multiples(self) -> dict[str, float]:
        """Defect frequencies as multiples of the shaft frequency (orders)."""
        r = (
            self.ball_diameter_mm
            / self.pitch_diameter_mm
            * math.cos(math.radians(self.contact_angle_deg))
        )
        n = self.rolling_elements
        return {
            "bpfo": n / 2 * (1 - r),
            "bpfi": n / 2 * (1 + r),
            "bsf": self.pitch_diameter_mm / (2 * self.ball_diameter_mm) * (1 - r * r),
            "ftf": 0.5 * (1 - r),
        }

    def defect_frequencies_hz(self, shaft_hz: float) -> dict[str, float]:
        """Defect frequencies in Hz at shaft frequency ``shaft_hz`` (Hz, = rpm/60)."""
        return {k: m * shaft_hz for k, m in self.defect_multiples().items()}


def defect_line_orders(
    multiples: Iterable[Mapping[str, float]], harmonics: int = 3
) -> tuple[float, ...]:
    """The shaft orders at which bearings with defect orders ``multiples`` (each a
    :meth:`BearingGeometry.defect_multiples`) may put a line of their own in the acceleration
    spectrum: BPFO, BPFI, BSF and 2×BSF, each times 1 … ``harmonics`` (the harmonics every
    defect family is read at), and FTF, sorted. The running-speed readings must not take one
    of these for a shaft order on its own (docs/diagnosis.md §1, the running speed).

    FTF's harmonics are left out: a cage's rate shows as a modulation (sidebands, and lines
    of the envelope spectrum), not as a comb of lines standing out of the acceleration
    spectrum, and its 3rd harmonic (1.1–1.3 × shaft) within the search's range, the slip and
    half a coarse bin would make the one line every shaft has suspect: a 6203 at 1480 r/min
    sampled at 51.2 kHz in 16384 samples (8 bins per order), its 1× 35 dB over the floor,
    then had a searched speed stand in 1 of 24 windows.

    >>> [round(x, 3) for x in defect_line_orders([BEARINGS["6203"].defect_multiples()], 1)]
    [0.382, 1.994, 3.053, 3.988, 4.947]
    """
    out: list[float] = []
    for m in multiples:
        for rate in (m["bpfo"], m["bpfi"], m["bsf"], 2.0 * m["bsf"]):
            out.extend(j * rate for j in range(1, harmonics + 1))
        out.append(m["ftf"])
    return tuple(sorted(out))


def geometry_from_multiples(
    multiples: Mapping[str, float],
    pitch_diameter_mm: float,
    contact_angle_deg: float | None = None,
    designation: str | None = None,
    *,
    abs_tol: float = 0.005,
    rel_tol: float = 0.005,
) -> BearingGeometry:
    """The geometry whose defect frequencies are the published orders ``multiples``.

    ``multiples`` holds ``bpfo``, ``bpfi``, ``bsf`` (one rolling element's spin) and ``ftf``
    as orders of shaft speed, as makers publish them. With ``n`` elements and
    ``ρ = d/D·cos φ``, the kinematic formulas give exactly::

        n = BPFO + BPFI        ρ = (BPFI − BPFO)/n        FTF = (1 − ρ)/2
        cos φ = 2ρ·BSF/(1 − ρ²)                           d = ρ·D/cos φ

    so the count, the element/pitch ratio and the contact angle follow from the four
    numbers; only the ratio enters the frequencies, so ``pitch_diameter_mm`` (mm) merely sets
    the scale (an estimate such as (bore + OD)/2 is enough). ``contact_angle_deg`` given
    (0 where physics fixes it: deep-groove ball and cylindrical roller bearings under radial
    load) is checked against BSF instead of derived from it; derived, an angle is
    ill-conditioned near 0 (cos φ = 0.995 is already 5.7°), hence the choice.

    The four orders must agree with one bearing to their rounding: ``n`` whole and FTF within
    ``abs_tol``, BSF within ``rel_tol`` (relative); otherwise ``ValueError`` says which.
    """
    missing = [k for k in DEFECTS if k not in multiples]
    if missing:
        raise ValueError(f"missing order(s) {', '.join(missing)}")
    bpfo, bpfi, bsf, ftf = (float(multiples[k]) for k in DEFECTS)
    if not all(math.isfinite(x) and x > 0 for x in (bpfo, bpfi, bsf, ftf)) or bpfi <= bpfo:
        raise ValueError(
            f"orders must be positive with bpfi > bpfo (got bpfo={bpfo:g}, bpfi={bpfi:g}, "
            f"bsf={bsf:g}, ftf={ftf:g})"
        )
    n = round(bpfo + bpfi)
    if n < 1 or abs(bpfo + bpfi - n) > abs_tol:
        raise ValueError(f"bpfo + bpfi = {bpfo + bpfi:g} is not a whole number of elements")
    rho = (bpfi - bpfo) / (bpfi + bpfo)
    if abs(0.5 * (1 - rho) - ftf) > abs_tol:
        raise ValueError(
            f"ftf={ftf:g} disagrees with bpfo and bpfi, which give {0.5 * (1 - rho):.4f}"
        )
    cos_implied = 2 * rho * bsf / (1 - rho * rho)
    if contact_angle_deg is None:
        if cos_implied > 1 + rel_tol:
            raise ValueError(
                f"bsf={bsf:g} is larger than any contact angle allows "
                f"({(1 - rho * rho) / (2 * rho):.4f} at 0°)"
            )
        cos_phi = min(cos_implied, 1.0)
    else:
        cos_phi = math.cos(math.radians(contact_angle_deg))
        if abs(cos_implied / cos_phi - 1) > rel_tol:
            want = cos_phi * (1 - rho * rho) / (2 * rho)
            raise ValueError(
                f"bsf={bsf:g} disagrees with a contact angle of {contact_angle_deg:g}°, "
                f"which gives {want:.4f}"
            )
    angle = 0.0 if cos_phi >= 1.0 else math.degrees(math.acos(cos_phi))
    if contact_angle_deg is not None:
        angle = float(contact_angle_deg)
    return BearingGeometry(
        n, rho / cos_phi * pitch_diameter_mm, pitch_diameter_mm, angle, designation
    )


class BearingTableError(ValueError):
    """A bearing table that does not parse: ``line`` (1-based, 0 for the whole) and ``reason``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


#: Columns giving a bearing by its geometry (the catalogue's other columns are optional).
TABLE_COLUMNS: tuple[str, ...] = (
    "designation",
    "rolling_elements",
    "element_diameter_mm",
    "pitch_diameter_mm",
    "contact_angle_deg",
)

#: Columns giving a bearing by its published defect-frequency orders instead (with
#: ``designation`` and ``pitch_diameter_mm``): see :func:`geometry_from_multiples`.
FACTOR_COLUMNS: tuple[str, ...] = DEFECTS

#: How far a row's published orders may sit from those its geometry gives (rounding).
_FACTOR_REL_TOL = 0.005
_FACTOR_ABS_TOL = 0.005


def _row_geometry(name: str, raw: Mapping[str, str], has_factors: bool) -> BearingGeometry:
    """One row's bearing: from its geometry cells, else from its orders (``ValueError``)."""
    geometry_cells = ("rolling_elements", "element_diameter_mm", "contact_angle_deg")
    given = {c: raw.get(c, "") != "" for c in geometry_cells}
    if raw["pitch_diameter_mm"] == "":
        raise ValueError("pitch_diameter_mm is empty")
    pitch = float(raw["pitch_diameter_mm"])
    factors = None
    if has_factors and any(raw[k] != "" for k in FACTOR_COLUMNS):
        if not all(raw[k] != "" for k in FACTOR_COLUMNS):
            raise ValueError("give all four orders bpfo, bpfi, bsf, ftf, or none")
        factors = {k: float(raw[k]) for k in FACTOR_COLUMNS}
    if given["rolling_elements"] and given["element_diameter_mm"]:
        n_text = raw["rolling_elements"]
        if not n_text.isdigit():
            raise ValueError("rolling_elements must be a whole number")
        angle = float(raw["contact_angle_deg"]) if given["contact_angle_deg"] else 0.0
        g = BearingGeometry(int(n_text), float(raw["element_diameter_mm"]), pitch, angle, name)
        if factors is not None:
            for k, got in g.defect_multiples().items():
                if abs(got - factors[k]) > max(_FACTOR_ABS_TOL, _FACTOR_REL_TOL * factors[k]):
                    raise ValueError(
                        f"{k}={factors[k]:g} disagrees with the geometry, which gives {got:.4f}"
                    )
        return g
    if factors is None:
        raise ValueError(
            "give rolling_elements and element_diameter_mm, or the orders bpfo, bpfi, bsf, ftf"
        )
    angle_or_none = float(raw["contact_angle_deg"]) if given["contact_angle_deg"] else None
    return geometry_from_multiples(factors, pitch, angle_or_none, name)


def parse_bearing_table(text: str) -> dict[str, BearingGeometry]:
    """Bearings from the text of a CSV table: basic designation -> geometry.

    The header names ``designation`` and ``pitch_diameter_mm`` and either the geometry
    (:data:`TABLE_COLUMNS`) or the published defect-frequency orders (:data:`FACTOR_COLUMNS`,
    per shaft revolution) or both. A row gives its geometry, or leaves ``rolling_elements``
    and ``element_diameter_mm`` empty and gives its orders (the geometry is then derived,
    :func:`geometry_from_multiples`; an empty ``contact_angle_deg`` is derived too, beside a
    geometry it is 0). A row that gives both must agree with itself to 0.5 %. Other columns (the built-in catalogue's
    ``bore_mm``, ``source``) are allowed and ignored; lines starting with ``#`` and blank
    lines are skipped. Designations are stored as :func:`basic_designation` gives them.

    Raises :class:`BearingTableError` (a ``ValueError``): the line and what is wrong.
    """
    rows = [
        (i + 1, line)
        for i, line in enumerate(text.splitlines())
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise BearingTableError(0, "no header line (expected " + ", ".join(TABLE_COLUMNS) + ")")
    head_no, head = rows[0]
    names = [c.strip().lower() for c in next(csv.reader([head]))]
    has_factors = all(c in names for c in FACTOR_COLUMNS)
    need = ("designation", "pitch_diameter_mm") if has_factors else TABLE_COLUMNS
    missing = [c for c in need if c not in names]
    if missing:
        raise BearingTableError(head_no, f"header lacks column(s) {', '.join(missing)}")
    wanted = [c for c in (*TABLE_COLUMNS, *FACTOR_COLUMNS) if c in names]
    col = {c: names.index(c) for c in wanted}
    out: dict[str, BearingGeometry] = {}
    for line_no, line in rows[1:]:
        cells = next(csv.reader([line]))
        if len(cells) != len(names):
            raise BearingTableError(line_no, f"{len(cells)} fields, the header has {len(names)}")
        raw = {c: cells[i].strip() for c, i in col.items()}
        bad = HIDDEN_CHARS.search(raw["designation"])
        if bad:  # shown in check's messages and on the dashboard: no escape sequences
            raise BearingTableError(
                line_no,
                f"designation holds U+{ord(bad.group()):04X}, a control or invisible "
                "formatting character",
            )
        name = basic_designation(raw["designation"])
        if not name:
            raise BearingTableError(line_no, "designation is empty")
        if name in out:
            raise BearingTableError(line_no, f"designation {name!r} is listed twice")
        numbers = [raw[c] for c in wanted if c != "designation" and raw[c] != ""]
        try:
            values = [float(x) for x in numbers]
        except ValueError:
            raise BearingTableError(
                line_no,
                "rolling_elements must be a whole number, the diameters, the angle and the "
                f"orders numbers (got {line.strip()!r})",
            ) from None
        if not all(math.isfinite(x) for x in values) or any(x > 1e6 for x in values):
            raise BearingTableError(line_no, f"numbers out of range (got {line.strip()!r})")
        if raw.get("rolling_elements", "").isdigit() and int(raw["rolling_elements"]) > 1000:
            raise BearingTableError(line_no, f"numbers out of range (got {line.strip()!r})")
        try:
            out[name] = _row_geometry(name, raw, has_factors)
        except ValueError as exc:
            raise BearingTableError(line_no, str(exc)) from None
    return out


# Everything after the basic designation says nothing about the rolling elements' number or
# size: seals and shields (2RS, 2RS1, 2Z, ZZ, RS, LLU, DDU, VV), internal clearance (C2, C3,
# C4, CN), snap ring groove (N, NR), cage and design (E, EC, ECP, ECJ, J, M, MA, TN9),
# tapered bore (K), precision (P5, P6) and makers' own codes (JEM, W33).
_BASIC = re.compile(r"^(NUP|NJ|NU|NN|N)?(\d{3,6})")


def basic_designation(text: str) -> str:
    """The basic designation of ``text`` (upper case, no spaces): ``6309-2RS`` -> ``6309``,
    ``NU 208 ECP`` -> ``NU208``, ``22210 E`` -> ``22210``, ``6205-2RS JEM`` -> ``6205``.

    The basic designation ends at the first separator (space, ``-``, ``/``, ``.``) or
    letter after its digits (a letter prefix such as ``NU`` may stand apart from them).
    Digits that run on into a suffix (``62052RS``) are cut by :func:`lookup_bearing`.
    """
    joined = re.sub(r"^(NUP|NJ|NU|NN|N)\s+(?=\d)", r"\1", text.strip().upper())
    first = re.split(r"[\s\-/.]+", joined, maxsplit=1)[0]
    m = _BASIC.match(first)
    return (m.group(1) or "") + m.group(2) if m else first


def _neighbours(basic: str, known: Mapping[str, BearingGeometry]) -> list[str]:
    """The known designations of the same series (all but the two bore digits), nearest bore
    first: for ``6305``, ``6304, 6306, 6303, 6307``."""
    if len(basic) < 4 or not basic[-2:].isdigit():
        return []
    series, bore = basic[:-2], int(basic[-2:])
    same = [k for k in known if k[:-2] == series and len(k) == len(basic) and k[-2:].isdigit()]
    return sorted(same, key=lambda k: (abs(int(k[-2:]) - bore), k))[:4]


def _kind(basic: str) -> tuple[str, int]:
    """The bearing type a basic designation says (N, NU, NJ, NUP: cylindrical roller; else
    its first digit and length: 6 of four digits, deep-groove ball; 2 of five, spherical
    roller): a neighbour of another type has other kinematics however alike the name."""
    letters = re.match(r"[A-Z]*", basic)
    prefix = letters.group(0) if letters else ""
    if prefix:
        return ("N", 0) if prefix.startswith("N") else (prefix, 0)
    return (basic[:1], len(basic))


def _closest(basic: str, known: Mapping[str, BearingGeometry]) -> list[str]:
    """Up to four known designations nearest ``basic``: its series by bore, else its type by
    spelling, else any by spelling."""
    same_kind = sorted(k for k in known if _kind(k) == _kind(basic))
    return (
        _neighbours(basic, known)
        or difflib.get_close_matches(basic, same_kind, 4, 0.6)
        or difflib.get_close_matches(basic, sorted(known), 4, 0.6)
    )


@functools.cache
def _catalogue() -> dict[str, BearingGeometry]:
    text = resources.files("pdm.dsp").joinpath("bearing_catalogue.csv").read_text("utf-8")
    return parse_bearing_table(text)


def lookup_bearing(
    designation: str, table: Mapping[str, BearingGeometry] | None = None
) -> BearingGeometry:
    """Geometry of a bearing by designation: from ``table`` (a pipeline's own, see
    :func:`parse_bearing_table`) first, then the built-in catalogue.

    Suffixes after the basic designation are ignored (see :func:`basic_designation`).
    Raises ``KeyError`` with one line naming the closest known designations.
    """
    known = {**BEARINGS, **(table or {})}
    basic = basic_designation(designation)
    if basic in known:
        return known[basic]
    # "62052RS", "6309 2Z": the digits ran on into a seal or shield suffix (2RS, 2Z).
    compact = re.sub(r"[\s\-/.]+", "", designation.strip().upper())
    for cut in range(len(basic) - 1, 2, -1):
        rest = compact[cut:]
        if basic[:cut] in known and rest[:1] == "2" and rest[1:2].isalpha():
            return known[basic[:cut]]
    close = _closest(basic, known)
    hint = f"closest known: {', '.join(close)}" if close else f"{len(known)} known, e.g. 6205, 6309"
    raise KeyError(
        f"bearing {designation!r} is not in the bearing table ({hint}); give its geometry "
        "or a bearing_table"
    )


#: The built-in catalogue (pdm/dsp/bearing_catalogue.csv, read once): the 60xx, 62xx and
#: 63xx deep-groove ball bearings whose defect-frequency coefficients are published, and the
#: three roller bearings (NU206, 22205, 22228) whose orders are; where every number comes
#: from is in scripts/bearing_catalogue.py and docs/diagnosis.md ("The bearing catalogue").
BEARINGS: Mapping[str, BearingGeometry] = types.MappingProxyType(_catalogue())
