"""Dashboard page: commission a machine on a recording before it goes live.

Pick a recording (a fixture, or an upload — checked before anything runs: a
bad file shows as its one-line :class:`~pdm.errors.CsvError`), a pipeline and
a model; the recording is replayed with ``pdm-edge replay --actions dry-run``
into a SQLite store in a temporary data directory — the same path the service
runs, in a child process because the replay installs signal handlers (only
the main thread may) and so a crash cannot take the dashboard with it. The
page shows what alarmed, when and why (the transitions), the score trend and
the latest spectra; the *what-if* panel re-runs the alarm state machine
(:func:`pdm.alarms.state.step`, pure and fast) over the stored per-window
scores with scaled thresholds and another on-delay, to show how many alarms the
recording would have raised. The result exports as a self-contained HTML
report (:mod:`pdm.dashboard.report`).

Uploads need an operator: the page asks for an operator name and PIN
(:func:`pdm.dashboard.pin.check_pin`, with its lockout) before it even shows the
upload field, and an operator stays signed in to this browser session for
:data:`OPERATOR_SESSION_S`. Uploads are limited to ``PDM_DASHBOARD_MAX_UPLOAD_MB``
(default 200) MB, kept in a private folder of the session and always removed
(:mod:`pdm.dashboard.uploads`). A replay runs at most :data:`REPLAY_TIMEOUT_S` and is
killed (its process group) when it takes longer, when the browser session ends, or
when the operator changes the page meanwhile; its temporary store goes with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm.alarms.engine import rules_from
from pdm.alarms.state import (
    LEVELS,
    AlarmRules,
    MachineAlarm,
    WindowResult,
    diagnosis_confidence_of,
    step,
)
from pdm.config import Pipeline
from pdm.dashboard.context import REPO, DashboardContext
from pdm.dashboard.uploads import UploadFolder, max_upload_mb, sweep_stale, temp_root
from pdm.errors import ConfigError, PdmError

__all__ = [
    "CommissioningResult",
    "WhatIf",
    "check_recording",
    "list_models",
    "list_recordings",
    "max_upload_mb",
    "render",
    "run_commissioning",
    "sign_in",
    "signed_in_operator",
    "whatif",
]

FIXTURES = REPO / "fixtures"
MODELS = REPO / "models"
#: A commissioning replay is killed after this long, s.
REPLAY_TIMEOUT_S = 900.0
#: An operator who signed in on the page may upload for this long, s, in that session.
OPERATOR_SESSION_S = 15 * 60.0
_POLL_S = 0.25  # how often a running replay checks the clock and its session
_TAIL_BYTES = 64 * 1024  # of the replay's output kept for its summary and error line
_SUFFIXES = (".csv", ".csv.gz")


def list_recordings(folder: Path = FIXTURES) -> list[Path]:
    """CSV recordings (``.csv``, ``.csv.gz``) in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_SUFFIXES))


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
            try:
                card = json.loads((d / "model.json").read_text())
                machine = card.get("machine", {}).get("id")
            except (OSError, ValueError, AttributeError):
                continue
            if machine == pipeline.machine.id:
                out.append(d)
    return out


def check_recording(path: Path, pipeline: Pipeline) -> None:
    """Open ``path`` for ``pipeline`` and read its first chunk; raises a one-line PdmError."""
    from pdm.processing import open_recording

    rec, _ = open_recording(path, pipeline)
    with rec:
        for _chunk in rec.chunks():
            break


@dataclass
class CommissioningResult:
    """What a dry-run replay of one recording found (everything in memory; the store is gone)."""

    recording: str
    machine: str
    machine_name: str
    pipeline_file: str
    model_dir: str
    model: str  # version ('' when not scored)
    summary: dict[str, Any]
    transitions: list[dict[str, Any]]
    t_ns: npt.NDArray[np.int64]
    window: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]
    state: tuple[str, ...]
    diagnosis: tuple[str, ...]
    alert: float | None
    danger: float | None
    rules: AlarmRules
    spectra: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    #: window index → channel → the features the alarm rules look at (ISO velocity, limits)
    features: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    sensor_of: dict[str, str] = field(default_factory=dict)

    @property
    def windows(self) -> int:
        return len(self.score)

    def top_diagnosis(self) -> str:
        counts: dict[str, int] = {}
        for d, s in zip(self.diagnosis, self.state, strict=False):
            if d and s in ("alert", "danger"):
                counts[d] = counts.get(d, 0) + 1
        return max(counts, key=lambda k: counts[k]) if counts else ""


def _thresholds(card_dir: Path | None) -> tuple[float | None, float | None]:
    if card_dir is None:
        return None, None
    try:
        score = json.loads((card_dir / "model.json").read_text()).get("score", {})
        return float(score["alert"]), float(score["danger"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


def run_commissioning(
    recording: Path,
    pipeline: Pipeline,
    model_dir: Path | None = None,
    *,
    timeout_s: float = REPLAY_TIMEOUT_S,
    keep_going: Callable[[float], object] | None = None,
) -> CommissioningResult:
    """Replay ``recording`` (dry run) into a temporary store and read back what it found.

    The replay is a child process, killed after ``timeout_s``; ``keep_going(elapsed_s)`` is
    called every ~0.25 s while it runs, and whatever it raises (Streamlit's stop when the
    session ends) kills the replay too. The temporary store is removed in every case.

    Raises :class:`PdmError` with one line (a bad recording, pipeline or model; too long).
    """
    from pdm.dashboard.alarms import _row
    from pdm.history import open_store, parse_store_url

    if pipeline.source_path is None:
        raise ConfigError("the pipeline has no file to replay it with")
    check_recording(recording, pipeline)
    with tempfile.TemporaryDirectory(prefix="commission-", dir=temp_root()) as tmp:
        data_dir = Path(tmp) / "data"
        db = (data_dir / "history.db").resolve()
        cmd = [
            sys.executable,
            "-m",
            "pdm.cli",
            "replay",
            str(recording.resolve()),
            "-p",
            str(Path(pipeline.source_path).resolve()),
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
        code, stdout, stderr = _run_bounded(
            cmd, Path(tmp), recording.name, timeout_s=timeout_s, keep_going=keep_going
        )
        if code != 0:
            lines = [ln for ln in stderr.splitlines() if ln.strip()]
            err = next((ln for ln in reversed(lines) if "error" in ln.lower()), None)
            raise PdmError(err or (lines[-1] if lines else f"replay exited {code}"))
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
            log = [_row(r) for r in store.log(None, limit=1000)]
            features = _rule_features(store.features(machine), rules_from(pipeline))
    model_used = model_dir if model_dir is not None else pipeline.model_dir
    alert, danger = _thresholds(model_used)
    return CommissioningResult(
        recording=recording.name,
        machine=machine,
        machine_name=pipeline.machine.name or machine,
        pipeline_file=str(pipeline.source_path),
        model_dir=str(model_used or ""),
        model=sc.model,
        summary=summary,
        transitions=list(summary.get("transitions", [])),
        t_ns=np.asarray(sc.t_ns, dtype=np.int64),
        window=np.asarray(sc.window, dtype=np.int64),
        score=np.asarray(sc.score, dtype=np.float64),
        state=tuple(sc.state),
        diagnosis=tuple(sc.diagnosis),
        alert=alert,
        danger=danger,
        rules=rules_from(pipeline),
        spectra=sorted(spectra, key=lambda s: (s["type"], s["channel"])),
        log=log,
        features=features,
        sensor_of={c: pipeline.channel(c)[0].id for c in pipeline.columns},
    )


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


# --- what-if -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIf:
    """The alarm state machine re-run over the stored scores with other settings."""

    alert: float | None
    danger: float | None
    trip: float | None
    on_windows: int
    of_windows: int
    off_windows: int
    transitions: list[dict[str, Any]]
    alarms_raised: int  # transitions up from ok (a new alarm)
    escalations: int  # every transition up (ok→alert, alert→danger, …)
    windows_by_state: dict[str, int]  # windows spent in each state (after the window)
    windows_over: dict[str, int]  # windows whose own level reaches alert/danger/trip
    final_state: str
    states: tuple[str, ...]  # per window, the state after it


def whatif(
    score: Sequence[float] | npt.NDArray[np.float64],
    t_ns: Sequence[int] | npt.NDArray[np.int64],
    window: Sequence[int] | npt.NDArray[np.int64],
    *,
    alert: float | None,
    danger: float | None,
    rules: AlarmRules,
    alert_mult: float = 1.0,
    danger_mult: float = 1.0,
    on_windows: int | None = None,
    of_windows: int | None = None,
    off_windows: int | None = None,
    features: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
    sensor_of: Mapping[str, str] | None = None,
    diagnosis: Sequence[str] | None = None,
) -> WhatIf:
    """Re-run :func:`step` over per-window scores (and, with ``features``, ISO zones and limits).

    ``diagnosis`` (per window, '' for none) may corroborate a score trip, as in the replay.

    Without ``features`` only the score is evidence (ISO zones and feature limits left out);
    with them (window index → channel → feature → value) the pipeline's ISO and limit rules
    apply too, unscaled.

    ``alert_mult`` scales the alert threshold, ``danger_mult`` the danger threshold and the
    score trip (``rules.score_trip``). The state starts at ``ok`` and is never acknowledged, so
    a latch (danger, trip) stays to the end, as it would on an unattended machine.
    """
    on = rules.on_windows if on_windows is None else on_windows
    of = rules.of_windows if of_windows is None else of_windows
    if not 1 <= on <= of:
        raise ValueError(f"on-delay: need 1 ≤ N ≤ M (got {on} of {of})")
    a = None if alert is None else alert * alert_mult
    d = None if danger is None else danger * danger_mult
    trip = None if rules.score_trip is None else rules.score_trip * danger_mult
    r = dataclasses.replace(
        rules,
        on_windows=on,
        of_windows=of,
        off_windows=rules.off_windows if off_windows is None else off_windows,
        score_trip=trip,
    )
    if features is None:
        r = dataclasses.replace(
            r, iso_alert_zone=None, iso_danger_zone=None, iso_trip=None, limits=()
        )
    feats = features or {}
    sensors = sensor_of or {}
    state = MachineAlarm()
    trs: list[dict[str, Any]] = []
    states: list[str] = []
    over = {"alert": 0, "danger": 0, "trip": 0}
    diags = list(diagnosis) if diagnosis is not None else [""] * len(score)
    for s, t, w, dg in zip(score, t_ns, window, diags, strict=True):
        sv = float(s)
        score_v = sv if math.isfinite(sv) else None
        label, conf = diagnosis_confidence_of({"diagnosis": dg or None})
        win = WindowResult(
            int(t),
            int(w),
            score_v,
            a,
            d,
            feats.get(int(w), {}),
            sensors,
            diagnosis=label,
            diagnosis_confidence=conf,
        )
        state, out = step(state, win, r)
        level = state.recent[-1] if state.recent else 0
        for i, name in enumerate(("alert", "danger", "trip"), start=1):
            over[name] += level >= i
        for tr in out:
            trs.append(
                {
                    "window": tr.window,
                    "t_ns": tr.t_ns,
                    "from": tr.old,
                    "to": tr.new,
                    "reason": tr.reason,
                }
            )
        states.append(state.state)
    up = [tr for tr in trs if LEVELS.index(tr["to"]) > LEVELS.index(tr["from"])]
    return WhatIf(
        alert=a,
        danger=d,
        trip=trip,
        on_windows=on,
        of_windows=of,
        off_windows=r.off_windows,
        transitions=trs,
        alarms_raised=sum(tr["from"] == "ok" for tr in up),
        escalations=len(up),
        windows_by_state={lv: states.count(lv) for lv in LEVELS},
        windows_over=over,
        final_state=state.state,
        states=tuple(states),
    )


def whatif_for(
    res: CommissioningResult,
    *,
    alert_mult: float = 1.0,
    danger_mult: float = 1.0,
    on_windows: int | None = None,
    of_windows: int | None = None,
    off_windows: int | None = None,
    with_features: bool = False,
) -> WhatIf:
    return whatif(
        res.score,
        res.t_ns,
        res.window,
        alert=res.alert,
        danger=res.danger,
        rules=res.rules,
        alert_mult=alert_mult,
        danger_mult=danger_mult,
        on_windows=on_windows,
        of_windows=of_windows,
        off_windows=off_windows,
        features=res.features if with_features else None,
        sensor_of=res.sensor_of,
        diagnosis=res.diagnosis,
    )


# --- charts --------------------------------------------------------------------------------------


def score_chart(res: CommissioningResult) -> Any:
    import altair as alt
    import pandas as pd

    t0 = int(res.t_ns[0]) if len(res.t_ns) else 0
    df = pd.DataFrame(
        {
            "t (s)": (res.t_ns - t0) / 1e9,
            "score": np.where(np.isfinite(res.score), res.score, np.nan),
            "window": res.window,
            "state": list(res.state),
        }
    )
    line = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("t (s):Q"),
            y=alt.Y("score:Q", scale=alt.Scale(type="symlog")),
            tooltip=["window", "t (s)", "score", "state"],
        )
    )
    rules = [
        {"threshold": name, "value": v}
        for name, v in (
            ("alert", res.alert),
            ("danger", res.danger),
            ("trip", res.rules.score_trip),
        )
        if v is not None
    ]
    if not rules:
        return line
    rule = (
        alt.Chart(pd.DataFrame(rules))
        .mark_rule(strokeDash=[4, 3])
        .encode(y="value:Q", color=alt.Color("threshold:N"), tooltip=["threshold", "value"])
    )
    return (line + rule).properties(height=280)


def spectrum_chart(spec: dict[str, Any]) -> Any:
    import altair as alt
    import pandas as pd

    v = spec["values"]
    f = spec["f0_hz"] + spec["df_hz"] * np.arange(len(v))
    df = pd.DataFrame({"f (Hz)": f, f"amplitude ({spec['unit']})": v})
    return (
        alt.Chart(df)
        .mark_line()
        .encode(x="f (Hz):Q", y=f"amplitude ({spec['unit']}):Q")
        .properties(height=200, title=f"{spec['channel']} {spec['type']}")
    )


# --- the page ------------------------------------------------------------------------------------


def _save_upload(up: Any, folder: Path, limit_mb: int) -> Path:
    """Write the upload into ``folder`` (emptied first: one upload per session), at most
    ``limit_mb`` MB whatever its declared size says."""
    name = Path(str(up.name)).name
    if not name.endswith(_SUFFIXES) or name.startswith("."):
        raise ConfigError(f"{name}: expected a .csv or .csv.gz recording")
    limit = limit_mb * 2**20
    size = int(getattr(up, "size", 0) or 0)
    if size > limit:
        raise ConfigError(f"{name}: {size / 2**20:.0f} MB is more than the {limit_mb} MB limit")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink(missing_ok=True)
    path = folder / name
    up.seek(0)
    written = 0
    with open(path, "wb") as f:
        while block := up.read(1 << 20):
            written += len(block)
            if written > limit:
                break
            f.write(block)
    if written > limit:
        path.unlink(missing_ok=True)
        raise ConfigError(f"{name}: more than the {limit_mb} MB limit")
    return path


def signed_in_operator(state: Any, now: float | None = None) -> str | None:
    """The operator signed in to this session (``state``: Streamlit's session state), or
    None when nobody is or the sign-in is older than :data:`OPERATOR_SESSION_S`."""
    got = state.get("com_operator")
    t = time.monotonic() if now is None else now
    if not (isinstance(got, tuple) and len(got) == 2) or t >= got[1]:
        return None
    return str(got[0])


def sign_in(ctx: DashboardContext, state: Any, name: str, pin_text: str) -> str | None:
    """Check an operator's PIN (with the lockout); on success sign them in to ``state``.
    Returns None when signed in, else the one-line reason."""
    from pdm.dashboard.pin import check_pin

    if not name.strip() or not pin_text:
        return "give your operator name and PIN"
    checked = check_pin(ctx.data_dir, name, pin_text)
    if not checked.ok:
        return f"{checked.message}; not signed in"
    state["com_operator"] = (name.strip(), time.monotonic() + OPERATOR_SESSION_S)
    return None


def _upload_folder(state: Any) -> UploadFolder:
    folder = state.get("com_upload_dir")
    if not isinstance(folder, UploadFolder) or folder.removed:
        folder = state["com_upload_dir"] = UploadFolder()
    folder.touch()
    return folder


_swept = False  # the stale temporary folders: swept once per dashboard process


def render(ctx: DashboardContext) -> None:
    import streamlit as st

    from pdm.dashboard.report import build_report

    st.header("Commissioning")
    st.caption(
        "Replay a recording through a pipeline and model (dry run: no relay, no webhook, "
        "nothing written to the live history), see what it would have alarmed, and tune."
    )
    for p in ctx.problems:
        st.warning(p)
    if not ctx.pipelines:
        st.error("No pipelines loaded (see --pipelines).")
        return
    try:
        limit_mb = max_upload_mb()
    except ConfigError as exc:
        st.error(str(exc))
        limit_mb = 200

    global _swept
    if not _swept:
        sweep_stale()
        _swept = True
    source = st.radio("Recording", ["fixture", "upload"], horizontal=True, key="com_source")
    recording: Path | None = None
    operator = signed_in_operator(st.session_state)
    if source == "fixture":
        fixtures = list_recordings()
        if fixtures:
            recording = st.selectbox(
                "Fixture", fixtures, format_func=lambda p: p.name, key="com_fixture"
            )
        else:
            st.info(f"No recordings in {FIXTURES}.")
    elif operator is None:
        st.info(
            "Uploading a recording needs an operator (`pdm-edge operators add NAME`): "
            f"sign in for {OPERATOR_SESSION_S / 60:.0f} minutes in this browser session."
        )
        with st.form("com_sign_in", clear_on_submit=True):
            name = st.text_input("Operator name", key="com_op_name")
            pin_text = st.text_input("PIN", type="password", key="com_op_pin")
            if st.form_submit_button("Sign in"):
                why = sign_in(ctx, st.session_state, name, pin_text)
                if why is None:
                    st.rerun()
                time.sleep(1.0)  # slows a guesser a little more (the lockout is the brake)
                st.error(why)
    else:
        c_op, c_out = st.columns([4, 1])
        c_op.caption(f"Signed in as **{operator}** (uploads and their replays).")
        if c_out.button("Sign out", key="com_sign_out"):
            st.session_state.pop("com_operator", None)
            folder = st.session_state.pop("com_upload_dir", None)
            if isinstance(folder, UploadFolder):
                folder.remove()
            st.session_state.pop("com_upload_saved", None)
            st.rerun()
        up = st.file_uploader(
            f"CSV recording (.csv, .csv.gz; at most {limit_mb} MB)",
            type=["csv", "gz"],
            max_upload_size=limit_mb,
            key="com_upload",
        )
        if up is not None:
            # Written once per uploaded file (not on every rerun), into this session's folder.
            folder = _upload_folder(st.session_state)
            saved = st.session_state.get("com_upload_saved")
            if saved and saved[0] == up.file_id and Path(saved[1]).exists():
                recording = Path(saved[1])
            else:
                try:
                    recording = _save_upload(up, folder.path, limit_mb)
                    st.session_state["com_upload_saved"] = (up.file_id, str(recording))
                except (PdmError, OSError) as exc:
                    folder.clear()
                    st.error(str(exc).splitlines()[0])
    c1, c2 = st.columns(2)
    machine = c1.selectbox(
        "Pipeline",
        sorted(ctx.pipelines),
        format_func=lambda m: f"{m} ({Path(ctx.pipelines[m].source_path or '?').name})",
        key="com_pipeline",
    )
    pipeline = ctx.pipelines[machine]
    models = list_models(pipeline)
    model_dir = c2.selectbox(
        "Model",
        [None, *models],
        format_func=lambda d: "the pipeline's model" if d is None else str(d.name),
        key="com_model",
    )
    if recording is not None and source == "upload":
        try:
            check_recording(recording, pipeline)
        except PdmError as exc:
            st.error(str(exc).splitlines()[0])
            recording = None
    if st.button("Replay", type="primary", disabled=recording is None, key="com_run"):
        assert recording is not None
        if source == "upload" and signed_in_operator(st.session_state) is None:
            st.session_state["com_error"] = "sign in again: the operator's session ended"
            st.rerun()
        progress = st.empty()

        def keep_going(elapsed: float) -> None:
            # A Streamlit call: it raises when the session ends or the page is left, and
            # the replay (run_commissioning's child) is killed on the way out.
            progress.caption(
                f"Replaying {recording.name} … {elapsed:.0f} s (stopped at "
                f"{REPLAY_TIMEOUT_S:.0f} s, or when this page is left)"
            )

        try:
            st.session_state["com_result"] = run_commissioning(
                recording, pipeline, model_dir, keep_going=keep_going
            )
            st.session_state.pop("com_error", None)
        except PdmError as exc:
            st.session_state.pop("com_result", None)
            st.session_state["com_error"] = str(exc).splitlines()[0]
        progress.empty()
    if "com_error" in st.session_state:
        st.error(st.session_state["com_error"])
    res: CommissioningResult | None = st.session_state.get("com_result")
    if res is None:
        return

    st.subheader(f"{res.recording} → {res.machine}")
    s = res.summary
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Windows", s.get("windows", res.windows))
    m2.metric("Invalid windows", s.get("invalid_windows", 0))
    m3.metric("Final alarm state", s.get("alarm_state") or "ok")
    m4.metric("Model", res.model or "—")
    if res.top_diagnosis():
        st.write(f"Most frequent diagnosis among alerting windows: **{res.top_diagnosis()}**")
    st.markdown("**What alarmed, when and why**")
    if res.transitions:
        st.dataframe(res.transitions, hide_index=True, width="stretch")
    else:
        st.success("No alarm transition.")
    if res.windows:
        st.markdown("**Score trend** (symlog scale; dashed: thresholds)")
        st.altair_chart(score_chart(res), width="stretch")
    if res.spectra:
        st.markdown("**Latest spectra**")
        cols = st.columns(2)
        for i, spec in enumerate(res.spectra):
            cols[i % 2].altair_chart(spectrum_chart(spec), width="stretch")

    st.subheader("What if")
    st.caption(
        "The alarm state machine re-run over the stored per-window scores (ISO zones and "
        "feature limits only when ticked), never acknowledged. The danger multiplier also "
        "scales the score trip."
    )
    rules = res.rules
    w1, w2 = st.columns(2)
    am = w1.slider("Alert threshold ×", 0.25, 4.0, 1.0, 0.05, key="wi_alert")
    dm = w2.slider("Danger / trip threshold ×", 0.25, 4.0, 1.0, 0.05, key="wi_danger")
    w3, w4, w5 = st.columns(3)
    of_max, off_max = max(30, rules.of_windows), max(200, rules.off_windows)
    of = w4.slider("On-delay: of the last M windows", 1, of_max, rules.of_windows, key="wi_of")
    if of > 1:
        on = w3.slider("On-delay: N windows", 1, of, min(rules.on_windows, of), key="wi_on")
    else:
        on = 1
        w3.caption("On-delay: 1 of 1 window")
    off = w5.slider("Off-delay (clear windows)", 1, off_max, rules.off_windows, key="wi_off")
    feats = st.checkbox(
        "Include ISO 10816-3 zones and feature limits (as configured, unscaled)",
        value=False,
        key="wi_features",
    )
    wi = whatif_for(
        res,
        alert_mult=am,
        danger_mult=dm,
        on_windows=on,
        of_windows=of,
        off_windows=off,
        with_features=feats,
    )
    k1, k2, k3 = st.columns(3)
    k1.metric("Alarms raised", wi.alarms_raised)
    k2.metric("Escalations", wi.escalations)
    k3.metric("Final state", wi.final_state)
    st.write(
        "Windows over alert / danger / trip: "
        f"{wi.windows_over['alert']} / {wi.windows_over['danger']} / {wi.windows_over['trip']}"
        f" of {res.windows}; windows in each state: "
        + ", ".join(f"{k} {v}" for k, v in wi.windows_by_state.items())
    )
    if wi.transitions:
        st.dataframe(wi.transitions, hide_index=True, width="stretch")

    html = build_report(res, wi)
    st.download_button(
        "Download the report (HTML)",
        html.encode("utf-8"),
        file_name=f"commissioning-{res.machine}-{Path(res.recording).name.split('.')[0]}.html",
        mime="text/html",
        key="com_report",
    )
