"""``pdm-edge train --from-store``: a model from what the history store holds, healthy windows only.

The store is written by a real ``pdm-edge replay`` of a simulated recording (the demo pump,
its running unbalance, an outer-race defect from 40 s): the demo model, the real alarm engine
and the real SQLite store make the rows and the state changes. The healthy-window rule is a
known-answer table; the trained model goes through every check a candidate must pass, and
is signed and sent to a running service's control API (the existing model-update path).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_service_models import MACHINE, TOKEN, service  # noqa: F401  (the fixture)

from pdm.cli import main
from pdm.history import open_store
from pdm.history.records import StateChange
from pdm.history.training import healthy_windows, stored_windows

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z, the recording's start
SINCE, UNTIL = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
ONSET_S = 40.0


def _change(t_s: float, old: str, new: str, sensor: str = "") -> StateChange:
    return StateChange("m", round(t_s * S), old, new, "test", sensor=sensor)


@pytest.mark.parametrize(
    ("changes", "bad"),
    [
        ([], []),
        # alert at 10 s (its 3 debounce windows 7, 8, 9 too), back to ok at 14 s
        ([_change(10, "ok", "alert"), _change(14, "alert", "ok")], [7, 8, 9, 10, 11, 12, 13]),
        # in danger before the range began, ok from 2 s: the range starts alarmed
        ([_change(-50, "ok", "danger"), _change(2, "danger", "ok")], [0, 1]),
        # a sensor fault from 17 s that never ends; ok → alert → danger counts once
        ([_change(17, "ok", "sensor_fault", sensor="de")], [14, 15, 16, 17, 18, 19]),
        ([_change(5, "ok", "alert"), _change(6, "alert", "danger"), _change(8, "danger", "ok")],
         [2, 3, 4, 5, 6, 7]),
        # given in any order
        ([_change(14, "alert", "ok"), _change(10, "ok", "alert")], [7, 8, 9, 10, 11, 12, 13]),
    ],
)  # fmt: skip
def test_windows_in_or_just_before_an_alarm_are_left_out(
    changes: list[StateChange], bad: list[int]
) -> None:
    t = np.arange(20, dtype=np.int64) * S  # a window a second
    ok, n_bad = healthy_windows(t, changes, debounce_windows=3)
    assert np.flatnonzero(~ok).tolist() == bad and n_bad == len(bad)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store holding 60 s of the demo pump, alarmed from ~40 s on; a pipeline without a model."""
    d = tmp_path_factory.mktemp("store")
    rec = d / "rec.csv"
    for argv in (
        ["simulate", "--out", str(rec), "--duration", "60", "--seed", "3",
         "--fault", "unbalance:0.05", "--fault", f"bpfo:0.3@{ONSET_S:g}"],
        ["replay", str(rec), "--pipeline", str(REPO / "pipelines" / "demo.toml"),
         "--store", f"sqlite:///{d}/h.db", "--data-dir", str(d / "var")],
    ):  # fmt: skip
        p = subprocess.run(
            [sys.executable, "-m", "pdm.cli", *argv], cwd=REPO, capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    first = summary["transitions"][0]
    assert first["from"] == "ok" and first["to"] != "ok"  # the fault was alarmed
    text = (REPO / "pipelines" / "demo.toml").read_text()
    (d / "pump.toml").write_text(text.replace("../models/demo-pump", f"{d}/unused"))
    return {"dir": d, "url": f"sqlite:///{d}/h.db", "pipeline": d / "pump.toml", **summary}


def _train(stored: dict[str, Any], out: Path, *extra: str) -> list[str]:
    return [
        "train", "--from-store", stored["url"], "--machine", MACHINE, "--since", SINCE,
        "--until", UNTIL, "--pipeline", str(stored["pipeline"]), "--out", str(out), *extra,
    ]  # fmt: skip


def test_a_model_is_trained_from_the_stored_healthy_windows_only(
    stored: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pdm.config import load_pipeline
    from pdm.scoring.update import check_candidate

    out = tmp_path / "model"
    assert main(_train(stored, out)) == 0
    result = json.loads(capsys.readouterr().out)
    card = json.loads((out / "model.json").read_text())
    (src,) = card["training"]["files"]
    # Every window from the first alarm on is left out, and the debounce span before it.
    first = stored["transitions"][0]["window"]
    pipeline = load_pipeline(stored["pipeline"])
    _on, of = pipeline.alarms.delays(pipeline.acquisition)
    assert src["stored_windows"] == stored["windows"]
    assert src["windows"] == first - of
    assert src["alarmed_windows"] == stored["windows"] - first + of
    assert src["sample_rate_hz"] == 25600.0 and src["store"] == stored["url"]
    assert src["t_end"] < f"2026-01-01T00:00:{ONSET_S:02.0f}"  # nothing after the onset
    assert result["calibration"]["holdout_false_alerts"] == 0
    # Every check a candidate must pass on an appliance; the defect it never saw scores high.
    report = check_candidate(out, pipeline, 25600.0)
    with open_store(stored["url"]) as st:
        rows = st.features(MACHINE, T0 + round((ONSET_S + 15) * S), T0 + 60 * S)
    w = stored_windows(rows, ("x_g", "y_g"))
    names = [f["name"] for f in card["features"]]
    x = w.x[:, [list(w.names).index(n) for n in names]]
    scores, _ = report.model.score(x)
    assert np.median(scores) > 1.0, "the outer-race defect scores above the alert threshold"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--since", "2026-01-01T00:00:45Z"], "stored windows between"),
        (["--fs", "24000"], "at 25600 Hz, not at the 24000 Hz given"),
        (["--since", "2026-01-01T00:02:00Z", "--until", "2026-01-01T00:03:00Z"],
         "no feature rows of machine 'demo-pump'"),
        (["--until", "1999-01-01T00:00:00Z"], "must be after --since"),
        (["--since", "yesterday"], "--since: not an ISO 8601 time"),
        (["--machine", "fan-9"], "the pipeline is machine 'demo-pump'"),
        (["a.csv"], "give recordings or --from-store, not both"),
        (["--from-store", ""], "give healthy recordings or --from-store"),
    ],
)  # fmt: skip
def test_what_cannot_be_trained_is_refused_with_one_line(
    stored: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    argv = _train(stored, tmp_path / "model")
    if extra[0] == "--fs" or not extra[0].startswith("--"):
        argv += extra
    else:
        for flag, value in zip(extra[::2], extra[1::2], strict=True):
            argv[argv.index(flag) + 1] = value
    if extra[0] == "--fs":
        argv[argv.index("--pipeline") : argv.index("--pipeline") + 2] = [
            "--pipeline",
            str(_without_rate(stored["pipeline"], tmp_path)),
        ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pdm-edge: error: ") and words in err and "\n" not in err, err
    assert not (tmp_path / "model").exists()


def _without_rate(pipeline: Path, tmp_path: Path) -> Path:
    """The pipeline without its sample rate (so that --fs may be given with it)."""
    p = tmp_path / "norate.toml"
    p.write_text(
        "\n".join(
            ln for ln in pipeline.read_text().splitlines() if not ln.startswith("sample_rate_hz")
        )
    )
    return p


@pytest.mark.parametrize("service", ["keys"], indirect=True)
def test_the_model_is_signed_and_sent_to_the_appliance_as_its_candidate(
    stored: dict[str, Any],
    service: tuple[Any, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pdm.service.api import ControlAPI

    app, models = service
    out = tmp_path / "model"
    with ControlAPI(app, host="0.0.0.0", port=0, token=TOKEN) as api:
        url = f"http://127.0.0.1:{api.port}"
        # Without the token the appliance refuses, and says why in one line.
        monkeypatch.delenv("PDM_API_TOKEN", raising=False)
        assert main(_train(stored, out, "--send", url)) == 2
        assert "HTTP 401" in capsys.readouterr().err
        # Unsigned, with the token: the appliance has public keys, so it refuses that too.
        monkeypatch.setenv("PDM_API_TOKEN", TOKEN)
        assert main(_train(stored, out, "--force", "--send", url)) == 2
        err = capsys.readouterr().err
        assert "HTTP 400" in err and "not signed" in err
        key = tmp_path / "keys" / "pdm.key"
        argv = _train(stored, out, "--force", "--sign-key", str(key), "--send", url)
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["sent"]["signed_by"] and (out / "model.sig").is_file()
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            r = c.get(f"/status/{MACHINE}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.json()["shadow"]["version"] == result["sent"]["candidate"], r.json()
    assert (models / f"{MACHINE}.candidate" / "model.sig").is_file()


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (202, b"x" * (1 << 20), "the answer is over 65536 bytes"),
        (500, b"<html>oops</html>", "refused the model (HTTP 500): Internal Server Error"),
        (
            400,
            b'{"error": "model.json: bad card\\nsecond line"}',
            "(HTTP 400): model.json: bad card",
        ),
    ],
)
def test_sending_reads_a_bounded_answer_and_says_why_it_was_refused(
    stored: dict[str, Any], tmp_path: Path, status: int, body: bytes, words: str
) -> None:
    """Whoever answers at --send is a peer like any other: its answer is read up to 64 KiB
    and its reason shown as one line (a real HTTP server on 127.0.0.1)."""
    import http.server
    import threading

    from pdm.errors import ModelError
    from pdm.scoring.update import send_bundle

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    out = tmp_path / "model"
    assert main(_train(stored, out)) == 0
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            with pytest.raises(ModelError) as err:
                send_bundle(out, f"http://127.0.0.1:{srv.server_address[1]}", MACHINE)
        finally:
            srv.shutdown()
    assert words in str(err.value) and "\n" not in str(err.value)
