"""Dashboard pages (Streamlit AppTest) against history from a real replay, and the pure
functions behind them (known answers)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("altair")

import itertools

from streamlit.testing.v1 import AppTest

from pdm.config import load_pipeline
from pdm.dashboard import data
from pdm.dashboard.launch import build_command, dashboard_main, parse_args
from pdm.dsp.bearings import lookup_bearing
from pdm.history.base import MachineStatus
from pdm.history.records import Event, StateChange

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "pdm" / "dashboard" / "app.py"
PIPELINES = REPO / "pipelines"
NS = 1_000_000_000


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory filled by ``pdm-edge replay`` of the outer-race fixture."""
    out = tmp_path_factory.mktemp("dash")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "replay",
            str(REPO / "fixtures" / "outer_race.csv.gz"),
            "-p",
            str(PIPELINES / "demo.toml"),
            "--data-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "history.db").exists()
    return out


@pytest.fixture
def argv(replayed: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``streamlit run app.py -- --data-dir DIR --pipelines DIR`` as AppTest sees it."""
    monkeypatch.setattr(
        sys, "argv", ["app.py", "--data-dir", str(replayed), "--pipelines", str(PIPELINES)]
    )
    monkeypatch.delenv("PDM_DASHBOARD_STORE", raising=False)
    monkeypatch.delenv("PDM_API_TOKEN", raising=False)
    monkeypatch.delenv("PDM_API_TOKEN_FILE", raising=False)
    return replayed


def _page_script(page: str, data_dir: str, pipelines: str, fn: str = "render") -> None:
    import importlib

    from pdm.dashboard.context import load_context

    ctx = load_context(["--data-dir", data_dir, "--pipelines", pipelines])
    getattr(importlib.import_module(f"pdm.dashboard.{page}"), fn)(ctx)


def _page(page: str, data_dir: Path) -> AppTest:
    at = AppTest.from_function(
        _page_script, args=(page, str(data_dir), str(PIPELINES)), default_timeout=20
    )
    return at.run()


def _specs(at: AppTest) -> list[dict[str, Any]]:
    """Each chart's Vega-Lite spec, with ``datasets``: name → rows (decoded from Arrow)."""
    import pyarrow as pa

    out = []
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        spec["datasets"] = {
            d.name: pa.ipc.open_stream(d.data.data).read_all().to_pylist() for d in c.proto.datasets
        }
        out.append(spec)
    return out


def _rows(spec: dict[str, Any], layer: int) -> list[dict[str, Any]]:
    part = spec["layer"][layer] if "layer" in spec else spec
    rows: list[dict[str, Any]] = spec["datasets"][part["data"]["name"]]
    return rows


def _marks(spec: dict[str, Any]) -> list[str]:
    parts = spec.get("layer", [spec])
    return [p["mark"]["type"] if isinstance(p["mark"], dict) else p["mark"] for p in parts]


def _html(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# --- pages ---------------------------------------------------------------------------------


def test_app_runs_overview_by_default(argv: Path) -> None:
    at = AppTest.from_file(str(APP), default_timeout=20).run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == []  # the demo pipelines load without problems
    html = _html(at)
    assert 'data-machine="demo-pump"' in html
    assert at.title[0].value == "Overview"


def test_checkout_shim_runs(argv: Path) -> None:
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=20).run()
    assert not at.exception, at.exception
    assert 'data-machine="demo-pump"' in _html(at)


def test_app_shows_problems_as_warnings(
    argv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.toml").write_text("schema_version = 1\n[machine]\n")
    monkeypatch.setattr(
        sys, "argv", ["app.py", "--data-dir", str(argv), "--pipelines", str(tmp_path)]
    )
    at = AppTest.from_file(str(APP), default_timeout=20).run()
    assert not at.exception, at.exception
    assert len(at.warning) == 1 and "broken.toml" in at.warning[0].value


def test_overview_tile_is_trip_and_stale(replayed: Path) -> None:
    at = _page("overview", replayed)
    assert not at.exception, at.exception
    html = _html(at)
    tile = next(m.value for m in at.markdown if 'data-machine="demo-pump"' in m.value)
    tile = tile[tile.index('<div class="pdm-t ') :]
    assert 'data-state="trip"' in tile and 'data-stale="true"' in tile
    # The last known state stays as a coloured frame around a dark tile, never filled.
    assert 'class="pdm-t frame unack"' in tile
    assert f"--c:{data.STATE_COLOURS['trip']}" in tile
    assert ">TRIP<" in tile and "UNACKNOWLEDGED" in tile
    assert "NO DATA FOR" in tile and "last known state" in tile
    assert "since " in tile and "outer-race bearing defect" in tile
    assert "e+03" not in tile  # numbers as people write them
    assert "filled" not in html  # nothing fresh: no tile is filled, none green
    # the other demo pipeline never had data: named small, not a tile
    assert 'Never had data: <b data-machine="cwru-rig">CWRU bearing test rig</b>' in html
    assert 'class="pdm-t' not in html.split("Never had data")[1]


def test_wall_screen_page_is_kiosk_and_fills_the_screen(replayed: Path) -> None:
    at = AppTest.from_function(
        _page_script,
        args=("overview", str(replayed), str(PIPELINES), "render_wall"),
        default_timeout=20,
    ).run()
    assert not at.exception, at.exception
    html = _html(at)
    assert '[data-testid="stSidebar"]' in html and "display: none" in html  # no sidebar
    assert '<div class="pdm-wall">' in html
    assert 'data-machine="demo-pump"' in html and not at.title  # no page title: tiles only
    from pdm.dashboard import overview

    assert overview.grid_shape(1) == (1, 1) and overview.grid_shape(2) == (2, 1)
    assert overview.grid_shape(4) == (2, 2) and overview.grid_shape(6) == (3, 2)
    assert overview.grid_shape(9) == (3, 3)
    for n in range(1, 40):
        cols, rows = overview.grid_shape(n)
        assert cols * rows >= n and cols * rows - n < cols, n  # no empty row


def _layer(spec: dict[str, Any], mark: str, n: int = 0) -> dict[str, Any]:
    parts = [p for p in spec.get("layer", [spec]) if _marks({"layer": [p]})[0] == mark]
    return parts[n]


def test_machine_page_charts(replayed: Path) -> None:
    at = _page("machine", replayed)
    assert not at.exception, at.exception
    at.selectbox(key="pdm_machine").set_value("demo-pump")
    at.run()
    assert not at.exception, at.exception
    specs = _specs(at)
    # score, velocity, band RMS, bearing lines; the newest stored envelope and acceleration
    # spectra; waterfall; the capture's two channels and its two spectra
    assert len(specs) == 11
    score, velocity, band, bearing, env, acc, waterfall, wave_x, wave_y, cap_env, cap_acc = specs
    assert _marks(score)[:2] == ["line", "rule"]
    levels = {r["level"]: r["y"] for r in _rows(score, 1)}
    card = json.loads((REPO / "models" / "demo-pump" / "model.json").read_text())
    danger = card["score"]["danger"]
    assert levels == {"alert": 1.0, "danger": danger, "trip": 10.0}  # demo model and pipeline
    colours = {r["level"]: r["colour"] for r in _rows(score, 1)}
    assert len(set(colours.values())) == 3  # danger and trip no longer the same red
    assert colours["trip"] == data.STATE_COLOURS["trip"]
    assert len(_rows(score, 0)) == 147
    ticks = score["layer"][0]["encoding"]["y"]["axis"]["values"]
    assert {0.1, 1.0, 10.0, 100.0} <= set(ticks)  # a log axis people can read
    assert _marks(velocity) == ["rect", "line"]
    zones = velocity["layer"][0]["encoding"]["color"]["scale"]["domain"]
    assert zones == ["A", "B", "C", "D"]
    assert [r["lo"] for r in _rows(velocity, 0)] == [0.0, 1.4, 2.8, 4.5]
    assert velocity["layer"][0]["mark"]["opacity"] >= 0.4  # the zones can be seen
    names = {r["series"] for r in _rows(velocity, 1)}
    assert names == {"Motor DE · horizontal", "Motor DE · vertical"}  # not x_g, y_g
    assert {r["series"] for r in _rows(band, 0)} == {
        "band high (1 kHz–10 kHz) RMS, g · Motor DE · horizontal",
        "band high (1 kHz–10 kHz) RMS, g · Motor DE · vertical",
    }
    assert "BPFO envelope, g · Motor DE · horizontal" in {r["series"] for r in _rows(bearing, 0)}
    for spec in (env, acc, cap_env, cap_acc):
        assert _marks(spec) == ["line", "rule", "text", "point", "rule", "text"]
    # Cursors: 1×–5× shaft and the default bearing families, labels in rows that never touch.
    bpfo = lookup_bearing("6205").defect_frequencies_hz(1480 / 60)["bpfo"]
    marks = _rows(env, 1)
    assert any(r["name"] == "1× BPFO" and r["f_hz"] == pytest.approx(bpfo) for r in marks)
    assert any(r["name"] == "2× BPFO" and r["f_hz"] == pytest.approx(2 * bpfo) for r in marks)
    assert any(r["name"] == "1× shaft" and r["f_hz"] == pytest.approx(1480 / 60) for r in marks)
    # The envelope opens on 0 – 5.5 × the highest defect frequency (capped at its top).
    env_x = env["layer"][0]["encoding"]["x"]["scale"]["domain"]
    assert env_x[0] == 0.0 and env_x[1] == pytest.approx(290.625, abs=0.5)
    acc_x = acc["layer"][0]["encoding"]["x"]["scale"]["domain"]
    assert acc_x == [0.0, pytest.approx(20 * 1480 / 60, abs=19)]  # 20 × shaft (one line)
    # The capture of the trip: its envelope peaks at BPFO — the fault, not the healthy t=0.
    peak = max(_rows(cap_env, 0), key=lambda r: r["amp"])
    assert peak["f_hz"] == pytest.approx(bpfo, rel=0.04)
    assert peak["amp"] > 0.03
    healthy = max(r["amp"] for r in _rows(env, 0) if abs(r["f_hz"] - bpfo) < 5)
    assert peak["amp"] > 10 * healthy
    assert _marks(waterfall) == ["rect"]
    assert _marks(wave_x) == ["area"] == _marks(wave_y)
    assert wave_x["encoding"]["y"]["title"] == "Motor DE · horizontal, g"
    assert at.selectbox(key="pdm_range").value == "all"
    subheaders = [s.value for s in at.subheader]
    assert "Anomaly score" in subheaders and any("Alarm captures" in s for s in subheaders)
    assert not at.error
    # Orders axis and log amplitude: the same lines, x divided by the shaft frequency.
    at.radio(key="pdm_spec_demo-pump_axis").set_value("orders")
    at.checkbox(key="pdm_spec_demo-pump_log").check()
    at.run()
    assert not at.exception, at.exception
    env2 = _specs(at)[4]
    assert env2["layer"][0]["encoding"]["x"]["field"] == "order"
    assert env2["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    bpfo_order = next(r["order"] for r in _rows(env2, 1) if r["name"] == "1× BPFO")
    assert bpfo_order == pytest.approx(3.5848, rel=1e-3)  # CWRU's 6205 BPFO order
    # a range anchored at the newest data shows the replayed (old) data too
    at.selectbox(key="pdm_range").set_value("last 1 h").run()
    assert not at.exception and len(_specs(at)) == 11


def test_machine_page_opens_on_data_and_says_when_a_machine_has_none(replayed: Path) -> None:
    at = _page("machine", replayed)
    assert not at.exception, at.exception
    # Machines with history come first, so the page opens on one that has something to show.
    assert at.selectbox(key="pdm_machine").value == "demo-pump"
    at.selectbox(key="pdm_machine").select("cwru-rig").run()  # a pipeline with no history
    assert not at.exception, at.exception
    assert any("No data" in i.value for i in at.info)


def test_context_comes_from_argv(argv: Path) -> None:
    from pdm.dashboard.context import load_context

    ctx = load_context(sys.argv[1:])
    assert "demo-pump" in ctx.pipelines


# --- data.py known answers -----------------------------------------------------------------


def test_cursors_at_bearing_defect_frequencies() -> None:
    from pdm.dashboard import cursors

    pl = load_pipeline(PIPELINES / "demo.toml")
    shaft, defects = cursors.defect_frequencies(pl, "x_g")
    expected = lookup_bearing("6205").defect_frequencies_hz(1480 / 60)
    assert shaft == pytest.approx(1480 / 60)
    assert defects == pytest.approx(expected)
    assert defects["bpfo"] == pytest.approx(3.5848 * shaft, rel=1e-3)  # CWRU's 6205 BPFO order
    marks = cursors.cursors(shaft, defects, ["shaft", "bpfo", "bpfi", "bsf"], sidebands=True)
    by = {m.name: m.freq_hz for m in marks}
    for h in range(1, 6):
        assert by[f"{h}× shaft"] == pytest.approx(h * shaft)
        assert by[f"{h}× BPFO"] == pytest.approx(h * expected["bpfo"])
        assert by[f"{h}× BPFI"] == pytest.approx(h * expected["bpfi"])
        # Sidebands where physics puts them: BPFI ± 1× shaft, BSF ± FTF; none for BPFO.
        assert by[f"{h}× BPFI − 1× shaft"] == pytest.approx(h * expected["bpfi"] - shaft)
        assert by[f"{h}× BPFI + 1× shaft"] == pytest.approx(h * expected["bpfi"] + shaft)
        assert by[f"{h}× BSF + FTF"] == pytest.approx(h * expected["bsf"] + expected["ftf"])
    assert not any("BPFO" in m.name and m.kind == "sideband" for m in marks)
    assert [m.label for m in marks if m.family == "bpfo"] == [
        "BPFO",
        "2×BPFO",
        "3×BPFO",
        "4×BPFO",
        "5×BPFO",
    ]
    assert all(m.label == "" for m in marks if m.kind == "sideband")
    assert max(m.freq_hz for m in cursors.cursors(shaft, defects, ["bpfi"], max_hz=300)) <= 300
    # Default ranges: envelope to 5.5 × the highest defect (BPFI), acceleration to 20 × shaft.
    assert cursors.default_range("envelope", shaft, defects, 1000) == (
        0.0,
        pytest.approx(5.5 * expected["bpfi"]),
    )
    assert cursors.default_range("envelope", shaft, defects, 290.6) == (0.0, 290.6)
    assert cursors.default_range("acceleration", shaft, defects, 12800) == (
        0.0,
        pytest.approx(20 * shaft),
    )
    assert cursors.default_range("acceleration", None, {}, 12800) == (0.0, 12800)
    # A pipeline without a speed has no cursors at all.
    assert cursors.defect_frequencies(None, "x") == (None, {})


def test_peak_readout_known_answer() -> None:
    """A line of 0.5 g at 100 Hz on a 0.01 g floor: found at 100 Hz, 0.5 g, 34 dB over it."""
    from pdm.dashboard import cursors

    f = np.arange(0, 500, 0.5)
    a = np.full(f.size, 0.01)
    a[f == 101.0] = 0.5  # 1 % off the cursor: bearing slip
    mark = cursors.Cursor("bpfo", 1, "fundamental", 100.0, "BPFO", "1× BPFO")
    (got,) = cursors.peak_readout(f, a, [mark], tolerance=0.03)
    assert got.found_hz == 101.0 and got.amplitude == 0.5
    assert got.above_floor_db == pytest.approx(20 * math.log10(50), abs=0.01)
    assert cursors.peak_readout(f, a, [mark], tolerance=0.001)[0].found_hz != 101.0


def test_cursor_labels_never_overlap() -> None:
    """Whatever the cursors, labels placed for the narrowest plot do not touch there or wider."""
    from pdm.dashboard import cursors

    rng = np.random.default_rng(5)
    for _ in range(200):
        shaft = float(rng.uniform(5, 60))
        defects = {k: shaft * float(rng.uniform(0.3, 8)) for k in ("bpfo", "bpfi", "bsf", "ftf")}
        marks = cursors.cursors(shaft, defects, list(cursors.FAMILIES), sidebands=True)
        lo, hi = 0.0, float(rng.uniform(50, 2000))
        rows = cursors.label_rows(marks, lo, hi)
        for width in (cursors.MIN_PLOT_PX, 1500.0):
            boxes: dict[int, list[tuple[float, float]]] = {}
            for m, r in zip(marks, rows, strict=True):
                if r < 0:
                    continue
                assert m.label and lo <= m.freq_hz <= hi
                x = (m.freq_hz - lo) / (hi - lo) * width
                half = len(m.label) * cursors.CHAR_PX / 2
                boxes.setdefault(r, []).append((x - half, x + half))
            for spans in boxes.values():
                spans.sort()
                for (_a0, a1), (b0, _b1) in itertools.pairwise(spans):
                    assert b0 >= a1, (width, spans)


def test_zone_bands_follow_iso_group_and_foundation() -> None:
    pl = load_pipeline(PIPELINES / "demo.toml")  # group 2, rigid
    bands = data.zone_bands(pl)
    assert [(b["zone"], b["lo"], b["hi"]) for b in bands[:3]] == [
        ("A", 0.0, 1.4),
        ("B", 1.4, 2.8),
        ("C", 2.8, 4.5),
    ]
    assert bands[3]["lo"] == 4.5 and bands[3]["hi"] == pytest.approx(6.75)
    assert data.zone_bands(pl, top=20.0)[3]["hi"] == 20.0


def _status(t_s: float | None, alarm: str | None = "ok") -> MachineStatus:
    t = None if t_s is None else int(t_s * NS)
    channels = {
        "x_g": {"velocity_rms_mm_s": 2.0, "iso_zone": "B"},
        "y_g": {"velocity_rms_mm_s": 3.1, "iso_zone": "C"},
    }
    return MachineStatus("demo-pump", t, 0.5, "ok", "m1", "", alarm, t, channels)


def test_staleness_and_tile_state() -> None:
    pl = load_pipeline(PIPELINES / "demo.toml")
    assert data.stale_after_s(pl) == 10.0  # 3 × 0.08 s hop is below the 10 s floor
    assert data.stale_after_s(None) == 10.0
    fresh = data.machine_tile(_status(1000.0), pl, now_s=1005.0)
    assert not fresh.stale and fresh.shown == "ok" and fresh.colour == data.STATE_COLOURS["ok"]
    assert fresh.filled
    assert fresh.iso_zone == "C" and fresh.velocity_rms_mm_s == 3.1
    assert [c.label for c in fresh.channels] == ["Motor DE · horizontal", "Motor DE · vertical"]
    card = json.loads((REPO / "models" / "demo-pump" / "model.json").read_text())
    assert fresh.danger == card["score"]["danger"]  # the demo model's danger threshold
    old = data.machine_tile(_status(1000.0), pl, now_s=1011.0)
    # Stale: the last known state's colour only as a frame, never a filled (green) tile.
    assert old.stale and not old.filled and old.label == "OK"
    assert old.colour == data.STATE_COLOURS["stale"]  # not even a green frame
    unk_ok = data.machine_tile(_status(1000.0), pl, now_s=1005.0, unknown="unreachable")
    assert unk_ok.label == "UNKNOWN" and unk_ok.colour == data.STATE_COLOURS["stale"]
    nodata = data.machine_tile(_status(None, None), pl, now_s=1.0)
    assert nodata.stale and nodata.state == "no data" and nodata.never_had_data
    fault = [StateChange("demo-pump", 999, "ok", "sensor_fault", "flat", sensor="motor_de")]
    t = data.machine_tile(_status(1000.0), pl, fault, now_s=1000.0)
    assert t.shown == "sensor_fault" and t.sensor_faults == ("Motor DE",)
    assert t.colour == data.STATE_COLOURS["sensor_fault"]
    cleared = [
        StateChange("demo-pump", 1000, "sensor_fault", "ok", "back", sensor="motor_de"),
        *fault,
    ]
    assert data.machine_tile(_status(1000.0), pl, cleared, now_s=1000.0).shown == "ok"
    trip = [StateChange("demo-pump", 998 * NS, "ok", "trip", "anomaly score 4.36e+03 ≥ trip")]
    tt = data.machine_tile(_status(1000.0), pl, trip + fault, now_s=1000.0)
    assert tt.shown == "trip" and tt.since_ns == 998 * NS and tt.unacknowledged
    assert tt.reason.startswith("anomaly score")
    # An acknowledgement after the trip (newest first in the log) names who and when.
    ack = Event(
        "demo-pump",
        999 * NS,
        "acknowledge",
        "info",
        "acknowledged by M. Keller: trip acknowledged by M. Keller; it ends when …",
        detail="bearing checked",
    )
    acked = data.machine_tile(_status(1000.0), pl, [ack, *trip], now_s=1000.0)
    assert acked.ack_by == "M. Keller" and acked.ack_ns == 999 * NS and not acked.unacknowledged
    assert acked.ack_comment == "bearing checked"
    # An acknowledgement of an earlier latch does not carry over to a new one.
    assert data.machine_tile(_status(1000.0), pl, [*trip, ack], now_s=1000.0).unacknowledged
    # The alarm state's owner wins over history; when it does not answer: UNKNOWN, framed.
    from pdm.dashboard.status import AlarmStatus

    owned = AlarmStatus("demo-pump", "danger", 990 * NS, "why", "ann", 995 * NS, "c")
    od = data.machine_tile(_status(1000.0), pl, trip, now_s=1000.0, alarm=owned)
    assert od.state == "danger" and od.since_ns == 990 * NS and od.ack_by == "ann"
    unk = data.machine_tile(_status(1000.0), pl, trip, now_s=1000.0, unknown="unreachable")
    assert unk.label == "UNKNOWN" and not unk.filled and unk.shown == "trip"
    # Worst first: trip before danger before alert before ok; never-had-data last.
    tiles = [fresh, od, tt, nodata, t]
    order = [x.shown for x in sorted(tiles, key=data.Tile.rank)]
    assert order == ["trip", "danger", "sensor_fault", "ok", "no data"]


def test_ranges_anchor_at_newest_data() -> None:
    span = (100 * NS, 10_000 * NS)
    assert data.time_range(span, "all") == (100 * NS, 10_000 * NS + 1)
    assert data.time_range(span, "last 1 h") == (10_000 * NS + 1 - 3600 * NS, 10_000 * NS + 1)
    assert data.time_range(span, "last 7 d") == (100 * NS, 10_000 * NS + 1)
    assert data.time_range(None, "all") is None


def test_store_reads(replayed: Path) -> None:
    from pdm.dashboard.context import load_context

    ctx = load_context(["--data-dir", str(replayed), "--pipelines", str(PIPELINES)])
    with ctx.store() as store:
        span = data.data_span(store, "demo-pump")
        assert span is not None
        assert span[0] == 1767225600 * NS  # the recording starts at 2026-01-01T00:00:00Z
        assert (span[1] - span[0]) / NS == pytest.approx(11.68)
        start, end = data.time_range(span, "all") or (0, 0)
        score = data.trend_rows(store, "demo-pump", "score", start, end)
        assert len(score) == 147  # one bucket per window at this span
        assert max(r["max"] for r in score) > 100  # the outer-race fault (alert 1, danger ~5.5)
        vel = data.trend_rows(store, "demo-pump", "velocity_rms_mm_s", start, end)
        assert {r["channel"] for r in vel} == {"x_g", "y_g"}
        spectra = data.recent_spectra(store, ctx.store_url, "demo-pump", "x_g", "power")
        assert len(spectra) >= 1 and spectra == sorted(spectra, key=lambda s: s.t_ns)
        rows = data.waterfall_rows(spectra, lines=100)
        assert len(rows) <= 100 * len(spectra)
        # peak-hold: the strongest line survives the merge
        peak = max(float(sp.values.max()) for sp in spectra)
        assert max(r["amplitude"] for r in rows) == pytest.approx(peak)
        caps = [c for c in store.log("demo-pump", kinds=("captures",))]
        wf = data.capture_waveform(replayed, caps[0], points=500)  # type: ignore[arg-type]
        raw = np.load(replayed / caps[0].path)  # type: ignore[union-attr]
        x = raw[-1, 0]
        xs = [r for r in wf.rows if r["channel"] == "x_g"]
        assert min(r["min_g"] for r in xs) == pytest.approx(float(x.min()))
        assert max(r["max_g"] for r in xs) == pytest.approx(float(x.max()))
        assert xs[-1]["t_s"] < 8192 / 25600
        tiles = data.machine_tiles(store, ctx.pipelines)
        demo = next(t for t in tiles if t.machine == "demo-pump")
        assert demo.state == "trip" and demo.stale and demo.diagnosis == "bearing_outer_race"
        assert not math.isnan(demo.score or math.nan)


# --- launcher ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "mysql://x"], "unknown store"),
        (["--store", "influx1://pdm:secret@h:8086/db"], "no password in the URL"),
        (["--port", "0"], "--port 0"),
        (["--port", "http"], "invalid int value"),
        (["--pipelines", "/nonexistent/pipelines"], "no such directory"),
        (["--api", "127.0.0.1:8470"], "expected http"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_dashboard_main_argument_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dashboard_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "secret" not in err


def test_dashboard_command_line() -> None:
    cmd = build_command(
        parse_args(["--store", "sqlite:///x.db", "--port", "9000", "--data-dir", "/d"])
    )
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("pdm/dashboard/app.py")
    opts = dict(zip(cmd[5:-5:2], cmd[6:-4:2], strict=False))
    assert opts["--server.port"] == "9000" and opts["--server.address"] == "127.0.0.1"
    assert opts["--browser.gatherUsageStats"] == "false"
    assert opts["--server.headless"] == "true"
    assert cmd[cmd.index("--") + 1 :] == ["--store", "sqlite:///x.db", "--data-dir", "/d"]


def test_dashboard_main_passes_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], env: dict[str, str]) -> int:
        seen.append(cmd)
        assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
        return 3

    monkeypatch.setattr("pdm.dashboard.launch.run_child", fake_run)
    assert dashboard_main(["--port", "8600"]) == 3
    assert "8600" in seen[0]


def test_run_child_passes_exit_code_and_forwards_sigterm() -> None:
    from pdm.dashboard.launch import run_child

    assert run_child([sys.executable, "-c", "raise SystemExit(7)"], dict(os.environ)) == 7
    # SIGTERM to us reaches the child: it exits by the signal, and we return its status
    code = "import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(30)"
    assert run_child([sys.executable, "-c", code], dict(os.environ)) == -signal.SIGTERM


def test_live_data_from_the_service_shows_fresh_on_the_overview(tmp_path: Path) -> None:
    """What ./run.sh brings up: the service on the simulator writing the embedded store, and
    the dashboard reading it — the demo tile is live (not stale) and its windows keep coming."""
    import subprocess
    import time

    data_dir = tmp_path / "live"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdm.cli",
            "run",
            str(PIPELINES / "demo.toml"),
            "--simulate",
            "--data-dir",
            str(data_dir),
            "--api",
            "off",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        tile = ""
        while time.monotonic() < deadline:
            time.sleep(1)
            if not (data_dir / "history.db").exists():
                continue
            at = _page("overview", data_dir)
            assert not at.exception, at.exception
            tile = next((m.value for m in at.markdown if 'data-machine="demo-pump"' in m.value), "")
            if 'data-state="ok"' in tile and 'data-stale="false"' in tile:
                break
        assert 'data-state="ok"' in tile and 'data-stale="false"' in tile, tile
    finally:
        proc.terminate()
        proc.wait(20)
