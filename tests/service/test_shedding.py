"""The shedding policy as tables (pdm/service/shedding.py): which windows a machine decides,
and when a worker's level moves — pure steps, no threads, no clock."""

from __future__ import annotations

import doctest
import itertools

import pytest

import pdm.service.shedding as shedding
from pdm.service.shedding import (
    LEVELS,
    LoadSample,
    Shedder,
    ShedPolicy,
    ShedState,
    WindowGate,
    gate,
    max_skipped_run,
    shed_step,
)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(shedding).failed == 0


def test_the_levels_shed_in_the_documented_order() -> None:
    names = [s.name for s in LEVELS]
    assert names == [
        "normal",
        "spectra",
        "explanations",
        "history_detail",
        "windows_1_in_4",
        "windows_1_in_2",
        "windows_3_in_4",
        "machines_parked",
    ]
    # each level keeps shedding what the levels below shed
    for lo, hi in itertools.pairwise(LEVELS):
        assert hi.spectra <= lo.spectra and hi.explain <= lo.explain
        assert hi.rows_every_s >= lo.rows_every_s and hi.skip >= lo.skip
    assert [s.skip for s in LEVELS] == [0, 0, 0, 0, 0.25, 0.5, 0.75, 0.75]


@pytest.mark.parametrize(
    ("window", "hop", "run"),
    [
        (16384, 8192, 1),  # 50 % overlap: every second window may go
        (8192, 2048, 3),  # 75 %: three in four
        (8192, 8192, 0),  # no overlap: none, ever
        (10, 4, 1),  # 60 %: two would leave a gap (3 · 4 > 10)
        (10, 3, 2),
        (10, 0, 0),
    ],
)
def test_windows_skipped_in_a_row_keep_the_decided_ones_contiguous(
    window: int, hop: int, run: int
) -> None:
    assert max_skipped_run(window, hop) == run
    if hop:
        assert (run + 1) * hop <= window < (run + 2) * hop or run == 0


def _pattern(skip: float, max_run: int, n: int = 12) -> str:
    acc, run, out = 0.0, 0, []
    for _ in range(n):
        keep, acc, run = gate(acc, run, skip, max_run)
        out.append("D" if keep else ".")
    return "".join(out)


@pytest.mark.parametrize(
    ("skip", "max_run", "pattern"),
    [
        (0.0, 3, "DDDDDDDDDDDD"),
        (0.25, 3, "DDD.DDD.DDD."),
        (0.5, 3, "D.D.D.D.D.D."),
        (0.75, 3, "D...D...D..."),
        (0.75, 1, "D.D.D.D.D.D."),  # 50 % overlap: coverage caps the shedding at 1 in 2
        (0.5, 0, "DDDDDDDDDDDD"),  # no overlap: nothing shed
        (0.25, 1, "DDD.DDD.DDD."),
    ],
)
def test_which_windows_a_machine_decides(skip: float, max_run: int, pattern: str) -> None:
    got = _pattern(skip, max_run)
    assert got == pattern
    assert ".." * (max_run // 2 + 1) not in got or max_run >= 2  # never past the coverage
    assert "." * (max_run + 1) not in got


def test_a_new_segment_decides_its_first_window() -> None:
    g = WindowGate(max_run=1)
    got = [g.decide(0.5, seg) for seg in (0, 0, 0, 0, 1, 1, 1)]
    # (the first window of segment 1 follows a gap: decided, whatever the credit)
    assert got == [True, True, False, True, True, True, False]


# -- the level: a table of samples and the levels they lead to ---------------------------------

P = ShedPolicy()  # up: wait > 0.5 s and busy >= 90 % for 2 samples; down: < 0.2 s for 10 s


def _states(
    rows: list[tuple[float, float, int]], state: ShedState | None = None, machines: int = 1
) -> list[ShedState]:
    """Samples every 0.5 s of (delay_s, busy share, windows cut) → the state after each."""
    st = state or ShedState()
    out = []
    for i, (delay, busy, windows) in enumerate(rows):
        st = shed_step(st, LoadSample(0.5 * (i + 1), 0.5, 0.5 * busy, windows, delay, machines), P)
        out.append(st)
    return out


def _run(rows: list[tuple[float, float, int]], state: ShedState | None = None) -> list[int]:
    return [st.level for st in _states(rows, state)]


def test_light_load_sheds_nothing() -> None:
    assert _run([(0.01, 0.5, 100)] * 20) == [0] * 20


def test_a_hiccup_of_the_host_sheds_nothing() -> None:
    # one slow sample (a 0.8-s stall) is not overload: it takes two in a row
    assert _run([(0.01, 0.8, 100), (0.8, 1.0, 100), (0.05, 0.8, 100)] * 4) == [0] * 12


def test_waiting_data_on_an_idle_thread_is_not_overload() -> None:
    # a wait with the thread idle is not the processing's doing (e.g. a stopped source)
    assert _run([(2.0, 0.3, 10)] * 6) == [0] * 6


def test_overload_climbs_one_level_a_second_while_the_wait_grows() -> None:
    rows = [(0.6 + 0.09 * i, 1.0, 150) for i in range(16)]  # below the urgent 2 s
    assert _run(rows) == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6, 6, 6]


def test_a_wait_past_a_fifth_of_the_deadline_climbs_a_level_every_sample() -> None:
    """A sudden 3x overload: one level a second would let the wait reach ~10 s, the
    --max-lag-s at which every machine's relay drops, before the level that fits."""
    rows = [(0.6 + 0.6 * i, 1.0, 150) for i in range(9)]
    assert _run(rows) == [0, 1, 1, 2, 3, 4, 5, 6, 6]  # urgent from the 4th sample (2.4 s)
    assert ShedPolicy.for_deadline(10.0).urgent_delay_s == 2.0
    assert ShedPolicy.for_deadline(30.0).urgent_delay_s == 6.0
    assert ShedPolicy.for_deadline(1.0).urgent_delay_s == P.up_delay_s
    # draining holds the level even when urgent: the wait is falling, the level is enough
    falling = [(4.0 - 0.2 * i, 1.0, 150) for i in range(6)]
    assert _run(falling, ShedState(level=3, last_delay=4.2)) == [3] * 6


def test_a_draining_backlog_holds_the_level() -> None:
    # up to level 4, then the wait falls by 0.2 s a sample: the level in force is enough
    climb = [(0.6 + 0.1 * i, 1.0, 150) for i in range(8)]
    drain = [(1.3 - 0.1 * i, 1.0, 150) for i in range(8)]
    assert _run(climb + drain)[-8:] == [4] * 8


def test_calm_steps_down_one_level_per_ten_seconds_when_the_level_below_fits() -> None:
    st = ShedState(level=2, cost=(1e-3, 1e-3, 1e-3, None, None, None, None))
    calm = [(0.05, 0.5, 250)] * 42  # busy 50 %, costs equal: the level below fits
    levels = _run(calm, st)
    assert levels[:20] == [2] * 20 and levels[20] == 1  # 10 s of calm: one down
    assert levels[21:41] == [1] * 20 and levels[41] == 0


def test_calm_does_not_step_down_when_the_level_below_would_not_fit() -> None:
    # at level 5 (every second window) the thread is busy 60 %; level 4 costs 1.6x a window
    st = ShedState(level=5, cost=(None, None, None, None, 1.6e-3, 1.0e-3, None))
    assert _run([(0.05, 0.6, 300)] * 40, st) == [5] * 40  # 0.6 x 1.6 = 0.96 > 0.8
    # ... and it does when the load has fallen enough (0.45 x 1.6 = 0.72)
    levels = _run([(0.05, 0.45, 225)] * 40, st)
    assert levels[19] == 5 and levels[20] == 4


def test_the_cost_per_window_is_learnt_at_each_level() -> None:
    st = ShedState(level=4)
    st = shed_step(st, LoadSample(0.5, 0.5, 0.4, 400, 0.01), P)
    assert st.cost[4] == pytest.approx(1e-3)
    st = shed_step(st, LoadSample(1.0, 0.5, 0.2, 100, 0.01), P)
    assert st.cost[4] == pytest.approx(1e-3 + 0.3 * (2e-3 - 1e-3))
    assert st.cost[:4] == (None,) * 4


def test_a_worker_of_one_machine_never_parks_it() -> None:
    st = ShedState(level=6)
    assert _run([(5.0 + i, 1.0, 100) for i in range(10)], st) == [6] * 10


def test_still_overloaded_at_level_6_machines_are_parked_five_percent_a_second() -> None:
    rows = [(2.1 + 0.1 * i, 1.0, 300) for i in range(10)]
    got = [(st.level, st.parked) for st in _states(rows, ShedState(level=6), machines=100)]
    assert got == [
        (6, 0), (7, 5), (7, 5), (7, 10), (7, 10), (7, 15), (7, 15), (7, 20), (7, 20), (7, 25)
    ]  # fmt: skip
    # below the urgent wait (2 s), or a wait that has not grown over a second: nobody parked
    low = [(0.6 + 0.1 * i, 1.0, 300) for i in range(10)]
    assert {st.parked for st in _states(low, ShedState(level=6), machines=100)} == {0}
    slow = [(3.0 - 0.03 * i, 1.0, 300) for i in range(10)]  # draining, slower than 0.05/0.5 s
    at6 = ShedState(level=6, last_delay=3.03, prev_delay=3.06)
    assert {st.parked for st in _states(slow, at6, machines=100)} == {0}
    # past the urgent wait too: a relay drops with each step, the wait must show it was not
    # enough (the levels below hurry, the parking does not)
    rows = [(3.0 + 0.3 * i, 1.0, 300) for i in range(4)]
    got = [(st.level, st.parked) for st in _states(rows, ShedState(level=6), machines=100)]
    assert got == [(6, 0), (7, 5), (7, 5), (7, 10)]


def test_one_machine_is_always_served() -> None:
    rows = [(3.0 + 0.3 * i, 1.0, 30) for i in range(12)]
    parked = [st.parked for st in _states(rows, ShedState(level=6), machines=3)]
    assert max(parked) == 2 and parked[-1] == 2


def test_parked_machines_come_back_a_step_per_ten_seconds_when_they_fit() -> None:
    st = ShedState(level=7, parked=10)
    # 90 of 100 active, busy 70 %: with 5 more, 0.7 x 95/90 = 0.74 < 0.8 → one step back
    out = _states([(0.05, 0.7, 300)] * 42, st, machines=100)
    assert [s.parked for s in out[:20]] == [10] * 20 and out[20].parked == 5
    assert out[41].level == 6 and out[41].parked == 0  # the last step: no machine parked
    # busy 78 %: 0.78 x 95/90 = 0.82 — they stay parked
    assert {s.parked for s in _states([(0.05, 0.78, 300)] * 42, st, machines=100)} == {10}


def test_the_controller_reports_each_change_with_its_reason() -> None:
    changes = []
    sh = Shedder(on_change=changes.append)
    for i in range(5):
        sh.update(LoadSample(0.5 * (i + 1), 0.5, 0.5, 100, 0.6 + 0.3 * i))
    assert [(c.old, c.new) for c in changes] == [(0, 1), (1, 2)]
    assert changes[0].message.startswith("shedding on, level 1 spectra (up from 0)")
    assert "oldest data waiting 0.90 s, processing busy 100%" in changes[0].message
    st = sh.status()
    assert st["level"] == 2 and st["name"] == "explanations"
    assert st["times_entered"] == {"spectra": 1, "explanations": 1}
    assert sh.rules is LEVELS[2]
    sh.force(0, 10.0)
    assert sh.rules is LEVELS[0]
    off = shedding.ShedChange(3, 0, 0.05, 0.4).message
    assert off.startswith("shedding off (level 0, was 3 history_detail)")


def test_the_watchdog_tells_a_stuck_loop_from_a_busy_one() -> None:
    import threading
    import time

    import pdm.service.watchdog as watchdog

    assert doctest.testmod(watchdog).failed == 0
    me = threading.get_native_id()
    before = watchdog.thread_cpu_s(me)
    # 0.2 s of this thread's CPU (not of the wall clock: the machine is shared)
    end, give_up = time.thread_time() + 0.2, time.monotonic() + 30
    while time.thread_time() < end and time.monotonic() < give_up:
        sum(range(1000))
    after = watchdog.thread_cpu_s(me)
    assert before is not None and after is not None and after - before > 0.05
    assert watchdog.thread_cpu_s(None) is None and watchdog.thread_cpu_s(2**30) is None
