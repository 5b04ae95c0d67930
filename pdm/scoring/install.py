"""Installing a checked candidate: an atomic swap on disk, and the rollback.

:func:`install_candidate` copies the bundle into ``models_root/.staging-NAME-RAND``,
fsyncs, and swaps it with ``models_root/NAME`` in one rename; the model it replaces
becomes ``NAME.previous`` (:func:`rollback` swaps the two back). Pass ``expect=report``
(:func:`~pdm.scoring.candidate.check_candidate`'s) so that the bytes installed are the
bytes checked.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pdm.core.files import fsync_dir
from pdm.errors import ModelError
from pdm.scoring.signing import BUNDLE_FILES, SIGNATURE_FILE, bundle_hashes

if TYPE_CHECKING:
    from pdm.scoring.candidate import CandidateReport

__all__ = ["install_candidate", "rollback"]


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
    the copy's SHA-256 must equal what :func:`~pdm.scoring.candidate.check_candidate`
    checked, so a file changed after the check is refused. Returns the live directory.

    Call it only after :func:`~pdm.scoring.candidate.check_candidate` passed; swap the
    in-memory model after it returns (the report's ``model`` is the checked one).
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
                    got = bundle_hashes(staging)
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
    may have changed since: run :func:`~pdm.scoring.candidate.check_candidate` on the returned directory
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
