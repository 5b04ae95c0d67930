"""Damage-direction scoring: a machine quieter than its baseline raises no alarm, a fault still does.

Models are trained the way ``pdm-edge train`` trains them, on the healthy fixture with the
demo pipeline, for every detector; the machines scored are the project's simulator with
other seeds. "Today" in the constants below is the scoring before directions existed
(commit 4cf0a62), measured on the same cases: a healthy machine 6 dB quieter than its
training (noise and vibration halved) scored 790–850 with gmm, 47–50 mahalanobis, 29–32
pca, 0.96–1.31 iforest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdm.config import load_pipeline
from pdm.errors import ModelError
from pdm.history.recorder import Recorder
from pdm.processing import FeatureStream
from pdm.scoring.detectors import DETECTORS
from pdm.scoring.explain import top_features
from pdm.scoring.preprocess import Preprocess
from pdm.scoring.quiet import QUIET_Z, amplitude_mask, below_baseline
from pdm.scoring.result import WindowScore
from pdm.scoring.runtime import Model, WindowScorer
from pdm.scoring.train import calibrate, collect, train
from pdm.scoring.vector import MODEL_FEATURES, direction
from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "fixtures"
PIPELINE = REPO / "pipelines" / "demo.toml"
HEALTHY = FaultSpec("unbalance", 0.05)  # the demo machine's own running, as in the fixtures
BASE = SimSpec(duration_s=3.0, lsb_g=0.002)  # quantised like the fixtures
SEEDS = (21, 22, 23)

#: Median fault scores before directions (commit 4cf0a62, same cases, seeds 1–3): a fault
#: must still score at least half of this (the isolation forest; the other detectors' scores
#: are normalised to an alert that the least alert window raised ~22-fold since 2026-12-07,
#: and are held to 10 × the alert instead).
TODAY_BPFO = {"gmm": 3040.0, "mahalanobis": 178.0, "pca": 122.0, "iforest": 0.987}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    pl = load_pipeline(PIPELINE)
    ts = collect([FIX / "healthy.csv.gz"], pl)
    out = tmp_path_factory.mktemp("direction")
    for kind in DETECTORS:
        train(ts, out / kind, detector=kind, alerts_per_week=1.0, holdout=0.3)
    return {kind: Model.load(out / kind, pl, 25600.0) for kind in DETECTORS}


def rows(model: Model, spec: SimSpec) -> list[dict]:
    pl = load_pipeline(PIPELINE)
    with Simulator(spec) as src:
        fs = FeatureStream(pl, spec.fs)
        frames = list(fs.feed(src.chunks()))
    return WindowScorer(model, pl.columns, fs.extractor.names).rows(frames)


def scores(model: Model, spec: SimSpec) -> np.ndarray:
    return np.array([r["score"] for r in rows(model, spec) if r["valid"]])


def quieter(seed: int, factor: float = 0.5) -> SimSpec:
    """The demo machine with its noise and vibration scaled by ``factor`` (0.5: 6 dB quieter)."""
    return dataclasses.replace(
        BASE, noise_rms_g=0.02 * factor, faults=(FaultSpec("unbalance", 0.05 * factor),), seed=seed
    )


# --------------------------------------------------------------------------- the rule


def test_every_default_model_feature_counts_up_and_shape_free_features_both_ways() -> None:
    assert all(direction(f) == "up" for f in MODEL_FEATURES if f != "band_*")
    assert direction("x_g.band_high_rms_g") == "up"
    assert direction("skewness") == direction("mean_g") == direction("speed_hz") == "both"
    # crest = peak / rms exactly: log crest is a linear combination the model already has
    assert "crest" not in MODEL_FEATURES


def test_a_window_far_below_the_baseline_scores_exactly_as_the_baseline(models) -> None:
    """Known answer: every z clipped at 0 is the median window, whatever the detector."""
    for kind, model in models.items():
        pre = model.preprocess
        center = np.exp(pre.center.astype(np.float64))  # every default feature is logged
        at_baseline = model.score(center[None].astype(np.float32))[0][0]
        for k in (0.5, 0.1, 1e-3):
            quiet = model.score((center * k)[None].astype(np.float32))[0][0]
            assert quiet == pytest.approx(at_baseline, abs=1e-5), (kind, k)
        # and a rise of one feature counts: the graph is not clipping both ways
        up = center.copy()
        up[0] *= np.exp(20 * pre.scale[0])  # rms_g 20 robust sd above its median
        assert model.score(up[None].astype(np.float32))[0][0] > at_baseline, kind


def test_preprocess_directions_round_trip_and_a_legacy_dict_counts_both_ways() -> None:
    names = ("x_g.rms_g", "x_g.kurtosis", "x_g.skewness")
    x = np.abs(np.random.default_rng(0).normal(1.0, 0.1, (50, 3)))
    pre = Preprocess.fit(x, names)
    assert pre.directions == ("up", "up", "both") and pre.directions_known
    again = Preprocess.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.directions == pre.directions and again.directions_known
    np.testing.assert_array_equal(again.z_floor, pre.z_floor)
    z = np.array([[-5.0, -5.0, -5.0], [2.0, -1.0, 3.0]])
    np.testing.assert_array_equal(pre.clip(z), [[0.0, 0.0, -5.0], [2.0, 0.0, 3.0]])
    legacy = pre.to_dict()
    del legacy["direction"], legacy["z_floor"]
    old = Preprocess.from_dict(legacy)
    assert not old.directions_known and old.directions == ("both",) * 3
    np.testing.assert_array_equal(old.clip(z), z)
    bad = {**pre.to_dict(), "direction": ["up", "down", "both"]}
    with pytest.raises(ValueError, match="'down' is not one of up, both"):
        Preprocess.from_dict(bad)


# ------------------------------------------------------------- the simulated machines


@pytest.mark.parametrize("kind", DETECTORS)
def test_a_healthy_machine_6db_quieter_than_its_training_stays_below_the_alert(
    models, kind: str
) -> None:
    model = models[kind]
    for seed in SEEDS:
        s = scores(model, quieter(seed))
        assert len(s) >= 30 and s.max() < 1.0, (kind, seed, float(s.max()))
    # 20 dB quieter too (a sensor that lost most of its contact)
    assert scores(model, quieter(SEEDS[0], 0.1)).max() < 1.0


@pytest.mark.parametrize("kind", DETECTORS)
def test_a_healthy_machine_whose_unbalance_fell_stays_below_the_alert(models, kind: str) -> None:
    """The shaft's 1× down 40 % (0.03 g instead of the training's 0.05 g), the noise as in
    training: the machine is healthier, but its signal is less a sine and more noise, so its
    kurtosis rises towards a Gaussian's 3 (2.43 → 2.55 in the issue's probe, z ≈ 17: every
    window in danger). Kurtosis counts only above 3 (``log_floor``): no alarm."""
    model = models[kind]
    for seed in SEEDS:
        spec = dataclasses.replace(BASE, faults=(FaultSpec("unbalance", 0.03),), seed=seed)
        s = scores(model, spec)
        assert len(s) >= 30 and s.max() < 1.0, (kind, seed, float(s.max()))


def louder(seed: int, factor: float) -> SimSpec:
    """The demo machine with its noise and vibration scaled by ``factor`` (> 1: louder)."""
    return quieter(seed, factor)


@pytest.mark.parametrize("kind", ["gmm", "mahalanobis", "pca"])
def test_a_healthy_machine_a_little_louder_all_over_is_no_alert_and_no_danger(
    models, kind: str
) -> None:
    """5 % louder (noise and vibration × 1.05: a sensor's calibration tolerance, a load, a
    season) is no alert; 20 % louder is no danger — the least alert is 10 % louder all over
    (``LEAST_ALERT_AMPLITUDE_RATIO``), the least danger 25 % (ISO 10816-3's significant
    change). Before them, trained on the fixture whose running barely moves, the machine 5 %
    louder scored 6.2–7.2: danger on every window. (The isolation forest's raw score is
    bounded, which caps both: docs/models.md.)"""
    model = models[kind]
    s = scores(model, louder(SEEDS[0], 1.05))
    assert len(s) >= 30 and s.max() < 1.0, (kind, float(s.max()))
    s = scores(model, louder(SEEDS[0], 1.20))
    assert s.max() < model.danger, (kind, float(s.max()), model.danger)


@pytest.mark.parametrize("kind", ["gmm", "mahalanobis", "pca"])
def test_a_machine_half_again_as_loud_is_in_danger(models, kind: str) -> None:
    """Every amplitude × 1.6 (4 dB, about one ISO 10816-3 zone's ratio): danger on most
    windows. (The isolation forest saturates far from the data and is not held to this.)"""
    s = scores(models[kind], louder(SEEDS[1], 1.6))
    assert np.mean(s >= models[kind].danger) > 0.9, (kind, float(np.median(s)))


def test_calibrate_puts_alert_and_danger_no_lower_than_the_least_windows() -> None:
    """Known answer: healthy raw scores 0…1 (median 0.5), their tail's alert ≈ 1; the least
    alert window scores 11, the least danger window 41: the alert is 11 on the raw scale
    (1.0 normalised), danger 41 (7.0 normalised), and the card says both floors decided."""
    rng = np.random.default_rng(5)
    train_raw = rng.uniform(0.0, 1.0, 400)
    cal = rng.uniform(0.0, 1.0, 300)
    plain = calibrate(train_raw, cal, alerts_per_week=1.0, window_rate_hz=10.0)
    got = calibrate(
        train_raw, cal, alerts_per_week=1.0, window_rate_hz=10.0, least_raw=11.0,
        least_danger_raw=41.0,
    )  # fmt: skip
    assert got["offset"] + got["span"] == pytest.approx(11.0)
    assert got["offset"] + got["danger"] * got["span"] == pytest.approx(41.0)
    least = got["calibration"]["least_alert"]
    assert least["applied"] and least["danger_applied"] and least["amplitude_ratio"] == 1.10
    stat = plain["offset"] + plain["span"]
    assert least["statistical_alert_score"] == pytest.approx((stat - got["offset"]) / got["span"])
    # a least danger window nearer than the statistics' danger changes nothing
    near = calibrate(
        train_raw, cal, alerts_per_week=1.0, window_rate_hz=10.0, least_raw=11.0,
        least_danger_raw=11.5,
    )  # fmt: skip
    assert near["danger"] > 1.05 and not near["calibration"]["least_alert"]["danger_applied"]
    # below the statistics' alert it changes nothing
    low = calibrate(train_raw, cal, alerts_per_week=1.0, window_rate_hz=10.0, least_raw=0.6)
    assert low["span"] == plain["span"] and not low["calibration"]["least_alert"]["applied"]


@pytest.mark.parametrize("kind", DETECTORS)
def test_a_fault_still_scores_as_before(models, kind: str) -> None:
    model = models[kind]
    bpfo = np.concatenate(
        [
            scores(
                model, dataclasses.replace(BASE, faults=(HEALTHY, FaultSpec("bpfo", 0.8)), seed=s)
            )
            for s in SEEDS
        ]
    )
    if kind == "iforest":
        assert np.median(bpfo) >= 0.5 * TODAY_BPFO[kind], (kind, float(np.median(bpfo)))
    else:  # normalised to an alert the least alert window raised ~22x: still 10x the alert
        assert np.median(bpfo) >= 10.0, (kind, float(np.median(bpfo)))
    if kind != "iforest":  # the forest saturates far from the data: it did not alert before either
        assert np.min(bpfo) >= model.danger
        for fault in (FaultSpec("bpfi", 0.6), FaultSpec("bpfo", 0.2)):
            spec = dataclasses.replace(BASE, faults=(HEALTHY, fault), seed=SEEDS[0])
            assert np.median(scores(model, spec)) >= model.danger, (kind, fault)


def test_the_committed_demo_model_no_longer_alarms_on_a_quieter_sensor() -> None:
    """The issue's case: 0.01 g sensor noise instead of the 0.02 g of training scored 75–87."""
    pl = load_pipeline(PIPELINE)
    model = Model.load(REPO / "models" / "demo-pump", pl, 25600.0)
    assert not model.legacy_directions
    for seed in SEEDS:
        spec = dataclasses.replace(BASE, noise_rms_g=0.01, faults=(HEALTHY,), seed=seed)
        s = scores(model, spec)
        assert s.max() < 1.0, (seed, float(s.max()))


# ------------------------------------------------------------ explanation and the hint


def test_top_features_rank_only_rises_and_say_so(models) -> None:
    model = models["gmm"]
    quiet = rows(model, quieter(SEEDS[0]))
    for r in quiet:
        assert all(t["z"] > 0 and t["direction"] == "up" for t in r["top_features"])
    fault = rows(
        model, dataclasses.replace(BASE, faults=(HEALTHY, FaultSpec("bpfo", 0.2)), seed=SEEDS[0])
    )
    for r in fault:
        top = r["top_features"]
        assert len(top) == 5 and top[0]["z"] >= 4.0 and all(t["z"] > 0 for t in top)
    # without directions (an older card): |z| ranks, as before
    names, v, z = ["a.x", "a.y", "a.z"], [1.0, 2.0, 3.0], [0.5, -6.0, 2.0]
    assert [t["feature"] for t in top_features(names, v, z, k=3)] == ["a.y", "a.z", "a.x"]
    got = top_features(names, v, z, k=3, directions=["up", "up", "both"])
    assert [t["feature"] for t in got] == ["a.z", "a.x"]


def test_a_much_quieter_machine_gets_an_info_hint_and_a_healthy_or_faulty_one_none(models) -> None:
    model = models["gmm"]
    quiet = rows(model, quieter(SEEDS[1]))
    hinted = [r["below_baseline"] for r in quiet if r["below_baseline"]]
    assert len(hinted) >= 0.9 * len(quiet)
    h = hinted[0]
    assert h["features"] >= 0.5 * h["of"] and h["median_z"] <= -QUIET_Z
    assert "check the sensor and its mounting" in h["message"]
    assert all(r["state"] == "ok" for r in quiet)  # a hint, never an alarm level
    for spec in (
        dataclasses.replace(BASE, faults=(HEALTHY,), seed=SEEDS[1]),
        dataclasses.replace(BASE, faults=(HEALTHY, FaultSpec("bpfo", 0.8)), seed=SEEDS[1]),
    ):
        assert not any(r["below_baseline"] for r in rows(model, spec))


def test_the_hint_rule_counts_amplitudes_only() -> None:
    names = ["x_g.rms_g", "x_g.peak_g", "x_g.kurtosis", "x_g.velocity_rms_mm_s"]
    amp = amplitude_mask(names)
    assert amp.tolist() == [True, True, False, True]
    z = np.array([[-4.0, -4.0, -9.0, 0.0], [-4.0, 0.0, -9.0, 0.0], [-4.0, -3.0, 5.0, np.nan]])
    got = below_baseline(z, amp)
    assert got[0] is not None and (got[0]["features"], got[0]["of"]) == (2, 3)
    assert got[1] is None  # 1 of 3: not most
    assert got[2] is not None and got[2]["of"] == 2  # NaN left out
    with pytest.raises(ValueError, match="shape"):
        below_baseline(z[:, :2], amp)


def test_the_recorder_turns_a_lasting_hint_into_one_info_event_each_way() -> None:
    pl = load_pipeline(PIPELINE)
    rec = Recorder(pl)
    on, _ = pl.alarms.delays(pl.acquisition)
    hint = {"features": 20, "of": 22, "median_z": -5.0, "message": "quiet"}
    seq = [hint] * (on + 3) + [None] * (pl.alarms.off_windows + 2)
    seq.insert(2, None)  # one window without breaks the run: the event comes later
    events = []
    for i, h in enumerate(seq):
        events += [
            (i, e.type, e.severity)
            for e in rec._score_events([WindowScore(i, i, "ok", 0.1, below_baseline=h)])
        ]
    assert events == [
        (on + 2, "below_baseline", "info"),
        (on + 3 + pl.alarms.off_windows, "below_baseline_cleared", "info"),
    ]
    # unscored windows neither start nor end it
    assert rec._score_events([WindowScore(i, i, None, valid=False) for i in range(100)]) == []


# ------------------------------------------------------------------------- old cards


def test_a_card_without_directions_still_loads_and_check_asks_for_a_retrain(
    tmp_path: Path,
) -> None:
    old = tmp_path / "models" / "demo-pump"
    shutil.copytree(REPO / "models" / "demo-pump", old)
    card = json.loads((old / "model.json").read_text())
    del card["preprocess"]["direction"], card["preprocess"]["z_floor"]
    for f in card["features"]:
        del f["direction"]
    (old / "model.json").write_text(json.dumps(card))
    pl = load_pipeline(PIPELINE)
    model = Model.load(old, pl, 25600.0)
    assert model.legacy_directions
    r = rows(model, quieter(SEEDS[0]))[0]
    assert all("direction" not in t for t in r["top_features"])  # ranked by |z|, as before
    text = PIPELINE.read_text().replace('"../models/demo-pump"', json.dumps(str(old)))
    (tmp_path / "pipelines").mkdir()
    pipe = tmp_path / "pipelines" / "demo.toml"
    pipe.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "pdm.cli", "check", str(pipe)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "was trained before damage-direction scoring" in proc.stdout
    assert "retrain" in proc.stdout
    card["preprocess"]["direction"] = ["sideways"] * len(card["features"])
    card["preprocess"]["z_floor"] = [0.0] * len(card["features"])
    (old / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="bad 'preprocess' section"):
        Model.load(old, pl, 25600.0)


def test_the_service_keeps_the_newest_hint_for_status_and_raises_no_alarm(tmp_path: Path) -> None:
    """A service runner on the demo pipeline fed a 6 dB quieter machine, chunk by chunk."""
    import time

    from pdm.history import open_store, parse_store_url
    from pdm.history.spool import Spool
    from pdm.history.writer import HistoryWriter
    from pdm.service.runner import MachineRunner
    from pdm.sources.base import Chunk
    from pdm.supervision.store import AlarmStore

    url = parse_store_url(f"sqlite:///{tmp_path}/history.db")
    writer = HistoryWriter(lambda: open_store(url), Spool(tmp_path / "spool.db"), label="t")
    store = AlarmStore(tmp_path / "alarms.db")
    runner = MachineRunner(
        load_pipeline(PIPELINE), 25600.0, writer=writer, alarm_store=store, data_dir=tmp_path
    )
    try:
        spec = dataclasses.replace(quieter(SEEDS[2]), start_time=time.time() - 3.0)
        for c in Simulator(spec, chunk_samples=4096).chunks():
            runner._process(Chunk(c.data.astype(np.float32), c.fs, c.t0, c.channels))
        assert runner.stats.windows >= 30
        assert runner.last_hint and "check the sensor and its mounting" in runner.last_hint
        assert runner.engine.state is not None and runner.engine.state.state == "ok"
    finally:
        runner.engine.close(timeout=5)
        writer.close()
        store.close()
    with open_store(url) as st:
        events = [e for e in st.log("demo-pump", kinds=("events",)) if e.type == "below_baseline"]
    assert len(events) == 1 and events[0].severity == "info"


def test_the_hint_matches_the_rule_written_out_on_every_kind_of_row() -> None:
    # below_baseline settles the common row (no amplitude feature that low) with one
    # comparison; every other row goes the full way. Table: each row against the rule
    # written out plainly (QUIET_SHARE of the finite amplitude features at most -QUIET_Z).
    from pdm.scoring.quiet import QUIET_SHARE, QUIET_Z, amplitude_mask, below_baseline

    names = ["a.rms_g", "a.kurtosis", "a.velocity_rms_mm_s", "b.peak_g", "b.mean_g"]
    amp = amplitude_mask(names)
    q = -QUIET_Z - 0.5
    rows = [
        [0.0, 0.0, 0.0, 0.0, 0.0],  # healthy
        [q, -9.0, q, q, -9.0],  # all amplitudes quiet (shape and mean_g do not count)
        [q, 0.0, 0.0, 0.0, 0.0],  # one of three: not enough
        [q, 0.0, q, 0.0, 0.0],  # two of three
        [-np.inf, 0.0, 0.0, 0.0, 0.0],  # -inf is not finite: not counted, but no shortcut
        [np.nan, np.nan, q, np.nan, 0.0],  # the one finite amplitude is quiet
        [np.nan, 0.0, np.nan, np.nan, 0.0],  # no finite amplitude at all
        [-QUIET_Z, 0.0, -QUIET_Z, 0.0, 0.0],  # exactly at the limit counts
        [0.0, -9.0, 0.0, 0.0, -9.0],  # only non-amplitude features low
    ]
    for dtype in (np.float32, np.float64):
        z = np.asarray(rows, dtype=dtype)
        got = below_baseline(z, amp)
        for row, hint in zip(z.astype(np.float64), got, strict=True):
            a = row[amp]
            fin = np.isfinite(a)
            m, k = int(fin.sum()), int((fin & (a <= -QUIET_Z)).sum())
            if m > 0 and k >= QUIET_SHARE * m:
                assert hint is not None and (hint["features"], hint["of"]) == (k, m), row
                assert hint["median_z"] == round(float(np.median(a[fin])), 2)
            else:
                assert hint is None, row
        # one row at a time (the service) says what the batch says
        assert [below_baseline(z[i : i + 1], amp)[0] for i in range(len(z))] == got
