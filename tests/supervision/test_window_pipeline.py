"""The one window path (pdm/supervision/window.py): score → records → alarms → submit.

The outer-race fixture through the demo pipeline and its model, into a real SQLite history
store through a real :class:`HistoryWriter`; what the path submits is also seen on the way
(a spy that forwards every call to the real writer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pdm.config import load_pipeline
from pdm.core.events import AlarmEvent
from pdm.core.time import iso_time
from pdm.history import open_store, parse_store_url
from pdm.history.recorder import Recorder
from pdm.history.records import FeatureRows, Record, ScoreRows, StateChange, to_ns
from pdm.history.spool import Spool
from pdm.history.writer import HistoryWriter
from pdm.processing import FeatureStream, WindowFeatures, open_recording
from pdm.scoring.stream import ScoreStream
from pdm.supervision.engine import AlarmEngine
from pdm.supervision.store import AlarmStore
from pdm.supervision.window import WindowPipeline

REPO = Path(__file__).resolve().parents[2]


class _Spy:
    """Sees each submit (records and mark), then hands it to the real writer."""

    def __init__(self, writer: HistoryWriter) -> None:
        self.writer = writer
        self.calls: list[tuple[list[Record], int | None]] = []

    def submit(self, *records: Record, mark: int | None = None) -> None:
        self.calls.append((list(records), mark))
        self.writer.submit(*records, mark=mark)


def _groups(tmp_path: Path) -> tuple[WindowPipeline, list[list[WindowFeatures]], Any]:
    pl = load_pipeline(REPO / "pipelines" / "demo.toml")
    rec, pl = open_recording(REPO / "fixtures" / "outer_race.csv.gz", pl)
    with rec:
        features = FeatureStream(pl, rec.sample_rate_hz)
        assert pl.model_dir is not None
        scores = ScoreStream(pl, rec.sample_rate_hz, pl.model_dir, features.extractor.names)
        wfs = list(features.feed(rec.chunks()))
    url = parse_store_url(f"sqlite:///{tmp_path / 'history.db'}")
    writer = HistoryWriter(lambda: open_store(url), Spool(tmp_path / "spool.db"))
    recorder = Recorder(pl)
    engine = AlarmEngine(pl, AlarmStore(tmp_path / "alarms.db"), writer.submit, recorder, tmp_path)
    spy = _Spy(writer)
    path = WindowPipeline(features, scores, recorder, engine, spy)
    groups = [wfs[i : i + 8] for i in range(0, len(wfs), 8)]
    return path, groups, (spy, writer, url)


def test_each_group_is_scored_recorded_decided_and_submitted_in_that_order(
    tmp_path: Path,
) -> None:
    path, groups, (spy, writer, url) = _groups(tmp_path)
    steps: list[str] = []
    path.observe = lambda stage, s: steps.append(stage)
    trips = []
    for g in groups:
        d = path.process(
            g,
            on_scored=lambda rows: steps.append(f"scored {len(rows)}"),
            on_decided=lambda: steps.append(f"decided, {len(spy.calls)} submitted"),
        )
        assert d.submitted and d.detail and len(d.scores) == len(g)
        records, mark = spy.calls[-1]
        assert mark == to_ns(g[-1].window.t_start)  # the replay's durable mark
        assert records == d.records
        # the group's rows first, then what the alarm engine made
        assert records[len(records) - len(d.decided) :] == d.decided
        assert isinstance(records[0], FeatureRows) and isinstance(records[1], ScoreRows)
        if d.transition:
            trips += [r.new for r in d.decided if isinstance(r, StateChange)]
    assert trips == ["danger", "trip"]  # the outer race: danger at window 51, trip at 55
    # scored (the rows seen before anything acts on them), decided, then submitted
    assert steps == [
        s
        for i, g in enumerate(groups)
        for s in (f"scored {len(g)}", "score", "alarms", f"decided, {i} submitted", "history")
    ]
    assert writer.drain(10.0)
    writer.close()
    with open_store(url) as store:
        changes = store.log(None, kinds=("states",))
    assert len(changes) == 2


def test_windows_before_a_checkpoint_are_neither_decided_nor_submitted(tmp_path: Path) -> None:
    path, groups, (spy, writer, _url) = _groups(tmp_path)
    assert path.engine.state is not None
    for g in groups[:8]:  # windows 0-63: past the trip at window 55
        d = path.process(g, write=False)
        assert not d.submitted and not d.decided and d.records
    assert spy.calls == [] and path.engine.state.state == "ok"
    writer.close()


def test_rows_not_kept_are_left_out_but_a_transitions_rows_stay(tmp_path: Path) -> None:
    path, groups, (_spy, writer, _url) = _groups(tmp_path)
    kept = []
    for g in groups:
        d = path.process(g, keep_rows=lambda rows: False)
        assert not d.detail
        has_rows = any(isinstance(r, FeatureRows) for r in d.records)
        assert has_rows == d.transition
        kept.append(has_rows)
    assert kept.count(True) == 1  # windows 48-55: danger at 51, trip at 55
    writer.close()


def test_scores_stay_unrounded_inside_and_are_rounded_where_they_are_written(
    tmp_path: Path,
) -> None:
    """The path carries each window's score as the model made it (a float, the time in
    integer ns); history's score rows and state changes, the alarm event and the JSON row
    write it to 6 decimals, the time as ISO text."""
    path, groups, (_spy, writer, _url) = _groups(tmp_path)
    events: list[AlarmEvent] = []
    path.engine.listeners.append(events.append)
    inside: dict[int, float] = {}
    written: list[float] = []
    changes: list[StateChange] = []
    for g in groups:
        d = path.process(g)
        for s, wf in zip(d.scores, g, strict=True):
            assert s.t_ns == to_ns(wf.window.t_start)
            assert s.as_row()["t_start"] == iso_time(wf.window.t_start)
            if s.score is not None:
                inside[s.t_ns] = s.score
                assert s.as_row()["score"] == round(s.score, 6)
        for r in d.records:
            if isinstance(r, ScoreRows):
                written += r.score[np.isfinite(r.score)].tolist()
            elif isinstance(r, StateChange) and not r.sensor:
                changes.append(r)
    assert sum(v != round(v, 6) for v in inside.values()) > len(inside) // 2  # the model's own
    assert written == [round(v, 6) for v in inside.values()]
    assert [c.score for c in changes] == [round(inside[c.t_ns], 6) for c in changes]
    assert [e.score for e in events] == [c.score for c in changes] and len(events) == 2
    writer.close()
