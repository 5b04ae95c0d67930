"""Dashboard page: commission a machine on recordings before it goes live.

Pick a recording (a fixture, or an upload — checked before anything runs: a bad file
shows as its one-line :class:`~pdm.errors.CsvError`) and a pipeline: only pipelines whose
columns the recording has are offered, and the Replay button stays disabled, with the
reason, for anything that cannot work. The recording — and the healthy reference
recordings picked with it — are replayed with ``pdm-edge replay --actions dry-run`` into a
SQLite store in a temporary data directory, the same path the service runs, in a child
process (the replay installs signal handlers, which only the main thread may, and a crash
cannot take the dashboard with it). A second child recomputes the spectra an analyst
needs (:mod:`pdm.dashboard.analysis`): those of the deciding window (the one that raised
the highest alarm) and the diagnosis engine's averaged spectra.

The page shows what alarmed, when and why, the score trend with the thresholds being
tried, the deciding window's spectra with cursors and the diagnosis; the *what-if* panel
re-runs the alarm state machine (:func:`pdm.alarms.state.step`, pure and fast) over the
stored per-window scores (or velocities) with other thresholds — given as values, in score
units or mm/s — and on-delays, on the recording and the healthy references together, and
compares a grid of settings: false alarms on healthy recordings, and the delay from the
fault's onset to the first alarm. The result exports as a self-contained HTML report
(:mod:`pdm.dashboard.report`), which ``pdm-edge report`` writes from the command line.

Uploads need an operator: the page asks for an operator name and PIN
(:func:`pdm.operators.check_pin`, with its lockout) before it even shows the
upload field, and an operator stays signed in to this browser session for
:data:`OPERATOR_SESSION_S`. Uploads are limited to ``PDM_DASHBOARD_MAX_UPLOAD_MB``
(default 200) MB, kept in a private folder of the session and always removed
(:mod:`pdm.dashboard.uploads`). A replay runs at most :data:`REPLAY_TIMEOUT_S` and is
killed (its process group) when it takes longer, when the browser session ends, or
when the operator changes the page meanwhile; its temporary store goes with it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pdm.dashboard.commissioning_charts import grid_charts, score_chart, velocity_chart
from pdm.dashboard.commissioning_inputs import (
    FIXTURES,
    RECORDING_SUFFIXES,
    check_recording,
    list_models,
    list_recordings,
    pipelines_for,
    training_files,
    truth_onset_s,
)
from pdm.dashboard.commissioning_run import REPLAY_TIMEOUT_S, run_commissioning
from pdm.dashboard.context import DashboardContext
from pdm.dashboard.labels import channel_label, diagnosis_words, fmt_num
from pdm.dashboard.machine import spectra_block
from pdm.dashboard.report import build_report
from pdm.dashboard.uploads import UploadFolder, max_upload_mb, sweep_stale
from pdm.dashboard.whatif import (
    QUANTITIES,
    CommissioningResult,
    Run,
    Setting,
    WhatIf,
    configured_setting,
    grid_rows,
    outcome_rows,
    run_outcome,
    transition_rows,
    utc_time,
    whatif,
    whatif_for,
    whatif_grid,
    whatif_setting,
)
from pdm.errors import ConfigError, PdmError
from pdm.operators import check_pin

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
    "whatif_for",
]

#: An operator who signed in on the page may upload for this long, s, in that session.
OPERATOR_SESSION_S = 15 * 60.0


def _save_upload(up: Any, folder: Path, limit_mb: int) -> Path:
    """Write the upload into ``folder`` (emptied first: one upload per session), at most
    ``limit_mb`` MB whatever its declared size says."""
    name = Path(str(up.name)).name
    if not name.endswith(RECORDING_SUFFIXES) or name.startswith("."):
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
    _setup_and_run(ctx, st, recording, source)
    if "com_error" in st.session_state:
        st.error(st.session_state["com_error"])
    res: CommissioningResult | None = st.session_state.get("com_result")
    runs: list[Run] = st.session_state.get("com_runs") or ([Run(res)] if res else [])
    if res is None:
        return
    _results(st, res)
    _deciding_spectra(st, res)
    _diagnosis(st, res)
    setting, grid = _whatif_panel(st, res, runs)
    html = build_report(res, runs=runs, setting=setting, grid=grid)
    st.download_button(
        "Download the report (HTML, offline)",
        html.encode("utf-8"),
        file_name=f"commissioning-{res.machine}-{Path(res.recording).name.split('.')[0]}.html",
        mime="text/html",
        key="com_report",
    )


def _setup_and_run(ctx: DashboardContext, st: Any, recording: Path | None, source: str) -> None:
    """Pipeline, model, references and the Replay button (disabled, with the reason, when it
    cannot work); runs the replays and keeps the results in the session."""

    fit = pipelines_for(recording, ctx.pipelines) if recording is not None else {}
    usable = sorted(m for m, why in fit.items() if not why)
    c1, c2 = st.columns(2)
    choices = usable or sorted(ctx.pipelines)
    machine = c1.selectbox(
        "Pipeline (only those whose columns the recording has)" if usable else "Pipeline",
        choices,
        format_func=lambda m: (
            f"{ctx.pipelines[m].machine.name or m} ({Path(ctx.pipelines[m].source_path or '?').name})"
        ),
        key="com_pipeline",
    )
    pipeline = ctx.pipelines[machine]
    models = list_models(pipeline)
    own = (
        pipeline.model_dir
        if pipeline.model_dir and (pipeline.model_dir / "model.json").is_file()
        else None
    )

    def model_name(d: Path | None) -> str:
        if d is None:
            return "the pipeline's model" if own else "none: ISO zones and limits only"
        return f"{d.name} (the pipeline's)" if own and d.resolve() == own.resolve() else d.name

    model_dir = c2.selectbox(
        "Model",
        [None, *[m for m in models if own is None or m.resolve() != own.resolve()]],
        format_func=model_name,
        key="com_model",
    )
    why_not = ""
    if recording is None:
        why_not = "choose a recording first"
    elif not usable:
        why_not = f"no pipeline reads {recording.name}: " + "; ".join(
            f"{m}: {w}" for m, w in sorted(fit.items())
        )
    elif fit.get(machine):
        why_not = fit[machine]
    if recording is not None and not why_not and source == "upload":
        try:
            check_recording(recording, pipeline)
        except PdmError as exc:
            why_not = str(exc).splitlines()[0]
    if recording is not None and not why_not:
        st.caption(
            "Channels: "
            + ", ".join(f"{c} = {channel_label(pipeline, c)}" for c in pipeline.columns)
        )
    # What the recording is, and the healthy recordings to compare against.
    trained = training_files(model_dir or own)
    onset = truth_onset_s(recording) if recording is not None else None
    default_role = (
        0 if onset is not None else 1 if recording is not None and recording.name in trained else 2
    )
    r1, r2 = st.columns([2, 1])
    role = r1.radio(
        "This recording",
        ["has a fault", "is healthy", "is not known"],
        index=default_role,
        horizontal=True,
        key=f"com_role_{recording.name if recording else ''}",
        help="A fault's onset (from a simulator's truth file, when there is one) is where the "
        "delay to the first alarm is measured from; on a healthy recording every alarm is false.",
    )
    onset_s: float | None = None
    if role == "has a fault":
        onset_s = float(
            r2.number_input(
                "Fault from, s after the start",
                min_value=0.0,
                value=float(onset or 0.0),
                step=0.5,
                key=f"com_onset_{recording.name if recording else ''}",
            )
        )
    refs_all = [
        f for f in list_recordings() if recording is None or f.resolve() != recording.resolve()
    ]
    refs_ok = [f for f in refs_all if not pipelines_for(f, {machine: pipeline}).get(machine)]
    refs = st.multiselect(
        "Healthy reference recordings (every alarm on them is a false alarm)",
        refs_ok,
        default=[f for f in refs_ok if f.name in trained],
        format_func=lambda f: (
            f.name + (" (the model's training data)" if f.name in trained else "")
        ),
        key=f"com_refs_{machine}_{recording.name if recording else ''}",
    )
    if why_not:
        st.warning(f"Replay not possible: {why_not}")
    if st.button("Replay", type="primary", disabled=bool(why_not), key="com_run"):
        assert recording is not None
        if source == "upload" and signed_in_operator(st.session_state) is None:
            st.session_state["com_error"] = "sign in again: the operator's session ended"
            st.rerun()
        progress = st.empty()
        doing = {"what": recording.name}

        def keep_going(elapsed: float) -> None:
            # A Streamlit call: it raises when the session ends or the page is left, and
            # the replay (run_commissioning's child) is killed on the way out.
            progress.caption(
                f"Replaying {doing['what']} … {elapsed:.0f} s (stopped at "
                f"{REPLAY_TIMEOUT_S:.0f} s, or when this page is left)"
            )

        try:
            res = run_commissioning(recording, pipeline, model_dir, keep_going=keep_going)
            runs = [
                Run(
                    res,
                    {"has a fault": "fault", "is healthy": "healthy"}.get(role, "unknown"),
                    onset_s,
                )
            ]
            for ref in refs:
                doing["what"] = ref.name
                runs.append(
                    Run(
                        run_commissioning(
                            ref, pipeline, model_dir, keep_going=keep_going, analyse=False
                        ),
                        "healthy",
                    )
                )
            st.session_state["com_result"] = res
            st.session_state["com_runs"] = runs
            st.session_state.pop("com_error", None)
        except PdmError as exc:
            st.session_state.pop("com_result", None)
            st.session_state.pop("com_runs", None)
            st.session_state["com_error"] = str(exc).splitlines()[0]
        progress.empty()


def _results(st: Any, res: CommissioningResult) -> None:
    st.subheader(f"{res.recording} → {res.machine_name}")
    s = res.summary
    ups = [t for t in res.transitions if t.get("from") == "ok"]
    first = transition_rows(res, ups[:1])
    m1, m2, m3 = st.columns(3)
    invalid = s.get("invalid_windows", 0)
    m1.metric("Windows", s.get("windows", res.windows), help=f"{invalid} invalid")
    m2.metric("Final alarm state", str(s.get("alarm_state") or "ok").upper())
    m3.metric("First alarm", f"{first[0]['from start, s']} s" if first else "none")
    diag = res.averaged.label if res.averaged is not None else res.top_diagnosis()
    conf = f" (confidence {res.averaged.confidence:.2f})" if res.averaged is not None else ""
    st.markdown(f"Diagnosis: **{diagnosis_words(diag) or '—'}**{conf}")
    st.caption(
        f"Model {res.model or '—'} ({res.model_dir or 'none'}); pipeline {res.pipeline_file}"
    )
    for note in res.notes:
        st.warning(note)
    st.markdown("**What alarmed, when and why**")
    if res.transitions:
        st.dataframe(transition_rows(res, res.transitions), hide_index=True, width="stretch")
    else:
        st.info("No alarm transition.")


def _deciding_spectra(st: Any, res: CommissioningResult) -> None:
    ws = res.deciding
    st.subheader("Spectra of the deciding window")
    if ws is None:
        st.caption("Not recomputed (see the note above).")
        return
    st.caption(
        f"Window {ws.window} at {utc_time(ws.t_ns)} UTC ({res.window_span(ws.t_ns)}): "
        f"{res.deciding_why}. Recomputed from the recording at full "
        f"resolution ({fmt_num(float(ws.freqs_hz[1] - ws.freqs_hz[0]), 3)} Hz per line), "
        f"shaft speed {fmt_num(ws.shaft_rpm, 4)} r/min."
    )
    pl = res.pipeline
    channel = st.selectbox(
        "Channel", list(ws.channels), format_func=lambda c: channel_label(pl, c), key="com_ws_ch"
    )
    i = ws.channels.index(channel)
    diag = res.averaged.label if res.averaged is not None else res.top_diagnosis()
    where = channel_label(pl, channel)
    lo, hi = ws.envelope_band_hz
    spectra_block(
        "com_ws",
        pl,
        channel,
        [
            (
                ws.env_freqs_hz,
                ws.env_g[i],
                "envelope",
                "Envelope spectrum",
                f"{where}: envelope of the {fmt_num(lo, 4)}–{fmt_num(hi, 4)} Hz band",
            ),
            (ws.freqs_hz, ws.acc_g[i], "acceleration", "Acceleration spectrum", where),
        ],
        rpm=ws.shaft_rpm,
        diagnosis=diag,
    )


def _diagnosis(st: Any, res: CommissioningResult) -> None:
    av = res.averaged
    st.subheader("Diagnosis (averaged spectra)")
    if av is None:
        st.caption("No diagnosis (see the note above).")
        return
    pl = res.pipeline
    st.markdown(
        f"**{diagnosis_words(av.label)}** — confidence {av.confidence:.2f}"
        + (f", on {channel_label(pl, av.channel)}" if av.channel else "")
        + f"; {av.windows} windows of {av.window_samples} samples averaged "
        f"({fmt_num(av.df_hz, 3)} Hz per line, chosen for the bearing's lines)"
    )
    best = next(
        (v for v in av.verdicts if v.get("channel") == av.channel),
        av.verdicts[0] if av.verdicts else None,
    )
    if best:
        st.markdown("\n".join(f"- {e}" for e in best.get("evidence", [])))
    channel = st.selectbox(
        "Channel",
        list(av.channels),
        format_func=lambda c: channel_label(pl, c),
        index=list(av.channels).index(av.channel) if av.channel in av.channels else 0,
        key="com_av_ch",
    )
    i = av.channels.index(channel)
    verdict = next((v for v in av.verdicts if v.get("channel") == channel), {})
    rpm = verdict.get("shaft_speed_rpm")
    f = np.arange(av.acc_g.shape[1]) * av.df_hz
    where = channel_label(pl, channel)
    panels = [(f, av.acc_g[i], "acceleration", "Averaged acceleration spectrum", where)]
    if av.env_g is not None:
        fe = np.arange(av.env_g.shape[1]) * av.df_hz
        panels.insert(0, (fe, av.env_g[i], "envelope", "Averaged envelope spectrum", where))
    spectra_block(
        "com_av", pl, channel, panels, rpm=float(rpm) if rpm else None, diagnosis=av.label
    )


#: Threshold values the score sliders offer (log-spaced; the configured ones are added).
_SCORE_STEPS = (
    0.25,
    0.5,
    0.75,
    1.0,
    1.25,
    1.5,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
)
_VELOCITY_STEPS = (
    0.5,
    0.71,
    1.0,
    1.12,
    1.4,
    1.8,
    2.3,
    2.8,
    3.5,
    4.5,
    5.6,
    7.1,
    9.0,
    11.0,
    14.0,
    18.0,
    22.4,
)


def _steps(base: Sequence[float], *extra: float | None) -> list[float]:
    return sorted({*base, *(round(x, 6) for x in extra if x is not None)})


def _whatif_panel(
    st: Any, res: CommissioningResult, runs: Sequence[Run]
) -> tuple[Setting, list[dict[str, Any]]]:
    st.subheader("What if")
    st.caption(
        "The alarm state machine re-run over the stored per-window values with other "
        "thresholds and on-delays, on this recording and the healthy references together; "
        "never acknowledged, so a latch stays. An alarm counts when its window ends."
    )
    quantity = st.radio(
        "Thresholds on",
        list(QUANTITIES),
        format_func=lambda q: QUANTITIES[q],
        horizontal=True,
        key="wi_quantity",
    )
    base = configured_setting(res, quantity)
    steps = _SCORE_STEPS if quantity == "score" else _VELOCITY_STEPS
    unit = "" if quantity == "score" else " mm/s"
    w1, w2, w3 = st.columns(3)

    def pick(col: Any, name: str, value: float | None) -> float | None:
        if value is None:
            col.caption(f"{name}: off in the pipeline")
            return None
        opts = _steps(steps, value)
        return float(
            col.select_slider(
                f"{name} threshold{unit}",
                opts,
                value=round(value, 6),
                format_func=lambda v: fmt_num(v),
                key=f"wi_{quantity}_{name}",
            )
        )

    alert = pick(w1, "alert", base.alert)
    danger = pick(w2, "danger", base.danger)
    trip = pick(w3, "trip", base.trip)
    w4, w5, w6 = st.columns(3)
    of_max, off_max = max(30, base.of_windows), max(200, base.off_windows)
    of = w5.slider("On-delay: of the last M windows", 1, of_max, base.of_windows, key="wi_of")
    if of > 1:
        on = w4.slider("On-delay: N windows", 1, of, min(base.on_windows, of), key="wi_on")
    else:
        on = 1
        w4.caption("On-delay: 1 of 1 window")
    off = w6.slider("Off-delay (clear windows)", 1, off_max, base.off_windows, key="wi_off")
    hop = res.hop_s
    st.caption(
        f"On-delay {on} of {of} windows ≈ {fmt_num(on * hop, 3)}–{fmt_num(of * hop, 3)} s; "
        f"off-delay {off} windows ≈ {fmt_num(off * hop, 3)} s (a window every {fmt_num(hop, 3)} s)."
    )
    setting = Setting(quantity, alert, danger, trip, on, of, off)
    if quantity == "score":
        st.altair_chart(score_chart(res, setting), width="stretch")
    else:
        st.altair_chart(velocity_chart(res, setting), width="stretch")
    outcomes = [run_outcome(r, whatif_setting(r.res, setting)) for r in runs]
    st.markdown(f"**This setting** ({setting.label()})")
    st.dataframe(outcome_rows(outcomes), hide_index=True, width="stretch")
    grid = whatif_grid(runs, setting)
    st.markdown(
        "**Settings compared**: the alert threshold (danger and trip in the same ratio as "
        "above) against the on-delay"
    )
    st.dataframe(grid_rows(grid, quantity), hide_index=True, width="stretch")
    fa, dl = grid_charts(grid, quantity)
    c1, c2 = st.columns(2)
    c1.altair_chart(fa, width="stretch")
    if any(r["delay_s"] is not None for r in grid):
        c2.altair_chart(dl, width="stretch")
    else:
        c2.caption("No delay to show: no recording is marked as having a fault with an onset.")
    _ = pd
    return setting, grid
