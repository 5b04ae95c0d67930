"""Issue 17, as a measurement: two worker processes writing history batches to one SQLite
file, against a file each (what `pdm-edge run --workers N` does now, docs/history.md).

    .venv/bin/python scripts/history_contention.py [BATCHES]

Each process writes BATCHES (default 60) batches as a worker's history writer does every
0.5 s at ~470 machines on two workers: 235 machines × 6 channels of feature rows, 21
features. Prints, per layout and process, the write time per batch (p50, p99) — the time a
writer waits for the other's lock shows in the p99 — and the batches that failed ("database
is locked": a lock held longer than the store's 5-s busy timeout).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1_767_225_600_000_000_000
MACHINES, CHANNELS, FEATURES = 235, 6, 21


def _writer(path: Path, k: int, batches: int, out: Any) -> None:
    from pdm.history.base import HistoryError
    from pdm.history.records import FeatureRows
    from pdm.history.sqlite import SqliteStore

    store = SqliteStore(path)
    names = tuple(f"f{j}_g" for j in range(FEATURES))
    rng = np.random.default_rng(k)
    failed, took = 0, []
    for b in range(batches):
        t = T0 + b * 500_000_000
        recs = [
            FeatureRows(
                f"w{k}-m{i:03d}",
                np.full(CHANNELS, t, np.int64),
                np.full(CHANNELS, b, np.int64),
                ("s0",) * 3 + ("s1",) * 3,
                tuple(f"c{j}" for j in range(CHANNELS)),
                names,
                rng.random((CHANNELS, FEATURES)),
                ("A",) * CHANNELS,
                np.ones(CHANNELS, bool),
            )
            for i in range(MACHINES)
        ]
        t0 = time.perf_counter()
        try:
            store.write(recs)
        except HistoryError:
            failed += 1
        took.append(time.perf_counter() - t0)
    store.close()
    out.put((k, failed, float(np.median(took)), float(np.percentile(took, 99))))


def _run(shared: bool, batches: int) -> list[tuple[int, int, float, float]]:
    d = Path(tempfile.mkdtemp(prefix="pdm-contention-"))
    q: Any = mp.Queue()
    procs = [
        mp.Process(target=_writer, args=(d / ("h.db" if shared else f"h-w{k}.db"), k, batches, q))
        for k in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return sorted(q.get() for _ in procs)


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    print("layout      worker  failed  p50 ms  p99 ms")
    for shared in (True, False, True, False):
        for k, failed, p50, p99 in _run(shared, batches):
            name = "one file" if shared else "a file each"
            print(f"{name:<11} {k:>6}  {failed:>6}  {p50 * 1e3:>6.0f}  {p99 * 1e3:>6.0f}")


if __name__ == "__main__":
    main()
