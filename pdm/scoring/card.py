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
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)
from pydantic import StrictFloat as _F
from pydantic import StrictInt as _I

from pdm.config import Pipeline
from pdm.core.jsonkeys import unique_keys
from pdm.diagnosis.baseline import Baseline
from pdm.errors import ModelError

__all__ = [
    "CARD_SCHEMA_VERSION",
    "MAX_CARD_BYTES",
    "MAX_ONNX_BYTES",
    "check_card",
    "dsp_signature",
    "onnx_file",
    "read_card",
    "sha256_file",
    "write_card",
]

CARD_SCHEMA_VERSION = 1

#: model.json larger than this is refused before parsing (a card of 1,000 features is ~0.5 MB).
MAX_CARD_BYTES = 16 << 20
#: The ONNX graph a card may name, at most (the detectors here make a few kB to a few MB).
MAX_ONNX_BYTES = 256 << 20


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


# --- the card's shape: what the loaders read, checked before anything reads it ---------------
# (A card is input like any other: it may come from a candidate upload or a copied folder.)

_Num = _F | _I
_Pos = Annotated[_Num, Field(gt=0, allow_inf_nan=False)]
_Name = Annotated[StrictStr, Field(min_length=1, max_length=256)]
_F32 = Annotated[_Num, Field(ge=-3.4e38, le=3.4e38)]  # a finite float32 (NaN fails both)


def _float32_or_nan(v: float) -> float:
    if v == v and not -3.4e38 <= v <= 3.4e38:  # NaN is judged by the self-check's score
        raise ValueError("outside float32's range")
    return v


_F32orNaN = Annotated[_Num, AfterValidator(_float32_or_nan)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Feature(_Open):
    name: _Name


class _Preprocess(_Open):
    names: list[_Name]
    log: list[StrictBool]
    floor: list[_F32]
    center: list[_F32]
    scale: list[Annotated[_F32, Field(gt=0)]]


class _Bearing(_Open):
    rolling_elements: _I
    ball_diameter_mm: _Num
    pitch_diameter_mm: _Num
    contact_angle_deg: _Num


class _DspChannel(_Open):
    column: _Name
    unit: _Name
    bearing: _Bearing | None = None


class _Speed(_Open):
    fixed_rpm: _Num | None = None
    search_rpm: Annotated[list[_Num], Field(min_length=2, max_length=2)] | None = None


class _BandSpec(_Open):
    name: _Name
    low_hz: _Num
    high_hz: _Num


class _Dsp(_Open):
    sample_rate_hz: _Pos
    window_samples: Annotated[_I, Field(gt=0, le=2**22)]
    hop_samples: Annotated[_I, Field(gt=0, le=2**22)]
    channels: Annotated[list[_DspChannel], Field(min_length=1, max_length=64)]
    speed: _Speed | None = None
    envelope_band_hz: StrictStr | Annotated[list[_Num], Field(min_length=2, max_length=2)]
    slip_tolerance: _Num
    bands: list[_BandSpec]


class _Score(_Open):
    # Their values are judged where they are used (Model.load, check_candidate).
    alert: _Num = 1.0
    danger: _Num


class _Onnx(_Open):
    # A plain file name in the model's directory: never a path out of it, nor a device.
    file: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")] = (
        "model.onnx"
    )
    sha256: StrictStr


class _Reference(_Open):
    features: list[_F32orNaN]
    score: _Num


class _Card(_Open):
    schema_version: Literal[1]
    features: Annotated[list[_Feature], Field(min_length=1, max_length=100_000)]
    preprocess: _Preprocess
    dsp: _Dsp
    score: _Score
    onnx: _Onnx
    reference: _Reference | None = None  # Model.load says "no reference window" itself
    machine: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)


def _shape_problem(card: dict[str, Any]) -> str | None:
    """What is wrong with the card's structure (first problem, key path), or None."""
    try:
        c = _Card.model_validate(card)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(
            str(p) for p in err["loc"] if not str(p).startswith(("function-", "constrained-"))
        )
        got = repr(err.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        return f"{loc or 'card'}: {err['msg']} (got {got})"
    names = [f.name for f in c.features]
    p = c.preprocess
    for key, values in (("names", p.names), ("log", p.log), ("floor", p.floor),
                        ("center", p.center), ("scale", p.scale)):  # fmt: skip
        if len(values) != len(names):
            return f"preprocess.{key}: {len(values)} values for {len(names)} features"
    if p.names != names:
        return "preprocess.names: not the features' names in the same order"
    if c.reference is not None and len(c.reference.features) != len(names):
        return f"reference.features: {len(c.reference.features)} values for {len(names)} features"
    if card.get("diagnosis_baseline") is not None:  # older cards have none: judged as before
        try:
            Baseline.from_dict(card["diagnosis_baseline"])
        except ValueError as exc:
            return f"diagnosis_baseline: {exc}"
    return None


def read_card(directory: Path) -> dict[str, Any]:
    """Read and check ``model.json``; one-line :class:`ModelError` on any problem.

    Besides the JSON itself, the structure every loader reads is checked (types, lengths,
    a plain ONNX file name), so a hand-edited or hostile card is one line, never a
    traceback; at most :data:`MAX_CARD_BYTES` are read.
    """
    path = directory / "model.json"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, a device not end
            raise ModelError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            raw = f.read(MAX_CARD_BYTES + 1)
    except FileNotFoundError:
        raise ModelError(f"{directory}: no model here (model.json is missing)") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CARD_BYTES:
        raise ModelError(f"{path}: larger than {MAX_CARD_BYTES:,} bytes; not a model card")
    try:
        # A key given twice is refused, not "the last one wins": a signature, a log or a
        # reviewer may have read the first (a danger of 1.5 before one of NaN, say).
        card = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:  # > 4300-digit integers; deep nesting; a key twice
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
        raise ModelError(f"{path}: not valid JSON: {why}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{path}: expected a JSON object")
    version = card.get("schema_version")
    if version != CARD_SCHEMA_VERSION or isinstance(version, bool):
        raise ModelError(
            f"{path}: card schema_version {version!r} is not the one this pdm-edge reads ({CARD_SCHEMA_VERSION})"
        )
    for key in ("features", "preprocess", "dsp", "score", "onnx"):
        if key not in card:
            raise ModelError(f"{path}: the card has no {key!r} section")
    problem = _shape_problem(card)
    if problem is not None:
        raise ModelError(f"{path}: {problem}")
    return card


def onnx_file(directory: Path, card: dict[str, Any]) -> Path:
    """The card's ONNX file in ``directory``, checked to be a regular file of at most
    :data:`MAX_ONNX_BYTES` (never a FIFO or a device); :class:`ModelError` otherwise."""
    path = directory / str(card["onnx"].get("file", "model.onnx"))
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{path}: not a regular file")
    if st.st_size > MAX_ONNX_BYTES:
        raise ModelError(f"{path}: larger than {MAX_ONNX_BYTES:,} bytes; not a model here")
    return path


def _housings(
    channels: list[dict[str, Any]], recorded: Any
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The card's channels grouped into sensors (housings), in order: as the card records
    them (``machine.sensors``, written since the diagnosis arbitrates between housings) when
    that record matches the channels, else consecutive channels with the same bearing
    together (an older card: as pipelines are usually written, one sensor per housing)."""
    cols = [ch["column"] for ch in channels]
    if isinstance(recorded, list) and all(
        isinstance(x, dict)
        and isinstance(x.get("id"), str)
        and x["id"]
        and isinstance(x.get("columns"), list)
        and x["columns"]
        for x in recorded
    ):
        flat = [c for x in recorded for c in x["columns"]]
        if flat == cols and len({x["id"] for x in recorded}) == len(recorded):
            out, i = [], 0
            for x in recorded:
                n = len(x["columns"])
                chans = channels[i : i + n]
                if any(ch.get("bearing") != chans[0].get("bearing") for ch in chans):
                    break
                out.append((str(x["id"]), chans))
                i += n
            else:
                return out
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for ch in channels:
        if groups and groups[-1][1][0].get("bearing") == ch.get("bearing"):
            groups[-1][1].append(ch)
        else:
            groups.append((f"s{len(groups) + 1}", [ch]))
    return groups


def pipeline_from_card(card: dict[str, Any], *, where: str) -> Pipeline:
    """The pipeline a model was trained with, rebuilt from its card (for ``score`` without ``--pipeline``)."""
    dsp = card["dsp"]
    machine = card.get("machine", {})
    window = int(dsp["window_samples"])
    hop = int(dsp["hop_samples"])
    sensors = []
    for sid, chans in _housings(dsp["channels"], machine.get("sensors")):
        sensor: dict[str, Any] = {
            "id": sid,
            "channels": [{"column": ch["column"], "unit": ch["unit"]} for ch in chans],
        }
        if chans[0].get("bearing"):
            sensor["bearing"] = dict(chans[0]["bearing"])
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
    except ValidationError as exc:  # the card itself is inconsistent
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ModelError(
            f"{where}: the card's DSP parameters do not form a valid pipeline: "
            f"{loc}: {' '.join(str(err['msg']).split())}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from exc
