"""Dashboard workflows: operator PINs, acknowledging, commissioning (what-if, report), pages."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm import operators as pin
from pdm.config import load_pipeline
from pdm.dashboard import alarms, commissioning, uploads
from pdm.dashboard.context import DashboardContext
from pdm.errors import ConfigError, PdmError
from pdm.history import parse_store_url
from pdm.history.records import StateChange
from pdm.service.api import ControlAPI
from pdm.supervision.store import AlarmStore

pytest.importorskip("streamlit")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
DEMO = REPO / "pipelines" / "demo.toml"
#: The committed demo model's version (12 hex of its ONNX's SHA-256) and danger threshold, as
#: its card holds them: regenerating the model (docs/models.md) changes both.
DEMO_MODEL = REPO / "models" / "demo-pump"
DEMO_VERSION = hashlib.sha256((DEMO_MODEL / "model.onnx").read_bytes()).hexdigest()[:12]
DEMO_DANGER = json.loads((DEMO_MODEL / "model.json").read_text())["score"]["danger"]


def _ctx(data_dir: Path, **kw: Any) -> DashboardContext:
    url = parse_store_url(f"sqlite:///{(data_dir / 'history.db').resolve()}")
    return DashboardContext(url, data_dir, {"demo-pump": load_pipeline(DEMO)}, **kw)


def _tripped_copy(tmp_path: Path) -> Path:
    """A data dir of its own whose live state is trip (nobody acknowledged it yet): the
    outer-race fixture replayed with live actions."""
    d = tmp_path / "live"
    subprocess.run(
        [
            *(sys.executable, "-m", "pdm.cli", "replay", str(FIXTURES / "outer_race.csv.gz")),
            *("-p", str(DEMO), "--data-dir", str(d), "--actions", "live"),
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    return d


@pytest.fixture(scope="module")
def tripped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose live state is trip, shared by the module's tests."""
    return _tripped_copy(tmp_path_factory.mktemp("live"))


class _AckService:
    """The control API's backend for a data dir whose service is stopped: it acknowledges as
    ``pdm-edge ack`` does (state store, history, outboxes) and reports the stored states.
    The dashboard reaches it through a real :class:`~pdm.service.api.ControlAPI` over HTTP:
    the dashboard itself writes no store (docs/dashboard.md)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.store_url = parse_store_url(f"sqlite:///{(data_dir / 'history.db').resolve()}")

    def status(self) -> list[dict[str, Any]]:
        from pdm.core.time import iso_time
        from pdm.dashboard.status import read_local_store

        out: list[dict[str, Any]] = []
        path = self.data_dir / "alarms.db"
        for s in read_local_store(path).values() if path.exists() else ():
            ack = None
            if s.ack_by and s.ack_ns:
                ack = {"by": s.ack_by, "at": iso_time(s.ack_ns / 1e9), "comment": s.ack_comment}
            since = iso_time(s.since_ns / 1e9) if s.since_ns else None
            out.append({"id": s.machine, "state": s.state, "since": since, "acknowledged": ack})
        return out

    def health(self) -> dict[str, Any]:
        return {"ok": True, "reasons": []}

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        from pdm.supervision.ack import ack

        if machine not in {d["id"] for d in self.status()}:
            raise KeyError(machine)
        return ack(machine, by, comment, self.data_dir, self.store_url).removeprefix(f"{machine}: ")

    def metrics(self) -> str:
        return ""


API_TOKEN = "a" * 24


@pytest.fixture(scope="module")
def outer_race() -> commissioning.CommissioningResult:
    return commissioning.run_commissioning(FIXTURES / "outer_race.csv.gz", load_pipeline(DEMO))


# --- PINs ----------------------------------------------------------------------------------------


def test_pin_set_verify_wrong(tmp_path: Path) -> None:
    pin.set_pin(tmp_path, "alice", "471100")
    pin.set_pin(tmp_path, "bob", "s3cret-pass")
    assert pin.verify_pin(tmp_path, "alice", "471100")
    assert pin.verify_pin(tmp_path, " alice ", "471100")
    assert not pin.verify_pin(tmp_path, "alice", "471200")
    assert not pin.verify_pin(tmp_path, "alice", "")
    assert not pin.verify_pin(tmp_path, "carol", "471100")
    assert pin.verify_pin(tmp_path, "bob", "s3cret-pass")
    path = tmp_path / "operators.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    data = json.loads(text)["operators"]
    # No field holds a PIN (a substring test could match a random hex salt by chance).
    stored = [str(v) for rec in data.values() for v in rec.values()]
    assert "471100" not in stored and "s3cret-pass" not in stored and "s3cret" not in text
    assert data["alice"]["salt"] != data["bob"]["salt"]
    pin.set_pin(tmp_path, "alice", "999900")  # changed
    assert not pin.verify_pin(tmp_path, "alice", "471100")
    assert pin.verify_pin(tmp_path, "alice", "999900")
    with pytest.raises(Exception, match="at least"):
        pin.set_pin(tmp_path, "alice", "12")
    assert not pin.verify_pin(tmp_path / "nowhere", "alice", "999900")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe{}", "the operators file is unreadable"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"operators": []}', "operators is not an object"),
    ],
    ids=["not-utf8", "deep", "operators-a-list"],
)
def test_a_damaged_operators_file_is_one_line(tmp_path: Path, data: bytes, says: str) -> None:
    """Found by the files red team: not UTF-8 and nested too deep were tracebacks of
    `pdm-edge operators list`; the dashboard's PIN check refuses every PIN."""
    (tmp_path / "operators.json").write_bytes(data)
    with pytest.raises(ConfigError, match=says):
        pin.list_operators(tmp_path)
    assert not pin.verify_pin(tmp_path, "alice", "471100")


def test_an_entry_with_scrypt_parameters_beyond_ours_is_no_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """maxmem bounds scrypt's n and r, not p: {"p": 1000000} made each PIN check of the
    dashboard take ~14 hours of CPU (50 ms a lane). Such an entry matches no PIN, and is
    never hashed."""
    pin.set_pin(tmp_path, "alice", "471100")
    path = tmp_path / "operators.json"
    doc = json.loads(path.read_text())
    doc["operators"]["alice"]["scrypt"] = {"n": 1 << 14, "r": 8, "p": 1_000_000}
    path.write_text(json.dumps(doc))
    real = pin._hash

    def hash_within_ours(p_in: str, salt: bytes, n: int = 1 << 14, r: int = 8, p: int = 1) -> bytes:
        assert p <= 4, f"scrypt asked to run {p} lanes"
        return real(p_in, salt, n, r, p)

    monkeypatch.setattr(pin, "_hash", hash_within_ours)
    assert not pin.verify_pin(tmp_path, "alice", "471100")


def test_pin_same_pin_different_hash(tmp_path: Path) -> None:
    pin.set_pin(tmp_path, "a", "123456")
    pin.set_pin(tmp_path, "b", "123456")
    ops = json.loads((tmp_path / "operators.json").read_text())["operators"]
    assert ops["a"]["hash"] != ops["b"]["hash"]


def test_operators_main_reads_stdin_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("246800\n246800\n"))
    assert pin.operators_main(["--data-dir", str(tmp_path), "add", "dana"]) == 0
    assert pin.verify_pin(tmp_path, "dana", "246800")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1111\n2222\n"))
    assert pin.operators_main(["--data-dir", str(tmp_path), "add", "dana"]) == 2
    assert pin.verify_pin(tmp_path, "dana", "246800")  # unchanged
    assert pin.operators_main(["--data-dir", str(tmp_path), "remove", "dana"]) == 0
    assert not pin.verify_pin(tmp_path, "dana", "246800")


def _wrong(d: Path, name: str, n: int, now: float) -> list[pin.PinCheck]:
    return [pin.check_pin(d, name, "000000", now=now) for _ in range(n)]


def test_five_wrong_pins_lock_the_operator_for_a_growing_time(tmp_path: Path) -> None:
    """Issue 16, item 8: a 1 s sleep per Streamlit session was the only brake."""
    pin.set_pin(tmp_path, "alice", "471100")
    t = 1_000_000.0
    first = _wrong(tmp_path, "alice", pin.MAX_FAILURES, t)
    assert [c.ok or c.locked_s for c in first] == [False] * pin.MAX_FAILURES  # all tried
    locked = pin.check_pin(tmp_path, "alice", "471100", now=t + 1)  # the right PIN, too late
    assert not locked.ok and locked.locked_s == pytest.approx(pin.LOCK_BASE_S - 1)
    assert "locked for 59 s after 5 wrong PINs in a row" in locked.message
    assert pin.check_pin(tmp_path, "alice", "471100", now=t + pin.LOCK_BASE_S + 1).ok
    # A right PIN ended the series; five more wrong ones lock for the base time again...
    t2 = t + 1000
    _wrong(tmp_path, "alice", pin.MAX_FAILURES, t2)
    assert pin.check_pin(tmp_path, "alice", "x", now=t2 + 1).locked_s == pytest.approx(59)
    # ...and a second lock in a row (no right PIN between) lasts twice as long, then 4x.
    t3 = t2 + pin.LOCK_BASE_S + 1
    _wrong(tmp_path, "alice", pin.MAX_FAILURES, t3)
    assert pin.check_pin(tmp_path, "alice", "x", now=t3).locked_s == pytest.approx(120)
    t4 = t3 + 121
    _wrong(tmp_path, "alice", pin.MAX_FAILURES, t4)
    assert pin.check_pin(tmp_path, "alice", "x", now=t4).locked_s == pytest.approx(240)
    # The lock is in the data dir, not in the session: a new "session" sees it.
    assert (tmp_path / pin.LOCKOUT_FILE).exists()
    assert stat.S_IMODE((tmp_path / pin.LOCKOUT_FILE).stat().st_mode) == 0o600
    assert not pin.check_pin(tmp_path, "alice", "471100", now=t4 + 200).ok
    assert pin.operators_main(["--data-dir", str(tmp_path), "unlock", "alice"]) == 0
    assert pin.check_pin(tmp_path, "alice", "471100", now=t4 + 200).ok


def test_unknown_names_lock_alike_and_others_are_not_locked(tmp_path: Path) -> None:
    pin.set_pin(tmp_path, "alice", "471100")
    pin.set_pin(tmp_path, "bob", "135700")
    t = 5_000.0
    _wrong(tmp_path, "mallory", pin.MAX_FAILURES, t)
    _wrong(tmp_path, "alice", pin.MAX_FAILURES, t)
    a, m = (
        pin.check_pin(tmp_path, "alice", "1", now=t),
        pin.check_pin(tmp_path, "mallory", "1", now=t),
    )
    assert a.locked_s == m.locked_s > 0 and a.message.replace("alice", "mallory") == m.message
    assert pin.check_pin(tmp_path, "bob", "135700", now=t).ok


_HAMMER = """
import sys
from pathlib import Path
from pdm import operators as pin
tried = sum(not pin.check_pin(Path(sys.argv[1]), "alice", "000000").locked_s for _ in range(12))
print(tried)
"""


def test_parallel_processes_share_the_lockout(tmp_path: Path) -> None:
    """Three processes guess at once (three dashboards, or sessions): between them they get
    MAX_FAILURES tries, not MAX_FAILURES each, because each attempt is counted in one
    SQLite write transaction before its PIN is checked."""
    pin.set_pin(tmp_path, "alice", "471100")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(3)
    ]
    tried = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(tried) == pin.MAX_FAILURES, tried


def test_the_lockout_fails_closed(tmp_path: Path) -> None:
    pin.set_pin(tmp_path, "alice", "471100")
    (tmp_path / pin.LOCKOUT_FILE).unlink()
    (tmp_path / pin.LOCKOUT_FILE).mkdir()  # cannot be opened as a database
    got = pin.check_pin(tmp_path, "alice", "471100")
    assert not got.ok and got.message.startswith("PIN not checked: ")


def test_new_pins_need_six_characters_and_old_short_ones_are_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("12345\n12345\n"))
    assert pin.operators_main(["--data-dir", str(tmp_path), "add", "erin"]) == 2
    assert "at least 6 characters" in capsys.readouterr().err
    pin.set_pin(tmp_path, "new", "135700")
    # An operator set before the 6-character rule (4 digits, no min_length): still works.
    path = tmp_path / "operators.json"
    data = json.loads(path.read_text())
    salt = bytes(16)
    data["operators"]["old"] = {
        "scrypt": {"n": 2**14, "r": 8, "p": 1},
        "salt": salt.hex(),
        "hash": hashlib.scrypt(b"4711", salt=salt, n=2**14, r=8, p=1, dklen=32).hex(),
        "set": "2026-01-01T00:00:00Z",
    }
    path.write_text(json.dumps(data))
    assert pin.operators_main(["--data-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["new", "old  (may be short: set under the old 4-character rule; set a new one)"]
    checked = pin.check_pin(tmp_path, "old", "4711")
    assert checked.ok and checked.short
    assert pin.operators_main(["--data-dir", str(tmp_path), "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("old  (short PIN: fewer than 6")


# --- acknowledging -------------------------------------------------------------------------------


def test_acknowledge_through_the_control_api_writes_the_state_store(tripped: Path) -> None:
    from pdm.service.api import ControlAPI

    api = ControlAPI(_AckService(tripped), port=0, token=API_TOKEN, timeout_s=5.0)  # type: ignore[arg-type]
    with api:
        ctx = _ctx(tripped, api_url=f"http://127.0.0.1:{api.port}", api_token=API_TOKEN)
        assert alarms.latched_machines(ctx) == [("demo-pump", "trip")]
        pin.set_pin(tripped, "alice", "471100")

        bad = alarms.acknowledge(ctx, "demo-pump", "alice", "000000", "checked")
        assert not bad.ok and "PIN" in bad.message
        with AlarmStore(tripped / "alarms.db") as store:
            state = store.load("demo-pump")
            assert state is not None and state.ack is None

        res = alarms.acknowledge(ctx, "demo-pump", "alice", "471100", "bearing inspected")
        assert res.ok, res.message
        # Acknowledged: the form no longer offers the machine (still latched until it clears).
        assert alarms.latched_machines(ctx) == []
    assert res.message.startswith("demo-pump: trip acknowledged")
    with AlarmStore(tripped / "alarms.db") as store:
        state = store.load("demo-pump")
        assert state is not None and state.ack is not None
        assert state.ack.by == "alice" and state.ack.comment == "bearing inspected"
        acks = store._db.execute("SELECT machine, by, comment FROM acks").fetchall()
    assert acks == [("demo-pump", "alice", "bearing inspected")]
    # …and history got the acknowledge event; the log shows it first.
    rows = alarms.log_rows(ctx, "demo-pump")
    assert rows[0]["what"].startswith("acknowledge")
    assert "alice" in rows[0]["detail"]
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    assert {r["kind"] for r in rows} >= {"state change", "event", "action", "capture"}
    only_states = alarms.log_rows(ctx, "demo-pump", ["states"])
    assert [r["what"] for r in only_states] == ["danger → trip", "ok → danger"]
    # A relay drop reads as what it does, not "ok".
    relay = [r["what"] for r in rows if r["what"].startswith("relay")]
    assert "relay: dropped (machine stopped) — dry run, only logged" in relay
    assert "relay: ok" not in relay
    # The alarm list: one row, raised at danger, escalated to trip, acknowledged by alice.
    with ctx.store() as store:
        found = alarms.alarm_rows(store.log(None, kinds=("states", "events")))
    assert len(found) == 1
    (a,) = found
    assert (a.level, a.top, a.last_state) == ("danger", "trip", "trip")
    assert [to for _t, to in a.escalations] == ["trip"]
    assert a.ack_by == "alice" and a.ack_comment == "bearing inspected" and not a.needs_ack
    assert a.active and a.cleared_ns is None
    (row,) = alarms.alarm_table(found, ctx.pipelines)
    assert row["alarm"] == "TRIP" and row["acknowledged"].startswith("alice at ")
    assert row["status"] == "active (trip)" and row["comment"] == "bearing inspected"
    # Scores read as numbers people read, never in exponent notation.
    assert "e+0" not in row["reason"] and re.search(r"anomaly score [\d,]+ ≥", row["reason"])


def test_acknowledge_without_a_control_api_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    d = _tripped_copy(tmp_path)
    pin.set_pin(d, "alice", "471100")
    with AlarmStore(d / "alarms.db") as store:
        before = store.load("demo-pump")
    with _ctx(d).store() as history:
        logged = len(history.log(None, kinds=("states", "events")))
    res = alarms.acknowledge(_ctx(d), "demo-pump", "alice", "471100", "seen")
    assert not res.ok and res.message == alarms.NO_API
    assert "--api" in res.message and "pdm-edge ack" in res.message
    assert "\n" not in res.message
    with AlarmStore(d / "alarms.db") as store:
        after = store.load("demo-pump")
        assert store._db.execute("SELECT COUNT(*) FROM acks").fetchone() == (0,)
    assert before is not None and after is not None and after.ack is None
    assert after.to_json() == before.to_json()
    with _ctx(d).store() as history:
        assert len(history.log(None, kinds=("states", "events"))) == logged


def test_acknowledge_unknown_machine(tmp_path: Path) -> None:
    pin.set_pin(tmp_path, "alice", "471100")
    api = ControlAPI(_AckService(tmp_path), port=0, token=API_TOKEN, timeout_s=5.0)  # type: ignore[arg-type]
    with api:
        ctx = _ctx(tmp_path, api_url=f"http://127.0.0.1:{api.port}", api_token=API_TOKEN)
        res = alarms.acknowledge(ctx, "nope", "alice", "471100")
    assert not res.ok and "404" in res.message
    assert "\n" not in res.message


def test_acknowledge_through_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    seen: dict[str, Any] = {}

    def fake_post(url: str, **kw: Any) -> httpx.Response:
        seen.update(url=url, **kw)
        return httpx.Response(
            200,
            json={"machine": "demo-pump", "message": "trip acknowledged by alice"},
            request=httpx.Request("POST", url),
        )

    monkeypatch.setattr(httpx, "post", fake_post)
    pin.set_pin(tmp_path, "alice", "471100")
    ctx = _ctx(tmp_path, api_url="http://127.0.0.1:8470/", api_token="t" * 20)
    res = alarms.acknowledge(ctx, "demo-pump", "alice", "471100", "ok")
    assert res.ok and res.message == "demo-pump: trip acknowledged by alice"
    assert seen["url"] == "http://127.0.0.1:8470/ack/demo-pump"
    assert seen["headers"]["Authorization"] == "Bearer " + "t" * 20
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["content"]) == {"by": "alice", "comment": "ok"}
    assert seen["timeout"] > 0
    # Wrong PIN: the API is never called.
    seen.clear()
    assert not alarms.acknowledge(ctx, "demo-pump", "alice", "1").ok
    assert not seen


# --- commissioning -------------------------------------------------------------------------------


def test_commissioning_replay_finds_the_trip(outer_race: commissioning.CommissioningResult) -> None:
    r = outer_race
    assert r.windows == 147 and r.model == DEMO_VERSION
    assert [(t["from"], t["to"], t["window"]) for t in r.transitions] == [
        ("ok", "danger", 51),
        ("danger", "trip", 55),
    ]
    assert r.alert == 1.0 and r.danger == DEMO_DANGER
    assert {(s["channel"], s["type"]) for s in r.spectra} == {
        ("x_g", "power"),
        ("x_g", "envelope"),
        ("y_g", "power"),
        ("y_g", "envelope"),
    }
    assert r.top_diagnosis() == "bearing_outer_race"


def test_whatif_reproduces_the_replay(outer_race: commissioning.CommissioningResult) -> None:
    wi = commissioning.whatif_for(outer_race)
    assert [(t["from"], t["to"], t["window"]) for t in wi.transitions] == [
        (t["from"], t["to"], t["window"]) for t in outer_race.transitions
    ]
    assert wi.alarms_raised == 1 and wi.final_state == "trip"


def test_whatif_one_of_one_matches_a_hand_count(
    outer_race: commissioning.CommissioningResult,
) -> None:
    s = outer_race.score
    over = np.isfinite(s) & (s >= 1.0)
    runs = int(over[0]) + int(np.sum(over[1:] & ~over[:-1]))  # rising edges
    # 1 of 1, off-delay 1, no hysteresis, danger and trip out of reach: the state is alert
    # exactly in the windows whose score reaches the alert threshold.
    import dataclasses

    res = dataclasses.replace(
        outer_race, rules=dataclasses.replace(outer_race.rules, hysteresis=1.0)
    )
    wi = commissioning.whatif_for(res, danger_mult=1e9, on_windows=1, of_windows=1, off_windows=1)
    assert wi.windows_over["alert"] == int(over.sum()) == wi.windows_by_state["alert"]
    assert wi.alarms_raised == runs
    assert wi.windows_over["danger"] == 0 and wi.final_state in ("ok", "alert")
    assert [st == "alert" for st in wi.states] == over.tolist()
    # Pure numbers, checked by hand: scores 0.5, 1.2, 1.1, 0.3, 2.0 → 3 windows, 2 alarms.
    from pdm.alarms.state import AlarmRules

    rules = AlarmRules(off_windows=1, hysteresis=1.0, score_trip=None)
    small = commissioning.whatif(
        [0.5, 1.2, 1.1, 0.3, 2.0],
        range(5),
        range(5),
        alert=1.0,
        danger=None,
        rules=rules,
        on_windows=1,
        of_windows=1,
    )
    assert small.windows_over["alert"] == 3 and small.alarms_raised == 2
    # Alert ×2 leaves one window over the alert threshold (2.0 ≥ 2.0).
    double = commissioning.whatif(
        [0.5, 1.2, 1.1, 0.3, 2.0],
        range(5),
        range(5),
        alert=1.0,
        danger=None,
        rules=rules,
        alert_mult=2.0,
        on_windows=1,
        of_windows=1,
    )
    assert double.windows_over["alert"] == 1 and double.alarms_raised == 1
    # 2 of 3: the single spikes no longer raise anything once apart.
    strict = commissioning.whatif(
        [1.2, 0.1, 0.1, 1.3, 0.1, 0.1],
        range(6),
        range(6),
        alert=1.0,
        danger=None,
        rules=rules,
        on_windows=2,
        of_windows=3,
    )
    assert strict.alarms_raised == 0


@pytest.mark.parametrize(
    ("scores", "states", "alert_mult", "alert_windows", "raised"),
    [
        # Two windows the diagnosis raised (stored "alert" under the threshold): one alarm.
        ([0.3, 0.4, 0.5, 0.4, 0.2], ["ok", "alert", "alert", "ok", "ok"], 1.0, 2, 1),
        # The flag holds whatever the thresholds: alert ×3 leaves the raised windows alerting.
        ([0.3, 0.4, 0.5, 0.4, 0.2], ["ok", "alert", "alert", "ok", "ok"], 3.0, 2, 1),
        # A score alert is not a diagnosis flag: alert ×2 silences it (its flag is unknown).
        ([0.3, 1.4, 1.5, 0.4, 0.2], ["ok", "alert", "alert", "ok", "ok"], 2.0, 0, 0),
        # No stored alert under the threshold: nothing raised by the diagnosis.
        ([0.3, 0.4, 0.5, 0.4, 0.2], ["ok"] * 5, 1.0, 0, 0),
    ],
)
def test_whatif_keeps_the_alerts_a_named_bearing_defect_raised(
    scores: list[float], states: list[str], alert_mult: float, alert_windows: int, raised: int
) -> None:
    from pdm.alarms.state import AlarmRules
    from pdm.dashboard.whatif import raised_by_diagnosis

    flags = raised_by_diagnosis(states, scores, 1.0)
    rules = AlarmRules(off_windows=1, hysteresis=1.0, score_trip=None)
    wi = commissioning.whatif(
        scores, range(5), range(5), alert=1.0, danger=None, rules=rules, alert_mult=alert_mult,
        on_windows=1, of_windows=1, bearing_defect=flags,
    )  # fmt: skip
    assert wi.windows_over["alert"] == alert_windows and wi.alarms_raised == raised
    assert wi.states.count("alert") == alert_windows


def test_bad_upload_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a_g,b_g\n0.1,0.2\n" * 10)
    with pytest.raises(Exception) as err:
        commissioning.run_commissioning(bad, load_pipeline(DEMO))
    from pdm.errors import PdmError

    assert isinstance(err.value, PdmError)
    assert "\n" not in str(err.value) and "bad.csv" in str(err.value)


# --- commissioning uploads: an operator, bounded replays, temporary folders always removed -------


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TMPDIR for the dashboard's temporary folders (uploads, replay stores)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return uploads.temp_root()


def _children() -> set[int]:
    out: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        out |= {int(p) for p in (task / "children").read_text().split()}
    return out


def test_a_replay_that_overruns_is_killed_and_leaves_nothing(temp_root: Path) -> None:
    before = _children()
    t = time.monotonic()
    with pytest.raises(PdmError, match=r"outer_race.csv.gz: the replay took longer than 0.3 s"):
        commissioning.run_commissioning(
            FIXTURES / "outer_race.csv.gz", load_pipeline(DEMO), timeout_s=0.3
        )
    assert time.monotonic() - t < 10
    assert _children() == before  # killed and reaped
    assert list(temp_root.iterdir()) == []  # its store went with it


def test_a_replay_stops_when_its_session_goes(
    temp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamlit stops a session's script by raising in its next Streamlit call: the
    page's keep_going is one, and the replay's process group is killed on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def spy(*a: Any, **kw: Any) -> subprocess.Popen[bytes]:
        started.append(real(*a, **kw))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", spy)  # what the replay runs its child with

    class SessionGone(BaseException):  # like streamlit's StopException: not an Exception
        pass

    def keep_going(elapsed: float) -> None:
        if elapsed > 0.5:
            raise SessionGone

    with pytest.raises(SessionGone):
        commissioning.run_commissioning(
            FIXTURES / "outer_race.csv.gz", load_pipeline(DEMO), keep_going=keep_going
        )
    (proc,) = started
    assert proc.returncode == -signal.SIGKILL
    assert list(temp_root.iterdir()) == []


def test_replays_that_end_well_or_badly_leave_no_folder(temp_root: Path) -> None:
    res = commissioning.run_commissioning(FIXTURES / "healthy.csv.gz", load_pipeline(DEMO))
    assert res.windows > 0
    bad = temp_root.parent / "bad.csv"
    bad.write_text("a_g,b_g\n0.1,0.2\n" * 10)
    with pytest.raises(PdmError):
        commissioning.run_commissioning(bad, load_pipeline(DEMO))
    assert list(temp_root.iterdir()) == []


def test_stale_temporary_folders_are_swept(temp_root: Path) -> None:
    old, fresh = temp_root / "upload-old", temp_root / "commission-fresh"
    for d in (old, fresh):
        d.mkdir()
        (d / "x.csv").write_text("x")
    stale = time.time() - uploads.STALE_AFTER_S - 60
    os.utime(old, (stale, stale))
    assert uploads.sweep_stale() == 1
    assert not old.exists() and fresh.exists()


def test_an_upload_folder_goes_with_its_session(temp_root: Path) -> None:
    import gc

    folder = uploads.UploadFolder()
    (folder.path / "rec.csv").write_text("x")
    path = folder.path
    state = {"com_upload_dir": folder}
    del folder
    state.clear()  # Streamlit drops the session's state
    gc.collect()
    assert not path.exists()


def test_uploads_need_a_signed_in_operator(tmp_path: Path, temp_root: Path) -> None:
    """Issue 16, item 10: uploads (≤ 200 MB, replayed up to 900 s) needed no operator."""
    import gc

    data = tmp_path / "data"
    data.mkdir()
    pin.set_pin(data, "ana", "246800")
    at = _app(tmp_path, "commissioning", data).run()
    at.radio(key="com_source").set_value("upload").run()
    assert not at.exception and not at.get("file_uploader")  # nothing to upload into yet
    at.text_input(key="com_op_name").input("ana")
    at.text_input(key="com_op_pin").input("111111")
    at.button[0].click().run()
    assert any("wrong operator name or PIN; not signed in" in e.value for e in at.error)
    assert not at.get("file_uploader")
    at.text_input(key="com_op_name").input("ana")
    at.text_input(key="com_op_pin").input("246800")
    at.button[0].click().run()
    assert not at.exception
    (up,) = at.get("file_uploader")
    assert "at most 200 MB" in up.label
    rec = (FIXTURES / "healthy.csv.gz").read_bytes()
    up.set_value(("healthy.csv.gz", rec, "application/gzip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (folder,) = temp_root.iterdir()
    assert folder.name.startswith("upload-") and (folder / "healthy.csv.gz").exists()
    at.button(key="com_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(m.label == "Windows" for m in at.metric)
    assert [p.name for p in temp_root.iterdir()] == [folder.name]  # the replay's store is gone
    del at, up
    gc.collect()  # the session is dropped: its upload goes
    assert list(temp_root.iterdir()) == []


# --- the pages, rendered -------------------------------------------------------------------------

_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from pdm.config import load_pipeline
from pdm.dashboard.context import DashboardContext
from pdm.history import parse_store_url
from pdm.history.records import StateChange
from pdm.dashboard import {module} as page

data_dir = Path({data_dir!r})
ctx = DashboardContext(
    parse_store_url("sqlite:///" + str((data_dir / "history.db").resolve())),
    data_dir,
    {{"demo-pump": load_pipeline({demo!r})}},
    api_url={api!r},
    api_token={token!r},
)
page.render(ctx)
"""


def _app(
    tmp_path: Path, module: str, data_dir: Path, api: str | None = None, token: str | None = None
) -> Any:
    from streamlit.testing.v1 import AppTest

    script = tmp_path / f"page_{module}.py"
    script.write_text(
        textwrap.dedent(
            _SCRIPT.format(
                repo=str(REPO),
                module=module,
                data_dir=str(data_dir),
                demo=str(DEMO),
                api=api,
                token=token,
            )
        )
    )
    return AppTest.from_file(str(script), default_timeout=60)


def test_page_alarms_lists_acknowledges_and_stops_offering(tmp_path: Path) -> None:
    d = _tripped_copy(tmp_path)
    api = ControlAPI(_AckService(d), port=0, token=API_TOKEN, timeout_s=5.0)  # type: ignore[arg-type]
    with api:
        _page_alarms_acknowledges(tmp_path, d, f"http://127.0.0.1:{api.port}")


def _page_alarms_acknowledges(tmp_path: Path, d: Path, url: str) -> None:
    at = _app(tmp_path, "alarms", d, url, API_TOKEN).run()
    assert not at.exception
    # The state now, from the service: TRIP, unacknowledged; never a green all-clear.
    now = "\n".join(m.value for m in at.markdown)
    assert 'class="unack"' in now and ">TRIP</b>" in now and "UNACKNOWLEDGED" in now
    assert not at.success and not at.error
    # The alarm list: one row, unacknowledged, first.
    table = at.dataframe[0].value
    assert list(table["status"]) == ["UNACKNOWLEDGED"] and list(table["alarm"]) == ["TRIP"]
    assert "needs_ack" in table.columns  # drives the highlight (hidden column)
    pin.set_pin(d, "bob", "135700")
    assert at.selectbox[0].options == ["Demo pump, simulated (demo-pump): TRIP"]
    at.text_input[0].input("bob")
    at.text_input[1].input("135700")
    at.text_input[2].input("from the page")
    at.button[0].click().run()
    assert not at.exception
    msgs = [e.value for e in at.success] + [e.value for e in at.error]
    assert any("demo-pump: trip acknowledged by bob" in m for m in msgs), msgs
    # Acknowledged: no longer offered; the list says who, when, and the comment.
    assert at.selectbox[0].options == [] and at.button[0].disabled
    table = at.dataframe[0].value
    assert list(table["status"]) == ["active (trip)"]
    assert table["acknowledged"][0].startswith("bob at ") and table["comment"][0] == "from the page"


def test_page_alarms_without_a_control_api_does_not_offer_to_acknowledge(tmp_path: Path) -> None:
    d = _tripped_copy(tmp_path)
    at = _app(tmp_path, "alarms", d).run()
    assert not at.exception
    # The state is read from the local store, but acknowledging is refused, saying why.
    now = "\n".join(m.value for m in at.markdown)
    assert ">TRIP</b>" in now and "UNACKNOWLEDGED" in now
    assert any(w.value == alarms.NO_API for w in at.warning)
    assert at.selectbox[0].options == [] and at.button[0].disabled


def test_page_alarms_with_the_service_down_says_unknown(tmp_path: Path) -> None:
    """The service configured but not answering: the state is unknown, the local store's last
    saved state is shown as such, acknowledging waits — and nothing green anywhere."""
    import socket

    d = _tripped_copy(tmp_path)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    at = _app(tmp_path, "alarms", d, api=f"http://127.0.0.1:{port}").run()
    assert not at.exception
    assert not at.success
    assert any("unknown — service unreachable" in e.value for e in at.error)
    assert any("Last state saved" in w.value and "TRIP" in w.value for w in at.warning)
    assert any("Cannot acknowledge now" in w.value for w in at.warning)
    assert at.button[0].disabled
    # The overview and the wall screen say UNKNOWN in the last state's colour frame.
    ov = _app(tmp_path, "overview", d, api=f"http://127.0.0.1:{port}").run()
    html = "\n".join(m.value for m in ov.markdown)
    assert ">UNKNOWN<" in html and "service unreachable" in html and " filled" not in html


def test_page_models_renders(tmp_path: Path) -> None:
    at = _app(tmp_path, "models", tmp_path).run()
    assert not at.exception
    assert any("demo-pump" in s.value for s in at.subheader)


def test_page_commissioning_renders_and_replays(tmp_path: Path) -> None:
    at = _app(tmp_path, "commissioning", tmp_path).run()
    assert not at.exception
    at.selectbox(key="com_fixture").set_value(FIXTURES / "outer_race.csv.gz").run()
    # A simulated recording's truth file gives the fault's onset; the model's training data
    # (healthy.csv.gz) is offered as the healthy reference.
    assert at.radio(key="com_role_outer_race.csv.gz").value == "has a fault"
    assert at.number_input(key="com_onset_outer_race.csv.gz").value == 4.0
    assert [f.name for f in at.multiselect(key="com_refs_demo-pump_outer_race.csv.gz").value] == [
        "healthy.csv.gz"
    ]
    at.button(key="com_run").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    heads = [h.value for h in at.subheader]
    assert "Spectra of the deciding window" in heads and "Diagnosis (averaged spectra)" in heads
    assert any(
        "Window 55 at 2026-01-01 00:00:04.400 UTC (4.4–4.72 s from the start, the alarm "
        "decided at its end)" in c.value
        for c in at.caption
    )
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Final alarm state"] == "TRIP" and metrics["First alarm"] == "4.4 s"
    assert any("Diagnosis: **outer-race bearing defect**" in m.value for m in at.markdown)
    # The what-if: thresholds as values; the score chart's lines move with them.
    assert at.select_slider(key="wi_score_alert").value == 1.0
    at.select_slider(key="wi_score_alert").set_value(2.0).run()
    assert not at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    score = next(
        c
        for c in charts
        if c.get("layer", [{}])[0].get("encoding", {}).get("y", {}).get("title")
        == "anomaly score (1 = alert)"
    )
    import pyarrow as pa

    datasets = {
        d.name: pa.ipc.open_stream(d.data.data).read_all().to_pylist()
        for c in at.get("vega_lite_chart")
        for d in c.proto.datasets
    }
    levels = {r["level"]: r["y"] for r in datasets[score["layer"][1]["data"]["name"]]}
    assert levels["alert"] == 2.0
    # Per recording and the grid: the healthy reference raises nothing, the fault is caught.
    tables = [d.value for d in at.dataframe]
    outcome = next(t for t in tables if "delay after the fault's onset, s" in t.columns)
    assert list(outcome["recording"]) == ["outer_race.csv.gz", "healthy.csv.gz"]
    assert list(outcome["false alarms"]) == [0, 0]
    grid = next(t for t in tables if "on-delay" in t.columns and "alert" in t.columns)
    assert len(grid) == 32 and (grid[""] == "← now").sum() == 1
    assert at.get("download_button")


def test_commissioning_offers_only_pipelines_that_fit(tmp_path: Path) -> None:
    """healthy.csv.gz has columns x_g, y_g: the CWRU pipeline (DE_g, FE_g) is not offered, so
    the first click works; a recording no pipeline reads disables Replay, with the reason."""
    script = tmp_path / "page.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(REPO)!r})
            from pathlib import Path
            from pdm.dashboard.context import load_context
            from pdm.dashboard import commissioning
            ctx = load_context(["--data-dir", {str(tmp_path)!r},
                                "--pipelines", {str(REPO / "pipelines")!r}])
            commissioning.render(ctx)
            """
        )
    )
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(script), default_timeout=60).run()
    assert not at.exception
    assert at.selectbox(key="com_fixture").value.name == "healthy.csv.gz"
    assert at.selectbox(key="com_pipeline").options == ["Demo pump, simulated (demo.toml)"]
    assert not at.button(key="com_run").disabled
    fit = commissioning.pipelines_for(
        FIXTURES / "healthy.csv.gz",
        {"cwru-rig": load_pipeline(REPO / "pipelines" / "cwru_drive_end.toml")},
    )
    assert fit["cwru-rig"].startswith("healthy.csv.gz has no column 'DE_g', 'FE_g'")
    odd = tmp_path / "odd.csv"
    odd.write_text("a_g,b_g\n" + "0.1,0.2\n" * 10)
    assert commissioning.pipelines_for(odd, {"demo-pump": load_pipeline(DEMO)})["demo-pump"]
    # Only the CWRU pipeline: no pipeline reads the fixture chosen, Replay is disabled and
    # the page says why.
    only = tmp_path / "only-cwru"
    only.mkdir()
    (only / "cwru_drive_end.toml").write_text(
        (REPO / "pipelines" / "cwru_drive_end.toml").read_text()
    )
    script.write_text(script.read_text().replace(str(REPO / "pipelines"), str(only)))
    at = AppTest.from_file(str(script), default_timeout=60).run()
    assert not at.exception
    assert at.button(key="com_run").disabled
    why = [w.value for w in at.warning if w.value.startswith("Replay not possible")]
    assert why and "no column 'DE_g', 'FE_g'" in why[0] and "healthy.csv.gz" in why[0], why


class _Backend:
    """A service behind a real ControlAPI: one tripped machine with a shadow candidate."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, str, str]] = []

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "id": "demo-pump",
                "state": "trip",
                "model_version": "bcd1cdf65bfc",
                "shadow": {
                    "version": "abcdef012345",
                    "active_version": "bcd1cdf65bfc",
                    "since": "2026-01-01T00:00:00Z",
                    "windows": 200,
                    "agreement": 0.985,
                    "confusion": {"ok": {"ok": 197, "alert": 3}},
                    "mean_abs_diff": 0.02,
                    "max_abs_diff": 0.4,
                    "nonfinite": 0,
                    "errors": 0,
                },
            }
        ]

    def health(self) -> dict[str, Any]:
        return {"ok": True, "reasons": []}

    def acknowledge(self, machine: str, by: str, comment: str) -> str:
        if machine != "demo-pump":
            raise KeyError(machine)
        self.acks.append((machine, by, comment))
        return "trip acknowledged by " + by

    def metrics(self) -> str:
        return ""


def test_acknowledge_and_shadow_through_a_real_control_api(tmp_path: Path) -> None:
    from pdm.dashboard.models import card_summary, shadow_rows
    from pdm.scoring.card import read_card
    from pdm.service.api import ControlAPI

    backend = _Backend()
    token = "k" * 24
    pin.set_pin(tmp_path, "alice", "471100")
    with ControlAPI(backend, port=0, token=token, timeout_s=2.0) as api:  # type: ignore[arg-type]
        ctx = _ctx(tmp_path, api_url=f"http://127.0.0.1:{api.port}", api_token=token)
        assert alarms.latched_machines(ctx) == [("demo-pump", "trip")]
        res = alarms.acknowledge(ctx, "demo-pump", "alice", "471100", "seen")
        assert res.ok and res.message == "demo-pump: trip acknowledged by alice"
        assert backend.acks == [("demo-pump", "alice", "seen")]
        unknown = alarms.acknowledge(ctx, "other", "alice", "471100")
        assert not unknown.ok and "404" in unknown.message
        wrong_token = _ctx(tmp_path, api_url=ctx.api_url, api_token="x" * 24)
        denied = alarms.acknowledge(wrong_token, "demo-pump", "alice", "471100")
        assert not denied.ok and "401" in denied.message
        rows = shadow_rows(alarms.api_status(ctx))
    assert rows[0]["candidate"] == "abcdef012345" and rows[0]["agreement"] == "98.5 %"
    gone = alarms.acknowledge(ctx, "demo-pump", "alice", "471100")  # the service stopped
    assert not gone.ok and "control API" in gone.message
    s = card_summary(read_card(REPO / "models" / "demo-pump"))
    assert s["thresholds"]["alert"] == 1.0 and s["thresholds"]["danger"] == DEMO_DANGER
    assert s["identity"]["version (ONNX SHA-256, 12 hex)"] == DEMO_VERSION
    assert s["training_files"][0]["file"] == "healthy.csv.gz"


def test_page_models_shows_the_shadow(tmp_path: Path) -> None:
    from pdm.service.api import ControlAPI

    token = "k" * 24
    with ControlAPI(_Backend(), port=0, token=token, timeout_s=2.0) as api:  # type: ignore[arg-type]
        at = _app(tmp_path, "models", tmp_path, f"http://127.0.0.1:{api.port}", token).run()
        assert not at.exception
    assert any("Shadow candidate" in m.value for m in at.markdown)


def test_whatif_with_features_uses_iso_zones(outer_race: commissioning.CommissioningResult) -> None:
    assert len(outer_race.features) == outer_race.windows
    assert set(outer_race.features[0]) == {"x_g", "y_g"}
    base = commissioning.whatif_for(outer_race, with_features=True)
    assert [(t["to"], t["window"]) for t in base.transitions] == [("danger", 51), ("trip", 55)]
    # ISO zone C at alert: with the score out of reach, velocity alone decides (zone B here).
    far = commissioning.whatif_for(outer_race, alert_mult=1e9, danger_mult=1e9, with_features=True)
    v = max(ch["velocity_rms_mm_s"] for w in outer_race.features.values() for ch in w.values())
    from pdm.dsp.iso import iso_zone

    zone = iso_zone(v, group=2, foundation="rigid")
    assert (far.alarms_raised == 0) == (zone < "C")
    # A velocity in zone D from window 10 on: danger after the on-delay, score or not.
    loud = {
        w: {ch: {**f, "velocity_rms_mm_s": 5.0 if w >= 10 else 1.0} for ch, f in chans.items()}
        for w, chans in outer_race.features.items()
    }
    wi = commissioning.whatif(
        outer_race.score,
        outer_race.t_ns,
        outer_race.window,
        alert=outer_race.alert,
        danger=outer_race.danger,
        rules=outer_race.rules,
        alert_mult=1e9,
        danger_mult=1e9,
        features=loud,
        sensor_of=outer_race.sensor_of,
    )
    on = outer_race.rules.on_windows
    assert [(t["to"], t["window"]) for t in wi.transitions] == [("danger", 10 + on - 1)]
    assert "zone D" in wi.transitions[0]["reason"]


def test_alarm_list_names_a_sensor_by_where_it_sits() -> None:
    fault = StateChange("demo-pump", 5 * 10**9, "ok", "sensor_fault", "flat", sensor="motor_de")
    (row,) = alarms.alarm_table(alarms.alarm_rows([fault]), {"demo-pump": load_pipeline(DEMO)})
    assert row["machine"] == "Demo pump, simulated · Motor DE" and row["alarm"] == "SENSOR FAULT"
    # A sensor the pipeline does not know keeps its id.
    other = StateChange("demo-pump", 5 * 10**9, "ok", "sensor_fault", "flat", sensor="s9")
    (row,) = alarms.alarm_table(alarms.alarm_rows([other]), {"demo-pump": load_pipeline(DEMO)})
    assert row["machine"] == "Demo pump, simulated · sensor s9"
