"""The alarm engine with a real relay: pymodbus's Modbus TCP server on loopback.

The coil drops on trip, stays down while the trip is latched, and comes back
only after acknowledge + clear; a relay that cannot be reached is an
``appliance_fault`` within 2 s; a restart sets the relay from the stored state
and sends nothing again.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_relay import HAVE_PYMODBUS, ModbusServer

from pdm.config import Pipeline, load_pipeline
from pdm.history.recorder import Recorder
from pdm.history.records import ActionResult, Record, StateChange
from pdm.processing import FeatureStream, WindowFeatures, open_recording
from pdm.scoring.result import WindowScore
from pdm.scoring.stream import ScoreStream
from pdm.supervision.engine import AlarmEngine
from pdm.supervision.store import AlarmStore

pytestmark = pytest.mark.relay

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "fixtures"


def _pipeline(relay: str) -> Pipeline:
    pl = load_pipeline(REPO / "pipelines" / "demo.toml")
    return pl.model_copy(update={"alarms": pl.alarms.model_copy(update={"relay": relay})})


def _groups(
    pl: Pipeline, name: str
) -> Iterator[tuple[list[WindowFeatures], list[WindowScore], dict]]:
    rec, pl = open_recording(FIX / name, pl)
    with rec:
        fs = FeatureStream(pl, rec.sample_rate_hz)
        scores = ScoreStream(pl, rec.sample_rate_hz, pl.model_dir, fs.extractor.names)  # type: ignore[arg-type]
        model = scores.scorer.model  # type: ignore[union-attr]
        thresholds = {"alert": model.alert, "danger": model.danger}
        group: list[WindowFeatures] = []
        for wf in fs.feed(rec.chunks()):
            group.append(wf)
            if len(group) == fs.batch:
                yield group, scores.score(group), thresholds
                group = []
        if group:
            yield group, scores.score(group), thresholds


class Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def __call__(self, *recs: Record) -> None:
        self.records += recs


def _engine(pl: Pipeline, tmp_path: Path, sink: Sink) -> AlarmEngine:
    return AlarmEngine(
        pl, AlarmStore(tmp_path / "alarms.db"), sink, Recorder(pl), tmp_path, actions="live"
    )


def _run(engine: AlarmEngine, pl: Pipeline, name: str, sink: Sink) -> None:
    for group, rows, th in _groups(pl, name):
        sink(*engine.process(group, rows, model="m", thresholds=th))


def test_coil_drops_on_trip_and_returns_only_after_acknowledge_and_clear(
    modbus_server: ModbusServer, tmp_path: Path
) -> None:
    pl = _pipeline(f"modbus://127.0.0.1:{modbus_server.port}?device=1&coil=0")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    assert modbus_server.coil(0) is True  # healthy machine: permissive (energised)
    _run(engine, pl, "outer_race.csv.gz", sink)
    assert engine.state is not None and engine.state.state == "trip"
    assert modbus_server.coil(0) is False  # tripped: dropped
    _run(engine, pl, "healthy.csv.gz", sink)  # repaired and running clean…
    assert engine.state.state == "trip" and modbus_server.coil(0) is False  # …but latched
    recs, msg = engine.acknowledge("ana", "outer race replaced")
    assert "back to ok" in msg or "now ok" in msg
    assert engine.state.state == "ok" and modbus_server.coil(0) is True
    sink(*recs)
    relay = [r for r in sink.records if isinstance(r, ActionResult) and r.action == "relay"]
    assert [r.outcome for r in relay] == ["ok", "ok", "ok"]
    assert ["drop" in r.detail for r in relay] == [False, True, False]
    engine.close()
    assert modbus_server.coil(0) is False  # the appliance stops: fail-safe drop


def test_acknowledge_before_clear_waits_for_clear(
    modbus_server: ModbusServer, tmp_path: Path
) -> None:
    pl = _pipeline(f"modbus://127.0.0.1:{modbus_server.port}")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    _run(engine, pl, "outer_race.csv.gz", sink)
    _, msg = engine.acknowledge("ana", "")
    assert "ends when" in msg and modbus_server.coil(0) is False
    _run(engine, pl, "healthy.csv.gz", sink)
    assert engine.state is not None and engine.state.state == "ok" and modbus_server.coil(0) is True
    engine.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_relay_is_appliance_fault_within_2_s(tmp_path: Path) -> None:
    pl = _pipeline(f"modbus://127.0.0.1:{_free_port()}")
    sink = Sink()
    t0 = time.monotonic()
    engine = _engine(pl, tmp_path, sink)
    assert time.monotonic() - t0 < 2.0
    group, rows, th = next(_groups(pl, "healthy.csv.gz"))
    recs = engine.process(group, rows, model="m", thresholds=th)
    faults = [r for r in recs if isinstance(r, StateChange) and r.new == "appliance_fault"]
    assert len(faults) == 1 and "relay" in faults[0].reason
    assert any(isinstance(r, ActionResult) and r.outcome == "failed" for r in recs)
    engine.close()


def test_read_back_mismatch_is_appliance_fault_within_2_s(tmp_path: Path) -> None:
    if not HAVE_PYMODBUS:
        pytest.skip("pymodbus not installed")
    srv = ModbusServer(ignore_writes=True).start()
    try:
        pl = _pipeline(f"modbus://127.0.0.1:{srv.port}")
        sink = Sink()
        t0 = time.monotonic()
        engine = _engine(pl, tmp_path, sink)
        elapsed = time.monotonic() - t0
        group, rows, th = next(_groups(pl, "healthy.csv.gz"))
        recs = engine.process(group, rows, model="m", thresholds=th)
        (fault,) = [r for r in recs if isinstance(r, StateChange) and r.new == "appliance_fault"]
        assert "read-back" in fault.reason and elapsed < 2.0
        engine.close()
    finally:
        srv.stop()


def test_restart_sets_the_relay_from_the_stored_state_and_sends_nothing_again(
    modbus_server: ModbusServer, tmp_path: Path
) -> None:
    pl = _pipeline(f"modbus://127.0.0.1:{modbus_server.port}")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    _run(engine, pl, "outer_race.csv.gz", sink)
    n_changes = sum(isinstance(r, StateChange) for r in sink.records)
    engine.store.close()  # a crash: no close(), the relay is left as it was
    modbus_server.set_coil(0, True)  # and someone re-energised it by hand meanwhile
    sink2 = Sink()
    engine2 = _engine(pl, tmp_path, sink2)  # the restart
    assert engine2.state is not None and engine2.state.state == "trip"
    assert modbus_server.coil(0) is False  # dropped again at once: the stored trip
    _run(engine2, pl, "outer_race.csv.gz", sink2)  # still faulty: no new transition
    assert not any(isinstance(r, StateChange) for r in sink2.records)
    assert n_changes == 2  # ok → danger, danger → trip
    engine2.close()


def test_alarm_states_without_a_transition_are_written_together_and_none_is_lost(
    tmp_path: Path,
) -> None:
    """``save`` without ``now`` waits in memory (read back at once) and the store's own
    thread writes it within ``flush_every_s``; a ``now`` save is on disk when it returns;
    ``close`` writes what waits; an older state never replaces a newer one on disk (a
    deferred batch landing after a transition's immediate write)."""
    import sqlite3

    from pdm.alarms.state import MachineAlarm

    def on_disk() -> dict[str, str]:
        with sqlite3.connect(tmp_path / "alarms.db") as db:
            return dict(db.execute("SELECT machine, state FROM machine_state"))

    store = AlarmStore(tmp_path / "alarms.db")
    store.flush_every_s = 0.3
    store.save("a", MachineAlarm(since_ns=1), off_windows=5)
    store.save("a", MachineAlarm(since_ns=2), off_windows=5)
    store.save("b", MachineAlarm(since_ns=3), off_windows=7)
    assert store.load("a") == MachineAlarm(since_ns=2) and store.off_windows("b") == 7
    assert store.machines() == ["a", "b"]
    assert on_disk() == {}  # not on this thread: the store's writes them soon
    deadline = time.monotonic() + 5
    while len(on_disk()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    disk = on_disk()
    assert '"since_ns":2' in disk["a"] and '"since_ns":3' in disk["b"]
    store.save("c", MachineAlarm(state="trip", since_ns=4), off_windows=5, now=True)
    assert "trip" in on_disk()["c"]  # a transition: on disk before save returns
    store.save("a", MachineAlarm(since_ns=5), off_windows=5)
    store.close()
    assert '"since_ns":5' in on_disk()["a"]
    with AlarmStore(tmp_path / "alarms.db") as again:
        assert again.load("a") == MachineAlarm(since_ns=5)
        again.save("d", MachineAlarm(state="danger", since_ns=7), off_windows=5, now=True)
        newer = again._db.execute("SELECT updated_ns FROM machine_state WHERE machine='d'")
        t_newer = newer.fetchone()[0]
        again._write(again._db, {"d": (MachineAlarm(since_ns=6), 5, t_newer - 1)})
        assert "danger" in on_disk()["d"]


def test_alarm_stores_opened_at_once_by_many_workers_all_open(tmp_path: Path) -> None:
    """Workers start together and open one new file at once: SQLite can refuse some of them
    "database is locked" at once, without waiting out busy_timeout (switching to WAL,
    creating the tables). Each open is retried until it succeeds."""
    import threading

    from pdm.alarms.state import MachineAlarm

    errors: list[str] = []

    def open_close(path: Path) -> None:
        try:
            with AlarmStore(path) as store:
                store.save("m", store.load("m") or MachineAlarm(), off_windows=3, now=True)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    for k in range(15):
        path = tmp_path / f"alarms-{k}.db"
        threads = [threading.Thread(target=open_close, args=(path,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_a_forced_safe_relay_is_a_transition_sent_to_the_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the soak (docs/soak.md): the service's own appliance faults — a stalled
    processing loop (watchdog), processing behind real time (backlog) — reached history
    but no webhook, though the receivers get every transition (docs/alarms.md)."""
    from pdm.actions.outbox import Outbox
    from pdm.history.records import event_id

    monkeypatch.setenv("PDM_WEBHOOK_SECRET", "s" * 32)
    text = (REPO / "pipelines" / "demo.toml").read_text()
    f = tmp_path / "pump.toml"
    f.write_text(
        text.replace("\n[alarms]\n", '\n[alarms]\nrelay = "log:"\n')
        + '\n[[alarms.webhooks]]\nurl = "http://127.0.0.1:9/hook"\n'
    )
    pl = load_pipeline(f)
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    try:
        on = engine.force_safe(True, "processing stalled for 6 s", source="watchdog")
        off = engine.force_safe(False, "processing moves again", source="watchdog")
        again = engine.force_safe(False, "processing moves again", source="watchdog")
        quiet = engine.force_safe(True, "the appliance stops", source="stop", announce=False)
        changes = [r for r in on + off + again + quiet if isinstance(r, StateChange)]
        assert [(c.sensor, c.old, c.new, c.reason) for c in changes] == [
            ("appliance", "ok", "appliance_fault", "processing stalled for 6 s"),
            ("appliance", "appliance_fault", "ok", "processing moves again"),
        ]
    finally:
        engine.close(timeout=0.1)
    with Outbox(tmp_path / "outbox" / "demo-pump-0.db") as box:
        queued = box.ids()
    assert queued == [event_id(c.machine, c.t_ns, c.sensor, c.old, c.new) for c in changes]


def test_a_transitions_state_change_is_durable_before_its_webhook_is_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the hour-long soak (docs/soak.md): a sensor fault raised while the service's
    processing held its records for one fsync a round (``HistoryWriter.together``) had its
    webhook in the durable outbox — and delivered after the restart — while kill -9 took its
    state change from history. The state change is now spooled before the outbox gets the
    event, even inside such a block."""
    from pdm.actions.outbox import Outbox
    from pdm.history import open_store, parse_store_url
    from pdm.history.records import event_id
    from pdm.history.spool import Spool
    from pdm.history.writer import HistoryWriter

    monkeypatch.setenv("PDM_WEBHOOK_SECRET", "s" * 32)
    text = (REPO / "pipelines" / "demo.toml").read_text()
    f = tmp_path / "pump.toml"
    f.write_text(
        text.replace("\n[alarms]\n", '\n[alarms]\nrelay = "log:"\n')
        + '\n[[alarms.webhooks]]\nurl = "http://127.0.0.1:9/hook"\n'
    )
    pl = load_pipeline(f)
    url = parse_store_url(f"sqlite:///{tmp_path}/history.db")
    spool = Spool(tmp_path / "spool.db")
    writer = HistoryWriter(lambda: open_store(url), spool, label="t")
    engine = AlarmEngine(
        pl,
        AlarmStore(tmp_path / "alarms.db"),
        writer.submit,
        Recorder(pl),
        tmp_path,
        actions="live",
        submit_durable=writer.submit_durable,
    )
    try:
        with writer.together():
            recs = engine.source_silent(["motor_de"], "source silent for more than 3 s")
            with Outbox(tmp_path / "outbox" / "demo-pump-0.db") as box:
                queued = box.ids()
            # Inside the block: the webhook is queued, and its state change already durable.
            assert len(queued) == 1
            # The spool first, then the store: the writer commits a record to the store before
            # it leaves the spool, so one of the two holds it whenever it moves (read the other
            # way round, a delivery between the two reads hid it: seen once in a parallel run).
            spooled = [r for _, r, _, _ in spool.peek(100)]
            with open_store(url) as store:  # the writer may have delivered it already
                stored = store.log("demo-pump", kinds=("states",), limit=100)
            durable = {
                event_id(r.machine, r.t_ns, r.sensor, r.old, r.new)
                for r in [*spooled, *stored]
                if isinstance(r, StateChange)
            }
            assert queued[0] in durable
            writer.submit(*recs)
    finally:
        engine.close(timeout=0.1)
        writer.close(timeout=2.0)
    with open_store(url) as store:  # the same change submitted twice is one row
        rows = store.log("demo-pump", kinds=("states",), limit=100)
    assert len(rows) == 1


@pytest.mark.parametrize(("score", "state"), [(0.9999996, "ok"), (1.0, "alert")])
def test_the_alarm_step_compares_the_models_score_not_its_written_rounding(
    tmp_path: Path, score: float, state: str
) -> None:
    """The engine decides on the unrounded score: 0.9999996 is below the alert threshold
    1.0 although history and the JSON rows write it as 1.0 (before the scores were typed,
    the alarm step read the 6-decimal row and alerted). The event carries the written one."""
    pl = _pipeline("log:")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    events: list[float | None] = []
    engine.listeners.append(lambda e: events.append(e.score))
    for group, scores, th in _groups(pl, "healthy.csv.gz"):
        near = [dataclasses.replace(s, score=score, state="ok") for s in scores]
        sink(*engine.process(group, near, model="m", thresholds=th))
    assert engine.state is not None and engine.state.state == state
    assert events == ([] if state == "ok" else [1.0])
    engine.close()
