"""The spool and the writer in front of every store: bounded, ordered, nothing lost or duplicated.

The real-server outage tests are in ``test_history_outage.py``. Here a
``Flaky`` wrapper around a real SQLite store injects failures on command
(down, refusing one record for good): the one test double in this file, used
because a store that fails exactly when a test says cannot be had otherwise.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm.history.base import HistoryError
from pdm.history.lineproto import lines
from pdm.history.records import (
    ActionResult,
    Capture,
    Event,
    FeatureRows,
    Record,
    ScoreRows,
    Spectrum,
    StateChange,
    decode,
    encode,
)
from pdm.history.spool import Spool
from pdm.history.sqlite import SqliteStore
from pdm.history.writer import HistoryWriter

T0 = 1_780_000_000_000_000_000  # 2026-05-28, ns
NAMES = ("rms_g", "velocity_rms_mm_s", "env_bpfo_g")


def features(i: int, n: int = 4, machine: str = "m1") -> FeatureRows:
    t = T0 + (i * n + np.arange(n, dtype=np.int64)) * 80_000_000
    vals = np.random.default_rng(i).random((n, len(NAMES)))
    vals[0, 2] = math.nan
    return FeatureRows(
        machine,
        t,
        i * n + np.arange(n, dtype=np.int64),
        ("s1",) * n,
        ("x_g",) * n,
        NAMES,
        vals,
        ("A",) * n,
        np.ones(n, dtype=bool),
    )


def spectrum(i: int) -> Spectrum:
    return Spectrum(
        "m1",
        "s1",
        "x_g",
        T0 + i,
        "power",
        0.0,
        3.125,
        "g",
        np.random.default_rng(i).random(800).astype(np.float32),
    )


def event(i: int) -> Event:
    return Event("m1", T0 + i, "stream_gap", "warning", f"gap {i}")


def every_kind() -> list[Record]:
    return [
        features(0),
        ScoreRows(
            "m1",
            "abc",
            np.array([T0, T0 + 1]),
            np.array([0, 1]),
            np.array([0.5, math.nan]),
            ("ok", "invalid"),
            ("", ""),
            ('[{"feature": "x_g.rms_g"}]', ""),
        ),
        spectrum(1),
        StateChange("m1", T0, "ok", "alert", "score 1.2 ≥ 1", score=1.2, capture="c1"),
        event(2),
        ActionResult("m1", T0 + 3, "relay", "127.0.0.1:502/coil 0", "failed", 2, "timeout", "e1"),
        Capture(
            "m1",
            T0,
            "c1",
            "why",
            "captures/m1/a.npy",
            "abc",
            '{"alert": 1.0}',
            25600.0,
            ("x_g", "y_g"),
            8192,
        ),
    ]


@pytest.mark.parametrize("rec", every_kind(), ids=lambda r: r.kind)
def test_codec_round_trips_every_record_exactly(rec: Record) -> None:
    back = decode(encode(rec))
    assert type(back) is type(rec)
    for name in rec.__dataclass_fields__:
        a, b = getattr(rec, name), getattr(back, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        elif isinstance(a, float) and math.isnan(a):
            assert math.isnan(b)
        else:
            assert a == b, name


def test_codec_refuses_other_bytes() -> None:
    with pytest.raises(ValueError):
        decode(b"not a record")
    with pytest.raises(ValueError):
        decode(encode(event(1))[:-3])


def test_line_protocol_escapes_and_leaves_out_nan() -> None:
    rec = FeatureRows(
        "pump 1,a=b",
        np.array([T0]),
        np.array([7]),
        ("s 1",),
        ("x,g",),
        ("rms_g", "kurtosis"),
        np.array([[0.25, math.nan]]),
        ("B",),
        np.array([True]),
    )
    (line,) = lines([rec])
    assert line == (
        r"pdm_features,channel=x\,g,machine=pump\ 1\,a\=b,sensor=s\ 1 "
        f'rms_g=0.25,iso_zone="B",valid=true,window=7i {T0}'
    )
    (ev,) = lines([Event("m", T0, "t", "info", 'say "hi" \\ bye', id="x")])
    assert r'message="say \"hi\" \\ bye"' in ev


# --- spool ----------------------------------------------------------------------------------


def test_spool_is_fifo_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path) as sp:
        sp.push([features(0), event(1)])
        sp.push([features(1)])
        assert len(sp) == 3 and sp.rows == 4 + 1 + 4
    with Spool(path) as sp:  # a new process after a crash
        assert len(sp) == 3 and sp.rows == 9
        entries = sp.peek(100)
        assert [e[3] for e in entries] == ["features", "events", "features"]
        np.testing.assert_array_equal(entries[2][1].t_ns, features(1).t_ns)  # type: ignore[union-attr]
        sp.delete([entries[0][0]])
        assert [e[3] for e in sp.peek(100)] == ["events", "features"]
        assert sp.peek(1)[0][3] == "events"  # at least one entry even when it is bigger


def test_spool_overflow_drops_spectra_first_then_features_never_events(tmp_path: Path) -> None:
    s_size, f_size, e_size = (len(encode(r)) for r in (spectrum(0), features(0), event(0)))
    assert 4 * s_size > 2 * f_size + 20 * e_size and 80 * e_size > 4 * s_size + 2 * f_size
    with Spool(tmp_path / "s.db", max_bytes=4 * s_size + 2 * f_size) as sp:
        sp.push([spectrum(i) for i in range(4)])
        sp.push([features(i) for i in range(4)])  # too much: the oldest spectrum goes
        kinds = [e[3] for e in sp.peek(10_000)]
        assert kinds == ["spectra"] * 3 + ["features"] * 4
        assert sp.dropped() == {"spectra": 1, "features": 0, "scores": 0}
        sp.push([event(i) for i in range(20)])
        assert sp.nbytes <= sp.max_bytes
        kinds = [e[3] for e in sp.peek(10_000)]
        assert kinds.count("events") == 20 and kinds.count("features") == 4
        assert sp.dropped()["features"] == 0 < sp.dropped()["spectra"]
        # Events alone beyond the bound: kept, the bound is exceeded by them only.
        sp.push([event(100 + i) for i in range(60)])
        kinds = [e[3] for e in sp.peek(10_000)]
        assert kinds.count("events") == 80 and "features" not in kinds
        dropped = sp.dropped()
        assert dropped["spectra"] == 4 and dropped["features"] == 16
    with Spool(tmp_path / "s.db") as sp:  # the counts live in the file
        assert sp.dropped()["features"] == 16


def test_corrupt_spool_is_moved_aside_not_deleted(tmp_path: Path, caplog) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"garbage " * 1000)
    with caplog.at_level(logging.ERROR, logger="pdm.history"), Spool(path) as sp:
        assert len(sp) == 0
    aside = list(tmp_path.glob("spool.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"garbage")
    assert "moved aside" in caplog.text


# --- writer ---------------------------------------------------------------------------------


class Flaky:
    """A real SQLite store that can be told to be down, or to refuse one record for good."""

    def __init__(self, path: Path, control: dict) -> None:
        self.inner = SqliteStore(path)
        self.url = self.inner.url
        self.control = control

    def write(self, records: Sequence[Record]) -> None:
        self.control["calls"] += 1
        if self.control["down"]:
            raise HistoryError(f"{self.url}: connection refused", retryable=True)
        bad = self.control.get("refuse")
        if bad is not None and any(
            r is not None and getattr(r, "id", None) == bad for r in records
        ):
            raise HistoryError(f"{self.url}: HTTP 400: field type conflict", retryable=False)
        self.inner.write(records)

    def close(self) -> None:
        self.inner.close()


def _writer(tmp_path: Path, control: dict, **kw) -> HistoryWriter:
    kw.setdefault("flush_interval_s", 0.05)
    kw.setdefault("retry_min_s", 0.05)
    kw.setdefault("retry_max_s", 0.2)
    return HistoryWriter(
        lambda: Flaky(tmp_path / "h.db", control),  # type: ignore[arg-type,return-value]
        Spool(tmp_path / "spool.db"),
        **kw,
    )


def _feature_times(tmp_path: Path) -> np.ndarray:
    with SqliteStore(tmp_path / "h.db") as st:
        return st.features("m1").t_ns


def test_writer_spools_while_down_and_replays_in_order_without_duplicates(
    tmp_path: Path, caplog
) -> None:
    control = {"down": False, "calls": 0}
    with caplog.at_level(logging.WARNING, logger="pdm.history"):
        w = _writer(tmp_path, control)
        for i in range(5):
            w.submit(features(i), mark=i)
        assert w.flush(5)
        control["down"] = True
        for i in range(5, 40):
            w.submit(features(i), mark=i)
            if i == 20:
                w.submit(event(20))
        assert w.flush(5)
        assert w.durable_mark == 39  # spooled counts as durable
        time.sleep(0.3)  # several retries while down
        assert w.snapshot().spool_rows >= 35 * 4
        control["down"] = False
        assert w.drain(10)
        w.close()
    t = _feature_times(tmp_path)
    expected = np.concatenate([features(i).t_ns for i in range(40)])
    np.testing.assert_array_equal(t, expected)  # all there, once, in order
    s = w.snapshot()
    assert s.rows_dropped == 0 and s.rows_rejected == 0 and s.spool_rows == 0 and s.outages == 1
    assert caplog.text.count("history store down") == 1  # logged once, not per retry
    assert caplog.text.count("history store back") == 1
    with SqliteStore(tmp_path / "h.db") as st:
        types = [e.type for e in st.log("m1", kinds=("events",))]
    assert types == ["stream_gap"]  # store_down/up events are the appliance's
    with SqliteStore(tmp_path / "h.db") as st:
        assert [e.type for e in st.log(None, kinds=("events",))].count("store_down") == 1


def test_critical_records_are_on_disk_before_submit_returns(tmp_path: Path) -> None:
    control = {"down": True, "calls": 0}
    w = _writer(tmp_path, control, flush_interval_s=60)
    w.submit(StateChange("m1", T0, "ok", "trip", "test"), features(0))
    # No flush, no thread step: a second process sees the state change already.
    with Spool(tmp_path / "spool.db") as other:
        assert [e[3] for e in other.peek(100)] == ["states"]
    w.close(timeout=1)


def test_permanent_refusal_rejects_only_that_record_and_keeps_it(tmp_path: Path, caplog) -> None:
    control = {"down": False, "calls": 0, "refuse": "bad"}
    w = _writer(tmp_path, control)
    with caplog.at_level(logging.WARNING, logger="pdm.history"):
        w.submit(features(0), Event("m1", T0 + 5, "x", "info", "poison", id="bad"), features(1))
        assert w.drain(5)
        w.close()
    assert _feature_times(tmp_path).size == 8
    s = w.snapshot()
    assert s.rows_rejected == 1 and s.rows_dropped == 0
    with sqlite3.connect(tmp_path / "spool.db") as db:
        reason = db.execute("SELECT reason FROM rejected").fetchone()[0]
    assert "field type conflict" in reason and "refused by the store" in caplog.text


def test_slow_store_spills_to_disk_and_memory_stays_bounded(tmp_path: Path) -> None:
    control = {"down": True, "calls": 0}
    w = _writer(tmp_path, control, queue_rows=40, flush_interval_s=60, retry_min_s=60)
    for i in range(100):
        w.submit(features(i))
        assert w.snapshot().queue_rows <= 40 + 4
    w.close(timeout=0.5)
    s = w.snapshot()
    # 400 feature rows and the store_down event
    assert s.queue_rows == 0 and s.spool_rows == 401 and s.rows_dropped == 0


def test_close_with_the_store_down_spools_everything_and_a_restart_delivers(tmp_path: Path) -> None:
    control = {"down": True, "calls": 0}
    w = _writer(tmp_path, control, flush_interval_s=60)
    for i in range(10):
        w.submit(features(i), mark=i)
    w.close(timeout=1)
    assert w.durable_mark == 9
    control["down"] = False
    w2 = _writer(tmp_path, control)  # the next run
    assert w2.drain(10)
    w2.close()
    np.testing.assert_array_equal(
        _feature_times(tmp_path), np.concatenate([features(i).t_ns for i in range(10)])
    )


def _hanging_writer(
    tmp_path: Path, gate: threading.Event, inside: threading.Event | None = None, **kw: Any
) -> HistoryWriter:
    """A writer whose store's writes wait for ``gate`` (``inside`` set once one does)."""

    class Hanging(Flaky):
        def write(self, records: Sequence[Record]) -> None:
            if inside is not None:
                inside.set()
            gate.wait(5)
            super().write(records)

    control = {"down": False, "calls": 0}
    return HistoryWriter(
        lambda: Hanging(tmp_path / "h.db", control),  # type: ignore[arg-type,return-value]
        Spool(tmp_path / "spool.db"),
        flush_interval_s=0.01,
        **kw,
    )


def test_submit_never_blocks_on_a_hanging_store(tmp_path: Path) -> None:
    gate = threading.Event()
    w = _hanging_writer(tmp_path, gate, queue_rows=1000)
    t0 = time.monotonic()
    for i in range(200):
        w.submit(features(i))
    assert time.monotonic() - t0 < 2.0  # spilled to disk, never waited for the store
    gate.set()
    assert w.drain(10)
    w.close()
    assert _feature_times(tmp_path).size == 800


def test_critical_records_do_not_wait_for_a_delivery_in_progress(tmp_path: Path) -> None:
    """An alarm state submitted while the writer is inside a slow store write is spooled
    (fsynced) at once: the processing thread that submits it must not wait for the store."""
    gate = threading.Event()
    inside = threading.Event()
    w = _hanging_writer(tmp_path, gate, inside)
    try:
        w.submit(features(0))
        assert inside.wait(5)  # the writer holds a delivery open
        t0 = time.monotonic()
        w.submit(StateChange("m1", T0, "ok", "trip", "test"))
        assert time.monotonic() - t0 < 1.0
        with Spool(tmp_path / "spool.db") as other:
            assert [e[3] for e in other.peek(100)] == ["states"]
    finally:
        gate.set()
    assert w.drain(10)
    w.close()
    with SqliteStore(tmp_path / "h.db") as st:
        assert [c.new for c in st.log("m1", kinds=("states",))] == ["trip"]


def test_a_writer_yielding_to_a_busy_thread_still_writes_waiting_a_bounded_time(
    tmp_path: Path,
) -> None:
    """``yield_to``: before each statement the writer waits for the event (the urgent
    thread idle), at most ``YIELD_MAX_S`` — a thread that is never idle delays history by
    that much a statement, never stops it."""
    from pdm.history import open_store, parse_store_url

    class Never(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.waits: list[float | None] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.waits.append(timeout)
            return super().wait(timeout)

    busy = Never()
    url = parse_store_url(f"sqlite:///{tmp_path}/h.db")
    w = HistoryWriter(lambda: open_store(url), Spool(tmp_path / "spool.db"), yield_to=busy)
    n = 40
    rows = FeatureRows(
        "m1", np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), ("s",) * n,
        ("de",) * n, ("rms_g",), np.ones((n, 1)), ("A",) * n, np.ones(n, dtype=bool),
    )  # fmt: skip
    try:
        w.submit(rows)
        assert w.flush(timeout=10)
        assert w.stats.rows_written == n
        assert busy.waits and set(busy.waits) == {HistoryWriter.YIELD_MAX_S}
    finally:
        w.close()
    with open_store(url) as st:
        assert st.count("features") == n


def test_together_spools_the_critical_records_of_a_block_in_one_transaction(
    tmp_path: Path,
) -> None:
    """Many machines changing state at once: one fsynced push for the block, not one per
    submit; nothing in the spool (and no mark passed) before the block ends."""
    from pdm.history import open_store, parse_store_url

    url = parse_store_url(f"sqlite:///{tmp_path}/h.db")
    spool = Spool(tmp_path / "spool.db")
    pushes: list[int] = []
    real_push = spool.push

    def counting(records: Any) -> int:
        pushes.append(len(records))
        return real_push(records)

    spool.push = counting  # type: ignore[method-assign]
    w = HistoryWriter(lambda: open_store(url), spool)
    try:
        with w.together():
            for i in range(20):
                ev = Event(f"m{i}", 1_000 + i, "stream_gap", "warning", "gap")
                w.submit(ev, mark=100 + i)
                with w.together():  # nested: spooled with the outer block
                    w.submit(Event(f"m{i}", 2_000 + i, "stream_gap", "warning", "again"))
            assert pushes == [] and w.durable_mark is None
        assert pushes == [40] and w.durable_mark == 119
        w.submit(Event("m0", 5_000, "stream_gap", "warning", "alone"))
        assert pushes == [40, 1]  # outside a block: spooled by submit itself, as before
        assert w.drain(timeout=10)
    finally:
        w.close()
    with open_store(url) as st:
        assert st.count("events") == 41


def test_only_the_delete_of_delivered_entries_skips_the_fsync(tmp_path: Path) -> None:
    """Pushes (and flags, rejections) are fsynced before they return; deleting what a store
    has taken is not — power loss can only bring it back for a second delivery — and the
    connection is back to ``synchronous=FULL`` for whatever comes next."""
    spool = Spool(tmp_path / "spool.db")
    sql: list[str] = []
    spool._db.set_trace_callback(sql.append)  # the spool's own connection (per-connection pragma)
    spool.push(
        [Event("m", 1, "stream_gap", "warning", "a"), Event("m", 2, "stream_gap", "warning", "b")]
    )
    assert not any("synchronous" in q for q in sql)
    (first, _, _, _), (second, _, _, _) = spool.peek(10)
    sql.clear()
    spool.delete([first])
    begin = sql.index("BEGIN IMMEDIATE")
    assert sql[begin - 1] == "PRAGMA synchronous=NORMAL" and sql[-1] == "PRAGMA synchronous=FULL"
    sql.clear()
    spool.reject(second, "refused")
    spool.set_flag("x", True)
    assert not any("synchronous" in q for q in sql)
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert len(reopened) == 0 and reopened.rejected_rows() == 1 and reopened.flag("x")
    reopened.close()


def test_a_mark_given_with_critical_records_alone_waits_for_the_rows_queued_before_it(
    tmp_path: Path,
) -> None:
    """The window whose only records are spooled at once is not durable before the rows of
    earlier windows still in the queue: its mark rides on the queue's tail."""
    w = _writer(tmp_path, {"down": False, "calls": 0}, flush_interval_s=60.0)
    try:
        w.submit(features(1), mark=1)  # queued, not yet written
        w.submit(event(2), mark=2)  # spooled now
        assert w.durable_mark is None
        assert w.flush(5)
        assert w.durable_mark == 2
    finally:
        w.close()


# --- one bad record never stalls the writer (issue 16, item 1) ----------------------------------


def _real_writer(tmp_path: Path, url: str, **kw: Any) -> HistoryWriter:
    from pdm.history import open_store

    kw.setdefault("flush_interval_s", 0.05)
    kw.setdefault("retry_min_s", 0.05)
    kw.setdefault("retry_max_s", 0.2)
    return HistoryWriter(lambda: open_store(url), Spool(tmp_path / "spool.db"), **kw)


@pytest.mark.parametrize(
    ("t_ns", "message", "why"),
    [
        (2**63, "poison", "OverflowError"),
        (2**70, "poison", "OverflowError"),
        (-(2**63) - 1, "poison", "OverflowError"),
        (T0, "lone surrogate \udcff", "UnicodeEncodeError"),
    ],
)
def test_a_value_sqlite_cannot_bind_is_rejected_and_the_rest_delivered(
    tmp_path: Path, t_ns: int, message: str, why: str, caplog
) -> None:
    """An event SQLite cannot bind (a time beyond int64, a str it cannot encode) sits at the
    head of the spool: it goes to ``rejected`` with the reason; nothing after it waits
    (before the fix the store's raw OverflowError made the writer retry it for ever, the
    store "down")."""
    w = _real_writer(tmp_path, f"sqlite:///{tmp_path}/h.db")
    with caplog.at_level(logging.WARNING, logger="pdm.history"):
        # Critical records, spooled at once: the head of the spool.
        w.submit(StateChange("m1", t_ns, "ok", "alert", message))
        for i in range(5):
            w.submit(features(i), event(i))
        assert w.drain(10), w.snapshot()
        w.close()
    s = w.snapshot()
    assert s.rows_rejected == 1 and s.outages == 0 and s.store_up
    assert _feature_times(tmp_path).size == 20
    with SqliteStore(tmp_path / "h.db") as st:
        assert len(st.log("m1", kinds=("events",))) == 5
    with sqlite3.connect(tmp_path / "spool.db") as db:
        (reason,) = db.execute("SELECT reason FROM rejected").fetchone()
    assert why in reason and "Traceback" not in caplog.text


def test_an_unexpected_store_error_on_a_batch_loses_nothing(tmp_path: Path) -> None:
    """A store that raises something other than HistoryError (a bug) keeps the batch: it is
    spooled and retried, and delivered once the store behaves."""
    control = {"down": False, "calls": 0, "boom": True}

    class Buggy(Flaky):
        def write(self, records: Sequence[Record]) -> None:
            if control["boom"]:
                raise RuntimeError("a bug in the store")
            super().write(records)

    w = HistoryWriter(
        lambda: Buggy(tmp_path / "h.db", control),  # type: ignore[arg-type,return-value]
        Spool(tmp_path / "spool.db"),
        flush_interval_s=0.05,
        retry_min_s=0.05,
        retry_max_s=0.1,
    )
    for i in range(3):
        w.submit(features(i))
    assert w.flush(5)
    time.sleep(0.3)
    s = w.snapshot()
    assert not s.store_up and s.spool_rows >= 12 and s.down_s > 0
    control["boom"] = False
    assert w.drain(10)
    w.close()
    assert _feature_times(tmp_path).size == 12


def test_writer_stats_say_how_long_the_store_is_down_and_rows_wait(tmp_path: Path) -> None:
    control = {"down": False, "calls": 0}
    w = _writer(tmp_path, control)
    assert w.snapshot().down_s == 0 and w.snapshot().stalled_s == 0
    control["down"] = True
    w.submit(features(0))
    assert w.flush(5)
    time.sleep(0.3)
    s = w.snapshot()
    assert not s.store_up and s.down_s >= 0.2 and s.stalled_s >= 0.2
    control["down"] = False
    assert w.drain(10)
    s = w.snapshot()
    assert s.store_up and s.down_s == 0 and s.stalled_s < 0.2
    w.close()


def test_an_outage_open_at_exit_ends_with_store_up_in_the_next_run(tmp_path: Path) -> None:
    """history shows where every outage ended: one still open when the process stopped ends
    (``store_up``) when the next run first delivers."""
    control = {"down": True, "calls": 0}
    w = _writer(tmp_path, control)
    w.submit(features(0))
    assert w.flush(5)
    w.close(timeout=1)
    control["down"] = False
    w2 = _writer(tmp_path, control)
    assert not w2.snapshot().store_up  # until it has written
    assert w2.drain(10)
    w2.close()
    with SqliteStore(tmp_path / "h.db") as st:
        types = [e.type for e in st.log(None, kinds=("events",))]
    assert types == ["store_up", "store_down"]
    w3 = _writer(tmp_path, control)  # closed properly: no outage to end
    assert w3.snapshot().store_up
    w3.close()
