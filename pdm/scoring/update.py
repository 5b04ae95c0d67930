"""Safe model updates: signed bundles, candidate checks, an atomic swap on disk, shadow statistics.

How the appliance service replaces a model (the service owns the loop; this module
owns each step and raises :class:`~pdm.errors.ModelError` with one line naming the
directory and the reason when a step refuses):

1. :func:`check_candidate` loads the candidate through every check of
   :meth:`Model.load <pdm.scoring.runtime.Model.load>` (card vs pipeline, the ONNX
   file's SHA-256, onnxruntime, the card's reference window reproduced), verifies
   its signature first when public keys are configured (then a signature is
   required, and nothing unsigned reaches onnxruntime), scores an optional
   reference matrix, and returns a :class:`CandidateReport` holding the loaded,
   checked :class:`~pdm.scoring.runtime.Model`.
2. Optionally the service scores live windows with both models for a while and
   feeds :class:`ShadowStats` (agreement on ok/alert/danger, score differences).
3. :func:`install_candidate` copies the bundle into ``models_root/.staging-NAME-RAND``,
   fsyncs, and swaps it with ``models_root/NAME`` in one rename; the model it
   replaces becomes ``NAME.previous`` (:func:`rollback` swaps the two back).
   Pass ``expect=report`` so that the bytes installed are the bytes checked.
4. Only then does the service replace its in-memory ``Model`` (one attribute
   assignment; a window being scored keeps the object it started with). A
   candidate that fails any check is rejected and the old model keeps scoring:
   nothing on disk or in memory has changed.

A **bundle** is a model directory: ``model.onnx``, ``model.json`` (the card) and,
once signed, ``model.sig``::

    {
      "schema_version": 1,
      "algorithm": "ed25519",
      "key_id": "<first 16 hex digits of SHA-256 of the raw 32-byte public key>",
      "files": {"model.json": "<sha256 hex>", "model.onnx": "<sha256 hex>"},
      "signature": "<base64 of the 64-byte ed25519 signature>"
    }

The signed message is the canonical JSON of ``files``: keys sorted, separators
``,`` and ``:``, no whitespace, ASCII. The card pins the ONNX file's hash too, so the
signature covers both. What is *not* signed: the model's name and install time.
A signed model for one machine can be installed for another machine whose
pipeline has the same DSP parameters, and an older signed model can be installed
over a newer one; the service decides which candidates it accepts.

Keys (:func:`generate_keypair`) are PEM files: PKCS#8 private key (mode 0600,
unencrypted), SubjectPublicKeyInfo public key. The private key stays on the
machine where models are trained; the public key goes in the service's config.
Nothing here is ever loaded with pickle.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pdm.core.files import fsync_dir
from pdm.errors import ModelError
from pdm.scoring.card import sha256_file
from pdm.scoring.runtime import Model

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from pdm.config import Pipeline

__all__ = [
    "BUNDLE_FILES",
    "SIGNATURE_FILE",
    "STATES",
    "CandidateReport",
    "ShadowStats",
    "check_candidate",
    "generate_keypair",
    "install_candidate",
    "key_id",
    "rollback",
    "send_bundle",
    "sign_bundle",
    "verify_bundle",
]

#: The files a bundle holds besides its signature; the signature covers exactly these.
BUNDLE_FILES = ("model.json", "model.onnx")
SIGNATURE_FILE = "model.sig"
SIGNATURE_SCHEMA_VERSION = 1
ALGORITHM = "ed25519"
#: Per-window states, in order of severity (:meth:`Model.state`).
STATES = ("ok", "alert", "danger")

PublicKeySource = str | os.PathLike[str] | bytes


# --------------------------------------------------------------------------- keys


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()[:16]


def generate_keypair(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str]
) -> str:
    """Write a new ed25519 key pair as PEM files and return its key id.

    The private key is created with mode 0600 and never overwrites a file (a lost
    private key cannot be recovered; one overwritten by mistake is lost).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.resolve() == public_path.resolve():
        raise ModelError(f"{private_path}: the private and the public key need two different files")
    for path in (private_path, public_path):
        if path.exists():
            raise ModelError(f"{path}: already exists; refusing to overwrite a key file")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except ModelError:
        private_path.unlink(missing_ok=True)  # half a key pair is no use
        raise
    return key_id(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (O_EXCL: never through an existing file or link), fsync."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise ModelError(f"{path}: cannot create: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits from a public key's 0644
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise ModelError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    os.close(fd)


def _load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read private key: {exc.strerror or exc}") from exc
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
    ) as exc:  # not PEM, encrypted, or an unsupported key type
        raise ModelError(
            f"{path}: not an unencrypted PEM private key ({_first_line(exc)})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ModelError(f"{path}: a {type(key).__name__}, not an ed25519 private key")
    return key


def _load_public_key(source: PublicKeySource) -> Ed25519PublicKey:
    """A public key from a PEM file's path, PEM bytes, or the raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(source, bytes):
        where = "public key given as bytes"
        data = source
        if len(data) == 32 and not data.startswith(b"-----"):
            return Ed25519PublicKey.from_public_bytes(data)
    else:
        where = os.fspath(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ModelError(f"{where}: cannot read public key: {exc.strerror or exc}") from exc
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ModelError(f"{where}: not a PEM public key ({_first_line(exc)})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ModelError(f"{where}: a {type(key).__name__}, not an ed25519 public key")
    return key


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- sign / verify


def _message(files: dict[str, str]) -> bytes:
    """The signed bytes: canonical JSON of {file name: SHA-256 hex}."""
    return json.dumps(files, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _bundle_hashes(directory: Path) -> dict[str, str]:
    return {name: sha256_file(directory / name) for name in BUNDLE_FILES}


def _check_contents(directory: Path, *, signed: bool) -> None:
    """Exactly the bundle files (and the signature when ``signed``), as regular files."""
    if not directory.is_dir():
        raise ModelError(f"{directory}: no model directory here")
    allowed = {*BUNDLE_FILES, SIGNATURE_FILE}
    present = {p.name for p in directory.iterdir()}
    missing = [
        n for n in (*BUNDLE_FILES, *([SIGNATURE_FILE] if signed else [])) if n not in present
    ]
    if SIGNATURE_FILE in missing:
        raise ModelError(
            f"{directory}: not signed ({SIGNATURE_FILE} is missing) and a signature is required; "
            f"sign it where it was trained: pdm-edge model sign {directory} --key PRIVATE.pem"
        )
    if missing:
        raise ModelError(f"{directory}: {', '.join(missing)} missing from the bundle")
    extra = sorted(present - allowed)
    if extra:
        raise ModelError(
            f"{directory}: unexpected files in the bundle: {', '.join(extra)} "
            f"(a bundle holds {', '.join(BUNDLE_FILES)} and {SIGNATURE_FILE} only)"
        )
    for name in sorted(present & allowed):
        if not (directory / name).is_file():
            raise ModelError(f"{directory}: {name} is not a regular file")


def sign_bundle(
    model_dir: str | os.PathLike[str], private_key_pem_path: str | os.PathLike[str]
) -> Path:
    """Sign ``model_dir`` (model.onnx + model.json) with an ed25519 key; write and return model.sig.

    Only a model that loads is signed: the card must pin this ONNX file's hash and
    the model must reproduce its reference score (:meth:`Model.load`, no pipeline).
    An existing signature is replaced.
    """
    directory = Path(model_dir)
    _check_contents(directory, signed=False)
    key = _load_private_key(private_key_pem_path)
    model = Model.load(directory)
    _require_bundle_onnx(directory, model.card)
    files = _bundle_hashes(directory)
    if files["model.onnx"] != model.card["onnx"]["sha256"]:
        raise ModelError(f"{directory}: model.onnx changed while it was being signed")
    sig = {
        "schema_version": SIGNATURE_SCHEMA_VERSION,
        "algorithm": ALGORITHM,
        "key_id": key_id(key.public_key()),
        "files": dict(sorted(files.items())),
        "signature": base64.b64encode(key.sign(_message(files))).decode("ascii"),
    }
    path = directory / SIGNATURE_FILE
    tmp = directory / f".{SIGNATURE_FILE}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(sig, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        raise ModelError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_signature(directory: Path) -> dict[str, Any]:
    path = directory / SIGNATURE_FILE
    try:
        sig = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a model signature (not valid JSON)") from exc
    if not isinstance(sig, dict) or sig.get("schema_version") != SIGNATURE_SCHEMA_VERSION:
        raise ModelError(
            f"{path}: not a model signature of schema_version {SIGNATURE_SCHEMA_VERSION}"
        )
    if sig.get("algorithm") != ALGORITHM:
        raise ModelError(f"{path}: algorithm {sig.get('algorithm')!r} is not {ALGORITHM!r}")
    files = sig.get("files")
    if (
        not isinstance(files, dict)
        or sorted(files) != sorted(BUNDLE_FILES)
        or not all(isinstance(v, str) for v in files.values())
        or not isinstance(sig.get("key_id"), str)
        or not isinstance(sig.get("signature"), str)
    ):
        raise ModelError(
            f"{path}: malformed signature (needs key_id, signature and the SHA-256 of "
            f"{' and '.join(BUNDLE_FILES)})"
        )
    return sig


def _verify(directory: Path, public_keys: Sequence[PublicKeySource]) -> tuple[str, dict[str, str]]:
    """Key id and the verified {file: SHA-256} of a signed bundle, or :class:`ModelError`."""
    from cryptography.exceptions import InvalidSignature

    if isinstance(public_keys, (str, bytes, os.PathLike)):
        raise TypeError("public_keys is a list of PEM paths or key bytes, not one key")
    if not public_keys:
        raise ModelError(f"{directory}: no public keys given to verify the signature with")
    keys = {}
    for source in public_keys:
        k = _load_public_key(source)
        keys[key_id(k)] = k
    _check_contents(directory, signed=True)
    sig = _read_signature(directory)
    kid = sig["key_id"]
    if kid not in keys:
        raise ModelError(
            f"{directory}: signed by unknown key id {kid!r} (trusted: {', '.join(sorted(keys))})"
        )
    try:
        signature = base64.b64decode(sig["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelError(f"{directory}: bad signature (not base64)") from exc
    now = _bundle_hashes(directory)
    try:
        keys[kid].verify(signature, _message(now))
    except InvalidSignature:
        pass
    else:
        return kid, now
    # Name the file when the signature is good for the hashes it lists: the bundle changed.
    try:
        keys[kid].verify(signature, _message(sig["files"]))
    except InvalidSignature:
        raise ModelError(
            f"{directory}: bad signature (key id {kid}): {SIGNATURE_FILE} was altered or "
            "not made by that key"
        ) from None
    changed = [n for n in BUNDLE_FILES if now[n] != sig["files"][n]]
    raise ModelError(
        f"{directory}: {' and '.join(changed)} changed since signing "
        + "; ".join(
            f"({n}: SHA-256 {sig['files'][n][:12]}… signed, {now[n][:12]}… now)" for n in changed
        )
    )


def verify_bundle(model_dir: str | os.PathLike[str], public_keys: Sequence[PublicKeySource]) -> str:
    """Check ``model_dir``'s signature against trusted ed25519 keys; return the signer's key id.

    ``public_keys`` are PEM file paths, PEM bytes or raw 32-byte keys. Raises
    :class:`ModelError` (one line naming the directory) when there is no signature,
    the key id is not trusted, the signature is bad, a file changed since signing,
    or the directory holds other files than model.onnx, model.json and model.sig.
    """
    return _verify(Path(model_dir), public_keys)[0]


#: Largest answer :func:`send_bundle` reads from the appliance, bytes.
_MAX_ANSWER_BYTES = 64 * 1024


def send_bundle(
    model_dir: str | os.PathLike[str],
    api_url: str,
    machine: str,
    *,
    token: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Upload ``model_dir`` to an appliance as ``machine``'s candidate (``PUT
    /models/<machine>/candidate``, docs/service.md): the tar.gz of the bundle's files, nothing
    else. Returns the service's answer (the candidate runs in shadow until promoted).

    Raises :class:`ModelError` with the service's one-line reason when it refuses, and when
    it cannot be reached. The token is sent as a bearer token, never printed.
    """
    import io
    import tarfile
    from urllib.parse import quote

    import httpx

    directory = Path(model_dir)
    names = [n for n in (*BUNDLE_FILES, SIGNATURE_FILE) if (directory / n).is_file()]
    _check_contents(directory, signed=SIGNATURE_FILE in names)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for n in names:
            tar.add(directory / n, arcname=n, recursive=False)
    url = api_url.rstrip("/") + f"/models/{quote(machine, safe='')}/candidate"
    headers = {"Content-Type": "application/gzip"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.stream(
            "PUT", url, content=buf.getvalue(), headers=headers, timeout=timeout_s
        ) as r:
            # The answer is a small JSON object: read no more than that from whoever answers.
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > _MAX_ANSWER_BYTES:
                    raise ModelError(f"{url}: the answer is over {_MAX_ANSWER_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise ModelError(f"{url}: cannot send the model: {_first_line(exc)}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if r.status_code != 202:
        why = answer.get("error")
        why = why.splitlines()[0][:500] if isinstance(why, str) and why else r.reason_phrase
        raise ModelError(f"{url}: the appliance refused the model (HTTP {r.status_code}): {why}")
    return answer


# --------------------------------------------------------------------------- candidate checks


@dataclass(frozen=True)
class CandidateReport:
    """What :func:`check_candidate` found; ``model`` is the loaded, checked model to swap in."""

    directory: Path
    version: str
    detector: str
    alert: float
    danger: float
    key_id: str | None
    #: Score of the card's reference window, recomputed here (normalised; alert at 1.0).
    reference_score: float
    #: Rows of the supplied ``reference`` matrix that were scored (0 when none was given).
    reference_windows: int
    reference_max_score: float | None
    #: SHA-256 of model.json and model.onnx as checked; ``install_candidate(expect=...)`` compares.
    files: dict[str, str]
    model: Model = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the model object."""
        return {
            "directory": str(self.directory),
            "version": self.version,
            "detector": self.detector,
            "alert": self.alert,
            "danger": self.danger,
            "key_id": self.key_id,
            "reference_score": self.reference_score,
            "reference_windows": self.reference_windows,
            "reference_max_score": self.reference_max_score,
            "files": dict(self.files),
        }

    def summary(self) -> str:
        """One line for a log or the CLI."""
        signed = f"signed by key {self.key_id}" if self.key_id else "signature not checked"
        extra = (
            f", {self.reference_windows} reference windows max {self.reference_max_score:.3g}"
            if self.reference_max_score is not None
            else ""
        )
        return (
            f"{self.directory}: ok: version {self.version}, detector {self.detector}, "
            f"alert {self.alert:g} danger {self.danger:g}, {signed}, "
            f"reference window scores {self.reference_score:.3g}{extra}"
        )


def _require_bundle_onnx(directory: Path, card: dict[str, Any]) -> None:
    # The bundle (signature, install copy) covers model.onnx only; a card naming another file
    # would make the runtime load something neither signed nor installed.
    name = card["onnx"].get("file", "model.onnx")
    if name != "model.onnx":
        raise ModelError(
            f"{directory / 'model.json'}: onnx.file is {name!r}; a model bundle's graph must be 'model.onnx'"
        )


def check_candidate(
    model_dir: str | os.PathLike[str],
    pipeline: Pipeline,
    fs: float | None,
    *,
    public_keys: Sequence[PublicKeySource] | None = None,
    reference: npt.ArrayLike | None = None,
) -> CandidateReport:
    """Every check a model must pass before it may replace the running one.

    Parameters
    ----------
    model_dir : the candidate bundle
    pipeline, fs : the pipeline the service runs and its sample rate, Hz (``None``: the card's)
    public_keys : trusted keys (PEM paths, PEM bytes or raw 32-byte keys). ``None``: signatures
        are not checked. Otherwise a valid signature by one of them is required, and it is
        checked before onnxruntime parses anything.
    reference : (n_windows, n_features) raw feature rows in the model's input order
        (e.g. recent live windows, units as the feature names say); every row must give a
        finite score. The card's own reference window is always scored.

    Raises
    ------
    ModelError
        One line naming the directory and the reason: signature, card vs pipeline, ONNX
        hash, onnxruntime, reference window not reproduced or non-finite, thresholds.
    ValueError
        ``reference`` itself holds non-finite values (the caller's data, not the model).
    """
    directory = Path(model_dir)
    kid: str | None = None
    signed: dict[str, str] | None = None
    if public_keys is not None:
        kid, signed = _verify(directory, public_keys)
    # Card vs pipeline, the ONNX file's hash, onnxruntime, the reference window reproduced.
    model = Model.load(directory, pipeline, fs)
    card = model.card
    _require_bundle_onnx(directory, card)
    files = _bundle_hashes(directory)
    if (signed is not None and files != signed) or files["model.onnx"] != card["onnx"]["sha256"]:
        raise ModelError(f"{directory}: the bundle changed while it was being checked")

    alert = float(card["score"].get("alert", 1.0))
    danger = model.danger
    if not (math.isfinite(danger) and alert == model.alert and danger > alert):
        raise ModelError(
            f"{directory / 'model.json'}: thresholds alert {alert:g} / danger {danger:g}: "
            f"the runtime needs alert = {model.alert:g} and a finite danger above it"
        )

    ref = card["reference"]  # Model.load refuses a card without one
    want = float(ref["score"])
    got = float(model.score(np.asarray([ref["features"]], dtype=np.float32))[0][0])
    # Model.load compares with the card's score, but a NaN there compares as "no difference".
    if not (math.isfinite(want) and math.isfinite(got)):
        raise ModelError(
            f"{directory}: the card's reference window scores {got:.6g} (card: {want:.6g}); "
            "a model must give finite scores"
        )

    n_ref = 0
    ref_max: float | None = None
    if reference is not None:
        x = np.asarray(reference, dtype=np.float64)
        if x.ndim == 1:
            x = x[np.newaxis, :]
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"reference shape {x.shape}: expected (n_windows, n_features), n ≥ 1")
        if x.shape[1] != len(model.names):
            raise ModelError(
                f"{directory}: the reference windows have {x.shape[1]} features, the candidate "
                f"takes {len(model.names)}"
            )
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ValueError(
                f"reference row {bad} holds non-finite features; pass valid windows only"
            )
        scores = model.score(x)[0]
        finite = np.isfinite(scores)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise ModelError(
                f"{directory}: {int((~finite).sum())} of {len(scores)} reference windows score "
                f"non-finite (row {first}: {scores[first]:g}); the model would not score them"
            )
        n_ref = len(scores)
        ref_max = float(scores.max())

    return CandidateReport(
        directory=directory,
        version=model.version,
        detector=str(card.get("model", {}).get("detector", "unknown")),
        alert=alert,
        danger=danger,
        key_id=kid,
        reference_score=got,
        reference_windows=n_ref,
        reference_max_score=ref_max,
        files=files,
        model=model,
    )


# --------------------------------------------------------------------------- swap on disk

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or name.endswith(".previous"):
        raise ModelError(
            f"model name {name!r}: letters, digits, '.', '_' and '-', not starting with '.' "
            "nor ending with '.previous'"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the kernel, libc or file system cannot; the caller then uses two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl without it
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


def _swap(a: Path, b: Path, root: Path, name: str) -> None:
    """Exchange two directories: atomically where possible, else via a temporary name."""
    if _exchange(a, b):
        return
    # Between the renames `b` is briefly absent; a crash there leaves it under `tmp`.
    tmp = root / f".staging-{name}-{secrets.token_hex(4)}"
    os.replace(b, tmp)
    os.replace(a, b)
    os.replace(tmp, a)


def _discard(path: Path, root: Path, name: str) -> None:
    """Remove a directory by first renaming it away, so it is never seen half-deleted."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    trash = root / f".trash-{name}-{secrets.token_hex(4)}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """One install or rollback of ``name`` at a time, across processes (advisory flock)."""
    import fcntl

    fd = os.open(root / f".lock-{name}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _clean_leftovers(root: Path, name: str) -> None:
    """Staging and trash directories of ``name`` that a crash left behind (we hold the lock)."""
    pattern = re.compile(rf"\.(staging|trash)-{re.escape(name)}-[0-9a-f]{{8}}")
    for p in root.iterdir():
        if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _copy_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())
    os.chmod(dst, 0o644)


def install_candidate(
    candidate_dir: str | os.PathLike[str],
    models_root: str | os.PathLike[str],
    name: str,
    *,
    expect: CandidateReport | None = None,
) -> Path:
    """Install a checked candidate as ``models_root/name``; the model it replaces becomes ``name.previous``.

    The bundle (model.onnx, model.json, and model.sig when present; nothing else) is
    copied into ``models_root/.staging-NAME-RAND``, each file and the directory are
    fsynced, then the staging directory and the live one are exchanged in one
    ``renameat2(RENAME_EXCHANGE)`` (Linux), so ``name`` always names a complete model;
    where that call is unavailable two renames leave ``name`` absent for an instant.
    The older ``name.previous`` is deleted. With ``expect`` (the candidate's report),
    the copy's SHA-256 must equal what :func:`check_candidate` checked, so a file
    changed after the check is refused. Returns the live directory.

    Call it only after :func:`check_candidate` passed; swap the in-memory model after it
    returns (the report's ``model`` is the checked one).
    """
    src = Path(candidate_dir)
    root = Path(models_root)
    _check_name(name)
    names = [*BUNDLE_FILES, *([SIGNATURE_FILE] if (src / SIGNATURE_FILE).is_file() else [])]
    for n in BUNDLE_FILES:
        if not (src / n).is_file():
            raise ModelError(f"{src}: {n} is missing; nothing installed")
    live = root / name
    previous = root / f"{name}.previous"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if live.resolve() == src.resolve():
            raise ModelError(f"{src}: is already the live model {live}")
        with _locked(root, name):
            _clean_leftovers(root, name)
            staging = root / f".staging-{name}-{secrets.token_hex(4)}"
            staging.mkdir()
            os.chmod(staging, 0o755)  # not the umask's choice: the dashboard reads models too
            swapped = False
            try:
                for n in names:
                    _copy_file(src / n, staging / n)
                if expect is not None:
                    got = _bundle_hashes(staging)
                    if got != expect.files:
                        changed = [n for n in BUNDLE_FILES if got[n] != expect.files.get(n)]
                        raise ModelError(
                            f"{src}: {' and '.join(changed)} changed after the candidate was "
                            "checked; nothing installed"
                        )
                fsync_dir(staging)
                if live.exists():
                    _swap(staging, live, root, name)  # live: the candidate; staging: the old
                    swapped = True
                    _discard(previous, root, name)
                    os.replace(staging, previous)
                else:
                    os.replace(staging, live)
                fsync_dir(root)
            finally:
                # After the swap, staging holds the old model: never delete that here.
                if not swapped and staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ModelError(
            f"{root}: cannot install {name}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        ) from exc
    return live


def rollback(models_root: str | os.PathLike[str], name: str) -> Path:
    """Swap ``name`` and ``name.previous`` back; return the live directory.

    The model rolled back from becomes ``name.previous`` (a second rollback rolls
    forward). The restored model was checked when it was installed, but the pipeline
    may have changed since: run :func:`check_candidate` on the returned directory
    before the service swaps it in.
    """
    root = Path(models_root)
    _check_name(name)
    live = root / name
    previous = root / f"{name}.previous"
    if not previous.is_dir():
        raise ModelError(f"{previous}: no previous model of {name!r} to roll back to")
    try:
        with _locked(root, name):
            if live.exists():
                _swap(previous, live, root, name)
            else:
                os.replace(previous, live)
            fsync_dir(root)
    except OSError as exc:
        raise ModelError(f"{root}: cannot roll back {name}: {exc.strerror or exc}") from exc
    return live


# --------------------------------------------------------------------------- shadow statistics


def _confusion() -> dict[str, dict[str, int]]:
    return {a: dict.fromkeys(STATES, 0) for a in STATES}


@dataclass
class ShadowStats:
    """Active vs candidate model over the same windows: agreement and score differences.

    Feed one call of :meth:`add` per window both models scored. ``confusion[a][c]``
    counts windows the active model called ``a`` and the candidate ``c``. Windows where
    either score is not finite are counted in ``nonfinite`` and nothing else.

    >>> s = ShadowStats()
    >>> s.add(0.2, 0.3, "ok", "ok"); s.add(1.2, 0.9, "alert", "ok")
    >>> s.count, s.agreement, s.confusion["alert"]["ok"]
    (2, 0.5, 1)
    """

    count: int = 0
    agreed: int = 0
    nonfinite: int = 0
    sum_abs_diff: float = 0.0
    max_abs_diff: float = 0.0
    confusion: dict[str, dict[str, int]] = field(default_factory=_confusion)

    def add(
        self, active_score: float, candidate_score: float, active_state: str, candidate_state: str
    ) -> None:
        """One window: both normalised scores and both states (``Model.state(score)``)."""
        for s in (active_state, candidate_state):
            if s not in STATES:
                raise ValueError(f"state {s!r} is not one of {STATES}")
        a, c = float(active_score), float(candidate_score)
        if not (math.isfinite(a) and math.isfinite(c)):
            self.nonfinite += 1
            return
        self.count += 1
        self.agreed += active_state == candidate_state
        self.confusion[active_state][candidate_state] += 1
        d = abs(a - c)
        self.sum_abs_diff += d
        self.max_abs_diff = max(self.max_abs_diff, d)

    @property
    def agreement(self) -> float | None:
        """Fraction of windows with the same state; ``None`` before the first."""
        return self.agreed / self.count if self.count else None

    @property
    def mean_abs_diff(self) -> float | None:
        """Mean |active − candidate| score; ``None`` before the first window."""
        return self.sum_abs_diff / self.count if self.count else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: windows, agreement, confusion (active → candidate), score differences."""
        return {
            "windows": self.count,
            "agreement": self.agreement,
            "confusion": {a: dict(row) for a, row in self.confusion.items()},
            "mean_abs_diff": self.mean_abs_diff,
            "max_abs_diff": self.max_abs_diff if self.count else None,
            "nonfinite": self.nonfinite,
        }
