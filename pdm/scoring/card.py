"""The model card (``model.json``): everything a model depends on, checked at load.

A model is only valid for the features it was trained on, and those depend on
every DSP parameter: sample rate, window, overlap, channels and their units,
bearings, envelope band, bands, speed. The card records them (the *DSP
signature*), the feature names and units in input order, the calibration, the
training data (files with SHA-256), the evaluation, the package versions and
the ONNX file's SHA-256. :func:`check_card` compares a card with a pipeline and
names every difference; nothing is ever loaded with pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pdm.config import Pipeline
from pdm.errors import ModelError

__all__ = [
    "CARD_SCHEMA_VERSION",
    "check_card",
    "dsp_signature",
    "read_card",
    "sha256_file",
    "write_card",
]

CARD_SCHEMA_VERSION = 1


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dsp_signature(pipeline: Pipeline, fs: float) -> dict[str, Any]:
    """Every parameter the features depend on, as plain JSON values."""
    acq = pipeline.acquisition
    speed = pipeline.machine.speed
    channels = []
    for col in pipeline.columns:
        sensor, ch = pipeline.channel(col)
        g = sensor.bearing_geometry
        channels.append(
            {
                "column": col,
                "unit": ch.unit,
                "bearing": None
                if g is None
                else {
                    "rolling_elements": g.rolling_elements,
                    "ball_diameter_mm": round(g.ball_diameter_mm, 6),
                    "pitch_diameter_mm": round(g.pitch_diameter_mm, 6),
                    "contact_angle_deg": round(g.contact_angle_deg, 6),
                },
            }
        )
    band = pipeline.envelope.band_hz
    return {
        "sample_rate_hz": float(fs),
        "window_samples": acq.window_samples,
        "hop_samples": acq.hop_samples,
        "channels": channels,
        "speed": None
        if speed is None
        else {
            "fixed_rpm": speed.fixed_rpm,
            "search_rpm": list(speed.search_rpm) if speed.search_rpm else None,
        },
        "envelope_band_hz": band if isinstance(band, str) else [float(band[0]), float(band[1])],
        "slip_tolerance": pipeline.envelope.slip_tolerance,
        "bands": [
            {"name": b.name, "low_hz": b.low_hz, "high_hz": b.high_hz} for b in pipeline.bands
        ],
    }


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k, out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: model {json.dumps(a)} != pipeline {json.dumps(b)}")


def check_card(card: dict[str, Any], pipeline: Pipeline, fs: float, *, where: str) -> None:
    """Raise :class:`ModelError` naming every DSP parameter where card and pipeline differ."""
    diffs: list[str] = []
    want, got = card.get("dsp"), dsp_signature(pipeline, fs)
    if pipeline.speed_from_flags and isinstance(want, dict):
        # score --model M --rpm R: the orders and defect lines the model learnt are read at
        # the speed the user gave (the features are speed-normalised; nothing else changes).
        want, got = {**want, "speed": None}, {**got, "speed": None}
    _diff(want, got, "", diffs)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else "")
        raise ModelError(
            f"{where}: the model was trained with other DSP parameters than "
            f"{pipeline.source_path or 'this pipeline'} uses: {shown}; retrain it or use a matching pipeline"
        )


def write_card(directory: Path, card: dict[str, Any]) -> Path:
    """Write ``model.json`` atomically (temp file, fsync, rename)."""
    path = directory / "model.json"
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_card(directory: Path) -> dict[str, Any]:
    """Read and sanity-check ``model.json``; one-line :class:`ModelError` on any problem."""
    path = directory / "model.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{directory}: no model here (model.json is missing)") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{path}: expected a JSON object")
    version = card.get("schema_version")
    if version != CARD_SCHEMA_VERSION:
        raise ModelError(
            f"{path}: card schema_version {version!r} is not the one this pdm-edge reads ({CARD_SCHEMA_VERSION})"
        )
    for key in ("features", "preprocess", "dsp", "score", "onnx"):
        if key not in card:
            raise ModelError(f"{path}: the card has no {key!r} section")
    return card


def pipeline_from_card(card: dict[str, Any], *, where: str) -> Pipeline:
    """The pipeline a model was trained with, rebuilt from its card (for ``score`` without ``--pipeline``)."""
    dsp = card["dsp"]
    machine = card.get("machine", {})
    window = int(dsp["window_samples"])
    hop = int(dsp["hop_samples"])
    sensors = []
    for i, ch in enumerate(dsp["channels"]):
        sensor: dict[str, Any] = {
            "id": f"s{i + 1}",
            "channels": [{"column": ch["column"], "unit": ch["unit"]}],
        }
        if ch.get("bearing"):
            sensor["bearing"] = dict(ch["bearing"])
        sensors.append(sensor)
    speed = dsp.get("speed")
    data: dict[str, Any] = {
        "schema_version": 1,
        "machine": {
            "id": machine.get("id", "model"),
            "name": machine.get("name", machine.get("id", "model")),
            "iso_group": machine.get("iso_group", 2),
            "foundation": machine.get("foundation", "rigid"),
        },
        "acquisition": {
            "sample_rate_hz": float(dsp["sample_rate_hz"]),
            "window_samples": window,
            "overlap": (window - hop) / window,
        },
        "sensors": sensors,
        "envelope": {"band_hz": dsp["envelope_band_hz"], "slip_tolerance": dsp["slip_tolerance"]},
        "bands": dsp["bands"],
    }
    if speed is not None:
        if speed.get("fixed_rpm") is not None:
            data["machine"]["speed"] = {"rpm": float(speed["fixed_rpm"])}
        elif speed.get("search_rpm"):
            lo, hi = speed["search_rpm"]
            data["machine"]["speed"] = {
                "nominal_rpm": (lo + hi) / 2,
                "min_rpm": float(lo),
                "max_rpm": float(hi),
            }
    try:
        return Pipeline.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError: the card itself is inconsistent
        raise ModelError(
            f"{where}: the card's DSP parameters do not form a valid pipeline: {exc}"
        ) from exc
