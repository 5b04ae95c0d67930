"""Scoring a stream of windows, with teach-in when the model does not exist yet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pdm.config import Pipeline
from pdm.processing import WindowFeatures, iso_time
from pdm.scoring.runtime import Model, WindowScorer
from pdm.scoring.teachin import TeachIn

__all__ = ["ScoreStream"]


class ScoreStream:
    """Turns groups of windows into score rows; learns first if the pipeline says so.

    Parameters
    ----------
    pipeline, fs : the pipeline (completed with the recording) and sample rate
    model_dir : the model directory; when it holds no model and the pipeline sets
        ``model.teach_in_s``, the stream starts in learning mode
    available : feature names of the extractor (``FeatureStream.extractor.names``)
    explain_all : False to explain only windows at or above the alert threshold
        (:class:`~pdm.scoring.runtime.WindowScorer`)
    """

    def __init__(
        self,
        pipeline: Pipeline,
        fs: float,
        model_dir: Path,
        available: Sequence[str],
        *,
        explain_all: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.explain_all = explain_all
        self.available = tuple(available)
        self.teach: TeachIn | None = None
        self.scorer: WindowScorer | None = None
        self.trained_here = False
        if not (model_dir / "model.json").exists() and pipeline.model.teach_in_s:
            self.teach = TeachIn(pipeline, fs, model_dir, pipeline.model.teach_in_s)
        else:
            self.scorer = self.scorer_for(Model.load(model_dir, pipeline, fs))

    def scorer_for(self, model: Model) -> WindowScorer:
        """A scorer of ``model`` for this stream (explaining as the stream was told)."""
        return WindowScorer(
            model, self.pipeline.columns, self.available, explain_all=self.explain_all
        )

    @property
    def learning(self) -> bool:
        return self.scorer is None

    def process(self, windows: Sequence[WindowFeatures]) -> list[dict[str, Any]]:
        """Rows for ``windows`` (time order): ``learning`` rows until the model exists, then scores."""
        rows: list[dict[str, Any]] = []
        if self.scorer is None:
            assert self.teach is not None
            model, used = self.teach.offer(windows)
            rows += [
                {
                    "t_start": iso_time(wf.window.t_start),
                    "window": wf.window.index,
                    "state": "learning",
                    "score": None,
                }
                for wf in windows[:used]
            ]
            if model is None:
                return rows
            self.scorer = self.scorer_for(model)
            self.trained_here = True
            windows = windows[used:]
        return rows + self.scorer.rows(windows)
