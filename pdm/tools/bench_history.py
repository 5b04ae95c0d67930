"""History write speed for ``pdm-edge bench``: feature rows per second, through the real write path.

Rows are those of the demo pipeline (2 channels, 21 features, groups of 8
windows as ``FeatureStream`` makes them), submitted to a
:class:`~pdm.history.writer.HistoryWriter` and timed until the store has them
all. Two paths are timed, and the slower one is the headline figure, so it
holds whichever way rows travel:

* ``direct``: queue → writer thread → store (the store keeps up);
* ``spool``: the same rows first spooled to disk (fsynced, as during an
  outage), then replayed from the spool into the store.

InfluxDB 1.x is measured when ``influxd`` is on PATH: a throwaway server is
started on a free loopback port with its data in a temporary folder, and
stopped afterwards. Without it the ``_influx1`` figures are ``null`` and
``history_influx1_skipped`` says why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from pdm.dsp.features import feature_names
from pdm.history import open_store, parse_store_url
from pdm.history.base import HistoryStore
from pdm.history.records import FeatureRows
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter

__all__ = ["bench_history"]

CHANNELS = ("x_g", "y_g")
GROUP = 8  # windows per FeatureStream group
HOP_NS = 80_000_000  # the demo pipeline: a window every 0.08 s


def _batches(total_rows: int, t0_ns: int) -> list[FeatureRows]:
    names = feature_names(("high",))
    rng = np.random.default_rng(0)
    per = GROUP * len(CHANNELS)
    out = []
    for g in range(total_rows // per):
        w = g * GROUP + np.arange(GROUP)
        t = np.repeat(t0_ns + w * HOP_NS, len(CHANNELS)).astype(np.int64)
        out.append(
            FeatureRows(
                "bench",
                t,
                np.repeat(w, len(CHANNELS)).astype(np.int64),
                ("motor_de",) * per,
                CHANNELS * GROUP,
                names,
                np.exp(rng.normal(-2.0, 1.0, (per, len(names)))),
                ("A",) * per,
                np.ones(per, dtype=bool),
            )
        )
    return out


def _timed(
    open_store_: Callable[[], HistoryStore],
    spool_dir: Path,
    batches: list[FeatureRows],
    *,
    via_spool: bool,
) -> float:
    """Seconds from the first submit until every row is in the store."""
    spool = Spool(spool_dir / f"spool-{time.monotonic_ns()}.db")
    if via_spool:
        spool.push(batches)  # what an outage leaves behind
        t0 = time.perf_counter()
        writer = HistoryWriter(open_store_, spool, flush_interval_s=0.05)
    else:
        writer = HistoryWriter(open_store_, spool, flush_interval_s=0.05)
        t0 = time.perf_counter()
        for b in batches:
            writer.submit(b)
    if not writer.drain(timeout=600):
        raise RuntimeError(f"history bench: the store did not take the rows ({writer.last_error})")
    elapsed = time.perf_counter() - t0
    stats = writer.snapshot()
    writer.close()
    spool.close()
    if stats.rows_dropped or stats.rows_rejected:
        raise RuntimeError(f"history bench: rows lost ({stats})")
    return elapsed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Influxd:
    """A throwaway InfluxDB 1.x on loopback (data in a temp folder)."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.port, rpc = _free_port(), _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        cfg = folder / "influxdb.conf"
        cfg.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{folder}/meta"\n'
            f'[data]\n  dir = "{folder}/data"\n  wal-dir = "{folder}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        self.log = open(folder / "influxd.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "run", "-config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ping", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"influxd did not start (log: {folder / 'influxd.log'})")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def bench_history(*, quick: bool = False) -> dict[str, Any]:
    """``history_rows_per_s_sqlite`` / ``_influx1`` (the slower of direct and spool) and their parts."""
    rows = 20_000 if quick else 100_000
    out: dict[str, Any] = {
        "history_rows": rows,
        "history_features_per_row": len(feature_names(("high",))),
    }
    t0_ns = 1_767_225_600 * 10**9
    with tempfile.TemporaryDirectory(prefix="pdm-bench-") as tmp:
        folder = Path(tmp)
        stores: dict[str, Callable[[int], str]] = {
            "sqlite": lambda i: f"sqlite:///{folder}/history-{i}.db",
        }
        influxd = shutil.which("influxd")
        server = None
        if influxd is None:
            out["history_influx1_skipped"] = "influxd not on PATH (apt-get install influxdb)"
        else:
            server = _Influxd(influxd, folder / "influxd")
            stores["influx1"] = lambda i: f"influx1://127.0.0.1:{server.port}/bench{i}"
        try:
            for name, url_for in stores.items():
                rates = {}
                for i, via_spool in enumerate((False, True)):
                    batches = _batches(rows, t0_ns)
                    url = parse_store_url(url_for(i))
                    opener: Callable[[], HistoryStore] = partial(open_store, url)
                    secs = _timed(opener, folder, batches, via_spool=via_spool)
                    rates["spool" if via_spool else "direct"] = rows / secs
                out[f"history_rows_per_s_{name}"] = round(min(rates.values()))
                out[f"history_rows_per_s_{name}_direct"] = round(rates["direct"])
                out[f"history_rows_per_s_{name}_spool"] = round(rates["spool"])
        finally:
            if server is not None:
                server.stop()
    out.setdefault("history_rows_per_s_influx1", None)
    return out
