"""Detectors and their ONNX export: parity with scikit-learn, batching, errors, latency.

Training data come from the repository's own fixtures through the real DSP
path (pipeline → recording → FeatureStream → FeatureVectorizer), with 4096-
sample windows overlapping 75 % so 12 s of healthy signal give ~300 windows.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdm.config import load_pipeline
from pdm.processing import FeatureStream, open_recording
from pdm.scoring.detectors import DETECTORS, FittedDetector, fit_detector, raw_scores
from pdm.scoring.export import _float32_at_or_below, build_model, onnx_raw_reference
from pdm.scoring.preprocess import Preprocess
from pdm.scoring.vector import FeatureVectorizer, vector_names

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
RTOL = 1e-5


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A CPU session with one intra-op thread, as on the appliance."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@dataclass
class Data:
    names: tuple[str, ...]
    healthy: np.ndarray
    faults: np.ndarray  # outer race then inner race windows


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    text = (REPO / "pipelines" / "demo.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^window_samples\s*=.*$", "window_samples = 4096", text)
    text = re.sub(r"(?m)^overlap\s*=.*$", "overlap = 0.75", text)
    path = tmp_path_factory.mktemp("pipeline") / "short.toml"
    path.write_text(text, encoding="utf-8")
    pl0 = load_pipeline(path)
    assert pl0.acquisition.window_samples == 4096
    matrices, names = {}, None
    for name in ("healthy", "outer_race", "inner_race"):
        rec, pl = open_recording(FIXTURES / f"{name}.csv.gz", pl0)
        try:
            frames = list(FeatureStream(pl, rec.sample_rate_hz).feed(rec.chunks()))
        finally:
            rec.close()
        available = tuple(frames[0].features.names)
        names = vector_names(pl.columns, available)
        vec = FeatureVectorizer(names, tuple(pl.columns), available)
        matrices[name] = vec.matrix([wf.features for wf in frames if wf.features.valid])
    assert names is not None
    # 4096 samples resolve 6.25 Hz: the ½× order and the cage (FTF) line are
    # NaN at this window length; a model would not be trained on them.
    keep = np.isfinite(matrices["healthy"]).all(axis=0)
    assert keep.sum() >= 20
    kept = tuple(np.asarray(names)[keep].tolist())
    healthy = matrices["healthy"][:, keep]
    faults = np.concatenate([matrices["outer_race"][:, keep], matrices["inner_race"][:, keep]])
    assert healthy.shape[0] >= 250
    assert np.isfinite(faults).all()
    return Data(kept, healthy, faults)


@dataclass
class Exported:
    pre: Preprocess
    det: FittedDetector
    offset: float
    span: float
    model: onnx.ModelProto
    sess: ort.InferenceSession

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw score by onnxruntime: score · span + offset."""
        score = self.sess.run(["score"], {"features": np.asarray(x, dtype=np.float32)})[0]
        return score.astype(np.float64) * self.span + self.offset


def export(pre: Preprocess, det: FittedDetector, z_train: np.ndarray) -> Exported:
    r = raw_scores(det, z_train)
    offset = float(np.median(r))
    span = float(np.percentile(r, 99) - offset)
    model = build_model(pre, det, offset=offset, span=span, metadata={"machine": "demo-pump"})
    return Exported(pre, det, offset, span, model, session(model))


@pytest.fixture(scope="module")
def exported(data: Data) -> dict[str, Exported]:
    pre = Preprocess.fit(data.healthy, data.names)
    z = pre.detector_input(data.healthy)  # what the graph's detectors read
    return {kind: export(pre, fit_detector(kind, z), z) for kind in DETECTORS}


def assert_raw_parity(ex: Exported, x: np.ndarray) -> None:
    # 1e-5 relative to the raw score, or to the calibration span where a
    # log-likelihood crosses zero (relative error is meaningless there and
    # the score is what the alarm sees).
    np.testing.assert_allclose(
        ex.raw(x), onnx_raw_reference(ex.pre, ex.det, x), rtol=RTOL, atol=RTOL * ex.span
    )


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("kind", DETECTORS)
def test_parity_healthy_and_faults(kind: str, data: Data, exported: dict[str, Exported]) -> None:
    ex = exported[kind]
    for x in (data.healthy, data.faults):
        assert_raw_parity(ex, x)
        score, z = ex.sess.run(None, {"features": x})
        assert score.dtype == np.float32 and score.shape == (len(x),)
        assert z.dtype == np.float32 and z.shape == x.shape
        np.testing.assert_allclose(z, ex.pre.transform(x), rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("kind", DETECTORS)
def test_fault_windows_score_above_threshold(
    kind: str, data: Data, exported: dict[str, Exported]
) -> None:
    """Sanity: bearing faults are far outside the healthy baseline (alert threshold 1.0)."""
    ex = exported[kind]
    healthy = ex.sess.run(["score"], {"features": data.healthy})[0]
    faults = ex.sess.run(["score"], {"features": data.faults})[0]
    assert np.mean(healthy > 1.0) <= 0.02  # p99 calibration
    assert np.median(faults) > 1.0


@pytest.mark.parametrize("kind", DETECTORS)
def test_batch_1_and_64_identical(kind: str, data: Data, exported: dict[str, Exported]) -> None:
    ex = exported[kind]
    x = np.concatenate([data.healthy[:32], data.faults[::9][:32]])
    assert len(x) == 64
    batch = ex.sess.run(None, {"features": x})
    single = [ex.sess.run(None, {"features": x[i : i + 1]}) for i in range(len(x))]
    np.testing.assert_array_equal(batch[0], np.concatenate([s[0] for s in single]))
    np.testing.assert_array_equal(batch[1], np.concatenate([s[1] for s in single]))
    empty = ex.sess.run(None, {"features": x[:0]})
    assert empty[0].shape == (0,) and empty[1].shape == (0, x.shape[1])


def test_gmm_on_fewer_than_5d_windows_is_one_ledoit_wolf_gaussian(data: Data) -> None:
    """Below 5·d windows no full covariance is supported (docs/models.md, "Few healthy
    windows"): one Gaussian with the Ledoit-Wolf covariance (+ the ridge), whose negative
    log-likelihood is half its squared Mahalanobis distance plus a constant; the graph
    reproduces it."""
    from sklearn.covariance import LedoitWolf

    x = data.healthy[:60]
    pre = Preprocess.fit(x, data.names)
    z = pre.detector_input(x)
    n, d = z.shape
    assert d + 2 <= n < 5 * d
    det = fit_detector("gmm", z)
    assert det.params["covariance"] == "ledoit-wolf" and det.params["n_components"] == 1
    lw = LedoitWolf().fit(z)
    cov = lw.covariance_ + 1e-3 * np.eye(d)
    np.testing.assert_allclose(det.estimator.covariances_[0], cov, rtol=1e-12)
    zz = pre.detector_input(np.concatenate([data.healthy, data.faults]))
    diff = zz - lw.location_
    half_d2 = 0.5 * np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff)
    raw = raw_scores(det, zz)
    np.testing.assert_allclose(raw - half_d2, np.full(len(zz), raw[0] - half_d2[0]), atol=1e-6)
    ex = export(pre, det, z)
    for rows in (data.healthy, data.faults):
        assert_raw_parity(ex, rows)


def test_gmm_several_components_parity() -> None:
    """The K > 1 path (Gemm → Reshape → ReduceLogSumExp) on clearly clustered data.

    The far points have log-likelihoods around −1e6: a log-sum-exp without the
    max shift would give −inf there.
    """
    rng = np.random.default_rng(3)
    d = 6
    centers = np.array([[0.0] * d, [6.0] * d, [-6.0, 6.0] * (d // 2)])
    x = np.concatenate([c + rng.standard_normal((150, d)) for c in centers])
    names = [f"a.s{i}" for i in range(d)]  # shape-factor names: no log
    pre = Preprocess.fit(x, names)
    z = pre.transform(x)
    det = fit_detector("gmm", z, seed=1)
    assert det.params["candidates"] == [1, 2, 3, 4]
    assert det.params["n_components"] == 3
    ex = export(pre, det, z)
    assert any(n.op_type == "ReduceLogSumExp" for n in ex.model.graph.node)
    far = np.concatenate([x[:5] + 1e3, x[:5] - 3e3])
    assert (onnx_raw_reference(pre, det, far) > 1e5).all()
    for xx in (x, far):
        assert_raw_parity(ex, xx)


# ------------------------------------------------------------ isolation forest exactness


@settings(max_examples=300, deadline=None)
@given(
    t=st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**100), max_value=2.0**100),
    x=st.floats(allow_nan=False, width=32, min_value=-(2.0**100), max_value=2.0**100),
)
def test_float32_threshold_rounding(t: float, x: float) -> None:
    """float32 x <= float64 t exactly when x <= the float32 at or below t."""
    t32 = _float32_at_or_below(np.array([t]))[0]
    assert float(t32) <= t
    assert float(np.nextafter(t32, np.float32(np.inf))) > t  # compared in float64
    x32 = np.float32(x)
    assert (float(x32) <= t) == bool(x32 <= t32)
    for near in (t32, np.nextafter(t32, np.float32(np.inf))):
        assert (float(near) <= t) == bool(near <= t32)


@pytest.mark.parametrize("clipped", [(), (0, 2, 3)], ids=["no-clip", "some-up"])
def test_iforest_windows_on_split_thresholds(clipped: tuple[int, ...]) -> None:
    """Windows sitting exactly on a float32 neighbour of a split go scikit-learn's way.

    The preprocess is the identity (no log, center 0, scale 1) so the graph's
    float32 z equals the window, and each probe window puts one feature on the
    float32 just below or just above one of the forest's thresholds. With some
    features ``up`` (clipped at 0 by a ``Max`` node) the probes below 0 land on 0,
    in the graph as in the reference.
    """
    rng = np.random.default_rng(5)
    d = 5
    names = tuple(f"a.s{i}" for i in range(d))
    z_floor = np.full(d, -np.inf, dtype=np.float32)
    z_floor[list(clipped)] = 0.0
    pre = Preprocess(
        names,
        np.zeros(d, dtype=bool),
        np.ones(d, dtype=np.float32),
        np.zeros(d, dtype=np.float32),
        np.ones(d, dtype=np.float32),
        z_floor,
    )
    z = pre.clip(rng.standard_normal((200, d)).astype(np.float32).astype(np.float64))
    det = fit_detector("iforest", z, seed=2)
    ex = export(pre, det, z)
    z32 = z.astype(np.float32)
    probes = []
    for est in det.estimator.estimators_[:20]:
        tree = est.tree_
        through = est.decision_path(z32).tocsc()
        for node in np.flatnonzero(tree.children_left >= 0)[:10]:
            # A training window whose path reaches this split, moved onto it.
            row = z32[through[:, node].nonzero()[0][0]]
            below = _float32_at_or_below(np.array([tree.threshold[node]]))[0]
            for v in (below, np.nextafter(below, np.float32(np.inf))):
                probe = row.copy()
                probe[tree.feature[node]] = v
                probes.append(probe)
    x = np.array(probes, dtype=np.float32)
    np.testing.assert_allclose(ex.raw(x), onnx_raw_reference(pre, det, x), rtol=1e-6)
    clip = [n.op_type for n in ex.model.graph.node if n.output[0] == "z_up"]
    assert clip == (["Max"] if clipped else [])


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("kind", DETECTORS)
def test_graph_structure(kind: str, data: Data, exported: dict[str, Exported]) -> None:
    m = exported[kind].model
    d = len(data.names)
    assert m.producer_name == "pdm-edge"
    props = {p.key: p.value for p in m.metadata_props}
    assert props == {"detector": kind, "machine": "demo-pump"}
    opsets = {o.domain: o.version for o in m.opset_import}
    assert opsets[""] == 17
    assert [i.name for i in m.graph.input] == ["features"]
    assert [o.name for o in m.graph.output] == ["score", "z"]
    dims = [x.dim_param or x.dim_value for x in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", d]
    ops = [n.op_type for n in m.graph.node]
    assert len(ops) <= 13, ops
    if kind == "iforest":
        assert opsets["ai.onnx.ml"] == 3
        assert ops.count("TreeEnsembleRegressor") == 1
        (tree,) = (n for n in m.graph.node if n.op_type == "TreeEnsembleRegressor")
        attrs = {a.name: a for a in tree.attribute}
        assert len(set(attrs["nodes_treeids"].ints)) == 100
        assert attrs["aggregate_function"].s == b"AVERAGE"
    else:
        assert "ai.onnx.ml" not in opsets
    onnx.checker.check_model(m, full_check=True)


def test_detector_params_are_json(exported: dict[str, Exported], data: Data) -> None:
    n, d = data.healthy.shape
    for kind, ex in exported.items():
        params = json.loads(json.dumps(ex.det.params))
        assert params["n_features"] == d and params["n_train"] == n, kind
    pca = exported["pca"].det.params
    assert 1 <= pca["n_components"] <= min(d - 1, n - 2)
    assert pca["explained_variance"] >= 0.9 or pca["n_components"] == min(d - 1, n - 2)
    gmm = exported["gmm"].det.params
    assert all(n >= k * 5 * d for k in gmm["candidates"])
    assert gmm["n_components"] in gmm["candidates"]
    assert exported["iforest"].det.params["max_samples"] == min(256, n)
    assert 0.0 <= exported["mahalanobis"].det.params["shrinkage"] <= 1.0


@pytest.mark.parametrize("kind", ["gmm", "iforest"])
def test_refit_is_deterministic(kind: str, exported: dict[str, Exported], data: Data) -> None:
    ex = exported[kind]
    z = ex.pre.detector_input(data.healthy)
    again = fit_detector(kind, z)
    np.testing.assert_array_equal(raw_scores(again, z), raw_scores(ex.det, z))


# ------------------------------------------------------------------------------ errors


def test_unknown_detector() -> None:
    with pytest.raises(ValueError, match=r"unknown detector 'svm'.*mahalanobis, gmm, pca, iforest"):
        fit_detector("svm", np.zeros((50, 3)))


@pytest.mark.parametrize("kind", ["gmm", "pca"])
def test_too_few_windows_covariance(kind: str) -> None:
    z = np.random.default_rng(0).standard_normal((11, 10))
    with pytest.raises(
        ValueError, match=r"at least d \+ 2 = 12 training windows for 10 features, got 11"
    ):
        fit_detector(kind, z)
    fit_detector(kind, np.random.default_rng(0).standard_normal((12, 10)))


def test_mahalanobis_shrinkage_fits_fewer_windows_than_features() -> None:
    # Ledoit-Wolf shrinks towards a scaled identity: 10 windows of 30 features still fit,
    # and parity holds; fewer than 8 windows are refused.
    z = np.random.default_rng(0).standard_normal((10, 30))
    det = fit_detector("mahalanobis", z)
    assert np.isfinite(raw_scores(det, z)).all()
    with pytest.raises(ValueError, match=r"'mahalanobis' needs at least 8 training windows, got 7"):
        fit_detector("mahalanobis", z[:7])


def test_too_few_windows_iforest() -> None:
    z = np.random.default_rng(0).standard_normal((7, 30))
    with pytest.raises(ValueError, match=r"'iforest' needs at least 8 training windows, got 7"):
        fit_detector("iforest", z)
    z8 = np.random.default_rng(0).standard_normal((8, 30))
    assert fit_detector("iforest", z8).params["max_samples"] == 8


def test_bad_training_windows() -> None:
    z = np.random.default_rng(0).standard_normal((40, 3))
    z[3, 1] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        fit_detector("mahalanobis", z)
    with pytest.raises(ValueError, match="2-D"):
        fit_detector("mahalanobis", np.zeros(10))


def test_build_model_argument_errors(exported: dict[str, Exported], data: Data) -> None:
    ex = exported["mahalanobis"]
    with pytest.raises(ValueError, match="span > 0"):
        build_model(ex.pre, ex.det, offset=0.0, span=0.0)
    with pytest.raises(ValueError, match="span > 0"):
        build_model(ex.pre, ex.det, offset=float("nan"), span=1.0)
    with pytest.raises(ValueError, match="contradicts"):
        build_model(ex.pre, ex.det, offset=0.0, span=1.0, metadata={"detector": "pca"})
    other = Preprocess.fit(data.healthy[:, :5], data.names[:5])
    with pytest.raises(ValueError, match="preprocess has 5 features"):
        build_model(other, ex.det, offset=0.0, span=1.0)
    with pytest.raises(ValueError, match=r"shape \(n, "):
        raw_scores(ex.det, np.zeros((3, 2)))


# ----------------------------------------------------------------------------- latency


def test_latency_report(
    exported: dict[str, Exported], data: Data, capsys: pytest.CaptureFixture[str]
) -> None:
    """Median per-window latency, one intra-op thread; printed, not asserted (machine-dependent)."""
    rows = []
    for kind, ex in exported.items():
        per_window = []
        for batch, reps in ((1, 2000), (64, 300)):
            feed = {"features": np.ascontiguousarray(data.faults[:batch])}
            for _ in range(100):
                ex.sess.run(None, feed)
            times = np.empty(reps)
            for i in range(reps):
                t0 = time.perf_counter_ns()
                ex.sess.run(None, feed)
                times[i] = time.perf_counter_ns() - t0
            per_window.append(np.median(times) / 1e3 / batch)
        rows.append(
            f"{kind:<12} {len(ex.model.graph.node):>5} {per_window[0]:>10.2f} {per_window[1]:>11.3f}"
        )
    with capsys.disabled():
        print("\ndetector     nodes  batch 1 µs  batch 64 µs/window  (1 intra-op thread)")
        print("\n".join(rows))
