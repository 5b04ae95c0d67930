"""No row lost, none duplicated: a database outage, SIGTERM and kill -9 in the middle of a replay.

Real processes against real stores: ``pdm-edge replay`` runs as a subprocess
against InfluxDB 1.6.7 (started here on a free loopback port, stopped for
30+ s mid-replay) or SQLite; afterwards the store holds exactly what an
uninterrupted run writes — same counts, same values (checksums), no duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdm.history import open_store
from pdm.history.base import HistoryStore

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "fixtures" / "outer_race.csv.gz"
PIPELINE = REPO / "pipelines" / "demo.toml"
MACHINE = "demo-pump"


def _replay(
    store: str, data_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``pdm-edge replay`` of the outer-race fixture into ``store``, as a subprocess."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "replay",
            str(RECORDING),
            "-p",
            str(PIPELINE),
            "--store",
            store,
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=timeout)
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    return proc.returncode, json.loads(last), err


def _content(store: HistoryStore) -> dict[str, Any]:
    """What a replay leaves in a store: counts per kind and checksums of the values."""
    f = store.features(MACHINE)
    s = store.scores(MACHINE)
    h = hashlib.sha256()
    h.update(f.t_ns.tobytes())
    h.update(np.nan_to_num(f.values, nan=-1e300).tobytes())
    h.update("|".join(f.channel).encode())
    h.update(s.t_ns.tobytes())
    h.update(np.nan_to_num(s.score, nan=-1e300).tobytes())
    states = [(r.t_ns, r.old, r.new) for r in store.log(MACHINE, kinds=("states",))]
    return {
        "features": store.count("features", MACHINE),
        "distinct_feature_rows": len(set(zip(f.t_ns.tolist(), f.channel, strict=True))),
        "scores": store.count("scores", MACHINE),
        "spectra": store.count("spectra", MACHINE),
        "states": states,
        "captures": store.count("captures", MACHINE),
        "checksum": h.hexdigest(),
    }


def _wait_for_first_rows(url: str, sqlite_file: Path | None, timeout: float = 60.0) -> None:
    """Until a replay has stored its first feature rows: its start (imports, the DSP
    kernels loaded from numba's cache) takes 1–3 s, more on a loaded machine, so a stop at
    a fixed time could come before anything was written. (A SQLite file is not opened
    before the replay made it, so that this does not create it.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sqlite_file is None or sqlite_file.exists():
            try:
                with open_store(url) as st:
                    if st.count("features", MACHINE) > 0:
                        return
            except Exception:  # the replay has not made its tables yet
                pass
        time.sleep(0.1)
    raise AssertionError(f"no feature rows in {url} after {timeout} s")


def _reference(store_url: str, tmp_path: Path) -> dict[str, Any]:
    code, summary, err = _finish(_replay(store_url, tmp_path / "ref-data"))
    assert code == 0, err
    assert summary["all_delivered"] and summary["rows_dropped"] == 0
    with open_store(store_url) as st:
        ref = _content(st)
    assert ref["features"] == ref["distinct_feature_rows"] == summary["windows"] * 2
    assert ref["scores"] == summary["windows"] and ref["states"]
    return ref


def _stores(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str, Any]:
    """(reference store URL, test store URL, server or None)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/ref.db", f"sqlite:///{tmp_path}/test.db", None
    server = request.getfixturevalue("influxdb1")
    base = f"influx1://127.0.0.1:{server.port}"
    return f"{base}/ref", f"{base}/test", server


@pytest.mark.slow
def test_influxdb_down_for_30s_mid_replay_loses_nothing(tmp_path: Path, influxdb1) -> None:
    base = f"influx1://127.0.0.1:{influxdb1.port}"
    ref = _reference(f"{base}/ref", tmp_path)
    # 12 s of signal at 0.3× real time: a 40 s replay, the database away for 31 s of it.
    proc = _replay(f"{base}/outage", tmp_path / "data", "--speed", "0.3", "--drain-timeout", "60")
    time.sleep(4)
    assert proc.poll() is None
    influxdb1.stop()
    down_at = time.monotonic()
    time.sleep(31)
    assert proc.poll() is None, "the replay must keep running while the database is down"
    influxdb1.start()
    code, summary, err = _finish(proc)
    assert code == 0, err
    assert time.monotonic() - down_at >= 31
    assert summary["store_outages"] == 1 and summary["rows_spooled"] > 0
    assert summary["rows_dropped"] == 0 and summary["rows_rejected"] == 0
    assert summary["all_delivered"] and summary["spool_rows"] == 0
    assert err.count("history store down") == 1 and err.count("history store back") == 1
    with open_store(f"{base}/outage") as st:
        got = _content(st)
        downs = [e.type for e in st.log(None, kinds=("events",))]
    assert got == ref  # every row, once, with the same values
    assert downs.count("store_down") == 1 and downs.count("store_up") == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "influx1"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_stopped_replay_resumes_to_the_same_history(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, sig: signal.Signals
) -> None:
    ref_url, url, _server = _stores(kind, tmp_path, request)
    ref = _reference(ref_url, tmp_path)
    data = tmp_path / "data"
    proc = _replay(url, data, "--speed", "2")  # 6 s of wall time once started
    _wait_for_first_rows(url, tmp_path / "test.db" if kind == "sqlite" else None)
    time.sleep(1.5)  # a checkpoint is saved every second (pdm/replay.py): at least one by then
    assert proc.poll() is None
    proc.send_signal(sig)
    code, summary, err = _finish(proc)
    if sig == signal.SIGTERM:
        # A clean stop: queue delivered, checkpoint saved, exit 143, summary printed.
        assert code == 143, err
        assert summary["interrupted"] == "SIGTERM" and "resume" in err
        assert 0 < summary["windows"] < ref["scores"]
    else:
        assert code == -signal.SIGKILL
    with open_store(url) as st:
        partial = st.count("features", MACHINE)
    assert 0 < partial < ref["features"]
    # The same command again: resumes after the checkpoint, writes the rest.
    code, summary, err = _finish(_replay(url, data))
    assert code == 0, err
    assert summary["resumed_after"] is not None and summary["windows_skipped"] > 0
    with open_store(url) as st:
        assert _content(st) == ref


def test_a_replay_with_the_store_unreachable_keeps_everything_for_the_next_run(
    tmp_path: Path, influxdb1
) -> None:
    port = influxdb1.port
    influxdb1.stop()
    url = f"influx1://127.0.0.1:{port}/late"
    code, summary, err = _finish(_replay(url, tmp_path / "data", "--drain-timeout", "1"))
    assert code == 0, err
    assert "spooling until it answers" in err and "wait in the spool" in err
    assert summary["rows_written"] == 0 and summary["spool_rows"] == summary["rows_submitted"] + 1
    influxdb1.start()
    # Any later command that writes to the store delivers the spool (here: the same replay,
    # which also resumes — nothing left to do but deliver).
    code, summary2, err = _finish(_replay(url, tmp_path / "data"))
    assert code == 0, err
    assert summary2["all_delivered"]
    with open_store(url) as st:
        assert st.count("features", MACHINE) == summary["windows"] * 2


def test_sqlite_store_that_is_not_a_database_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "history.db"
    bad.write_text("this is not sqlite\n" * 100)
    code, _summary, err = _finish(_replay(f"sqlite:///{bad}", tmp_path / "data"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pdm-edge: error:") and str(bad) in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("postgres://x/y", {}, "unknown store"),
        ("influx1://h:8086", {}, "database name"),
        ("influx1://admin:secret@h:8086/db", {}, "no password in the URL"),
        ("influx1://admin@h:8086/db", {}, "needs a password in PDM_INFLUX_PASSWORD"),
        ("influx2://h:8086?org=o", {"PDM_INFLUX_TOKEN": "t"}, "?bucket= is required"),
        ("influx2://h:8086?org=o&bucket=b", {}, "no token; set PDM_INFLUX_TOKEN"),
        (
            "influx2://h:8086?org=o&bucket=b&bukcet=c",
            {"PDM_INFLUX_TOKEN": "t"},
            "unknown parameter 'bukcet'",
        ),
        ("sqlite://relative.db", {}, "expected sqlite:///PATH"),
    ],
)
def test_bad_store_urls_are_one_line_errors(
    tmp_path: Path, url: str, env: dict[str, str], message: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PDM_INFLUX")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "replay",
            str(RECORDING),
            "-p",
            str(PIPELINE),
            "--store",
            url,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **env},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("pdm-edge: error: --store: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "secret" not in proc.stderr  # never echo a password
