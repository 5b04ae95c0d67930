"""Teach-in: a pipeline starts in learning mode, learns its healthy baseline, then monitors.

While learning, windows are collected (valid ones only, and never a window in
alarm: before a model exists the only alarm is the ISO 10816-3 zone, so a
window with any channel in zone C or D is left out). Once the collected
windows span ``teach_in_s`` seconds (and are enough for the detector: learning
goes on until they are), the model is trained and calibrated
exactly as ``pdm-edge train`` does, written to the pipeline's model
directory, loaded back through every check, and from then on windows are
scored. After that nothing is learned: a model changes only by an explicit
retrain or model update, so a slowly developing fault cannot teach itself in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.processing import WindowFeatures, iso_time
from pdm.scoring.runtime import Model
from pdm.scoring.train import TrainingSet, train, windows_needed
from pdm.scoring.vector import MODEL_FEATURES, FeatureVectorizer, vector_names

__all__ = ["TeachIn"]

ALARM_ZONES = frozenset({"C", "D"})


@dataclass
class TeachIn:
    """Collects healthy windows until ``span_s`` is covered, then trains ``out``."""

    pipeline: Pipeline
    fs: float
    out: Path
    span_s: float
    seed: int = 0
    collected: list[npt.NDArray[np.float32]] = field(default_factory=list)
    skipped_in_alarm: int = 0
    skipped_invalid: int = 0
    _t_first: float | None = None
    _vectorizer: FeatureVectorizer | None = None
    _finite: npt.NDArray[np.bool_] | None = None

    def offer(self, windows: Sequence[WindowFeatures]) -> tuple[Model | None, int]:
        """Learn from ``windows``; returns the trained model once the span is covered
        (else None) and how many of ``windows`` were used for learning."""
        for used, wf in enumerate(windows, start=1):
            frame = wf.features
            if not frame.valid:
                self.skipped_invalid += 1
                continue
            if ALARM_ZONES & set(frame.iso_zones):
                self.skipped_in_alarm += 1
                continue
            if self._vectorizer is None:
                names = vector_names(frame.channels, frame.names, MODEL_FEATURES)
                self._vectorizer = FeatureVectorizer(names, frame.channels, frame.names)
            vec = self._vectorizer.vector(frame)
            self.collected.append(vec)
            finite = np.isfinite(vec)
            self._finite = finite if self._finite is None else self._finite & finite
            if self._t_first is None:
                self._t_first = wf.window.t_start
            end = wf.window.t_start + self.pipeline.acquisition.window_samples / self.fs
            # The span is a minimum: learning goes on until the detector has enough windows.
            if end - self._t_first >= self.span_s and len(self.collected) >= self._needed():
                return self._train(wf), used
        return None, len(windows)

    def _needed(self) -> int:
        assert self._vectorizer is not None
        acq = self.pipeline.acquisition
        gap = max(0, math.ceil(acq.window_samples / acq.hop_samples) - 1)
        m = self.pipeline.model
        # Features missing in any window so far (no speed, a line off the spectrum) are dropped
        # at training, so they do not count here either.
        assert self._finite is not None
        d = int(self._finite.sum())
        return windows_needed(m.detector, d, m.holdout, gap)

    def _train(self, last: WindowFeatures) -> Model:
        assert self._vectorizer is not None
        x = np.stack(self.collected)
        keep = np.asarray(np.isfinite(x).all(axis=0), dtype=bool)
        names = tuple(n for n, k in zip(self._vectorizer.names, keep, strict=True) if k)
        ts = TrainingSet(
            pipeline=self.pipeline,
            fs=self.fs,
            names=names,
            per_file=[x[:, keep]],
            files=[
                {
                    "file": "teach-in (live stream)",
                    "sha256": None,
                    "windows": len(x),
                    "skipped_in_alarm": self.skipped_in_alarm,
                    "skipped_invalid": self.skipped_invalid,
                    "t_start": iso_time(self._t_first or last.window.t_start),
                    "t_end": iso_time(last.window.t_start),
                }
            ],
        )
        m = self.pipeline.model
        train(
            ts,
            self.out,
            detector=m.detector,
            alerts_per_week=m.alerts_per_week,
            holdout=m.holdout,
            seed=self.seed,
            command=f"teach-in of {self.span_s:g} s by pipeline {self.pipeline.source_path}",
        )
        return Model.load(self.out, self.pipeline, self.fs)
