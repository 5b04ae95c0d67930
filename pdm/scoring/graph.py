"""What an ONNX graph may hold before onnxruntime runs it.

A model directory is input like any other (a copied folder, a candidate upload), and its
SHA-256 only says the card and the graph belong together: whoever writes one writes the
other. onnxruntime runs what a graph asks for, so a graph could allocate a giant tensor
from a small input (``ConstantOfShape``, ``Expand``, ``Tile``), loop for ever (``Loop``),
or name other inputs and outputs than a scorer feeds and reads; each was a traceback, a
hang or gigabytes of memory (docs/security.md, "Model files").

:func:`check_graph` refuses, with one line, any graph that is not of the shape
pdm-edge's own exports have (:mod:`pdm.scoring.export`): the operators they use and no
other, no subgraphs, functions or external data, one float input ``features`` of
``(N, d)``, float outputs ``score`` ``(N,)`` and ``z`` ``(N, d)``, and every tensor's shape
known from the graph itself, at most :func:`max_values_per_row` values a row, so that
scoring ``N`` rows costs memory in proportion to ``N`` and nothing else.
"""

from __future__ import annotations

from typing import Any

from pdm.errors import ModelError

__all__ = ["ALLOWED_OPS", "MAX_FIXED_VALUES", "check_graph", "max_values_per_row"]

#: (domain, operator) pairs pdm-edge's exports use (:mod:`pdm.scoring.export`); none of
#: them allocates more than its inputs' shapes say, and none holds a subgraph.
_DEFAULT_OPS = (
    "Cast", "Div", "Exp", "Gemm", "Log", "Max", "Mul", "ReduceLogSumExp", "ReduceSumSquare",
    "Relu", "Reshape", "Sub", "Where",
)  # fmt: skip
ALLOWED_OPS = frozenset(
    {("", op) for op in _DEFAULT_OPS} | {("ai.onnx.ml", "TreeEnsembleRegressor")}
)
_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
#: Values in all tensors that do not grow with the rows (the graph's constants are
#: bounded by the file's size cap; these are what nodes compute from them).
MAX_FIXED_VALUES = 1 << 24


def max_values_per_row(n_features: int) -> int:
    """Values a graph of ``n_features`` inputs may hold per row, over all its tensors.

    The exports hold ~10 tensors of ``d`` values and a GMM's ``K`` components ``K·d``
    more (a 30-feature GMM: ~600); 64·d + 65,536 leaves room for any of them.
    """
    return 64 * n_features + 65_536


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _type_name(elem_type: int) -> str:
    """ONNX's element type as a word (``float``, ``double``, ``int64``)."""
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def _dims(t: Any) -> list[int | str] | None:
    """A tensor type's dims (int, or the symbol's name; "" for an unknown dim), or None."""
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out: list[int | str] = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param if d.HasField("dim_param") else "")
    return out


def check_graph(data: bytes, n_features: int, *, where: str) -> None:
    """Refuse ``data`` (an ONNX model's bytes) unless it is shaped as pdm-edge exports are.

    Parameters
    ----------
    data : the ONNX file's bytes (at most :data:`pdm.scoring.card.MAX_ONNX_BYTES`)
    n_features : ``d``, the card's feature count
    where : the file, for the message

    Raises
    ------
    ModelError
        One line ``WHERE: …`` naming the node, tensor or input that is not allowed.
    """
    import onnx
    from onnx import TensorProto, shape_inference

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, or its recursion limit
        raise ModelError(f"{where}: not an ONNX model: {_first_line(exc)}") from exc
    g = model.graph
    if not g.node:
        raise ModelError(f"{where}: not an ONNX model: no graph")
    if model.functions:
        raise ModelError(f"{where}: the graph defines functions; pdm-edge's exports have none")
    for imp in model.opset_import:
        if imp.domain not in _DOMAINS:
            raise ModelError(
                f"{where}: operator domain {imp.domain[:60]!r} is not one pdm-edge uses"
            )
    for i, node in enumerate(g.node):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if (domain, node.op_type) not in ALLOWED_OPS or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            op = f"{node.domain + '.' if node.domain else ''}{node.op_type}"[:80]
            raise ModelError(
                f"{where}: node {i} is a {op!r}, not an operator pdm-edge's exports use; "
                "only graphs made by pdm-edge train are run"
            )
    if g.sparse_initializer or any(t.data_location == TensorProto.EXTERNAL for t in g.initializer):
        raise ModelError(
            f"{where}: the graph keeps data outside its file; pdm-edge's exports do not"
        )

    d = n_features
    consts = {t.name for t in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in consts]
    shapes = {vi.name: (vi.type.tensor_type.elem_type, _dims(vi.type)) for vi in inputs}
    feats = shapes.get("features")
    if len(inputs) != 1 or feats is None:
        names = [vi.name[:40] for vi in inputs][:4]
        raise ModelError(f"{where}: expected one input 'features', found {names}")
    rows = feats[1][0] if feats[1] else None
    if feats[0] != TensorProto.FLOAT or feats[1] is None or len(feats[1]) != 2 or feats[1][1] != d:
        raise ModelError(
            f"{where}: input 'features' must be float32 of (rows, {d}), "
            f"found {_type_name(feats[0])} of {feats[1]}"
        )
    if not isinstance(rows, str) or not rows:
        raise ModelError(f"{where}: input 'features' must take any number of rows, found {rows}")
    outputs = {vi.name: (vi.type.tensor_type.elem_type, _dims(vi.type)) for vi in g.output}
    for name, want in (("score", [rows]), ("z", [rows, d])):
        got = outputs.get(name)
        if got is None or got[0] != TensorProto.FLOAT or got[1] != want:
            found = "none" if got is None else f"{_type_name(got[0])} of {got[1]}"
            raise ModelError(
                f"{where}: output {name!r} must be float32 of {tuple(want)}, found {found}"
            )

    try:
        inferred = shape_inference.infer_shapes(
            model, check_type=True, strict_mode=True, data_prop=True
        )
    except Exception as exc:  # onnx's InferenceError, ValidationError, ...
        raise ModelError(f"{where}: the graph's shapes do not check: {_first_line(exc)}") from exc
    known = {
        vi.name: _dims(vi.type)
        for vi in (*inferred.graph.value_info, *inferred.graph.output, *inputs)
    }
    per_row = fixed = 0
    for node in inferred.graph.node:
        for out in node.output:
            if not out:
                continue
            dims = known.get(out)
            if dims is None or any(x == "" or (isinstance(x, str) and x != rows) for x in dims):
                raise ModelError(
                    f"{where}: tensor {out[:60]!r} has no size known from the graph ({dims}); "
                    "pdm-edge's exports know every one"
                )
            n = 1
            for x in dims:
                n *= x if isinstance(x, int) else 1
            if rows in dims:
                per_row += n
            else:
                fixed += n
    if per_row > max_values_per_row(d) or fixed > MAX_FIXED_VALUES:
        raise ModelError(
            f"{where}: the graph holds {per_row:,} values a row and {fixed:,} more; "
            f"at most {max_values_per_row(d):,} and {MAX_FIXED_VALUES:,} for {d} features"
        )
