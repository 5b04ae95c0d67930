"""What only the SQLite store does: schema versions, WAL, columns per feature, errors, retention.

The behaviour every store shares is in ``tests/history/test_history_contract.py``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from test_history_contract import (
    NAMES,
    T0,
    S,
    features,
    log_records,
    ramp,
    scores,
    spectrum,
)

import pdm.history.sqlite as sqlite_mod
from pdm.history.base import HistoryError, parse_store_url
from pdm.history.records import Event, FeatureRows, Record, ScoreRows, StateChange
from pdm.history.sqlite import SCHEMA_VERSION, SqliteStore

DAY = 86_400 * S


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, to look at the file behind the store's back."""
    return sqlite3.connect(path, isolation_level=None)


def columns(path: Path) -> list[str]:
    with raw(path) as db:
        return [r[1] for r in db.execute("PRAGMA table_info(features)")]


def user_version(path: Path) -> int:
    db = raw(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- opening -------------------------------------------------------------------------------------


def test_url_folders_and_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "history.db"
    with SqliteStore(path) as store:
        assert store.url == f"sqlite:///{path}"
        assert parse_store_url(store.url).path == path
        assert path.parent.is_dir()
        store.ping()
    store.close()  # closing twice is fine
    with pytest.raises(HistoryError):
        store.count("features")


def test_wal_and_pragmas(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: see the store
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 0
        assert db.execute("PRAGMA cache_size").fetchone()[0] == -sqlite_mod.CACHE_KIB
    # WAL is a property of the file: a plain connection sees it too.
    with raw(tmp_path / "h.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_retention_days_must_be_positive(tmp_path: Path) -> None:
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="retention_days"):
            SqliteStore(tmp_path / "h.db", retention_days=bad)


# --- schema versions -------------------------------------------------------------------------------


def test_a_new_file_gets_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    SqliteStore(path).close()
    assert user_version(path) == SCHEMA_VERSION == len(sqlite_mod.MIGRATIONS)
    with raw(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert tables == {
        "features", "feature_channels", "scores", "spectra", "states", "events", "actions",
        "captures",
    }  # fmt: skip
    assert columns(path) == [
        "machine", "channel", "t_ns", "sensor", "window", "valid", "iso_zone", "appliance",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["empty file", "empty database"])
def test_a_version_0_file_is_migrated(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "h.db"
    if kind == "empty file":
        path.touch()
    else:
        with raw(path) as db:
            db.execute("CREATE TABLE notes (x)")  # something else's table: left alone
    with SqliteStore(path) as store:
        store.write([ramp("m1", "de", 3)])
        assert store.count("features") == 3
    assert user_version(path) == SCHEMA_VERSION


def _add_notes(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE notes (t_ns INTEGER, text TEXT)")
    db.execute("INSERT INTO notes VALUES (1, 'migrated')")


def test_an_older_file_is_migrated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.db"
    with SqliteStore(path) as store:
        store.write([ramp("m1", "de", 3)])
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", [*sqlite_mod.MIGRATIONS, _add_notes])
    with SqliteStore(path) as store:
        assert store.count("features") == 3  # the data survives
    SqliteStore(path).close()  # already at the new version: nothing runs again
    assert user_version(path) == SCHEMA_VERSION + 1
    with raw(path) as db:
        assert db.execute("SELECT text FROM notes").fetchall() == [("migrated",)]


def test_a_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.db"
    SqliteStore(path).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO no_such_table VALUES (1)")

    # Step 2 works, step 3 fails: the file stays at version 1, without step 2's table.

    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", [*sqlite_mod.MIGRATIONS, _add_notes, broken])
    with pytest.raises(HistoryError, match="no_such_table") as info:
        SqliteStore(path)
    assert str(path) in one_line(info.value)
    assert user_version(path) == SCHEMA_VERSION
    with raw(path) as db:
        assert db.execute("SELECT name FROM sqlite_schema WHERE name = 'notes'").fetchall() == []


def _schema_sql(path: Path, name: str) -> str:
    with raw(path) as db:
        row = db.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchone()
    return " ".join(str(row[0]).split()) if row else ""


def _version_1_file(path: Path, recs: list[FeatureRows]) -> None:
    """A file as the first schema wrote it, with ``recs`` in its feature table."""
    with raw(path) as db:
        sqlite_mod._migration_1(db)
        for name in dict.fromkeys(n for r in recs for n in r.names):
            db.execute(f'ALTER TABLE features ADD COLUMN "{name}" REAL')
        for r in recs:
            cols = ", ".join(['machine, channel, t_ns, sensor, "window", valid, iso_zone',
                              *(f'"{n}"' for n in r.names)])  # fmt: skip
            marks = ", ".join("?" * (7 + len(r.names)))
            db.executemany(
                f"INSERT INTO features ({cols}) VALUES ({marks})",
                [
                    (r.machine, r.channel[i], int(r.t_ns[i]), r.sensor[i], int(r.window[i]),
                     bool(r.valid[i]), r.iso_zone[i],
                     *(None if np.isnan(v) else float(v) for v in r.values[i]))
                    for i in range(len(r))
                ],
            )  # fmt: skip
        db.execute("PRAGMA user_version = 1")


def test_schema_step_3_puts_the_appliance_on_every_row_and_reads_old_rows_as_blank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many appliances, one view: every row says which appliance wrote it (the store's
    ``appliance``, else PDM_APPLIANCE_ID). Rows of an older file read ``''`` after the step."""
    path = tmp_path / "h.db"
    _version_1_file(path, [ramp("m1", "de", 2)])
    monkeypatch.setenv("PDM_APPLIANCE_ID", "edge-7")
    with SqliteStore(path) as store:  # migrated to the newest schema here
        store.write([ramp("m2", "de", 2), scores("m2", [0.0], [1.0]), spectrum("m2", "de", 0.0)])
        store.write(log_records("m2"))
        assert store.count("features") == 4 and store.machines() == ["m1", "m2"]
    with SqliteStore(path, appliance="edge-8") as store:
        store.write([ramp("m3", "de", 1)])
    assert user_version(path) == SCHEMA_VERSION
    with raw(path) as db:
        for table in ("features", "scores", "spectra", "states", "events", "actions", "captures"):
            got = sorted(r[0] for r in db.execute(f"SELECT DISTINCT appliance FROM {table}"))
            want = ["", "edge-7", "edge-8"] if table == "features" else ["edge-7"]
            assert got == want, table


def test_a_version_1_file_gets_time_keyed_features_with_its_rows(tmp_path: Path) -> None:
    """Schema step 2 rebuilds the feature table keyed by time: every row, every column
    the file had grown, the same answers from every read as a file written afresh."""
    recs = [
        ramp("m1", "de", 5), ramp("m1", "fe", 5, scale=2.0), ramp("m2", "de", 3),
        features("m2", [0.0, 0.5], ["nde", "nde"], [[7.0], [8.0]], names=["crest"]),
    ]  # fmt: skip
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    _version_1_file(old, recs)
    assert "PRIMARY KEY (machine, channel, t_ns)" in _schema_sql(old, "features")
    with SqliteStore(fresh) as store:
        store.write(recs)

    def reads(path: Path) -> tuple[Any, ...]:
        with SqliteStore(path) as store:
            assert store.count("features") == 15
            return (
                store.machines(), store.features("m1"), store.features("m2"),
                store.trend("m1", "rms_g", T0, T0 + 10 * S, points=5),
                store.trend("m2", "crest", T0, T0 + 10 * S, points=5),
                store.latest_status(),
            )  # fmt: skip

    got, want = reads(old), reads(fresh)
    assert user_version(old) == SCHEMA_VERSION
    assert "PRIMARY KEY (t_ns, machine, channel)" in _schema_sql(old, "features")
    assert "(machine, t_ns)" in _schema_sql(old, "features_machine_t")
    assert columns(old)[-2:] == ["crest", "appliance"]  # step 3 adds the appliance last
    with raw(old) as db:
        listed = db.execute("SELECT machine, channel FROM feature_channels").fetchall()
    assert sorted(listed) == [("m1", "de"), ("m1", "fe"), ("m2", "de"), ("m2", "nde")]
    assert got[0] == want[0] == ["m1", "m2"]
    for a, b in zip(got[1:3], want[1:3], strict=True):
        assert a.channel == b.channel and a.names == b.names and a.sensor == b.sensor
        assert_array_equal(a.t_ns, b.t_ns)
        assert_array_equal(a.values, b.values)
    for a, b in zip(got[3:5], want[3:5], strict=True):
        assert [(t.channel, t.t_ns.tolist(), t.mean.tolist()) for t in a] == [
            (t.channel, t.t_ns.tolist(), t.mean.tolist()) for t in b
        ]
    assert got[5] == want[5]


def test_per_machine_reads_use_the_machine_time_index(tmp_path: Path) -> None:
    """The reads of one machine walk its (machine, t_ns) index, not the whole table."""
    path = tmp_path / "h.db"
    with SqliteStore(path) as store:
        store.write([ramp("m1", "de", 3)])
    queries = [
        "SELECT * FROM features WHERE machine = ? AND t_ns >= ? AND t_ns < ? ORDER BY t_ns, channel",
        "SELECT max(t_ns) FROM features WHERE machine = ?",
        "SELECT * FROM features WHERE machine = ? AND channel = ? ORDER BY t_ns DESC LIMIT 1",
        "DELETE FROM features WHERE machine = ? AND t_ns < ?",
    ]
    with raw(path) as db:
        for sql in queries:
            plan = " ".join(
                r[-1]
                for r in db.execute("EXPLAIN QUERY PLAN " + sql, ["m1", "de", 0][: sql.count("?")])
            )
            assert "features_machine_t" in plan and "TEMP B-TREE" not in plan, (sql, plan)


def test_a_channel_whose_rows_retention_removed_is_no_longer_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.db"
    now = time.time_ns()
    old = features("m1", [0.0], ["gone"], [[1.0, 2.0, 3.0, 4.0]])
    old = dataclasses.replace(old, t_ns=np.array([now - 10 * DAY], dtype=np.int64))
    with SqliteStore(path, retention_days=5) as store:
        store.write([old, *_aged(now, 1, "new")])  # kept until the hour has passed
        assert [set(s.channels) for s in store.latest_status("m1")] == [{"de", "fe", "gone"}]
        monkeypatch.setattr(store, "_next_prune", time.monotonic() - 1)
        store.write([Event("x", now, "t", "info", "an hour later")])
        assert [set(s.channels) for s in store.latest_status("m1")] == [{"de", "fe"}]
        assert store.features("m1").channel == ("de", "fe")
        assert [t.channel for t in store.trend("m1", "rms_g", now - 20 * DAY, now + S)] == [
            "de", "fe",
        ]  # fmt: skip
        # Written again by the same store: listed again.
        store.write([dataclasses.replace(old, t_ns=np.array([now], dtype=np.int64))])
        assert [set(s.channels) for s in store.latest_status("m1")] == [{"de", "fe", "gone"}]


def test_a_failed_batch_does_not_leave_its_channels_thought_listed(tmp_path: Path) -> None:
    """The batch rolled back, the channel list with it: the next write lists them again."""
    path = tmp_path / "h.db"
    bad = dataclasses.replace(Event("m1", T0, "t", "info", "x"), detail=None)  # NOT NULL fails
    with SqliteStore(path) as store:
        with pytest.raises(HistoryError):
            store.write([ramp("m1", "de", 2), bad])
        assert store.machines() == []
        store.write([ramp("m1", "de", 2)])
        assert store.machines() == ["m1"]
        assert [set(s.channels) for s in store.latest_status("m1")] == [{"de"}]


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    SqliteStore(path).close()
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    with pytest.raises(HistoryError) as info:
        SqliteStore(path)
    text = one_line(info.value)
    assert info.value.retryable is False
    assert str(path) in text and f"{SCHEMA_VERSION + 98}" in text and f"({SCHEMA_VERSION})" in text
    assert user_version(path) == SCHEMA_VERSION + 98  # untouched


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the rows you are looking for\n" * 100)
    with pytest.raises(HistoryError) as info:
        SqliteStore(path)
    text = one_line(info.value)
    assert text.startswith(f"{path}: not an SQLite database")
    assert info.value.retryable is False
    assert path.read_text().startswith("these are not")  # untouched


# --- feature columns -------------------------------------------------------------------------------


def test_new_feature_names_add_columns(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with SqliteStore(path) as writer, SqliteStore(path) as reader:
        writer.write([features("m1", [0], ["de"], [[1.0, 2.0, 3.0, 4.0]])])
        assert columns(path)[8:] == list(NAMES)
        assert reader.features("m1").names == NAMES  # the reader had not seen the columns
        more = ("rms_g", "band_x_rms_g", "order_1x_g")
        writer.write([features("m1", [1], ["de"], [[5.0, 6.0, 7.0]], names=more)])
        assert columns(path)[8:] == [*NAMES, "band_x_rms_g", "order_1x_g"]
        got = reader.features("m1")
        assert got.names == (*NAMES, "band_x_rms_g", "order_1x_g")
        assert_array_equal(got.values[1], [5.0, np.nan, np.nan, np.nan, 6.0, 7.0])
        (tr,) = reader.trend("m1", "order_1x_g", T0, T0 + 10 * S)
        assert_array_equal(tr.max, [7.0])
    with SqliteStore(path) as again:  # a third store finds them in the file
        again.write([features("m1", [2], ["de"], [[8.0]], names=("order_1x_g",))])
    assert columns(path)[8:] == [*NAMES, "band_x_rms_g", "order_1x_g"]


def test_a_big_batch_is_stored_row_for_row(tmp_path: Path) -> None:
    """A service's second of history: many records, several statements of many rows each
    (``ROWS_PER_INSERT``) plus a remainder, two sets of names, a row written twice."""
    path = tmp_path / "h.db"
    more = ("rms_g", "order_1x_g")
    rng = np.random.default_rng(3)
    recs: list[Record] = []
    expect: dict[tuple[str, str, int], list[float]] = {}
    for m in range(30):
        for w in range(5):
            names = NAMES if (m + w) % 3 else more
            vals = rng.normal(size=(3, len(names)))
            rows = features(
                f"m{m:02d}", [w] * 3, ["x", "y", "z"], vals, names=names, window=[w] * 3
            )
            recs.append(rows)
            for c, ch in enumerate("xyz"):
                full = dict(zip(names, vals[c], strict=True))
                expect[(f"m{m:02d}", ch, w)] = [full.get(n, np.nan) for n in (*NAMES, "order_1x_g")]
    again = features("m00", [0], ["x"], [[9.0, 8.0, 7.0, 6.0]], window=[0])
    recs.append(again)  # the same key later in the batch: it wins, as it would alone
    expect[("m00", "x", 0)] = [9.0, 8.0, 7.0, 6.0, np.nan]
    assert sum(len(r) for r in recs) > 3 * sqlite_mod.ROWS_PER_INSERT
    with SqliteStore(path) as store:
        store.write(recs)
        assert store.count("features") == len(expect)
        for m in range(30):
            got = store.features(f"m{m:02d}")
            assert sorted(got.names) == sorted((*NAMES, "order_1x_g"))
            order = [got.names.index(n) for n in (*NAMES, "order_1x_g")]
            for i in range(len(got)):
                key = (f"m{m:02d}", got.channel[i], int(got.window[i]))
                assert_array_equal(got.values[i, order], expect[key])


def test_pace_is_called_before_every_statement_that_binds_rows(tmp_path: Path) -> None:
    """The hook a service's writer uses to bind while its processing thread waits."""
    names = [f"f{i}" for i in range(5)]
    n = 3 * sqlite_mod.ROWS_PER_INSERT + 5  # three full statements and a rest
    rows = features("m1", [i * 0.1 for i in range(n)], ["de"] * n, np.ones((n, 5)), names=names)
    with SqliteStore(tmp_path / "h.db") as store:
        calls: list[int] = []
        store.pace = lambda: calls.append(1)
        store.write([rows, scores("m1", [0.0, 1.0], [0.1, 0.2])])
        assert len(calls) == 3 + 1 + 1  # full statements, the rest, the scores
        assert store.count("features") == n


def test_score_rows_of_many_records_share_a_statement_and_keep_their_order(
    tmp_path: Path,
) -> None:
    """A service submits one score row a window: a batch's rows go in one statement (one
    pace: one wait for the processing thread to be idle), not a statement a record; a key
    written twice keeps the later row, as it would alone."""
    n = 2 * sqlite_mod.ROWS_PER_INSERT + 3
    recs: list[Record] = [scores("m1", [i * 0.1], [i / 10], diagnosis=[f"d{i}"]) for i in range(n)]
    recs.append(scores("m1", [0.0], [9.5], diagnosis=["again"]))
    with SqliteStore(tmp_path / "h.db") as store:
        calls: list[int] = []
        store.pace = lambda: calls.append(1)
        store.write(recs)
        assert len(calls) == 1
        got = store.scores("m1")
    assert len(got) == n
    assert got.score[0] == 9.5 and got.diagnosis[0] == "again"
    assert_array_equal(got.score[1:], [i / 10 for i in range(1, n)])
    assert got.diagnosis[1:] == tuple(f"d{i}" for i in range(1, n))


def test_records_whose_arrays_differ_in_dtype_keep_their_own_values(tmp_path: Path) -> None:
    """Records joined into one statement do not share a dtype when one came from a spool of
    another version (float64 times, say): each is bound as its own values, so an int64 time
    beyond 2**53 is not rounded through float64 by its neighbour."""
    exact = features("m1", [0.0], ["x"], [[1.0, 2.0, 3.0, 4.0]])
    exact = dataclasses.replace(exact, t_ns=np.array([T0 + 1], dtype=np.int64))
    assert float(T0 + 1) != T0 + 1  # the time is not a float64
    other = features("m1", [1.0], ["y"], [[5.0, 6.0, 7.0, 8.0]])
    other = dataclasses.replace(
        other, t_ns=other.t_ns.astype(np.float64), values=other.values.astype(np.float32)
    )
    with SqliteStore(tmp_path / "h.db") as store:
        store.write([exact, other])
    with raw(tmp_path / "h.db") as db:
        rows = dict(db.execute("SELECT channel, t_ns FROM features").fetchall())
        rms = dict(db.execute("SELECT channel, rms_g FROM features").fetchall())
    assert rows == {"x": T0 + 1, "y": T0 + S}
    assert rms == {"x": 1.0, "y": 5.0}


@pytest.mark.parametrize(
    "name", ["Rms_g", "1x_g", "rms-g", "rms g", 'a"b', "", "t_ns", "window", "valid", "_x"]
)
def test_bad_feature_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        bad = features("m1", [0], ["de"], [[1.0, 2.0]], names=("crest", name))
        with pytest.raises(HistoryError) as info:
            store.write([scores("m1", [0], [0.5]), ramp("m1", "de", 3), bad])
        assert info.value.retryable is False
        assert repr(name) in one_line(info.value)
        assert store.count("scores") == 0 and store.count("features") == 0
        assert "crest" not in columns(tmp_path / "h.db")  # the ALTER TABLE was rolled back too
        store.write([ramp("m1", "de", 3)])  # and the store goes on
        assert store.count("features") == 3


def test_a_feature_name_twice_in_one_record_is_refused(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        rec = features("m1", [0], ["de"], [[1.0, 2.0]], names=("crest", "crest"))
        with pytest.raises(HistoryError, match="used twice"):
            store.write([rec])


# --- how values are kept ---------------------------------------------------------------------------


def test_nan_is_null_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with SqliteStore(path) as store:
        store.write(
            [
                features("m1", [0], ["de"], [[1.5, np.nan, np.nan, 2.5]]),
                scores("m1", [0], [np.nan]),
                StateChange("m1", T0, "ok", "alert", "x"),
            ]
        )
    with raw(path) as db:
        row = db.execute('SELECT rms_g, velocity_rms_mm_s, "kurtosis" FROM features').fetchone()
        assert row == (1.5, None, 2.5)
        assert db.execute("SELECT score FROM scores").fetchone() == (None,)
        assert db.execute("SELECT score FROM states").fetchone() == (None,)


def test_spectrum_values_are_a_little_endian_float32_blob(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    sp = spectrum("m1", "de", 0)
    with SqliteStore(path) as store:
        store.write([sp])
    with raw(path) as db:
        (blob,) = db.execute('SELECT "values" FROM spectra').fetchone()
    assert len(blob) == 4 * len(sp.values)
    assert_array_equal(np.frombuffer(blob, dtype="<f4"), sp.values)


# --- errors while writing --------------------------------------------------------------------------


def _batch() -> list[Record]:
    return [ramp("m1", "de", 50), scores("m1", [0, 1], [0.1, 0.2]), *log_records("m1")]


def test_disk_full_is_retryable_and_writes_nothing(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "h.db") as store:
        store.write([ramp("m1", "de", 5)])
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # a file that cannot grow
        big = ramp("m1", "fe", 20_000)
        with pytest.raises(HistoryError) as info:
            store.write([scores("m1", [0], [0.5]), big])
        text = one_line(info.value)
        assert info.value.retryable is True
        assert text.startswith(f"{store.url}: ") and "full" in text
        assert store.count("features") == 5 and store.count("scores") == 0
        store._db.execute("PRAGMA max_page_count = 1073741823")
        store.write([scores("m1", [0], [0.5]), big])  # the same batch, once there is room
        assert store.count("features") == 20_005 and store.count("scores") == 1


def test_a_locked_file_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with SqliteStore(path) as store:
        store._db.execute("PRAGMA busy_timeout = 50")  # do not wait the full 5 s here
        other = raw(path)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            with pytest.raises(HistoryError) as info:
                store.write(_batch())
            assert info.value.retryable is True
            assert "locked" in one_line(info.value)
            assert store.count("features") == 0  # and reading still works meanwhile
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.write(_batch())
        assert store.count("features") == 50


def test_other_errors_are_permanent(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with SqliteStore(path) as store:
        with raw(path) as db:
            db.execute(
                "CREATE TRIGGER no_events BEFORE INSERT ON events "
                "BEGIN SELECT RAISE(ABORT, 'events are switched off'); END"
            )
        with pytest.raises(HistoryError) as info:
            store.write(_batch())
        assert info.value.retryable is False
        assert one_line(info.value) == f"{store.url}: events are switched off"
        assert store.count("features") == 0 and store.count("states") == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_a_read_only_file_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    SqliteStore(path).close()
    path.chmod(0o444)
    try:
        with SqliteStore(path) as store:
            with pytest.raises(HistoryError, match="readonly") as info:
                store.write(_batch())
            assert info.value.retryable is False
    finally:
        path.chmod(0o644)


def test_a_folder_that_cannot_be_opened_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(HistoryError) as info:
        SqliteStore(path)
    assert one_line(info.value).startswith(f"{path}: ")
    assert info.value.retryable is True  # "unable to open database file": may be a mount coming up


# --- retention -------------------------------------------------------------------------------------


def _aged(now_ns: int, age_days: float, tag: str) -> list[Record]:
    """One row of each kind, ``age_days`` old."""
    t = now_ns - round(age_days * DAY)
    rows = FeatureRows(
        "m1",
        np.array([t, t], dtype=np.int64),
        np.array([1, 1], dtype=np.int64),
        ("s1", "s1"),
        ("de", "fe"),
        ("rms_g",),
        np.array([[1.0], [2.0]]),
        ("A", "A"),
        np.array([True, True]),
    )
    sc = ScoreRows("m1", "", np.array([t]), np.array([1]), np.array([0.5]), ("ok",), ("",), ("",))
    sp = spectrum("m1", "de", 0)
    sp = type(sp)(
        sp.machine, sp.sensor, sp.channel, t, sp.type, sp.f0_hz, sp.df_hz, sp.unit, sp.values
    )
    return [rows, sc, sp, *(_shift(r, t) for r in log_records(f"m1-{tag}"))]


def _shift(rec: Record, t: int) -> Record:
    return dataclasses.replace(rec, t_ns=t)  # type: ignore[type-var]


KINDS = ("features", "scores", "spectra", "states", "events", "actions", "captures")


def test_retention_at_open(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    now = time.time_ns()
    with SqliteStore(path) as store:
        store.write([*_aged(now, 10, "old"), *_aged(now, 1, "new")])
        assert [store.count(k) for k in KINDS] == [4, 2, 2, 2, 2, 2, 2]
    with SqliteStore(path, retention_days=5) as store:
        assert [store.count(k) for k in KINDS] == [2, 1, 1, 1, 1, 1, 1]
        assert {r.machine for r in store.log()} == {"m1-new"}
        assert store.features("m1").t_ns.min() > now - 5 * DAY


def test_retention_during_writes_at_most_hourly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.db"
    now = time.time_ns()
    with SqliteStore(path, retention_days=5) as store:
        store.write(_aged(now, 10, "a"))
        store.write(_aged(now, 0.5, "b"))
        assert store.count("features") == 4  # the hour has not passed yet
        monkeypatch.setattr(store, "_next_prune", time.monotonic() - 1)  # … now it has
        store.write([Event("x", now, "t", "info", "an hour later")])
        assert store.count("features") == 2 and store.count("scores") == 1
        assert {r.machine for r in store.log()} == {"m1-b", "x"}
        assert store._next_prune > time.monotonic() + sqlite_mod.PRUNE_EVERY_S - 60


def test_retention_counts_back_from_the_newest_row_of_an_old_recording(tmp_path: Path) -> None:
    """A recording from last year, replayed for commissioning, keeps its last days."""
    path = tmp_path / "h.db"
    year_ago = time.time_ns() - 365 * DAY
    with SqliteStore(path) as store:
        store.write([*_aged(year_ago, 10, "old"), *_aged(year_ago, 1, "new")])
    with SqliteStore(path, retention_days=5) as store:
        assert [store.count(k) for k in KINDS] == [2, 1, 1, 1, 1, 1, 1]
        assert {r.machine for r in store.log()} == {"m1-new"}


def test_no_retention_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with SqliteStore(path) as store:
        store.write(_aged(time.time_ns(), 3650, "ancient"))
    with SqliteStore(path) as store:
        assert store.count("features") == 2


# --- a writer and a reader on one file ---------------------------------------------------------------


def test_a_reader_and_a_writer_at_the_same_time(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    batches = 200
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with SqliteStore(path) as writer:
                for i in range(batches):
                    rec = ramp("m1", "de", 50)
                    shifted = FeatureRows(
                        rec.machine,
                        rec.t_ns + i * 50 * S,
                        rec.window + i * 50,
                        rec.sensor,
                        rec.channel,
                        rec.names,
                        rec.values + i * 50,
                        rec.iso_zone,
                        rec.valid,
                    )
                    writer.write([shifted, scores("m1", [i * 50], [0.01 * i])])
                    time.sleep(0.0005)  # a pipeline's pace, so that the reader sees the file grow
        except BaseException as exc:
            errors.append(exc)

    SqliteStore(path).close()  # create the schema before the race starts
    with SqliteStore(path) as reader:
        thread = threading.Thread(target=write)
        thread.start()
        seen: list[int] = []
        while thread.is_alive() or not seen:
            n = reader.count("features")
            # Every snapshot holds whole batches, and features and scores agree.
            assert n % 50 == 0
            assert reader.count("scores") >= n // 50
            if n:
                (tr,) = reader.trend("m1", "rms_g", T0, T0 + batches * 50 * S, points=20)
                assert tr.max.max() >= n - 1
            seen.append(n)
        thread.join()
        assert not errors, errors
        assert seen == sorted(seen)
        assert reader.count("features") == batches * 50
        assert len(set(seen)) > 1  # the reader did see the file grow
        assert_array_equal(reader.features("m1").values[:, 0], np.arange(batches * 50.0))


# --- one file per worker (issue 17) -------------------------------------------------------------


def test_each_worker_writes_its_own_file_and_readers_see_them_all(tmp_path: Path) -> None:
    """Two workers writing one file contended for its lock ("database is locked", rows to
    the spool). Worker K >= 1 now writes ``history-wK.db`` beside the configured file; a
    store opened on the configured file reads them all, including a worker's file that
    appears after it was opened."""
    from pdm.history import open_store

    url = parse_store_url(f"sqlite:///{tmp_path}/history.db")
    w0 = open_store(url, worker=0)
    w1 = open_store(url, worker=1)
    reader = open_store(url)
    try:
        assert isinstance(w0, SqliteStore) and w0.path == tmp_path / "history.db"
        assert isinstance(w1, SqliteStore) and w1.path == tmp_path / "history-w1.db"
        w0.write([scores("pump-a", [0, 1], [0.1, 0.2]), features("pump-a", [0], ["x"], [[1] * 4])])
        w1.write([scores("pump-b", [0.5], [0.3])])
        assert reader.machines() == ["pump-a", "pump-b"]
        assert reader.count("scores") == 3
        w2 = open_store(url, worker=2)  # a worker started later
        w2.write([scores("pump-a", [0.5], [0.9])])  # (as after a change of worker count)
        w2.close()
        got = reader.scores("pump-a")
        assert_array_equal(got.t_ns, [T0, T0 + S // 2, T0 + S])
        assert_array_equal(got.score, [0.1, 0.9, 0.2])
        status = {s.machine: s for s in reader.latest_status()}
        assert status["pump-a"].score == 0.2 and status["pump-b"].score == 0.3
        assert sorted(p.name for p in tmp_path.glob("history*.db")) == [
            "history-w1.db",
            "history-w2.db",
            "history.db",
        ]
    finally:
        for st in (w0, w1, reader):
            st.close()
