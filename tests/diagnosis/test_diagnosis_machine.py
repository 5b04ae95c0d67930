"""The diagnosis of a whole machine: sensors arbitrated, cages made honest, competing
families, and the machine's healthy baseline (pdm.diagnosis.machine, .rules, .baseline).

Known answers from the simulator's machines (pdm.sources.simulator.MachineSpec: a fault in
one bearing reaches the other sensor attenuated, ringing another resonance), each checked
to fail without the rule it tests; then the baseline through the real ``train`` and
``score`` commands.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdm.config import Pipeline
from pdm.diagnosis import confidence, judge_channel
from pdm.diagnosis.baseline import Baseline, BaselineBuilder
from pdm.dsp.bearings import BEARINGS
from pdm.processing import FeatureStream
from pdm.sources.base import Chunk
from pdm.sources.simulator import (
    FaultSpec,
    MachineSensor,
    MachineSpec,
    SimSpec,
    TransientSpec,
    impact_positions,
    simulate,
    simulate_machine,
    write_recording,
)
from pdm.tools.diagnosis_sweep import (
    GEOMETRIES,
    MACHINE_KINDS,
    MachineCase,
    make_machine_cases,
    run_machine_case,
    summarise_machines,
)

REPO = Path(__file__).resolve().parents[2]
FR = 1480.0 / 60.0


# --------------------------------------------------------------------------- the simulator


def test_a_machines_fault_reaches_the_other_sensor_attenuated_at_the_same_instants() -> None:
    """Known answer: with one resonance and no noise, the far sensor is the near one times
    10^(−transfer/20) exactly; the impacts come at the same instants at both."""
    g = BEARINGS["6205"]
    spec = MachineSpec(
        sensors=(MachineSensor("a_g", g, 3000.0, 0.0), MachineSensor("b_g", g, 3000.0, 0.0)),
        faults=((0, FaultSpec("bpfo", 0.5)),),
        transfer_db=12.0,
        duration_s=1.0,
    )
    x = simulate_machine(spec)
    assert x.shape == (25600, 2) and np.abs(x[:, 0]).max() > 0.3
    np.testing.assert_allclose(x[:, 1], x[:, 0] * 10 ** (-12 / 20), rtol=1e-12, atol=1e-15)
    parts = [p for s, p, _g in spec.parts() if p.faults and p.faults[0].kind == "bpfo"]
    assert len(parts) == 2
    np.testing.assert_array_equal(impact_positions(parts[0], 0), impact_positions(parts[1], 0))
    # Another resonance at the far housing: the same impacts ring differently there.
    other = MachineSpec(
        sensors=(MachineSensor("a_g", g, 3000.0, 0.0), MachineSensor("b_g", g, 5200.0, 0.0)),
        faults=spec.faults,
        duration_s=1.0,
    )
    y = simulate_machine(other)
    assert not np.allclose(y[:, 1], y[:, 0] * 10 ** (-12 / 20))


# --------------------------------------------------------------------------- arbitration


def _two_ends(bearing_b: str, transfer_db: float = 10.0, fault: str = "bpfi") -> MachineSpec:
    return MachineSpec(
        sensors=(
            MachineSensor("a_g", BEARINGS["6205"], 3500.0, 0.02),
            MachineSensor("b_g", BEARINGS[bearing_b], 5200.0, 0.02),
        ),
        faults=((0, FaultSpec("unbalance", 0.02)), (0, FaultSpec(fault, 0.3))),  # type: ignore[arg-type]
        transfer_db=transfer_db,
        duration_s=8.0,
        seed=11,
        defect_slip=0.01,
    )


def _pipeline(
    sensors: list[tuple[str, str, list[str]]],
    rpm: float,
    fs: float,
    band: tuple[float, float],
    window: int = 16384,
) -> Pipeline:
    """A pipeline of sensors (id, bearing, columns) at a fixed speed and band."""
    return Pipeline.model_validate(
        {
            "schema_version": 1,
            "machine": {"id": "m", "speed": {"rpm": rpm}},
            "acquisition": {"sample_rate_hz": fs, "window_samples": window, "overlap": 0.5},
            "sensors": [
                {"id": sid, "bearing": b, "channels": [{"column": c, "unit": "g"} for c in cols]}
                for sid, b, cols in sensors
            ],
            "envelope": {"band_hz": list(band)},
        }
    )


def _machine_pipeline(spec: MachineSpec) -> Pipeline:
    ends = [
        (f"end{i}", str(s.bearing.designation), [s.channel]) for i, s in enumerate(spec.sensors)
    ]
    return _pipeline(ends, spec.rpm, spec.fs, (2000.0, 8000.0))


def _judge(spec: MachineSpec, pipeline: Pipeline, *, arbitrate: bool = True):
    stream = FeatureStream(pipeline, spec.fs)
    assert stream.engine is not None
    if not arbitrate:
        stream.engine.locations = ("",) * len(spec.sensors)
    x = simulate_machine(spec)
    for _wf in stream.feed([Chunk(x, spec.fs, spec.start_time, spec.channels)]):
        pass
    return stream.engine.judge()


def test_a_fault_at_one_end_is_named_there_and_transmitted_to_the_other() -> None:
    """A 6205 inner race at one end of a motor that has a 6205 at the other too: the other
    sensor reads exactly the same family 10 dB weaker. The machine names the faulty end and
    its bearing; the other end says "transmitted from a_g", not a second fault. Judged
    without arbitration, the healthy end names the fault as its own."""
    spec = _two_ends("6205")
    d = _judge(spec, _machine_pipeline(spec))
    assert (d.label, d.channel, d.bearing) == ("bearing_inner_race", "a_g", "6205"), d.reasons
    b = next(c for c in d.channels if c.channel == "b_g")
    assert b.label == "unknown" and b.confidence == 0.0 and b.transmitted_from == "a_g"
    assert b.verdict.label == "bearing_inner_race"  # what it said judged alone
    assert "transmitted from a_g" in b.reasons[0] and "BPFI" in b.reasons[0]
    assert b.as_dict()["transmitted_from"] == "a_g"
    assert any("b_g transmitted from a_g" in r for r in d.reasons)
    alone = _judge(spec, _machine_pipeline(spec), arbitrate=False)
    b_alone = next(c for c in alone.channels if c.channel == "b_g")
    assert b_alone.label == "bearing_inner_race" and b_alone.confidence > 0.9


def test_two_sensors_of_one_housing_are_not_arbitrated() -> None:
    """Axes of one housing see one bearing: both keep their verdict."""
    spec = SimSpec(duration_s=8.0, faults=(FaultSpec("bpfo", 0.3),), seed=4)
    pl = _pipeline([("de", "6205", list(spec.channels))], spec.rpm, spec.fs, (2000.0, 6000.0))
    stream = FeatureStream(pl, spec.fs)
    for _wf in stream.feed([Chunk(simulate(spec), spec.fs, spec.start_time, spec.channels)]):
        pass
    d = stream.engine.judge()
    assert [c.label for c in d.channels] == ["bearing_outer_race"] * 2
    assert not any(c.transmitted_from for c in d.channels)


def test_machine_sweep_names_the_right_bearing_and_no_confident_fault_on_the_other() -> None:
    """A small machine sweep (python -m pdm.tools.diagnosis_sweep --machines runs the long one):
    faults at one end of two-bearing machines (same or other bearing at the far end, 6–20 dB,
    another resonance), two faults in one bearing, a structural line at a defect-like order
    over the healthy baseline with and without a real fault there. Nothing is wrong."""
    cases = make_machine_cases(16, seed=3)
    assert {c.kind for c in cases} == set(MACHINE_KINDS)
    results = [run_machine_case(c) for c in cases]
    table = summarise_machines(results)
    assert not [r for r in results if r["outcome"] == "wrong"], table
    for r in results:
        if r["kind"] == "crosstalk" and r["healthy_label"].startswith("bearing_"):
            assert r["healthy_confidence"] < 0.5, r
        if r["kind"] == "structural":
            assert r["label"] == "unknown", r
    assert sum(r["outcome"] == "right" for r in results) >= 10, table


# --------------------------------------------------------------------------- the cage


def test_another_bearings_cage_comb_is_not_this_bearings_cage() -> None:
    """A 6205's cage comb (FTF 0.398 × shaft) read on a sensor whose bearing is a 6203 (FTF
    0.382 ×, 4 % away): the comb fits the 6205's spacing better, so it is no cage fault of
    the 6203, and neither are the races its lines meet within the slip. Judged as a 6205,
    the same comb is a cage fault — bare, so no better than even."""
    spec = SimSpec(duration_s=12.0, faults=(FaultSpec("ftf", 0.3),), seed=7, defect_slip=0.005)
    x = simulate(spec)
    got = {}
    for name in ("6205", "6203"):
        pl = _pipeline([("s", name, list(spec.channels))], spec.rpm, spec.fs, (2000.0, 6000.0))
        stream = FeatureStream(pl, spec.fs)
        for _wf in stream.feed([Chunk(x, spec.fs, spec.start_time, spec.channels)]):
            pass
        got[name] = stream.engine.judge()
    assert got["6205"].label == "bearing_cage" and got["6205"].confidence <= 0.5
    other = got["6203"]
    assert other.label == "unknown", other.reasons
    cage = other.channels[0].verdict.family("cage")
    assert cage is not None and cage.status == "other_comb"
    assert "fits a spacing of" in cage.note and "another bearing's cage" in cage.note


def _spectrum(lines_hz: dict[float, float], df: float, n: int, k: int, seed: int) -> np.ndarray:
    """An averaged power spectrum: noise of K independent windows (Gamma(K)/K, mean 1e-6
    g²) and lines of the given power on their bins."""
    rng = np.random.default_rng(seed)
    p = rng.gamma(k, 1.0 / k, n) * 1e-6
    for hz, power in lines_hz.items():
        p[round(hz / df)] += power
    return p


def test_a_cage_that_modulates_another_line_is_not_bare() -> None:
    """A cage comb (FTF harmonics) with the envelope's 1× shaft line modulated at ± FTF: what
    a damaged cage shows besides its own comb. Then it is not a bare comb and its confidence
    may exceed one half; without the sidebands it is capped at even."""
    m = BEARINGS["6205"].defect_multiples()
    df, fr, n = 0.25, FR, 4000
    ftf = m["ftf"] * fr
    comb = {h * ftf: 3e-5 for h in range(1, 9)}
    bare = _spectrum({**comb, fr: 4e-5}, df, n, 30, 1)
    modulated = _spectrum({**comb, fr: 4e-5, fr - ftf: 2e-5, fr + ftf: 2e-5}, df, n, 30, 1)
    acc = np.full(200, 1e-8)
    v_bare = judge_channel(acc, bare, df, fr, m, 30.0)
    v_mod = judge_channel(acc, modulated, df, fr, m, 30.0)
    assert v_bare.label == v_mod.label == "bearing_cage", (v_bare.reasons, v_mod.reasons)
    c_bare = confidence(v_bare.label, v_bare.margin_db, v_bare.calibration)
    c_mod = confidence(v_mod.label, v_mod.margin_db, v_mod.calibration)
    assert c_bare <= 0.5 < c_mod, (c_bare, c_mod)
    cage = v_mod.family("cage")
    assert cage is not None
    assert {ln.name for ln in cage.lines if ln.kind == "modulation" and ln.significant} == {
        "shaft 1× − FTF",
        "shaft 1× + FTF",
    }


# --------------------------------------------------------------------------- competing


def test_a_second_family_present_lowers_the_confidence() -> None:
    """An outer race 20 dB over the floor with two harmonics, alone and with a ball family
    present too (2×BSF with its FTF sidebands and a harmonic, weaker): the outer race is
    named both times, but with the ball present the confidence is read on the contested map,
    from the lead beyond the uncertain point — not ~1."""
    m = BEARINGS["6205"].defect_multiples()
    df, fr, n = 0.25, FR, 4000
    outer = {h * m["bpfo"] * fr: 1e-4 for h in (1, 2, 3)}
    b2, ftf = 2 * m["bsf"] * fr, m["ftf"] * fr
    ball = {b2: 6e-6, b2 - ftf: 5e-6, b2 + ftf: 5e-6, 2 * b2: 5e-6}
    acc = np.full(200, 1e-8)
    alone = judge_channel(acc, _spectrum(outer, df, n, 30, 2), df, fr, m, 30.0)
    both = judge_channel(acc, _spectrum({**outer, **ball}, df, n, 30, 2), df, fr, m, 30.0)
    assert alone.label == both.label == "bearing_outer_race", both.reasons
    assert both.family("ball") is not None and both.family("ball").present
    assert both.calibration == "bearing_contested" and alone.calibration == ""
    c_alone = confidence(alone.label, alone.margin_db, alone.calibration)
    c_both = confidence(both.label, both.margin_db, both.calibration)
    assert c_alone > 0.95 and c_both < 0.9 and c_both < c_alone - 0.1, (c_alone, c_both)


# --------------------------------------------------------------------------- the baseline


def test_the_baseline_round_trips_and_refuses_bad_cards() -> None:
    b = Baseline(
        ("x_g",),
        0.01,
        24.6,
        (np.array([1e-6, 2e-5, 3.14159e-7]),),
        (np.array([0.0, 1.0]),),
        (2000.0, 6000.0),
        12,
    )
    d = json.loads(json.dumps(b.to_dict()))
    back = Baseline.from_dict(d)
    assert (
        back.channels == ("x_g",) and back.windows == 12 and back.envelope_band_hz == (2000, 6000)
    )
    np.testing.assert_allclose(back.acc[0], [1e-6, 2e-5, 3.142e-7])
    for bad, what in (
        ({**d, "version": 2}, "version"),
        ({**d, "order_step": -1}, "order_step"),
        ({**d, "windows": True}, "windows"),
        ({**d, "channels": {"x_g": {"acc_g2": ["a"], "env_g2": []}}}, "not all numbers"),
        ({**d, "channels": {"x_g": {"acc_g2": [-1.0], "env_g2": []}}}, "negative"),
        ({**d, "channels": {"x_g": {"acc_g2": [0.0] * 200_000, "env_g2": []}}}, "at most"),
        ({**d, "channels": []}, "channels"),
        ({**d, "envelope_band_hz": [1]}, "envelope_band_hz"),
    ):
        with pytest.raises(ValueError, match=what):
            Baseline.from_dict(bad)


def _structural_case(kind: str) -> MachineCase:
    return MachineCase(
        index=0,
        kind=kind,
        fault="bpfo",
        fault2="",
        bearing="6205",
        bearing2="6205",
        rpm=1480.0,
        fs=25600.0,
        resonance_hz=4000.0,
        resonance2_hz=4000.0,
        noise_g=0.02,
        snr=8.0,
        ratio=2.5,
        transfer_db=0.0,
        offset=0.004,
        slip=0.0,
        seed=5,
        windows=12,
    )


def test_a_structural_line_at_a_defect_order_is_not_a_fault_over_the_baseline() -> None:
    """A healthy machine whose structure knocks at 1.004 × its bearing's BPFO (a line in its
    healthy running, not locked to the shaft): without a baseline that is an outer race;
    over the baseline learnt from another healthy recording, nothing. A real outer race at
    that order, 2.5 × the line, still is one: it grew above the baseline."""
    healthy = run_machine_case(_structural_case("structural"))
    assert healthy["label_without_baseline"] == "bearing_outer_race"
    assert healthy["label"] == "unknown"
    fault = run_machine_case(_structural_case("structural_fault"))
    assert fault["label"] == "bearing_outer_race" and fault["confidence"] > 0.5


def test_the_baseline_builder_keeps_the_most_used_band_and_the_orders() -> None:
    spec = SimSpec(duration_s=3.0, faults=(FaultSpec("unbalance", 0.05),), seed=2)
    pl = _pipeline([("s", "6205", list(spec.channels))], spec.rpm, spec.fs, (2000.0, 6000.0), 8192)
    stream = FeatureStream(pl, spec.fs)
    b = BaselineBuilder(8192, pl.columns)
    n = 0
    for wf in stream.feed([Chunk(simulate(spec), spec.fs, spec.start_time, spec.channels)]):
        n += b.add(wf.features, spec.fs)
    base = b.result()
    assert base is not None and base.windows == n > 5
    assert base.envelope_band_hz is not None and base.envelope_band_hz[0] >= 1999
    # The 1× line: amplitude 0.05 g on x (a quarter turn later on y), at order 1.
    k = round(1.0 / base.order_step)
    k += int(np.argmax(base.acc[0][k - 1 : k + 2])) - 1
    lobe = base.acc[0][k - 2 : k + 3].sum() / 1.5  # a Hann line's main lobe: A² × 1.5
    assert math.sqrt(lobe) == pytest.approx(0.05, rel=0.05)
    assert base.order_step == pytest.approx(spec.fs / 8192 / (spec.rpm / 60), rel=0.01)


# --------------------------------------------------------------------------- train and score


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", *(str(a) for a in args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def structural(tmp_path_factory) -> dict[str, Path]:
    """A 6205 at 1480 r/min whose structure knocks at 1.004 × BPFO: healthy recordings to
    train on and to score, and one with a real outer race at that order."""
    d = tmp_path_factory.mktemp("structural")
    bpfo = BEARINGS["6205"].defect_frequencies_hz(FR)["bpfo"] * 1.004
    knocks = tuple(TransientSpec(t, 0.15) for t in np.arange(0.003, 30.0, 1 / bpfo).tolist())
    out = {}
    for name, seed, dur, faults in (
        ("train", 1, 30.0, ()),
        ("healthy", 2, 12.0, ()),
        ("outer", 3, 12.0, (FaultSpec("bpfo", 0.4),)),
    ):
        spec = SimSpec(
            duration_s=dur,
            seed=seed,
            faults=(FaultSpec("unbalance", 0.02), *faults),
            transients=tuple(t for t in knocks if t.time_s < dur),
        )
        path = d / f"{name}.csv"
        write_recording(path, spec)
        out[name] = path
    return out


QUICK = ("--rpm", "1480", "--bearing", "6205", "--envelope-band", "2000,6000")


def _summary(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def test_score_judges_lines_over_the_models_healthy_baseline(structural, tmp_path) -> None:
    """train stores the healthy spectra in the card; score then does not call the machine's
    own structural line a fault, but does call a real fault at that order one — with the
    deciding sensor and bearing in every row. The same card without its baseline (as written
    before it existed) still loads and scores, judging over the floor alone as before."""
    model = tmp_path / "model"
    proc = run_cli("train", structural["train"], "--out", model, "--window", "16384", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((model / "model.json").read_text())
    base = card["diagnosis_baseline"]
    assert base["version"] == 1 and set(base["channels"]) == {"x_g", "y_g"}
    healthy = run_cli("score", "--model", model, structural["healthy"])
    assert " diagnosis unknown " in _summary(healthy), _summary(healthy)
    rows = [json.loads(x) for x in healthy.stdout.splitlines()]
    assert not any(str(r["diagnosis"]).startswith("bearing_") for r in rows)
    fault = run_cli("score", "--model", model, structural["outer"])
    assert "diagnosis bearing_outer_race" in _summary(fault), _summary(fault)
    last = json.loads(fault.stdout.splitlines()[-1])
    assert last["diagnosis"] == "bearing_outer_race" and last["diagnosis_channel"] in ("x_g", "y_g")
    # An old card: no baseline. It loads, and the structural line reads as a fault again.
    del card["diagnosis_baseline"]
    (model / "model.json").write_text(json.dumps(card))
    old = run_cli("score", "--model", model, structural["healthy"])
    assert "diagnosis bearing_outer_race" in _summary(old), _summary(old)
    # A hostile baseline is one line naming where, never a traceback.
    card["diagnosis_baseline"] = {**base, "channels": {"x_g": {"acc_g2": "x", "env_g2": []}}}
    (model / "model.json").write_text(json.dumps(card))
    bad = run_cli("score", "--model", model, structural["healthy"])
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "diagnosis_baseline" in lines[0], bad.stderr


def test_geometries_cover_roller_bearings() -> None:
    """The sweep's machines include roller bearings (contact angle 0 with rollers, and a
    spherical roller bearing's angle)."""
    assert {"NU208", "22210"} <= set(GEOMETRIES)


def test_replay_judges_lines_over_the_models_healthy_baseline(structural, tmp_path) -> None:
    """replay with a model hands the model's healthy baseline to the diagnosis as score
    does: the machine's own structural line at a defect order is no fault in the history."""
    model = tmp_path / "model"
    proc = run_cli("train", structural["train"], "--out", model, "--window", "16384", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = tmp_path / "history.sqlite"
    proc = run_cli(
        "replay", structural["healthy"], "--model", model, "--store", f"sqlite:///{store}",
        "--data-dir", tmp_path / "data", "--window", "16384", *QUICK,
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    with sqlite3.connect(store) as db:
        labels = [row[0] for row in db.execute("SELECT diagnosis FROM scores")]
    assert labels and not any(lab.startswith("bearing_") for lab in labels), labels
