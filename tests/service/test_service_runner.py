"""The service's processing pool, in process: rounds that batch the windows of many machines.

A :class:`~pdm.service.runner.RunnerPool` round cuts the windows of every machine with a
chunk waiting, extracts them in one pass, then lets each machine score, decide and record.
These tests drive rounds by hand (the pool's thread is not started) so what is batched is
known, and hold the pooled results against each machine processed alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.fft as sfft

import pdm.service.runner as runner_mod
from pdm.config import load_pipeline
from pdm.dsp.features import feature_names
from pdm.history import open_store, parse_store_url
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.service.runner import MachineRunner, RunnerPool
from pdm.sources.base import Chunk
from pdm.sources.simulator import FaultSpec, SimSpec, Simulator
from pdm.supervision.store import AlarmStore

FS = 25600.0
N = 4096
CHUNK = 1024


def _pipeline_text(i: int, band: str, speed: str = "rpm = 1480.0") -> str:
    return f"""schema_version = 1
[machine]
id = "m{i}"
iso_group = 2
[machine.speed]
{speed}
[acquisition]
sample_rate_hz = {FS}
window_samples = {N}
overlap = 0.5
[[sensors]]
id = "m{i}-de"
bearing = "6205"
channels = [
  {{ column = "x_g", unit = "g", full_scale = 16.0 }},
  {{ column = "y_g", unit = "g", full_scale = 16.0 }},
]
[envelope]
band_hz = {band}
"""


def _chunks(seed: int, fault: bool, rpm: float = 1480.0) -> list[Chunk]:
    faults = (FaultSpec("bpfo", 0.8),) if fault else (FaultSpec("unbalance", 0.05),)
    spec = SimSpec(
        fs=FS, duration_s=1.0, rpm=rpm, channels=("x_g", "y_g"), faults=faults,
        start_time=time.time() - 1.0, seed=seed,
    )  # fmt: skip
    return [
        Chunk(c.data.astype(np.float32), c.fs, c.t0, c.channels, received=time.monotonic())
        for c in Simulator(spec, chunk_samples=CHUNK).chunks()
    ]


class _Rig:
    """Runners for a few machines sharing a history writer and an alarm store."""

    def __init__(
        self, tmp: Path, bands: list[str], pool: bool, speeds: list[str] | None = None
    ) -> None:
        url = parse_store_url(f"sqlite:///{tmp}/history.db")
        self.writer = HistoryWriter(lambda: open_store(url), Spool(tmp / "spool.db"), label="t")
        self.store = AlarmStore(tmp / "alarms.db")
        self.pool = RunnerPool() if pool else None
        self.seen: list[tuple[str, int, np.ndarray]] = []
        self.runners = []
        for i, band in enumerate(bands):
            f = tmp / f"m{i}.toml"
            speed = speeds[i] if speeds else None
            f.write_text(
                _pipeline_text(i, band) if speed is None else _pipeline_text(i, band, speed)
            )
            r = MachineRunner(
                load_pipeline(f), FS, writer=self.writer, alarm_store=self.store,
                data_dir=tmp, actions="live", pool=self.pool,
            )  # fmt: skip
            real = r._window

            def spy(wf: Any, *args: Any, r=r, real=real) -> None:
                self.seen.append((r.machine, wf.window.index, wf.features.values.copy()))
                real(wf, *args)

            r._window = spy  # type: ignore[method-assign]
            self.runners.append(r)

    def close(self) -> None:
        for r in self.runners:
            r.engine.close(timeout=5)
        self.writer.close()
        self.store.close()


@pytest.mark.parametrize(
    "rpms",
    [
        pytest.param((1480.0, 1480.0, 1480.0, 1480.0), id="one-speed"),
        # The fixed-band machines at other speeds, one searched: still one pass (issue 22).
        pytest.param((1780.0, 2960.0, -1480.0, 990.0), id="mixed-speeds"),
    ],
)
def test_a_round_extracts_the_machines_waiting_together_and_matches_each_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rpms: tuple[float, ...]
) -> None:
    """``rpms``: each machine's speed, r/min; negative: searched around that nominal."""
    bands = ["[2000.0, 6000.0]", "[2000.0, 6000.0]", "[2000.0, 6000.0]", '"auto"']
    speeds = [f"rpm = {r}" if r > 0 else f"nominal_rpm = {-r}" for r in rpms]
    streams = [_chunks(seed=i, fault=(i == 1), rpm=abs(r)) for i, r in enumerate(rpms)]
    passes: list[int] = []
    ffts: list[int] = []  # rows of each N-sample rfft during the rounds' shared passes
    real_many = runner_mod.extract_many
    real_rfft = sfft.rfft

    def counting_rfft(x: Any, *args: Any, **kw: Any) -> Any:  # the real function, counted
        if np.shape(x)[-1] == N:
            ffts.append(np.shape(x)[0])
        return real_rfft(x, *args, **kw)

    def counting(jobs: Any) -> Any:  # the real function, counted
        passes.append(len(jobs))
        with monkeypatch.context() as m:
            m.setattr(sfft, "rfft", counting_rfft)
            return real_many(jobs)

    monkeypatch.setattr(runner_mod, "extract_many", counting)
    (tmp_path / "pool").mkdir()
    rig = _Rig(tmp_path / "pool", bands, pool=True, speeds=speeds)
    try:
        assert rig.pool is not None
        for k in range(len(streams[0])):
            for r, chunks in zip(rig.runners, streams, strict=True):
                assert r.offer(chunks[k])
            while not rig.pool.ready.empty():
                rig.pool._round(rig.pool.ready.get())
        pooled = sorted(rig.seen, key=lambda s: (s[0], s[1]))
        windows = [r.stats.windows for r in rig.runners]
        errors = [r.error for r in rig.runners]
    finally:
        rig.close()
    # 1 s at hop 2048 after the first 4096 samples: 11 windows per machine.
    assert windows == [11] * 4 and errors == [""] * 4
    # The three fixed-band machines share each pass, whatever their speeds: one FFT over
    # their windows' rows (2 channels each); the auto-band one runs alone.
    assert passes and set(passes) == {3}
    assert len(ffts) == len(passes) and all(f % 4 == 0 and f >= 6 for f in ffts)
    (tmp_path / "alone").mkdir()
    rig = _Rig(tmp_path / "alone", bands, pool=False, speeds=speeds)
    try:
        for r, chunks in zip(rig.runners, streams, strict=True):
            for c in chunks:
                r._process(c)
        alone = sorted(rig.seen, key=lambda s: (s[0], s[1]))
    finally:
        rig.close()
    assert [(m, i) for m, i, _ in pooled] == [(m, i) for m, i, _ in alone]
    for (_m, _i, a), (_m2, _i2, b) in zip(pooled, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True)
    # The fault stays with its machine: m1's outer-race line towers over the others'.
    col = feature_names().index("env_bpfo_g")
    bpfo = {m: v[:, col] for m, _i, v in pooled}
    assert np.nanmin(bpfo["m1"]) > 5 * max(np.nanmax(bpfo["m0"]), np.nanmax(bpfo["m2"]))


def test_a_failing_batched_pass_falls_back_machine_by_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(jobs: Any) -> Any:
        raise MemoryError("simulated")

    monkeypatch.setattr(runner_mod, "extract_many", broken)
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"] * 2, pool=True)
    try:
        assert rig.pool is not None
        streams = [_chunks(seed=i, fault=False) for i in range(2)]
        for k in range(len(streams[0])):
            for r, chunks in zip(rig.runners, streams, strict=True):
                r.offer(chunks[k])
            while not rig.pool.ready.empty():
                rig.pool._round(rig.pool.ready.get())
        assert [r.stats.windows for r in rig.runners] == [11, 11]
        assert [r.error for r in rig.runners] == ["", ""]
    finally:
        rig.close()


@pytest.mark.parametrize("busy", [True, False])
def test_under_load_a_round_waits_briefly_for_a_second_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy: bool
) -> None:
    """When windows come faster than one per ``gather_s``, a round holding one window
    waits (at most ``gather_s`` after its data arrived) for another machine's, and both
    share one pass; at light load it does not wait."""
    passes: list[int] = []
    real_many = runner_mod.extract_many

    def counting(jobs: Any) -> Any:
        passes.append(len(jobs))
        return real_many(jobs)

    monkeypatch.setattr(runner_mod, "extract_many", counting)
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"] * 2, pool=True)
    pool = rig.pool
    assert pool is not None
    pool.gather_s = 0.5  # generous: this machine is shared and noisy
    pool.gather_windows = 2  # the round ends as soon as the second window is in
    pool.window_rate = 100.0 if busy else 1.0
    try:
        a, b = (_chunks(seed=i, fault=False) for i in range(2))
        # The first four chunks fill both machines' first window up to its last chunk.
        for k in range(3):
            for r, chunks in zip(rig.runners, (a, b), strict=True):
                r.offer(chunks[k])
                pool._round(pool.ready.get())
        assert rig.runners[0].stats.windows == rig.runners[1].stats.windows == 0
        rig.runners[0].offer(a[3])  # m0's first window is complete ...
        import threading

        later = threading.Timer(0.05, lambda: rig.runners[1].offer(b[3]))  # ... m1's soon after
        later.start()
        t0 = time.monotonic()
        pool._round(pool.ready.get())
        waited = time.monotonic() - t0
        later.join()
        if not busy:
            assert passes == [] and rig.runners[0].stats.windows == 1 and waited < 0.04
            pool._round(pool.ready.get())
            assert rig.runners[1].stats.windows == 1
        else:
            assert passes == [2] and [r.stats.windows for r in rig.runners] == [1, 1]
            assert 0.04 < waited < 0.5
    finally:
        rig.close()


def test_a_driven_pool_reads_between_rounds_and_never_waits_on_its_own_queues(
    tmp_path: Path,
) -> None:
    """``RunnerPool.drive``: the pool's thread calls the poller between rounds (waiting in
    it when idle, not at all when busy) and the chunks it offers there are processed. An
    offer on that thread into a full queue does not wait for ``put_timeout_s`` — nothing
    else would empty it — it is refused at once and counted."""
    import threading

    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"] * 2, pool=True)
    pool = rig.pool
    assert pool is not None
    streams = [_chunks(seed=i, fault=False) for i in range(2)]
    calls: list[tuple[str, float]] = []
    overfull: list[tuple[bool, float]] = []

    def poll(timeout: float) -> None:
        calls.append((threading.current_thread().name, timeout))
        if streams[0]:
            for r, chunks in zip(rig.runners, streams, strict=True):
                assert r.offer(chunks.pop(0))
        elif not overfull and all(r.queue.empty() for r in rig.runners):
            # Only once every chunk offered has been taken: a round may leave the last ones
            # queued when the poller is called again, and the swap below would drop them with
            # the old queue (10 windows instead of 11, once in a CI run).
            r = rig.runners[0]
            r.queue = __import__("queue").Queue(maxsize=1)
            r.put_timeout_s = 5.0
            extra = _chunks(seed=9, fault=False)
            r.queue.put_nowait(extra[0])
            t0 = time.monotonic()
            overfull.append((r.offer(extra[1]), time.monotonic() - t0))
        else:
            time.sleep(min(timeout, 0.01))

    pool.drive(poll)
    for r in rig.runners:
        r.start()
    try:
        deadline = time.monotonic() + 20
        while not overfull and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.stats.windows for r in rig.runners] == [11, 11]
        assert {name for name, _ in calls} == {"pdm-machines"}
        assert any(t == 0.0 for _, t in calls) and any(t > 0.0 for _, t in calls)
        ((accepted, waited),) = overfull
        assert not accepted and waited < 1.0
        assert rig.runners[0].stats.samples_dropped > 0
    finally:
        for r in rig.runners:
            r.stop(timeout=5)
        rig.close()


def test_the_pool_is_idle_only_while_it_waits_for_work(tmp_path: Path) -> None:
    """``RunnerPool.idle`` (when the history writer may bind its statements) is set while
    the pool's thread waits for the network, and never while it processes windows."""
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"] * 2, pool=True)
    pool = rig.pool
    assert pool is not None
    streams = [_chunks(seed=i, fault=False) for i in range(2)]
    idle_while_polling: list[bool] = []
    idle_while_processing: list[bool] = []

    def poll(timeout: float) -> None:
        if timeout > 0:
            idle_while_polling.append(pool.idle.is_set())
        if streams[0]:
            for r, chunks in zip(rig.runners, streams, strict=True):
                assert r.offer(chunks.pop(0))
        else:
            time.sleep(min(timeout, 0.01))

    for r in rig.runners:
        real = r._window

        def spy(wf: Any, *args: Any, real: Any = real) -> None:
            idle_while_processing.append(pool.idle.is_set())
            real(wf, *args)

        r._window = spy  # type: ignore[method-assign]
    pool.drive(poll)
    for r in rig.runners:
        r.start()
    try:
        deadline = time.monotonic() + 20
        while sum(r.stats.windows for r in rig.runners) < 22 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(idle_while_processing) == 22 and not any(idle_while_processing)
        assert idle_while_polling and all(idle_while_polling)
        deadline = time.monotonic() + 5
        while not pool.idle.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.idle.is_set()  # nothing left to do: waiting
    finally:
        for r in rig.runners:
            r.stop(timeout=5)
        rig.close()


def test_a_driven_pool_stops_reading_while_a_queue_is_congested(tmp_path: Path) -> None:
    """A sender faster than real time (``pdm-edge send`` without ``--speed``) through a
    network input the pool polls: a queue half full stops the polling until it is down to a
    quarter, so nothing is dropped and the queue stays bounded (over TCP, the sender waits)."""
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"], pool=True)
    pool = rig.pool
    assert pool is not None
    (r,) = rig.runners
    r.queue = __import__("queue").Queue(maxsize=8)
    import dataclasses

    pieces = [c for seed in range(4) for c in _chunks(seed=seed, fault=False)]
    t0 = pieces[0].t0  # one continuous stream, four seconds of it
    chunks = [dataclasses.replace(c, t0=t0 + k * CHUNK / FS) for k, c in enumerate(pieces)]
    seen_at_poll: list[int] = []

    def poll(timeout: float) -> None:
        seen_at_poll.append(r.queue.qsize())
        for _ in range(4):  # a read's worth each time: more than a round takes
            if chunks:
                assert r.offer(chunks.pop(0))

    pool.drive(poll)
    pool.max_turns = 2  # rounds of two chunks: the reading outpaces the processing
    r.start()
    try:
        deadline = time.monotonic() + 30
        while (chunks or not r.queue.empty()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not chunks and r.stats.samples_dropped == 0 and not r.backlog_fault
        assert max(seen_at_poll) <= 4 + 2  # never read while congested (half of 8 = 4)
        assert r.stats.windows >= 40
    finally:
        r.stop(timeout=5)
        rig.close()


def test_a_round_spools_its_machines_critical_records_in_one_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each window of a round that has a state change, relay result or event to keep: one
    fsynced spool write for the round, after its last window, not one per machine."""
    from pdm.history.records import Event

    real_after = MachineRunner._after_cut

    def after(self: MachineRunner, cut: Any) -> None:
        real_after(self, cut)
        for wf in cut.features or []:
            self.writer.submit(Event(self.machine, wf.window.index, "stream_gap", "info", "x"))

    monkeypatch.setattr(MachineRunner, "_after_cut", after)
    rig = _Rig(tmp_path, ['"auto"'] * 4, pool=True)
    pushes: list[int] = []
    real_push = rig.writer.spool.push

    def counting(records: Any) -> int:
        pushes.append(len(records))
        return real_push(records)

    monkeypatch.setattr(rig.writer.spool, "push", counting)
    streams = [_chunks(seed=i, fault=False) for i in range(4)]
    try:
        assert rig.pool is not None
        rig.pool.max_windows = 4
        for k in range(7):  # windows complete at chunks 4 and 6 (4096, then every 2048)
            for r, chunks in zip(rig.runners, streams, strict=True):
                assert r.offer(chunks[k])
        rounds = 0
        while not rig.pool.ready.empty():
            rig.pool._round(rig.pool.ready.get())
            rounds += 1
        windows = sum(r.stats.windows for r in rig.runners)
    finally:
        rig.close()
    assert windows == 8  # two windows a machine after seven chunks
    events = [n for n in pushes if n]
    assert sum(events) >= 8 and len(events) < 8, (pushes, rounds)


class _Later:
    """The clock ``shift`` seconds on (a stand-in for the runner module's ``time``)."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def time(self) -> float:
        return time.time() + self.shift

    def time_ns(self) -> int:
        return time.time_ns() + round(self.shift * 1e9)

    def monotonic(self) -> float:
        return time.monotonic() + self.shift

    def perf_counter(self) -> float:
        return time.perf_counter()


def test_a_sensor_back_from_a_silence_is_not_processing_behind_real_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the soak (docs/soak.md): a sensor silent for longer than max_lag_s sends
    again; its first chunks complete no window yet, so the newest window was 12 s old and
    the backlog policy took that for lag — appliance_fault, relay dropped for another
    max_lag_s. The lag of a live chunk is how long it waited for its decision."""
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"], pool=False)
    (r,) = rig.runners
    try:
        for c in _chunks(seed=1, fault=False):  # one fresh second: windows decided
            r._process(c)
        assert r.stats.windows > 0 and not r.backlog_fault
        later = _Later(12.0)  # ... then 12 s of silence (max_lag_s is 10)
        monkeypatch.setattr(runner_mod, "time", later)
        fresh = _chunks(seed=2, fault=False)[0]  # one chunk: no window yet
        import dataclasses

        back = dataclasses.replace(fresh, t0=later.time() - CHUNK / FS, received=later.monotonic())
        r._process(back)
        assert not r.backlog_fault and r.stats.samples_dropped == 0
        assert r.stats.lag_s > 10  # the newest window is that old, and says so
        # A chunk that really waited 11 s in the queue is behind real time.
        late = dataclasses.replace(back, t0=back.t0 + CHUNK / FS, received=later.monotonic() - 11)
        r._process(late)
        assert r.backlog_fault
    finally:
        monkeypatch.undo()
        rig.close()


def test_a_shedding_pool_decides_fewer_windows_but_every_sample(tmp_path: Path) -> None:
    """Issue 17, levels 4-6 (pdm/service/shedding.py): a machine decides one window in two
    at 50 % overlap whatever the level asks beyond that — the decided windows stay
    contiguous, so every sample passes the protection — and counts what it skipped. Levels
    1 and 3 leave spectra and most feature rows out of history, never the windows' decisions."""
    from pdm.history.records import FeatureRows, Spectrum

    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"], pool=True)
    submitted: list[Any] = []
    real_submit = rig.writer.submit

    def spy(*recs: Any, **kw: Any) -> None:
        submitted.extend(recs)
        real_submit(*recs, **kw)

    rig.writer.submit = spy  # type: ignore[method-assign]
    try:
        assert rig.pool is not None
        (r,) = rig.runners
        rig.pool.shedder.force(6, time.monotonic())  # three in four asked: one in two possible
        for c in _chunks(seed=3, fault=False):
            assert r.offer(c)
            while not rig.pool.ready.empty():
                rig.pool._round(rig.pool.ready.get())
        decided = [i for m, i, _ in rig.seen]
        stats = dict(r.stats.shed)
    finally:
        rig.close()
    # 11 windows of hop 2048 in the second (see above); never two skipped in a row (two
    # hops are one window: contiguous), the first window of the stream decided
    assert decided == [0, 1, 3, 5, 7, 9]
    assert all(b - a <= 2 for a, b in itertools.pairwise(decided))
    assert stats["windows"] == 5 and r.stats.windows == 6
    # level 6 sheds spectra and history detail too: one spectra set due, counted not stored;
    # feature rows of one window a second (the first), the others counted
    assert not any(isinstance(x, Spectrum) for x in submitted)
    assert stats["spectra"] == 1
    rows = [x for x in submitted if isinstance(x, FeatureRows)]
    assert len(rows) == 1 and stats["history_rows"] == 5


def test_a_pool_back_at_level_0_stores_the_spectra_it_owed(tmp_path: Path) -> None:
    from pdm.history.records import Spectrum

    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"], pool=True)
    submitted: list[Any] = []
    real_submit = rig.writer.submit
    rig.writer.submit = lambda *recs, **kw: (submitted.extend(recs), real_submit(*recs, **kw))  # type: ignore[method-assign]
    try:
        assert rig.pool is not None
        (r,) = rig.runners
        chunks = _chunks(seed=4, fault=False)
        rig.pool.shedder.force(1, time.monotonic())
        for c in chunks[:12]:
            assert r.offer(c)
            rig.pool._round(rig.pool.ready.get())
        assert r.stats.windows > 0 and not any(isinstance(x, Spectrum) for x in submitted)
        rig.pool.shedder.force(0, time.monotonic())
        for c in chunks[12:]:
            assert r.offer(c)
            rig.pool._round(rig.pool.ready.get())
    finally:
        rig.close()
    assert r.stats.shed["spectra"] == 1
    assert any(isinstance(x, Spectrum) for x in submitted)  # stored at the next window


def test_parked_machines_are_windowed_not_decided_and_their_relays_dropped(
    tmp_path: Path,
) -> None:
    """Level 7: the last configured machines in ok are parked first, given back last first."""
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"] * 3, pool=True)
    try:
        assert rig.pool is not None
        m0, m1, m2 = rig.runners
        rig.pool._park(rig.runners, 2)
        assert [r.machine for r in rig.pool.parked] == ["m2", "m1"]
        assert m1.engine.relay.read_back() is False and m2.engine.relay.read_back() is False
        assert m0.engine.relay.read_back() is True
        streams = [_chunks(seed=i, fault=False) for i in range(3)]
        for k in range(len(streams[0])):
            for r, chunks in zip(rig.runners, streams, strict=True):
                assert r.offer(chunks[k])
            while not rig.pool.ready.empty():
                rig.pool._round(rig.pool.ready.get())
        assert (m0.stats.windows, m1.stats.windows, m2.stats.windows) == (11, 0, 0)
        assert m1.stats.shed["windows"] == 11
        rig.pool._park(rig.runners, 1)  # one step back: the last parked first
        assert [r.machine for r in rig.pool.parked] == ["m2"] and not m1.is_parked
        assert m1.engine.relay.read_back() is True  # energised again
    finally:
        rig.close()


def test_a_flood_of_refused_chunks_is_one_line_and_one_event_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender of one-sample frames faster than the machine's queue drains: each refused
    chunk was an ERROR line and a ``backlog_dropped`` event in history (7,903 of each in
    20 s from one connection). Now one of each a minute per cause; every sample is still
    counted in ``samples_dropped``."""
    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"], pool=False)
    r = rig.runners[0]
    r.put_timeout_s = 0.0
    submitted: list[Any] = []
    real_submit = rig.writer.submit

    def spy(*recs: Any) -> None:
        submitted.extend(recs)
        real_submit(*recs)

    r.writer.submit = spy  # type: ignore[method-assign]
    one = Chunk(np.zeros((1, 2), np.float32), FS, time.time(), ("x_g", "y_g"))
    try:
        with caplog.at_level("ERROR", logger="pdm.service"):
            # a refusal discards the backlog too: the queue fills again, and is refused again
            refused = sum(not r.offer(one) for _ in range(20 * (r.queue.maxsize + 1)))
        assert refused == 20
        assert r.stats.samples_dropped == 20 * (r.queue.maxsize + 1)
        lines = [rec for rec in caplog.records if "backlog discarded" in rec.getMessage()]
        events = [e for e in submitted if getattr(e, "type", "") == "backlog_dropped"]
        assert len(lines) == 1 and len(events) == 1, (len(lines), len(events))
    finally:
        rig.close()


def test_decision_latency_from_the_sensor_clock_includes_time_before_arrival(
    tmp_path: Path,
) -> None:
    """Issue 22: the decision latency from arrival misses the time a frame spent before the
    service read it (the DAQ's sending, the socket buffer where backpressure parks it). The
    second figure starts at the chunk's last sample on the sensor's clock (t0 + n/fs)."""
    url = parse_store_url(f"sqlite:///{tmp_path}/history.db")
    writer = HistoryWriter(lambda: open_store(url), Spool(tmp_path / "spool.db"), label="t")
    store = AlarmStore(tmp_path / "alarms.db")
    f = tmp_path / "m0.toml"
    f.write_text(_pipeline_text(0, "[2000.0, 6000.0]"))
    got: list[tuple[float, float | None]] = []
    r = MachineRunner(
        load_pipeline(f), FS, writer=writer, alarm_store=store, data_dir=tmp_path,
        actions="live", on_decision=lambda s, from_sensor: got.append((s, from_sensor)),
    )  # fmt: skip
    parked = 0.5  # s between the last sample's acquisition and the service reading it
    try:
        chunks = _chunks(seed=3, fault=False)
        shift = time.time() - (chunks[0].t0 + CHUNK / FS)  # the first one ends now
        for c in chunks:
            c = dataclasses.replace(c, t0=c.t0 + shift)
            # Read `parked` s after its last sample was acquired (real time, paced).
            time.sleep(max(0.0, c.t0 + CHUNK / FS + parked - time.time()))
            r._process(dataclasses.replace(c, received=time.monotonic()))
    finally:
        r.engine.close(timeout=5)
        writer.close()
        store.close()
    assert len(got) == r.stats.windows > 5
    for since_arrival, since_sensor in got:
        assert since_sensor is not None
        assert since_arrival < 0.2  # processed at once after it was read
        assert since_sensor >= parked + since_arrival - 0.01  # ...but it waited before that
        assert since_sensor < parked + 0.3


def test_a_machine_that_may_trip_is_decided_before_the_machines_ahead_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: with every DAQ sampling in step all windows arrive at once, and a trip waited
    for the machines read before it. A machine whose recent windows were over a threshold
    (what a k-of-n debounce counts) takes its turn first — one chunk of it at a time — and
    its window is decided before the windows that arrived ahead of it."""
    from pdm.alarms.state import MachineAlarm

    rig = _Rig(tmp_path, ["[2000.0, 6000.0]"] * 3, pool=True)
    try:
        pool = rig.pool
        assert pool is not None
        m0, m1, m2 = rig.runners
        streams = [_chunks(seed=i, fault=False) for i in range(3)]
        for k in range(4):  # the first window of each machine: its alarm state exists
            for r, chunks in zip(rig.runners, streams, strict=True):
                assert r.offer(chunks[k])
            while not pool.ready.empty():
                pool._round(pool.ready.get())
        assert not any(r.urgent for r in rig.runners)
        # m2's last two windows were over the danger threshold; it is in danger, not tripped.
        m2.engine.state = MachineAlarm("danger", recent=(0, 2, 2))
        assert m2.urgent and not m0.urgent
        # The turns: m2 ahead of the machines that arrived first, by one chunk only.
        for r, k in ((m0, 4), (m1, 4), (m2, 4), (m2, 5), (m0, 5), (m1, 5)):
            assert r.offer(streams[rig.runners.index(r)][k])
        first = len(rig.seen)
        turns = []
        while not pool.ready.empty():
            turns.append(pool.ready.get_nowait())
        assert [r.machine for r in turns] == ["m2", "m0", "m1", "m2", "m0", "m1"]
        for r in turns:
            pool.ready.put(r)
        extracted: list[list[str]] = []
        real_extract = runner_mod._extract_cuts

        def spy(cuts: Any) -> None:  # the real function, its machines noted
            extracted.append([c.runner.machine for c in cuts])
            real_extract(cuts)

        monkeypatch.setattr(runner_mod, "_extract_cuts", spy)
        while not pool.ready.empty():
            pool._round(pool.ready.get())
        # The window chunk 5 completes (samples 4096..6143: window 1) is m2's first decided,
        # in a round of its own: no other machine's extraction before its decision.
        assert [m for m, _i, _v in rig.seen[first:]] == ["m2", "m0", "m1"]
        assert extracted == [["m2"], ["m0", "m1"]]
        # Tripped, or parked: nothing left for a turn ahead to win.
        m2.engine.state = MachineAlarm("trip", recent=(2, 2, 2))
        assert not m2.urgent
    finally:
        rig.close()


def test_a_round_decides_the_machines_that_must_judge_after_the_others() -> None:
    """A machine whose scoring will judge a routine diagnosis for the named-defect question
    (its own periodic work, 1-3 ms) decides after the round's other machines, each part in
    its turns' order; a cut that failed, has no scorer or swaps its model keeps its place.
    Stand-ins carry only what the ordering reads (the scorer's own answer is tested against
    what scoring then does in tests/scoring/test_named_bearing_defects.py)."""
    from types import SimpleNamespace

    def cut(name: str, judges: bool, **kw: Any) -> Any:
        scorer = SimpleNamespace(asks_judgement=lambda windows: judges)
        runner = SimpleNamespace(
            machine=name, scores=SimpleNamespace(scorer=scorer), _next_model=kw.get("swap")
        )
        return SimpleNamespace(runner=runner, features=[object()], error=kw.get("error"))

    cuts = [
        cut("a", True), cut("b", False), cut("c", True), cut("d", False),
        cut("e", True, error=ValueError("x")), cut("f", True, swap=object()),
    ]  # fmt: skip
    order = runner_mod._judging_last(cuts)
    assert [c.runner.machine for c in order] == ["b", "d", "e", "f", "a", "c"]
    calm = [cut("a", False), cut("b", False)]
    assert runner_mod._judging_last(calm) is calm
