"""Dashboard page: each machine's active model card, and its shadow candidate's agreement.

The card (``model.json`` in the pipeline's model directory, read with
:func:`pdm.scoring.card.read_card`) shows what the model rests on: training
data, thresholds and calibration, evaluation figures and versions. When the
dashboard knows the service (``--api``), ``GET /status`` tells which model
version scores now and, for a candidate running in shadow, how often it agrees
with the active model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from pdm.dashboard.alarms import api_status
from pdm.dashboard.context import DashboardContext
from pdm.errors import PdmError
from pdm.scoring.card import read_card

__all__ = ["card_summary", "render", "shadow_rows"]


def card_summary(card: dict[str, Any]) -> dict[str, Any]:
    """The parts of a model card an engineer looks at, flattened for display."""
    model = card.get("model", {}) or {}
    score = card.get("score", {}) or {}
    cal = card.get("calibration", {}) or {}
    training = card.get("training", {}) or {}
    ev = card.get("evaluation", {}) or {}
    onnx = card.get("onnx", {}) or {}
    dsp = card.get("dsp", {}) or {}
    return {
        "identity": {
            "name": model.get("name"),
            "detector": model.get("detector"),
            "created": model.get("created"),
            "trained with pdm-edge": model.get("pdm_edge"),
            "version (ONNX SHA-256, 12 hex)": str(onnx.get("sha256", ""))[:12],
            "features": len(card.get("features", []) or []),
            "regenerate": card.get("regenerate"),
        },
        "thresholds": {
            "alert": score.get("alert"),
            "danger": score.get("danger"),
            "target alerts per week": cal.get("target_alerts_per_week"),
            "window rate (Hz)": cal.get("window_rate_hz"),
            "p(alert) per window": cal.get("p_alert_per_window"),
            "held-out windows": cal.get("holdout_windows"),
            "held-out max score": cal.get("holdout_max_score"),
            "held-out false alerts": cal.get("holdout_false_alerts"),
            "supported alerts/week (95 %)": cal.get("supported_alerts_per_week_95"),
        },
        "warnings": list(cal.get("warnings", []) or []),
        "training_files": list(training.get("files", []) or []),
        "training": {k: v for k, v in training.items() if k != "files"},
        "evaluation": dict(ev),
        "dsp": {
            "sample rate (Hz)": dsp.get("sample_rate_hz"),
            "window (samples)": dsp.get("window_samples"),
            "hop (samples)": dsp.get("hop_samples"),
            "channels": ", ".join(str(c.get("column")) for c in dsp.get("channels", []) or []),
        },
        "packages": dict(card.get("packages", {}) or {}),
    }


def shadow_rows(status: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per machine with a shadow candidate, from ``GET /status``."""
    rows = []
    for d in status:
        sh = d.get("shadow")
        if not isinstance(sh, dict):
            continue
        agree = sh.get("agreement")
        rows.append(
            {
                "machine": d.get("id"),
                "active": sh.get("active_version") or d.get("model_version"),
                "candidate": sh.get("version"),
                "since": sh.get("since"),
                "windows": sh.get("windows"),
                "agreement": None if agree is None else f"{100 * float(agree):.1f} %",
                "mean |Δscore|": sh.get("mean_abs_diff"),
                "max |Δscore|": sh.get("max_abs_diff"),
                "non-finite": sh.get("nonfinite"),
                "errors": sh.get("errors"),
            }
        )
    return rows


def _kv(d: dict[str, Any]) -> list[dict[str, str]]:
    return [{"": str(k), "value": "—" if v is None else str(v)} for k, v in d.items()]


def render(ctx: DashboardContext) -> None:
    st.header("Models")
    for p in ctx.problems:
        st.warning(p)
    status: list[dict[str, Any]] = []
    if ctx.api_url:
        try:
            status = api_status(ctx)
        except PdmError as exc:
            st.warning(f"Shadow figures unavailable: {exc}")
    by_id = {str(d.get("id")): d for d in status}
    if not ctx.pipelines:
        st.info("No pipelines loaded (see --pipelines).")
    for machine in sorted(ctx.pipelines):
        pl = ctx.pipelines[machine]
        st.subheader(f"{pl.machine.name or machine} ({machine})")
        live = by_id.get(machine)
        if live and live.get("model_version"):
            st.caption(f"Scoring now (service): model {live['model_version']}")
        model_dir: Path | None = pl.model_dir
        if model_dir is None:
            st.info("This pipeline has no model.")
            continue
        try:
            card = read_card(model_dir)
        except PdmError as exc:
            st.warning(str(exc))
            continue
        s = card_summary(card)
        st.caption(f"Model directory: {model_dir}")
        c1, c2 = st.columns(2)
        c1.markdown("**Model**")
        c1.dataframe(_kv(s["identity"]), hide_index=True, width="stretch")
        c2.markdown("**Thresholds and calibration**")
        c2.dataframe(_kv(s["thresholds"]), hide_index=True, width="stretch")
        for w in s["warnings"]:
            st.warning(f"Calibration: {w}")
        st.markdown("**Training data**")
        if s["training_files"]:
            st.dataframe(s["training_files"], hide_index=True, width="stretch")
        st.write(", ".join(f"{k}: {v}" for k, v in s["training"].items()))
        c3, c4, c5 = st.columns(3)
        c3.markdown("**Evaluation**")
        c3.dataframe(_kv(s["evaluation"]), hide_index=True, width="stretch")
        c4.markdown("**DSP**")
        c4.dataframe(_kv(s["dsp"]), hide_index=True, width="stretch")
        c5.markdown("**Versions**")
        c5.dataframe(_kv(s["packages"]), hide_index=True, width="stretch")
        if live is not None:
            rows = shadow_rows([live])
            if rows:
                st.markdown("**Shadow candidate** (agreement with the active model)")
                st.dataframe(rows, hide_index=True, width="stretch")
                conf = (live.get("shadow") or {}).get("confusion")
                if conf:
                    st.caption("Confusion (active state → candidate state, windows)")
                    st.dataframe(
                        [{"active": a, **row} for a, row in conf.items()],
                        hide_index=True,
                        width="stretch",
                    )
            else:
                st.caption("No candidate in shadow.")
