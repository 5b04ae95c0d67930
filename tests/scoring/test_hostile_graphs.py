"""Hostile ONNX graphs in a model directory: refused in one line before onnxruntime runs them.

A card's SHA-256 only ties the card to its graph; whoever edits one rewrites the other. Each
graph below comes with a card whose hash matches, and each was, before
:func:`pdm.scoring.graph.check_graph`, a traceback (an output not named ``score``, a rank-0
or float64 input, a 2-D score), gigabytes of memory (``ConstantOfShape``, a broadcast
``Where``) or a hang (``Loop`` of 10¹² turns) in ``Model.load``. Built with ``onnx.helper``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import PIPELINES, REPO
from onnx import TensorProto, helper, numpy_helper

from pdm.config import load_pipeline
from pdm.errors import ModelError
from pdm.scoring.graph import check_graph, max_values_per_row
from pdm.scoring.runtime import Model

DEMO_MODEL = REPO / "models" / "demo-pump"
DEMO_TOML = PIPELINES / "demo.toml"
D = len(json.loads((DEMO_MODEL / "model.json").read_text())["features"])
F, DBL, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64


def _vi(name: str, t: int, shape: list[Any]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, t, shape)


def _const(name: str, value: Any, dtype: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _model(
    nodes: list[onnx.NodeProto],
    *,
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
    inits: list[onnx.TensorProto] = (),  # type: ignore[assignment]
    domains: tuple[str, ...] = (),
) -> bytes:
    """A graph of ``nodes`` with the scorer's input and outputs unless told otherwise."""
    g = helper.make_graph(
        nodes,
        "hostile",
        inputs if inputs is not None else [_vi("features", F, ["N", D])],
        outputs if outputs is not None else [_vi("score", F, ["N"]), _vi("z", F, ["N", D])],
        list(inits),
    )
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(g, opset_imports=opsets, ir_version=8).SerializeToString()


def _scored(z: str = "features", extra: list[onnx.NodeProto] = ()) -> list[onnx.NodeProto]:  # type: ignore[assignment]
    """``extra`` nodes, then z = Relu(features) and score = ReduceSumSquare(z_in) (allowed ops)."""
    return [
        *extra,
        helper.make_node("Relu", ["features"], ["z"]),
        helper.make_node("ReduceSumSquare", [z], ["score"], axes=[1], keepdims=0),
    ]


def _external() -> onnx.TensorProto:
    t = onnx.TensorProto(name="ext", data_type=F, dims=[D])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../../../dev/zero"), ("length", str(4 * D))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def _with_function() -> bytes:
    m = onnx.load_from_string(_model(_scored()))
    m.functions.append(
        helper.make_function(
            "evil", "f", ["x"], ["y"], [helper.make_node("Relu", ["x"], ["y"])], []
        )
    )
    return m.SerializeToString()


_BOOL = np.bool_
# name, graph bytes, what the one line says
CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "not an ONNX model"),
    ("garbage", lambda: np.random.default_rng(1).bytes(4000), "not an ONNX model"),
    ("truncated", lambda: (DEMO_MODEL / "model.onnx").read_bytes()[:2000], "not an ONNX model"),
    # 10^12 floats from a 16-byte constant: bfc_arena's allocation failure was a traceback,
    # 2^29 (2 GiB) was allocated and filled before the reference score refused the model.
    ("constant-of-shape", lambda: _model(
        _scored(extra=[helper.make_node("ConstantOfShape", ["shape"], ["big"])]),
        inits=[_const("shape", [1 << 20, 1 << 20], np.int64)]), "node 0 is a 'ConstantOfShape'"),
    ("loop", lambda: _model(
        [helper.make_node("Loop", ["trip", "", "features"], ["z"], body=helper.make_graph(
            [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Identity", ["v"], ["v2"])],
            "body", [_vi("i", I64, []), _vi("c", TensorProto.BOOL, []), _vi("v", F, ["N", D])],
            [_vi("c2", TensorProto.BOOL, []), _vi("v2", F, ["N", D])])),
         helper.make_node("ReduceSumSquare", ["z"], ["score"], axes=[1], keepdims=0)],
        inits=[_const("trip", 10**12, np.int64)]), "node 0 is a 'Loop'"),
    ("custom-domain", lambda: _model(_scored(extra=[
        helper.make_node("Foo", ["features"], ["foo"], domain="com.evil")]), domains=("com.evil",)),
        "operator domain 'com.evil'"),
    ("function", _with_function, "defines functions"),
    ("external-data", lambda: _model(_scored(z="y", extra=[
        helper.make_node("Sub", ["features", "ext"], ["y"])]), inits=[_external()]),
        "keeps data outside its file"),
    ("two-inputs", lambda: _model(_scored(), inputs=[_vi("features", F, ["N", D]), _vi("more", F, [1])]),
        "expected one input 'features'"),
    ("input-renamed", lambda: _model([helper.make_node("Relu", ["x"], ["z"]),
        helper.make_node("ReduceSumSquare", ["z"], ["score"], axes=[1], keepdims=0)],
        inputs=[_vi("x", F, ["N", D])]), "expected one input 'features', found ['x']"),
    ("input-scalar", lambda: _model(_scored(), inputs=[_vi("features", F, [])]),
        "input 'features' must be float32 of (rows, 30)"),
    ("input-float64", lambda: _model(_scored(), inputs=[_vi("features", DBL, ["N", D])]),
        "input 'features' must be float32 of (rows, 30), found double of ['N', 30]"),
    ("input-one-row", lambda: _model(_scored(), inputs=[_vi("features", F, [1, D])]),
        "must take any number of rows"),
    ("score-renamed", lambda: _model(_scored(), outputs=[_vi("anomaly", F, ["N"]), _vi("z", F, ["N", D])]),
        "output 'score' must be float32 of ('N',), found none"),
    ("z-missing", lambda: _model(_scored(), outputs=[_vi("score", F, ["N"])]), "output 'z'"),
    ("score-2d", lambda: _model([helper.make_node("Relu", ["features"], ["z"]),
        helper.make_node("Relu", ["features"], ["score"])],
        outputs=[_vi("score", F, ["N", D]), _vi("z", F, ["N", D])]), "output 'score' must be"),
    ("z-float64", lambda: _model([helper.make_node("Cast", ["features"], ["z"], to=DBL),
        helper.make_node("ReduceSumSquare", ["features"], ["score"], axes=[1], keepdims=0)],
        outputs=[_vi("score", F, ["N"]), _vi("z", DBL, ["N", D])]), "output 'z' must be float32"),
    # Declared (N, 30), computed (N, 60): the declared shapes are checked against the graph.
    ("z-lies", lambda: _model([helper.make_node("Gemm", ["features", "w"], ["z"]),
        helper.make_node("ReduceSumSquare", ["z"], ["score"], axes=[1], keepdims=0)],
        inits=[_const("w", np.zeros((D, 2 * D)), np.float32)]), "shapes do not check"),
    # A 3 kB boolean constant broadcast against each row: 90,000 values a row (1.4 GB for a
    # batch of 4,000 windows) from operators the exports use.
    ("broadcast-per-row", lambda: _model(_scored(extra=[
        helper.make_node("Reshape", ["features", "s"], ["x3"]),
        helper.make_node("Where", ["c", "x3", "x3"], ["wide"])]),
        inits=[_const("s", [0, 1, D], np.int64), _const("c", np.ones((1, 3000, 1)), _BOOL)]),
        "values a row"),
    ("broadcast-fixed", lambda: _model(_scored(extra=[helper.make_node("Max", ["a", "b"], ["m"])]),
        inits=[_const("a", np.zeros((1, 5000)), np.float32), _const("b", np.zeros((5000, 1)), np.float32)]),
        "25,000,000 more"),
]  # fmt: skip


def _model_dir(tmp_path: Path, data: bytes) -> Path:
    d = tmp_path / "m"
    shutil.copytree(DEMO_MODEL, d)
    (d / "model.onnx").write_bytes(data)
    card = json.loads((d / "model.json").read_text())
    card["onnx"]["sha256"] = hashlib.sha256(data).hexdigest()
    (d / "model.json").write_text(json.dumps(card))
    return d


@pytest.mark.parametrize(("build", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_graph_is_one_line_before_it_runs(
    tmp_path: Path, build: Callable[[], bytes], says: str
) -> None:
    d = _model_dir(tmp_path, build())
    with pytest.raises(ModelError) as info:
        Model.load(d, load_pipeline(DEMO_TOML), 25600.0)
    msg = str(info.value)
    assert msg.startswith(f"{d / 'model.onnx'}: ") and "\n" not in msg, msg
    assert says in msg, msg


def test_the_exported_graphs_pass(tmp_path: Path) -> None:
    """The check can fail only on what pdm-edge does not export (the demo's own graph)."""
    check_graph((DEMO_MODEL / "model.onnx").read_bytes(), D, where="demo")
    Model.load(_model_dir(tmp_path, (DEMO_MODEL / "model.onnx").read_bytes()))


def test_the_per_row_budget_is_far_above_a_gmm() -> None:
    # A 30-feature GMM of 8 components holds ~10 tensors of d and 2 of K·d a row.
    assert max_values_per_row(D) > 10 * D + 2 * 8 * D


class _Session:
    """A session that runs but answers with another shape than the scorer asks for."""

    def __init__(self, answer: Callable[[np.ndarray], Any]) -> None:
        self.answer = answer

    def run(self, _outputs: list[str], feeds: dict[str, np.ndarray]) -> Any:
        return self.answer(feeds["features"])


def _boom(x: np.ndarray) -> Any:
    raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : bfc_arena\nline two")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (lambda x: (np.zeros(len(x) + 1, np.float32), x), "gave score (2,) and z (1, 30)"),
        (lambda x: (np.zeros(len(x), np.float32), x[:, :3]), "gave score (1,) and z (1, 3)"),
        (_boom, "onnxruntime cannot score with it: [ONNXRuntimeError] : 1 : FAIL : bfc_arena"),
    ],
    ids=["score-rows", "z-columns", "runtime-error"],
)
def test_a_session_that_misbehaves_while_scoring_is_one_line(
    answer: Callable[[np.ndarray], Any], says: str
) -> None:
    model = Model.load(DEMO_MODEL)
    model.session = _Session(answer)
    with pytest.raises(ModelError) as info:
        model.score(np.zeros((1, D), np.float32))
    assert says in str(info.value) and "\n" not in str(info.value)
