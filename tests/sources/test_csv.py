"""Tests for pdm.sources.csv: the chunked CSV recording reader."""

from __future__ import annotations

import gzip
import json
import math
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdm.errors import CsvError, InputError
from pdm.sources.base import Chunk
from pdm.sources.csv import CsvRecording

CWRU = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cwru"


# ---------------------------------------------------------------------- helpers


def write(tmp_path: Path, text: str, name: str = "rec.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(p, "wt", encoding=encoding, newline="") as f:
            f.write(text)
    else:
        p.write_bytes(text.encode(encoding))
    return p


def read(rec: CsvRecording) -> tuple[np.ndarray, list[Chunk]]:
    chunks = list(rec.chunks())
    data = np.concatenate([c.data for c in chunks]) if chunks else np.empty((0, 0))
    return data, chunks


def csv_error(path: Path, line: int | None, column: str | None, **kw: object) -> CsvError:
    """Open and read ``path`` expecting a one-line CsvError at ``line``/``column``."""
    with pytest.raises(CsvError) as info:
        with CsvRecording(path, **kw) as rec:  # type: ignore[arg-type]
            read(rec)
    exc = info.value
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg
    assert (exc.line, exc.column) == (line, column), msg
    prefix = f"{path}:{line}: " + (f"column {column!r}: " if column else "")
    assert msg.startswith(prefix), msg
    if column is None:
        assert not msg[len(prefix) :].startswith("column"), msg
    return exc


SIMPLE = np.array([[0.5, -1.25, 3.0], [1.5, 2.0, -0.125], [2.5, 0.0, 1e-3], [3.5, 4.0, 5.0]])


def simple_text(delim: str = ",", decimal: str = ".", eol: str = "\n") -> str:
    rows = [delim.join(["a", "b", "c"])]
    for r in SIMPLE:
        rows.append(delim.join(repr(float(v)).replace(".", decimal) for v in r))
    return eol.join(rows) + eol


# ---------------------------------------------------------------------- formats


@pytest.mark.parametrize("delim", [",", ";", "\t"])
def test_delimiters(tmp_path: Path, delim: str) -> None:
    p = write(tmp_path, simple_text(delim))
    with CsvRecording(p, fs=100.0) as rec:
        assert rec.delimiter == delim
        assert rec.decimal == "."
        assert rec.channels == ("a", "b", "c")
        data, chunks = read(rec)
    np.testing.assert_array_equal(data, SIMPLE)
    assert chunks[0].first_line == 2
    assert chunks[0].channels == ("a", "b", "c")
    assert data.dtype == np.float64 and data.shape == (4, 3)


@pytest.mark.parametrize("delim", [";", "\t"])
def test_decimal_comma(tmp_path: Path, delim: str) -> None:
    p = write(tmp_path, simple_text(delim, decimal=","))
    with CsvRecording(p, fs=100.0) as rec:
        assert (rec.delimiter, rec.decimal) == (delim, ",")
        data, _ = read(rec)
    np.testing.assert_array_equal(data, SIMPLE)


def test_decimal_comma_single_column(tmp_path: Path) -> None:
    p = write(tmp_path, "x\n0,5\n-1,25\n")
    with CsvRecording(p, fs=10) as rec:
        assert rec.decimal == ","
        np.testing.assert_array_equal(read(rec)[0], [[0.5], [-1.25]])


def test_delimiter_tie_broken_by_data(tmp_path: Path) -> None:
    # Header has a comma inside a name; the data row says ';' is the delimiter.
    p = write(tmp_path, "time;Beschl. X, m/s2;Beschl. Y, m/s2\n0,0;1,5;2,5\n0,1;3,5;4,5\n")
    with CsvRecording(p) as rec:
        assert rec.delimiter == ";" and rec.decimal == ","
        assert rec.channels == ("Beschl. X, m/s2", "Beschl. Y, m/s2")
        assert rec.sample_rate_hz == 10.0
        np.testing.assert_array_equal(read(rec)[0], [[1.5, 2.5], [3.5, 4.5]])


@pytest.mark.parametrize("name", ["rec.csv.gz", "rec.tsv", "rec.txt"])
def test_gzip_and_suffixes(tmp_path: Path, name: str) -> None:
    delim = "\t" if ".tsv" in name else ","
    p = write(tmp_path, simple_text(delim), name)
    with CsvRecording(p, fs=100.0) as rec:
        np.testing.assert_array_equal(read(rec)[0], SIMPLE)


def test_crlf_bom_trailing_and_leading_blank_lines(tmp_path: Path) -> None:
    rows = simple_text(eol="\r\n").split("\r\n", 1)[1]
    text = "\ufeff# sample_rate_hz=50\r\n\r\na,b,c\r\n\r\n" + rows
    p = write(tmp_path, text + "\r\n\r\n")
    with CsvRecording(p) as rec:
        assert rec.channels == ("a", "b", "c")
        assert rec.header_line == 3
        data, chunks = read(rec)
    np.testing.assert_array_equal(data, SIMPLE)
    assert chunks[0].first_line == 5


def test_trailing_delimiter(tmp_path: Path) -> None:
    p = write(tmp_path, "a;b;\n1;2;\n3;4;\n")
    with CsvRecording(p, fs=1) as rec:
        assert rec.channels == ("a", "b")
        np.testing.assert_array_equal(read(rec)[0], [[1, 2], [3, 4]])


def test_windows_1252_header(tmp_path: Path) -> None:
    p = write(tmp_path, "Time;Beschleunigung m/s²\n0,0;1,5\n0,5;2,5\n", encoding="cp1252")
    with CsvRecording(p, columns=["Beschleunigung m/s²"]) as rec:
        assert rec.encoding == "cp1252"
        assert rec.sample_rate_hz == 2.0
        np.testing.assert_array_equal(read(rec)[0], [[1.5], [2.5]])


def test_quoted_header_names(tmp_path: Path) -> None:
    p = write(tmp_path, '"a","b"\n1,2\n')
    with CsvRecording(p, fs=1) as rec:
        assert rec.channels == ("a", "b")


# ---------------------------------------------------------------------- columns


def test_columns_selection_and_order(tmp_path: Path) -> None:
    p = write(tmp_path, "time,a,b,c\n0,1,2,3\n0.5,4,5,6\n")
    with CsvRecording(p, columns=["c", "a"]) as rec:
        assert rec.channels == ("c", "a") and rec.time_column == "time"
        data, chunks = read(rec)
    np.testing.assert_array_equal(data, [[3, 1], [6, 4]])
    assert chunks[0].channels == ("c", "a")


def test_default_columns_exclude_time(tmp_path: Path) -> None:
    p = write(tmp_path, "a,Timestamp,b\n1,0,2\n3,0.5,4\n")
    with CsvRecording(p) as rec:
        assert rec.channels == ("a", "b") and rec.time_column == "Timestamp"
        np.testing.assert_array_equal(read(rec)[0], [[1, 2], [3, 4]])


def test_requested_column_is_never_time(tmp_path: Path) -> None:
    # 'T' is a temperature here; asking for it makes it a channel.
    p = write(tmp_path, "T,x\n21.5,1\n21.4,2\n")
    with CsvRecording(p, columns=["T", "x"], fs=1) as rec:
        assert rec.time_column is None
        np.testing.assert_array_equal(read(rec)[0], [[21.5, 1], [21.4, 2]])


def test_missing_column(tmp_path: Path) -> None:
    p = write(tmp_path, "# x\nDE_g,FE_g\n1,2\n")
    exc = csv_error(p, 2, "DE_G", columns=["DE_G"], fs=1)
    assert "'DE_g', 'FE_g'" in str(exc) and "did you mean 'DE_g'" in str(exc)


def test_missing_column_names_a_hostile_header_in_part(tmp_path: Path) -> None:
    # 5000 columns, one of them a 100 000-character name: the error stays one short line
    names = [f"c{i}" for i in range(4999)] + ["x" * 100_000]
    p = write(tmp_path, ",".join(names) + "\n" + ",".join("0" for _ in names) + "\n")
    exc = csv_error(p, 1, "nope", columns=["nope"], fs=1)
    text = str(exc)
    assert len(text) < 500 and "\n" not in text, len(text)
    assert "'c0', 'c1'" in text and "(5000 in all)" in text
    # a bad cell under that name names the column in part
    p = write(tmp_path, "a," + "x" * 100_000 + "\n1,oops\n")
    with pytest.raises(CsvError) as info:
        with CsvRecording(p, fs=1) as rec:
            read(rec)
    text = str(info.value)
    assert len(text) < 300 and "'" + "x" * 40 + "…'" in text, text[:300]


@pytest.mark.parametrize("name", ["a\x1b[31mred", "b\u202elive", "c\x85d", "e\u200bf"])
def test_a_header_name_with_a_control_or_invisible_character_is_refused(
    tmp_path: Path, name: str
) -> None:
    # names are printed to terminals (an escape sequence) and pages (a direction override)
    p = write(tmp_path, f'x,"{name}"\n1,2\n')
    exc = csv_error(p, 1, None, fs=1)
    assert "header field 2 holds U+" in str(exc) and name not in str(exc)


def test_missing_column_even_in_invalidate_mode(tmp_path: Path) -> None:
    p = write(tmp_path, "a,b\n1,2\n")
    csv_error(p, 1, "c", columns=["c"], fs=1, on_bad_data="invalidate")


def test_duplicate_header(tmp_path: Path) -> None:
    p = write(tmp_path, "a,b,a\n1,2,3\n")
    csv_error(p, 1, "a", fs=1)


def test_numeric_first_line_is_not_a_header(tmp_path: Path) -> None:
    p = write(tmp_path, "1.0,2.0\n3.0,4.0\n")
    exc = csv_error(p, 1, None, fs=1)
    assert "header" in str(exc)


# ---------------------------------------------------------------------- sample rate


@pytest.mark.parametrize(
    "comment",
    [
        "# sample_rate_hz=25600",
        "# sample_rate_hz = 25600",
        "#sample_rate_hz: 25600",
        "# Sample_Rate_Hz = 25600 Hz",
    ],
)
def test_comment_rate(tmp_path: Path, comment: str) -> None:
    p = write(tmp_path, f"# exported by X\n{comment}\n" + simple_text())
    with CsvRecording(p) as rec:
        assert rec.sample_rate_hz == 25600.0 and rec.fs_source == "comment"
        assert rec.header_line == 3
        data, chunks = read(rec)
    assert chunks[0].fs == 25600.0 and chunks[0].first_line == 4
    np.testing.assert_array_equal(data, SIMPLE)


@pytest.mark.parametrize("name", ["rec.csv", "rec.csv.gz"])
def test_sidecar_rate_and_start_time(tmp_path: Path, name: str) -> None:
    p = write(tmp_path, simple_text(), name)
    (tmp_path / "rec.json").write_text(
        json.dumps({"sample_rate_hz": 12000, "start_time": "2026-01-02T03:04:05Z"})
    )
    with CsvRecording(p) as rec:
        assert rec.sample_rate_hz == 12000.0 and rec.fs_source == "sidecar"
        t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
        assert rec.start_time == t0
        _, chunks = read(rec)
    assert chunks[0].t0 == t0


def test_argument_rate_wins_when_equal(tmp_path: Path) -> None:
    p = write(tmp_path, "# sample_rate_hz=12000\n" + simple_text())
    with CsvRecording(p, fs=12000.0) as rec:
        assert rec.fs_source == "argument"


@pytest.mark.parametrize("where", ["comment", "sidecar"])
def test_fs_mismatch(tmp_path: Path, where: str) -> None:
    if where == "comment":
        p = write(tmp_path, "# sample_rate_hz=48000\n" + simple_text())
    else:
        p = write(tmp_path, simple_text())
        (tmp_path / "rec.json").write_text(json.dumps({"sample_rate_hz": 48000}))
    with pytest.raises(InputError) as info:
        CsvRecording(p, fs=12000)
    msg = str(info.value)
    assert "12000" in msg and "48000" in msg and where in msg and "fs argument" in msg
    assert "\n" not in msg


def test_comment_and_sidecar_disagree(tmp_path: Path) -> None:
    p = write(tmp_path, "# sample_rate_hz=48000\n" + simple_text())
    (tmp_path / "rec.json").write_text(json.dumps({"sample_rate_hz": 12000}))
    with pytest.raises(InputError, match="two sample rates"):
        CsvRecording(p)


def test_no_rate(tmp_path: Path) -> None:
    p = write(tmp_path, simple_text())
    with pytest.raises(InputError) as info:
        CsvRecording(p)
    assert not isinstance(info.value, CsvError)
    assert "--fs" in str(info.value) and "acquisition.sample_rate_hz" in str(info.value)


def test_bad_fs_argument(tmp_path: Path) -> None:
    p = write(tmp_path, simple_text())
    with pytest.raises(InputError, match="positive"):
        CsvRecording(p, fs=-1)


def test_derived_rate(tmp_path: Path) -> None:
    t = np.arange(100) / 2000.0
    text = "time_s,x\n" + "".join(f"{ti:.6f},{i}\n" for i, ti in enumerate(t))
    p = write(tmp_path, text)
    with CsvRecording(p, start_time=1000.0) as rec:
        assert rec.fs_source == "time column" and rec.time_format == "seconds"
        assert rec.sample_rate_hz == 2000.0
        assert rec.start_time == 1000.0
        data, chunks = read(rec)
    assert len(chunks) == 1 and chunks[0].t0 == 1000.0
    np.testing.assert_array_equal(data[:, 0], np.arange(100))


def test_derived_rate_from_rounded_stamps(tmp_path: Path) -> None:
    # 7 kHz stamped to 1 µs: steps are 142 or 143 µs (0.7 % apart, so accepted);
    # the median step would give 7042 or 6993 Hz, the mean over the block gives 7000.
    fs = 7000.0
    t = np.arange(5000) / fs
    text = "t,x\n" + "".join(f"{ti:.6f},1\n" for ti in t)
    with CsvRecording(write(tmp_path, text)) as rec:
        assert rec.sample_rate_hz == fs


def test_jitter_rejected(tmp_path: Path) -> None:
    t = list(np.arange(20) / 100.0)
    t[12] += 0.0002  # 2 % of the 10 ms step
    text = "# c\ntime,x\n" + "".join(f"{ti:.6f},1\n" for ti in t)
    p = write(tmp_path, text)
    # Row index 12 is the end of the first bad step: line 3 + 12.
    exc = csv_error(p, 15, "time")
    assert "--fs" in str(exc) and "1 %" in str(exc)


@pytest.mark.parametrize("fs", [25600.0, 48000.0])
def test_microsecond_rounding_is_not_jitter(tmp_path: Path, fs: float) -> None:
    # Stamps rounded to 1 µs: steps of 39/40 µs at 25.6 kHz (2.5 % apart).
    t = np.arange(3000) / fs
    p = write(tmp_path, "time,x\n" + "".join(f"{ti:.6f},1\n" for ti in t))
    with CsvRecording(p) as rec:
        assert rec.sample_rate_hz == fs
    iso = "".join(f"2026-01-02T03:04:05.{round(ti * 1e6):06d}Z,1\n" for ti in t[t < 1])
    with CsvRecording(write(tmp_path, "timestamp,x\n" + iso, "iso.csv")) as rec:
        assert rec.sample_rate_hz == fs


def test_missing_sample_with_whole_second_stamps(tmp_path: Path) -> None:
    # At 1 Hz a one-unit rounding allowance would hide a missing sample; it must not.
    p = write(tmp_path, "time,x\n0,1\n1,1\n2,1\n4,1\n5,1\n")
    csv_error(p, 5, "time")


def test_jitter_below_one_percent_is_fine(tmp_path: Path) -> None:
    t = list(np.arange(20) / 100.0)
    t[12] += 0.00005  # 0.5 %
    p = write(tmp_path, "time,x\n" + "".join(f"{ti:.6f},1\n" for ti in t))
    with CsvRecording(p) as rec:
        assert rec.sample_rate_hz == pytest.approx(100.0, rel=1e-3)


def test_declared_rate_contradicted_by_time_column(tmp_path: Path) -> None:
    t = np.arange(50) / 48000.0
    p = write(tmp_path, "time,x\n" + "".join(f"{ti:.9f},1\n" for ti in t))
    with pytest.raises(InputError, match="12000"):
        CsvRecording(p, fs=12000)


def test_single_row_cannot_derive_rate(tmp_path: Path) -> None:
    p = write(tmp_path, "time,x\n0,1\n")
    with pytest.raises(InputError, match="--fs"):
        CsvRecording(p)


# ---------------------------------------------------------------------- time column


def test_iso_time_column_z_and_offset(tmp_path: Path) -> None:
    text = (
        "timestamp,x\n"
        "2026-01-02T03:04:05Z,1\n"
        "2026-01-02T03:04:05.25Z,2\n"
        "2026-01-02 04:04:05.500+01:00,3\n"  # same instant scale, other zone
        "2026-01-02T03:04:05.750000000,4\n"  # naive = UTC, nanoseconds
    )
    p = write(tmp_path, text)
    with CsvRecording(p) as rec:
        assert rec.time_format == "iso8601"
        assert rec.sample_rate_hz == 4.0
        t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
        assert rec.start_time == t0
        data, chunks = read(rec)
    assert len(chunks) == 1 and chunks[0].t0 == t0
    np.testing.assert_array_equal(data[:, 0], [1, 2, 3, 4])


def test_iso_negative_offset_and_gap(tmp_path: Path) -> None:
    text = (
        "datetime;x\n"
        "2026-01-01T22:00:00-05:00;1,0\n"
        "2026-01-01T22:00:01-05:00;2,0\n"
        "2026-01-01T22:00:02-05:00;3,0\n"
        "2026-01-01T22:00:10-05:00;4,0\n"
    )
    p = write(tmp_path, text)
    with pytest.raises(CsvError, match="median"):
        CsvRecording(p)  # a gap in the first block: no rate can be derived
    with CsvRecording(p, fs=1) as rec:
        _, chunks = read(rec)
    base = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC).timestamp()
    assert [c.t0 for c in chunks] == [base, base + 10]
    assert [c.first_line for c in chunks] == [2, 5]


def test_posix_seconds_time_column(tmp_path: Path) -> None:
    t0 = 1_767_323_045.0
    text = "time,x\n" + "".join(f"{t0 + i / 10:.3f},{i}\n" for i in range(30))
    with CsvRecording(write(tmp_path, text), start_time=5.0) as rec:
        assert rec.time_format == "posix"
        assert rec.start_time == t0  # absolute times win over start_time
        assert rec.sample_rate_hz == 10.0
        _, chunks = read(rec)
    assert chunks[0].t0 == t0


def test_relative_seconds_with_comment_start_time(tmp_path: Path) -> None:
    text = "# start_time: 2026-01-02T03:04:05+00:00\nt,x\n" + "".join(
        f"{10 + i * 0.5},{i}\n" for i in range(6)
    )
    with CsvRecording(write(tmp_path, text)) as rec:
        base = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
        assert rec.start_time == base + 10
        _, chunks = read(rec)
    assert chunks[0].t0 == base + 10


def test_gap_splitting(tmp_path: Path) -> None:
    t = [0.0, 0.01, 0.02, 0.03, 0.5, 0.51, 0.52, 0.6, 0.61]
    text = "# sample_rate_hz=100\ntime,x\n" + "".join(f"{ti},{i}\n" for i, ti in enumerate(t))
    with CsvRecording(write(tmp_path, text), start_time=100.0) as rec:
        data, chunks = read(rec)
    assert [c.n_samples for c in chunks] == [4, 3, 2]
    assert [c.t0 for c in chunks] == pytest.approx([100.0, 100.5, 100.6])
    assert [c.first_line for c in chunks] == [3, 7, 10]
    assert "gap" in chunks[1].notes[0] and not chunks[0].notes
    np.testing.assert_array_equal(data[:, 0], np.arange(9))


def test_gap_across_block_boundary_and_max_gap(tmp_path: Path) -> None:
    t = [0.0, 0.01, 0.02, 0.05, 0.06]
    text = "time,x\n" + "".join(f"{ti},{i}\n" for i, ti in enumerate(t))
    p = write(tmp_path, text)
    with CsvRecording(p, fs=100, chunk_rows=3) as rec:
        _, chunks = read(rec)
    assert [c.n_samples for c in chunks] == [3, 2]
    assert chunks[1].t0 == pytest.approx(0.05) and chunks[1].notes
    with CsvRecording(p, fs=100, max_gap_s=0.05) as rec:
        assert len(read(rec)[1]) == 1


def test_t0_without_time_column_is_exact(tmp_path: Path) -> None:
    n, fs, start = 1000, 3.0, 1_767_323_045.0
    text = "x\n" + "".join(f"{i}\n" for i in range(n))
    with CsvRecording(write(tmp_path, text), fs=fs, start_time=start, chunk_rows=7) as rec:
        _, chunks = read(rec)
    index = 0
    for c in chunks:
        assert c.t0 == start + index / fs  # from the integer index, not accumulated
        assert c.first_line == 2 + index
        index += c.n_samples
    assert index == n


# ---------------------------------------------------------------------- bad input


BAD = [
    # id, text, line, column, reason fragment
    ("empty", "", 1, None, "empty file"),
    ("only-comments", "# sample_rate_hz=1\n# x\n", 3, None, "header"),
    ("no-data", "# c\na,b\n\n", 3, None, "no data rows"),
    ("too-few", "a,b,c\n1,2,3\n4,5\n", 3, "c", "too few fields"),
    ("too-many", "a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n", 4, None, "too many fields"),
    ("non-numeric", "a,b\n1,2\n3,x7\n", 3, "b", "not a number: 'x7'"),
    ("nan", "a,b\n1,2\nnan,4\n", 3, "a", "not a finite number: 'nan'"),
    ("NaN", "a,b\n1,2\n3,NaN\n", 3, "b", "NaN"),
    ("inf", "a,b\n1,inf\n", 2, "b", "not a finite number: 'inf'"),
    ("-Inf", "a;b\n1;2\n1;-Inf\n", 3, "b", "-Inf"),
    ("empty-cell", "a,b,c\n1,2,3\n4,,6\n", 3, "b", "empty cell"),
    ("empty-last-cell", "a,b,c\n1,2,3\n4,5,\n", 3, "c", "empty cell"),
    ("blank-line", "a,b\n1,2\n\n3,4\n", 3, None, "empty line"),
    ("comment-in-data", "a,b\n1,2\n# pause\n", 3, "b", "too few fields"),
    ("comment-in-data-2", "a,b\n1,2\n# pause,x\n", 3, "a", "not a number: '# pause'"),
    ("decimal-point-in-comma-file", "a;b\n1,5;2,5\n1,5;2.5.1\n", 3, "b", "not a number"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input(tmp_path: Path, text: str, line: int, column: str | None, reason: str) -> None:
    p = write(tmp_path, text)
    exc = csv_error(p, line, column, fs=10)
    assert reason in str(exc)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_bad_line_number_in_later_block(tmp_path: Path, chunk_rows: int) -> None:
    rows = [f"{i},{i * 2}\n" for i in range(20)]
    rows[13] = "13,oops\n"
    p = write(tmp_path, "# one\n# two\n\nx,y\n" + "".join(rows))
    exc = csv_error(p, 5 + 13, "y", fs=1, chunk_rows=chunk_rows)
    assert "'oops'" in str(exc)


@pytest.mark.parametrize(
    ("times", "line"),
    [
        ([0.0, 0.1, 0.2, 0.2, 0.3], 5),
        ([0.0, 0.1, 0.2, 0.15, 0.3], 5),
        ([0, 0.1, 0.2, 0.3, 0.25], 6),
    ],
    ids=["repeated", "backwards", "backwards-last"],
)
@pytest.mark.parametrize("mode", ["error", "invalidate"])
def test_non_monotonic_time(tmp_path: Path, times: list[float], line: int, mode: str) -> None:
    text = "time,x\n" + "".join(f"{t},{i}\n" for i, t in enumerate(times))
    p = write(tmp_path, text)
    for chunk_rows in (2, 100):
        exc = csv_error(p, line, "time", fs=10, on_bad_data=mode, chunk_rows=chunk_rows)
        assert "not after" in str(exc)


def test_non_monotonic_iso_time(tmp_path: Path) -> None:
    text = "timestamp,x\n2026-01-01T00:00:01Z,1\n2026-01-01T00:00:02Z,1\n2026-01-01T00:00:02Z,1\n"
    exc = csv_error(write(tmp_path, text), 4, "timestamp", fs=1)
    assert "2026-01-01T00:00:02Z" in str(exc)


def test_bad_iso_time(tmp_path: Path) -> None:
    text = "timestamp,x\n2026-01-01T00:00:01Z,1\n2026-13-01T00:00:02Z,1\n"
    csv_error(write(tmp_path, text), 3, "timestamp", fs=1)
    text = "timestamp,x\nyesterday,1\n"
    csv_error(write(tmp_path, text), 2, "timestamp", fs=1)


def test_bad_time_cell_is_not_repairable(tmp_path: Path) -> None:
    text = "time,x\n0,1\n0.1,2\n,3\n"
    exc = csv_error(write(tmp_path, text), 4, "time", fs=10, on_bad_data="invalidate")
    assert "empty cell" in str(exc)


def test_bad_comment_rate(tmp_path: Path) -> None:
    p = write(tmp_path, "# sample_rate_hz=fast\na\n1\n")
    csv_error(p, 1, None)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot"):
        CsvRecording(tmp_path / "nope.csv", fs=1)


def test_corrupt_gzip(tmp_path: Path) -> None:
    big = "a,b\n" + "".join(f"{i},{i}\n" for i in range(200_000))
    raw = gzip.compress(big.encode())
    p = tmp_path / "rec.csv.gz"
    p.write_bytes(raw[: len(raw) // 2])  # truncated download
    with pytest.raises(InputError, match="cannot read"):
        with CsvRecording(p, fs=1, chunk_rows=1000) as rec:
            read(rec)


# ---------------------------------------------------------------------- invalidate


def test_invalidate_mode_counts(tmp_path: Path) -> None:
    text = (
        "a,b,c\n"
        "1,2,3\n"
        "4,x,6\n"  # 1 bad
        "7,,nan\n"  # 2 bad
        "10,11\n"  # short row: 3 bad
        "13,14,15,16\n"  # long row: 3 bad
        "\n"  # blank row in the middle: 3 bad
        "19,20,inf\n"  # 1 bad
        "22,23,24\n"
    )
    with CsvRecording(write(tmp_path, text), fs=1, on_bad_data="invalidate", chunk_rows=3) as rec:
        data, chunks = read(rec)
        assert rec.bad_samples == 13
    nan = math.nan
    expected = [
        [1, 2, 3],
        [4, nan, 6],
        [7, nan, nan],
        [nan, nan, nan],
        [nan, nan, nan],
        [nan, nan, nan],
        [19, 20, nan],
        [22, 23, 24],
    ]
    np.testing.assert_array_equal(data, expected)
    assert [c.bad_samples for c in chunks] == [3, 6, 4]
    assert sum(c.bad_samples for c in chunks) == 13
    assert any("line 3: column 'b': not a number" in n for n in chunks[0].notes)


def test_invalidate_with_time_column(tmp_path: Path) -> None:
    text = "time,x,y\n0,1,2\n0.1,oops\n0.2,5,6\n"
    with CsvRecording(write(tmp_path, text), fs=10, on_bad_data="invalidate") as rec:
        data, chunks = read(rec)
        assert rec.bad_samples == 2
    assert len(chunks) == 1 and chunks[0].bad_samples == 2
    np.testing.assert_array_equal(data, [[1, 2], [math.nan, math.nan], [5, 6]])


def test_invalidate_still_needs_data(tmp_path: Path) -> None:
    csv_error(write(tmp_path, ""), 1, None, fs=1, on_bad_data="invalidate")
    csv_error(write(tmp_path, "a\n"), 2, None, fs=1, on_bad_data="invalidate")


def test_bad_samples_reset_per_pass(tmp_path: Path) -> None:
    with CsvRecording(write(tmp_path, "a\n1\nx\n"), fs=1, on_bad_data="invalidate") as rec:
        read(rec)
        read(rec)
        assert rec.bad_samples == 1


# ---------------------------------------------------------------------- chunking


def make_table(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.standard_normal((n, 3)), 6)


def test_chunk_boundaries(tmp_path: Path) -> None:
    table = make_table(1001)
    text = "# sample_rate_hz=100\n\nx;y;z\n" + "".join(
        ";".join(f"{v:.6f}".replace(".", ",") for v in r) + "\n" for r in table
    )
    p = write(tmp_path, text)
    with CsvRecording(p, chunk_rows=7) as small, CsvRecording(p, chunk_rows=10**6) as big:
        a, ca = read(small)
        b, cb = read(big)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, table, rtol=0, atol=1e-12)
    assert len(ca) == 143 and len(cb) == 1
    assert max(c.n_samples for c in ca) == 7
    assert [c.first_line for c in ca][:3] == [4, 11, 18]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    chunk_rows=st.integers(1, 70),
    gaps=st.sets(st.integers(1, 59), max_size=5),
)
def test_chunking_property(
    tmp_path_factory: pytest.TempPathFactory, n: int, chunk_rows: int, gaps: set[int]
) -> None:
    """Any chunk size gives the same samples; t0 and first_line follow the rows."""
    fs = 50.0
    t = np.arange(n) / fs
    for g in sorted(gaps):
        t[g:] += 1.0  # a 1 s gap before row g
    text = "time,v\n" + "".join(f"{ti:.4f},{i}\n" for i, ti in enumerate(t))
    p = write(tmp_path_factory.mktemp("prop"), text)
    with CsvRecording(p, fs=fs, chunk_rows=chunk_rows) as rec:
        data, chunks = read(rec)
    np.testing.assert_array_equal(data[:, 0], np.arange(n))
    row = 0
    for c in chunks:
        assert c.n_samples <= chunk_rows
        assert c.first_line == 2 + row
        assert c.t0 == pytest.approx(t[row], abs=1e-9)
        # no gap inside a chunk
        assert np.all(np.diff(t[row : row + c.n_samples]) < 1.5 / fs)
        row += c.n_samples
    assert row == n
    assert len(chunks) >= len({g for g in gaps if g < n}) + 1


def test_close_stops_a_running_generator(tmp_path: Path) -> None:
    p = write(tmp_path, "a\n" + "1\n" * 100)
    rec = CsvRecording(p, fs=1, chunk_rows=10)
    it: Iterator[Chunk] = rec.chunks()
    next(it)
    assert rec._handles
    rec.close()
    assert not rec._handles
    with pytest.raises((ValueError, StopIteration)):
        next(it)  # reading a closed file fails; never silent garbage


def test_streaming_memory_is_bounded(tmp_path: Path) -> None:
    """A ~20 MB file streams with a peak far below its size."""
    block = "".join(f"{v[0]:.7g},{v[1]:.7g},{v[2]:.7g}\n" for v in make_table(10_000))
    reps = 20_000_000 // len(block) + 1
    p = tmp_path / "big.csv.gz"
    with gzip.open(p, "wt", compresslevel=1) as f:
        f.write("DE_g,FE_g,BA_g\n")
        for _ in range(reps):
            f.write(block)
    size = len(block) * reps
    assert size > 20e6
    tracemalloc.start()
    try:
        with CsvRecording(p, fs=12000, chunk_rows=10_000) as rec:
            n = 0
            for c in rec.chunks():
                n += c.n_samples
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 10_000 * reps
    assert peak < 5e6, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"


# ---------------------------------------------------------------------- hostile files


def _peak_bytes(fn: object) -> int:
    """Peak Python heap (tracemalloc) while ``fn()`` runs; its exception propagates."""
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("where", ["header", "data"])
def test_an_endless_line_stops_at_its_line_number_in_bounded_memory(
    tmp_path: Path, where: str
) -> None:
    """/dev/zero saved as a file: 40 MB without a line break. The reader refuses it at the
    line where it starts, having read little more than the limit (the old reader grew to
    the whole line, then the next)."""
    from pdm.sources.csv import MAX_LINE_BYTES

    p = tmp_path / "zeros.csv"
    head = b"" if where == "header" else b"a,b\n1,2\n3,4\n"
    with open(p, "wb") as f:
        f.write(head)
        for _ in range(40):
            f.write(b"\0" * (1 << 20))
    line = 1 if where == "header" else 4
    exc: list[CsvError] = []

    def run() -> None:
        with pytest.raises(CsvError) as info:
            with CsvRecording(p, fs=100.0) as rec:
                read(rec)
        exc.append(info.value)

    peak = _peak_bytes(run)
    assert exc[0].line == line and f"{MAX_LINE_BYTES:,} bytes" in str(exc[0])
    assert str(exc[0]).startswith(f"{p}:{line}: line longer than")
    assert peak < 8 * MAX_LINE_BYTES, f"peak {peak / 1e6:.1f} MB"


def test_a_line_just_under_the_limit_is_read(tmp_path: Path) -> None:
    from pdm.sources.csv import MAX_LINE_BYTES

    cell = "1" + " " * (MAX_LINE_BYTES - 10)  # one long (padded) cell: still a number
    p = write(tmp_path, f"a,b\n1,2\n{cell},3\r\n4,5\n")
    with CsvRecording(p, fs=10.0) as rec:
        np.testing.assert_array_equal(read(rec)[0], [[1, 2], [1, 3], [4, 5]])


def test_long_lines_make_smaller_blocks_not_bigger_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block budget: lines of ~100 kB with a 1 MiB budget give blocks of a few rows,
    every row read once and in order (chunk_rows alone would allow 65,536 such rows)."""
    import pdm.sources.csv as csvmod

    monkeypatch.setattr(csvmod, "_BLOCK_BYTES", 1 << 20)
    pad = " " * 100_000
    rows = [f"{i}{pad},{-i}" for i in range(60)]
    p = write(tmp_path, "a,b\n" + "\n".join(rows) + "\n")
    with CsvRecording(p, fs=10.0) as rec:
        data, chunks = read(rec)
    np.testing.assert_array_equal(data, [[i, -i] for i in range(60)])
    assert max(c.n_samples for c in chunks) <= 12 and len(chunks) >= 5
    assert [c.first_line for c in chunks] == sorted({c.first_line for c in chunks})


def test_many_blank_lines_between_rows_cost_no_memory(tmp_path: Path) -> None:
    """Found by the CSV fuzzing: blank lines held back (until data shows they are not
    trailing) were kept in one list, so a block could exceed chunk_rows and a file of
    blank lines grew memory with its length. Now they are counted."""
    p = tmp_path / "blanks.csv"
    p.write_text("x\n1\n" + "\n" * 300_000 + "2\n\n\n")
    chunks: list[Chunk] = []

    def run() -> None:
        with CsvRecording(p, fs=1.0, on_bad_data="invalidate", chunk_rows=1000) as rec:
            for c in rec.chunks():
                assert c.n_samples <= 1000
                chunks.append(Chunk(c.data[[0, -1]], c.fs, c.t0, c.channels, c.first_line))

    peak = _peak_bytes(run)
    assert peak < 10e6, f"peak {peak / 1e6:.1f} MB"
    assert chunks[0].data[0, 0] == 1 and chunks[-1].data[-1, 0] == 2
    assert chunks[-1].first_line == 300_003 and len(chunks) == 302
    csv_error(p, 3, "x", fs=1.0)  # error mode: the first blank line between data rows


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_recording_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    """A FIFO cannot be read twice (the reader opens a file more than once) and /dev/zero
    never ends: both are refused at once, before anything is read."""
    import os

    if kind == "fifo":
        p = tmp_path / "pipe.csv"
        os.mkfifo(p)
        what = "a FIFO or pipe"
    elif kind == "device":
        p = Path("/dev/zero")
        what = "a character device"
    else:
        p = tmp_path
        what = "a directory"
    with pytest.raises(InputError) as info:
        CsvRecording(p, fs=100.0)
    assert str(info.value) == (
        f"{p}: not a regular file ({what}); a recording is read more than once, "
        "so save the data to a file first"
    )


def test_more_channels_than_the_limit_are_refused_at_the_header(tmp_path: Path) -> None:
    from pdm.sources.csv import MAX_CHANNELS

    names = [f"c{i}" for i in range(MAX_CHANNELS + 1)]
    p = write(tmp_path, ",".join(names) + "\n" + ",".join("0" for _ in names) + "\n")
    exc = csv_error(p, 1, None, fs=10.0)
    assert f"{MAX_CHANNELS + 1} channels: at most {MAX_CHANNELS}" in str(exc)
    with CsvRecording(p, fs=10.0, columns=names[:MAX_CHANNELS]) as rec:  # a choice is fine
        assert len(read(rec)[0][0]) == MAX_CHANNELS


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("# start_time=9999-12-31T00:00:00Z\nx\n1\n2\n", 1, None),
        ("# start_time=1e300\nx\n1\n2\n", 1, None),
        ("# start_time=7258118399.9\nx\n1\n2\n3\n", 4, None),  # 2200 falls on row 2
        ("time,x\n2262-04-11T23:47:16Z,1\n2262-04-11T23:47:17Z,2\n", 2, "time"),
        ("time,x\n9999-12-31T23:59:58Z,1\n9999-12-31T23:59:59Z,2\n", 2, "time"),
        ("time,x\n1e12,1\n1000000000001,2\n", 2, "time"),
        ("time,x\n1899-12-31T23:59:59Z,1\n1900-01-01T00:00:00Z,2\n", 2, "time"),
    ],
    ids=["iso-9999", "huge", "crosses-2200", "iso-2262", "iso-9999-column", "posix", "1899"],
)
def test_times_outside_1900_2199_are_refused_at_their_line(
    tmp_path: Path, text: str, line: int, column: str | None
) -> None:
    """Times inside are int64 ns: year 9999 used to end in an OverflowError traceback."""
    p = write(tmp_path, text)
    exc = csv_error(p, line, column, fs=1.0)
    assert "outside the years 1900-2199" in str(exc)


def test_a_start_time_argument_out_of_range_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "x\n1\n2\n")
    with pytest.raises(InputError) as info:
        CsvRecording(p, fs=1.0, start_time=253402214400.0)
    assert "start_time" in str(info.value) and "1900-2199" in str(info.value)
    (tmp_path / "rec.json").write_text('{"start_time": "9999-01-01T00:00:00Z"}')
    with pytest.raises(InputError) as info:
        CsvRecording(p, fs=1.0)
    assert "sidecar" in str(info.value) and "1900-2199" in str(info.value)


@pytest.mark.parametrize("rate", ["9" * 400, "inf", "nan", "-1", "0"])
def test_a_comment_rate_must_be_a_finite_positive_number(tmp_path: Path, rate: str) -> None:
    """Found by the CSV fuzzing: 400 nines read as an infinite sample rate."""
    p = write(tmp_path, f"# sample_rate_hz={rate}\nx\n1\n2\n")
    exc = csv_error(p, 1, None)
    assert "sample_rate_hz is not a positive number" in str(exc)


@pytest.mark.parametrize(
    "sidecar",
    ["[" * 100_000, '{"sample_rate_hz": ' + "9" * 5000 + "}", " " * (2 << 20) + "{}"],
    ids=["deep", "huge-int", "huge-file"],
)
def test_a_hostile_sidecar_is_one_line(tmp_path: Path, sidecar: str) -> None:
    p = write(tmp_path, "x\n1\n2\n")
    (tmp_path / "rec.json").write_text(sidecar)
    with pytest.raises(InputError) as info:
        CsvRecording(p, fs=1.0)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'rec.json'}: ") and "\n" not in msg


# ---------------------------------------------------------------------- real data


@pytest.mark.dataset
def test_cwru_recording() -> None:
    p = CWRU / "de12k" / "IR007_0hp.csv"
    if not p.exists():
        pytest.skip("CWRU recordings not found at ../shared/datasets/cwru (see its README)")
    with CsvRecording(p) as rec:
        assert rec.sample_rate_hz == 12000.0 and rec.fs_source == "sidecar"
        assert rec.channels == ("DE_g", "FE_g", "BA_g")
        assert rec.time_column is None
        data, chunks = read(rec)
    assert data.shape == (121265, 3)
    assert np.isfinite(data).all()
    assert chunks[1].t0 == 65536 / 12000.0
    # The README: DE RMS of a fault record is a few tenths of g, never thousands.
    assert 0.01 < float(np.sqrt(np.mean(data[:, 0] ** 2))) < 10
    with pytest.raises(InputError, match="48000"):
        CsvRecording(p, fs=48000)  # the known CWRU pitfall
