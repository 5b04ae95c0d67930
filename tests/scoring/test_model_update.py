"""Safe model updates: signatures, candidate checks, the atomic swap, shadow statistics, the CLI.

Every test works on a copy of the committed ``models/demo-pump`` in ``tmp_path``; the
committed model is never modified (``test_committed_model_is_untouched`` checks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from numpy.testing import assert_allclose
from onnx import numpy_helper

from pdm.config import Pipeline, load_pipeline
from pdm.errors import ModelError
from pdm.scoring import install, update
from pdm.scoring.runtime import Model
from pdm.scoring.update import (
    CandidateReport,
    ShadowStats,
    check_candidate,
    generate_keypair,
    install_candidate,
    rollback,
    sign_bundle,
    verify_bundle,
)
from pdm.tools.model import model_main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo-pump"
DEMO_PIPELINE = REPO / "pipelines" / "demo.toml"
FS = 25600.0


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


COMMITTED = {n: sha(DEMO / n) for n in update.BUNDLE_FILES}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs: ``a`` (trusted) and ``b`` (someone else's)."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for k in ("a", "b"):
        generate_keypair(d / f"{k}.key", d / f"{k}.pub")
        out[k], out[f"{k}_pub"] = d / f"{k}.key", d / f"{k}.pub"
    return out


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return load_pipeline(DEMO_PIPELINE)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A fresh copy of the committed demo model."""
    d = tmp_path / "candidate"
    shutil.copytree(DEMO, d)
    return d


@pytest.fixture
def signed(bundle: Path, keys: dict[str, Path]) -> Path:
    sign_bundle(bundle, keys["a"])
    return bundle


def edit_card(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    card = json.loads((directory / "model.json").read_text())
    edit(card)
    (directory / "model.json").write_text(json.dumps(card, indent=2))


def force_sign(directory: Path, private: Path) -> None:
    """A signature written from the format's description alone, for bundles ``sign_bundle``
    refuses (it signs only models that load): a broken model signed by a trusted key."""
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    files = {n: sha(directory / n) for n in ("model.onnx", "model.json")}
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = {
        "schema_version": 1,
        "algorithm": "ed25519",
        "key_id": hashlib.sha256(raw).hexdigest()[:16],
        "files": files,
        "signature": base64.b64encode(
            key.sign(json.dumps(files, sort_keys=True, separators=(",", ":")).encode())
        ).decode(),
    }
    (directory / "model.sig").write_text(json.dumps(sig))


def service_update(
    candidate: Path, root: Path, pipeline: Pipeline, public: list[Path]
) -> CandidateReport:
    """What the appliance service does: check, then install (module attribute, so a spy sees it)."""
    report = check_candidate(candidate, pipeline, FS, public_keys=public)
    update.install_candidate(candidate, root, "pump", expect=report)
    return report


# --------------------------------------------------------------------------- keys and signatures


def test_keygen_writes_pem_files_private_0600_and_never_overwrites(tmp_path: Path) -> None:
    kid = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert re.fullmatch(r"[0-9a-f]{16}", kid)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert (tmp_path / "k.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    pub = serialization.load_pem_public_key((tmp_path / "k.pub").read_bytes())
    assert isinstance(pub, Ed25519PublicKey)
    assert hashlib.sha256(pub.public_bytes_raw()).hexdigest()[:16] == kid
    before = (tmp_path / "k.pem").read_bytes()
    with pytest.raises(ModelError, match=r"k\.pem: already exists; refusing to overwrite"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "other.pub")
    assert (tmp_path / "k.pem").read_bytes() == before
    assert not (tmp_path / "other.pub").exists()


def test_sign_verify_round_trip(signed: Path, keys: dict[str, Path]) -> None:
    sig = json.loads((signed / "model.sig").read_text())
    assert sig["algorithm"] == "ed25519" and sig["schema_version"] == 1
    assert sig["files"] == {n: sha(signed / n) for n in ("model.json", "model.onnx")}
    # The signature verifies with nothing but cryptography and the documented message.
    pub = serialization.load_pem_public_key(keys["a_pub"].read_bytes())
    assert isinstance(pub, Ed25519PublicKey)
    message = json.dumps(sig["files"], sort_keys=True, separators=(",", ":")).encode()
    pub.verify(base64.b64decode(sig["signature"]), message)
    assert sig["key_id"] == hashlib.sha256(pub.public_bytes_raw()).hexdigest()[:16]
    # Keys as paths, PEM bytes, raw bytes; an untrusted key next to the trusted one is harmless.
    assert verify_bundle(signed, [keys["a_pub"]]) == sig["key_id"]
    assert verify_bundle(signed, [keys["b_pub"], keys["a_pub"].read_bytes()]) == sig["key_id"]
    assert verify_bundle(signed, [pub.public_bytes_raw()]) == sig["key_id"]


@pytest.mark.parametrize("name", ["model.onnx", "model.json"])
def test_a_file_changed_after_signing_is_named(
    signed: Path, keys: dict[str, Path], name: str
) -> None:
    data = bytearray((signed / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (signed / name).write_bytes(bytes(data))
    with pytest.raises(
        ModelError, match=rf"{re.escape(str(signed))}: {name} changed since signing"
    ) as err:
        verify_bundle(signed, [keys["a_pub"]])
    assert "\n" not in str(err.value)


def test_a_different_key_is_an_unknown_key_id(signed: Path, keys: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match=r"signed by unknown key id '[0-9a-f]{16}' \(trusted: "):
        verify_bundle(signed, [keys["b_pub"]])


def test_a_forged_signature_is_a_bad_signature(signed: Path, keys: dict[str, Path]) -> None:
    sig = json.loads((signed / "model.sig").read_text())
    raw = bytearray(base64.b64decode(sig["signature"]))
    raw[0] ^= 0x01
    sig["signature"] = base64.b64encode(bytes(raw)).decode()
    (signed / "model.sig").write_text(json.dumps(sig))
    with pytest.raises(ModelError, match=r"bad signature \(key id [0-9a-f]{16}\)"):
        verify_bundle(signed, [keys["a_pub"]])


def test_missing_signature_when_keys_are_required(
    bundle: Path, keys: dict[str, Path], pipeline: Pipeline
) -> None:
    with pytest.raises(ModelError, match=r"candidate: not signed \(model.sig is missing\)"):
        verify_bundle(bundle, [keys["a_pub"]])
    with pytest.raises(ModelError, match=r"not signed"):
        check_candidate(bundle, pipeline, FS, public_keys=[keys["a_pub"]])
    # Without configured keys the same bundle passes: signatures are then not checked.
    assert check_candidate(bundle, pipeline, FS).key_id is None


def test_extra_and_missing_files_are_refused(signed: Path, keys: dict[str, Path]) -> None:
    (signed / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match=r"unexpected files in the bundle: notes.txt"):
        verify_bundle(signed, [keys["a_pub"]])
    (signed / "notes.txt").unlink()
    (signed / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model.onnx missing from the bundle"):
        verify_bundle(signed, [keys["a_pub"]])


def test_sign_refuses_a_model_that_does_not_load(bundle: Path, keys: dict[str, Path]) -> None:
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes()[:100])
    with pytest.raises(ModelError, match=r"does not match the card"):
        sign_bundle(bundle, keys["a"])
    assert not (bundle / "model.sig").exists()


# --------------------------------------------------------------------------- candidate checks


def test_check_candidate_reports_what_it_checked(
    signed: Path, keys: dict[str, Path], pipeline: Pipeline
) -> None:
    card = json.loads((signed / "model.json").read_text())
    rep = check_candidate(signed, pipeline, FS, public_keys=[keys["a_pub"]])
    assert rep.key_id == json.loads((signed / "model.sig").read_text())["key_id"]
    assert rep.version == card["onnx"]["sha256"][:12] and rep.detector == "gmm"
    assert (rep.alert, rep.danger) == (1.0, card["score"]["danger"])
    assert_allclose(rep.reference_score, card["reference"]["score"], rtol=1e-4)
    assert rep.files == {n: sha(signed / n) for n in ("model.json", "model.onnx")}
    assert isinstance(rep.model, Model)
    assert json.loads(json.dumps(rep.as_dict()))["version"] == rep.version
    assert rep.key_id is not None and "\n" not in rep.summary() and rep.key_id in rep.summary()


def test_supplied_reference_windows_are_scored(signed: Path, pipeline: Pipeline) -> None:
    card = json.loads((signed / "model.json").read_text())
    x = np.array([card["reference"]["features"]] * 3)
    rep = check_candidate(signed, pipeline, FS, reference=x)
    assert rep.reference_windows == 3 and rep.reference_max_score is not None
    assert_allclose(rep.reference_max_score, card["reference"]["score"], rtol=1e-4)
    d = x.shape[1]
    with pytest.raises(
        ModelError, match=rf"reference windows have {d - 1} features, the candidate takes {d}"
    ):
        check_candidate(signed, pipeline, FS, reference=x[:, : d - 1])
    x[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"reference row 1 holds non-finite features"):
        check_candidate(signed, pipeline, FS, reference=x)


def truncate_and_resign(d: Path, keys: dict[str, Path]) -> None:
    """A broken model that a trusted trainer signed anyway: the hashes all match."""
    data = (d / "model.onnx").read_bytes()[:1000]
    (d / "model.onnx").write_bytes(data)
    edit_card(d, lambda c: c["onnx"].update(sha256=hashlib.sha256(data).hexdigest()))
    force_sign(d, keys["a"])


def truncate_after_signing(d: Path, keys: dict[str, Path]) -> None:
    (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:1000])


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (truncate_after_signing, r"model.onnx changed since signing"),
        (truncate_and_resign, r"model.onnx: not an ONNX model"),
    ],
)
def test_a_corrupt_onnx_candidate_is_rejected_before_install(
    signed: Path,
    keys: dict[str, Path],
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    breakage: Callable[[Path, dict[str, Path]], None],
    message: str,
) -> None:
    root = tmp_path / "models"
    good = tmp_path / "good"
    shutil.copytree(signed, good)
    service_update(good, root, pipeline, [keys["a_pub"]])
    live_before = {n: sha(root / "pump" / n) for n in ("model.json", "model.onnx")}

    installs: list[Any] = []
    monkeypatch.setattr(update, "install_candidate", lambda *a, **k: installs.append(a))
    breakage(signed, keys)
    with pytest.raises(ModelError, match=message) as err:
        service_update(signed, root, pipeline, [keys["a_pub"]])
    assert "\n" not in str(err.value)
    assert installs == []
    assert {n: sha(root / "pump" / n) for n in live_before} == live_before
    # The old model still loads and scores.
    Model.load(root / "pump", pipeline, FS)


def test_a_candidate_for_another_pipeline_is_rejected(
    signed: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    text = DEMO_PIPELINE.read_text().replace("window_samples = 8192", "window_samples = 4096")
    (tmp_path / "short.toml").write_text(text)
    other = load_pipeline(tmp_path / "short.toml")
    with pytest.raises(
        ModelError,
        match=r"candidate/model.json: the model was trained with other DSP parameters than "
        r".*short.toml uses: hop_samples: model 2048 != pipeline 1024; "
        r"window_samples: model 8192 != pipeline 4096; retrain it",
    ):
        check_candidate(signed, other, FS, public_keys=[keys["a_pub"]])


def test_nan_in_the_cards_reference_window_is_rejected_even_when_signed(
    bundle: Path, keys: dict[str, Path], pipeline: Pipeline
) -> None:
    edit_card(bundle, lambda c: c["reference"]["features"].__setitem__(3, float("nan")))
    force_sign(bundle, keys["a"])
    verify_bundle(bundle, [keys["a_pub"]])  # the signature itself is fine
    with pytest.raises(ModelError, match=r"the reference window scores nan"):
        check_candidate(bundle, pipeline, FS, public_keys=[keys["a_pub"]])


def test_nan_reference_score_in_the_card_is_rejected(bundle: Path, pipeline: Pipeline) -> None:
    edit_card(bundle, lambda c: c["reference"].update(score=float("nan")))
    # Model.load itself refuses it (its self-check rejects a non-finite card score).
    with pytest.raises(ModelError, match=r"the card says nan"):
        Model.load(bundle, pipeline, FS)
    with pytest.raises(ModelError, match=r"the card says nan"):
        check_candidate(bundle, pipeline, FS)


def test_a_graph_that_scores_non_finite_on_reference_windows_is_rejected(
    bundle: Path, keys: dict[str, Path], pipeline: Pipeline
) -> None:
    # Put the floor before Log below zero: a feature that reads negative then scores NaN,
    # while the card's own reference window (all positive) still reproduces its score. (A
    # floor of 0 no longer shows: log 0 = -inf lies below the baseline, and the clip of the
    # damage direction maps it to the baseline, a finite score.)
    m = onnx.load(bundle / "model.onnx")
    floor = next(t for t in m.graph.initializer if t.name == "floor")
    floor.CopyFrom(numpy_helper.from_array(np.full(floor.dims, -1.0, dtype=np.float64), "floor"))
    onnx.save(m, bundle / "model.onnx")
    edit_card(bundle, lambda c: c["onnx"].update(sha256=sha(bundle / "model.onnx")))
    sign_bundle(bundle, keys["a"])  # it loads and reproduces its reference: signable
    card = json.loads((bundle / "model.json").read_text())
    x = np.array([card["reference"]["features"]] * 4)
    x[2, 5] = -0.5
    active = Model.load(DEMO, pipeline, FS)
    assert np.isfinite(active.score(x)[0]).all()
    with pytest.raises(ModelError, match=r"1 of 4 reference windows score non-finite \(row 2: "):
        check_candidate(bundle, pipeline, FS, public_keys=[keys["a_pub"]], reference=x)


def test_thresholds_must_be_finite_and_ordered(bundle: Path, pipeline: Pipeline) -> None:
    edit_card(bundle, lambda c: c["score"].update(danger=0.8))
    with pytest.raises(ModelError, match=r"thresholds alert 1 / danger 0.8"):
        check_candidate(bundle, pipeline, FS)


# --------------------------------------------------------------------------- install and rollback


def entries(root: Path) -> list[str]:
    """Everything in ``root`` but the lock files."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock-"))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_install_and_rollback_keep_one_live_model_and_the_previous(
    signed: Path,
    keys: dict[str, Path],
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exchange: bool,
) -> None:
    if not exchange:
        monkeypatch.setattr(install, "_exchange", lambda a, b: False)
    root = tmp_path / "models"
    a = tmp_path / "a"
    shutil.copytree(signed, a)
    edit_card(signed, lambda c: c["score"].update(danger=1.75))  # a second, distinct model
    sign_bundle(signed, keys["a"])
    b = signed

    rep_a = check_candidate(a, pipeline, FS, public_keys=[keys["a_pub"]])
    live = install_candidate(a, root, "pump", expect=rep_a)
    assert live == root / "pump" and entries(root) == ["pump"]
    assert sorted(p.name for p in live.iterdir()) == ["model.json", "model.onnx", "model.sig"]
    assert stat.S_IMODE(live.stat().st_mode) == 0o755

    rep_b = check_candidate(b, pipeline, FS, public_keys=[keys["a_pub"]])
    install_candidate(b, root, "pump", expect=rep_b)
    assert entries(root) == ["pump", "pump.previous"]
    assert sha(root / "pump" / "model.json") == rep_b.files["model.json"]
    assert sha(root / "pump.previous" / "model.json") == rep_a.files["model.json"]
    verify_bundle(root / "pump", [keys["a_pub"]])

    assert rollback(root, "pump") == root / "pump"
    assert entries(root) == ["pump", "pump.previous"]
    assert sha(root / "pump" / "model.json") == rep_a.files["model.json"]
    assert sha(root / "pump.previous" / "model.json") == rep_b.files["model.json"]
    assert (
        check_candidate(root / "pump", pipeline, FS, public_keys=[keys["a_pub"]]).danger
        == rep_a.danger
    )

    # A third install replaces the older previous; still one live directory.
    install_candidate(b, root, "pump", expect=rep_b)
    assert entries(root) == ["pump", "pump.previous"]
    assert sha(root / "pump.previous" / "model.json") == rep_a.files["model.json"]


def test_install_refuses_a_candidate_changed_after_its_check(
    signed: Path, keys: dict[str, Path], pipeline: Pipeline, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    rep = check_candidate(signed, pipeline, FS, public_keys=[keys["a_pub"]])
    edit_card(signed, lambda c: c["score"].update(danger=9.0))
    with pytest.raises(ModelError, match=r"model.json changed after the candidate was checked"):
        install_candidate(signed, root, "pump", expect=rep)
    assert entries(root) == []


def test_rollback_without_a_previous_and_bad_names(tmp_path: Path, signed: Path) -> None:
    with pytest.raises(ModelError, match=r"no previous model of 'pump' to roll back to"):
        rollback(tmp_path, "pump")
    for name in ("../x", ".hidden", "pump.previous", ""):
        with pytest.raises(ModelError, match=r"model name"):
            install_candidate(signed, tmp_path, name)


def test_committed_model_is_untouched() -> None:
    assert {n: sha(DEMO / n) for n in COMMITTED} == COMMITTED
    assert sorted(p.name for p in DEMO.iterdir()) == ["model.json", "model.onnx"]


# --------------------------------------------------------------------------- shadow statistics


def test_shadow_stats_table() -> None:
    # active score, candidate score, active state, candidate state
    rows = [
        (0.10, 0.20, "ok", "ok"),
        (0.50, 0.40, "ok", "ok"),
        (1.10, 0.90, "alert", "ok"),
        (1.20, 1.30, "alert", "alert"),
        (2.00, 1.40, "danger", "alert"),
        (0.30, 1.60, "ok", "danger"),
        (0.20, float("nan"), "ok", "ok"),  # not comparable: counted apart
    ]
    s = ShadowStats()
    for r in rows:
        s.add(*r)
    d = s.as_dict()
    assert d["windows"] == 6 and d["nonfinite"] == 1
    assert d["agreement"] == 3 / 6
    assert d["confusion"] == {
        "ok": {"ok": 2, "alert": 0, "danger": 1},
        "alert": {"ok": 1, "alert": 1, "danger": 0},
        "danger": {"ok": 0, "alert": 1, "danger": 0},
    }
    assert_allclose(d["mean_abs_diff"], (0.1 + 0.1 + 0.2 + 0.1 + 0.6 + 1.3) / 6)
    assert_allclose(d["max_abs_diff"], 1.3)
    assert json.loads(json.dumps(d)) == d
    empty = ShadowStats().as_dict()
    assert empty["windows"] == 0 and empty["agreement"] is None and empty["mean_abs_diff"] is None
    with pytest.raises(ValueError, match=r"state 'learning' is not one of"):
        s.add(0.1, 0.1, "learning", "ok")


# --------------------------------------------------------------------------- command line


def test_cli_keygen_sign_verify_check(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = tmp_path / "p.pem", tmp_path / "q.pub"
    assert model_main(["keygen", "--private", str(priv), "--public", str(pub)]) == 0
    assert model_main(["sign", str(bundle), "--key", str(priv)]) == 0
    assert model_main(["verify", str(bundle), "--public", str(pub)]) == 0
    assert model_main(["check", str(bundle), "-p", str(DEMO_PIPELINE), "--public", str(pub)]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 4 and out.err == ""
    kid = re.search(r"key id ([0-9a-f]{16})", lines[0])
    assert kid is not None and all(kid[1] in line for line in lines)
    assert ": ok: version " in lines[3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "{bundle}", "--public", "{pub}"], r"candidate: not signed"),
        (["verify", "{bundle}"], r"the following arguments are required: --public"),
        (["sign", "{bundle}", "--key", "{tmp}/none.pem"], r"none.pem: cannot read private key"),
        (["check", "{bundle}", "-p", "{tmp}/none.toml"], r"none.toml: cannot read pipeline file"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(
    bundle: Path,
    keys: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    args = [a.format(bundle=bundle, pub=keys["a_pub"], tmp=tmp_path) for a in argv]
    assert model_main(args) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith("pdm-edge: error: ")
    assert re.search(message, out.err)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 60_000, "not a model signature (not valid JSON)"),
        ('{"schema_version": ' + "1" * 5000 + "}", "not a model signature (not valid JSON)"),
        ('{"key_id": "' + "k" * 100_000 + '"}', "larger than 65,536 bytes; not a model signature"),
    ],
    ids=["deep", "huge-int", "huge"],
)
def test_a_hostile_signature_file_is_one_line(
    signed: Path, keys: dict[str, Path], text: str, says: str
) -> None:
    """Found by the files red team: a model.sig nested 60,000 deep (RecursionError) or with
    a 5,000-digit number (ValueError) was a traceback of `model verify`; it was read whole."""
    (signed / "model.sig").write_text(text)
    with pytest.raises(ModelError) as info:
        verify_bundle(signed, [keys["a_pub"]])
    assert says in str(info.value) and "\n" not in str(info.value)


def test_an_unexpected_file_name_is_shown_escaped(signed: Path, keys: dict[str, Path]) -> None:
    (signed / "\x1b[2Jx").write_text("x")  # a terminal escape in a file name
    with pytest.raises(ModelError) as info:
        verify_bundle(signed, [keys["a_pub"]])
    assert "\x1b" not in str(info.value) and "'\\x1b[2Jx'" in str(info.value)
