"""The bearing catalogue: published defect-frequency factors, suffixes, a user's own table."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from pdm.config import load_pipeline
from pdm.dsp.bearings import (
    BEARINGS,
    BearingGeometry,
    BearingTableError,
    basic_designation,
    geometry_from_multiples,
    lookup_bearing,
    parse_bearing_table,
)
from pdm.errors import ConfigError
from pdm.sources.simulator import FaultSpec, SimSpec, write_recording

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "pdm" / "dsp" / "bearing_catalogue.csv"


def catalogue_rows() -> list[dict[str, str]]:
    lines = [ln for ln in CATALOGUE.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def test_catalogue_holds_the_common_deep_groove_series() -> None:
    assert len(BEARINGS) >= 31
    for series in ("60", "62", "63"):
        assert sum(d.startswith(series) and len(d) == 4 for d in BEARINGS) >= 3, series
    assert "6309" in BEARINGS and "6205" in BEARINGS


def test_every_row_reproduces_its_published_factors() -> None:
    """The geometry (count, element and pitch diameter) gives back the coefficients its
    source publishes (the CSV keeps them): to Timken's three decimals, 0.3 %; NU206's are
    published to two decimals (FTF 0.40 for the 0.403 its BPFO and BPFI imply), 0.005."""
    for row in catalogue_rows():
        got = BEARINGS[row["designation"]].defect_multiples()
        tol = 5e-3 if row["designation"] == "NU206" else 1e-3
        for k in ("bpfo", "bpfi", "bsf", "ftf"):
            rel = 5e-3 if row["designation"] == "NU206" else 3e-3
            assert got[k] == pytest.approx(float(row[k]), rel=rel, abs=tol), (row, k)


def test_skf_6205_factors_and_the_cwru_geometry() -> None:
    """SKF's published 6205 factors (BPFO 3.585, BPFI 5.415, BSF 2.357, FTF 0.398) and the
    CWRU README's geometry (9 balls, 0.3126 in on a 1.537 in pitch circle)."""
    g = lookup_bearing("6205-2RS JEM")
    assert g.rolling_elements == 9
    assert g.ball_diameter_mm == pytest.approx(0.3126 * 25.4, abs=1e-3)
    assert g.pitch_diameter_mm == pytest.approx(1.537 * 25.4, abs=1e-3)
    m = g.defect_multiples()
    expected = {"bpfo": 3.585, "bpfi": 5.415, "bsf": 2.357, "ftf": 0.398}
    assert {k: round(v, 3) for k, v in m.items()} == expected
    # Timken's 205K coefficients (3.574, 5.426) agree with SKF's 6205 within 0.4 %.
    assert 3.574 == pytest.approx(m["bpfo"], rel=4e-3)
    # 6203 (CWRU fan end): the README's orders.
    m3 = lookup_bearing("6203").defect_multiples()
    assert (round(m3["bpfi"], 3), round(m3["bpfo"], 3)) == (4.947, 3.053)


@pytest.mark.parametrize(
    ("designation", "ball_mm"), [("6004", 6.35), ("6206", 9.525), ("6207", 11.1125), ("6208", 12.7)]
)
def test_derived_balls_are_standard_ball_sizes(designation: str, ball_mm: float) -> None:
    """Pitch diameter estimated as (bore + OD)/2 and the published ball/pitch ratio give the
    standard inch ball sizes (1/4, 3/8, 7/16, 1/2 in): the estimate is close to the real."""
    assert BEARINGS[designation].ball_diameter_mm == pytest.approx(ball_mm, abs=0.01)


@pytest.mark.parametrize(
    ("text", "basic"),
    [
        ("6309", "6309"),
        ("6309-2RS", "6309"),
        ("6309 ZZ", "6309"),
        ("6309-2Z/C3", "6309"),
        ("6205-2RS JEM", "6205"),
        ("6205.2RSH", "6205"),
        ("nu 208 ecp", "NU208"),
        ("NU208ECP", "NU208"),
        ("22210 E", "22210"),
        ("22210EK", "22210"),
    ],
)
def test_suffixes_resolve_to_the_basic_designation(text: str, basic: str) -> None:
    assert basic_designation(text) == basic


@pytest.mark.parametrize("text", ["63092RS", "6309 2Z", "6309-2RS1", "6309ZZ", "6309 C3"])
def test_suffixed_6309_just_works(text: str) -> None:
    assert lookup_bearing(text) is BEARINGS["6309"]


def test_unknown_designation_names_the_closest_in_one_line() -> None:
    with pytest.raises(KeyError) as exc:
        lookup_bearing("6305")
    msg = exc.value.args[0]
    assert "\n" not in msg and "6305" in msg and "closest known" in msg and "6306" in msg


def test_own_table_comes_first_and_bad_tables_say_where() -> None:
    text = (
        "# my bearings\n"
        "designation,rolling_elements,element_diameter_mm,pitch_diameter_mm,contact_angle_deg,note\n"
        "NU 208 ECP,15,11.0,60.0,0,cylindrical\n"
        "6309,9,17.0,72.5,0,a different 6309\n"
    )
    table = parse_bearing_table(text)
    assert lookup_bearing("NU208 ECP", table).rolling_elements == 15
    assert lookup_bearing("6309-2RS", table).rolling_elements == 9  # the user's, not built-in
    bad = [
        ("designation,rolling_elements\n", 1, "lacks column"),
        (text + "6310,x,1,2,0,n\n", 5, "whole number"),
        (text + "6310,8,80,70,0,n\n", 5, "smaller than"),
        (text + "6309,8,17,70,0,n\n", 5, "listed twice"),
        (text + "6310,8,17\n", 5, "fields"),
    ]
    for src, line, words in bad:
        with pytest.raises(BearingTableError) as exc:
            parse_bearing_table(src)
        assert exc.value.line == line and words in exc.value.reason, (src, exc.value)


def test_catalogue_is_package_data_and_regenerates() -> None:
    """Installed with the package (pyproject), read through importlib.resources, and exactly
    what scripts/bearing_catalogue.py prints (do not edit by hand)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "bearing_catalogue.csv" in pyproject["tool"]["setuptools"]["package-data"]["pdm.dsp"]
    assert resources.files("pdm.dsp").joinpath("bearing_catalogue.csv").is_file()
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bearing_catalogue.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == CATALOGUE.read_text()


def test_published_factors_give_the_same_lines_as_the_geometry_6205() -> None:
    """SKF's 6205 orders (the CWRU README's, to four decimals; its rolling-element 4.7135 is
    2 x BSF) turned into a geometry give the 6205's lines to 0.01 %: a bearing given by its
    maker's factors is the same bearing as one given by its dimensions."""
    skf = {"bpfo": 3.5848, "bpfi": 5.4152, "bsf": 4.7135 / 2, "ftf": 0.3983}
    g = geometry_from_multiples(skf, 39.04, 0.0, "6205")
    assert g.rolling_elements == 9 and g.ball_diameter_mm == pytest.approx(7.94, abs=0.005)
    for rpm in (600, 1797, 6000):
        want = BEARINGS["6205"].defect_frequencies_hz(rpm / 60)
        got = g.defect_frequencies_hz(rpm / 60)
        assert got == pytest.approx(want, rel=1e-4), rpm


@pytest.mark.parametrize(
    ("n", "d", "pitch", "angle"),
    [(13, 9.0, 46.0, 0.0), (15, 7.0, 38.5, 12.0), (20, 21.0, 140.0, 10.5), (8, 15.9, 65.0, 0.0)],
)
def test_geometry_round_trips_through_its_orders(
    n: int, d: float, pitch: float, angle: float
) -> None:
    """Orders computed from a geometry give that geometry back: count, element diameter and,
    when not fixed, the contact angle (the spherical roller bearing's ~10-13 degrees)."""
    m = BearingGeometry(n, d, pitch, angle).defect_multiples()
    fixed = geometry_from_multiples(m, pitch, angle)
    derived = geometry_from_multiples(m, pitch) if angle else fixed
    for g in (fixed, derived):
        assert g.rolling_elements == n
        assert g.ball_diameter_mm == pytest.approx(d, rel=1e-9)
        assert g.contact_angle_deg == pytest.approx(angle, abs=1e-6)


@pytest.mark.parametrize(
    ("orders", "words"),
    [
        ({"bpfo": 3.5, "bpfi": 5.2, "bsf": 2.3, "ftf": 0.4}, "not a whole number"),
        ({"bpfo": 3.585, "bpfi": 5.415, "bsf": 2.357, "ftf": 0.45}, "ftf=0.45 disagrees"),
        ({"bpfo": 3.585, "bpfi": 5.415, "bsf": 4.714, "ftf": 0.398}, "larger than any"),
        ({"bpfo": 5.415, "bpfi": 3.585, "bsf": 2.357, "ftf": 0.398}, "bpfi > bpfo"),
        ({"bpfo": 3.585, "bpfi": 5.415, "ftf": 0.398}, "missing order(s) bsf"),
    ],
)
def test_orders_of_no_bearing_are_refused(orders: dict[str, float], words: str) -> None:
    """Four numbers that no single bearing produces (a typo, 2 x BSF given as BSF, the races
    swapped) are refused, not turned into a geometry."""
    with pytest.raises(ValueError, match=None) as exc:
        geometry_from_multiples(orders, 39.0)
    assert words in str(exc.value)


def test_roller_rows_reproduce_their_published_orders_and_physics() -> None:
    """NU206 (Schaeffler, Data 2025 Table 1): 13 rollers, contact angle 0 as a cylindrical
    roller bearing must have. 22205 (FAG, Sensors 2020 Table 1): 15 rollers a row, the
    contact angle BSF implies, 12.25 degrees, inside the 222 series' 10-14 degrees."""
    rows = {r["designation"]: r for r in catalogue_rows()}
    nu, sph = lookup_bearing("NU 206 E-XL-TVP2"), lookup_bearing("22205 E1 K C3")
    assert (rows["NU206"]["kind"], rows["22205"]["kind"]) == (
        "cylindrical_roller",
        "spherical_roller",
    )
    assert (nu.rolling_elements, nu.contact_angle_deg) == (13, 0.0)
    assert sph.rolling_elements == 15 and 10 < sph.contact_angle_deg < 14
    assert sph.contact_angle_deg == pytest.approx(12.25, abs=0.01)
    m = sph.defect_multiples()
    published = {"bpfo": 6.1852, "bpfi": 8.8148, "bsf": 5.4030 / 2, "ftf": 0.4123}
    assert m == pytest.approx(published, abs=1e-4)  # to its four decimals
    # pitch diameter is the (bore + OD)/2 estimate; the roller is its published fraction
    assert sph.pitch_diameter_mm == 38.5 and nu.pitch_diameter_mm == 46.0
    assert math.isclose(nu.ball_diameter_mm / nu.pitch_diameter_mm, 2.52 / 13, rel_tol=1e-4)


def test_skf_22228_reproduces_the_published_frequencies_at_1500_rpm() -> None:
    """SKF 22228 as VibroGuard's worked examples give it at 1500 r/min (vibroguard.cz/en/bpfo/,
    bpfi-2/, bsf-rolling-element/, ftf-cage-defect/): BPFO 205.3, BPFI 269.7, BSF 89.1,
    FTF 10.8 Hz. The catalogue row gives them back to their rounding (0.05 Hz); BPFO + BPFI is
    19 x 25 Hz, so 19 rollers a row, and BSF puts the contact angle at 10.1 degrees, a
    spherical roller bearing's, not 0."""
    g = lookup_bearing("22228 CC/W33")
    assert g.rolling_elements == 19
    assert g.contact_angle_deg == pytest.approx(10.1, abs=0.05)
    published = {"bpfo": 205.3, "bpfi": 269.7, "bsf": 89.1, "ftf": 10.8}
    assert g.defect_frequencies_hz(1500 / 60) == pytest.approx(published, abs=0.05)
    row = {r["designation"]: r for r in catalogue_rows()}["22228"]
    assert row["kind"] == "spherical_roller" and "vibroguard.cz" in row["source"]
    assert (row["bore_mm"], row["outer_diameter_mm"], row["width_mm"]) == ("140", "250", "68")
    assert g.pitch_diameter_mm == 195.0  # the (bore + OD)/2 estimate; only d/D enters


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("22210", "22205, 22228)"),
        ("22230", "22228, 22205)"),
        ("NU 208 ECP", "NU206)"),
        ("6305", "6304, 6306"),
        ("NU310", "NU206)"),  # not the 6310, a ball bearing of the same size
        ("22310", "22205)"),
        ("NJ 206", "NU206)"),
        ("N 205", "NU206)"),
    ],
)
def test_unknown_roller_names_the_closest_in_one_line(text: str, names: str) -> None:
    """The closest known are of the same series, else of the same type (a roller bearing's
    neighbour is a roller bearing, whose kinematics are alike), else alike in spelling."""
    with pytest.raises(KeyError) as exc:
        lookup_bearing(text)
    msg = exc.value.args[0]
    assert "\n" not in msg and f"closest known: {names}" in msg, msg


FACTOR_TABLE = """\
# my bearings, by the maker's published orders (per shaft revolution)
designation,pitch_diameter_mm,contact_angle_deg,bpfo,bpfi,bsf,ftf
22210 E,70,,{bpfo:.4f},{bpfi:.4f},{bsf:.4f},{ftf:.4f}
NU 310 ECP,80,0,{nbpfo:.4f},{nbpfi:.4f},{nbsf:.4f},{nftf:.4f}
"""


def factor_table() -> tuple[str, BearingGeometry, BearingGeometry]:
    """A table of two bearings given by orders only, made from known geometries."""
    sph = BearingGeometry(17, 10.5, 70.0, 11.0, "22210")
    cyl = BearingGeometry(14, 15.0, 80.0, 0.0, "NU310")
    n = {f"n{k}": v for k, v in cyl.defect_multiples().items()}
    return FACTOR_TABLE.format(**sph.defect_multiples(), **n), sph, cyl


def test_own_table_by_published_orders() -> None:
    """A user with only the maker's factors (SKF's, Schaeffler's calculators give them) names
    them; the lines come out those of the bearing, and the angle is derived where left empty."""
    text, sph, cyl = factor_table()
    table = parse_bearing_table(text)
    got_sph, got_cyl = lookup_bearing("22210 EK", table), lookup_bearing("NU310", table)
    assert got_sph.rolling_elements == 17 and got_sph.contact_angle_deg == pytest.approx(
        11, abs=0.05
    )
    assert got_cyl.rolling_elements == 14 and got_cyl.contact_angle_deg == 0.0
    for want, got in ((sph, got_sph), (cyl, got_cyl)):
        assert got.defect_frequencies_hz(25.0) == pytest.approx(
            want.defect_frequencies_hz(25.0), rel=2e-4
        )


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("6310,8,19,80,0,3.05,4.95,1.9865,0.50", "ftf=0.5 disagrees with the geometry"),
        ("6310,,,80,,3.05,4.95,2.0,", "give all four orders"),
        ("6310,,,80,,,,,", "give rolling_elements and element_diameter_mm, or the orders"),
        ("6310,,,,,3.05,4.95,2.0,0.38", "pitch_diameter_mm is empty"),
        ("6310,,,80,,3.05,4.85,2.0,0.38", "not a whole number"),
    ],
)
def test_bad_factor_rows_say_where_and_what(row: str, words: str) -> None:
    head = "designation,rolling_elements,element_diameter_mm,pitch_diameter_mm,"
    text = head + "contact_angle_deg,bpfo,bpfi,bsf,ftf\n6309,8,17.45,72.5,0,,,,\n" + row + "\n"
    with pytest.raises(BearingTableError) as exc:
        parse_bearing_table(text)
    assert exc.value.line == 3 and words in exc.value.reason, exc.value
    assert "\n" not in str(exc.value)


PIPELINE = """\
schema_version = 1
bearing_table = "bearings.csv"

[machine]
id = "fan-01"

[machine.speed]
rpm = 1480

[acquisition]
sample_rate_hz = 25600
window_samples = 16384

[[sensors]]
id = "nde"
bearing = "{bearing}"
channels = [{{ column = "x_g", unit = "g" }}]
"""


def test_pipeline_names_a_table_by_orders_and_the_catalogue_rollers(tmp_path: Path) -> None:
    """End to end through the pipeline file: a bearing_table given by orders, and the
    built-in 22205 and 6309 by name; an unknown designation is one line naming neighbours."""
    text, _, _ = factor_table()
    (tmp_path / "bearings.csv").write_text(text)
    for bearing, n in (("22210 E", 17), ("22205", 15), ("6309-2RS", 8)):
        (tmp_path / "fan.toml").write_text(PIPELINE.format(bearing=bearing))
        g = load_pipeline(tmp_path / "fan.toml").bearing_for("x_g")
        assert g is not None and g.rolling_elements == n, bearing
    (tmp_path / "fan.toml").write_text(PIPELINE.format(bearing="22212"))
    with pytest.raises(ConfigError) as exc:
        load_pipeline(tmp_path / "fan.toml")
    msg = str(exc.value)
    assert "closest known: 22210, 22205" in msg and "\n" not in msg.strip(), msg
    (tmp_path / "bearings.csv").write_text(text.replace("NU 310 ECP,80,0,", "NU 310 ECP,80,,9"))
    (tmp_path / "fan.toml").write_text(PIPELINE.format(bearing="22210"))
    with pytest.raises(ConfigError) as exc:
        load_pipeline(tmp_path / "fan.toml")
    assert "bearings.csv:4:" in str(exc.value), exc.value


@pytest.mark.parametrize("doc", ["pipelines/README.md", "docs/diagnosis.md"])
def test_documented_own_table_parses(doc: str) -> None:
    """The example bearing table the docs show is one the parser takes, with the bearings
    the docs say: NU208 by geometry, 22210 by orders (17 rollers, 11 degrees)."""
    text = (REPO / doc).read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```csv\n")[1:]]
    tables = [parse_bearing_table(b) for b in blocks if "bpfo" in b]
    assert tables, doc
    for table in tables:
        assert table["NU208"].rolling_elements == 15
        assert table["22210"].rolling_elements == 17
        assert table["22210"].contact_angle_deg == pytest.approx(11, abs=0.05)


@pytest.mark.parametrize(
    ("designation", "flag", "rpm", "fault", "named"),
    [
        ("22205", "22205 E1 K C3", 1480.0, "bpfo", "bearing_outer_race"),
        ("NU206", "NU 206 ECP", 985.0, "bpfi", "bearing_inner_race"),
        ("6309", "6309", 2950.0, "bpfi", "bearing_inner_race"),
    ],
)
def test_diagnose_by_designation_through_the_command(
    tmp_path: Path, designation: str, flag: str, rpm: float, fault: str, named: str
) -> None:
    """`pdm-edge diagnose FILE --rpm R --bearing 22205` just works: a simulated race fault of
    the catalogue's bearing (the spherical one at its 12.25 degrees) is named from the
    designation alone, through the real command."""
    path = tmp_path / f"{designation}.csv"
    spec = SimSpec(
        fs=25600.0,
        duration_s=6.0,
        rpm=rpm,
        bearing=BEARINGS[designation],
        resonance_hz=6000.0,
        defect_slip=0.01,
        faults=(FaultSpec(fault, 0.2),),
    )
    write_recording(path, spec)
    args = ["diagnose", str(path), "--rpm", str(rpm), "--bearing", flag]
    proc = subprocess.run(
        [sys.executable, "-m", "pdm.cli", *args, "--envelope-band", "3000,9000", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows and all(r["diagnosis"] == named for r in rows), [r["diagnosis"] for r in rows]
