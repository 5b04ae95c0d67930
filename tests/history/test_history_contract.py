"""The contract every history store keeps: write records, read the same records back.

One suite, run over every store in :data:`STORES` (as river's ``checks`` run over
every estimator). To add a store, add a factory to :data:`STORES` (and, if its
reads lag its writes, a hook to :data:`READBACK`); nothing else changes.

Records are small and hand-built, times in 2026, so that every expected value
below can be checked by eye.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from pdm.history.base import HistoryStore, parse_store_url
from pdm.history.influx import Influx1Store
from pdm.history.records import (
    ActionResult,
    Capture,
    Event,
    FeatureRows,
    Record,
    ScoreRows,
    Spectrum,
    StateChange,
)
from pdm.history.sqlite import SqliteStore
from pdm.history.sqlite_files import SqliteHistory, worker_file

StoreFactory = Callable[[Path, pytest.FixtureRequest], HistoryStore]


def _sqlite_store(tmp_path: Path, request: pytest.FixtureRequest) -> HistoryStore:
    return SqliteStore(tmp_path / "history.db")


class _WorkerFiles:
    """A service of three worker processes, as SQLite history sees it (issue 17): each
    writes a file of its own (``history.db``, ``history-w1.db``, ``history-w2.db``) and
    readers open ``history.db`` as one history (:class:`SqliteHistory`). Each record goes to
    the file of its machine and second, so a machine's rows are spread over the files as
    after a change of worker count, and every read of the contract merges them."""

    def __init__(self, path: Path) -> None:
        self.reader = SqliteHistory(path)
        self.writers = [SqliteStore(worker_file(path, k)) for k in range(3)]
        self.url = self.reader.url

    def write(self, records: Sequence[Record]) -> None:
        files: dict[int, list[Record]] = {}
        for rec in records:
            ts = np.atleast_1d(rec.t_ns)  # type: ignore[union-attr]
            t = int(ts[0]) if len(ts) else 0
            k = (sum(rec.machine.encode()) + t // S) % 3  # type: ignore[union-attr]
            files.setdefault(k, []).append(rec)
        for k, recs in files.items():
            self.writers[k].write(recs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    @property
    def appliance(self) -> str | None:
        return self.writers[0].appliance

    @appliance.setter
    def appliance(self, value: str | None) -> None:  # the id every worker's file writes
        for w in self.writers:
            w.appliance = value

    def close(self) -> None:
        self.reader.close()
        for w in self.writers:
            w.close()


def _sqlite_worker_files(tmp_path: Path, request: pytest.FixtureRequest) -> HistoryStore:
    return _WorkerFiles(tmp_path / "history.db")  # type: ignore[return-value]


def _influx1_store(tmp_path: Path, request: pytest.FixtureRequest) -> HistoryStore:
    """InfluxDB 1.6.7 (Debian's), one server per session, one database per test."""
    server = request.getfixturevalue("influxdb1_session")
    db = "t_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    return Influx1Store(parse_store_url(f"influx1://127.0.0.1:{server.port}/{db}"))


#: name → factory. A factory opens a handle on the test's own, initially empty store
#: (called again in the same test, it opens a second handle on the same data); it may
#: ``pytest.skip`` when what it needs (a server) is not there.
STORES: dict[str, StoreFactory] = {
    "sqlite": _sqlite_store,
    "sqlite_worker_files": _sqlite_worker_files,
    "influx1": _influx1_store,
}
# influx2 is not here: its reads are InfluxQL on /query with a v2 token, which no server
# that runs on this machine speaks (VictoriaMetrics has no /query; Debian ships only
# InfluxDB 1.6.7). Its read code is the influx1 store's; its v2 write path is tested
# against VictoriaMetrics in test_history_influx.py.

#: name → what to do after a write before reading it back (a flush, a short wait);
#: stores that read their own writes at once (SQLite) need no entry.
READBACK: dict[str, Callable[[HistoryStore], None]] = {}

S = 1_000_000_000  # ns per second
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z, a multiple of every bucket width used below
NAMES = ("rms_g", "velocity_rms_mm_s", "band_high_rms_g", "kurtosis")


# --- fixtures --------------------------------------------------------------------------------


class StoreMaker:
    """Opens handles on one test's store and closes them all at the end."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._request = request
        self._opened: list[HistoryStore] = []

    def __call__(self) -> HistoryStore:
        store = STORES[self.backend](self._tmp_path, self._request)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in reversed(self._opened):
            store.close()


@pytest.fixture(params=list(STORES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    maker = StoreMaker(request.param, tmp_path, request)
    yield maker
    maker.close()


@pytest.fixture
def store(make_store: StoreMaker) -> HistoryStore:
    return make_store()


def _nothing(store: HistoryStore) -> None:
    return None


@pytest.fixture
def readback(make_store: StoreMaker) -> Callable[[HistoryStore], None]:
    """Call after writing, before reading: makes the write visible (a no-op for SQLite)."""
    return READBACK.get(make_store.backend, _nothing)


@pytest.fixture
def put(store: HistoryStore, readback: Callable[[HistoryStore], None]) -> Callable[..., None]:
    """Write a batch to ``store`` and make it visible to reads."""

    def put(*records: Record) -> None:
        store.write(list(records))
        readback(store)

    return put


def in_order(rows: FeatureRows, names: Sequence[str]) -> FeatureRows:
    """``rows`` with its columns in the order of ``names`` (stores may order them differently)."""
    idx = [rows.names.index(n) for n in names]
    return dataclasses.replace(rows, names=tuple(names), values=rows.values[:, idx])


# --- record builders ---------------------------------------------------------------------------


def features(
    machine: str,
    t_s: Sequence[float],
    channels: Sequence[str],
    values: Any,
    *,
    names: Sequence[str] = NAMES,
    window: Sequence[int] | None = None,
    iso_zone: Sequence[str] | None = None,
    valid: Sequence[bool] | None = None,
) -> FeatureRows:
    """Feature rows at T0 + t_s seconds; ``values`` is (n, len(names))."""
    n = len(t_s)
    return FeatureRows(
        machine,
        np.array([T0 + round(t * S) for t in t_s], dtype=np.int64),
        np.array(window if window is not None else range(n), dtype=np.int64),
        tuple(f"{machine}-sensor" for _ in range(n)),
        tuple(channels),
        tuple(names),
        np.array(values, dtype=np.float64).reshape(n, len(names)),
        tuple(iso_zone if iso_zone is not None else ["A"] * n),
        np.array(valid if valid is not None else [True] * n, dtype=bool),
    )


def ramp(
    machine: str, channel: str, n: int, *, scale: float = 1.0, step_s: float = 1.0
) -> FeatureRows:
    """n rows of one channel, one per ``step_s`` from T0; ``rms_g`` = scale · i."""
    values = np.full((n, len(NAMES)), np.nan)
    values[:, 0] = scale * np.arange(n)
    return features(machine, [i * step_s for i in range(n)], [channel] * n, values)


def scores(
    machine: str,
    t_s: Sequence[float],
    score: Sequence[float],
    *,
    model: str = "0123456789ab",
    state: Sequence[str] | None = None,
    diagnosis: Sequence[str] | None = None,
    confidence: Sequence[float] | None = None,
) -> ScoreRows:
    n = len(t_s)
    return ScoreRows(
        machine,
        model,
        np.array([T0 + round(t * S) for t in t_s], dtype=np.int64),
        np.arange(n, dtype=np.int64) + 100,
        np.array(score, dtype=np.float64),
        tuple(state if state is not None else ["ok"] * n),
        tuple(diagnosis if diagnosis is not None else [""] * n),
        tuple('[["rms_g", 2.5]]' if i % 2 else "" for i in range(n)),
        None if confidence is None else np.array(confidence, dtype=np.float64),
    )


def spectrum(
    machine: str, channel: str, t_s: float, kind: str = "power", seed: int = 0
) -> Spectrum:
    values = np.random.default_rng(seed).random(64, dtype=np.float32) * np.float32(0.3)
    return Spectrum(
        machine, f"{machine}-sensor", channel, T0 + round(t_s * S), kind, 0.0, 7.8125, "g", values
    )


def log_records(machine: str) -> list[StateChange | Event | ActionResult | Capture]:
    """One of each log kind at distinct times: capture 10 s, state 11 s, event 12 s, action 13 s."""
    cap = Capture(
        machine,
        T0 + 10 * S,
        f"cap-{machine}",
        "alert",
        f"captures/{machine}/1.npz",
        "0123456789ab",
        '{"alert": 1.0, "danger": 2.0}',
        12000.0,
        ("de", "fe"),
        24000,
    )
    state = StateChange(
        machine,
        T0 + 11 * S,
        "ok",
        "alert",
        "score 1.3 ≥ 1.0 for 3 windows",
        score=1.3,
        capture=cap.id,
    )
    event = Event(
        machine, T0 + 12 * S, "capture", "warning", "captured 2 windows", detail='{"windows": 2}'
    )
    action = ActionResult(
        machine, T0 + 13 * S, "relay", "gpio17", "ok", attempt=2, detail="closed", event_id=event.id
    )
    return [cap, state, event, action]


def fields(rec: object) -> tuple[Any, ...]:
    """A record's type and fields, comparable with ``==`` (NaN equals NaN; arrays by value and dtype)."""
    out: list[Any] = [type(rec).__name__]
    for f in dataclasses.fields(rec):  # type: ignore[arg-type]
        v = getattr(rec, f.name)
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, float) and math.isnan(v):
            v = "NaN"
        out.append((f.name, v))
    return tuple(out)


# --- round trips ---------------------------------------------------------------------------------


def test_feature_rows_round_trip_exactly(store: HistoryStore, put: Callable[..., None]) -> None:
    tricky = [math.pi, 1e-300, 1.7976931348623157e308, 5e-324, -2.5, 0.1 + 0.2, 123456.789e-12]
    rng = np.random.default_rng(7)
    values = rng.normal(size=(6, 4)) * 10.0 ** rng.integers(-8, 8, size=(6, 4))
    values[0, :] = tricky[:4]
    values[1, :3] = tricky[4:]
    values[2, 1] = np.nan  # one feature missing in one row
    values[5, :] = np.nan  # an invalid window: no feature at all
    # Written channel-major and out of time order; read back by time, then channel.
    rec = features(
        "m1",
        [2, 0, 1, 2, 0, 1],
        ["fe", "fe", "fe", "de", "de", "de"],
        values,
        window=[12, 10, 11, 12, 10, 11],
        iso_zone=["B", "A", "A", "C", "A", "?"],
        valid=[True, True, True, True, True, False],
    )
    put(rec)
    got = store.features("m1")
    order = [4, 1, 5, 2, 3, 0]  # (0 s, de), (0 s, fe), (1 s, de), (1 s, fe), (2 s, de), (2 s, fe)
    assert got.machine == "m1"
    assert set(got.names) == set(NAMES)  # the order of the columns is the store's
    got = in_order(got, NAMES)
    assert got.t_ns.dtype == np.int64 and got.window.dtype == np.int64
    assert got.values.dtype == np.float64 and got.valid.dtype == np.bool_
    assert got.values.shape == (6, 4)
    assert_array_equal(got.t_ns, rec.t_ns[order])
    assert_array_equal(got.window, rec.window[order])
    assert got.channel == tuple(rec.channel[i] for i in order)
    assert got.sensor == tuple(rec.sensor[i] for i in order)
    assert got.iso_zone == tuple(rec.iso_zone[i] for i in order)
    assert_array_equal(got.valid, rec.valid[order])
    assert_array_equal(np.isnan(got.values), np.isnan(values[order]))
    # Bit for bit, not just equal within a tolerance.
    want = values[order]
    finite = ~np.isnan(want)
    assert got.values[finite].tobytes() == want[finite].tobytes()


def test_features_names_are_the_columns_with_values(
    store: HistoryStore, put: Callable[..., None]
) -> None:
    values = np.array([[1.0, np.nan, 2.0, np.nan], [3.0, np.nan, np.nan, np.nan]])
    put(features("m1", [0, 1], ["de", "de"], values))
    got = store.features("m1")
    assert set(got.names) == {"rms_g", "band_high_rms_g"}
    assert_array_equal(
        in_order(got, ("rms_g", "band_high_rms_g")).values, [[1.0, 2.0], [3.0, np.nan]]
    )


def test_features_with_different_names_in_one_machine(
    store: HistoryStore, put: Callable[..., None]
) -> None:
    put(
        features("m1", [0], ["de"], [[1.0, 2.0]], names=("rms_g", "crest")),
        features("m1", [1], ["de"], [[3.0, 4.0]], names=("rms_g", "env_bpfo_g")),
    )
    got = store.features("m1")
    assert set(got.names) == {"rms_g", "crest", "env_bpfo_g"}
    col = {n: got.values[:, i] for i, n in enumerate(got.names)}
    assert_array_equal(col["rms_g"], [1.0, 3.0])
    assert_array_equal(col["crest"], [2.0, np.nan])
    assert_array_equal(col["env_bpfo_g"], [np.nan, 4.0])


def test_no_features_is_an_empty_record(store: HistoryStore) -> None:
    got = store.features("nobody")
    assert len(got) == 0 and got.names == () and got.values.shape[0] == 0
    assert got.t_ns.dtype == np.int64


def test_score_rows_round_trip(store: HistoryStore, put: Callable[..., None]) -> None:
    first = scores(
        "m1", [0, 1, 2], [0.25, np.nan, 1.5], model="aaaaaaaaaaaa", state=["ok", "invalid", "alert"]
    )
    second = scores("m1", [3], [0.125], model="bbbbbbbbbbbb", diagnosis=["outer race"])
    put(second, first)
    got = store.scores("m1")
    assert got.model == "bbbbbbbbbbbb"  # the newest row's
    assert (
        got.t_ns.dtype == np.int64
        and got.window.dtype == np.int64
        and got.score.dtype == np.float64
    )
    assert_array_equal(got.t_ns, np.concatenate([first.t_ns, second.t_ns]))
    assert_array_equal(got.window, np.concatenate([first.window, second.window]))
    assert_array_equal(got.score, [0.25, np.nan, 1.5, 0.125])
    assert got.state == ("ok", "invalid", "alert", "ok")
    assert got.diagnosis == ("", "", "", "outer race")
    assert got.top == (*first.top, *second.top)
    empty = store.scores("nobody")
    assert len(empty) == 0 and empty.score.dtype == np.float64


def test_diagnosis_confidence_round_trips(store: HistoryStore, put: Callable[..., None]) -> None:
    # A what-if over stored scores reproduces a trip the diagnosis corroborates only with
    # each window's confidence (pdm/dashboard/whatif.py); rows written without one read NaN.
    first = scores(
        "m1", [0, 1, 2], [0.5, 2.5, 3.0], diagnosis=["", "bearing_outer_race", "bearing_outer_race"],
        confidence=[np.nan, 0.625, 0.875],
    )  # fmt: skip
    second = scores("m1", [3], [0.25])  # written before the column existed: no confidences
    put(first, second)
    got = store.scores("m1")
    assert got.diagnosis_confidence is not None
    assert got.diagnosis_confidence.dtype == np.float64
    assert_array_equal(got.diagnosis_confidence, [np.nan, 0.625, 0.875, np.nan])


def test_spectra_round_trip_float32_exact(store: HistoryStore, put: Callable[..., None]) -> None:
    old = spectrum("m1", "de", 0, "power", seed=1)
    new = spectrum("m1", "de", 60, "power", seed=2)
    env = spectrum("m1", "de", 30, "envelope", seed=3)
    fe = spectrum("m1", "fe", 10, "power", seed=4)
    put(old, new, env, fe, spectrum("m2", "de", 90, "power", seed=5))
    got = store.latest_spectra("m1")
    assert [(s.channel, s.type) for s in got] == [
        ("de", "envelope"),
        ("de", "power"),
        ("fe", "power"),
    ]
    for want, s in zip([env, new, fe], got, strict=True):
        assert fields(s) == fields(want)
        assert s.values.dtype == np.float32
    assert [s.channel for s in store.latest_spectra("m1", channel="fe")] == ["fe"]
    assert store.latest_spectra("m1", channel="nope") == []
    assert store.latest_spectra("nobody") == []


# --- the log -------------------------------------------------------------------------------------


def test_log_round_trip_newest_first(store: HistoryStore, put: Callable[..., None]) -> None:
    recs = log_records("m1")
    put(*recs)
    got = store.log()
    want = sorted(recs, key=lambda r: -r.t_ns)  # action, event, state, capture
    assert [fields(r) for r in got] == [fields(r) for r in want]


def test_log_nan_score_of_a_state_change(store: HistoryStore, put: Callable[..., None]) -> None:
    put(StateChange("m1", T0, "learning", "ok", "model trained"))
    (got,) = store.log()
    assert isinstance(got, StateChange) and math.isnan(got.score)


def test_log_limit_kinds_and_machine(store: HistoryStore, put: Callable[..., None]) -> None:
    put(*log_records("m1"), *log_records("m2"))
    events = [Event("m1", T0 + i * S, "stream_gap", "info", f"gap {i}") for i in range(20, 30)]
    put(*events)
    got = store.log(limit=3)
    assert [(r.machine, r.t_ns) for r in got] == [
        ("m1", T0 + 29 * S),
        ("m1", T0 + 28 * S),
        ("m1", T0 + 27 * S),
    ]
    got = store.log(kinds=("states",))
    assert {type(r) for r in got} == {StateChange} and len(got) == 2
    got = store.log(kinds=("captures", "actions"))
    assert [type(r).__name__ for r in got] == ["ActionResult", "ActionResult", "Capture", "Capture"]
    got = store.log("m2")
    assert [fields(r) for r in got] == [
        fields(r) for r in sorted(log_records("m2"), key=lambda r: -r.t_ns)
    ]
    assert store.log("nobody") == []


def test_log_time_range_is_half_open(store: HistoryStore, put: Callable[..., None]) -> None:
    put(*log_records("m1"))  # 10, 11, 12, 13 s
    got = store.log(start_ns=T0 + 11 * S, end_ns=T0 + 13 * S)
    assert [r.t_ns for r in got] == [T0 + 12 * S, T0 + 11 * S]
    assert [r.t_ns for r in store.log(start_ns=T0 + 13 * S)] == [T0 + 13 * S]
    assert [r.t_ns for r in store.log(end_ns=T0 + 11 * S)] == [T0 + 10 * S]


# --- idempotency and counts ------------------------------------------------------------------------


def _everything() -> list[Record]:
    return [
        features("m1", [0, 0, 1, 1], ["de", "fe", "de", "fe"], np.arange(16.0).reshape(4, 4)),
        features("m2", [0], ["de"], [[1.0, 2.0, 3.0, 4.0]]),
        scores("m1", [0, 1], [0.5, 0.75]),
        scores("m2", [0], [0.1]),
        spectrum("m1", "de", 0),
        spectrum("m1", "de", 1, "envelope"),
        spectrum("m2", "de", 0),
        *log_records("m1"),
        *log_records("m2"),
        Event("m1", T0 + 50 * S, "store_up", "info", "store back"),
    ]


COUNTS = {
    ("features", None): 5,
    ("features", "m1"): 4,
    ("scores", None): 3,
    ("scores", "m2"): 1,
    ("spectra", None): 3,
    ("spectra", "m1"): 2,
    ("states", None): 2,
    ("events", None): 3,
    ("events", "m1"): 2,
    ("actions", "m1"): 1,
    ("captures", None): 2,
    ("captures", "nobody"): 0,
}


def test_count_each_kind(store: HistoryStore, put: Callable[..., None]) -> None:
    put(*_everything())
    assert {key: store.count(*key) for key in COUNTS} == COUNTS  # type: ignore[arg-type]


def test_writing_twice_stores_once(store: HistoryStore, put: Callable[..., None]) -> None:
    put(*_everything())
    put(*_everything())
    put(*_everything()[::-1])
    assert {key: store.count(*key) for key in COUNTS} == COUNTS  # type: ignore[arg-type]
    assert len(store.features("m1")) == 4
    assert len(store.log()) == 9


def test_rewriting_a_row_replaces_it(store: HistoryStore, put: Callable[..., None]) -> None:
    put(features("m1", [0], ["de"], [[1.0, 2.0, 3.0, 4.0]]))
    put(features("m1", [0], ["de"], [[5.0, 6.0, 7.0, 8.0]]))
    assert_array_equal(in_order(store.features("m1"), NAMES).values, [[5.0, 6.0, 7.0, 8.0]])


def test_empty_writes_are_fine(store: HistoryStore, put: Callable[..., None]) -> None:
    put()
    put(features("m1", [], [], np.zeros((0, 4))), scores("m1", [], []))
    assert store.count("features") == 0 and store.count("scores") == 0


def test_ping_a_healthy_store(store: HistoryStore) -> None:
    store.ping()  # returns quietly


def test_another_handle_sees_the_data(
    make_store: StoreMaker, readback: Callable[[HistoryStore], None]
) -> None:
    writer = make_store()
    writer.write(_everything())
    readback(writer)
    reader = make_store()
    assert reader.count("features") == 5
    assert reader.machines() == ["m1", "m2"]


# --- machines and status -------------------------------------------------------------------------


def test_machines(store: HistoryStore, put: Callable[..., None]) -> None:
    assert store.machines() == []
    put(
        scores("pump-2", [0], [0.1]),  # scores only
        features("fan-1", [0], ["de"], [[1.0, 2.0, 3.0, 4.0]]),  # features only
        *log_records("ghost"),  # log only: not a machine with data
        spectrum("ghost", "de", 0),
    )
    assert store.machines() == ["fan-1", "pump-2"]


def test_latest_status(store: HistoryStore, put: Callable[..., None]) -> None:
    put(
        features(
            "m1",
            [0, 0, 5],
            ["de", "fe", "de"],
            [[1, 2, 3, 4], [5, 6, 7, 8], [9, np.nan, 11, 12]],
            iso_zone=["A", "B", "C"],
        ),
        scores(
            "m1",
            [0, 4],
            [0.5, 1.25],
            model="cafecafecafe",
            state=["ok", "alert"],
            diagnosis=["", "imbalance"],
        ),
        StateChange("m1", T0 + 2 * S, "ok", "alert", "score high"),
        StateChange("m1", T0 + 3 * S, "alert", "danger", "score higher"),
        StateChange(
            "m1", T0 + 4 * S, "ok", "stale", "sensor silent", sensor="m1-sensor"
        ),  # a sensor's own
        scores("m2", [9], [np.nan], model="", state=["learning"]),
    )
    m1, m2 = store.latest_status()
    assert m1.machine == "m1"
    assert m1.t_ns == T0 + 5 * S  # the newest feature row is newer than the newest score
    assert m1.score == 1.25 and m1.state == "alert" and m1.model == "cafecafecafe"
    assert m1.diagnosis == "imbalance"
    assert m1.alarm_state == "danger" and m1.alarm_t_ns == T0 + 3 * S
    assert dict(m1.channels["de"]) == {
        "rms_g": 9.0,
        "band_high_rms_g": 11.0,
        "kurtosis": 12.0,
        "iso_zone": "C",
        "t_ns": T0 + 5 * S,
    }  # NaN features are absent
    assert dict(m1.channels["fe"]) == {
        "rms_g": 5.0,
        "velocity_rms_mm_s": 6.0,
        "band_high_rms_g": 7.0,
        "kurtosis": 8.0,
        "iso_zone": "B",
        "t_ns": T0,
    }
    assert m2.machine == "m2" and m2.t_ns == T0 + 9 * S
    assert m2.score is None and m2.state == "learning" and m2.model == ""  # NaN score: no score
    assert m2.alarm_state is None and m2.alarm_t_ns is None and dict(m2.channels) == {}
    (only,) = store.latest_status("m2")
    assert only == m2


def test_the_fleet_tells_the_appliances_that_wrote_apart(
    make_store: StoreMaker, readback: Callable[[HistoryStore], None]
) -> None:
    """Every row carries its appliance: ``fleet()`` lists (appliance, machine) pairs."""
    a, b = make_store(), make_store()
    a.appliance, b.appliance = "edge-a", "edge-b"  # type: ignore[attr-defined]
    a.write(
        [
            scores("m1", [0], [0.5]),
            StateChange("m1", T0 + S, "ok", "alert", "x"),
            ramp("m1", "de", 2),
        ]
    )
    b.write([scores("m2", [1], [2.0])])
    readback(a)
    got = [(s.appliance, s.machine, s.score, s.alarm_state) for s in a.fleet()]
    assert got == [("edge-a", "m1", 0.5, "alert"), ("edge-b", "m2", 2.0, None)]
    assert [s.appliance for s in a.latest_status()] == ["edge-a", "edge-b"]


def test_latest_status_of_a_machine_without_data(store: HistoryStore) -> None:
    (st,) = store.latest_status("nobody")
    assert (st.machine, st.t_ns, st.score, st.state, st.alarm_state) == (
        "nobody",
        None,
        None,
        None,
        None,
    )
    assert dict(st.channels) == {}
    assert store.latest_status() == []


# --- trends --------------------------------------------------------------------------------------


def test_trend_buckets_of_a_ramp(store: HistoryStore, put: Callable[..., None]) -> None:
    put(ramp("m1", "de", 100), ramp("m1", "fe", 100, scale=2.0))
    de, fe = store.trend("m1", "rms_g", T0, T0 + 100 * S, points=10)
    assert (de.machine, de.field, de.channel, fe.channel) == ("m1", "rms_g", "de", "fe")
    assert de.bucket_ns == 10 * S  # 100 s / 10 points
    assert de.t_ns.dtype == np.int64 and de.mean.dtype == np.float64
    assert_array_equal(de.t_ns, T0 + np.arange(10) * 10 * S)
    # Bucket k holds rms_g = 10k … 10k + 9.
    assert_array_equal(de.min, np.arange(10) * 10.0)
    assert_array_equal(de.max, np.arange(10) * 10.0 + 9)
    np.testing.assert_allclose(de.mean, np.arange(10) * 10.0 + 4.5, rtol=1e-12)
    np.testing.assert_allclose(fe.mean, 2 * (np.arange(10) * 10.0 + 4.5), rtol=1e-12)
    (only,) = store.trend("m1", "rms_g", T0, T0 + 100 * S, points=10, channel="fe")
    assert only.channel == "fe"
    assert_array_equal(only.max, fe.max)


def test_trend_buckets_are_aligned_to_the_epoch(
    store: HistoryStore, put: Callable[..., None]
) -> None:
    put(ramp("m1", "de", 100))
    (tr,) = store.trend("m1", "rms_g", T0 + 5 * S, T0 + 105 * S, points=10)
    assert tr.bucket_ns == 10 * S
    assert tr.t_ns[0] == T0  # before start: t − t mod width, as InfluxQL does
    assert (tr.min[0], tr.max[0]) == (5.0, 9.0)  # only rows in [start, end) count
    np.testing.assert_allclose(tr.mean[0], 7.0, rtol=1e-12)
    assert_array_equal(tr.t_ns, T0 + np.arange(10) * 10 * S)
    assert tr.max[-1] == 99.0


def test_trend_respects_points(store: HistoryStore, put: Callable[..., None]) -> None:
    put(ramp("m1", "de", 600, step_s=0.5))  # 0 … 299.5 s
    start, end = T0, T0 + 300 * S
    for points in (1, 3, 7, 50):
        (tr,) = store.trend("m1", "rms_g", start, end, points=points)
        width = -(-300 * S // (points * 1000)) * 1000  # whole µs
        assert tr.bucket_ns == width
        assert 1 <= len(tr.t_ns) <= points + 1
        t = T0 + np.arange(600) * (S // 2)
        b = t - t % width
        edges = np.unique(b)
        assert_array_equal(tr.t_ns, edges)
        v = np.arange(600.0)
        assert_array_equal(tr.min, [v[b == e].min() for e in edges])
        assert_array_equal(tr.max, [v[b == e].max() for e in edges])
        np.testing.assert_allclose(tr.mean, [v[b == e].mean() for e in edges], rtol=1e-12)


def test_trend_skips_nan_and_empty_buckets(store: HistoryStore, put: Callable[..., None]) -> None:
    values = np.full((6, 4), np.nan)
    values[:, 0] = [1.0, np.nan, 3.0, np.nan, np.nan, 8.0]  # at 0, 1, 2, 3, 4, 50 s
    put(features("m1", [0, 1, 2, 3, 4, 50], ["de"] * 6, values))
    (tr,) = store.trend("m1", "rms_g", T0, T0 + 100 * S, points=10)
    assert_array_equal(tr.t_ns, [T0, T0 + 50 * S])
    assert_array_equal(tr.mean, [2.0, 8.0])
    assert_array_equal(tr.min, [1.0, 8.0])
    assert_array_equal(tr.max, [3.0, 8.0])
    # A feature that exists but has no value in the range gives no series.
    assert store.trend("m1", "kurtosis", T0, T0 + 100 * S) == []
    assert store.trend("m1", "rms_g", T0 + 200 * S, T0 + 300 * S) == []


def test_score_trend(store: HistoryStore, put: Callable[..., None]) -> None:
    put(scores("m1", [0, 1, 2, 10, 11], [0.5, 1.5, np.nan, 2.0, 4.0]))
    (tr,) = store.trend("m1", "score", T0, T0 + 20 * S, points=2)
    assert (tr.field, tr.channel, tr.bucket_ns) == ("score", "", 10 * S)
    assert_array_equal(tr.t_ns, [T0, T0 + 10 * S])
    assert_array_equal(tr.mean, [1.0, 3.0])
    assert_array_equal(tr.min, [0.5, 2.0])
    assert_array_equal(tr.max, [1.5, 4.0])


def test_trend_of_an_unknown_feature_is_empty(
    store: HistoryStore, put: Callable[..., None]
) -> None:
    """InfluxDB cannot tell a feature never written (or always NaN) from a typo: neither can we."""
    put(ramp("m1", "de", 3))
    assert store.trend("m1", "no_such_feature_g", T0, T0 + 10 * S) == []


# --- time ranges and machines --------------------------------------------------------------------


def test_time_ranges_are_half_open(store: HistoryStore, put: Callable[..., None]) -> None:
    put(ramp("m1", "de", 10), scores("m1", list(range(10)), [0.1 * i for i in range(10)]))
    got = store.features("m1", T0 + 2 * S, T0 + 5 * S)
    assert_array_equal(got.t_ns, T0 + np.array([2, 3, 4]) * S)
    assert_array_equal(store.features("m1", start_ns=T0 + 8 * S).t_ns, T0 + np.array([8, 9]) * S)
    assert_array_equal(store.features("m1", end_ns=T0 + 1 * S).t_ns, [T0])
    sc = store.scores("m1", T0 + 2 * S, T0 + 5 * S)
    assert_array_equal(sc.t_ns, T0 + np.array([2, 3, 4]) * S)
    (tr,) = store.trend("m1", "rms_g", T0 + 2 * S, T0 + 5 * S, points=100)
    assert (tr.min.min(), tr.max.max()) == (2.0, 4.0)


def test_two_machines_are_kept_apart(store: HistoryStore, put: Callable[..., None]) -> None:
    put(
        ramp("m1", "de", 10),
        ramp("m2", "de", 10, scale=-1.0),
        scores("m1", [0], [0.1]),
        scores("m2", [0], [0.9]),
        spectrum("m1", "de", 0, seed=1),
        spectrum("m2", "de", 0, seed=2),
        *log_records("m1"),
        *log_records("m2"),
    )
    assert_array_equal(store.features("m1").values[:, 0], np.arange(10.0))
    assert_array_equal(store.features("m2").values[:, 0], -np.arange(10.0))
    assert_array_equal(store.scores("m2").score, [0.9])
    (tr,) = store.trend("m2", "rms_g", T0, T0 + 10 * S, points=1)
    assert (tr.min[0], tr.max[0]) == (-9.0, 0.0)
    (sp,) = store.latest_spectra("m1")
    assert fields(sp) == fields(spectrum("m1", "de", 0, seed=1))
    assert {r.machine for r in store.log("m1")} == {"m1"}
    assert [s.score for s in store.latest_status()] == [0.1, 0.9]
