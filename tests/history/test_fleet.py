"""Many appliances, one central InfluxDB: every row tagged with its appliance, told apart in
reads and on the dashboard's fleet page.

Two real ``pdm-edge run`` processes with different ``PDM_APPLIANCE_ID`` and the *same*
pipeline (the same machine id) write one real InfluxDB 1.6.7; their rows stay apart by the
``appliance`` tag. The fleet page's ordering is a known-answer table; the page itself runs
in Streamlit's AppTest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdm.dashboard.fleet import fleet_rows
from pdm.history import open_store
from pdm.history.base import MachineStatus

REPO = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
NOW = 1_800_000_000 * NS


def _status(
    app: str, machine: str, alarm: str | None, score: float | None, age_s: float
) -> MachineStatus:
    t = NOW - round(age_s * NS)
    return MachineStatus(
        machine, t, score, "ok", "m", "", alarm, None if alarm is None else t - 60 * NS,
        {"x_g": {"velocity_rms_mm_s": 2.5}}, appliance=app,
    )  # fmt: skip


def test_the_fleet_is_ordered_appliances_and_machines_worst_first() -> None:
    apps = fleet_rows(
        [
            _status("edge-a", "pump-1", "ok", 0.3, 5),
            _status("edge-a", "fan-2", "alert", 1.2, 5),
            _status("edge-b", "pump-1", "trip", 40.0, 5000),  # tripped, but its data stopped
            _status("edge-b", "mill-3", "danger", 3.0, 5),
            _status("edge-c", "press-4", "trip", 12.0, 5),
            _status("edge-c", "press-5", "trip", 30.0, 5),
            _status("edge-d", "new-6", None, None, 1e9),
        ],
        now_ns=NOW,
    )
    assert [(a.appliance, [(r.machine, r.state, r.stale) for r in a.rows]) for a in apps] == [
        ("edge-c", [("press-5", "trip", False), ("press-4", "trip", False)]),
        ("edge-b", [("pump-1", "trip", True), ("mill-3", "danger", False)]),
        ("edge-a", [("fan-2", "alert", False), ("pump-1", "ok", False)]),
        ("edge-d", [("new-6", "ok", True)]),
    ]
    row = apps[0].rows[0]
    assert (row.since_s, row.velocity_rms_mm_s, row.age_s) == (65.0, 2.5, 5.0)


def _page(store: str, data_dir: str, *extra: str) -> None:
    from pdm.dashboard.context import load_context
    from pdm.dashboard.fleet import render

    argv = ["--store", store, "--data-dir", data_dir, "--pipelines", data_dir, *extra]
    render(load_context(argv))


def test_the_fleet_page_shows_each_appliance_worst_first(tmp_path: Path) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    from test_history_contract import scores

    from pdm.history.records import StateChange

    db = tmp_path / "central.db"
    t = scores("pump-1", [0], [0.4]).t_ns[0]
    for app, state, score in (("edge-a", "ok", 0.4), ("edge-b", "danger", 3.5)):
        with open_store(f"sqlite:///{db}", appliance=app) as st:
            machine = f"{app}-pump"
            st.write(
                [scores(machine, [0], [score]), StateChange(machine, int(t), "ok", state, "x")]
            )
    at = AppTest.from_function(_page, args=(f"sqlite:///{db}", str(tmp_path)), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader] == ["edge-b — worst: danger", "edge-a — worst: ok"]
    first = at.dataframe[0].value
    assert list(first["machine"]) == ["edge-b-pump"]
    assert str(first["state"].iloc[0]).startswith("DANGER")


def _run(tmp_path: Path, app: str, store: str) -> subprocess.Popen[bytes]:
    text = (REPO / "pipelines" / "demo.toml").read_text()
    text = text.replace('path = "../models/demo-pump"', f'path = "{REPO}/models/demo-pump"')
    pipeline = tmp_path / f"{app}.toml"
    pipeline.write_text(text.replace("\n[alarms]\n", '\n[alarms]\nrelay = "log:"\n'))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "run",
            str(pipeline),
            "--simulate",
            "--duration",
            "6",
            "--fault",
            "bpfo:0.3@2" if app == "edge-b" else "unbalance:0.01@100",
            "--store",
            store,
            "--data-dir",
            str(tmp_path / app),
            "--api",
            "off",
        ],
        env={**os.environ, "PDM_APPLIANCE_ID": app},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.influxdb
def test_two_appliances_writing_one_influxdb_are_told_apart_by_their_tag(
    tmp_path: Path, influxdb1: Any
) -> None:
    store = f"influx1://127.0.0.1:{influxdb1.port}/central"
    procs = [_run(tmp_path, app, store) for app in ("edge-a", "edge-b")]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()[-2000:]
    tags = influxdb1.query(
        'SHOW TAG VALUES FROM "pdm_features" WITH KEY = "appliance"', db="central"
    )
    assert sorted(v[1] for v in tags["results"][0]["series"][0]["values"]) == ["edge-a", "edge-b"]
    with open_store(store) as st:
        fleet = st.fleet()
        assert [(s.appliance, s.machine) for s in fleet] == [
            ("edge-a", "demo-pump"),
            ("edge-b", "demo-pump"),
        ]
        a, b = fleet
        assert a.alarm_state in (None, "ok") and b.alarm_state == "trip"
        both = st.count("scores", "demo-pump")
    counts = {}
    for app in ("edge-a", "edge-b"):
        with open_store(store, scope=app) as st:
            counts[app] = st.count("scores", "demo-pump")
            (status,) = st.latest_status("demo-pump")
            assert status.appliance == app
            assert st.machines() == ["demo-pump"]
    assert counts["edge-a"] > 0 and counts["edge-b"] > 0
    assert counts["edge-a"] + counts["edge-b"] == both

    # Training from the central store: whose rows must be said when two appliances have the
    # machine; then only that appliance's (edge-a ran healthy throughout).
    argv = [sys.executable, "-m", "pdm.cli", "train", "--from-store", store, "--machine",
            "demo-pump", "--since", "2000-01-01", "--until", "2100-01-01", "--pipeline",
            str(tmp_path / "edge-a.toml"), "--out", str(tmp_path / "model")]  # fmt: skip
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and "appliances edge-a, edge-b all wrote rows" in p.stderr, p.stderr
    p = subprocess.run([*argv, "--appliance", "edge-a"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (src,) = json.loads((tmp_path / "model" / "model.json").read_text())["training"]["files"]
    assert src["stored_windows"] == src["windows"] > 0 and src["alarmed_windows"] == 0
    assert src["store"].endswith("(appliance edge-a)")

    # The fleet page on the central store: the tripped appliance first.
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    # Named an appliance, the machine pages read its rows only; the fleet page every one's.
    from pdm.dashboard.context import load_context

    ctx = load_context(["--store", store, "--appliance", "edge-a", "--pipelines", str(tmp_path)])
    with ctx.store() as st:
        assert st.count("scores", "demo-pump") == counts["edge-a"]
    with ctx.store(every_appliance=True) as st:
        assert st.count("scores", "demo-pump") == both
    for extra in ((), ("--appliance", "edge-a")):
        at = AppTest.from_function(_page, args=(store, str(tmp_path), *extra), default_timeout=30)
        at.run()
        assert not at.exception, at.exception
        assert [h.value for h in at.subheader] == ["edge-b — worst: trip", "edge-a — worst: ok"]


def test_the_dashboard_takes_an_appliance_id_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pdm.dashboard.launch import build_command, dashboard_main, parse_args

    cmd = build_command(parse_args(["--store", "influx1://c:8086/pdm", "--appliance", "edge-a"]))
    assert cmd[-4:] == ["--store", "influx1://c:8086/pdm", "--appliance", "edge-a"]
    assert dashboard_main(["--appliance", "edge a/1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pdm-edge dashboard: --appliance 'edge a/1'") and err.count("\n") == 1
