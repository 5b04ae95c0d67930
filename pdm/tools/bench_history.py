"""History write speed for ``pdm-edge bench``: feature rows per second, through the real write path.

Rows are those of the demo pipeline (2 channels, 21 features, groups of 8
windows as ``FeatureStream`` makes them), submitted to a
:class:`~pdm.history.writer.HistoryWriter` and timed until the store has them
all. Two paths are timed, and the slower one is the headline figure, so it
holds whichever way rows travel:

* ``direct``: queue → writer thread → store (the store keeps up);
* ``spool``: the same rows first spooled to disk (fsynced, as during an
  outage), then replayed from the spool into the store.

``history_cpu_us_per_window`` is what the history path costs a live service per window, in
CPU time (:func:`cpu_per_window`): a window's records built as the service builds them
(:meth:`~pdm.history.recorder.Recorder.records`, real features of a six-channel pipeline,
its score, its spectra when due) and submitted, on the submitting thread; and the writer
thread putting them into SQLite, flushed as often as a service of 64 such machines flushes.

InfluxDB 1.x is measured when ``influxd`` is on PATH: a throwaway server is
started on a free loopback port with its data in a temporary folder, and
stopped afterwards. Without it the ``_influx1`` figures are ``null`` and
``history_influx1_skipped`` says why.
"""

from __future__ import annotations

import dataclasses
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

from pdm.config import pipeline_from_flags
from pdm.core.time import to_ns
from pdm.dsp.features import feature_names
from pdm.history import open_store, parse_store_url
from pdm.history.base import HistoryStore
from pdm.history.recorder import Recorder
from pdm.history.records import FeatureRows
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.processing import FeatureStream, WindowFeatures
from pdm.scoring.result import WindowScore
from pdm.sources.base import Chunk
from pdm.sources.simulator import SimSpec, Simulator

__all__ = ["bench_history", "cpu_per_window"]

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


#: The live-service figure's load: machines of six channels (two tri-axial sensors), 16384-sample
#: windows at 25.6 kHz with 50 % overlap (3.125 windows a second each), as ``run_load``'s
#: two-sensor machines; the writer flushed every this many windows (a service of 64 such
#: machines flushes every 0.5 s, ``WRITER_FLUSH_S``: 100 windows).
CPU_MACHINES = 8
CPU_FS = 25600.0
CPU_WINDOW = 16384
CPU_CHANNELS = ("s0_x_g", "s0_y_g", "s0_z_g", "s1_x_g", "s1_y_g", "s1_z_g")
CPU_FLUSH_WINDOWS = 100


def _live_windows(windows: int) -> list[tuple[Recorder, WindowFeatures, WindowScore]]:
    """``windows`` windows of :data:`CPU_MACHINES` machines, in arrival order, with what the
    service hands the recorder: real features (of 16 simulated windows, reused with their
    index and time set) and a score; every 7th machine from the 4th in alert, explained."""
    pipes = [
        pipeline_from_flags(fs=CPU_FS, columns=CPU_CHANNELS, window=CPU_WINDOW, overlap=0.5,
                            rpm=1480.0, bearing="6205", machine_id=f"h{j:03d}")
        for j in range(CPU_MACHINES)
    ]  # fmt: skip
    hop_s = CPU_WINDOW * 0.5 / CPU_FS
    spec = dataclasses.replace(
        SimSpec(), fs=CPU_FS, duration_s=9 * hop_s + CPU_WINDOW / CPU_FS + 0.1, rpm=1480.0,
        channels=CPU_CHANNELS, start_time=0.0, seed=2,
    )  # fmt: skip
    data = np.concatenate([c.data for c in Simulator(spec).chunks()])
    stream = FeatureStream(pipes[0], CPU_FS)
    frames = list(stream.feed([Chunk(data, CPU_FS, 0.0, CPU_CHANNELS)]))[:8]
    names = frames[0].features.names
    top = tuple(
        {"feature": f"s0_x_g.{n}", "value": 0.1, "z": 9.0 - k} for k, n in enumerate(names[:5])
    )
    recorders = [Recorder(p) for p in pipes]
    rng = np.random.default_rng(0)
    t0 = 1_767_225_600.0
    out = []
    for i in range(windows // CPU_MACHINES):
        for j, rec in enumerate(recorders):
            base = frames[i % len(frames)]
            t = t0 + i * hop_s + j * 0.001
            wf = WindowFeatures(dataclasses.replace(base.window, index=i, t_start=t), base.features)
            alert = j % 7 == 3
            score = WindowScore(
                to_ns(t), i, "alert" if alert else "ok",
                float(rng.uniform(1.2, 3.0) if alert else rng.uniform(0.1, 0.6)),
                model="0123456789ab", top_features=top if alert else (),
                diagnosis="unbalance" if alert else "none", diagnosis_confidence=0.8,
            )  # fmt: skip
            out.append((rec, wf, score))
    return out


def cpu_per_window(folder: Path, *, windows: int = 8000) -> dict[str, Any]:
    """CPU µs a window of the history path, on the submitting thread and the writer thread.

    The submitting side is the thread CPU time (``time.thread_time``) of every window's
    ``Recorder.records`` and ``HistoryWriter.submit`` (inside ``together``, as a service's
    round); the writer side the writer thread's CPU clock over the run, which ends when
    every row is in the store. Both ÷ windows. Signals and features are made before timing.
    """
    load = _live_windows(windows)
    spool = Spool(folder / f"cpu-spool-{time.monotonic_ns()}.db")
    url = f"sqlite:///{folder}/cpu-history-{time.monotonic_ns()}.db"
    writer = HistoryWriter(partial(open_store, url, worker=0), spool, flush_interval_s=0.5)
    writer_t0 = writer.cpu_s()
    submit = 0.0
    for n, (rec, wf, score) in enumerate(load, 1):
        t = time.thread_time()
        with writer.together():
            records = rec.records(
                [wf], [score], model=score.model, thresholds={"alert": 1.0, "danger": 2.0}
            )
            writer.submit(*records, mark=to_ns(wf.window.t_start))
        submit += time.thread_time() - t
        if n % CPU_FLUSH_WINDOWS == 0:
            writer.flush()
    if not writer.drain(timeout=600):
        raise RuntimeError(f"history bench: the store did not take the rows ({writer.last_error})")
    writer_s = writer.cpu_s() - writer_t0
    writer.close()
    spool.close()
    n = len(load)
    return {
        "history_cpu_us_per_window": round((submit + writer_s) / n * 1e6, 1),
        "history_cpu_us_per_window_submit": round(submit / n * 1e6, 1),
        "history_cpu_us_per_window_writer": round(writer_s / n * 1e6, 1),
        "history_cpu_windows": n,
        "history_cpu_channels": len(CPU_CHANNELS),
        "history_cpu_features_per_channel": len(load[0][1].features.names),
    }


def bench_history(*, quick: bool = False) -> dict[str, Any]:
    """``history_rows_per_s_sqlite`` / ``_influx1`` (the slower of direct and spool) and their
    parts; ``history_cpu_us_per_window`` and its parts (:func:`cpu_per_window`)."""
    rows = 20_000 if quick else 100_000
    out: dict[str, Any] = {
        "history_rows": rows,
        "history_features_per_row": len(feature_names(("high",))),
    }
    t0_ns = 1_767_225_600 * 10**9
    with tempfile.TemporaryDirectory(prefix="pdm-bench-") as tmp:
        folder = Path(tmp)
        out.update(cpu_per_window(folder, windows=2000 if quick else 8000))
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
