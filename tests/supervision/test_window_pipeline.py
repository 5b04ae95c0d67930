"""The one window path (pdm/supervision/window.py): score → records → alarms → submit.

The outer-race fixture through the demo pipeline and its model, into a real SQLite history
store through a real :class:`HistoryWriter`; what the path submits is also seen on the way
(a spy that forwards every call to the real writer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdm.config import load_pipeline
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
        assert d.submitted and d.detail and len(d.rows) == len(g)
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
