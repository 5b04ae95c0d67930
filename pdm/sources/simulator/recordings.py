"""Recordings on disk: a CSV (optionally gzipped) and its ground-truth JSON beside it,
written atomically.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from pdm.errors import ConfigError, InputError
from pdm.sources.simulator.signals import (
    simulate,
)
from pdm.sources.simulator.specs import (
    MAX_RECORDING_VALUES,
    SimSpec,
)
from pdm.sources.simulator.truth import (
    ground_truth,
    iso_utc,
)

CsvFormat = Literal["csv", "csv.gz"]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def truth_path(path: str | os.PathLike[str]) -> Path:
    """Sidecar ground-truth path of a recording: ``<stem>.truth.json`` beside it."""
    p = Path(path)
    return p.with_name(_stem(p) + ".truth.json")


def _csv_text(spec: SimSpec, data: npt.NDArray[np.float64], time_column: bool) -> str:
    fs_txt = repr(int(spec.fs)) if float(spec.fs).is_integer() else repr(spec.fs)
    head = [f"# sample_rate_hz={fs_txt}", f"# start_time={iso_utc(spec.start_time)}"]
    cols = (["time"] if time_column else []) + list(spec.channels)
    head.append(",".join(cols))
    row_fmt = ",".join(["%.6g"] * data.shape[1])
    rows = [row_fmt % tuple(r) for r in data.tolist()]
    if time_column:
        # Integer microseconds: exact, and the same on every platform.
        base = np.datetime64(round(spec.start_time * 1e6), "us")
        offs = np.round(np.arange(data.shape[0]) * (1e6 / spec.fs)).astype(np.int64)
        stamps = np.datetime_as_string(base + offs.astype("timedelta64[us]"), unit="us")
        rows = [f"{t}Z,{r}" for t, r in zip(stamps.tolist(), rows, strict=True)]
    return "\n".join(head + rows) + "\n"


def atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


# Level 8 is within 0.5 % of level 9's size at 60 % of its time.
_GZIP_LEVEL = 8


def _gzip_bytes(raw: bytes) -> bytes:
    buf = io.BytesIO()
    # No file name and mtime 0 in the header, so the bytes depend on content only.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=_GZIP_LEVEL
    ) as gz:
        gz.write(raw)
    return buf.getvalue()


def _truth_bytes(spec: SimSpec) -> bytes:
    return (json.dumps(ground_truth(spec), indent=2, allow_nan=False) + "\n").encode()


def write_recording(
    path: str | os.PathLike[str],
    spec: SimSpec,
    *,
    fmt: CsvFormat | None = None,
    time_column: bool = False,
) -> None:
    """Write ``simulate(spec)`` as CSV and its ground truth as ``<stem>.truth.json``.

    The file starts with ``# sample_rate_hz=…`` and ``# start_time=…`` (ISO 8601,
    UTC) comment lines, then a header row (``time`` first when ``time_column``,
    then the channel names), then one row per sample with values in g as
    ``%.6g``. Times are ISO 8601 UTC with microseconds. NaN is written ``nan``.

    Parameters
    ----------
    path : path-like
        Output file.
    spec : SimSpec
        A finite spec.
    fmt : {"csv", "csv.gz"} or None
        Plain or gzip (reproducible: no name, mtime 0); None picks ``csv.gz``
        when the path ends in ``.gz``.
    time_column : bool
        Add a ``time`` column.
    """
    p = Path(path)
    if fmt is None:
        fmt = "csv.gz" if p.name.endswith(".gz") else "csv"
    if fmt not in get_args(CsvFormat):
        raise ConfigError(f"fmt={fmt!r} must be one of {get_args(CsvFormat)}")
    values = spec.fs * spec.duration_s * len(spec.channels)
    if not values <= MAX_RECORDING_VALUES:  # --duration 1e12 asked for 364 PiB
        raise ConfigError(
            f"duration_s={spec.duration_s:g} at fs={spec.fs:g} on {len(spec.channels)} channel(s) "
            f"is {values:.3g} values; a recording holds at most {MAX_RECORDING_VALUES:,} "
            f"({MAX_RECORDING_VALUES / (spec.fs * len(spec.channels)):.4g} s here): write "
            "less, or stream it with 'pdm-edge run --simulate'"
        )
    raw = _csv_text(spec, simulate(spec), time_column).encode("ascii")
    try:
        atomic_write(p, _gzip_bytes(raw) if fmt == "csv.gz" else raw)
        atomic_write(truth_path(p), _truth_bytes(spec))
    except OSError as exc:
        raise InputError(f"{p}: cannot write recording: {exc}") from exc
