"""``pdm-edge replay``: recordings through features and scoring into a history store.

The same path the service runs (FeatureStream, then each group of windows through
:class:`pdm.supervision.window.WindowPipeline`: score → record → alarms → HistoryWriter),
as fast as possible or paced (``--speed 1.0`` = real time).

**Interrupted and resumed.** SIGTERM or Ctrl-C stops reading, delivers or
spools what is queued, saves a checkpoint and exits 143 (130 for Ctrl-C).
The checkpoint holds the writer's *durable mark*: the newest window whose
rows are all in the store or the spool. Running the same command again (same
file, pipeline, model and store) resumes after that window; windows before it
are processed again (the DSP needs the stream) but not written. Records are
keyed, so a window written twice is stored once. After kill -9 the
checkpoint is at most ~1 s old and the rows after it are written again: a
replay loses nothing even then. ``--restart`` ignores the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pdm.alarms.state import MachineAlarm
from pdm.config import Pipeline
from pdm.core.files import read_at_most
from pdm.core.time import iso_ns, to_ns
from pdm.errors import ConfigError
from pdm.history import open_store, parse_store_url, spool_path
from pdm.history.base import HistoryError, StoreURL
from pdm.history.provenance import CaptureStore
from pdm.history.recorder import Recorder
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.processing import FeatureStream, WindowFeatures, open_recording
from pdm.supervision.engine import AlarmEngine
from pdm.supervision.store import AlarmStore
from pdm.supervision.window import WindowPipeline

__all__ = ["ReplayOptions", "replay", "resolve_store"]

log = logging.getLogger("pdm.replay")


@dataclass
class ReplayOptions:
    store: StoreURL
    data_dir: Path
    model_dir: Path | None = None
    speed: float | None = None
    fs: float | None = None
    start_time: float | None = None
    restart: bool = False
    drain_timeout_s: float = 30.0
    capture_windows: frozenset[int] = frozenset()
    actions: str = "dry-run"
    alarm_store: AlarmStore = field(default=None)  # type: ignore[assignment]  # set by replay()
    progress: bool = True
    checkpoint_every_s: float = 1.0


def resolve_store(arg: str | None, pipeline: Pipeline, data_dir: Path) -> StoreURL:
    """``--store``, else the pipeline's ``[history] store``, else SQLite in the data dir."""
    if arg:
        return parse_store_url(arg, where="--store")
    if pipeline.history.store:
        where = f"{pipeline.source_path}: history.store"
        return parse_store_url(pipeline.history.store, base_dir=pipeline.base_dir, where=where)
    return parse_store_url(f"sqlite:///{(data_dir / 'history.db').resolve()}")


@dataclass
class _Stop:
    """Set by SIGTERM/SIGINT; the loop checks it between chunks."""

    event: threading.Event = field(default_factory=threading.Event)
    signal: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()


def _checkpoint_key(
    path: str, pipeline: Pipeline, model: str, store: StoreURL, actions: str
) -> str:
    st = os.stat(path)
    ident = {
        "file": os.path.abspath(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "pipeline": pipeline.model_dump_json(),
        "model": model,
        "store": str(store),
        "actions": actions,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replay(files: Sequence[str], pipeline: Pipeline, opts: ReplayOptions) -> dict[str, Any]:
    """Replay ``files`` into the store; returns the summary (``interrupted`` set on a signal)."""
    from pdm.scoring.stream import ScoreStream

    started = time.monotonic()
    # Fail fast on a store that can never work (a SQLite path that is not a database,
    # a bad URL); a server that is merely down is fine: rows go to the spool.
    try:
        with open_store(opts.store, retention_days=pipeline.history.retention_days) as probe:
            probe.ping()
    except HistoryError as exc:
        if not exc.retryable or opts.store.scheme == "sqlite":
            raise  # a local file that cannot be opened now will not open later either
        print(f"pdm-edge: warning: {exc}; spooling until it answers", flush=True, file=_stderr())
    try:
        for sub in ("spool", "captures", "replay"):
            (opts.data_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data-dir {opts.data_dir}: {exc.strerror or exc}") from exc

    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    spool = Spool(
        spool_path(opts.data_dir, opts.store), max_bytes=int(pipeline.history.spool_max_mb * 2**20)
    )
    writer = HistoryWriter(
        lambda: open_store(opts.store, retention_days=pipeline.history.retention_days),
        spool,
        label=pipeline.machine.id,
    )
    captures = CaptureStore(opts.data_dir)
    opts.alarm_store = AlarmStore(opts.data_dir / "alarms.db")
    summary: dict[str, Any] = {
        "files": list(files),
        "store": str(opts.store),
        "machine": pipeline.machine.id,
        "windows": 0,
        "invalid_windows": 0,
        "windows_skipped": 0,
        "resumed_after": None,
        "transitions": [],
        "captures": 0,
        "interrupted": None,
    }
    try:
        for path in files:
            _replay_one(path, pipeline, opts, writer, captures, summary, stop, ScoreStream)
            if stop.event.is_set():
                break
    finally:
        signal_name = stop.signal
        delivered = False
        if signal_name is None:
            delivered = writer.drain(opts.drain_timeout_s)
        writer.close(timeout=5.0 if signal_name else 10.0)
        stats = writer.snapshot()
        spool.close()
        opts.alarm_store.close()
        for s, h in old.items():
            signal.signal(s, h)
    summary.update(
        interrupted=signal_name,
        rows_submitted=stats.rows_submitted,
        rows_written=stats.rows_written,
        rows_spooled=stats.rows_spooled,
        rows_dropped=stats.rows_dropped,
        rows_rejected=stats.rows_rejected,
        dropped_by_kind=stats.dropped_by_kind,
        spool_rows=stats.spool_rows,
        store_outages=stats.outages,
        all_delivered=delivered
        and stats.spool_rows == 0
        and stats.rows_rejected == 0
        and stats.rows_dropped == 0,
        elapsed_s=round(time.monotonic() - started, 3),
    )
    summary.pop("_alarm", None)
    return summary


def _stderr() -> Any:
    import sys

    return sys.stderr


def _replay_one(
    path: str,
    pipeline: Pipeline,
    opts: ReplayOptions,
    writer: HistoryWriter,
    captures: CaptureStore,
    summary: dict[str, Any],
    stop: _Stop,
    score_stream_cls: Any,
) -> None:
    rec, pl = open_recording(path, pipeline, fs=opts.fs, start_time=opts.start_time)
    with rec:
        features = FeatureStream(pl, rec.sample_rate_hz)
        scores = None
        model_dir = opts.model_dir or pl.model_dir
        if model_dir is not None:
            scores = score_stream_cls(
                pl,
                rec.sample_rate_hz,
                Path(model_dir),
                features.extractor.names,
                engine=features.engine,  # the model's healthy lines are no fault evidence
            )
        model_version = scores.scorer.model.version if scores and scores.scorer else ""
        recorder = Recorder(pl, captures, capture_windows=opts.capture_windows)
        ckpt = (
            opts.data_dir
            / "replay"
            / f"{_checkpoint_key(path, pl, model_version, opts.store, opts.actions)}.json"
        )
        mark: int | None = None
        alarm_at_mark: MachineAlarm | None = None
        if not opts.restart and ckpt.exists():
            # A checkpoint that is not what replay writes (damaged, edited: a list, a mark
            # that is no integer, nesting too deep) is no checkpoint: the file starts over.
            try:
                state = json.loads(read_at_most(ckpt, 1 << 20).decode("utf-8"))
                if not state.get("complete"):
                    mark = state.get("mark_ns")
                    if mark is not None and (type(mark) is not int or mark < 0):
                        raise TypeError("mark_ns")
                    if state.get("alarm") is not None:
                        alarm_at_mark = MachineAlarm.from_json(state["alarm"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
                mark, alarm_at_mark = None, None
        # Dry run: a re-analysis. It starts from ok (resumed: from the alarm state at its
        # checkpoint; later files: from the previous file's end) and keeps its state apart
        # from the machine's live one ("<id>#replay"). Live actions act for the machine: the
        # state is the machine's own, continued from the store.
        live = opts.actions == "live"
        start = alarm_at_mark or (None if live else summary.get("_alarm") or MachineAlarm())
        engine = AlarmEngine(
            pl,
            opts.alarm_store,
            writer.submit,
            recorder,
            opts.data_dir,
            actions=opts.actions,
            state=start,
            key=pl.machine.id if live else f"{pl.machine.id}#replay",
            submit_durable=writer.submit_durable,
        )
        # Alarm state after each group not yet known to be durable, by the group's last t_ns.
        snapshots: dict[int, dict[str, Any]] = {}
        if mark is not None and alarm_at_mark is not None:
            snapshots[mark] = alarm_at_mark.to_json()

        def checkpoint(complete: bool) -> None:
            m = writer.durable_mark
            alarm = snapshots.get(m) if m is not None else None
            for t in [t for t in snapshots if m is not None and t < m]:
                del snapshots[t]
            _save_checkpoint(
                ckpt, {"file": path, "mark_ns": m, "complete": complete, "alarm": alarm}
            )

        if mark is not None:
            summary["resumed_after"] = iso_ns(mark)
            print(f"pdm-edge: {path}: resuming after {iso_ns(mark)}", file=_stderr())
        last_ckpt = time.monotonic()
        t_first: float | None = None
        wall0 = time.monotonic()

        window_path = WindowPipeline(features, scores, recorder, engine, writer)

        def write_group(group: list[WindowFeatures]) -> None:
            nonlocal last_ckpt
            if not group:
                return
            t_last = to_ns(group[-1].window.t_start)
            # Before the checkpoint: already written, and the alarm state at the checkpoint
            # already includes these windows.
            skip = mark is not None and t_last <= mark
            window_path.process(group, write=not skip)
            summary["windows"] += len(group)
            summary["invalid_windows"] += sum(not wf.features.valid for wf in group)
            if skip:
                summary["windows_skipped"] += len(group)
                recorder.captures_made = 0
                return
            assert engine.state is not None
            snapshots[t_last] = engine.state.to_json()
            now = time.monotonic()
            if now - last_ckpt >= opts.checkpoint_every_s:
                checkpoint(False)
                last_ckpt = now

        group: list[WindowFeatures] = []
        from pdm.progress import estimate_seconds, seconds_bar, through

        total = estimate_seconds(path, rec.sample_rate_hz) if opts.progress else None
        with seconds_bar(Path(path).name, total, disable=not opts.progress) as bar:
            for chunk in through(rec.chunks(), bar):
                if stop.event.is_set():
                    break
                if t_first is None:
                    t_first = chunk.t0
                for wf in features.push(chunk):
                    group.append(wf)
                    if len(group) == features.batch:
                        write_group(group)
                        group = []
                seconds = len(chunk.data) / chunk.fs
                if opts.speed:
                    due = (chunk.t0 + seconds - t_first) / opts.speed
                    ahead = due - (time.monotonic() - wall0)
                    if ahead > 0 and stop.event.wait(ahead):
                        break
            if not stop.event.is_set():
                for wf in features.flush():
                    group.append(wf)
                write_group(group)
        summary["transitions"] += [t.as_dict() for t in engine.transitions]
        summary["captures"] += recorder.captures_made
        summary["alarm_state"] = engine.state.state if engine.state else None
        summary["_alarm"] = engine.state
        engine.close(timeout=opts.drain_timeout_s if not stop.event.is_set() else 2.0)
        if stop.event.is_set():
            writer.flush(timeout=5.0)
        checkpoint(not stop.event.is_set())


def check_speed(speed: float | None) -> float | None:
    if speed is not None and not 0 < speed <= 1e6:
        raise ConfigError(f"--speed: must be > 0 and <= 1e6 (1.0 = real time), got {speed:g}")
    return speed
