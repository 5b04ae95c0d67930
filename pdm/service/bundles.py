"""Model bundles on disk for the service: an upload unpacked under bounds, candidate
directories replaced whole, and the stamps that tell the model watcher a directory changed.

Everything here is refused with ``ValueError`` naming the member (:func:`extract_bundle`) or
raises ``OSError`` for the caller to translate; nothing trusts the upload.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Self, cast

from pdm.core.files import fsync_dir
from pdm.service.api import Readable

__all__ = [
    "BUNDLE_LIMITS",
    "clean_uploads",
    "dir_stamp",
    "discard_dir",
    "extract_bundle",
    "replace_dir",
]

#: The files an uploaded bundle may hold, and the largest size of each (uncompressed), bytes.
BUNDLE_LIMITS = {"model.json": 8 << 20, "model.onnx": 128 << 20, "model.sig": 64 << 10}
#: Largest pax / GNU long-name header of an upload, bytes (tarfile reads these into memory).
_TAR_HEADER_MAX = 64 << 10
_UPLOAD_LEFTOVER = re.compile(r"\.(upload|discard)-(?P<name>.+)-[0-9a-f]{8}")


_STAMP_FILES = ("", "/model.json", "/model.onnx", "/model.sig")
_ABSENT = (0,) * (3 * len(_STAMP_FILES))


def dir_stamp(d: Path) -> tuple[int, ...]:
    """What changes when a model directory is replaced or one of its files is (all 0: absent).

    The watcher stamps every machine's two directories each second: plain ``os.stat`` of
    strings, and an absent directory (the usual candidate) is one call, not four.
    """
    out: list[int] = []
    base = os.fspath(d)
    for suffix in _STAMP_FILES:
        try:
            st = os.stat(base + suffix)
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            if not suffix:
                return _ABSENT
            out += [0, 0, 0]
    return tuple(out)


def discard_dir(d: Path, trash: Path) -> None:
    """Remove a directory by renaming it away first: never seen half-deleted."""
    if d.is_dir() and not d.is_symlink():
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)


def replace_dir(src: Path, dst: Path, trash: Path) -> None:
    """Put the complete directory ``src`` at ``dst``, replacing what is there (same file system).

    ``dst`` never names a half-written directory: the old one is renamed away, then ``src``
    renamed in (a crash between the two leaves no candidate, never a partial one).
    """
    old = dst.is_dir() and not dst.is_symlink()
    if old:
        os.replace(dst, trash)
    try:
        os.replace(src, dst)
    except OSError:
        if old:
            os.replace(trash, dst)
        raise
    fsync_dir(dst.parent)
    if old:
        shutil.rmtree(trash, ignore_errors=True)


def clean_uploads(root: Path, name: str) -> None:
    """Upload staging and discard directories of ``name`` a crash left behind."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for p in entries:
        m = _UPLOAD_LEFTOVER.fullmatch(p.name)
        if m and m["name"] == name and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


class _Capped:
    """A read-only stream that refuses to yield more than ``limit`` bytes (a gzip bomb)."""

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        self.raw, self.left = raw, limit

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise ValueError("the bundle unpacks to more than its files may hold")
        return data


class _BoundedInfo(tarfile.TarInfo):
    """Refuses oversized pax / GNU headers and sparse members from their header block, before
    tarfile reads what they announce into memory (:meth:`tarfile.TarInfo.frombuf` parses each
    header block: a ``tarinfo=`` class's public hook)."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in (
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
            tarfile.XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.SOLARIS_XHDTYPE,
        ):
            if info.size > _TAR_HEADER_MAX:
                raise ValueError(
                    f"a tar extended header of {info.size} bytes; at most {_TAR_HEADER_MAX}"
                )
        elif info.type == tarfile.GNUTYPE_SPARSE:
            raise ValueError(f"member {info.name!r}: a sparse file, not a regular file")
        return info


def _bundle_filter(written: list[str]) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """The extraction filter of a bundle (``TarFile.extractall(filter=...)``): called with each
    member's header before its data is read; appends each file's name to ``written``."""

    def check(m: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = m.name
        if name.startswith("/") or PurePosixPath(name).is_absolute():
            raise ValueError(f"member {name!r}: an absolute path")
        if ".." in name.replace("\\", "/").split("/"):
            raise ValueError(f"member {name!r}: '..' in its path")
        parts = PurePosixPath(name).parts
        if not parts and m.isdir():
            return None  # the "." entry of `tar -C DIR .`
        if len(parts) != 1 or parts[0] not in BUNDLE_LIMITS:
            raise ValueError(
                f"member {name!r}: a bundle holds only {', '.join(sorted(BUNDLE_LIMITS))}"
            )
        base = parts[0]
        if not m.isreg():
            raise ValueError(f"member {name!r}: not a regular file")
        if base in written:
            raise ValueError(f"member {name!r}: {base} twice")
        if m.size > BUNDLE_LIMITS[base]:
            raise ValueError(
                f"member {name!r}: {m.size} bytes; {base} may have at most {BUNDLE_LIMITS[base]}"
            )
        try:  # and tarfile's own rules for data: inside dest, no link, no device, no owner
            m = tarfile.data_filter(m, dest)
        except tarfile.FilterError as exc:
            raise ValueError(f"member {name!r}: {exc}") from exc
        written.append(base)
        return m.replace(name=base, mode=0o644, deep=False)

    return check


def extract_bundle(body: Readable, dest: Path) -> list[str]:
    """Unpack a model bundle from a tar.gz stream into the empty directory ``dest``.

    Only regular files named ``model.onnx``, ``model.json`` and ``model.sig`` (a leading
    ``./`` and the ``.`` entry of ``tar -C DIR .`` are fine), each at most
    :data:`BUNDLE_LIMITS` bytes, once each; ``model.json`` and ``model.onnx`` are required.
    Anything else — an absolute path, ``..``, a link or device, a directory, another file, a
    duplicate, a size over its bound, not a tar.gz — raises ``ValueError`` naming the member,
    from its header (the extraction filter), before its data is read. Files are created 0644
    and fsynced. Returns the names written.
    """
    written: list[str] = []
    cap = sum(BUNDLE_LIMITS.values()) + (1 << 20)
    try:
        with (
            gzip.GzipFile(fileobj=cast(Any, body), mode="rb") as gz,
            tarfile.open(None, "r|", cast(Any, _Capped(gz, cap)), tarinfo=_BoundedInfo) as tar,
        ):
            tar.extractall(dest, filter=_bundle_filter(written))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"not a tar.gz bundle: {exc}") from exc
    missing = [n for n in ("model.json", "model.onnx") if n not in written]
    if missing:
        raise ValueError(f"{' and '.join(missing)} missing from the bundle")
    for base in written:
        fd = os.open(dest / base, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(dest)
    return written
