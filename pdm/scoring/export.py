"""Export preprocess + detector as one small, fast ONNX graph, built op by op.

The graph takes ``"features"`` (float32, [N, d], raw feature values in model
input order) and returns

- ``"score"`` (float32, [N]): ``(raw − offset) / span``, so that the alert
  threshold is 1.0 once ``offset`` and ``span`` are calibrated;
- ``"z"`` (float32, [N, d]): the robust z-scores, for explanations (not clipped:
  a departure below the baseline shows here, for the quiet-machine hint).

Between the two, every ``up`` feature's z is clipped at 0 (``Relu``; ``Max``
against 0 / −∞ when some features count both ways): the detectors read the
clipped ``z``, so a window quieter than the baseline scores as the baseline
(:meth:`pdm.scoring.preprocess.Preprocess.detector_input`, the reference).

Why not skl2onnx: it cannot convert PCA reconstruction or EllipticEnvelope at
all, and turns an IsolationForest into ~2,700 nodes costing ~1 ms per row,
where one ``TreeEnsembleRegressor`` node gives the same scores in microseconds
(measured, see ARCHITECTURE.md "Models"). Each detector here is a handful of
nodes, so the cost at batch 1 is close to onnxruntime's per-call floor.

Numerics: the preprocessing runs in float64 inside the graph (Cast after the
input, Cast to the float32 ``"z"`` output). In float32, the rounding of
``log x`` (~1e-6 for ``|log x|`` ≈ 10) divided by a robust scale that may be
as small as 0.01 would put ``z`` 1e-4 off the reference; and the isolation
forest needs ``z`` rounded to float32 exactly as scikit-learn rounds its
float64 input, or a window sitting on a split goes the other way. The
detectors then read the float32 ``"z"`` (as scikit-learn's IsolationForest
does) with the calibration folded into their constants: float32 keeps them
within ~5e-7 relative of the reference, on healthy and far-off windows alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble._iforest import _average_path_length

from pdm import __version__
from pdm.scoring.detectors import FittedDetector, raw_scores
from pdm.scoring.preprocess import Preprocess

__all__ = [
    "INPUT",
    "OPSET",
    "OPSET_ML",
    "OUTPUT_SCORE",
    "OUTPUT_Z",
    "build_model",
    "onnx_raw_reference",
]

INPUT = "features"
OUTPUT_SCORE = "score"
OUTPUT_Z = "z"
#: Default-domain opset; 17 keeps reduction axes as attributes and runs on old runtimes.
OPSET = 17
#: ai.onnx.ml opset for TreeEnsembleRegressor (3 adds the tensor-valued attributes).
OPSET_ML = 3
# IR version 8 is what opset 17 / ai.onnx.ml 3 require: the oldest that works,
# so that an older onnxruntime on a device can still load the file.
_IR_VERSION = 8
_LOG_2PI = math.log(2.0 * math.pi)


def onnx_raw_reference(
    pre: Preprocess, det: FittedDetector, x: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """The raw score the graph computes, by numpy and scikit-learn: ``raw_scores(det, pre.detector_input(x))``.

    Parameters
    ----------
    pre : Preprocess
    det : FittedDetector
    x : array_like, shape (n, d)
        Raw feature values.

    Returns
    -------
    ndarray, shape (n,), float64
    """
    return raw_scores(det, pre.detector_input(x))


def build_model(
    pre: Preprocess,
    det: FittedDetector,
    *,
    offset: float,
    span: float,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Build the scoring graph for a fitted preprocess and detector.

    Parameters
    ----------
    pre : Preprocess
        Fitted log + robust scaling (d features).
    det : FittedDetector
        Detector fitted on ``pre.detector_input`` of the same training windows.
    offset, span : float
        Calibration: ``score = (raw − offset) / span``; ``span > 0``.
    metadata : mapping of str to str, optional
        Extra model metadata props (e.g. the model card's id and hash);
        ``"detector"`` is always set to ``det.kind``.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model(full_check=True)``.

    Raises
    ------
    ValueError
        If ``pre`` and ``det`` disagree on d, the calibration is not finite
        with ``span > 0``, or ``metadata`` tries to change ``"detector"``.
    """
    d = len(pre.names)
    if det.n_features != d:
        raise ValueError(
            f"preprocess has {d} features but the {det.kind} detector was fitted on {det.n_features}"
        )
    if not (math.isfinite(offset) and math.isfinite(span) and span > 0.0):
        raise ValueError(f"calibration needs finite offset and span > 0, got {offset}, {span}")
    props = {"detector": det.kind}
    for key, value in (metadata or {}).items():
        if key == "detector" and value != det.kind:
            raise ValueError(f"metadata 'detector'={value!r} contradicts the detector {det.kind!r}")
        props[str(key)] = str(value)

    g = _Graph()
    _preprocess(g, pre)
    g.z_in = _clip_up(g, pre)
    if det.kind == "mahalanobis":
        # Squared Mahalanobis distance (z − μ)ᵀ P (z − μ) = ‖(z − μ) L‖², P = L Lᵀ.
        est = det.estimator
        _quadratic_score(g, est.location_, _whitener(est.get_precision()), 1.0, 0.0, offset, span)
    elif det.kind == "pca":
        # Probabilistic PCA is a Gaussian with precision P = get_precision();
        # sklearn's negative log-likelihood is ½ ‖(z − μ) L‖² + ½ (d log 2π − log det P).
        pca = det.estimator
        precision = pca.get_precision()
        sign, logdet = np.linalg.slogdet(precision)
        if sign <= 0:
            raise ValueError("pca precision matrix is not positive definite")
        const = 0.5 * (d * _LOG_2PI - logdet)
        _quadratic_score(g, pca.mean_, _whitener(precision), 0.5, const, offset, span)
    elif det.kind == "gmm":
        _gmm_score(g, det.estimator, offset, span)
    elif det.kind == "iforest":
        _iforest_score(g, det.estimator, d, offset, span)
    else:
        raise ValueError(f"unknown detector {det.kind!r}")

    graph = helper.make_graph(
        g.nodes,
        f"pdm_{det.kind}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", d])],
        [
            helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(OUTPUT_Z, TensorProto.FLOAT, ["N", d]),
        ],
        g.initializers,
        doc_string=(
            f"pdm-edge {det.kind} anomaly score: score = (raw - offset) / span, "
            "alert threshold 1.0, higher is more anomalous; z = robust z-scores"
        ),
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if g.uses_ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", OPSET_ML))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=_IR_VERSION)
    model.producer_name = "pdm-edge"
    model.producer_version = __version__
    model.doc_string = graph.doc_string
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.uses_ml = False
        #: The tensor the detectors read: ``"z"``, or ``"z"`` clipped (:func:`_clip_up`).
        self.z_in = OUTPUT_Z
        self._names: set[str] = set()

    def const(self, name: str, value: npt.ArrayLike, dtype: npt.DTypeLike) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        output: str,
        *,
        domain: str = "",
        **attrs: Any,
    ) -> str:
        assert output not in self._names, output
        self._names.add(output)
        self.nodes.append(
            helper.make_node(op_type, inputs, [output], name=output, domain=domain, **attrs)
        )
        return output


def _preprocess(g: _Graph, pre: Preprocess) -> None:
    """Max(x, floor) → Log → Where(log_mask, logged, x) → Sub(center) → Div(scale), in float64.

    Mirrors :meth:`Preprocess.transform` op for op (same float64 constants),
    so ``z`` differs from the reference by at most the last bit of a Log.
    Emits the float32 ``"z"`` output, which the detectors read.
    """
    x = g.op("Cast", [INPUT], "x64", to=TensorProto.DOUBLE)
    clipped = g.op("Max", [x, g.const("floor", pre.floor, np.float64)], "clipped")
    logged = g.op("Log", [clipped], "logged")
    if pre.log_mask.all():
        y = logged  # every feature is logged (the default model features): no Where (~1 µs)
    else:
        y = g.op("Where", [g.const("log_mask", pre.log_mask, np.bool_), logged, x], "y")
    centered = g.op("Sub", [y, g.const("center", pre.center, np.float64)], "centered")
    z64 = g.op("Div", [centered, g.const("scale", pre.scale, np.float64)], "z64")
    g.op("Cast", [z64], OUTPUT_Z, to=TensorProto.FLOAT)


def _clip_up(g: _Graph, pre: Preprocess) -> str:
    """The detectors' input: ``max(z, z_floor)`` in float32 (0 for ``up``, −∞ for ``both``).

    The floors are float32 numbers, so clipping the float32 ``z`` equals rounding the
    float64 ``max(z, z_floor)`` (rounding is monotone and leaves the floor as it is):
    the reference stays exact. Every floor 0: one ``Relu``; none (an older card): ``"z"``
    itself; else one ``Max`` against the constant floors.
    """
    if not pre.up_mask.any():
        return OUTPUT_Z
    if (pre.z_floor == 0.0).all():
        return g.op("Relu", [OUTPUT_Z], "z_up")
    return g.op("Max", [OUTPUT_Z, g.const("z_floor", pre.z_floor, np.float32)], "z_up")


def _quadratic_score(
    g: _Graph,
    mean: npt.NDArray[np.float64],
    whiten: npt.NDArray[np.float64],
    factor: float,
    const: float,
    offset: float,
    span: float,
) -> None:
    """``score = (factor·(z − μ)ᵀ P (z − μ) + const − offset) / span`` as Gemm → ReduceSumSquare → Sub.

    ``whiten`` is ``L`` with ``P = L Lᵀ``; ``factor/span`` is folded into the whitening matrix
    (``W = √(factor/span)·L``) and the mean into the Gemm bias (``−μ W``), so
    the detector and its calibration are three float32 nodes reading the (clipped) ``z``.
    """
    w = np.asarray(whiten, dtype=np.float64) * math.sqrt(factor / span)
    bias = -(np.asarray(mean, dtype=np.float64) @ w)
    u = g.op(
        "Gemm",
        [g.z_in, g.const("whiten", w, np.float32), g.const("whiten_bias", bias, np.float32)],
        "whitened",
    )
    scaled = g.op("ReduceSumSquare", [u], "scaled_quad", axes=[1], keepdims=0)
    shift = (offset - const) / span
    g.op("Sub", [scaled, g.const("shift", shift, np.float32)], OUTPUT_SCORE)


def _whitener(precision: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``L`` with ``precision = L Lᵀ``: Cholesky, else (semi-definite) ``V √Λ`` from eigh."""
    precision = np.asarray(precision, dtype=np.float64)
    precision = 0.5 * (precision + precision.T)
    try:
        return np.asarray(np.linalg.cholesky(precision), dtype=np.float64)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(precision)
        return np.asarray(v * np.sqrt(np.clip(w, 0.0, None)), dtype=np.float64)


def _gmm_score(g: _Graph, gm: Any, offset: float, span: float) -> None:
    """Negative log-likelihood of a full-covariance GaussianMixture.

    scikit-learn's ``_estimate_log_gaussian_prob``: per component k,
    ``y_k = z C_k − μ_k C_k`` (``C_k`` = ``precisions_cholesky_[k]``),
    ``log p_k = log w_k + log det C_k − ½ (d log 2π + ‖y_k‖²)``, then
    ``−logsumexp_k``. All K whitenings are one Gemm against ``[C_1 … C_K]``
    (scaled by √½ so the sum of squares is already halved), reshaped to
    [N, K, d]. One component is a single Gaussian: the quadratic form.
    """
    if gm.covariance_type != "full":
        raise ValueError(f"gmm export supports covariance_type='full', got {gm.covariance_type!r}")
    chol = np.asarray(gm.precisions_cholesky_, dtype=np.float64)  # (K, d, d)
    means = np.asarray(gm.means_, dtype=np.float64)  # (K, d)
    k, d, _ = chol.shape
    logdet = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    log_norm = np.log(np.asarray(gm.weights_, dtype=np.float64)) + logdet - 0.5 * d * _LOG_2PI
    if k == 1:
        # −log p = ½ ‖(z − μ) C‖² − log_norm, with C Cᵀ the precision.
        _quadratic_score(g, means[0], chol[0], 0.5, -log_norm[0], offset, span)
        return
    half = math.sqrt(0.5)
    w = np.concatenate(list(chol), axis=1) * half  # (d, K·d)
    bias = -np.concatenate([means[i] @ chol[i] for i in range(k)]) * half
    u = g.op(
        "Gemm",
        [g.z_in, g.const("whiten", w, np.float32), g.const("whiten_bias", bias, np.float32)],
        "whitened",
    )
    per_k = g.op("Reshape", [u, g.const("shape_nkd", [0, k, d], np.int64)], "whitened_k")
    half_sq = g.op("ReduceSumSquare", [per_k], "half_sq", axes=[2], keepdims=0)
    log_p = g.op("Sub", [g.const("log_norm", log_norm, np.float32), half_sq], "log_p")
    # onnxruntime subtracts the max before exponentiating, so far
    # out-of-distribution windows (log p ≈ −1e6) do not underflow to −inf.
    log_lik = g.op("ReduceLogSumExp", [log_p], "log_lik", axes=[1], keepdims=0)
    # score = (−log_lik − offset) / span = log_lik · (−1/span) − offset/span
    scaled = g.op("Mul", [log_lik, g.const("neg_inv_span", -1.0 / span, np.float32)], "scaled")
    g.op("Sub", [scaled, g.const("shift", offset / span, np.float32)], OUTPUT_SCORE)


def _float32_at_or_below(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The largest float32 ≤ each float64 threshold.

    For a float32 ``x``, ``x <= t`` (compared in float64, as scikit-learn
    does) holds exactly when ``x <= _float32_at_or_below(t)``, so a float32
    tree ensemble takes every branch scikit-learn takes.
    """
    t = np.asarray(t, dtype=np.float64)
    t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _iforest_score(g: _Graph, forest: Any, d: int, offset: float, span: float) -> None:
    """IsolationForest as one ``TreeEnsembleRegressor`` (AVERAGE) node.

    scikit-learn's path length of a window in a tree is the depth of its leaf
    + c(training samples in the leaf); over the forest, ``raw =
    2^(−E[h]/c(max_samples)) = exp(−ln 2 / c · E[h])``. The leaf values are
    that path length times ``−ln 2 / c``, and the base value ``−ln span``, so
    the AVERAGE output is ``ln(raw / span)``. The trees read the float32
    ``"z"`` output (scikit-learn also scores float32 z) with thresholds rounded
    down to float32, so every comparison goes scikit-learn's way.
    """
    # scikit-learn indexes the subsampled columns only when the trees were
    # fitted on a feature subset; with all features they see X as it is.
    subsample = getattr(forest, "_max_features", d) != d
    tree_ids: list[npt.NDArray[np.int64]] = []
    node_ids, feature_ids, modes, values = [], [], [], []
    true_ids, false_ids, missing_true = [], [], []
    leaf_tree, leaf_node, leaf_value = [], [], []
    for t, (est, features) in enumerate(
        zip(forest.estimators_, forest.estimators_features_, strict=True)
    ):
        tree = est.tree_
        n = tree.node_count
        left = np.asarray(tree.children_left, dtype=np.int64)
        right = np.asarray(tree.children_right, dtype=np.int64)
        is_leaf = left < 0
        depth = np.zeros(n, dtype=np.int64)
        for i in range(n):  # children always have higher ids than their parent
            if not is_leaf[i]:
                depth[left[i]] = depth[right[i]] = depth[i] + 1
        feat = np.where(is_leaf, 0, np.asarray(tree.feature, dtype=np.int64))
        if subsample:
            feat = np.where(is_leaf, 0, np.asarray(features, dtype=np.int64)[feat])
        go_left = getattr(tree, "missing_go_to_left", None)
        tree_ids.append(np.full(n, t, dtype=np.int64))
        node_ids.append(np.arange(n, dtype=np.int64))
        feature_ids.append(feat)
        modes += ["LEAF" if leaf else "BRANCH_LEQ" for leaf in is_leaf]
        values.append(np.where(is_leaf, 0.0, _float32_at_or_below(tree.threshold)))
        true_ids.append(np.where(is_leaf, 0, left))
        false_ids.append(np.where(is_leaf, 0, right))
        missing_true.append(
            np.zeros(n, dtype=np.int64)
            if go_left is None
            else np.where(is_leaf, 0, np.asarray(go_left, dtype=np.int64))
        )
        leaves = np.flatnonzero(is_leaf)
        leaf_tree.append(np.full(leaves.size, t, dtype=np.int64))
        leaf_node.append(leaves)
        path = depth[leaves] + _average_path_length(tree.n_node_samples[leaves])
        leaf_value.append(np.asarray(path, dtype=np.float64))

    def ints(parts: list[npt.NDArray[np.int64]]) -> list[int]:
        return list(np.concatenate(parts).tolist())

    max_samples = int(getattr(forest, "_max_samples", forest.max_samples_))
    c = float(_average_path_length([max_samples])[0])
    # c = 0 only for a forest of one-sample trees, where scikit-learn defines raw as 1.
    rate = -math.log(2.0) / c if c > 0 else 0.0
    # Folding the rate and span into the ensemble leaves a tail of three
    # cheap nodes: Exp → Sub(offset/span) → Reshape to [N].
    n_leaves = sum(a.size for a in leaf_node)
    g.uses_ml = True
    exponent = g.op(
        "TreeEnsembleRegressor",
        [g.z_in],
        "exponent",
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="AVERAGE",
        post_transform="NONE",
        base_values=[-math.log(span)],
        nodes_treeids=ints(tree_ids),
        nodes_nodeids=ints(node_ids),
        nodes_featureids=ints(feature_ids),
        nodes_modes=modes,
        nodes_values=np.concatenate(values).astype(np.float32).tolist(),
        nodes_truenodeids=ints(true_ids),
        nodes_falsenodeids=ints(false_ids),
        nodes_missing_value_tracks_true=ints(missing_true),
        target_treeids=ints(leaf_tree),
        target_nodeids=ints(leaf_node),
        target_ids=[0] * n_leaves,
        target_weights=(rate * np.concatenate(leaf_value)).astype(np.float32).tolist(),
    )
    scaled = g.op("Exp", [exponent], "scaled_raw")
    shifted = g.op("Sub", [scaled, g.const("shift", offset / span, np.float32)], "shifted")
    g.op("Reshape", [shifted, g.const("shape_n", [-1], np.int64)], OUTPUT_SCORE)
