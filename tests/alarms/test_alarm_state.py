"""The alarm state machine as tables: window inputs in, states and transitions out."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pdm.alarms.state import (
    AlarmRules,
    FeatureLimit,
    MachineAlarm,
    WindowResult,
    acknowledge,
    relay_permissive,
    step,
)

RULES = AlarmRules(on_windows=3, of_windows=5, off_windows=4, hysteresis=0.8, score_trip=10.0)
ALERT, DANGER = 1.0, 1.5
OR = "bearing_outer_race"  # a named fault: corroborates a score trip at confidence 1


def win(
    i: int,
    score: float | None = 0.1,
    vel: float = 1.0,
    health: str = "",
    env: float = 0.0,
    diag: str | None = None,
    conf: float = 1.0,
    bearing_defect: bool = False,
) -> WindowResult:
    """Window i: score, velocity of channel x (mm/s, group 2 rigid: C from 2.8, D from 4.5),
    and the window's diagnosis with its confidence."""
    return WindowResult(
        t_ns=i * 80_000_000,
        window=i,
        score=score,
        alert=ALERT,
        danger=DANGER,
        features={
            "x": {"velocity_rms_mm_s": vel, "env_bpfo_g": env},
            "y": {"velocity_rms_mm_s": 0.5},
        },
        sensor_of={"x": "de", "y": "nde"},
        health={"de": (health,)} if health else {},
        health_detail={"de": f"{health}: test"} if health else {},
        diagnosis=diag,
        diagnosis_confidence=conf if diag else 0.0,
        bearing_defect=bearing_defect,
    )


def run(inputs: list[dict], rules: AlarmRules = RULES, state: MachineAlarm | None = None):
    """States after each window, and every transition as (window, sensor, old, new)."""
    state = state or MachineAlarm()
    states, trans = [], []
    for i, kw in enumerate(inputs):
        state, out = step(state, win(i, **kw), rules)
        states.append(state.state)
        trans += [(t.window, t.sensor, t.old, t.new) for t in out]
    return state, states, trans


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # a single-window spike, even a huge one, raises nothing
        ([0.1, 50.0, 0.1, 0.1, 0.1, 0.1], ["ok"] * 6),
        # two of five: still nothing
        ([2.0, 0.1, 2.0, 0.1, 0.1, 0.1], ["ok"] * 6),
        # three of five at alert: alert on the third
        ([1.2, 0.1, 1.2, 1.2, 0.1], ["ok", "ok", "ok", "alert", "alert"]),
        # three of five at danger: straight to danger
        ([2.0, 2.0, 2.0], ["ok", "ok", "danger"]),
        # growing (and diagnosed): alert, then danger, then trip, each after its on-delay
        (
            [1.1, 1.1, 1.1, 2.0, 2.0, 2.0, 12, 12, 12],
            ["ok", "ok", "alert", "alert", "alert", "danger", "danger", "danger", "trip"],
        ),
    ],
)
def test_on_delay_is_n_of_the_last_m_windows(scores: list[float], expected: list[str]) -> None:
    _, states, _ = run([{"score": s, "diag": OR} for s in scores])
    assert states == expected


def test_alert_clears_after_off_windows_below_the_hysteresis_level() -> None:
    # 0.9 is below alert (1.0) but above 0.8 = hysteresis × alert: not clear.
    seq = [1.2] * 3 + [0.9] * 6 + [0.5] * 4
    _, states, trans = run([{"score": s} for s in seq])
    assert states[:9] == ["ok", "ok", "alert"] + ["alert"] * 6
    assert states[9:] == ["alert", "alert", "alert", "ok"]  # the 4th clear window
    assert trans == [(2, "", "ok", "alert"), (12, "", "alert", "ok")]


def test_danger_latches_until_acknowledged_and_clear_in_either_order() -> None:
    state, states, _ = run([{"score": 2.0}] * 3 + [{"score": 0.1}] * 10)
    assert states[-1] == "danger"  # clear for long, but not acknowledged
    state, trs, msg = acknowledge(state, "ana", 99, "bearing replaced", RULES)
    assert state.state == "ok" and [(t.old, t.new) for t in trs] == [("danger", "ok")]
    assert "ana" in trs[0].reason and "bearing replaced" in trs[0].reason
    # Acknowledged first, clear later: it ends when clear.
    state, _, _ = run([{"score": 2.0}] * 3)
    state, trs, msg = acknowledge(state, "ben", 5, "", RULES)
    assert trs == [] and state.state == "danger" and state.ack is not None and "ends when" in msg
    state, states, trans = run([{"score": 0.1}] * 4, state=state)
    assert states == ["danger", "danger", "danger", "ok"]
    assert "acknowledged by ben" in state.reason or trans[-1][3] == "ok"


def test_a_new_rise_needs_a_new_acknowledgement() -> None:
    state, _, _ = run([{"score": 2.0}] * 3)
    state, _, _ = acknowledge(state, "ana", 1, "", RULES)
    state, states, _ = run([{"score": 12.0, "diag": OR}] * 3 + [{"score": 0.1}] * 6, state=state)
    assert states[2] == "trip" and state.ack is None and states[-1] == "trip"


def test_latch_clears_to_alert_while_alert_evidence_remains() -> None:
    state, _, _ = run([{"score": 2.0}] * 3)
    state, _, _ = acknowledge(state, "ana", 1, "", RULES)
    _, states, trans = run([{"score": 1.0}] * 4, state=state)  # below danger·0.8, at alert
    assert states[-1] == "alert" and trans[-1][2:] == ("danger", "alert")


def test_trip_is_what_drops_the_relay() -> None:
    state, states, _ = run([{"score": 2.0}] * 3 + [{"score": 12.0, "diag": OR}] * 3)
    assert states[-1] == "trip" and not relay_permissive(state)
    assert relay_permissive(run([{"score": 2.0}] * 3)[0])


@pytest.mark.parametrize(
    ("vel", "expected"),
    [(2.0, "ok"), (3.0, "alert"), (5.0, "danger"), (4.5 * 1.25 + 0.01, "trip")],
)
def test_iso_zone_c_alerts_d_dangers_and_125_percent_of_cd_trips(vel: float, expected: str) -> None:
    _, states, _ = run([{"vel": vel, "score": None}] * 3)
    assert states[-1] == expected


def test_iso_zone_boundary_belongs_to_the_lower_zone() -> None:
    assert run([{"vel": 2.8, "score": None}] * 3)[1][-1] == "ok"  # B/C exactly: B


def test_feature_limits() -> None:
    rules = AlarmRules(
        on_windows=3,
        of_windows=5,
        off_windows=4,
        limits=(FeatureLimit("env_bpfo_g", alert=0.2, danger=0.5, trip=1.0, channel="x"),),
    )
    for env, expected in [(0.1, "ok"), (0.3, "alert"), (0.6, "danger"), (1.5, "trip")]:
        states = run([{"env": env, "score": None}] * 3, rules)[1]
        assert states[-1] == expected
    state, _, _ = run([{"env": 1.5, "score": None}] * 3, rules)
    assert "x.env_bpfo_g 1.5 ≥ trip limit 1" in state.reason


def test_a_faulty_sensor_raises_sensor_fault_and_never_trips() -> None:
    # A broken cable: the sensor flatlines, the score explodes and the zone reads D.
    seq = [{"score": 50.0, "vel": 9.0, "health": "flatline"}] * 8 + [{"score": 0.1}] * 6
    _, states, trans = run(seq)
    assert set(states) == {"ok"}
    assert trans == [(1, "de", "ok", "sensor_fault"), (12, "de", "sensor_fault", "ok")]


def test_healthy_sensors_still_alarm_while_another_is_faulty() -> None:
    rules = AlarmRules(on_windows=3, of_windows=5, off_windows=4)
    state = MachineAlarm()
    for i in range(3):
        w = win(i, score=50.0, health="clipping")
        w = dataclasses.replace(w, features={**w.features, "y": {"velocity_rms_mm_s": 5.0}})
        state, _ = step(state, w, rules)
    assert state.state == "danger" and "y velocity" in state.reason  # from nde, not the score


def test_state_survives_json() -> None:
    state, _, _ = run([{"score": 2.0}] * 3)
    state, _, _ = acknowledge(state, "ana", 7, "ok", RULES)
    back = MachineAlarm.from_json(json.loads(json.dumps(state.to_json())))
    assert back == state


def test_acknowledging_nothing_changes_nothing() -> None:
    state = MachineAlarm()
    assert acknowledge(state, "ana", 1, "", RULES)[1:] == (
        [],
        "nothing to acknowledge: the state is ok",
    )
    with pytest.raises(ValueError, match="name"):
        acknowledge(run([{"score": 2.0}] * 3)[0], " ", 1, "", RULES)


def test_a_stream_gap_is_a_sensor_fault_of_every_sensor_at_once() -> None:
    state, _ = step(MachineAlarm(), win(0), RULES)
    state, trs = step(
        state, dataclasses.replace(win(1), gap="gap: 1.0 s of samples missing"), RULES
    )
    assert [(t.sensor, t.new) for t in trs] == [("de", "sensor_fault"), ("nde", "sensor_fault")]
    assert trs[0].reason == "gap: 1.0 s of samples missing" and state.state == "ok"


def test_a_latch_that_clears_to_alert_does_not_flap() -> None:
    state, _, _ = run([{"score": 2.0}] * 3)
    state, _, _ = acknowledge(state, "ana", 1, "", RULES)
    # At alert level (below danger × hysteresis): danger → alert, then alert stays.
    _, states, trans = run([{"score": 1.0}] * 12, state=state)
    assert trans == [(3, "", "danger", "alert")] and set(states[4:]) == {"alert"}


def test_windows_that_cannot_be_judged_never_clear_an_alarm() -> None:
    state, _, _ = run([{"score": 1.2}] * 3)
    assert state.state == "alert"
    # Unscored windows (invalid data) and windows with a faulty sensor: not clear.
    _, states, _ = run(
        [{"score": None}] * 6 + [{"score": 0.1, "health": "flatline"}] * 6, state=state
    )
    assert set(states) == {"alert"}
    # …nor do they break a clear run that was under way: 2 clear + unknowns + 2 clear = 4.
    _, states, _ = run(
        [{"score": 0.1}] * 2 + [{"score": None}] * 3 + [{"score": 0.1}] * 2, state=state
    )
    assert states == ["alert"] * 6 + ["ok"]


def test_window_results_with_only_the_features_the_rules_read_step_the_same() -> None:
    """The engine builds its WindowResults with ``keep=features_read(rules)``: the states,
    transitions and reasons are those of the full feature dicts, window for window."""
    import numpy as np

    from pdm.alarms.state import features_read, window_result

    names = ("rms_g", "velocity_rms_mm_s", "kurtosis", "env_bpfo_g", "crest")
    rules = dataclasses.replace(
        RULES,
        limits=(
            FeatureLimit("env_bpfo_g", alert=0.5, danger=0.9),
            FeatureLimit("kurtosis", alert=6.0, channel="y"),
        ),
    )
    keep = features_read(rules)
    assert keep == {"velocity_rms_mm_s", "env_bpfo_g", "kurtosis"}
    rng = np.random.default_rng(5)
    full_state = kept_state = MachineAlarm()
    seen = set()
    for i in range(300):
        values = np.abs(rng.normal([0.2, 1.5, 3.0, 0.3, 3.0], [0.1, 1.5, 2.0, 0.3, 1.0], (2, 5)))
        args = (i * 80_000_000, i, float(rng.gamma(1.0, 0.5)), {"alert": 1.0})
        rest = (("x", "y"), names, values, {"x": "de", "y": "nde"})
        full = window_result(*args, *rest)
        kept = window_result(*args, *rest, keep=keep)
        assert set(kept.features["x"]) == keep and full.features["y"]["crest"] == values[1, 4]
        full_state, full_out = step(full_state, full, rules)
        kept_state, kept_out = step(kept_state, kept, rules)
        assert kept_state == full_state and kept_out == full_out
        seen.add(full_state.state)
    assert {"ok", "alert", "danger"} <= seen  # the comparison went through real transitions


# ------------------------------------------------------------------- what may trip


def test_by_default_the_anomaly_score_never_trips() -> None:
    rules = AlarmRules(on_windows=3, of_windows=5, off_windows=4)
    assert rules.score_trip is None
    seq = [{"score": 1e6, "diag": OR, "vel": 5.0, "env": 9.0}] * 6
    _, states, _ = run(seq, rules)
    assert states[-1] == "danger"  # zone D and the score: danger, latched; no trip
    # …while the physical limit still trips on its own
    assert run([{"vel": 5.7, "score": None}] * 3, rules)[1][-1] == "trip"


LIMITS = (FeatureLimit("env_bpfo_g", alert=0.2, danger=0.5, channel="x"),)


@pytest.mark.parametrize(
    ("window", "rules", "expected"),
    [
        # the score alone: danger at most
        ({"score": 12.0}, {}, "danger"),
        # a named fault, confident: trip
        ({"score": 12.0, "diag": OR}, {}, "trip"),
        ({"score": 12.0, "diag": "unbalance", "conf": 0.7}, {}, "trip"),
        # not confident enough, or no fault named: danger
        ({"score": 12.0, "diag": OR, "conf": 0.69}, {}, "danger"),
        ({"score": 12.0, "diag": "bearing_uncertain"}, {}, "danger"),
        ({"score": 12.0, "diag": "unknown"}, {}, "danger"),
        ({"score": 12.0, "diag": "bearing_outer_race_maybe"}, {}, "danger"),
        ({"score": 12.0, "diag": OR, "conf": float("nan")}, {}, "danger"),
        # ISO velocity above C/D (4.5 mm/s, zone D) corroborates; zone C does not
        ({"score": 12.0, "vel": 4.6}, {}, "trip"),
        ({"score": 12.0, "vel": 4.5}, {}, "danger"),
        # a feature limit at danger corroborates; at alert it does not
        ({"score": 12.0, "env": 0.6}, {"limits": LIMITS}, "trip"),
        ({"score": 12.0, "env": 0.3}, {"limits": LIMITS}, "danger"),
        # only the kinds the pipeline accepts count
        ({"score": 12.0, "vel": 4.6}, {"trip_requires": ("diagnosis",)}, "danger"),
        ({"score": 12.0, "diag": OR}, {"trip_requires": ("iso", "limit")}, "danger"),
        ({"score": 12.0, "diag": OR, "conf": 0.8}, {"trip_diagnosis_confidence": 0.9}, "danger"),
        # corroborated, but the score below score_trip: danger
        ({"score": 9.9, "diag": OR, "vel": 4.6}, {}, "danger"),
        # trip_requires = (): the pipeline lets the score trip alone
        ({"score": 12.0}, {"trip_requires": ()}, "trip"),
        # a faulty sensor: the score is not evidence at all
        ({"score": 12.0, "diag": OR, "health": "flatline"}, {}, "ok"),
    ],
)
def test_a_score_trip_needs_a_second_kind_of_evidence_in_the_same_window(
    window: dict, rules: dict, expected: str
) -> None:
    r = dataclasses.replace(RULES, **rules)
    assert run([window] * 3, r)[1][-1] == expected


def test_corroboration_in_other_windows_does_not_count() -> None:
    # 3 of 5 windows at or above score_trip, but the diagnosis only in the others
    seq = [{"score": 12.0}, {"score": 2.0, "diag": OR}] * 4
    _, states, _ = run(seq)
    assert "trip" not in states and states[-1] == "danger"


@pytest.mark.parametrize(
    ("seq", "rules", "want"),
    [
        # the bug: a rise to alert on a window that reached danger named the danger threshold
        ([{"score": 1.2}, {"score": 1.2}, {"score": 2.0}], {}, "ok → alert: anomaly score 2 ≥ alert threshold 1 (3 of the last 3 windows)"),
        ([{"score": 2.0}] * 3, {}, "ok → danger: anomaly score 2 ≥ danger threshold 1.5 (3 of the last 3 windows)"),
        ([{"score": None, "vel": 3.0}] * 2 + [{"score": None, "vel": 5.0}], {}, "ok → alert: x velocity 5 mm/s (ISO 10816-3 zone D), above the alert boundary B/C 2.8 mm/s (3 of the last 3 windows)"),
        ([{"score": None, "vel": 5.0}] * 3, {}, "ok → danger: x velocity 5 mm/s (ISO 10816-3 zone D), above the danger boundary C/D 4.5 mm/s (3 of the last 3 windows)"),
        ([{"score": None, "env": 0.3}] * 2 + [{"score": None, "vel": 5.0}], {"iso_alert_zone": None, "limits": LIMITS}, "ok → alert: x velocity 5 mm/s (ISO 10816-3 zone D), above the danger boundary C/D 4.5 mm/s (counts for alert) (3 of the last 3 windows)"),
        ([{"score": None, "env": 0.3}] * 2 + [{"score": None, "env": 0.6}], {"limits": LIMITS}, "ok → alert: x.env_bpfo_g 0.6 ≥ alert limit 0.2 (3 of the last 3 windows)"),
        ([{"score": 12.0, "diag": OR}] * 3, {}, "ok → trip: anomaly score 12 ≥ trip threshold 10, corroborated by diagnosis bearing_outer_race (confidence 1.00) (3 of the last 3 windows)"),
        ([{"score": 12.0, "vel": 5.7}] * 3, {}, "ok → trip: x velocity 5.7 mm/s (ISO 10816-3 zone D) ≥ trip 5.62 mm/s (1.25 × C/D) (3 of the last 3 windows)"),
        ([{"score": 12.0, "vel": 4.6}] * 3, {}, "ok → trip: anomaly score 12 ≥ trip threshold 10, corroborated by x velocity 4.6 mm/s above C/D 4.5 mm/s (3 of the last 3 windows)"),
        ([{"score": 12.0}] * 3, {"trip_requires": ()}, "ok → trip: anomaly score 12 ≥ trip threshold 10 (this pipeline lets the score trip alone) (3 of the last 3 windows)"),
    ],
)  # fmt: skip
def test_a_transition_names_the_threshold_of_the_level_it_reached(
    seq: list[dict], rules: dict, want: str
) -> None:
    state = MachineAlarm()
    said = []
    for i, kw in enumerate(seq):
        state, out = step(state, win(i, **kw), dataclasses.replace(RULES, **rules))
        said += [f"{t.old} → {t.new}: {t.reason}" for t in out if not t.sensor]
    assert said == [want] and state.reason == want.split(": ", 1)[1]


def test_what_can_trip_is_listed_for_check() -> None:
    from pdm.alarms.state import trip_paths

    lines = trip_paths(AlarmRules(on_windows=5, of_windows=8), ("x_g", "y_g"), "5 of 8 windows")
    assert lines[0] == (
        "velocity RMS ≥ 5.62 mm/s (1.25 × C/D 4.5 mm/s, ISO 10816-3 group 2 rigid) on any "
        "channel (x_g, y_g) for 5 of 8 windows"
    )
    assert any("the anomaly score never trips" in line for line in lines)
    opted = AlarmRules(score_trip=10.0, limits=(FeatureLimit("env_bpfo_g", danger=0.5, trip=1.0),))
    lines = trip_paths(opted, ("x_g",), "3 of 5 windows")
    assert "env_bpfo_g ≥ trip limit 1 on any channel for 3 of 5 windows" in lines
    assert any(
        line.startswith("the anomaly score ≥ 10 together, in the same window, with velocity RMS")
        and "confidence ≥ 0.7" in line
        and "never trips alone" in line
        for line in lines
    )
    alone = trip_paths(AlarmRules(score_trip=10.0, trip_requires=()), ("x_g",), "3 of 5 windows")
    assert any("ALONE" in line and "not recommended" in line for line in alone)
    none = trip_paths(AlarmRules(iso_trip=None, sensor_fault_inhibits=False), ("x_g",), "w")
    assert none[0].startswith("the anomaly score never trips")


def test_the_diagnosis_of_a_score_row() -> None:
    from pdm.alarms.state import diagnosis_confidence_of

    assert diagnosis_confidence_of({"diagnosis": OR}) == (OR, 1.0)
    assert diagnosis_confidence_of({"diagnosis": "bearing_uncertain"}) == ("bearing_uncertain", 0.0)
    assert diagnosis_confidence_of({"diagnosis": OR, "diagnosis_confidence": 0.4}) == (OR, 0.4)
    assert diagnosis_confidence_of({"diagnosis": OR, "diagnosis_confidence": 7}) == (OR, 1.0)
    assert diagnosis_confidence_of({"diagnosis": OR, "diagnosis_confidence": True}) == (OR, 1.0)
    assert diagnosis_confidence_of({"diagnosis": None}) == (None, 0.0)
    assert diagnosis_confidence_of(None) == (None, 0.0)
    assert diagnosis_confidence_of({"diagnosis": 3}) == (None, 0.0)


@pytest.mark.parametrize("group,foundation", [(1, "rigid"), (1, "flexible"), (2, "rigid"), (2, "flexible")])  # fmt: skip
def test_the_window_level_follows_iso_zone_at_and_around_every_boundary(
    group: int, foundation: str
) -> None:
    # The step reads each channel's zone from the boundaries directly (once a window, not
    # once a channel); it must say exactly what iso_zone says, boundaries included, both for
    # the rise (k = 1) and for the clear test (thresholds × hysteresis).
    from pdm.dsp.iso import iso_zone, zone_limits

    rules = AlarmRules(iso_group=group, foundation=foundation, on_windows=1, of_windows=1)
    ab, bc, cd = zone_limits(group, foundation)
    level = {"A": 0, "B": 0, "C": 1, "D": 2}
    for edge in (ab, bc, cd, 1.25 * cd):
        for v in (edge * (1 - 1e-12), edge, edge * (1 + 1e-12), edge / 0.9, edge * 0.9):
            w = dataclasses.replace(
                win(0, score=None, vel=v), alert=None, danger=None, features={"x": {"velocity_rms_mm_s": v}}
            )  # fmt: skip
            want = level[iso_zone(v, group=group, foundation=foundation)]
            if v >= 1.25 * cd:
                want = 3
            state, _ = step(MachineAlarm(), w, rules)
            assert state.recent[-1] == want, (edge, v)
            # The clear test: the same window against thresholds × hysteresis.
            clear = level[iso_zone(v / rules.hysteresis, group=group, foundation=foundation)]
            if v >= 1.25 * cd * rules.hysteresis:
                clear = 3
            hot = MachineAlarm(state="danger", recent=(2,))
            after, _ = step(hot, w, rules)
            assert after.clear_run == (1 if clear < 2 else 0), (edge, v)


BALL = {"score": 0.3, "diag": "bearing_ball", "conf": 0.9, "bearing_defect": True}


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        # a bearing defect the scorer flagged on the diagnosis alone: alert after the on-delay,
        # never more (danger and trip stay the score's, the velocity's and the limits')
        ([BALL] * 6, ["ok", "ok", "alert", "alert", "alert", "alert"]),
        # the same diagnosis without the scorer's flag (an older card): nothing
        ([{**BALL, "bearing_defect": False}] * 6, ["ok"] * 6),
        # the flag clears like a score: off_windows windows without it
        (
            [BALL] * 3 + [{"score": 0.3}] * 5,
            ["ok", "ok", "alert", "alert", "alert", "alert", "ok", "ok"],
        ),
    ],
)
def test_a_named_bearing_defect_alerts_like_the_score(inputs, expected) -> None:
    _, states, trans = run(inputs)
    assert states == expected
    if "alert" in expected:
        assert trans[0][3] == "alert"


def test_the_reason_names_the_diagnosis() -> None:
    state = MachineAlarm()
    reasons = []
    for i in range(3):
        state, out = step(state, win(i, **BALL), RULES)
        reasons += [t.reason for t in out]
    assert reasons == [
        "diagnosis bearing_ball (confidence 0.90) over the machine's healthy spectra "
        "(3 of the last 3 windows)"
    ]


def test_a_faulty_sensor_inhibits_the_diagnosis_flag() -> None:
    rules = dataclasses.replace(RULES, sensor_fault_inhibits=True)
    _, states, _ = run([{**BALL, "health": "saturated"}] * 6, rules)
    assert "alert" not in states
