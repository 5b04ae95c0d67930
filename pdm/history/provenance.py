"""Decision provenance: the raw windows behind an alarm transition, kept next to history.

Each capture is two files under ``<data dir>/captures/<machine>/``:

* ``<time>-<id>.npy`` — float32 array (windows, channels, samples), acceleration
  in g, read back with ``numpy.load(path, allow_pickle=False)``;
* ``<time>-<id>.json`` — what is needed to re-analyse it: machine, reason,
  model version, thresholds in force, sample rate, channel names, window start
  times and indices, the DSP parameters of the pipeline.

Both are written to a temporary name, fsynced and renamed, so a capture is
either complete or absent after a power loss. A :class:`~pdm.history.records.Capture`
record in history references the files (path relative to the data directory).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.core.files import fsync_dir
from pdm.core.time import iso_time
from pdm.dsp.windows import Window
from pdm.history.records import Capture, event_id, to_ns

__all__ = ["CaptureStore", "load_capture"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CaptureStore:
    """Writes captures under ``data_dir/captures``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)

    def capture(
        self,
        machine: str,
        windows: Sequence[Window],
        *,
        channels: Sequence[str],
        reason: str,
        model: str,
        thresholds: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> Capture:
        """Keep ``windows`` (oldest first) and return the record that references them."""
        if not windows:
            raise ValueError("a capture needs at least one window")
        last = windows[-1]
        # The same capture made again (a resumed replay) gets the same id and files.
        cid = event_id(machine, to_ns(last.t_start), reason)[:12]
        stamp = iso_time(last.t_start).replace(":", "").replace("-", "")
        folder = self.data_dir / "captures" / _SAFE.sub("_", machine)
        folder.mkdir(parents=True, exist_ok=True)
        base = f"{stamp}-{cid}"
        data = np.stack([w.data for w in windows]).astype(np.float32, copy=False)
        meta = {
            "id": cid,
            "machine": machine,
            "reason": reason,
            "model": model,
            "thresholds": dict(thresholds),
            "fs_hz": last.fs,
            "channels": list(channels),
            "unit": "g",
            "shape": list(data.shape),
            "windows": [
                {"index": w.index, "segment": w.segment, "t_start": iso_time(w.t_start)}
                for w in windows
            ],
            "context": dict(context or {}),
        }
        _atomic_write(folder / f"{base}.npy", lambda f: np.save(f, data, allow_pickle=False))
        _atomic_write(
            folder / f"{base}.json", lambda f: f.write(json.dumps(meta, indent=1).encode())
        )
        fsync_dir(folder)
        return Capture(
            machine=machine,
            t_ns=to_ns(last.t_start),
            id=cid,
            reason=reason,
            path=str((folder / f"{base}.npy").relative_to(self.data_dir)),
            model=model,
            thresholds=json.dumps(dict(thresholds), sort_keys=True),
            fs_hz=float(last.fs),
            channels=tuple(channels),
            samples=int(data.shape[-1]),
        )


def load_capture(
    data_dir: str | os.PathLike[str], capture: Capture
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """The windows (windows, channels, samples) and the metadata of a capture."""
    npy = Path(data_dir) / capture.path
    data = np.load(npy, allow_pickle=False)
    meta = json.loads(npy.with_suffix(".json").read_text())
    return data, meta
