"""ISO 10816-3 evaluation zones for broadband velocity RMS.

Zone boundaries in mm/s (A/B, B/C, C/D) by machine group and foundation:

============  ==========  ===  ===  ====
group         foundation  A/B  B/C  C/D
============  ==========  ===  ===  ====
1 (large)     rigid       2.3  4.5  7.1
1 (large)     flexible    3.5  7.1  11.0
2 (medium)    rigid       1.4  2.8  4.5
2 (medium)    flexible    2.3  4.5  7.1
============  ==========  ===  ===  ====

Group 1: 300 kW–50 MW or shaft height ≥ 315 mm; group 2: 15–300 kW or
160–315 mm. The measurement band is 10–1000 Hz, or 2–1000 Hz for machines
below 600 r/min. A value exactly on a boundary belongs to the lower zone.

>>> iso_zone(2.8, group=2, foundation="rigid")
'B'
>>> iso_zone(2.81, group=2, foundation="rigid")
'C'
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ZONE_LIMITS_MM_S", "iso_band_hz", "iso_zone", "zone_limits"]

Foundation = Literal["rigid", "flexible"]

ZONE_LIMITS_MM_S: dict[tuple[int, str], tuple[float, float, float]] = {
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
}


def zone_limits(group: int, foundation: str) -> tuple[float, float, float]:
    """The A/B, B/C and C/D boundaries in mm/s."""
    try:
        return ZONE_LIMITS_MM_S[(group, foundation)]
    except KeyError:
        raise ValueError(
            f"no ISO 10816-3 zones for group={group!r}, foundation={foundation!r} "
            "(group is 1 or 2, foundation 'rigid' or 'flexible')"
        ) from None


def iso_zone(velocity_rms_mm_s: float, *, group: int, foundation: str) -> str:
    """The zone letter ``'A'``–``'D'`` of a velocity RMS in mm/s (boundaries go to the lower zone)."""
    ab, bc, cd = zone_limits(group, foundation)
    v = velocity_rms_mm_s
    if v != v:  # NaN: no zone can be claimed
        return "?"
    if v <= ab:
        return "A"
    if v <= bc:
        return "B"
    if v <= cd:
        return "C"
    return "D"


def iso_band_hz(rpm: float | None) -> tuple[float, float]:
    """The velocity measurement band: (2, 1000) Hz below 600 r/min, else (10, 1000) Hz."""
    if rpm is not None and rpm < 600:
        return (2.0, 1000.0)
    return (10.0, 1000.0)
