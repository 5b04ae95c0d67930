"""One onnxruntime run for several machines' windows (the service's round): the same scores.

The committed demo model and the outer-race fixture (healthy start, then a fault: windows
below and above the alert threshold, explained and not). The session is the real
onnxruntime one, wrapped only to count its runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm.config import load_pipeline
from pdm.processing import FeatureStream, WindowFeatures, open_recording
from pdm.scoring.quiet import QUIET_Z, QuietScreen, below_baseline
from pdm.scoring.runtime import Model, WindowScorer, score_together

REPO = Path(__file__).resolve().parents[2]


class CountingSession:
    """The real session, counting its runs."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run(*args, **kwargs)

    def get_inputs(self) -> Any:
        return self.session.get_inputs()


@pytest.fixture(scope="module")
def demo() -> tuple[Any, list[WindowFeatures]]:
    pl = load_pipeline(REPO / "pipelines" / "demo.toml")
    rec, pl = open_recording(REPO / "fixtures" / "outer_race.csv.gz", pl)
    with rec:
        fs = FeatureStream(pl, rec.sample_rate_hz)
        windows = list(fs.feed(rec.chunks()))
    return (pl, rec.sample_rate_hz, fs.extractor.names), windows


def scorers(demo: Any, n: int, *, explain_all: bool) -> list[WindowScorer]:
    (pl, fs, names), _w = demo
    counting: CountingSession | None = None
    out = []
    for _ in range(n):
        model = Model.load(pl.model_dir, pl, fs)
        counting = counting or CountingSession(model.session)
        model.session = counting  # the same (shared) session for every machine, counted
        out.append(WindowScorer(model, pl.columns, names, explain_all=explain_all))
    return out


@pytest.mark.parametrize("explain_all", [False, True])
def test_windows_scored_together_score_as_alone(demo, explain_all) -> None:
    _setup, windows = demo
    picked = windows[::7]  # healthy and faulty windows
    alone = scorers(demo, 1, explain_all=explain_all)[0]
    want = [alone.score([wf])[0] for wf in picked]
    assert {s.state for s in want} >= {"ok", "danger"}  # both sides of the thresholds
    machines = scorers(demo, 3, explain_all=explain_all)
    session = machines[0].model.session
    parts = [(m, picked[i::3]) for i, m in enumerate(machines)]
    assert score_together(parts) == len(picked)
    assert session.runs == 1
    for m, ws in parts:
        # One window at a time, as the service decides them: no further run.
        got = [m.score([wf])[0] for wf in ws]
        assert got == [want[picked.index(wf)] for wf in ws]
    assert session.runs == 1
    # Primed results are used once: scoring the same windows again runs the model.
    m, ws = parts[0]
    assert [m.score([wf])[0] for wf in ws] == [want[picked.index(wf)] for wf in ws]
    assert session.runs == 1 + len(ws)


def test_invalid_and_other_windows_are_scored_by_the_model(demo) -> None:
    _setup, windows = demo
    a, b = scorers(demo, 2, explain_all=False)
    session = a.model.session
    bad_frame = windows[3].features
    bad_frame = dataclasses.replace(bad_frame, values=np.full_like(bad_frame.values, np.nan))
    bad = dataclasses.replace(windows[3], features=bad_frame)
    assert score_together([(a, [windows[1], bad]), (b, [windows[2]])]) == 2
    assert session.runs == 1
    got_bad = a.score([bad])[0]
    assert got_bad.valid is False and got_bad.score is None
    assert session.runs == 1  # an invalid window never reaches the model
    # A window that was not scored together (b was primed with windows[2], not [5]).
    alone = scorers(demo, 1, explain_all=False)[0]
    assert b.score([windows[5]]) == alone.score([windows[5]])
    assert session.runs == 2
    # The next priming forgets what was not taken: windows[2] is scored by the model now.
    assert score_together([(b, [windows[6], windows[7]])]) == 2
    assert b.score([windows[2]]) == alone.score([windows[2]])
    assert session.runs == 4


def test_nothing_to_share_and_different_sessions(demo) -> None:
    _setup, windows = demo
    (a,) = scorers(demo, 1, explain_all=False)
    assert score_together([]) == 0
    assert score_together([(a, [windows[1]])]) == 0  # one window: its own run later
    assert a.model.session.runs == 0
    (c,) = scorers(demo, 1, explain_all=False)  # a session of its own (another wrapper)
    with pytest.raises(ValueError, match="share one session"):
        score_together([(a, [windows[1]]), (c, [windows[2]])])


def test_quiet_screen_agrees_with_below_baseline() -> None:
    names = ["a.rms_g", "a.kurtosis", "a.velocity_rms_mm_s", "a.mean_g", "a.skewness", "b.peak_g"]
    screen = QuietScreen(names)
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 2.0, (400, len(names))).astype(np.float32)
    z[::5, [0, 2, 5]] = -QUIET_Z  # exactly at the limit: quiet
    z[1::5, [0, 2]] = -10.0  # two of three amplitude features: quiet
    z[2::5, [3, 4]] = -10.0  # only the non-amplitude ones low: not quiet
    z[3::5, 0] = np.nan
    z[3::5, 2] = -5.0
    z[4::10, 0] = -np.inf  # not finite: neither quiet nor counted
    z[9::10, [0, 2]] = -4.0  # two of three, one row at a time below
    want = below_baseline(z, screen.amplitude)
    assert screen(z) == want
    assert any(h is not None for h in want) and any(h is None for h in want)
    for row in z[:50]:
        assert screen(row[None]) == below_baseline(row[None], screen.amplitude)
