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
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "BEARINGS",
    "DEFECTS",
    "TABLE_COLUMNS",
    "BearingGeometry",
    "BearingTableError",
    "basic_designation",
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


class BearingTableError(ValueError):
    """A bearing table that does not parse: ``line`` (1-based, 0 for the whole) and ``reason``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


#: Columns a bearing table must have (the catalogue's other columns are optional).
TABLE_COLUMNS: tuple[str, ...] = (
    "designation",
    "rolling_elements",
    "element_diameter_mm",
    "pitch_diameter_mm",
    "contact_angle_deg",
)


def parse_bearing_table(text: str) -> dict[str, BearingGeometry]:
    """Bearings from the text of a CSV table: basic designation -> geometry.

    The header names at least :data:`TABLE_COLUMNS` (others, like the built-in
    catalogue's ``bore_mm`` or ``source``, are allowed and ignored); lines starting with
    ``#`` and blank lines are skipped. Designations are stored as :func:`basic_designation`
    gives them.

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
    missing = [c for c in TABLE_COLUMNS if c not in names]
    if missing:
        raise BearingTableError(head_no, f"header lacks column(s) {', '.join(missing)}")
    col = {c: names.index(c) for c in TABLE_COLUMNS}
    out: dict[str, BearingGeometry] = {}
    for line_no, line in rows[1:]:
        cells = next(csv.reader([line]))
        if len(cells) != len(names):
            raise BearingTableError(line_no, f"{len(cells)} fields, the header has {len(names)}")
        raw = {c: cells[i].strip() for c, i in col.items()}
        name = basic_designation(raw["designation"])
        if not name:
            raise BearingTableError(line_no, "designation is empty")
        if name in out:
            raise BearingTableError(line_no, f"designation {name!r} is listed twice")
        try:
            n = int(raw["rolling_elements"])
            d, pitch, angle = (
                float(raw[c])
                for c in ("element_diameter_mm", "pitch_diameter_mm", "contact_angle_deg")
            )
        except ValueError:
            raise BearingTableError(
                line_no,
                "rolling_elements must be a whole number, the diameters and the angle numbers "
                f"(got {line.strip()!r})",
            ) from None
        if not all(math.isfinite(x) for x in (d, pitch, angle)) or n > 1000:
            raise BearingTableError(line_no, f"numbers out of range (got {line.strip()!r})")
        try:
            out[name] = BearingGeometry(n, d, pitch, angle, name)
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
    close = _neighbours(basic, known) or difflib.get_close_matches(basic, sorted(known), 4, 0.6)
    hint = f"closest known: {', '.join(close)}" if close else f"{len(known)} known, e.g. 6205, 6309"
    raise KeyError(
        f"bearing {designation!r} is not in the bearing table ({hint}); give its geometry "
        "or a bearing_table"
    )


#: The built-in catalogue (pdm/dsp/bearing_catalogue.csv, read once): the 60xx, 62xx and
#: 63xx deep-groove ball bearings whose defect-frequency coefficients are published; where
#: every number comes from is in scripts/bearing_catalogue.py and docs/models.md.
BEARINGS: Mapping[str, BearingGeometry] = types.MappingProxyType(_catalogue())
