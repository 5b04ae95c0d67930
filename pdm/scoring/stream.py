"""Scoring a stream of windows, with teach-in when the model does not exist yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pdm.config import Pipeline
from pdm.core.time import to_ns
from pdm.diagnosis import DiagnosisEngine
from pdm.processing import WindowFeatures
from pdm.scoring.result import WindowScore
from pdm.scoring.runtime import Model, WindowScorer
from pdm.scoring.teachin import NEEDS_DECISION, TeachIn

__all__ = ["ScoreStream"]


class ScoreStream:
    """Turns groups of windows into scores; learns first if the pipeline says so.

    Parameters
    ----------
    pipeline, fs : the pipeline (completed with the recording) and sample rate
    model_dir : the model directory; when it holds no model and the pipeline sets
        ``model.teach_in_s``, the stream starts in learning mode
    available : feature names of the extractor (``FeatureStream.extractor.names``)
    explain_all : False to explain only windows at or above the alert threshold
        (:class:`~pdm.scoring.runtime.WindowScorer`)
    engine : the feature stream's diagnosis engine: from the model on, it judges lines over
        the machine's healthy spectra the model's card holds (docs/diagnosis.md)
    """

    def __init__(
        self,
        pipeline: Pipeline,
        fs: float,
        model_dir: Path,
        available: Sequence[str],
        *,
        explain_all: bool = True,
        engine: DiagnosisEngine | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.explain_all = explain_all
        self.engine = engine
        self.available = tuple(available)
        self.teach: TeachIn | None = None
        self.scorer: WindowScorer | None = None
        self.trained_here = False
        if not (model_dir / "model.json").exists() and pipeline.model.teach_in_s:
            self.teach = TeachIn(pipeline, fs, model_dir, pipeline.model.teach_in_s)
        else:
            self.scorer = self.scorer_for(Model.load(model_dir, pipeline, fs))

    def scorer_for(self, model: Model) -> WindowScorer:
        """A scorer of ``model`` for this stream (explaining as the stream was told); the
        diagnosis engine takes the model's healthy baseline."""
        if self.engine is not None:
            self.engine.set_baseline(model.baseline)
        return WindowScorer(
            model, self.pipeline.columns, self.available, explain_all=self.explain_all
        )

    @property
    def learning(self) -> bool:
        return self.scorer is None

    def teach_in_status(self) -> dict[str, Any] | None:
        """The teach-in's state for ``/status`` (None when not learning)."""
        return self.teach.status() if self.teach is not None and self.scorer is None else None

    def process(self, windows: Sequence[WindowFeatures]) -> list[dict[str, Any]]:
        """The JSON-ready ``pdm-edge score`` rows of :meth:`score` (:meth:`WindowScore.as_row`)."""
        return [s.as_row() for s in self.score(windows)]

    def score(self, windows: Sequence[WindowFeatures]) -> list[WindowScore]:
        """Scores of ``windows`` (time order): ``learning`` ones until the model exists, then
        the model's (:meth:`WindowScorer.score`).

        A score carries ``teach_in`` where the teach-in did something (a verdict on the
        windows, a restart, a request for a decision, the training; see
        :mod:`pdm.scoring.teachin`), and ``{"state": "teach_in_needs_decision"}`` on every
        learning window while it waits for an operator.
        """
        if self.scorer is not None:
            return self.scorer.score(windows)
        teach = self.teach
        assert teach is not None
        model, used = teach.offer(windows)
        waiting = {"state": NEEDS_DECISION} if teach.state == NEEDS_DECISION else None
        out = [
            WindowScore(to_ns(wf.window.t_start), wf.window.index, "learning", teach_in=waiting)
            for wf in windows[:used]
        ]
        notes = teach.pop_notes()
        if model is not None:
            self.scorer = self.scorer_for(model)
            self.trained_here = True
            out += self.scorer.score(windows[used:])
        if notes:
            out = [
                s if (note := notes.get(s.window)) is None else replace(s, teach_in=note)
                for s in out
            ]
        return out
