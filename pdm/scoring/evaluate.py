"""``pdm-edge evaluate``: every detector on the real CWRU recordings, judged honestly.

Protocol (per sample rate, 12 kHz and 48 kHz, drive-end bearing faults):

* The normal recording's windows are split by time: the first 70 % go to
  ``train`` (which itself trains on the first part and calibrates on the
  last part of those, with a gap), a gap of one window's worth of samples,
  and the last 30 % are **test** windows no model ever saw.
* Each fault recording is judged per window: *detection rate* = share of
  windows alerting (state ``alert`` or ``danger``, as ``score`` prints it: the score
  ≥ 1, or a bearing defect the diagnosis names over the model's healthy spectra,
  :func:`pdm.diagnosis.names_bearing_defect`); the recording counts
  as *flagged* when the majority is. *Diagnosis* = the most common label of
  its alerting windows, and the share of alerting windows with the right label.
* False alarms = test windows of the normal recording alerting.

Windows are shorter than the pipelines' default (4096 samples at 12 kHz,
16384 at 48 kHz, both ≈ 0.34 s, overlap 0.75) because the normal recording is
only 3.56 s long: even so the test part is a few dozen correlated windows,
which is stated with the results.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pdm.config import Pipeline, load_pipeline
from pdm.diagnosis.baseline import Baseline, BaselineBuilder
from pdm.errors import InputError, ModelError
from pdm.processing import FeatureStream, WindowFeatures, open_recording
from pdm.scoring.runtime import Model, WindowScorer
from pdm.scoring.train import TrainingSet, train
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names

__all__ = ["cwru_normal", "evaluate_cwru", "markdown_table", "steps", "text_table"]

FAULTS = {
    "IR007_0hp.csv": "bearing_inner_race",
    "OR007at6_0hp.csv": "bearing_outer_race",
    "B007_0hp.csv": "bearing_ball",
}
SETUPS = {"de12k": (4096, 0.9375), "de48k": (16384, 0.9375)}
TRAIN_FRACTION = 0.7


def _pipeline(base: Pipeline, window: int, overlap: float, detector: str) -> Pipeline:
    data = base.model_dump()
    data["acquisition"].update(window_samples=window, overlap=overlap)
    data["model"].update(detector=detector)
    return Pipeline.model_validate(data)


def _windows(
    path: Path, pipeline: Pipeline, baseline: Baseline | None = None
) -> tuple[list[WindowFeatures], Pipeline, float]:
    rec, pl = open_recording(path, pipeline)
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz)
        if stream.engine is not None:
            stream.engine.set_baseline(baseline)  # as score runs: over the model's healthy lines
        frames = [wf for wf in stream.feed(rec.chunks()) if wf.features.valid]
    return frames, pl, rec.sample_rate_hz


def cwru_normal(folder: Path) -> Path:
    """The normal recording of one CWRU rate folder (``de12k``, ``de48k``), once the fault
    recordings (:data:`FAULTS`) are there too; :class:`InputError` naming what is missing."""
    normal_path = next(folder.glob("normal_*.csv"), None)
    missing = [f for f in FAULTS if not (folder / f).is_file()]
    if normal_path is None or missing:
        what = ", ".join(([] if normal_path else ["normal_*.csv"]) + missing)
        raise InputError(f"{folder}: the CWRU evaluation needs {what} there (see its README)")
    return normal_path


def _alerting(row: dict[str, Any]) -> bool:
    """A ``score`` row that alerts: the score at its alert threshold, or a named bearing defect."""
    return row["state"] in ("alert", "danger")


def steps(detectors: list[str]) -> int:
    """Recordings :func:`evaluate_cwru` reads (its ``progress`` is called once after each)."""
    return len(SETUPS) * len(detectors) * (1 + len(FAULTS))


def evaluate_cwru(
    dataset: Path,
    pipeline_file: Path,
    detectors: list[str],
    progress: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Run the protocol for every detector and sample rate; one result dict per pair.
    ``progress()`` is called after each recording read (:func:`steps` of them)."""
    tick = progress or (lambda: None)
    if not (dataset / "de12k").is_dir():
        raise InputError(
            f"{dataset}: no CWRU recordings here (expected de12k/ and de48k/; see its README)"
        )
    base = load_pipeline(pipeline_file)
    # Every recording asked for before the first is read (an empty de12k/ was StopIteration).
    normals = {rate_dir: cwru_normal(dataset / rate_dir) for rate_dir in SETUPS}
    results = []
    for rate_dir, (window, overlap) in SETUPS.items():
        folder = dataset / rate_dir
        normal_path = normals[rate_dir]
        for detector in detectors:
            pl0 = _pipeline(base, window, overlap, detector)
            normal, pl, fs = _windows(normal_path, pl0)
            tick()
            names = vector_names(pl.columns, normal[0].features.names, MODEL_FEATURES)
            vec = FeatureVectorizer(names, pl.columns, normal[0].features.names)
            gap = int(np.ceil(window / pl.acquisition.hop_samples)) - 1
            n_fit = round(len(normal) * TRAIN_FRACTION)
            fit, test = normal[:n_fit], normal[n_fit + gap :]
            x = vec.matrix([wf.features for wf in fit])
            keep = np.asarray(np.isfinite(x).all(axis=0), dtype=bool)
            builder = BaselineBuilder(window, pl.columns)
            for wf in fit:
                builder.add(wf.features, fs)
            ts = TrainingSet(
                pipeline=pl,
                fs=fs,
                names=tuple(n for n, k in zip(names, keep, strict=True) if k),
                per_file=[x[:, keep]],
                files=[{"file": normal_path.name, "windows": len(fit)}],
                baseline=builder.result(),
            )
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "model"
                try:
                    card = train(
                        ts,
                        out,
                        detector=detector,
                        alerts_per_week=pl.model.alerts_per_week,
                        holdout=pl.model.holdout,
                    )
                except ModelError as exc:
                    # Too little healthy data for this detector is a result, not a crash.
                    results.append({"rate": rate_dir, "detector": detector, "error": str(exc)})
                    for _ in FAULTS:
                        tick()
                    continue
                model = Model.load(out, pl, fs)
            scorer = WindowScorer(model, pl.columns, normal[0].features.names)
            test_rows = scorer.rows(test)
            res: dict[str, Any] = {
                "rate": rate_dir,
                "detector": detector,
                "window": window,
                "overlap": overlap,
                "features": len(ts.names),
                "train_windows": card["training"]["train_windows"],
                "calibration_windows": card["calibration"]["calibration_windows"],
                "test_normal_windows": len(test_rows),
                "test_false_alarms": sum(_alerting(r) for r in test_rows),
                "test_normal_max_score": round(max(r["score"] for r in test_rows), 3),
                "warnings": card["calibration"]["warnings"],
                "faults": {},
            }
            for fname, truth in FAULTS.items():
                frames, _, _ = _windows(folder / fname, pl, model.baseline)
                tick()
                rows = scorer.rows(frames)
                alerting = [r for r in rows if _alerting(r)]
                labels = collections.Counter(r["diagnosis"] for r in alerting)
                top = labels.most_common(1)[0][0] if labels else None
                res["faults"][fname] = {
                    "truth": truth,
                    "windows": len(rows),
                    "detection_rate": round(len(alerting) / len(rows), 3),
                    "flagged": len(alerting) * 2 > len(rows),
                    "median_score": round(float(np.median([r["score"] for r in rows])), 2),
                    "diagnosis": top,
                    "diagnosis_share": round(labels[truth] / len(alerting), 3) if alerting else 0.0,
                    "labels": dict(labels),
                }
            results.append(res)
    return results


def markdown_table(results: list[dict[str, Any]]) -> str:
    """The results as the table in docs/models.md."""
    lines = [
        "| rate | detector | test normal: false alarms / windows (max score) | IR007: detected, diagnosis | OR007@6: detected, diagnosis | B007: detected, diagnosis |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['rate']} | {r['detector']} | cannot train: {r['error']} | | | |")
            continue
        cells = []
        for fname in FAULTS:
            f = r["faults"][fname]
            cells.append(
                f"{f['detection_rate']:.0%}, {f['diagnosis']} ({f['diagnosis_share']:.0%} right)"
            )
        lines.append(
            f"| {r['rate']} | {r['detector']} | {r['test_false_alarms']} / {r['test_normal_windows']} "
            f"({r['test_normal_max_score']}) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def text_table(results: list[dict[str, Any]]) -> str:
    """The results as an aligned plain-text table (``pdm-edge evaluate`` without ``--json``)."""
    head = ["rate", "detector", "false alarms (test normal)", "max score"]
    head += [f"{f.split('_')[0]}: detected, diagnosis" for f in FAULTS]
    rows = [head]
    for r in results:
        if "error" in r:
            rows.append([r["rate"], r["detector"], f"cannot train: {r['error']}", "", "", "", ""])
            continue
        cells = [
            r["rate"],
            r["detector"],
            f"{r['test_false_alarms']} of {r['test_normal_windows']} windows",
            f"{r['test_normal_max_score']:.2f}",
        ]
        for fname in FAULTS:
            f = r["faults"][fname]
            diag = (f["diagnosis"] or "none").replace("bearing_", "").replace("_", " ")
            cells.append(f"{f['detection_rate']:.0%}, {diag} ({f['diagnosis_share']:.0%} right)")
        rows.append(cells)
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
