"""The service benchmark's pieces that need no service: the DAQ's frame CRC and the fleet.

The whole benchmark runs in tests/test_cli.py::test_bench_json_quick (keys and sanity,
never timing); these check what it is built on.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from pdm.tools.bench_run import (
    FAULT_EVERY,
    FS,
    LATENCY_TRIES,
    LOOP_S,
    SHAPES,
    SPEEDS_RPM,
    fleet,
    frame_crc_maker,
    machine_signal,
    machines_for,
    search_in_time,
    simulated_rpm,
)


def test_the_precomputed_frame_crc_is_zlibs_crc_of_the_whole_frame() -> None:
    rng = np.random.default_rng(0)
    for tail_len in (1, 61440, 30720):
        tail = rng.bytes(tail_len)
        crc = frame_crc_maker(tail_len, (~zlib.crc32(tail, 0xFFFFFFFF)) & 0xFFFFFFFF)
        for prefix_len in (0, 1, 37, 120):
            prefix = rng.bytes(prefix_len)
            assert crc(prefix) == zlib.crc32(prefix + tail), (tail_len, prefix_len)


def test_the_fleet_mixes_shapes_speeds_and_faults() -> None:
    ms = fleet(64)
    assert [m.index for m in ms] == list(range(64))
    assert {m.shape.name for m in ms} == {s.name for s in SHAPES}
    assert {m.rpm for m in ms} == set(SPEEDS_RPM)
    # Every (shape, speed) pair is there: nothing batches across the whole fleet.
    assert len({(m.shape.name, m.rpm) for m in ms}) == len(SHAPES) * len(SPEEDS_RPM)
    faulty = [m for m in ms if m.faulty]
    assert len(faulty) == len(range(3, 64, FAULT_EVERY))
    assert {m.shape.name for m in faulty} == {s.name for s in SHAPES}  # faults on both shapes
    assert fleet(10) == ms[:10]  # a smaller load is a prefix of a larger one


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
@pytest.mark.parametrize("rpm", SPEEDS_RPM)
def test_a_daqs_loop_has_no_seam(shape, rpm: float) -> None:
    """The DAQs send their signal in a loop of LOOP_S: the 1× tone must come round in phase,
    or its jump at the seam is an impulse healthy machines alert on once a loop. The tone's
    phasor over the loop's last second, its times taken as just before the loop starts again,
    equals the one over its first second (a third of a revolution left over read 1.73)."""
    sim = simulated_rpm(shape, rpm)
    searched = rpm * (0.99 if shape.speed_searched else 1.0)
    assert abs(sim - searched) <= 60.0 / LOOP_S / 2 + 1e-9
    x = machine_signal(shape, rpm, False, LOOP_S, seed=2)[:, 0].astype(np.float64)
    assert len(x) == round(LOOP_S * FS)
    n = round(FS)
    t = np.arange(n) / FS
    w = 2 * np.pi * sim / 60.0
    first = x[:n] @ np.exp(-1j * w * t)
    last = x[-n:] @ np.exp(-1j * w * (t - 1.0))  # the second that precedes the loop's start
    assert abs(last - first) < 0.05 * abs(first)


def test_machines_for_a_sensor_count_never_exceeds_it() -> None:
    for sensors in (0, 1, 2, 3, 10, 91, 500):
        m = machines_for(sensors)
        got = sum(x.shape.sensors for x in fleet(m))
        assert m >= 1
        assert got <= max(sensors, fleet(1)[0].shape.sensors)
        if m > 1 or sensors >= 2:
            assert got + fleet(m + 1)[-1].shape.sensors > sensors  # the most that fit


@pytest.mark.parametrize(
    ("held", "limit", "found"),
    [
        # The tail meets the target below 300 of 510 sensors: found within 3 % of 510.
        (510.0, 300.0, (300.0 - 0.03 * 510, 300.0)),
        # Just under the load held: the first step down meets it; bisection climbs back.
        (500.0, 490.0, (490.0 - 0.03 * 500, 490.0)),
        # Far under it: the steps down reach it, a 5 % step would not have in 8 tries.
        (500.0, 150.0, (150.0 - 0.03 * 500 - 1e-9, 150.0)),
    ],
)
def test_the_in_time_search_finds_the_highest_load_that_meets_the_target(
    held: float, limit: float, found: tuple[float, float]
) -> None:
    tried: list[float] = []

    def attempt(sensors: float) -> dict[str, object]:
        tried.append(sensors)
        return {"sensors_sent": sensors, "ok": sensors <= limit}

    best = search_in_time(held, attempt, lambda rt: bool(rt["ok"]))
    assert best is not None and found[0] <= best["sensors_sent"] <= found[1], (best, tried)
    assert len(tried) <= LATENCY_TRIES and all(t < held for t in tried)


def test_the_in_time_search_reports_none_when_no_load_meets_the_target() -> None:
    tried: list[float] = []
    best = search_in_time(500.0, lambda s: tried.append(s) or {"sensors_sent": s}, lambda rt: False)
    assert best is None and len(tried) == LATENCY_TRIES
