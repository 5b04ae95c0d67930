"""Acknowledgements are bounded and a repeat writes nothing (issue 16, item 9).

`POST /ack` accepted unlimited repeats and 32 KB names with control characters: alarms.db grew
38 MB and history.db 27 MB in 3 s. The pure step, the engine (a real alarm store) and the
`pdm-edge ack` command (a subprocess against a real data directory) each refuse the size and
the characters, and a repeat on a latch already acknowledged records nothing.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_alarm_engine import Sink, _engine, _pipeline, _run
from test_alarm_state import RULES, run

from pdm.alarms.state import acknowledge, check_operator_text

REPO = Path(__file__).resolve().parents[2]


def test_a_repeat_on_an_acknowledged_latch_changes_nothing() -> None:
    state, _, _ = run([{"score": 2.0}] * 3)  # danger, not clear
    first, _, _ = acknowledge(state, "ana", 1, "bearing ordered", RULES)
    again, trs, msg = acknowledge(first, "mallory", 2, "x" * 400, RULES)
    assert again is first and trs == [] and "already acknowledged by ana" in msg


@pytest.mark.parametrize(
    ("by", "comment", "words"),
    [
        ("a" * 65, "", "'by' has 65 characters"),
        ("ana", "c" * 501, "'comment' has 501 characters"),
        ("ana\nroot", "", "'by' contains a control character"),
        ("ana", "x\x1b[2Jy", "'comment' contains a control character"),
        ("ana", "a\u2028b", "line break"),
        ("   ", "", "name of who acts"),
        # JSON "\ud800": taken, the worker's /status of the machine answered 500 from then on
        ("\ud800ana", "", "'by' is not valid Unicode"),
        ("ana", "ok \udfff", "'comment' is not valid Unicode"),
    ],
)
def test_operator_text_is_bounded_and_one_line(by: str, comment: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        check_operator_text(by, comment)


def test_the_engine_refuses_a_lone_surrogate_and_stays_latched(tmp_path: Path) -> None:
    pl = _pipeline("log:")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    _run(engine, pl, "outer_race.csv.gz", sink)
    assert engine.state is not None and engine.state.state == "trip"
    with pytest.raises(ValueError, match="lone surrogate"):
        engine.acknowledge("\ud800x", "")
    assert engine.state.ack is None and _rows(tmp_path / "alarms.db", "acks") == 0
    engine.acknowledge("ana", "")
    assert engine.state.ack is not None and _rows(tmp_path / "alarms.db", "acks") == 1
    engine.close()


def _rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_the_engine_records_an_acknowledgement_once(tmp_path: Path) -> None:
    pl = _pipeline("log:")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    _run(engine, pl, "outer_race.csv.gz", sink)
    assert engine.state is not None and engine.state.state == "trip"
    recs, _ = engine.acknowledge("ana", "ordered")
    assert recs
    acks = _rows(tmp_path / "alarms.db", "acks")
    for _ in range(50):
        recs, msg = engine.acknowledge("ana", "again")
        assert recs == [] and "already acknowledged" in msg
    assert _rows(tmp_path / "alarms.db", "acks") == acks
    engine.close()


def test_pdm_edge_ack_refuses_long_or_multiline_names_and_writes_a_repeat_once(
    tmp_path: Path,
) -> None:
    pl = _pipeline("log:")
    sink = Sink()
    engine = _engine(pl, tmp_path, sink)
    _run(engine, pl, "outer_race.csv.gz", sink)
    engine.close()

    def ack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pdm.cli", "ack", "demo-pump", "--data-dir", str(tmp_path),
             *args], capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip

    bad = ack("--by", "a" * 100)
    assert bad.returncode == 2 and bad.stderr.startswith("pdm-edge: error: --by/--comment:")
    assert ack("--by", "ana", "--comment", "two\nlines").returncode == 2
    assert ack("--by", "ana").returncode == 0
    acks = _rows(tmp_path / "alarms.db", "acks")
    again = ack("--by", "ana")
    assert again.returncode == 0 and "already acknowledged" in again.stdout
    assert _rows(tmp_path / "alarms.db", "acks") == acks
