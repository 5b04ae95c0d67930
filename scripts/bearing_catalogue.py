"""Regenerate pdm/dsp/bearing_catalogue.csv (do not edit that file by hand: run this).

    python3 scripts/bearing_catalogue.py > pdm/dsp/bearing_catalogue.csv

Where the numbers come from
---------------------------
* Defect-frequency coefficients (orders of shaft speed: FTF, BSF, BPFO, BPFI) as Timken
  publishes them for its Fafnir wide-inner-ring ball bearings by *basic outer-ring size*:
  Timken Ball Bearing Housed Unit Catalog, "Frequency coefficients", table A-9, page A-13
  (catalog.timken.com/guide/ball-bearing-housed-unit/A-13.php). Fafnir's 9100, 200K and
  300K basic sizes are the ISO 10, 02 and 03 series, i.e. the 60xx, 62xx and 63xx deep-groove
  ball bearings (9104 = 6004, 205K = 6205, 309K = 6309); "K" is Fafnir's Conrad (deep-groove)
  type. The coefficients depend only on the ball complement, which the basic size fixes.
* Boundary dimensions (bore, outside diameter, width, mm): ISO 15 (the same in every maker's
  catalogue).
* 6205 and 6203: the geometry of the SKF 6205-2RS JEM and 6203-2RS JEM of the Case Western
  Reserve University bearing test rig, from CWRU's bearing specification table (inches),
  whose defect frequencies are SKF's published ones (6205: BPFO 3.5848, BPFI 5.4152,
  BSF 4.7135/2 = 2.357, FTF 0.3983).

What is derived, and how
------------------------
For a deep-groove ball bearing (contact angle 0), with ``r = d/D`` (ball over pitch diameter):
``BPFO + BPFI = n`` and ``(BPFI − BPFO)/(BPFI + BPFO) = r`` exactly, so the number of balls is
``n = round(BPFO + BPFI)`` and ``r`` follows from the two published pass frequencies. Only ``n``
and ``r`` enter the defect frequencies. The pitch diameter is taken as the mean of bore and
outside diameter, ``D = (bore + OD)/2`` (the usual estimate, ISO 281's ``D_pw``), and the ball
diameter as ``d = r·D``: their ratio is the published one, each alone is an estimate (within a
few per cent of the real ones for the CWRU bearings). Each row is checked: the FTF and BSF that
``n`` and ``r`` give must agree with the published FTF and BSF (to their rounding, 0.002 and
0.5 %); a row that does not is left out (Timken's 305K row repeats 205K's pass frequencies
under another FTF: 6305 is not listed).

Roller bearings: one size each, not series
------------------------------------------
No public table of roller counts and diameters, or of frequency factors, for the NU2xx, NU3xx,
222xx and 223xx series was found (docs/diagnosis.md, "The bearing catalogue", lists what was
searched). Three sizes have published factors: two from the makers' own values quoted in open
papers about public test-rig datasets, one from a vibration consultant's worked example; their
rows give the published orders and the geometry derived from them (``geometry_from_multiples``
in pdm/dsp/bearings.py):

* NU206: Schaeffler NU206-E-XL-TVP2, BPFO 5.24, BPFI 7.76, BSF 2.49, FTF 0.40 (Schnur et al.,
  "... cylindrical roller bearing dataset ...", Data 2025, 10(5), 77, Table 1;
  https://doi.org/10.3390/data10050077). A cylindrical roller bearing carries radial load on
  rollers parallel to the axis: contact angle 0 by physics, which the four orders confirm to
  their two decimals (n = 13, d/D = 0.194).
* 22205: FAG 22205-E1-K-C3 (Schaeffler's values), BPFO 6.1852, BPFI 8.8148, 2·BSF 5.4030,
  FTF 0.4123 (Soto-Ocampo et al., "Low-Cost, High-Frequency, Data Acquisition System for
  Condition Monitoring of Rotating Machinery through Vibration Analysis - Case Study",
  Sensors 2020, 20(12), 3493, Table 1; https://doi.org/10.3390/s20123493). The table's ball
  spin is twice the spin (5.4030 = 2 × 2.7015; with 5.4030 itself no contact angle fits).
  A spherical roller bearing has two rows whose rollers lean towards the axis: the orders are
  those of one row (n = 15 rollers per row; a defect on one raceway meets one row), and the
  contact angle follows from BSF: 12.25°, as physics expects of the 222 series (its
  catalogue factor e = 1.5·tan φ ≈ 0.3 gives 11-13°).
* 22228: SKF 22228 (design suffix not stated), BPFO 205.3 Hz, BPFI 269.7 Hz, BSF 89.1 Hz,
  FTF 10.8 Hz at 1500 r/min, i.e. 8.212, 10.788, 3.564, 0.432 per shaft revolution: the
  worked examples on VibroGuard's pages on the four defect frequencies (vibroguard.cz/en/bpfo/,
  /en/bpfi-2/, /en/bsf-rolling-element/, /en/ftf-cage-defect/; the Czech pages give the same
  numbers), which say the frequencies "are calculated" and not with what. BPFO + BPFI =
  475.0 Hz = 19 x 25 Hz: 19 rollers a row, FTF 10.805 Hz for the stated 10.8; the angle from
  BSF is 10.1° (9.4–10.8° within the rounding to 0.1 Hz).

The NU206 and 22205 numbers were read as the public bearing-dataset loaders that use these
recordings quote them (Table 1 of each paper), the 22228 ones from the pages' text; each set
of four is consistent with one bearing to its rounding, which a typo would not be. Different
makers' designs of one designation differ (a design suffix changes the rollers): for another
NU206, 22205 or 22228 give your own row (pipelines/README.md, "Bearings").

Not covered: the other NU2xx and 222xx sizes, all NU3xx and 223xx sizes, and the 60xx, 62xx
and 63xx sizes the Timken table does not list; give those in a pipeline's own ``bearing_table``, by
geometry or by the maker's published orders (pipelines/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, the repository root is not on sys.path: one derivation, the package's
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pdm.dsp.bearings import geometry_from_multiples

SOURCE_TIMKEN = "Timken Ball Bearing Housed Unit Catalog table A-9 (Fafnir {size})"
SOURCE_CWRU = "CWRU bearing specification table (SKF {designation}-2RS JEM)"

#: ISO 15 boundary dimensions: designation -> (bore, outside diameter, width), mm.
DIMENSIONS: dict[str, tuple[float, float, float]] = {
    "6004": (20, 42, 12), "6005": (25, 47, 12), "6006": (30, 55, 13),
    "6202": (15, 35, 11), "6203": (17, 40, 12), "6204": (20, 47, 14), "6205": (25, 52, 15),
    "6206": (30, 62, 16), "6207": (35, 72, 17), "6208": (40, 80, 18), "6209": (45, 85, 19),
    "6210": (50, 90, 20), "6211": (55, 100, 21), "6212": (60, 110, 22), "6213": (65, 120, 23),
    "6214": (70, 125, 24),
    "6303": (17, 47, 14), "6304": (20, 52, 15), "6305": (25, 62, 17), "6306": (30, 72, 19),
    "6307": (35, 80, 21), "6308": (40, 90, 23), "6309": (45, 100, 25), "6310": (50, 110, 27),
    "6311": (55, 120, 29), "6312": (60, 130, 31), "6314": (70, 150, 35), "6315": (75, 160, 37),
    "6316": (80, 170, 39), "6318": (90, 190, 43),
    "NU206": (30, 62, 16), "22205": (25, 52, 18), "22228": (140, 250, 68),
}  # fmt: skip

#: Timken table A-9: basic outer-ring size -> (ISO designation, FTF, BSF, BPFO, BPFI).
TIMKEN: dict[str, tuple[str, float, float, float, float]] = {
    "9104": ("6004", 0.398, 2.339, 3.578, 5.422),
    "9105": ("6005", 0.397, 2.328, 3.574, 5.426),
    "9106": ("6006", 0.417, 2.933, 4.588, 6.412),
    "202K": ("6202", 0.391, 2.175, 3.125, 4.875),
    "203K": ("6203", 0.382, 1.994, 3.053, 4.947),
    "204K": ("6204", 0.382, 1.992, 3.052, 4.948),
    "205K": ("6205", 0.397, 2.328, 3.574, 5.426),
    "206K": ("6206", 0.396, 2.311, 3.568, 5.432),
    "207K": ("6207", 0.396, 2.303, 3.565, 5.435),
    "208K": ("6208", 0.394, 2.256, 3.547, 5.453),
    "209K": ("6209", 0.402, 2.461, 3.621, 5.379),
    "210K": ("6210", 0.409, 2.665, 4.093, 5.907),
    "211K": ("6211", 0.408, 2.620, 4.078, 5.922),
    "212K": ("6212", 0.407, 2.584, 4.066, 5.934),
    "213K": ("6213", 0.410, 2.685, 4.099, 5.901),
    "214K": ("6214", 0.410, 2.702, 4.104, 5.896),
    "303K": ("6303", 0.364, 1.696, 2.545, 4.455),
    "304K": ("6304", 0.368, 1.757, 2.574, 4.426),
    "305K": ("6305", 0.367, 2.328, 3.574, 5.426),
    "306K": ("6306", 0.368, 1.757, 2.574, 4.426),
    "307K": ("6307", 0.376, 1.888, 3.006, 4.994),
    "308K": ("6308", 0.378, 1.925, 3.023, 4.977),
    "309K": ("6309", 0.380, 1.955, 3.037, 4.963),
    "310K": ("6310", 0.381, 1.981, 3.047, 4.953),
    "311K": ("6311", 0.382, 2.002, 3.057, 4.943),
    "312K": ("6312", 0.383, 2.020, 3.064, 4.936),
    "314K": ("6314", 0.385, 2.050, 3.076, 4.924),
    "315K": ("6315", 0.385, 2.062, 3.081, 4.919),
    "316K": ("6316", 0.386, 2.073, 3.086, 4.914),
    "318K": ("6318", 0.387, 2.091, 3.093, 4.907),
}

#: Roller bearings with published orders: designation -> (kind, contact angle when physics
#: fixes it or None to derive it, (BPFO, BPFI, BSF, FTF), source).
ROLLERS: dict[str, tuple[str, float | None, tuple[float, float, float, float], str]] = {
    "NU206": (
        "cylindrical_roller",
        0.0,
        (5.24, 7.76, 2.49, 0.40),
        "Schnur et al. Data 2025 10(5) 77 Table 1 (Schaeffler NU206-E-XL-TVP2)",
    ),
    "22205": (
        "spherical_roller",
        None,
        (6.1852, 8.8148, 5.4030 / 2, 0.4123),
        "Soto-Ocampo et al. Sensors 2020 20(12) 3493 Table 1 (FAG 22205-E1-K-C3; per row)",
    ),
    # published as Hz at 1500 r/min (25 Hz): BPFO 205.3, BPFI 269.7, BSF 89.1, FTF 10.8
    "22228": (
        "spherical_roller",
        None,
        (205.3 / 25, 269.7 / 25, 89.1 / 25, 10.8 / 25),
        "VibroGuard vibroguard.cz/en/bpfo/ bpfi-2/ bsf-rolling-element/ ftf-cage-defect/ "
        "(SKF 22228 at 1500 r/min; per row)",
    ),
}

#: CWRU's bearings, inches: designation -> (balls, ball diameter, pitch diameter).
CWRU: dict[str, tuple[int, float, float]] = {"6205": (9, 0.3126, 1.537), "6203": (8, 0.2656, 1.122)}

COLUMNS = (
    "designation,kind,rolling_elements,element_diameter_mm,pitch_diameter_mm,contact_angle_deg,"
    "bore_mm,outer_diameter_mm,width_mm,bpfo,bpfi,bsf,ftf,source"
)


def derive(size: str) -> tuple[int, float] | None:
    """(n, d/D) from a Timken row, or None when its four coefficients disagree."""
    _iso, ftf, bsf, bpfo, bpfi = TIMKEN[size]
    orders = {"bpfo": bpfo, "bpfi": bpfi, "bsf": bsf, "ftf": ftf}
    try:  # deep-groove ball bearing: contact angle 0; three decimals, checked to 0.002
        g = geometry_from_multiples(orders, 1.0, 0.0, abs_tol=0.002, rel_tol=0.005)
    except ValueError:
        return None
    return g.rolling_elements, g.ball_diameter_mm


def roller_rows() -> list[str]:
    out = []
    for iso, (kind, angle, (bpfo, bpfi, bsf, ftf), source) in ROLLERS.items():
        bore, od, width = DIMENSIONS[iso]
        orders = {"bpfo": bpfo, "bpfi": bpfi, "bsf": bsf, "ftf": ftf}
        g = geometry_from_multiples(orders, (bore + od) / 2, angle, iso)
        out.append(
            f"{iso},{kind},{g.rolling_elements},{float(f'{g.ball_diameter_mm:.6g}')!r},"
            f"{float(f'{g.pitch_diameter_mm:.6g}')!r},{g.contact_angle_deg:.4g},{bore:g},"
            f"{od:g},{width:g},{bpfo:.4f},{bpfi:.4f},{bsf:.4f},{ftf:.4f},{source}"
        )
    return out


def rows() -> list[str]:
    out = []
    for size, (iso, ftf, bsf, bpfo, bpfi) in TIMKEN.items():
        bore, od, width = DIMENSIONS[iso]
        if iso in CWRU:
            n, d_in, pitch_in = CWRU[iso]
            d, pitch = d_in * 25.4, pitch_in * 25.4
            r = d / pitch
            source = SOURCE_CWRU.format(designation=iso)
            bpfo, bpfi = n / 2 * (1 - r), n / 2 * (1 + r)
            bsf, ftf = (1 - r * r) / (2 * r), 0.5 * (1 - r)
        else:
            got = derive(size)
            if got is None:
                continue
            n, r = got
            pitch = (bore + od) / 2
            d = r * pitch
            source = SOURCE_TIMKEN.format(size=size)
        out.append(
            # repr for CWRU's inch values: the very floats the former built-in table held
            f"{iso},deep_groove_ball,{n},{d if iso in CWRU else float(f'{d:.6g}')!r},"
            f"{pitch if iso in CWRU else float(f'{pitch:.6g}')!r},0,{bore:g},{od:g},{width:g},"
            f"{bpfo:.4f},{bpfi:.4f},{bsf:.4f},{ftf:.4f},{source}"
        )
    return [*out, *roller_rows()]


def main() -> None:
    header = [
        "# Built-in bearing catalogue of pdm-edge: generated by scripts/bearing_catalogue.py,",
        "# which says where every number comes from and what is derived. Do not edit by hand.",
        "# Sources: Timken Ball Bearing Housed Unit Catalog, frequency coefficients table A-9",
        "# (catalog.timken.com/guide/ball-bearing-housed-unit/A-13.php); ISO 15 boundary",
        "# dimensions; CWRU bearing specification table for 6205 and 6203 (SKF); NU206 and",
        "# 22205: Schaeffler's orders as published in Data 2025 10(5) 77 and Sensors 2020",
        "# 20(12) 3493 (Table 1 of each); 22228: SKF 22228 orders from vibroguard.cz's",
        "# worked examples; geometry derived from the orders.",
        "# rolling_elements and element/pitch diameter ratio reproduce the published",
        "# coefficients (bpfo..ftf, orders); pitch_diameter_mm = (bore + OD)/2 is an estimate.",
    ]
    sys.stdout.write("\n".join([*header, COLUMNS, *rows()]) + "\n")


if __name__ == "__main__":
    main()
