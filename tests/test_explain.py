"""Diagnosis rules (pdm.scoring.explain) on the real DSP path: simulator and CWRU recordings.

Every vector comes from a recording run through :class:`pdm.processing.FeatureStream`
and scored against a healthy baseline of the same machine (:class:`Preprocess`).
The CWRU recordings are read in place from ../shared/datasets/cwru (never
copied); those tests skip with the reason when the folder is absent.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pdm.config import Pipeline, load_pipeline
from pdm.processing import FeatureStream, open_recording
from pdm.scoring.explain import DIAGNOSES, Evidence, diagnose, top_features
from pdm.scoring.preprocess import Preprocess
from pdm.scoring.vector import FeatureVectorizer, vector_names
from pdm.sources.base import Chunk
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
CWRU = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cwru"

Matrix = npt.NDArray[np.float64]
RACES = {"bearing_outer_race", "bearing_inner_race"}


# --------------------------------------------------------------------------- helpers


def pipeline_with_window(src: Path, window: int, out_dir: Path) -> Pipeline:
    """A copy of pipeline ``src`` with ``acquisition.window_samples = window`` and overlap 0.5."""
    data = load_pipeline(src).model_dump()
    data["acquisition"].update(window_samples=window, overlap=0.5)
    return Pipeline.model_validate(data)


def model_vectors(stream: FeatureStream, chunks) -> tuple[tuple[str, ...], Matrix]:
    """Qualified model feature names and the (n_windows, d) raw vectors of a stream."""
    frames = [wf.features for wf in stream.feed(chunks)]
    ex = stream.extractor
    channels = tuple(c.name for c in ex.channels)
    names = vector_names(channels, ex.names)
    return names, FeatureVectorizer(names, channels, ex.names).matrix(frames).astype(np.float64)


def sim_vectors(pipeline: Pipeline, spec: SimSpec) -> tuple[tuple[str, ...], Matrix]:
    chunk = Chunk(simulate(spec).astype(np.float64), spec.fs, spec.start_time, spec.channels)
    return model_vectors(FeatureStream(pipeline, spec.fs), [chunk])


def recording_vectors(path: Path, pipeline: Pipeline) -> tuple[tuple[str, ...], Matrix]:
    rec, pl = open_recording(path, pipeline)
    with rec:
        return model_vectors(FeatureStream(pl, rec.sample_rate_hz), rec.chunks())


def judge(
    names: tuple[str, ...], x: Matrix, z: Matrix, channel: str | None = None
) -> list[Evidence]:
    """One diagnosis per window, from all channels or from ``channel``'s features only."""
    keep = [i for i, n in enumerate(names) if channel is None or n.startswith(f"{channel}.")]
    sub = [names[i] for i in keep]
    return [diagnose(sub, x[w, keep], z[w, keep]) for w in range(x.shape[0])]


def share(evidence: list[Evidence], labels: set[str]) -> float:
    return sum(e.label in labels for e in evidence) / len(evidence)


def counts(evidence: list[Evidence]) -> dict[str, int]:
    return dict(collections.Counter(e.label for e in evidence).most_common())


# --------------------------------------------------------------------------- simulator

SIM_BASE = SimSpec(duration_s=10.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Pipeline, Preprocess]:
    """The demo pipeline (16384-sample windows, overlap 0.5) and a 30 s healthy baseline (seed 1)."""
    pipeline = load_pipeline(PIPELINES / "demo.toml")
    names, x = sim_vectors(pipeline, dataclasses.replace(SIM_BASE, duration_s=30.0, seed=1))
    return pipeline, Preprocess.fit(x, names)


SIM_CASES = [
    # (fault, seed, labels accepted, least share of windows)
    ((), 2, {"unknown"}, 0.95),
    ((FaultSpec("bpfo", 0.15),), 3, {"bearing_outer_race"}, 0.9),
    ((FaultSpec("bpfi", 0.15),), 4, {"bearing_inner_race"}, 0.9),
    ((FaultSpec("bsf", 0.15),), 5, {"bearing_ball", "bearing_uncertain"}, 0.9),
    ((FaultSpec("ftf", 0.15),), 6, {"bearing_cage", "bearing_uncertain"}, 0.9),
    ((FaultSpec("unbalance", 0.05),), 7, {"unbalance"}, 0.9),
    ((FaultSpec("misalignment", 0.05),), 8, {"misalignment"}, 0.9),
    ((FaultSpec("looseness", 0.05),), 9, {"looseness"}, 0.9),
]


@pytest.mark.parametrize(
    ("faults", "seed", "accepted", "least"),
    SIM_CASES,
    ids=[c[0][0].kind if c[0] else "healthy" for c in SIM_CASES],
)
def test_simulated_faults_are_diagnosed(demo, faults, seed, accepted, least) -> None:
    pipeline, pre = demo
    names, x = sim_vectors(pipeline, dataclasses.replace(SIM_BASE, faults=faults, seed=seed))
    assert names == pre.names and x.shape[0] >= 25
    evidence = judge(names, x, pre.transform(x))
    got = counts(evidence)
    assert share(evidence, accepted) >= least, got
    assert all(e.label in DIAGNOSES and e.reasons for e in evidence)
    if faults and faults[0].kind in ("bsf", "ftf"):
        assert not RACES & set(got), got  # never a race for a ball or cage fault


def test_bpfo_evidence_names_the_line_with_numbers(demo) -> None:
    pipeline, pre = demo
    spec = dataclasses.replace(SIM_BASE, duration_s=2.0, faults=(FaultSpec("bpfo", 0.15),))
    names, x = sim_vectors(pipeline, spec)
    e = diagnose(names, x[0], pre.transform(x)[0])
    assert e.label == "bearing_outer_race" and e.channel in ("x_g", "y_g")
    head = e.reasons[0]
    assert head.startswith(f"{e.channel}: env_bpfo_g ") and " g, z=+" in head
    assert "× the next defect line" in head


def test_top_features_of_an_incipient_bpfo_fault_lead_with_the_bpfo_line(demo) -> None:
    """Impacts of 2 × the noise rms: the outer-race envelope line is first or second in most windows.

    Measured on seeds 10–13: 67–100 % of windows. From ~0.05 g impacts on, kurtosis
    and the high-band RMS move further (in z) than any envelope line and lead the
    list; the diagnosis still names the line (test above).
    """
    pipeline, pre = demo
    spec = dataclasses.replace(SIM_BASE, faults=(FaultSpec("bpfo", 0.04),), seed=10)
    names, x = sim_vectors(pipeline, spec)
    z = pre.transform(x)
    hits = 0
    for w in range(x.shape[0]):
        top = top_features(names, x[w], z[w])
        assert len(top) == 5 and [set(t) for t in top] == [{"feature", "value", "z"}] * 5
        i = names.index(top[0]["feature"])
        assert top[0]["value"] == pytest.approx(x[w, i]) and top[0]["z"] == pytest.approx(z[w, i])
        assert abs(top[0]["z"]) >= abs(top[-1]["z"])
        hits += any(".env_bpfo" in t["feature"] for t in top[:2])
    assert hits > 0.5 * x.shape[0]


def test_short_windows_stay_conservative(demo, tmp_path) -> None:
    """8192-sample windows: the FTF line (3.2 bins) picks up the envelope's DC; never a wrong type."""
    pipeline = pipeline_with_window(PIPELINES / "demo.toml", 8192, tmp_path)
    names, x = sim_vectors(pipeline, dataclasses.replace(SIM_BASE, seed=1, duration_s=20.0))
    pre = Preprocess.fit(x, names)
    for kind, right in (("bpfo", "bearing_outer_race"), ("bpfi", "bearing_inner_race")):
        spec = dataclasses.replace(SIM_BASE, faults=(FaultSpec(kind, 0.15),), seed=11)
        _, xf = sim_vectors(pipeline, spec)
        got = counts(judge(names, xf, pre.transform(xf)))
        assert set(got) <= {right, "bearing_uncertain"}, got


def test_short_windows_name_the_outer_race(tmp_path) -> None:
    pipeline = pipeline_with_window(PIPELINES / "demo.toml", 8192, tmp_path)
    names, x = sim_vectors(pipeline, dataclasses.replace(SIM_BASE, seed=1, duration_s=20.0))
    pre = Preprocess.fit(x, names)
    _, xf = sim_vectors(
        pipeline, dataclasses.replace(SIM_BASE, faults=(FaultSpec("bpfo", 0.15),), seed=11)
    )
    assert share(judge(names, xf, pre.transform(xf)), {"bearing_outer_race"}) >= 0.9


# --------------------------------------------------------------------------- CWRU


@pytest.fixture(scope="module")
def cwru_dir() -> Path:
    if not (CWRU / "de12k").is_dir():
        pytest.skip(f"CWRU recordings not found at {CWRU} (see ../shared/datasets/cwru/README.md)")
    return CWRU


NORMAL = {"de12k": "normal_0hp_part1of2_from48k.csv", "de48k": "normal_0hp_part1of2.csv"}
# 4096 samples at 12 kHz and 16384 at 48 kHz both span 0.34 s (2.9 Hz bins).
SETUPS = [("de12k", 4096), ("de48k", 16384), ("de48k", 4096)]


@pytest.fixture(scope="module", params=SETUPS, ids=[f"{f}-{w}" for f, w in SETUPS])
def cwru_case(request, cwru_dir, tmp_path_factory):
    """(folder, window, names, baseline, held-out normal (x, z), {fault: (x, z)})."""
    folder, window = request.param
    pipeline = pipeline_with_window(
        PIPELINES / "cwru_drive_end.toml", window, tmp_path_factory.mktemp("cwru")
    )
    names, xn = recording_vectors(cwru_dir / folder / NORMAL[folder], pipeline)
    n = xn.shape[0]
    assert n >= 15
    # First 60 % fit the baseline; the last 30 % (after a gap) are held out.
    pre = Preprocess.fit(xn[: int(0.6 * n)], names)
    held = xn[round(0.7 * n) :]
    faults = {}
    for stem in ("IR007_0hp", "OR007at6_0hp", "B007_0hp"):
        fnames, xf = recording_vectors(cwru_dir / folder / f"{stem}.csv", pipeline)
        assert fnames == names
        faults[stem] = (xf, pre.transform(xf))
    return folder, window, names, (held, pre.transform(held)), faults


def majority(evidence: list[Evidence]) -> str:
    return collections.Counter(e.label for e in evidence).most_common(1)[0][0]


# 48 kHz with 4096 samples: 11.7 Hz bins. A defect line is read as the largest Hann lobe
# (±2 bins) within ±1 bin of its frequency, so it reaches ±35 Hz. The ball line, 2×BSF
# (141 Hz on the 6205 at 1797 r/min), is 34 Hz above BPFO (107 Hz) and 21 Hz below BPFI
# (162 Hz): it reads the race fault's own line (measured: env_bsf_2x_g 1.19 g where the
# envelope spectrum at 141 Hz holds 0.07 g, next to BPFO 1.27 g), no race line stands out
# 2× and the windows read "bearing_uncertain". The running speed found in 11.7 Hz bins is
# also off by up to 4 %. A resolution limit, not a rule to tune: 16384 samples at 48 kHz
# (the same 0.34 s as 4096 at 12 kHz) name both faults.
RESOLUTION = (
    "48 kHz / 4096 samples: 11.7 Hz bins; the 2xBSF line reads the BPFO/BPFI line 2-3 bins away"
)


@pytest.mark.dataset
@pytest.mark.parametrize(
    ("stem", "expected"),
    [("IR007_0hp", "bearing_inner_race"), ("OR007at6_0hp", "bearing_outer_race")],
)
def test_cwru_race_faults_are_named_on_the_drive_end(cwru_case, stem, expected) -> None:
    folder, window, names, _held, faults = cwru_case
    if (folder, window) == ("de48k", 4096):
        pytest.xfail(RESOLUTION)
    x, z = faults[stem]
    de = judge(names, x, z, channel="DE_g")
    assert majority(de) == expected, counts(de)
    # Both channels together point at the drive end too (the fan end's lines are weaker).
    both = judge(names, x, z)
    assert majority(both) == expected and share(both, {expected}) > 0.5, counts(both)
    assert all(e.channel == "DE_g" for e in both if e.label == expected)


@pytest.mark.dataset
def test_cwru_ball_fault_is_never_called_a_race_fault(cwru_case) -> None:
    _folder, _window, names, _held, faults = cwru_case
    x, z = faults["B007_0hp"]
    de = judge(names, x, z, channel="DE_g")
    assert majority(de) not in RACES, counts(de)


@pytest.mark.dataset
def test_cwru_held_out_normal_is_unknown(cwru_case) -> None:
    _folder, _window, names, (x, z), _faults = cwru_case
    de = judge(names, x, z, channel="DE_g")
    assert share(de, {"unknown"}) > 0.5, counts(de)


# --------------------------------------------------------------------------- rules, by hand


def vec(channel: str = "x_g", **features: tuple[float, float]):
    names = [f"{channel}.{k}" for k in features]
    values = np.array([v for v, _ in features.values()])
    z = np.array([zz for _, zz in features.values()])
    return names, values, z


QUIET = {
    "env_bpfo_g": (0.001, 0.5),
    "env_bpfo_2x_g": (0.001, 0.1),
    "env_bpfi_g": (0.001, -0.3),
    "env_bpfi_2x_g": (0.001, 0.2),
    "env_bsf_2x_g": (0.001, 0.0),
    "env_ftf_g": (0.001, 0.4),
    "order_0_5x_g": (0.001, 0.0),
    "order_1x_g": (0.002, 0.3),
    "order_2x_g": (0.001, -0.2),
    "order_3x_g": (0.001, 0.1),
    "kurtosis": (3.0, 0.2),
    "rms_g": (0.02, 1.0),
}


def test_nothing_elevated_is_unknown() -> None:
    e = diagnose(*vec(**QUIET))
    assert e == Evidence("unknown", None, e.reasons)
    assert "rms_g" in e.reasons[0] and "z=+1.0" in e.reasons[0]
    assert diagnose([], [], []).label == "unknown"
    assert diagnose(*vec(**{**QUIET, "rms_g": (0.2, 9.0)})).label == "unknown"  # no signature


def test_a_line_must_stand_out_twice_over_the_others() -> None:
    at = diagnose(*vec(**{**QUIET, "env_bpfo_g": (0.002, 6.0)}))
    assert at.label == "bearing_outer_race" and at.channel == "x_g"
    just_under = diagnose(*vec(**{**QUIET, "env_bpfo_g": (0.0019, 6.0)}))
    assert just_under.label == "bearing_uncertain"
    alone = diagnose(*vec(env_bpfo_g=(0.01, 9.0)))  # nothing to compare with: no type
    assert alone.label == "bearing_uncertain"


def test_harmonics_support_but_are_not_compared() -> None:
    # 2×BPFI (≈ 3×BPFO on a 6205) may be large under an outer-race fault.
    f = {**QUIET, "env_bpfo_g": (0.05, 15.0), "env_bpfi_2x_g": (0.06, 16.0)}
    e = diagnose(*vec(**f))
    assert e.label == "bearing_outer_race"
    assert any("env_bpfo_2x_g" in r and "not elevated" in r for r in e.reasons)


def test_cage_needs_a_lone_ftf_line_and_its_harmonic() -> None:
    ftf = {**QUIET, "env_ftf_g": (0.01, 8.0)}
    assert diagnose(*vec(**ftf)).label == "bearing_uncertain"
    assert diagnose(*vec(**ftf, env_ftf_2x_g=(0.004, 5.0))).label == "bearing_cage"
    busy = {**ftf, "env_bpfi_g": (0.004, 5.0), "env_ftf_2x_g": (0.004, 5.0)}
    assert diagnose(*vec(**busy)).label == "bearing_uncertain"


def test_impulsiveness_with_rising_lines_is_an_uncertain_bearing() -> None:
    f = {**QUIET, "kurtosis": (6.0, 20.0), "env_bpfi_g": (0.0015, 2.5)}
    assert diagnose(*vec(**f)).label == "bearing_uncertain"
    assert diagnose(*vec(**{**f, "env_bpfi_g": (0.0011, 1.0)})).label == "unknown"


@pytest.mark.parametrize(
    ("orders", "label"),
    [
        ({"order_1x_g": (0.1, 20.0)}, "unbalance"),
        ({"order_1x_g": (0.1, 20.0), "order_2x_g": (0.06, 9.0)}, "unknown"),  # 1× not dominant
        ({"order_1x_g": (0.05, 10.0), "order_2x_g": (0.06, 9.0)}, "misalignment"),
        ({"order_0_5x_g": (0.03, 8.0), "order_3x_g": (0.05, 7.0)}, "looseness"),
        (
            {"order_1x_g": (0.1, 20.0), "order_2x_g": (0.08, 9.0), "order_3x_g": (0.05, 7.0)},
            "looseness",
        ),
    ],
)
def test_running_speed_rules(orders, label) -> None:
    assert diagnose(*vec(**{**QUIET, **orders})).label == label


def test_bearing_named_unless_running_speed_is_clearly_stronger() -> None:
    f = {**QUIET, "env_bpfo_g": (0.05, 10.0), "order_1x_g": (0.1, 19.0)}
    e = diagnose(*vec(**f))
    assert e.label == "bearing_outer_race" and any("also unbalance" in r for r in e.reasons)
    assert diagnose(*vec(**{**f, "order_1x_g": (0.1, 21.0)})).label == "unbalance"
    uncertain = {**QUIET, "env_bpfo_g": (0.05, 10.0), "env_bpfi_g": (0.04, 9.0)}
    weaker = {**uncertain, "order_1x_g": (0.1, 9.0)}
    assert diagnose(*vec(**weaker)).label == "bearing_uncertain"
    assert diagnose(*vec(**{**weaker, "order_1x_g": (0.1, 11.0)})).label == "unbalance"


def test_strongest_channel_wins_and_others_are_reported() -> None:
    n1, v1, z1 = vec("x_g", **{**QUIET, "env_bpfi_g": (0.02, 12.0)})
    n2, v2, z2 = vec("y_g", **{**QUIET, "order_1x_g": (0.1, 30.0)})
    e = diagnose(n1 + n2, np.r_[v1, v2], np.r_[z1, z2])
    assert (e.label, e.channel) == ("unbalance", "y_g")
    assert "x_g bearing_inner_race (z=+12.0)" in e.reasons[-1]


def test_non_finite_and_absent_features_are_ignored() -> None:
    f = {**QUIET, "env_bpfi_g": (0.02, 12.0), "env_ftf_g": (float("nan"), float("nan"))}
    names, v, z = vec(**f)
    assert diagnose(names, v, z).label == "bearing_inner_race"
    only_orders = {k: vz for k, vz in QUIET.items() if k.startswith("order_")}
    assert diagnose(*vec(**{**only_orders, "order_1x_g": (0.1, 9.0)})).label == "unbalance"
    assert diagnose(*vec(**{**QUIET, "env_bpfo_g": (0.05, -30.0)})).label == "unknown"


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        diagnose(["x_g.rms_g"], [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="z_min"):
        diagnose(["x_g.rms_g"], [1.0], [1.0], z_min=0.0)
    with pytest.raises(ValueError, match=r"3\.\.5"):
        top_features(["a.b"] * 3, np.ones(3), np.ones(3), k=6)


def test_top_features_order_and_finite_only() -> None:
    names = ["a.u", "a.v", "a.w", "a.x", "a.y"]
    values = [1.0, 2.0, 3.0, float("inf"), 5.0]
    z = [1.0, -7.0, float("nan"), 50.0, 3.0]
    top = top_features(names, np.array(values), np.array(z), k=3)
    assert top == [
        {"feature": "a.v", "value": 2.0, "z": -7.0},
        {"feature": "a.y", "value": 5.0, "z": 3.0},
        {"feature": "a.u", "value": 1.0, "z": 1.0},
    ]
    assert all(type(t["value"]) is float and type(t["z"]) is float for t in top)
    assert len(top_features(names, np.array(values), np.array(z), k=5)) == 3
