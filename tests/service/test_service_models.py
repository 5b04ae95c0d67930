"""Safe model updates through the control API: upload a candidate, run it in shadow, promote it,
roll back — an in-process service fed by the simulator, real HTTP on 127.0.0.1.

The candidate is a second model trained here on the healthy fixture (another seed and alert
rate than the demo model's), so it is a real, different, checkable model for the same pipeline.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import socket
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_service import _app, _events, _version

from pdm.history import open_store
from pdm.history.records import StateChange
from pdm.service.api import ControlAPI

REPO = Path(__file__).resolve().parents[2]
MACHINE = "demo-pump"
TOKEN = "t0ken-for-tests-0123456789abcdef"
GZIP = {"Content-Type": "application/gzip"}


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model for the demo pipeline, trained once for the module."""
    from pdm.config import load_pipeline
    from pdm.scoring.train import collect, train

    d = tmp_path_factory.mktemp("candidate")
    text = (REPO / "pipelines" / "demo.toml").read_text()
    (d / "pump.toml").write_text(text.replace("../models/demo-pump", f"{d}/unused"))
    pl = load_pipeline(d / "pump.toml")
    out = d / "model"
    train(
        collect([REPO / "fixtures" / "healthy.csv.gz"], pl),
        out,
        detector="gmm",
        alerts_per_week=2.0,
        # One Gaussian fits alike whatever the seed, and the least alert decides the threshold
        # of a fixture this steady whatever the rate: differ by the windows trained on.
        holdout=0.35,
        seed=7,
    )
    return out


def _tgz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz holding ``files`` (member name → bytes) and symlinks (name → target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _bundle(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _wait(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Path]]:
    """The started in-process service and its models root; parametrized ``"keys"`` (indirect):
    the demo model signed and ``[model] public_keys`` set."""
    extra, sign_with = "", None
    if getattr(request, "param", None) == "keys":
        from pdm.scoring.update import generate_keypair

        keys = tmp_path / "keys"
        keys.mkdir()
        generate_keypair(keys / "pdm.key", keys / "pdm.pub")
        extra, sign_with = f'public_keys = ["{keys}/pdm.pub"]\n', keys / "pdm.key"
    app, models = _app(tmp_path, extra, sign_with=sign_with)
    app.start()
    try:
        yield app, models
    finally:
        app.stop()


@pytest.fixture
def client(service: tuple[Any, Path]) -> Iterator[httpx.Client]:
    with (
        ControlAPI(service[0], port=0, timeout_s=5.0) as api,
        httpx.Client(base_url=api.url, timeout=10.0, trust_env=False) as c,
    ):
        yield c


def _status(c: httpx.Client) -> dict[str, Any]:
    r = c.get(f"/status/{MACHINE}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _changes(app: Any) -> list[StateChange]:
    app.writer.drain(5)
    with open_store(f"sqlite:///{app.opts.data_dir.parent}/h.db") as st:
        return [r for r in st.log(MACHINE, limit=1000) if isinstance(r, StateChange)]


def test_upload_shadow_promote_rollback(
    service: tuple[Any, Path], client: httpx.Client, candidate: Path
) -> None:
    app, models = service
    runner = app.runners[MACHINE]
    old = _version(app)
    old_onnx = (models / MACHINE / "model.onnx").read_bytes()
    assert _status(client)["shadow"] is None

    r = client.put(f"/models/{MACHINE}/candidate", content=_tgz(_bundle(candidate)), headers=GZIP)
    assert r.status_code == 202, r.text
    new = r.json()["candidate"]
    assert new != old and r.json()["active"] == old
    assert sorted(p.name for p in (models / f"{MACHINE}.candidate").iterdir()) == [
        "model.json",
        "model.onnx",
    ]

    # The shadow scores every window beside the active model; its figures grow.
    first = _wait(lambda: (s := _status(client)["shadow"]) and s["windows"] >= 3 and s, "shadow")
    assert first["version"] == new and first["active_version"] == old
    later = _wait(
        lambda: (s := _status(client)["shadow"])["windows"] >= first["windows"] + 5 and s, "more"
    )
    assert sum(sum(row.values()) for row in later["confusion"].values()) == later["windows"]
    assert 0.0 <= later["agreement"] <= 1.0 and later["mean_abs_diff"] is not None

    # A candidate that calls every window danger changes nothing but its own figures.
    shadow_model = runner.shadow.model
    shadow_model.score = lambda x: (np.full(len(x), 50.0), np.zeros((len(x), 1)))
    try:
        _wait(lambda: _status(client)["shadow"]["confusion"]["ok"]["danger"] >= 10, "danger shadow")
    finally:
        del shadow_model.score
    st = _status(client)
    assert st["state"] == "ok" and st["model_version"] == old and st["score"] < 1.0
    assert _changes(app) == []

    # Changed on disk after its check (here: corrupted): not promoted; the watcher rejects it.
    onnx = models / f"{MACHINE}.candidate" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-50])
    r = client.post(f"/models/{MACHINE}/promote", json={"by": "ana"})
    assert r.status_code == 409 and "changed" in r.json()["error"]
    (msg,) = _wait(lambda: _events(app, "model_rejected"), "the rejection")
    assert msg.startswith("candidate rejected:") and "model.onnx" in msg and "\n" not in msg
    n = runner.stats.windows
    _wait(lambda: runner.stats.windows > n + 3, "the active model to keep scoring")
    assert _status(client)["shadow"] is None and _version(app) == old

    # Upload again (replaces the broken candidate), then promote.
    r = client.put(f"/models/{MACHINE}/candidate", content=_tgz(_bundle(candidate)), headers=GZIP)
    assert r.status_code == 202, r.text
    _wait(lambda: _status(client)["shadow"]["windows"] >= 2, "the shadow again")
    r = client.post(f"/models/{MACHINE}/promote", json={"by": " "})
    assert r.status_code == 400 and "name" in r.json()["error"]
    # Too little shadow evidence: refused (issue 16, item 2: promoted on zero windows).
    r = client.post(f"/models/{MACHINE}/promote", json={"by": "ana", "comment": "ECO-17"})
    assert r.status_code == 409 and "a promotion needs 100" in r.json()["error"], r.text
    # Forcing needs a token on the API (who forces must be known).
    r = client.post(f"/models/{MACHINE}/promote", json={"by": "ana", "force": True})
    assert r.status_code == 403 and "token" in r.json()["error"]
    app.opts.promote_min_windows = 8
    _wait(lambda: _status(client)["shadow"]["windows"] >= 8, "enough shadow windows")
    r = client.post(f"/models/{MACHINE}/promote", json={"by": "ana", "comment": "ECO-17"})
    assert r.status_code == 200, r.text
    assert (r.json()["active"], r.json()["previous"]) == (new, old)
    _wait(lambda: _version(app) == new, "the promoted model to score")
    assert _status(client)["model_version"] == new and _status(client)["shadow"] is None
    assert (models / f"{MACHINE}.previous" / "model.onnx").read_bytes() == old_onnx
    assert (models / MACHINE / "model.onnx").read_bytes() == (candidate / "model.onnx").read_bytes()
    assert not (models / f"{MACHINE}.candidate").exists()
    app.writer.drain(5)
    with open_store(f"sqlite:///{app.opts.data_dir.parent}/h.db") as db:
        (ev,) = [
            e for e in db.log(None, kinds=("events",), limit=1000) if e.type == "model_promoted"
        ]
    assert f"{old} → {new} promoted by ana" in ev.message and "ECO-17" in ev.message
    detail = json.loads(ev.detail)
    assert (detail["by"], detail["old"], detail["new"]) == ("ana", old, new)
    assert detail["shadow"]["windows"] >= 8 and "confusion" in detail["shadow"]
    assert detail["forced"] is False and "FORCED" not in ev.message
    r = client.post(f"/models/{MACHINE}/promote", json={"by": "ana"})
    assert r.status_code == 404 and "no candidate" in r.json()["error"]
    time.sleep(0.5)  # the watcher sees the new live directory: no second swap
    assert _events(app, "model_swapped") == []

    # Roll back: the old model scores again; the one rolled back from is the previous one.
    r = client.post(f"/models/{MACHINE}/rollback", json={"by": "bo"})
    assert r.status_code == 200, r.text
    assert (r.json()["active"], r.json()["previous"]) == (new, old)[::-1]
    _wait(lambda: _version(app) == old, "the rolled-back model to score")
    assert (models / MACHINE / "model.onnx").read_bytes() == old_onnx
    assert (models / f"{MACHINE}.previous" / "model.onnx").read_bytes() == (
        candidate / "model.onnx"
    ).read_bytes()
    assert any("rolled back by bo" in m for m in _events(app, "model_rolled_back"))
    assert client.get(f"/models/{MACHINE}/promote").status_code == 405
    assert client.post("/models/nope/rollback", json={"by": "bo"}).status_code == 404


def _raw(port: int, data: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_unsafe_or_broken_uploads_are_refused_and_nothing_is_written(
    service: tuple[Any, Path], client: httpx.Client, candidate: Path, tmp_path: Path
) -> None:
    app, models = service
    old = _version(app)
    good = _bundle(candidate)
    url = f"/models/{MACHINE}/candidate"
    cases = [
        (_tgz({**good, "../evil.txt": b"x"}), "'..'"),
        (_tgz({"model.json": good["model.json"], "../../model.onnx": b"x"}), "'..'"),
        (_tgz({"/tmp/model.onnx": b"x", **good}), "absolute"),
        (_tgz({**good, "notes.txt": b"hello"}), "a bundle holds only"),
        (_tgz({**good, "sub/model.sig": b"{}"}), "a bundle holds only"),
        (_tgz({"model.json": good["model.json"]}, {"model.onnx": "/etc/passwd"}), "regular"),
        (_tgz({"model.json": good["model.json"]}), "model.onnx missing"),
        (b"not a gzip at all", "not a tar.gz"),
        (_tgz({**good, "model.onnx": good["model.onnx"][:-100]}), "model.onnx"),  # corrupt
    ]
    for body, reason in cases:
        r = client.put(url, content=body, headers=GZIP)
        assert r.status_code == 400 and reason in r.json()["error"], (reason, r.text)
        assert "\n" not in r.json()["error"] and ".upload-" not in r.json()["error"]
    r = client.put(url, content=_tgz(good), headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 415
    # The limit is checked before anything is read.
    status, body = _raw(
        client.base_url.port or 0,
        f"PUT {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/gzip\r\n"
        f"Content-Length: {64 * 1024 * 1024 + 1}\r\n\r\n".encode(),
    )
    assert status == 413 and "67108864" in body["error"]
    assert client.post(url, content=_tgz(good), headers=GZIP).status_code == 405

    # Nothing written; every refusal is in the history; the active model keeps scoring.
    assert sorted(p.name for p in models.iterdir()) == [MACHINE]
    assert not list(tmp_path.rglob("evil.txt"))
    rejected = _events(app, "model_rejected")
    assert len(rejected) == len(cases)
    assert all(m.startswith("uploaded candidate rejected: ") for m in rejected)
    assert _status(client)["shadow"] is None
    n = app.runners[MACHINE].stats.windows
    _wait(lambda: app.runners[MACHINE].stats.windows > n + 3, "the active model to keep scoring")
    assert _version(app) == old


@pytest.mark.parametrize("service", ["keys"], indirect=True)
def test_with_keys_only_a_signed_upload_runs_and_promote_needs_the_token(
    service: tuple[Any, Path], client: httpx.Client, candidate: Path, tmp_path: Path
) -> None:
    from pdm.scoring.update import sign_bundle

    app, models = service
    old = _version(app)
    url = f"/models/{MACHINE}/candidate"
    r = client.put(url, content=_tgz(_bundle(candidate)), headers=GZIP)
    assert r.status_code == 400 and "not signed" in r.json()["error"]
    assert not (models / f"{MACHINE}.candidate").exists()
    signed = tmp_path / "signed"
    shutil.copytree(candidate, signed)
    sign_bundle(signed, tmp_path / "keys" / "pdm.key")
    r = client.put(url, content=_tgz(_bundle(signed)), headers=GZIP)
    assert r.status_code == 202 and r.json()["signed_by"], r.text

    # Off loopback every model endpoint needs the token.
    with (
        ControlAPI(app, host="0.0.0.0", port=0, token=TOKEN) as api,
        httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=10.0, trust_env=False) as c,
    ):
        r = c.post(f"/models/{MACHINE}/promote", json={"by": "ana"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.put(url, content=_tgz(_bundle(signed)), headers=GZIP).status_code == 401
        assert c.post(f"/models/{MACHINE}/rollback", json={"by": "ana"}).status_code == 401
        assert _version(app) == old
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = c.post(f"/models/{MACHINE}/promote", json={"by": "ana"}, headers=auth)
        assert r.status_code == 409 and "shadow" in r.json()["error"]  # too little evidence
        body = {"by": "ana", "comment": "hotfix", "force": True}
        r = c.post(f"/models/{MACHINE}/promote", json=body, headers=auth)
        assert r.status_code == 200, r.text
    _wait(lambda: _version(app) != old, "the signed candidate to score")
    assert (models / MACHINE / "model.sig").exists()
    (msg,) = _events(app, "model_promoted")
    assert (
        "promoted by ana" in msg and "(hotfix); FORCED with" in msg and "of the 100 required" in msg
    )


def test_extract_bundle_bounds_what_it_reads(tmp_path: Path, candidate: Path) -> None:
    """Unit: `tar -C DIR .` layouts pass; oversized headers and members are refused from their
    header, before their data is read."""
    from pdm.service.app import BUNDLE_LIMITS, extract_bundle

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(candidate, arcname=".")  # ".", "./model.json", "./model.onnx"
    out = tmp_path / "ok"
    out.mkdir()
    assert sorted(extract_bundle(io.BytesIO(buf.getvalue()), out)) == ["model.json", "model.onnx"]
    assert (out / "model.onnx").read_bytes() == (candidate / "model.onnx").read_bytes()
    assert (out / "model.onnx").stat().st_mode & 0o777 == 0o644

    def refused(tar_bytes: bytes, reason: str) -> None:
        d = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        with pytest.raises(ValueError, match=reason):
            extract_bundle(io.BytesIO(gzip.compress(tar_bytes)), d)

    huge = tarfile.TarInfo("model.onnx")
    huge.size = BUNDLE_LIMITS["model.onnx"] + 1
    refused(huge.tobuf(), "at most")  # the header alone: no data follows
    pax = tarfile.TarInfo("model.json")
    pax.pax_headers = {"comment": "x" * (128 << 10)}
    refused(pax.tobuf(tarfile.PAX_FORMAT), "extended header")
    twice = io.BytesIO()
    with tarfile.open(fileobj=twice, mode="w") as tar:
        for _ in range(2):
            info = tarfile.TarInfo("model.json")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    refused(twice.getvalue(), "twice")
