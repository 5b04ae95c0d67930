"""A teach-in that cannot learn a fault: trends and steps in the "healthy" windows.

Before this, a teach-in learnt whatever it saw: an outer-race fault that began while it
learnt became part of "healthy", and all 94 later fault windows scored ok (issue 17).
The simulated machines here are the project's simulator at several speeds and noise
levels; the rule's thresholds are physical and statistical (pdm/scoring/stationarity.py),
the same for every case.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm.config import Pipeline, load_pipeline
from pdm.errors import ModelError
from pdm.processing import FeatureStream
from pdm.scoring.card import read_card
from pdm.scoring.stationarity import MIN_CHANGE, find_departure, stationary_prefix
from pdm.scoring.stream import ScoreStream
from pdm.scoring.teachin import NEEDS_DECISION
from pdm.scoring.train import windows_needed
from pdm.sources.simulator import FaultSpec, SimSpec, Simulator

REPO = Path(__file__).resolve().parents[2]
FS = 25600.0
HEALTHY = FaultSpec("unbalance", 0.05)
T0 = 1767225600.0


def pipeline(
    tmp: Path,
    span_s: float,
    *,
    window: int = 4096,
    overlap: float = 0.5,
    rpm: float = 1480.0,
    detector: str = "mahalanobis",
    restarts: int = 2,
) -> Pipeline:
    data = load_pipeline(REPO / "pipelines" / "demo.toml").model_dump()
    data["acquisition"].update(window_samples=window, overlap=overlap)
    data["machine"]["speed"] = {"rpm": rpm}
    data["model"].update(
        path=str(tmp / "model"), teach_in_s=span_s, detector=detector, teach_in_restarts=restarts
    )
    return Pipeline.model_validate(data)


def run(pl: Pipeline, specs: list[SimSpec]) -> tuple[list[dict[str, Any]], ScoreStream]:
    """Score rows of the recordings ``specs`` one after the other, a window at a time."""
    fs = FeatureStream(pl, FS)
    stream = ScoreStream(pl, FS, Path(str(pl.model.path)), fs.extractor.names)
    rows: list[dict[str, Any]] = []
    for spec in specs:
        with Simulator(spec, chunk_samples=8192) as src:
            for wf in fs.feed(src.chunks()):
                rows += stream.process([wf])
    return rows, stream


def notes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r["teach_in"]
        for r in rows
        if isinstance(r.get("teach_in"), dict) and "action" in r["teach_in"]
    ]


def spec(
    duration_s: float, seed: int, *, rpm: float = 1480.0, noise: float = 0.02, **kw: Any
) -> SimSpec:
    """The demo machine at ``rpm``: its 1× scaled so that the velocity stays ~2.2 mm/s
    (ISO zone B: a teach-in never learns zone C or D windows)."""
    return SimSpec(
        duration_s=duration_s,
        rpm=rpm,
        noise_rms_g=noise,
        lsb_g=0.002,
        seed=seed,
        faults=(FaultSpec("unbalance", 0.05 * rpm / 1480.0),),
        **kw,
    )


def then(first: SimSpec, duration_s: float, seed: int, **kw: Any) -> SimSpec:
    """A recording that continues ``first`` seamlessly (time-wise) with other settings."""
    return dataclasses.replace(
        first,
        duration_s=duration_s,
        seed=seed,
        start_time=first.start_time + first.duration_s,
        **kw,
    )


# --------------------------------------------------------------------------- the rule itself


def _series(n: int, seed: int, d: int = 4) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n windows of d amplitude features, log-normal with 10 % spread, 0.08 s apart."""
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(0.0, 0.1, (n, d))) * 0.01
    return x, T0 + 0.08 * np.arange(n), [f"x_g.f{i}_g" for i in range(d)]


def test_stationary_windows_show_no_departure() -> None:
    for seed in range(20):
        x, t, names = _series(300, seed)
        assert find_departure(x, t, names) is None, seed
        assert stationary_prefix(x, t, names) == 300


def test_a_step_is_found_where_it_is_and_says_which_way() -> None:
    x, t, names = _series(300, 1)
    x[180:, 2] *= 1.6  # +4 dB from window 180
    dep = find_departure(x, t, names)
    assert dep is not None and (dep.kind, dep.direction, dep.feature) == ("step", "up", "x_g.f2_g")
    assert abs(dep.index - 180) <= 300 // 12 and dep.factor == pytest.approx(1.6, rel=0.08)
    assert "x_g.f2_g stepped up ×1.6" in dep.reason() and "threshold ×" in dep.reason()
    x[180:, 2] /= 1.6**2
    dep = find_departure(x, t, names)
    assert dep is not None and (dep.kind, dep.direction) == ("step", "down")
    # the windows before the step are stationary
    assert 150 <= stationary_prefix(x, t, names) <= 180


def test_a_trend_is_a_trend() -> None:
    x, t, names = _series(300, 2)
    x[150:, 0] *= np.exp(np.linspace(0.0, 1.5, 150))  # grows ×4.5 over the second half
    dep = find_departure(x, t, names)
    assert dep is not None and (dep.kind, dep.direction, dep.feature) == ("trend", "up", "x_g.f0_g")
    # The prefix ends about where the trend begins: its first ~segment (rising less than the
    # 25 % a departure needs) may stay in, nothing that would count as a change does.
    n = stationary_prefix(x, t, names)
    assert 150 - 300 // 12 <= n <= 150 + 300 // 12 + 5
    assert find_departure(x[:n], t[:n], names) is None


def test_changes_below_the_physical_and_statistical_floors_are_not_departures() -> None:
    # 20 % is below the 25 % that ISO 10816 calls significant, however steady the machine
    x, t, names = _series(600, 3)
    x[:, 1] = 0.01 * np.exp(np.random.default_rng(4).normal(0.0, 0.002, 600))  # 0.2 % spread
    x[300:, 1] *= 1.2
    assert find_departure(x, t, names) is None
    x[300:, 1] *= 1.25 / 1.2
    assert find_departure(x, t, names) is not None
    assert MIN_CHANGE == pytest.approx(math.log(1.25))
    # too few windows to judge at all
    assert find_departure(*_series(17, 5)) is None
    # shape and names must agree
    with pytest.raises(ValueError, match="do not match"):
        find_departure(x, t[:-1], names)


# ----------------------------------------------------------------- simulated teach-ins


def expected_learning_windows(pl: Pipeline, d: int) -> int:
    """How many windows the teach-in learnt before directions existed: the first window at
    whose end the span is covered and the detector has its windows (all valid)."""
    acq = pl.acquisition
    gap = math.ceil(acq.window_samples / acq.hop_samples) - 1
    need = windows_needed(pl.model.detector, d, pl.model.holdout, gap)
    assert pl.model.teach_in_s is not None
    first = math.ceil((pl.model.teach_in_s - acq.window_samples / FS) * FS / acq.hop_samples - 1e-9)
    return max(first + 1, need)


@pytest.mark.parametrize(
    ("rpm", "noise", "window", "overlap", "span"),
    [
        (1480.0, 0.02, 4096, 0.5, 3.5),
        (900.0, 0.005, 4096, 0.5, 3.5),
        (2950.0, 0.05, 4096, 0.5, 3.5),
        (1480.0, 0.02, 8192, 0.75, 10.0),
    ],
)
def test_a_stationary_machine_finishes_in_the_same_number_of_windows_as_before(
    tmp_path: Path, rpm: float, noise: float, window: int, overlap: float, span: float
) -> None:
    for seed in (11, 12, 13):
        d = tmp_path / str(seed)
        pl = pipeline(d, span, window=window, overlap=overlap, rpm=rpm)
        rows, stream = run(pl, [spec(span + 2.0, seed, rpm=rpm, noise=noise)])
        learning = sum(r["state"] == "learning" for r in rows)
        n_features = len(read_card(d / "model")["features"])
        assert stream.trained_here and learning == expected_learning_windows(pl, n_features)
        (note,) = notes(rows)
        assert note["action"] == "trained" and "verdict" not in note
        stationarity = read_card(d / "model")["training"]["files"][0]["stationarity"]
        assert stationarity == {
            "learnt": "stationary", "restarts": 0, "refused_windows": 0, "verdicts": []
        }  # fmt: skip


@pytest.mark.parametrize(("rpm", "noise"), [(1480.0, 0.02), (2950.0, 0.01), (900.0, 0.03)], ids=str)
def test_a_fault_that_begins_during_teach_in_is_not_learnt(
    tmp_path: Path, rpm: float, noise: float
) -> None:
    """An outer-race fault grows from the middle of a 20 s teach-in and is full-grown 2 s before
    its end: the model learns the windows before it, and the fault's later windows alert.
    (Before: 0 of the last 60 windows alerted, 1 at 900 r/min, on these same cases.)"""
    span = 20.0
    for seed in (21, 22):
        pl = pipeline(
            tmp_path / str(seed), span, window=8192, overlap=0.75, rpm=rpm, detector="gmm"
        )
        growing = FaultSpec("bpfo", 0.3, onset_s=span / 2, ramp_s=span / 2 - 2.0)
        base = spec(span + 12.0, seed, rpm=rpm, noise=noise)
        recording = dataclasses.replace(base, faults=(*base.faults, growing))
        rows, stream = run(pl, [recording])
        assert stream.trained_here
        (note,) = notes(rows)
        assert note["action"] == "trained" and note["direction"] == "up", note
        assert note["verdict"] in ("trend", "step") and "refused" in note["reason"]
        scored = [r for r in rows if r["state"] != "learning"]
        late = scored[-60:]
        assert sum(r["state"] in ("alert", "danger") for r in late) >= 0.95 * len(late)
        files = read_card(Path(str(pl.model.path)))["training"]["files"][0]
        # learnt on the part before the fault: the first half, and at most the fault's first
        # seconds, while it is still below what counts as a change (noisy machines: later)
        assert files["stationarity"]["learnt"] == "before a change"
        learnt_s = (
            np.datetime64(files["t_end"][:-1]) - np.datetime64(files["t_start"][:-1])
        ) / np.timedelta64(1, "s")
        assert 0.3 * span <= learnt_s <= 0.75 * span, learnt_s


def test_a_load_step_is_reported_as_a_step(tmp_path: Path) -> None:
    """Noise and 1× up 75 % and 10 % half-way (a load step; velocity stays in zone B)."""
    span = 20.0
    for seed in (31, 32):
        pl = pipeline(tmp_path / f"up{seed}", span, window=8192, overlap=0.75, detector="gmm")
        first = spec(span / 2, seed)
        louder = then(
            first, span, seed + 50, noise_rms_g=0.035, faults=(FaultSpec("unbalance", 0.055),)
        )
        rows, stream = run(pl, [first, louder])
        assert stream.trained_here
        (note,) = notes(rows)
        assert (note["verdict"], note["direction"], note["action"]) == ("step", "up", "trained")
        assert note["at"].startswith("2026-01-01T00:00:1")  # at the step, 10 s in
        assert "stepped up" in note["reason"] and "refused" in note["reason"]

        # a step down: the machine runs quieter from then on; that is learnt instead
        pl = pipeline(tmp_path / f"down{seed}", span, window=8192, overlap=0.75, detector="gmm")
        quieter = then(
            first,
            span * 1.5,
            seed + 60,
            noise_rms_g=0.0125,
            faults=(FaultSpec("unbalance", 0.045),),
        )
        rows, stream = run(pl, [first, quieter])
        assert stream.trained_here
        restarted, trained = notes(rows)
        assert (restarted["verdict"], restarted["direction"], restarted["action"]) == (
            "step",
            "down",
            "restarted",
        )
        assert trained["action"] == "trained" and "verdict" not in trained
        files = read_card(Path(str(pl.model.path)))["training"]["files"][0]
        assert files["t_start"] >= restarted["at"]  # only the quieter running was learnt
        assert files["stationarity"]["restarts"] == 1


def test_after_its_restarts_the_teach_in_asks_and_an_operator_decides(tmp_path: Path) -> None:
    span = 10.0
    pl = pipeline(tmp_path / "a", span, window=8192, overlap=0.75, detector="gmm", restarts=0)
    first = spec(span / 2, 41)
    quieter = then(first, span, 42, noise_rms_g=0.0125, faults=(FaultSpec("unbalance", 0.045),))
    rows, stream = run(pl, [first, quieter])
    (asked,) = notes(rows)
    assert (
        asked["action"] == "needs_decision"
        and "accept the windows collected, or restart" in asked["reason"]
    )
    assert not stream.trained_here and rows[-1]["teach_in"] == {"state": NEEDS_DECISION}
    status = stream.teach_in_status()
    assert status is not None and status["state"] == NEEDS_DECISION and status["reason"]
    teach = stream.teach
    assert teach is not None
    with pytest.raises(ValueError, match="one of accept, restart"):
        teach.decide("maybe", "ana")
    with pytest.raises(ValueError, match="name"):
        teach.decide("accept", "  ")
    assert "accepted by ana" in teach.decide("accept", "ana", "load changed on purpose")
    more = then(quieter, 1.0, 43, noise_rms_g=0.0125, faults=(FaultSpec("unbalance", 0.045),))
    rows, _ = run_more(stream, pl, more)
    (took,) = notes(rows)
    assert (
        took["action"] == "trained"
        and took["by"] == "ana"
        and "load changed on purpose" in took["reason"]
    )
    assert stream.trained_here and all(r["state"] != "learning" for r in rows)
    files = read_card(Path(str(pl.model.path)))["training"]["files"][0]
    assert files["stationarity"]["learnt"] == "accepted by ana"

    # restart: everything collected goes, learning starts again (and accept is refused meanwhile)
    pl = pipeline(tmp_path / "b", span, window=8192, overlap=0.75, detector="gmm", restarts=0)
    rows, stream = run(pl, [first, quieter])
    teach = stream.teach
    assert teach is not None and teach.state == NEEDS_DECISION
    teach.decide("restart", "bo")
    rows, _ = run_more(stream, pl, more)
    (restart,) = notes(rows)
    assert restart["action"] == "decided" and "restarted by bo" in restart["reason"]
    assert teach.state == "learning" and teach.restarts == 0 and len(teach.collected) < 15
    with pytest.raises(ValueError, match="nothing to accept"):
        teach.decide("accept", "bo")


def run_more(stream: ScoreStream, pl: Pipeline, spec_: SimSpec) -> tuple[list[dict[str, Any]], Any]:
    """Go on with the same stream: a fresh FeatureStream is fine (its windows are new ones)."""
    fs = FeatureStream(pl, FS)
    rows: list[dict[str, Any]] = []
    with Simulator(spec_, chunk_samples=8192) as src:
        for wf in fs.feed(src.chunks()):
            rows += stream.process([wf])
    return rows, None


def test_the_service_shows_the_teach_in_and_takes_a_decision(tmp_path: Path) -> None:
    """In-process service (simulator-fed) on a pipeline that learns: /status and the API."""
    import httpx

    from pdm.history import parse_store_url
    from pdm.service.api import ControlAPI
    from pdm.service.app import Service, ServiceOptions

    text = (REPO / "pipelines" / "demo.toml").read_text()
    text = text.replace('path = "../models/demo-pump"', f'path = "{tmp_path}/models/demo-pump"')
    text = text.replace("teach_in_s = 60.0", "teach_in_s = 3600.0")
    (tmp_path / "pump.toml").write_text(text)
    opts = ServiceOptions(
        store=parse_store_url(f"sqlite:///{tmp_path}/h.db"),
        data_dir=tmp_path / "d",
        api=None,
        simulate=True,
    )
    app = Service([load_pipeline(tmp_path / "pump.toml")], opts)
    app.start()
    try:
        with (
            ControlAPI(app, port=0, timeout_s=5.0) as api,
            httpx.Client(base_url=api.url, timeout=10.0, trust_env=False) as c,
        ):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                st = c.get("/status/demo-pump").json()
                if st["teach_in"] and st["teach_in"]["windows"] >= 3:
                    break
                time.sleep(0.1)
            assert st["learning"] and st["teach_in"]["state"] == "learning"
            assert st["teach_in"]["span_s"] == 3600.0 and st["teach_in"]["restarts"] == 0
            r = c.post("/models/demo-pump/teach-in-accept", json={"by": "ana"})
            assert r.status_code == 400 and "nothing to accept" in r.json()["error"]
            r = c.post(
                "/models/demo-pump/teach-in-restart", json={"by": "ana", "comment": "new bearing"}
            )
            assert r.status_code == 200, r.text
            assert "restart by ana" in r.json()["message"]
            assert c.get("/models/demo-pump/teach-in-restart").status_code == 405
            assert c.post("/models/nope/teach-in-restart", json={"by": "a"}).status_code == 404
    finally:
        app.stop()


@pytest.mark.parametrize("what", ["file", "directory-of-things"])
def test_teach_in_refuses_a_model_path_it_could_not_write_before_learning(
    tmp_path: Path, what: str
) -> None:
    """A model path holding a file, or a directory of other things, was learnt into for
    teach_in_s (up to 30 days) and refused only when the model was written."""
    pl = pipeline(tmp_path, 5.0)
    out = tmp_path / "model"
    if what == "file":
        out.write_text("x")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match=r"not a directory|a directory of other things"):
        ScoreStream(pl, FS, out, FeatureStream(pl, FS).extractor.names)


def test_teach_in_learns_into_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()  # made by an installer, say
    stream = ScoreStream(pipeline(tmp_path, 5.0), FS, tmp_path / "model", ())
    assert stream.learning
