"""The bearing catalogue: published defect-frequency factors, suffixes, a user's own table."""

from __future__ import annotations

import csv
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from pdm.dsp.bearings import (
    BEARINGS,
    BearingTableError,
    basic_designation,
    lookup_bearing,
    parse_bearing_table,
)

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "pdm" / "dsp" / "bearing_catalogue.csv"


def catalogue_rows() -> list[dict[str, str]]:
    lines = [ln for ln in CATALOGUE.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def test_catalogue_holds_the_common_deep_groove_series() -> None:
    assert len(BEARINGS) >= 29
    for series in ("60", "62", "63"):
        assert sum(d.startswith(series) and len(d) == 4 for d in BEARINGS) >= 3, series
    assert "6309" in BEARINGS and "6205" in BEARINGS


def test_every_row_reproduces_its_published_factors() -> None:
    """The geometry (count, element and pitch diameter) gives back the coefficients its
    source publishes (the CSV keeps them): to Timken's three decimals, 0.3 %."""
    for row in catalogue_rows():
        got = BEARINGS[row["designation"]].defect_multiples()
        for k in ("bpfo", "bpfi", "bsf", "ftf"):
            assert got[k] == pytest.approx(float(row[k]), rel=3e-3, abs=1e-3), (row, k)


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
