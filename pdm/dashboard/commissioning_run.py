"""The commissioning replay: a recording replayed with ``pdm-edge replay --actions dry-run``
into a SQLite store in a temporary data directory, the same path the service runs, in a child
process (the replay installs signal handlers, which only the main thread may, and a crash
cannot take the dashboard with it), bounded in time and killed with its process group; a
second child recomputes the spectra an analyst needs (:mod:`pdm.dashboard.analysis`). The
result is a :class:`~pdm.dashboard.whatif.CommissioningResult`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdm.alarms.rules import rules_from
from pdm.alarms.state import LEVELS, AlarmRules
from pdm.config import Pipeline
from pdm.dashboard.alarms import log_row
from pdm.dashboard.analysis import Averaged, WindowSpectra, load_analysis
from pdm.dashboard.analysis import analyse as run_analysis
from pdm.dashboard.commissioning_inputs import check_recording
from pdm.dashboard.uploads import temp_root
from pdm.dashboard.whatif import CommissioningResult
from pdm.errors import ConfigError, PdmError
from pdm.history import open_store, parse_store_url

__all__ = ["REPLAY_TIMEOUT_S", "deciding_window", "run_commissioning"]

#: A commissioning replay is killed after this long, s.
REPLAY_TIMEOUT_S = 900.0
_POLL_S = 0.25  # how often a running replay checks the clock and its session
_TAIL_BYTES = 64 * 1024  # of the replay's output kept for its summary and error line


def _thresholds(card_dir: Path | None) -> tuple[float | None, float | None]:
    if card_dir is None:
        return None, None
    try:
        score = json.loads((card_dir / "model.json").read_text()).get("score", {})
        return float(score["alert"]), float(score["danger"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


def deciding_window(
    transitions: Sequence[dict[str, Any]], window: Any, score: Any
) -> tuple[int | None, str]:
    """The window whose spectra explain the result, and why it is that one: the first that
    raised the highest level reached, else the window with the highest score."""
    ups = [t for t in transitions if t.get("to") in LEVELS and t.get("from") in LEVELS]
    ups = [t for t in ups if LEVELS.index(t["to"]) > LEVELS.index(t["from"])]
    if ups:
        top = max(LEVELS.index(t["to"]) for t in ups)
        first = next(t for t in ups if LEVELS.index(t["to"]) == top)
        return int(first["window"]), f"the window that raised {first['to'].upper()}"
    s = np.asarray(score, dtype=np.float64)
    if s.size and np.isfinite(s).any():
        i = int(np.nanargmax(s))
        return int(np.asarray(window)[i]), "the window with the highest score (no alarm)"
    return (
        (int(np.asarray(window)[0]), "the first window (no score)")
        if len(window)
        else (
            None,
            "",
        )
    )


def _replay_cmd(
    recording: Path, pipeline: Pipeline, model_dir: Path | None, data_dir: Path, db: Path
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pdm.cli",
        "replay",
        str(recording.resolve()),
        "-p",
        str(Path(pipeline.source_path or "").resolve()),
        "--data-dir",
        str(data_dir),
        "--store",
        f"sqlite:///{db}",
        "--actions",
        "dry-run",
        "--restart",
    ]
    if model_dir is not None:
        cmd += ["--model", str(model_dir.resolve())]
    return cmd


def run_commissioning(
    recording: Path,
    pipeline: Pipeline,
    model_dir: Path | None = None,
    *,
    timeout_s: float = REPLAY_TIMEOUT_S,
    keep_going: Callable[[float], object] | None = None,
    analyse: bool = True,
    inline: bool = False,
    progress: bool = False,
) -> CommissioningResult:
    """Replay ``recording`` (dry run) into a temporary store, read back what it found, and
    (``analyse``) recompute the deciding window's and the averaged spectra.

    The replay and the analysis are child processes, killed after ``timeout_s`` in all;
    ``keep_going(elapsed_s)`` is called every ~0.25 s while they run, and whatever it raises
    (Streamlit's stop when the session ends) kills them too. ``inline`` runs both in this
    process instead (``pdm-edge report``: its main thread, with ``progress`` bars on a
    terminal). The temporary store is removed in every case.

    Raises :class:`PdmError` with one line (a bad recording, pipeline or model; too long).
    """

    if pipeline.source_path is None:
        raise ConfigError("the pipeline has no file to replay it with")
    start_s, fs = check_recording(recording, pipeline)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="commission-", dir=temp_root()) as tmp:
        data_dir = Path(tmp) / "data"
        db = (data_dir / "history.db").resolve()
        if inline:
            summary = _replay_inline(recording, pipeline, model_dir, data_dir, db, progress)
        else:
            cmd = _replay_cmd(recording, pipeline, model_dir, data_dir, db)
            code, stdout, stderr = _run_bounded(
                cmd, Path(tmp), recording.name, timeout_s=timeout_s, keep_going=keep_going
            )
            if code != 0:
                raise PdmError(_child_error(stderr, code, "replay"))
            try:
                summary = json.loads(stdout.strip().splitlines()[-1])
            except (ValueError, IndexError) as exc:
                raise PdmError("the replay printed no summary") from exc
        machine = pipeline.machine.id
        with open_store(parse_store_url(f"sqlite:///{db}")) as store:
            sc = store.scores(machine)
            spectra = [
                {
                    "channel": s.channel,
                    "sensor": s.sensor,
                    "type": s.type,
                    "t_ns": s.t_ns,
                    "f0_hz": s.f0_hz,
                    "df_hz": s.df_hz,
                    "unit": s.unit,
                    "values": np.asarray(s.values, dtype=np.float64),
                }
                for s in store.latest_spectra(machine)
            ]
            log = [log_row(r) for r in store.log(None, limit=1000)]
            features = _rule_features(store.features(machine), rules_from(pipeline))
        transitions = list(summary.get("transitions", []))
        win_idx, why = deciding_window(transitions, sc.window, sc.score)
        deciding: WindowSpectra | None = None
        averaged: Averaged | None = None
        notes: list[str] = []
        if analyse and win_idx is not None:
            out = Path(tmp) / "analysis"
            if inline:
                run_analysis(recording, pipeline, win_idx, out, progress=progress)
            else:
                cmd = [
                    sys.executable,
                    "-m",
                    "pdm.dashboard.analysis",
                    str(recording.resolve()),
                    str(Path(pipeline.source_path).resolve()),
                    str(win_idx),
                    str(out),
                ]
                left = max(1.0, timeout_s - (time.monotonic() - started))
                code, _out, stderr = _run_bounded(
                    cmd, Path(tmp), recording.name, timeout_s=left, keep_going=keep_going
                )
                if code != 0:
                    notes.append(
                        f"spectra not recomputed: {_child_error(stderr, code, 'analysis')}"
                    )
            if (out / "analysis.json").exists():
                deciding, averaged, more = load_analysis(out)
                notes += more
    model_used = model_dir if model_dir is not None else pipeline.model_dir
    alert, danger = _thresholds(model_used)
    acq = pipeline.acquisition
    return CommissioningResult(
        recording=recording.name,
        machine=machine,
        machine_name=pipeline.machine.name or machine,
        pipeline_file=str(pipeline.source_path),
        model_dir=str(model_used or ""),
        model=sc.model,
        summary=summary,
        transitions=transitions,
        t_ns=np.asarray(sc.t_ns, dtype=np.int64),
        window=np.asarray(sc.window, dtype=np.int64),
        score=np.asarray(sc.score, dtype=np.float64),
        state=tuple(sc.state),
        diagnosis=tuple(sc.diagnosis),
        diagnosis_confidence=sc.diagnosis_confidence,
        alert=alert,
        danger=danger,
        rules=rules_from(pipeline),
        spectra=sorted(spectra, key=lambda s: (s["type"], s["channel"])),
        log=log,
        features=features,
        sensor_of={c: pipeline.channel(c)[0].id for c in pipeline.columns},
        pipeline=pipeline,
        recording_path=str(recording),
        start_ns=round(start_s * 1e6) * 1000,
        window_s=acq.window_samples / fs,
        hop_s=acq.hop_samples / fs,
        deciding_window=win_idx,
        deciding_why=why,
        deciding=deciding,
        averaged=averaged,
        notes=notes,
    )


def _child_error(stderr: str, code: int, what: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    err = next((ln for ln in reversed(lines) if "error" in ln.lower()), None)
    return err or (lines[-1] if lines else f"{what} exited {code}")


def _replay_inline(
    recording: Path,
    pipeline: Pipeline,
    model_dir: Path | None,
    data_dir: Path,
    db: Path,
    progress: bool,
) -> dict[str, Any]:
    """The replay in this process (the main thread: it installs signal handlers)."""
    from pdm.replay import ReplayOptions, replay

    opts = ReplayOptions(
        store=parse_store_url(f"sqlite:///{db}"),
        data_dir=data_dir,
        model_dir=model_dir,
        restart=True,
        actions="dry-run",
        progress=progress,
    )
    summary = replay([str(recording)], pipeline, opts)
    if summary.get("interrupted"):
        raise PdmError(f"{recording.name}: the replay was stopped by {summary['interrupted']}")
    return summary


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - _TAIL_BYTES))
        return f.read().decode("utf-8", "replace")


def _run_bounded(
    cmd: list[str],
    tmp: Path,
    what: str,
    *,
    timeout_s: float,
    keep_going: Callable[[float], object] | None,
) -> tuple[int, str, str]:
    """Run ``cmd`` (its output to files in ``tmp``: no pipe can fill up), at most
    ``timeout_s``; its whole process group is killed when it overruns or when
    ``keep_going`` raises. Returns (exit status, stdout tail, stderr tail)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out_path, err_path = tmp / "replay.out", tmp / "replay.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    started = time.monotonic()
    try:
        while True:
            try:
                code = proc.wait(_POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise PdmError(f"{what}: the replay took longer than {timeout_s:g} s; stopped")
            if keep_going is not None:
                keep_going(elapsed)
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return code, _tail(out_path), _tail(err_path)


def _rule_features(rows: Any, rules: AlarmRules) -> dict[int, dict[str, dict[str, float]]]:
    """Per window and channel, only the features the alarm rules read (velocity, limits)."""
    wanted = {"velocity_rms_mm_s", *(lim.feature for lim in rules.limits)}
    cols = [(i, n) for i, n in enumerate(rows.names) if n in wanted]
    out: dict[int, dict[str, dict[str, float]]] = {}
    for r in range(len(rows)):
        if not rows.valid[r]:
            continue
        vals = {n: float(rows.values[r, i]) for i, n in cols}
        out.setdefault(int(rows.window[r]), {})[rows.channel[r]] = vals
    return out
