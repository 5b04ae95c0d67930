"""``pdm-edge model report``: what a model's ONNX graph costs, and what cheaper forms of it
would change.

For a model directory, and for every detector trained on the CWRU evaluation split (as
``pdm-edge evaluate`` splits it: the normal recording's first 70 % to train and calibrate,
a gap, the last 30 % withheld; when the recordings are present), the report gives:

* the ONNX file's size (bytes) and node count (and the node types);
* µs per window at batch 1 and at batch 64, one intra-op thread, the median over rounds
  (each round times every variant in turn, so all see the same machine);
* the variants: onnxruntime's graph optimisation levels (``disabled``, ``basic``,
  ``extended``, ``all`` — the runtime uses ``all``) of the shipped graph, whose
  preprocessing (log, robust scaling) runs in float64; the same graph with the
  preprocessing in float32 (:func:`float32_preprocessing`); and onnxruntime's dynamic
  int8 quantisation (``onnxruntime.quantization.quantize_dynamic``, weights int8,
  activations quantised at run time);
* for each variant, its scores against the shipped graph's on the same rows (the largest
  difference, and how many windows change state at the alert threshold 1.0), and on the
  CWRU data the evaluation's own figures: false alarms on the withheld healthy windows and
  faults flagged (a recording is flagged when most of its windows alert).

The given model's own rows (its training data is not stored): the card's reference window
and seeded rows spread over the model's healthy baseline (each feature at its training
median and robust scale, in the preprocessing's own log domain), so that the drift is
measured where the model works.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, numpy_helper

from pdm.config import Pipeline, load_pipeline
from pdm.errors import InputError, ModelError
from pdm.processing import FeatureStream, open_recording
from pdm.scoring.card import onnx_file
from pdm.scoring.evaluate import FAULTS, SETUPS, TRAIN_FRACTION, cwru_normal
from pdm.scoring.preprocess import Preprocess
from pdm.scoring.runtime import Model
from pdm.scoring.train import TrainingSet, train
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names

__all__ = ["LEVELS", "float32_preprocessing", "markdown_table", "model_report", "quantize_int8"]

#: onnxruntime graph optimisation levels, by the names the report uses.
LEVELS = ("disabled", "basic", "extended", "all")
DETECTORS = ("mahalanobis", "gmm", "pca", "iforest")
F32 = npt.NDArray[np.float32]


def float32_preprocessing(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with its float64 part in float32: the input is cast to float, not double,
    and every double constant (the log floors, medians and robust scales) becomes float.

    The detectors already read float32 ``z``; what changes is the rounding of ``log x``
    and of the scaling (pdm.scoring.export says why the shipped graph keeps float64).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for i, init in enumerate(out.graph.initializer):
        if init.data_type == TensorProto.DOUBLE:
            arr = numpy_helper.to_array(init).astype(np.float32)
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for node in out.graph.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.DOUBLE:
                    attr.i = TensorProto.FLOAT
    onnx.checker.check_model(out, full_check=True)
    return out


def quantize_int8(model_bytes: bytes) -> bytes:
    """onnxruntime's dynamic int8 quantisation of the graph (weights int8, activations
    quantised per call); nodes it cannot quantise (the preprocessing, a tree ensemble)
    stay as they are."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(model_bytes)
        # The quantiser logs advice (pre-processing, per-channel) at warning level.
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        finally:
            quiet.setLevel(level)
        return dst.read_bytes()


def _session(model_bytes: bytes, level: str) -> Any:
    """An onnxruntime session with one intra-op thread at optimisation ``level``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=so, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load the {level} variant: {exc}") from exc


def _describe(model_bytes: bytes) -> dict[str, Any]:
    """Size, node count and node types of a serialised graph."""
    m = onnx.load_from_string(model_bytes)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    return {
        "onnx_bytes": len(model_bytes),
        "nodes": len(m.graph.node),
        "ops": dict(sorted(ops.items())),
    }


def _variants(model_bytes: bytes) -> dict[str, tuple[bytes, str]]:
    """name → (graph, optimisation level); ``float64_all`` is what the runtime loads."""
    out = {f"float64_{lv}": (model_bytes, lv) for lv in LEVELS}
    f32 = float32_preprocessing(onnx.load_from_string(model_bytes)).SerializeToString()
    out["float32_all"] = (f32, "all")
    out["int8_dynamic_all"] = (quantize_int8(model_bytes), "all")
    return out


@dataclass
class _Timer:
    """Round-robin timing of several sessions on the same rows."""

    sessions: dict[str, Any]
    rows: F32
    rounds: int

    def run(self) -> dict[str, dict[str, float]]:
        x1 = np.ascontiguousarray(self.rows[:1])
        x64 = np.ascontiguousarray(np.resize(self.rows, (64, self.rows.shape[1])))
        calls: dict[str, dict[int, Callable[[], object]]] = {}
        for name, s in self.sessions.items():
            calls[name] = {1: _call(s, x1), 64: _call(s, x64)}
        reps = {1: 200, 64: 20}
        for per in calls.values():  # warm-up: the first runs allocate
            for b, f in per.items():
                for _ in range(reps[b] // 4):
                    f()
        times: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        for _ in range(self.rounds):
            for name, per in calls.items():
                for b, f in per.items():
                    t0 = time.perf_counter()
                    for _ in range(reps[b]):
                        f()
                    times[name, b].append((time.perf_counter() - t0) / reps[b] / b)
        return {
            name: {
                "us_batch1": round(statistics.median(times[name, 1]) * 1e6, 2),
                "us_batch64": round(statistics.median(times[name, 64]) * 1e6, 3),
            }
            for name in calls
        }


def _call(session: Any, x: F32) -> Callable[[], object]:
    """One scoring call of ``session`` on ``x``, as a thunk for the timer."""
    return lambda: session.run(["score"], {"features": x})


def _scores(session: Any, x: F32) -> npt.NDArray[np.float64]:
    return np.asarray(session.run(["score"], {"features": np.ascontiguousarray(x)})[0], np.float64)


def _report(
    model_bytes: bytes,
    rows: F32,
    rounds: int,
    judged: dict[str, tuple[F32, int]] | None = None,
) -> dict[str, Any]:
    """Size, variants with timings and drift on ``rows``; with ``judged`` (``normal`` and
    the fault recordings: their rows with finite features, and their count of valid
    windows) each variant's false alarms and faults flagged too."""
    variants = _variants(model_bytes)
    sessions = {name: _session(b, lv) for name, (b, lv) in variants.items()}
    timing = _Timer(sessions, rows, rounds).run()
    ref = _scores(sessions["float64_all"], rows)
    out: dict[str, Any] = {**_describe(model_bytes), "variants": {}}
    for name, (b, lv) in variants.items():
        s = _scores(sessions[name], rows)
        v: dict[str, Any] = {
            "level": lv,
            "onnx_bytes": len(b),
            "nodes": _describe(b)["nodes"],
            **timing[name],
            "max_score_diff": float(np.max(np.abs(s - ref))),
            "state_changes": int(np.sum((s >= 1.0) != (ref >= 1.0))),
        }
        if judged is not None:
            alerts = {
                f: int(np.sum(_scores(sessions[name], x) >= 1.0)) for f, (x, _n) in judged.items()
            }
            v["false_alarms"] = alerts["normal"]
            v["normal_windows"] = judged["normal"][1]
            # flagged as pdm-edge evaluate flags it: most of the recording's windows alert
            v["faults_flagged"] = sum(
                int(2 * alerts[f] > n) for f, (_x, n) in judged.items() if f != "normal"
            )
            v["faults"] = len(judged) - 1
        out["variants"][name] = v
    return out


def _baseline_rows(card: dict[str, Any], n: int = 256, seed: int = 0) -> F32:
    """The card's reference window and ``n − 1`` seeded rows around the healthy baseline."""
    pre = Preprocess.from_dict(card["preprocess"])
    rng = np.random.default_rng(seed)
    y = pre.center + pre.scale * rng.standard_normal((n - 1, len(pre.names)))
    x = np.where(pre.log_mask, np.exp(y), y)
    ref = np.asarray([card["reference"]["features"]], dtype=np.float64)
    return np.concatenate([ref, x]).astype(np.float32)


def _frames(path: Path, pipeline: Pipeline) -> tuple[list[Any], Pipeline, float]:
    rec, pl = open_recording(path, pipeline)
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz)
        frames = [wf.features for wf in stream.feed(rec.chunks()) if wf.features.valid]
    return frames, pl, rec.sample_rate_hz


def _judged(vec: FeatureVectorizer, frames: list[Any]) -> tuple[F32, int]:
    """The rows of ``frames`` a model can score (finite features), and how many frames."""
    x = vec.matrix(frames)
    return x[np.isfinite(x).all(axis=1)], len(frames)


def _cwru(
    dataset: Path, pipeline_file: Path, detectors: list[str], rounds: int
) -> list[dict[str, Any]]:
    """Every detector trained on the CWRU split as ``pdm-edge evaluate`` makes it, reported."""
    base = load_pipeline(pipeline_file)
    out: list[dict[str, Any]] = []
    for rate_dir, (window, overlap) in SETUPS.items():
        folder = dataset / rate_dir
        normal_path = cwru_normal(folder)
        for detector in detectors:
            data = base.model_dump()
            data["acquisition"].update(window_samples=window, overlap=overlap)
            data["model"].update(detector=detector)
            normal, pl, fs = _frames(normal_path, Pipeline.model_validate(data))
            names = vector_names(pl.columns, normal[0].names, MODEL_FEATURES)
            x = FeatureVectorizer(names, pl.columns, normal[0].names).matrix(normal)
            keep = [bool(k) for k in np.asarray(np.isfinite(x).all(axis=0), dtype=bool)]
            kept = tuple(n for n, k in zip(names, keep, strict=True) if k)
            vec = FeatureVectorizer(kept, pl.columns, normal[0].names)
            gap = int(np.ceil(window / pl.acquisition.hop_samples)) - 1
            n_fit = round(len(normal) * TRAIN_FRACTION)
            ts = TrainingSet(
                pipeline=pl,
                fs=fs,
                names=kept,
                per_file=[vec.matrix(normal[:n_fit])],
                files=[{"file": normal_path.name, "windows": n_fit}],
            )
            judged = {"normal": _judged(vec, normal[n_fit + gap :])}
            for fname in FAULTS:
                judged[fname] = _judged(vec, _frames(folder / fname, pl)[0])
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    train(
                        ts,
                        Path(tmp) / "model",
                        detector=detector,
                        alerts_per_week=pl.model.alerts_per_week,
                        holdout=pl.model.holdout,
                    )
                except ModelError as exc:
                    out.append({"rate": rate_dir, "detector": detector, "error": str(exc)})
                    continue
                model_bytes = (Path(tmp) / "model" / "model.onnx").read_bytes()
            rows = np.concatenate([x for x, _n in judged.values()])
            res = _report(model_bytes, rows, rounds, judged)
            out.append({"rate": rate_dir, "detector": detector, "features": len(kept), **res})
    return out


def model_report(
    model_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    pipeline_file: str | Path | None = None,
    detectors: list[str] | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    """The report (module docstring) as a JSON-ready dict; the CWRU part is skipped, with
    the reason, when ``dataset`` holds no recordings."""
    for name in detectors or []:
        if name not in DETECTORS:
            raise InputError(
                f"--detectors: unknown detector {name!r} (one of {', '.join(DETECTORS)})"
            )
    # Loaded as the runtime loads it: a file that does not match its card, or no longer
    # reproduces its reference window, is refused here too.
    model = Model.load(model_dir)
    card = model.card
    path = onnx_file(model.directory, card)
    try:
        model_bytes = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    # The graph the variants below run is the one Model.load checked, not one put there since.
    if hashlib.sha256(model_bytes).hexdigest() != card["onnx"]["sha256"]:
        raise ModelError(f"{path}: changed while the report was being made")
    # A session runs a block of calls at ~7 µs or, now and then, ~25 µs (the same session,
    # block to block, on this VM): enough rounds that the median is the usual speed.
    rounds = 5 if quick else 15
    out: dict[str, Any] = {
        "model": {
            "dir": str(model_dir),
            # The version the runtime reports (ONNX SHA-256, 12 hex digits): which graph
            # the figures are of, once the directory holds a newer one.
            "version": model.version,
            # A card's "model" section is free-form (read_card checks it is an object).
            "detector": str(card.get("model", {}).get("detector", "unknown")),
            "features": len(card["features"]),
            **_report(model_bytes, _baseline_rows(card), rounds),
        },
        "threads": 1,
        "score_threshold": 1.0,
    }
    root = Path(__file__).resolve().parent.parent.parent
    dataset = Path(dataset) if dataset is not None else root.parent / "shared" / "datasets" / "cwru"
    if not (dataset / "de12k").is_dir():
        out["cwru"] = {"skipped": f"{dataset}: no CWRU recordings (de12k/, de48k/)"}
        return out
    pipeline_file = (
        Path(pipeline_file)
        if pipeline_file is not None
        else root / "pipelines" / "cwru_drive_end.toml"
    )
    out["cwru"] = _cwru(dataset, pipeline_file, list(detectors or DETECTORS), rounds)
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """The report as the tables in docs/models.md."""
    lines = [
        "| model | variant | bytes | nodes | µs/window batch 1 | batch 64 | max score diff | state changes | false alarms | faults flagged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    given = report["model"]
    entries = [(f"given: {given['detector']} {given.get('version', '')}".rstrip(), given)]
    cwru = report.get("cwru")
    if isinstance(cwru, list):
        entries += [(f"{r['rate']} {r['detector']}", r) for r in cwru if "variants" in r]
    for label, r in entries:
        for name, v in r["variants"].items():
            fa = f"{v['false_alarms']} / {v['normal_windows']}" if "false_alarms" in v else ""
            ff = f"{v['faults_flagged']} / {v['faults']}" if "faults_flagged" in v else ""
            lines.append(
                f"| {label} | {name} | {v['onnx_bytes']} | {v['nodes']} | {v['us_batch1']} | "
                f"{v['us_batch64']} | {v['max_score_diff']:.2g} | {v['state_changes']} | {fa} | {ff} |"
            )
    return "\n".join(lines)
