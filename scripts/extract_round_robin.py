"""Extraction CPU per window of the bench fleet's machines, as the service meets them.

One machine's windows in a loop (its state warm) against round-robin over N machines (each
window alone, as the service extracts at ~1 window a round, the machine's state cold when its
turn comes back); split into the extraction proper (``extract_scheduled``) and the diagnosis
engine's update (``take``). CPU µs per window (``time.process_time``), per repetition and
the medians. docs/benchmarks.md ("Around the extraction") has the figures.

    .venv/bin/python scripts/extract_round_robin.py 64 12
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from pdm.config import load_pipeline
from pdm.core.chunk import Chunk
from pdm.processing import FeatureStream
from pdm.tools import bench_run as br


def main() -> None:
    n_machines = int(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    tmp = Path(tempfile.mkdtemp(prefix="rr-"))
    streams, wins, signals = [], [], {}
    for m in br.fleet(n_machines):
        path = tmp / f"{m.id}.toml"
        path.write_text(br._pipeline(m, tmp / "nomodel", "http://127.0.0.1:9/", "log://"))
        pl = load_pipeline(path)
        fs = FeatureStream(pl, br.FS, batch=1)
        key = (m.shape.name, m.rpm, m.faulty)
        if key not in signals:
            signals[key] = br._signal(m.shape, m.rpm, m.faulty, 4.0, 1)
        x = signals[key]
        ws = []
        for i in range(0, x.shape[0] - br.FRAME_SAMPLES + 1, br.FRAME_SAMPLES):
            chunk = Chunk(
                data=x[i : i + br.FRAME_SAMPLES],
                fs=br.FS,
                t0=1.7e9 + i / br.FS,
                channels=tuple(pl.columns),
            )
            ws += fs.cut(chunk)
        streams.append(fs)
        wins.append(ws[:4])

    def run(order: list[tuple[int, int]]) -> tuple[float, float]:
        ext = take = 0.0
        for k, j in order:
            fs, w = streams[k], wins[k][j]
            t0 = time.process_time()
            fs._band, frames = fs.extractor.extract_scheduled([w.data], fs._band)
            t1 = time.process_time()
            fs.take([w], frames)
            ext += t1 - t0
            take += time.process_time() - t1
        return ext / len(order) * 1e6, take / len(order) * 1e6

    orders = {
        "same m000 (6 ch)": [(0, j % 4) for j in range(4 * n_machines)],
        "same m001 (3 ch)": [(1, j % 4) for j in range(4 * n_machines)],
        f"round-robin {n_machines}": [(k, j) for j in range(4) for k in range(n_machines)],
    }
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in orders}
    for _ in range(reps):
        for name, order in orders.items():
            res[name].append(run(order))
    for name, v in res.items():
        print(name, [(round(a), round(b)) for a, b in v])
    for name, v in res.items():
        ext = statistics.median(a for a, _b in v)
        diag = statistics.median(b for _a, b in v)
        print(f"{name:22s} extract µs/window {ext:7.0f}  diagnosis (take) {diag:6.0f}")


if __name__ == "__main__":
    main()
