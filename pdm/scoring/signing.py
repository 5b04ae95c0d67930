"""Signed model bundles: ed25519 keys, signing a bundle, verifying its signature.

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
Nothing here is ever loaded with pickle. Errors are :class:`~pdm.errors.ModelError`,
one line naming the file or directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdm.core.files import fsync_dir, read_at_most
from pdm.errors import ModelError
from pdm.scoring.card import sha256_file
from pdm.scoring.runtime import Model
from pdm.secrets import MAX_SECRET_BYTES

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "ALGORITHM",
    "BUNDLE_FILES",
    "SIGNATURE_FILE",
    "SIGNATURE_SCHEMA_VERSION",
    "PublicKeySource",
    "bundle_hashes",
    "check_contents",
    "generate_keypair",
    "key_id",
    "require_bundle_onnx",
    "sign_bundle",
    "verify_bundle",
    "verify_signature",
]

#: The files a bundle holds besides its signature; the signature covers exactly these.
BUNDLE_FILES = ("model.json", "model.onnx")
SIGNATURE_FILE = "model.sig"
SIGNATURE_SCHEMA_VERSION = 1
ALGORITHM = "ed25519"

#: A trusted public key: a PEM file's path, PEM bytes or the raw 32 bytes.
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
        data = read_at_most(path, MAX_SECRET_BYTES)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read private key: {exc.strerror or exc}") from exc
    if len(data) > MAX_SECRET_BYTES:
        raise ModelError(f"{path}: larger than {MAX_SECRET_BYTES:,} bytes; not a private key")
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
            data = read_at_most(source, MAX_SECRET_BYTES)
        except OSError as exc:
            raise ModelError(f"{where}: cannot read public key: {exc.strerror or exc}") from exc
        if len(data) > MAX_SECRET_BYTES:
            raise ModelError(f"{where}: larger than {MAX_SECRET_BYTES:,} bytes; not a public key")
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


def bundle_hashes(directory: Path) -> dict[str, str]:
    return {name: sha256_file(directory / name) for name in BUNDLE_FILES}


def check_contents(directory: Path, *, signed: bool) -> None:
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
        shown = ", ".join(repr(n) if not n.isprintable() else n for n in extra[:5])
        raise ModelError(
            f"{directory}: unexpected files in the bundle: {shown}"
            f"{f' (and {len(extra) - 5} more)' if len(extra) > 5 else ''} "
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
    check_contents(directory, signed=False)
    key = _load_private_key(private_key_pem_path)
    model = Model.load(directory)
    require_bundle_onnx(directory, model.card)
    files = bundle_hashes(directory)
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
        raw = read_at_most(path, MAX_SECRET_BYTES, regular=True)  # a signature is ~300 bytes
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_SECRET_BYTES:
        raise ModelError(f"{path}: larger than {MAX_SECRET_BYTES:,} bytes; not a model signature")
    try:
        sig = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, 5,000 digits, too deep
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


def verify_signature(
    directory: Path, public_keys: Sequence[PublicKeySource]
) -> tuple[str, dict[str, str]]:
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
    check_contents(directory, signed=True)
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
    now = bundle_hashes(directory)
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
    return verify_signature(Path(model_dir), public_keys)[0]


def require_bundle_onnx(directory: Path, card: dict[str, Any]) -> None:
    """The card's graph is the bundle's ``model.onnx`` (what is signed and installed)."""
    # A card naming another file would make the runtime load something neither signed nor
    # installed.
    name = card["onnx"].get("file", "model.onnx")
    if name != "model.onnx":
        raise ModelError(
            f"{directory / 'model.json'}: onnx.file is {name!r}; a model bundle's graph must be 'model.onnx'"
        )
