"""What a machine can be commissioned on: the recordings (fixtures or uploads), the models
and pipelines that fit them, and what a simulator's recording says of its fault's onset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from pdm.config import Pipeline
from pdm.core.files import read_at_most
from pdm.core.text import listing
from pdm.dashboard.context import REPO
from pdm.errors import PdmError
from pdm.scoring.card import read_card

__all__ = [
    "FIXTURES",
    "MODELS",
    "RECORDING_SUFFIXES",
    "check_recording",
    "list_models",
    "list_recordings",
    "pipelines_for",
    "recording_columns",
    "training_files",
    "truth_onset_s",
]

FIXTURES = REPO / "fixtures"
MODELS = REPO / "models"
RECORDING_SUFFIXES = (".csv", ".csv.gz")


def list_recordings(folder: Path = FIXTURES) -> list[Path]:
    """CSV recordings (``.csv``, ``.csv.gz``) in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.endswith(RECORDING_SUFFIXES)
    )


def list_models(pipeline: Pipeline, folder: Path = MODELS) -> list[Path]:
    """The pipeline's own model first, then every other model directory for the same machine."""
    out: list[Path] = []
    own = pipeline.model_dir
    if own is not None and (own / "model.json").is_file():
        out.append(own)
    if folder.is_dir():
        for d in sorted(folder.iterdir()):
            if not (d / "model.json").is_file() or (own and d.resolve() == own.resolve()):
                continue
            try:  # read_card: at most 16 MB, checked (a deep or huge file was read whole)
                machine = read_card(d).get("machine", {}).get("id")
            except PdmError:
                continue
            if machine == pipeline.machine.id:
                out.append(d)
    return out


def check_recording(path: Path, pipeline: Pipeline) -> tuple[float, float]:
    """Open ``path`` for ``pipeline`` and read its first chunk; returns the recording's start
    (POSIX s) and sample rate (Hz). Raises a one-line PdmError (a missing column names the
    column and the file)."""
    from pdm.processing import open_recording

    rec, _ = open_recording(path, pipeline)
    with rec:
        for _chunk in rec.chunks():
            break
        return float(rec.start_time), float(rec.sample_rate_hz)


def recording_columns(path: Path) -> tuple[str, ...]:
    """The column names in a recording's header (none when it cannot be read)."""
    from pdm.sources.csv import CsvRecording

    try:
        with CsvRecording(path) as rec:
            return tuple(rec.channels)
    except PdmError:
        return ()


def pipelines_for(path: Path, pipelines: Mapping[str, Pipeline]) -> dict[str, str]:
    """Every pipeline's fit to a recording: machine id → '' when the recording has every
    column the pipeline reads, else the reason it cannot be replayed with it."""
    have = set(recording_columns(path))
    out = {}
    for mid, pl in pipelines.items():
        missing = [c for c in pl.columns if c not in have]
        if pl.source_path is None:
            out[mid] = "the pipeline has no file to replay it with"
        elif not have:
            out[mid] = f"{path.name}: the recording cannot be read"
        elif missing:
            out[mid] = (
                f"{path.name} has no column {listing(missing)} "
                f"(it has {listing(sorted(have), quote=False)})"
            )
        else:
            out[mid] = ""
    return out


def truth_onset_s(path: Path) -> float | None:
    """The onset of a fault that starts during a simulated recording, s from its start:
    the latest ``onset_s`` > 0 in its ``<stem>.truth.json`` sidecar (``pdm-edge simulate``
    writes one); None without a sidecar or when every fault is there from the start."""
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    side = path.with_name(f"{stem}.truth.json")
    try:  # a sidecar is a few kB; a FIFO, /dev/zero or deep nesting is no sidecar
        truth = json.loads(read_at_most(side, 1 << 20, regular=True).decode("utf-8"))
        onsets = [float(f.get("onset_s", 0.0)) for f in truth.get("faults", [])]
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return None
    late = [o for o in onsets if math.isfinite(o) and o > 0]
    return max(late) if late else None


def training_files(model_dir: Path | None) -> list[str]:
    """The recordings a model was trained on (file names from its card): healthy by definition."""
    if model_dir is None:
        return []
    try:
        card = read_card(model_dir)
        return [
            str(f.get("file")) for f in card.get("training", {}).get("files", []) if f.get("file")
        ]
    except (PdmError, AttributeError, TypeError):
        return []
