"""The ground floor (pdm/core): its rule (nothing above it imported) and its small pieces."""

from __future__ import annotations

import ast
import os
import random
import sqlite3
import stat
from pathlib import Path

import pytest

from pdm.core.durable import write_transaction
from pdm.core.files import fsync_dir, output_problem, write_text_atomic
from pdm.core.net import is_loopback, is_loopback_ip
from pdm.core.time import iso_ns, iso_time, to_ns

CORE = Path(__file__).resolve().parents[2] / "pdm" / "core"


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_nothing_above_it(module: Path) -> None:
    """Every room may import pdm.core; so pdm.core imports no room (only pdm.errors)."""
    taken = []
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            taken.append("pdm.core")  # relative: within the package
        elif isinstance(node, ast.ImportFrom):
            taken.append(node.module or "")
        elif isinstance(node, ast.Import):
            taken += [a.name for a in node.names]
    above = [
        t
        for t in taken
        if t.split(".")[0] == "pdm" and t not in ("pdm.errors",) and not t.startswith("pdm.core")
    ]
    assert above == [], f"{module.name} imports {above}"


@pytest.mark.parametrize(
    ("host", "loopback", "loopback_ip"),
    [
        ("127.0.0.1", True, True),
        ("127.3.2.1", True, True),
        ("::1", True, True),
        ("[::1]", True, True),
        ("localhost", True, False),  # a name: trusted by is_loopback only
        ("LocalHost", True, False),
        ("evil.localhost", False, False),
        ("localhost.example.com", False, False),
        ("10.0.0.5", False, False),
        ("::ffff:10.0.0.5", False, False),
        ("0.0.0.0", False, False),
        ("", False, False),
        ("[127.0.0.1", False, False),
    ],
)
def test_loopback_table(host: str, loopback: bool, loopback_ip: bool) -> None:
    assert is_loopback(host) is loopback
    assert is_loopback_ip(host) is loopback_ip


def test_iso_time_rounds_like_datetime_and_carries_into_the_next_second() -> None:
    assert iso_time(1_767_225_600.64) == "2026-01-01T00:00:00.640000Z"
    assert iso_time(1_767_225_599.9999996) == "2026-01-01T00:00:00.000000Z"
    assert iso_time(-0.25) == "1969-12-31T23:59:59.750000Z"


def test_a_window_time_in_integer_ns_writes_the_iso_text_its_seconds_did() -> None:
    """Inside, a window's time is integer ns (to_ns, rounded to the µs as history keys it);
    at the edge iso_ns writes the same text iso_time wrote from the seconds."""
    assert to_ns(1_767_225_600.64) == 1_767_225_600_640_000_000
    assert iso_ns(1_767_225_600_640_000_000) == "2026-01-01T00:00:00.640000Z"
    assert iso_ns(-250_000_000) == "1969-12-31T23:59:59.750000Z"
    # a clock's ns round half to even to the microsecond, carrying into the next second
    assert [iso_ns(n)[-10:] for n in (1_499, 1_500, 2_500, 2_501, 999_999_500)] == [
        "00.000001Z",
        "00.000002Z",
        "00.000002Z",
        "00.000003Z",
        "01.000000Z",
    ]
    rng = random.Random(19)
    for _ in range(20_000):
        t = rng.uniform(-3e9, 4e9) if rng.random() < 0.5 else rng.randrange(-(10**12), 10**12) / 2e6
        assert iso_ns(to_ns(t)) == iso_time(t), t


def test_fsync_dir_flushes_a_directory_and_refuses_a_missing_one(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "gone")


def test_write_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.execute("CREATE TABLE t(x INTEGER PRIMARY KEY)")
    with write_transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError), write_transaction(db):
        db.execute("INSERT INTO t VALUES (2)")
        db.execute("INSERT INTO t VALUES (1)")  # fails: the 2 goes too
    assert not db.in_transaction
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_write_text_atomic_replaces_a_link_and_never_writes_through_it(tmp_path: Path) -> None:
    """`score --html link.html` wrote the page into what link.html pointed at."""
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    link = tmp_path / "page.html"
    link.symlink_to(target)
    write_text_atomic(link, "<html>")
    assert target.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "<html>"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(link.stat().st_mode) == 0o666 & ~umask  # as open() makes a file


def test_write_text_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("old report")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(page, "half \ud800 a page")  # fails mid-write, as a full disk would
    assert page.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]  # no temporary left


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("adir", "is a directory"),
        ("missing/page.html", "no such directory"),
        ("afile/page.html", "is not a directory"),
        ("new.html", None),
        ("afile", None),
    ],
)
def test_output_problem_names_what_cannot_be_written(
    tmp_path: Path, name: str, says: str | None
) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    problem = output_problem(tmp_path / name)
    assert problem == says if says is None else says in str(problem)
    if says == "is a directory":
        with pytest.raises(IsADirectoryError):
            write_text_atomic(tmp_path / name, "x")
