"""``pdm-edge model report``: sizes and node counts exact, every variant timed and judged.

Timings are only checked to be positive: performance is measured by the command itself
(docs/models.md), never asserted in a test.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from pdm.scoring.report import LEVELS, float32_preprocessing, model_report, quantize_int8

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo-pump"
VARIANTS = {f"float64_{lv}" for lv in LEVELS} | {"float32_all", "int8_dynamic_all"}


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdm.cli", "model", "report", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_on_the_demo_model_has_exact_sizes_and_every_variant(tmp_path) -> None:
    r = run_report(str(DEMO), "--json", "--quick", "--dataset", str(tmp_path / "none"))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    data = (DEMO / "model.onnx").read_bytes()
    graph = onnx.load_from_string(data).graph
    m = rep["model"]
    assert m["onnx_bytes"] == len(data) and m["nodes"] == len(graph.node)
    assert sum(m["ops"].values()) == len(graph.node)
    assert m["detector"] == json.loads((DEMO / "model.json").read_text())["model"]["detector"]
    assert m["version"] == hashlib.sha256(data).hexdigest()[:12]  # what the runtime reports
    assert set(m["variants"]) == VARIANTS
    for name, v in m["variants"].items():
        assert v["us_batch1"] > 0 and v["us_batch64"] > 0, name
        assert v["state_changes"] >= 0 and v["max_score_diff"] >= 0, name
    # the optimisation levels run the very same graph; the shipped one is the reference
    for lv in LEVELS:
        assert m["variants"][f"float64_{lv}"]["onnx_bytes"] == len(data)
    assert m["variants"]["float64_all"]["max_score_diff"] == 0.0
    assert rep["cwru"] == {"skipped": f"{tmp_path / 'none'}: no CWRU recordings (de12k/, de48k/)"}


def test_the_table_form_lists_every_variant(tmp_path) -> None:
    r = run_report(str(DEMO), "--quick", "--dataset", str(tmp_path))
    assert r.returncode == 0, r.stderr
    body = [line for line in r.stdout.splitlines() if line.startswith("| given")]
    assert {line.split("|")[2].strip() for line in body} == VARIANTS
    version = hashlib.sha256((DEMO / "model.onnx").read_bytes()).hexdigest()[:12]
    detector = json.loads((DEMO / "model.json").read_text())["model"]["detector"]
    assert all(f"given: {detector} {version} |" in line for line in body)


def test_float32_preprocessing_leaves_no_double_and_scores_close() -> None:
    import onnxruntime as ort

    model = onnx.load(DEMO / "model.onnx")
    f32 = float32_preprocessing(model)
    assert all(i.data_type != TensorProto.DOUBLE for i in f32.graph.initializer)
    casts = [a.i for n in f32.graph.node if n.op_type == "Cast" for a in n.attribute]
    assert TensorProto.DOUBLE not in casts
    # the original is untouched
    assert any(i.data_type == TensorProto.DOUBLE for i in model.graph.initializer)
    ref = json.loads((DEMO / "model.json").read_text())["reference"]
    x = np.asarray([ref["features"]], dtype=np.float32)
    s = ort.InferenceSession(f32.SerializeToString(), providers=["CPUExecutionProvider"])
    got = float(s.run(["score"], {"features": x})[0][0])
    assert abs(got - ref["score"]) < 1e-3 * max(1.0, abs(ref["score"]))


def test_int8_quantisation_replaces_the_weights_of_the_matrix_product() -> None:
    data = (DEMO / "model.onnx").read_bytes()
    q = onnx.load_from_string(quantize_int8(data))
    ops = {n.op_type for n in q.graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops or "QGemm" in ops
    assert any(i.data_type == TensorProto.INT8 for i in q.graph.initializer)


def test_a_missing_model_is_one_line_and_exit_2(tmp_path) -> None:
    r = run_report(str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.dataset
def test_report_on_cwru_trains_and_judges_each_detector(cwru) -> None:
    rep = model_report(DEMO, dataset=cwru, detectors=["mahalanobis"], quick=True)
    rows = rep["cwru"]
    assert [(r["rate"], r["detector"]) for r in rows] == [
        ("de12k", "mahalanobis"),
        ("de48k", "mahalanobis"),
    ]
    for r in rows:
        assert set(r["variants"]) == VARIANTS
        for v in r["variants"].values():
            assert v["faults"] == 3 and 0 <= v["faults_flagged"] <= 3
            assert 0 <= v["false_alarms"] <= v["normal_windows"]


def test_an_unknown_detector_is_refused_before_any_work(tmp_path) -> None:
    r = run_report(str(DEMO), "--detectors", "gmm,bogus", "--dataset", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "'bogus'" in r.stderr and "Traceback" not in r.stderr


def test_a_cwru_folder_without_its_recordings_is_one_line_naming_them(tmp_path) -> None:
    (tmp_path / "de12k").mkdir()
    (tmp_path / "de12k" / "normal_0hp.csv").write_text("DE_g,FE_g\n0.0,0.0\n")
    r = run_report(str(DEMO), "--quick", "--dataset", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "IR007_0hp.csv" in r.stderr and "de12k" in r.stderr


def test_a_card_without_a_model_section_is_reported_as_unknown(tmp_path) -> None:
    """The card's free-form "model" section absent: a KeyError traceback (files red team)."""
    import shutil

    d = tmp_path / "m"
    shutil.copytree(DEMO, d)
    card = json.loads((d / "model.json").read_text())
    del card["model"]
    (d / "model.json").write_text(json.dumps(card))
    rep = model_report(d, dataset=tmp_path / "none", quick=True)
    assert rep["model"]["detector"] == "unknown"
