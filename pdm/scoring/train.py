"""Learn a machine's healthy baseline: split by time, fit, calibrate, export, write the card.

Fitting: the windows of each healthy recording are split by time — the first
part trains, the last ``holdout`` fraction is held out, and the windows in
between that share samples with both are dropped (no neighbouring windows on
both sides). The held-out windows are the card's evaluation of the final model.
Snapshots — recordings too short to split, a second every ten minutes — are held out
whole instead: the last ``holdout`` fraction of them in the order given
(:func:`split_recordings`).

Calibration rests on windows scored by a model that never saw them *nor their
recording's neighbourhood*, as every window is in service
(:func:`cross_validated_excess`): the windows are cut into at least three
blocks — one per recording when there are three or more, else thirds of each
recording with the overlapping windows at the cuts dropped — and each block is
scored by the preprocess and detector fitted on all the others. What counts is
a window's raw score *above its fold model's median training score*; those
excesses, added to the final model's median training score, are the calibration
sample. Every window calibrates (not 30 % of them), and a block is another
snapshot or another stretch of running, so the spread between runs (a slightly
other speed or load) is in the sample, where held-out windows of the recordings
trained on hide it. The fold models train on less data than the final one, so
their excesses err on the high side. When a fold would be too small for the
detector, the held-out windows calibrate, as before, and the card says so.

The alert threshold is the raw score that calibration windows exceed with
probability ``p = alerts_per_week / windows_per_week``, from a generalised
Pareto fit to the upper tail of the calibration scores (peaks over threshold;
shape bounded to ±0.3, the scale the unbounded fit's), and never below the
highest calibration score. Danger is the same at a 52× rarer rate (about once
a year), and at least 1.5 on the normalised scale. Neither is below the score of
the machine a little louder all over (:func:`least_alert_window`: every amplitude
× 1.10 for the alert, × 1.25 for danger): statistics alone put a machine that
barely moved in training in danger 5 % louder. The card states the rate,
the data it rests on and what the data alone can support (with n calibration
windows and no exceedance, a 95 % upper bound of 3/n per window), and warns
when the data are too few.

The detector is fitted on the healthy z-scores as they are, and calibrated on
the clipped z-scores the graph feeds it
(:meth:`pdm.scoring.preprocess.Preprocess.detector_input`): only rises of the
``up`` features count, in the calibration as in service, and the card's
``calibration.direction`` says so.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm import __version__
from pdm.config import Pipeline
from pdm.diagnosis.baseline import Baseline, BaselineBuilder
from pdm.diagnosis.silence import flat
from pdm.errors import ModelError
from pdm.processing import FeatureStream, WindowFeatures, iso_time, open_recording, too_short
from pdm.scoring.card import CARD_SCHEMA_VERSION, dsp_signature, sha256_file, write_card
from pdm.scoring.preprocess import Preprocess
from pdm.scoring.quiet import amplitude_mask
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names

__all__ = [
    "TrainingSet",
    "calibrate",
    "calibration_blocks",
    "check_model_out",
    "collect",
    "cross_validated_excess",
    "direction_note",
    "least_alert_window",
    "split_by_time",
    "split_recordings",
    "train",
    "windows_needed",
]

SECONDS_PER_WEEK = 7 * 86_400
#: Held-out windows below which the card warns that the thresholds rest on too little data.
MIN_HOLDOUT_WINDOWS = 100
DANGER_RATE_RATIO = 52.0
DANGER_MIN = 1.5
#: Fewest blocks of the cross-validated calibration: each fold then trains on at least two
#: recordings (or two stretches of one), so the spread between them is learnt as well as tested.
CV_BLOCKS = 3
#: Bound on the generalised Pareto shape fitted to a short tail sample.
TAIL_SHAPE_BOUND = 0.3
#: The least change of a machine's vibration amplitudes that is an alert: every amplitude
#: 10 % above its healthy median — twice an accelerometer's calibration tolerance (±5 %),
#: the least a change of the machine can be told from one of its sensor. Healthy running
#: that barely moved during training (simulated snapshots: rms within 0.3 %) otherwise put
#: the alert at a few per cent: the same machine 5 % louder was in danger on every window.
LEAST_ALERT_AMPLITUDE_RATIO = 1.10
#: ... and that is danger: 25 % above (ISO 10816-3's criterion II calls a change of 25 % of
#: zone B's upper value significant; 25 % of the machine's own level is the stricter reading
#: for a machine running below zone B).
LEAST_DANGER_AMPLITUDE_RATIO = 1.25


@dataclass
class TrainingSet:
    """Feature rows of healthy recordings, grouped per file, with where they came from."""

    pipeline: Pipeline
    fs: float
    names: tuple[str, ...]
    per_file: list[npt.NDArray[np.float32]]
    files: list[dict[str, Any]]
    #: The healthy windows' averaged spectra (the card's ``diagnosis_baseline``), or None.
    baseline: Baseline | None = None


def collect(
    files: Sequence[str | os.PathLike[str]],
    pipeline: Pipeline,
    *,
    fs: float | None = None,
    start_time: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainingSet:
    """Run healthy recordings through the DSP and keep their model feature rows.

    Invalid windows are left out (and counted in the file's entry). The valid windows'
    spectra are also averaged into the machine's healthy baseline for the diagnosis
    (:mod:`pdm.diagnosis.baseline`).
    """
    per_file: list[npt.NDArray[np.float32]] = []
    infos: list[dict[str, Any]] = []
    names: tuple[str, ...] | None = None
    rate: float | None = None
    pl_out = pipeline
    builder: BaselineBuilder | None = None
    for path in files:
        rec, pl = open_recording(path, pipeline, fs=fs, start_time=start_time)
        with rec:
            if rate is not None and rec.sample_rate_hz != rate:
                raise ModelError(
                    f"{path}: sample rate {rec.sample_rate_hz:g} Hz differs from {rate:g} Hz of the "
                    "files before it; train one model per sample rate"
                )
            rate = rec.sample_rate_hz
            stream = FeatureStream(pl, rec.sample_rate_hz)
            frames: list[WindowFeatures] = []
            for wf in stream.feed(rec.chunks()):
                frames.append(wf)
                if progress:
                    progress(1)
        if not frames:
            raise ModelError(too_short(path, stream))
        available = frames[0].features.names
        if names is None:
            names = vector_names(pl.columns, available, MODEL_FEATURES)
        vec = FeatureVectorizer(names, pl.columns, available)
        valid = [wf for wf in frames if wf.features.valid]
        dead = np.logical_and.reduce([flat(wf.features.values) for wf in valid]) if valid else []
        if np.any(dead):
            cols = [c for c, d in zip(pl.columns, dead, strict=True) if d]
            raise ModelError(
                f"{path}: {', '.join(map(repr, cols))} carr{'ies' if len(cols) == 1 else 'y'} no "
                f"signal in any of its {len(valid)} windows (zeros, or a constant: nothing above "
                "the samples' rounding); a dead sensor is no healthy baseline: mend it, or "
                "leave the column out (--columns)"
            )
        if builder is None:
            builder = BaselineBuilder(pl.acquisition.window_samples, pl.columns)
        for wf in valid:
            builder.add(wf.features, rec.sample_rate_hz)
        x = vec.matrix([wf.features for wf in valid])
        per_file.append(x)
        infos.append(
            {
                "file": os.path.basename(os.fspath(path)),
                "sha256": sha256_file(path),
                "windows": len(valid),
                "invalid_windows": len(frames) - len(valid),
                "t_start": iso_time(frames[0].window.t_start),
                "t_end": iso_time(
                    frames[-1].window.t_start + pl.acquisition.window_samples / rec.sample_rate_hz
                ),
            }
        )
        pl_out = pl
    assert names is not None and rate is not None
    # A feature that is missing in the healthy data (no bearing, no speed) cannot be modelled.
    allx = np.concatenate(per_file)
    keep = np.asarray(np.isfinite(allx).all(axis=0), dtype=bool)
    if not keep.any():
        raise ModelError("no feature is finite in every healthy window; nothing to learn from")
    names = tuple(n for n, k in zip(names, keep, strict=True) if k)
    per_file = [x[:, keep] for x in per_file]
    return TrainingSet(
        pl_out, rate, names, per_file, infos, builder.result() if builder is not None else None
    )


def windows_needed(detector: str, n_features: int, holdout: float, gap: int) -> int:
    """Healthy windows a recording must give so that ``detector`` can be trained and calibrated."""
    from pdm.scoring.detectors import min_train_windows

    need_train = min_train_windows(detector, n_features)
    # n − round(n·holdout) − gap ≥ need_train, and at least 3 held out
    n = need_train + gap + 3
    while n - max(3, round(n * holdout)) - gap < need_train:
        n += 1
    return n


def split_by_time(
    n: int, holdout: float, gap: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices (train, holdout) of ``n`` time-ordered windows: first part, gap, last part.

    ``gap`` windows between them are dropped so that no training window shares a
    sample with a held-out one.
    """
    n_hold = max(1, round(n * holdout))
    n_train = n - n_hold - gap
    if n_train < 2:
        return np.arange(0), np.arange(0)
    return np.arange(n_train), np.arange(n_train + gap, n)


def split_recordings(
    per_file: Sequence[npt.NDArray[np.float32]], holdout: float, gap: int
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]], dict[str, int]]:
    """The training and held-out windows of time-ordered recordings, and how they were split.

    A recording long enough is split by time (:func:`split_by_time`). *Snapshots* — recordings
    too short for that, such as a second of data every ten minutes (one or two windows
    each) — are held out whole: the last ``holdout`` fraction of them, in the order given
    (name them in time order), while the others train whole; different files share no
    sample, so no gap is dropped between them. Split each snapshot instead, and a one-window
    file gave nothing: 20 snapshots of one window each trained on 0 windows.

    >>> one = np.zeros((1, 2), np.float32)
    >>> tr, ho, how = split_recordings([one] * 10, 0.3, gap=1)
    >>> sum(map(len, tr)), sum(map(len, ho)), how
    (7, 3, {'recordings_split': 0, 'snapshots_trained': 7, 'snapshots_held_out': 3})
    """
    train_parts, hold_parts, snapshots = [], [], []
    for x in per_file:
        tr, ho = split_by_time(len(x), holdout, gap)
        if len(tr) and len(ho):
            train_parts.append(x[tr])
            hold_parts.append(x[ho])
        elif len(x):
            snapshots.append(x)
    n_hold = round(len(snapshots) * holdout)
    if snapshots and n_hold == 0 and len(snapshots) >= 2:
        n_hold = 1
    cut = len(snapshots) - n_hold
    train_parts += snapshots[:cut]
    hold_parts += snapshots[cut:]
    how = {
        "recordings_split": len(per_file) - len(snapshots),
        "snapshots_trained": cut,
        "snapshots_held_out": n_hold,
    }
    empty = np.zeros((0, per_file[0].shape[1] if per_file else 0), np.float32)
    return train_parts or [empty], hold_parts or [empty], how


def calibration_blocks(
    lengths: Sequence[int], gap: int
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """Blocks of the cross-validated calibration over recordings of ``lengths`` windows.

    Returns ``(block, rest)`` index pairs into the recordings' windows concatenated in
    order: with :data:`CV_BLOCKS` or more recordings a block is one recording and the rest
    all the others; with fewer, a block is a third of one recording and the rest every
    other window but the ``gap`` windows on either side of the block, which share samples
    with it.
    """
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
    total = int(starts[-1])
    everything = np.arange(total)
    out = []
    if len(lengths) >= CV_BLOCKS:
        for i in range(len(lengths)):
            block = np.arange(starts[i], starts[i + 1])
            out.append((block, np.setdiff1d(everything, block)))
        return out
    for i, n in enumerate(lengths):
        cuts = [round(n * k / CV_BLOCKS) for k in range(CV_BLOCKS + 1)]
        for lo, hi in itertools.pairwise(cuts):
            block = np.arange(starts[i] + lo, starts[i] + hi)
            near = np.arange(starts[i] + max(0, lo - gap), starts[i] + min(n, hi + gap))
            out.append((block, np.setdiff1d(everything, near)))
    return out


def cross_validated_excess(
    per_file: Sequence[npt.NDArray[np.float32]],
    names: Sequence[str],
    detector: str,
    gap: int,
    *,
    seed: int = 0,
) -> npt.NDArray[np.float64] | None:
    """Each window's raw score above its fold model's median training score, or None.

    Blocks are :func:`calibration_blocks`; each is scored by the preprocess and detector
    fitted on the rest, and clipped as in service. None when a fold has fewer windows than
    the detector needs or cannot be fitted: the held-out windows must calibrate then.
    """
    from pdm.scoring.detectors import fit_detector, min_train_windows, raw_scores

    x = np.concatenate(per_file)
    need = min_train_windows(detector, len(names))
    blocks = calibration_blocks([len(f) for f in per_file], gap)
    if any(len(rest) < need or len(block) == 0 for block, rest in blocks):
        return None
    out = []
    for block, rest in blocks:
        pre = Preprocess.fit(x[rest], names)
        try:
            det = fit_detector(detector, pre.transform(x[rest]), seed=seed)
        except ValueError:
            return None
        base = float(np.median(raw_scores(det, pre.detector_input(x[rest]))))
        out.append(raw_scores(det, pre.detector_input(x[block])) - base)
    return np.concatenate(out)


def tail_quantile(scores: npt.NDArray[np.float64], p: float) -> tuple[float, dict[str, Any]]:
    """Score exceeded with probability ``p``: generalised Pareto fit to the top 20 % (≥ 5)."""
    from scipy.stats import genpareto

    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n < 10:
        # Too few for any tail model: the max plus the spread, and say so.
        spread = (
            float(np.subtract(*np.percentile(s, [75, 25]))) if n > 1 else abs(float(s[-1])) or 1.0
        )
        return float(s[-1] + 3 * spread), {
            "method": "max + 3·IQR (too few windows for a tail fit)",
            "n": n,
        }
    k = max(5, math.ceil(0.2 * n))
    u = float(s[n - k - 1])
    exc = s[n - k :] - u
    c, _loc, scale = genpareto.fit(exc, floc=0.0)
    # A short tail sample can suggest a very heavy or very light tail; bound the shape so
    # the extrapolation stays within what such samples can support. The scale stays the
    # unbounded fit's: beside a shape bounded at -0.3 it puts the tail's end further out
    # (u + scale/0.3 instead of u + scale/|c|), a margin the held-out calibration of a
    # short recording needs — its few windows understate another stretch of running
    # (refitting the scale at the bound, tried: false alarms on CWRU and every simulated
    # rig, docs/models.md "Few healthy windows").
    c = float(np.clip(c, -TAIL_SHAPE_BOUND, TAIL_SHAPE_BOUND))
    ratio = p * n / k
    if ratio >= 1:
        q = float(np.quantile(s, 1 - p))
    elif abs(c) < 1e-9:
        q = u - scale * math.log(ratio)
    else:
        q = u + scale / c * (ratio ** (-c) - 1.0)
    return q, {
        "method": "generalised Pareto tail (peaks over threshold)",
        "n": n,
        "k": k,
        "u": u,
        "shape": c,
        "scale": float(scale),
    }


def least_alert_window(
    x_train: npt.ArrayLike, names: Sequence[str], ratio: float = LEAST_ALERT_AMPLITUDE_RATIO
) -> npt.NDArray[np.float64]:
    """The healthy median window with every vibration amplitude
    (:func:`~pdm.scoring.quiet.amplitude_mask`: ``*_g``, ``*_mm_s``, not ``mean_g``, a DC
    offset) ``ratio`` times its median, shapes and speeds as they are: the machine a little louder
    all over — a load, a sensor's sensitivity, a season —, the least change that is an alert
    (:data:`LEAST_ALERT_AMPLITUDE_RATIO`) or danger. (1, d), raw feature values.

    >>> names = ["x_g.rms_g", "x_g.kurtosis", "x_g.velocity_rms_mm_s", "x_g.mean_g"]
    >>> least_alert_window([[0.1, 3.0, 2.0, 1.0], [0.3, 3.2, 4.0, 1.0]], names, 1.25)
    array([[0.25, 3.1 , 3.75, 1.  ]])
    """
    x = np.median(np.asarray(x_train, dtype=np.float64), axis=0)
    return np.where(amplitude_mask(names), x * ratio, x)[None, :]


def calibrate(
    train_raw: npt.NDArray[np.float64],
    hold_raw: npt.NDArray[np.float64],
    *,
    alerts_per_week: float,
    window_rate_hz: float,
    raw_sup: float | None = None,
    cal_raw: npt.NDArray[np.float64] | None = None,
    least_raw: float | None = None,
    least_danger_raw: float | None = None,
) -> dict[str, Any]:
    """Offset, span and thresholds that put the alert at 1.0; what they rest on.

    The thresholds come from ``cal_raw`` (the cross-validated calibration sample,
    :func:`cross_validated_excess` added to the training median) when given, else from
    the held-out ``hold_raw``; the card's ``holdout_*`` figures are always the held-out
    windows' under the final model. ``raw_sup`` is the detector's largest possible raw
    score, if bounded (isolation forest): a tail extrapolation beyond it would make alerts
    impossible, so the thresholds are then placed between the calibration maximum and that
    bound.
    """
    cross_validated = cal_raw is not None
    cal = np.asarray(cal_raw if cal_raw is not None else hold_raw, dtype=np.float64)
    windows_per_week = window_rate_hz * SECONDS_PER_WEEK
    p_alert = min(0.5, alerts_per_week / windows_per_week)
    q_alert, tail = tail_quantile(cal, p_alert)
    q_danger, _ = tail_quantile(cal, p_alert / DANGER_RATE_RATIO)
    cal_max = float(np.max(cal))
    capped = False
    if raw_sup is not None and q_alert >= cal_max + 0.5 * (raw_sup - cal_max):
        q_alert = cal_max + 0.5 * (raw_sup - cal_max)
        q_danger = cal_max + 0.75 * (raw_sup - cal_max)
        capped = True
    offset = float(np.median(train_raw))
    alert_raw = max(q_alert, cal_max + 1e-9 * abs(cal_max))
    if alert_raw <= offset:
        alert_raw = offset + max(1e-6, float(np.std(train_raw)))
    statistical = alert_raw
    if least_raw is not None and math.isfinite(least_raw) and least_raw > alert_raw:
        if raw_sup is not None:
            least_raw = min(least_raw, max(alert_raw, cal_max + 0.5 * (raw_sup - cal_max)))
        alert_raw = least_raw
    span = alert_raw - offset
    # Danger as far beyond the alert as the statistics put it beyond theirs, and no nearer
    # than the least danger window.
    danger = max(DANGER_MIN, (q_danger - offset) / (statistical - offset))
    danger_floor = -math.inf
    if least_danger_raw is not None and math.isfinite(least_danger_raw):
        if raw_sup is not None:
            least_danger_raw = min(least_danger_raw, cal_max + 0.75 * (raw_sup - cal_max))
        danger_floor = (least_danger_raw - offset) / span
    statistical_danger = danger
    danger = max(danger, danger_floor)
    n = len(cal)
    what = "calibration" if cross_validated else "held-out healthy"
    warnings = []
    if n < MIN_HOLDOUT_WINDOWS:
        warnings.append(
            f"only {n} {what} windows (at least {MIN_HOLDOUT_WINDOWS} wanted): the thresholds "
            "rest on too little data to support the stated false-alarm rate; record more healthy running"
        )
    if capped:
        warnings.append(
            "the tail model put the alert above the highest score this detector can give; "
            "thresholds placed half and three quarters of the way from the calibration maximum to it"
        )
    supported = 3.0 / n * windows_per_week if n else math.inf
    if supported > alerts_per_week * 10:
        warnings.append(
            f"the {what} data alone support at most ~{supported:.3g} alerts/week (95 % bound, "
            f"{n} windows); {alerts_per_week:g}/week is an extrapolation by the tail model"
        )
    method = (
        f"cross-validated: every window scored by a model fitted without its block "
        f"({CV_BLOCKS}+ blocks: recordings, or thirds of them), its excess over that model's "
        "median training score"
        if cross_validated
        else "held-out windows (a fold of the cross-validation would be too small for the detector)"
    )
    return {
        "offset": offset,
        "span": span,
        "alert": 1.0,
        "danger": float(danger),
        "calibration": {
            "target_alerts_per_week": alerts_per_week,
            "window_rate_hz": window_rate_hz,
            "p_alert_per_window": p_alert,
            "method": method,
            "calibration_windows": n,
            "calibration_max_score": float((cal_max - offset) / span),
            "tail": tail,
            "holdout_windows": len(hold_raw),
            "holdout_max_score": float((np.max(hold_raw) - offset) / span),
            "holdout_p99_score": float((np.percentile(hold_raw, 99) - offset) / span),
            "holdout_false_alerts": int(np.sum((hold_raw - offset) / span >= 1.0)),
            "supported_alerts_per_week_95": supported,
            "least_alert": {
                "amplitude_ratio": LEAST_ALERT_AMPLITUDE_RATIO,
                "applied": bool(alert_raw > statistical),
                "statistical_alert_score": float((statistical - offset) / span),
                "danger_amplitude_ratio": LEAST_DANGER_AMPLITUDE_RATIO,
                "danger_applied": bool(danger > statistical_danger),
            },
            "note": "rates are per window before any alarm on-delay; overlapping windows are correlated",
            "warnings": warnings,
        },
    }


def train(
    ts: TrainingSet,
    out: Path,
    *,
    detector: str,
    alerts_per_week: float,
    holdout: float,
    seed: int = 0,
    force: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Fit, calibrate, export and write ``out`` (model.onnx + model.json) atomically."""
    import onnx
    import onnxruntime
    import scipy
    import sklearn

    from pdm.scoring.detectors import fit_detector, raw_scores
    from pdm.scoring.export import build_model

    acq = ts.pipeline.acquisition
    gap = max(0, math.ceil(acq.window_samples / acq.hop_samples) - 1)
    train_parts, hold_parts, split = split_recordings(ts.per_file, holdout, gap)
    x_train = np.concatenate(train_parts)
    x_hold = np.concatenate(hold_parts)
    d = len(ts.names)
    from pdm.scoring.detectors import min_train_windows

    need = min_train_windows(detector, d)
    if len(x_train) < need or len(x_hold) < 3:
        total = sum(len(x) for x in ts.per_file)
        hint = (
            "; or --detector mahalanobis, whose shrinkage needs fewer windows than features"
            if detector in ("gmm", "pca")
            else ""
        )
        raise ModelError(
            f"too little healthy data for {detector!r} on {d} features: {total} windows give "
            f"{len(x_train)} to train and {len(x_hold)} to calibrate (need at least {need} and 3); "
            f"record longer, or use more overlap or a shorter window{hint}"
        )
    pre = Preprocess.fit(x_train, ts.names)
    try:
        # Fitted on the healthy z as they are: the detector learns healthy running's full
        # spread. Fitted on clipped z, half of each feature's mass sits on one point and
        # the learnt spread is a third as wide, so any slow drift alarms (CWRU normal
        # recording: 14-17 of 30 unseen windows alerted, 0 this way; docs/models.md).
        det = fit_detector(detector, pre.transform(x_train), seed=seed)
    except ValueError as exc:
        raise ModelError(f"cannot fit {detector!r}: {exc}") from exc
    # Scored and calibrated on the clipped z the graph feeds it (only rises of ``up`` count).
    train_raw = raw_scores(det, pre.detector_input(x_train))
    hold_raw = raw_scores(det, pre.detector_input(x_hold))
    window_rate = ts.fs / acq.hop_samples
    excess = cross_validated_excess(ts.per_file, ts.names, detector, gap, seed=seed)
    least = least_alert_window(x_train, ts.names)
    least_danger = least_alert_window(x_train, ts.names, LEAST_DANGER_AMPLITUDE_RATIO)
    cal = calibrate(
        train_raw,
        hold_raw,
        alerts_per_week=alerts_per_week,
        window_rate_hz=window_rate,
        raw_sup=det.params.get("raw_sup"),
        cal_raw=None if excess is None else float(np.median(train_raw)) + excess,
        least_raw=float(raw_scores(det, pre.detector_input(least))[0]),
        least_danger_raw=float(raw_scores(det, pre.detector_input(least_danger))[0]),
    )
    cal["calibration"]["direction"] = direction_note(pre)
    model = build_model(
        pre,
        det,
        offset=cal["offset"],
        span=cal["span"],
        metadata={"detector": detector, "machine": ts.pipeline.machine.id},
    )
    model_bytes = model.SerializeToString()

    from pdm.scoring.runtime import make_session

    session = make_session(model_bytes, where="the trained model")
    ref_x = x_hold[-1:].astype(np.float32)
    ref_score = float(session.run(["score"], {"features": ref_x})[0][0])
    card: dict[str, Any] = {
        "schema_version": CARD_SCHEMA_VERSION,
        "model": {
            "name": out.name,
            "detector": detector,
            "params": det.params,
            "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "pdm_edge": __version__,
            "seed": seed,
        },
        "machine": {
            "id": ts.pipeline.machine.id,
            "name": ts.pipeline.machine.name,
            "iso_group": ts.pipeline.machine.iso_group,
            "foundation": ts.pipeline.machine.foundation,
            # Which columns share a housing: the diagnosis arbitrates between housings only.
            "sensors": [
                {"id": sn.id, "columns": [ch.column for ch in sn.channels]}
                for sn in ts.pipeline.sensors
            ],
        },
        "features": [
            {"name": n, "unit": _unit(n), "log": bool(lg), "direction": dr}
            for n, lg, dr in zip(ts.names, pre.log_mask, pre.directions, strict=True)
        ],
        "preprocess": pre.to_dict(),
        "dsp": dsp_signature(ts.pipeline, ts.fs),
        "score": {
            "convention": "higher is more anomalous; alert threshold = 1.0",
            "offset": cal["offset"],
            "span": cal["span"],
            "alert": 1.0,
            "danger": cal["danger"],
        },
        "calibration": cal["calibration"],
        "training": {
            "files": ts.files,
            "train_windows": len(x_train),
            "holdout_windows": len(x_hold),
            "gap_windows_per_file": gap,
            "holdout_fraction": holdout,
            "split": split,
            "features": d,
        },
        "evaluation": {
            "holdout_false_alerts": cal["calibration"]["holdout_false_alerts"],
            "holdout_max_score": cal["calibration"]["holdout_max_score"],
        },
        "reference": {"features": [float(v) for v in ref_x[0]], "score": ref_score},
        "packages": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "onnx": {
            "file": "model.onnx",
            "sha256": "",
            "opset": [{"domain": o.domain, "version": o.version} for o in model.opset_import],
        },
        "regenerate": command or " ".join(["pdm-edge", *sys.argv[1:]]),
    }
    if ts.baseline is not None:
        # The diagnosis judges lines over the machine's own healthy ones (docs/diagnosis.md).
        card["diagnosis_baseline"] = ts.baseline.to_dict()
    _write_dir(out, model_bytes, card, force=force)
    return card


def direction_note(pre: Preprocess) -> str:
    """What the calibration counts, in one sentence (the card's ``calibration.direction``)."""
    up = int(pre.up_mask.sum())
    both = len(pre.names) - up
    text = (
        f"only rises above the healthy baseline count for {up} amplitude and impulsiveness "
        "features (their z is clipped at 0 before the detector, in training, calibration and "
        "the ONNX graph); a window below the baseline scores as the baseline and raises no alarm"
    )
    if both:
        text += f"; {both} feature(s) count in both directions"
    return text


def _unit(name: str) -> str:
    feat = name.rsplit(".", 1)[-1]
    if feat.endswith("_mm_s"):
        return "mm/s"
    if feat.endswith("_g"):
        return "g"
    return "1"


def check_model_out(out: Path, *, force: bool) -> Path:
    """``out`` made absolute, when a model may be written there; :class:`ModelError` if not.

    What ``out`` already is decides: nothing, or an empty directory (made for teach-in), is
    written; a model directory (one with a ``model.json``) is replaced with ``force``;
    anything else (a file, a directory of other things, ``--out .`` in a home folder) is
    refused even with ``force``, since replacing it would delete it. Asked before the work
    too (``train``, teach-in), so that learning does not end in a refusal.
    """
    out = Path(os.path.abspath(out))  # "." has no name to put a sibling beside
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise ModelError(f"{out}: exists and is not a directory; name a model directory")
    try:
        with os.scandir(out) as it:
            empty = next(it, None) is None
    except OSError as exc:
        raise ModelError(f"{out}: cannot read: {exc.strerror or exc}") from exc
    if not empty and not os.path.lexists(out / "model.json"):
        raise ModelError(
            f"{out}: a directory of other things (no model.json); refusing to replace it: "
            "name a new directory or a model directory"
        )
    if not empty and not force:
        raise ModelError(f"{out}: already exists (use --force to replace it)")
    return out


def _write_dir(out: Path, model_bytes: bytes, card: dict[str, Any], *, force: bool) -> None:
    """Write into a temporary sibling, then swap it in, so a crash never leaves half a model
    (``out`` as :func:`check_model_out` allows)."""
    out = check_model_out(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model directory is read by the dashboard too
    try:
        onnx_path = tmp / "model.onnx"
        with open(onnx_path, "wb") as f:
            f.write(model_bytes)
            f.flush()
            os.fsync(f.fileno())
        card["onnx"]["sha256"] = sha256_file(onnx_path)
        write_card(tmp, card)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
