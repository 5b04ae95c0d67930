"""The InfluxDB v2 write path (influxdb-client) against a real server that speaks /api/v2/write.

No InfluxDB 2.x runs here; VictoriaMetrics (Debian's trixie binary, started by
the tests) accepts influxdb-client's v2 writes. It stores each numeric field
as a series ``<measurement>_<field>`` with the tags as labels, keeps
timestamps to the millisecond, values to 12 significant digits, and turns
strings into 0 — so these tests check numeric values, tags, timestamps (ms)
and counts. Reads (InfluxQL) are the
influx1 store's code, covered by the contract suite against InfluxDB 1.6.7.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_history_outage import _replay

from pdm.history import open_store
from pdm.history.base import HistoryError, parse_store_url
from pdm.history.influx import Influx2Store
from pdm.history.records import Event, FeatureRows, ScoreRows, StateChange

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "fixtures" / "outer_race.csv.gz"
PIPELINE = REPO / "pipelines" / "demo.toml"
T0 = 1_767_225_600_000_000_000  # 2026-01-01, ns


def _series(vm: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], dict[int, float]]:
    """(metric, labels) → {t_ms: value} from VictoriaMetrics' export."""
    vm.force_flush()
    out: dict[tuple[str, frozenset[tuple[str, str]]], dict[int, float]] = defaultdict(dict)
    for s in vm.export():
        labels = dict(s["metric"])
        name = labels.pop("__name__")
        key = (name, frozenset(labels.items()))
        out[key].update(zip(s["timestamps"], s["values"], strict=True))
    return out


def _store(vm: Any, monkeypatch: pytest.MonkeyPatch) -> Influx2Store:
    monkeypatch.setenv("PDM_INFLUX_TOKEN", "test-token")
    monkeypatch.setenv("PDM_APPLIANCE_ID", "edge-t")
    return Influx2Store(parse_store_url(f"influx2://127.0.0.1:{vm.port}?org=plant&bucket=pdm"))


def test_influx2_writes_every_feature_value_tag_and_time(victoria, monkeypatch) -> None:
    rows = FeatureRows(
        "pump 7",
        T0 + np.array([0, 0, 80, 80], dtype=np.int64) * 1_000_000,
        np.array([0, 0, 1, 1]),
        ("de", "de", "de", "de"),
        ("x_g", "y_g", "x_g", "y_g"),
        ("rms_g", "velocity_rms_mm_s"),
        np.array([[0.125, 1.5], [0.25, math.nan], [1 / 3, 2.75], [0.5, 3.0]]),
        ("A", "A", "B", "B"),
        np.array([True, True, True, False]),
    )
    scores = ScoreRows(
        "pump 7",
        "abcdef012345",
        rows.t_ns[::2],
        np.array([0, 1]),
        np.array([0.4, 1.7]),
        ("ok", "alert"),
        ("", "bearing_outer_race"),
        ("", "[]"),
    )
    with _store(victoria, monkeypatch) as st:
        st.write([rows, scores, StateChange("pump 7", T0, "ok", "alert", "test", score=1.7)])
    got = _series(victoria)
    ms = T0 // 1_000_000
    base = {("appliance", "edge-t"), ("machine", "pump 7"), ("sensor", "de")}
    # VictoriaMetrics keeps 12 significant digits (InfluxDB keeps the float64).
    assert got["pdm_features_rms_g", frozenset(base | {("channel", "x_g")})] == pytest.approx(
        {ms: 0.125, ms + 80: 1 / 3}, rel=1e-11
    )
    assert got["pdm_features_velocity_rms_mm_s", frozenset(base | {("channel", "y_g")})] == {
        ms + 80: 3.0,  # NaN is left out, not written as a value
    }
    assert got["pdm_features_valid", frozenset(base | {("channel", "y_g")})] == {
        ms: 1.0,
        ms + 80: 0.0,
    }
    assert got["pdm_features_window", frozenset(base | {("channel", "x_g")})] == {ms: 0, ms + 80: 1}
    score_labels = frozenset(
        {("appliance", "edge-t"), ("machine", "pump 7"), ("model", "abcdef012345")}
    )
    assert got["pdm_scores_score", score_labels] == {ms: 0.4, ms + 80: 1.7}
    states = frozenset({("appliance", "edge-t"), ("machine", "pump 7")})
    assert got["pdm_states_score", states] == {ms: 1.7}


def test_influx2_server_down_is_retryable(victoria, monkeypatch) -> None:
    st = _store(victoria, monkeypatch)
    victoria.stop()
    with pytest.raises(HistoryError) as info:
        st.write([Event("m", T0, "t", "info", "x")])
    assert info.value.retryable and "influx2://" in str(info.value)
    victoria.start()
    st.write([Event("m", T0, "t", "info", "x")])  # the same handle works again
    st.close()


def test_replay_into_influx2_survives_an_outage_and_matches_sqlite(
    tmp_path: Path, victoria
) -> None:
    env = {"PDM_INFLUX_TOKEN": "test-token", "PDM_APPLIANCE_ID": "edge-r"}
    ref = _replay(f"sqlite:///{tmp_path}/ref.db", tmp_path / "ref", env=env)
    out, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err
    url = f"influx2://127.0.0.1:{victoria.port}?org=plant&bucket=pdm"
    proc = _replay(url, tmp_path / "data", "--speed", "2", "--drain-timeout", "60", env=env)
    time.sleep(2)
    victoria.stop()
    time.sleep(3)
    victoria.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["store_outages"] == 1 and summary["all_delivered"]
    assert summary["rows_dropped"] == 0 and summary["rows_rejected"] == 0
    got = _series(victoria)
    with open_store(f"sqlite:///{tmp_path}/ref.db") as st:
        want = st.features("demo-pump")
    for ch in ("x_g", "y_g"):
        sel = np.array([x == ch for x in want.channel])
        t_ms = (want.t_ns[sel] // 1_000_000).tolist()
        col = want.names.index("velocity_rms_mm_s")
        labels = frozenset(
            {
                ("appliance", "edge-r"),
                ("machine", "demo-pump"),
                ("sensor", "motor_de"),
                ("channel", ch),
            }
        )
        series = got["pdm_features_velocity_rms_mm_s", labels]
        assert sorted(series) == t_ms, f"channel {ch}: every window, once"
        np.testing.assert_allclose([series[t] for t in t_ms], want.values[sel, col], rtol=1e-11)


@pytest.mark.influxdb
def test_a_value_influxdb_cannot_take_is_rejected_not_retried(influxdb1, tmp_path: Path) -> None:
    """The InfluxDB side of 'one bad record never stalls the writer': a time beyond int64 ns
    (the server refuses it, HTTP 400) and a str the encoder cannot encode are kept in
    ``rejected``; the rest is delivered."""
    from pdm.history.spool import Spool
    from pdm.history.writer import HistoryWriter

    url = f"influx1://127.0.0.1:{influxdb1.port}/poison"
    w = HistoryWriter(lambda: open_store(url), Spool(tmp_path / "spool.db"), flush_interval_s=0.05)
    w.submit(Event("m1", 2**63 + 5, "stream_gap", "warning", "poison"))
    w.submit(StateChange("m1", T0 - 1, "ok", "alert", "lone surrogate \udcff"))
    w.submit(*(Event("m1", T0 + i, "x", "info", f"ok {i}") for i in range(3)))
    assert w.drain(20), w.snapshot()
    w.close()
    s = w.snapshot()
    assert s.rows_rejected == 2 and s.outages == 0
    with open_store(url) as st:
        assert len(st.log("m1", kinds=("events",))) == 3
