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

import math
from dataclasses import dataclass

__all__ = ["BEARINGS", "DEFECTS", "BearingGeometry", "lookup_bearing"]

#: Defect names, in the order features are emitted.
DEFECTS: tuple[str, ...] = ("bpfo", "bpfi", "bsf", "ftf")

_MM_PER_INCH = 25.4


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


def _inch(n: int, d_in: float, pitch_in: float, designation: str) -> BearingGeometry:
    return BearingGeometry(n, d_in * _MM_PER_INCH, pitch_in * _MM_PER_INCH, 0.0, designation)


#: Built-in table. Only geometries we could check against a published source
#: are listed (here: the SKF deep-groove bearings of the CWRU test rig, from
#: CWRU's bearing specification table); give any other bearing by geometry.
BEARINGS: dict[str, BearingGeometry] = {
    "6205": _inch(9, 0.3126, 1.537, "6205"),  # SKF 6205-2RS JEM, CWRU drive end
    "6203": _inch(8, 0.2656, 1.122, "6203"),  # SKF 6203-2RS JEM, CWRU fan end
}


def lookup_bearing(designation: str) -> BearingGeometry:
    """Geometry of a bearing in the built-in table.

    Suffixes after the basic designation (``6205-2RS``, ``6205 ZZ``) are ignored.
    Raises ``KeyError`` with the known designations when it is not in the table.
    """
    basic = designation.strip().upper().replace(" ", "-").split("-")[0]
    try:
        return BEARINGS[basic]
    except KeyError:
        known = ", ".join(sorted(BEARINGS))
        raise KeyError(
            f"bearing {designation!r} is not in the built-in table (known: {known}); "
            "give its geometry instead"
        ) from None
