"""File-system steps that make a rename or a new file survive a power cut."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["default_data_dir", "fsync_dir", "output_problem", "read_at_most", "write_text_atomic"]


def fsync_dir(directory: Path) -> None:
    """Flush ``directory``'s entries (a file created, renamed or removed in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_data_dir() -> Path:
    """Where history, spool, captures, checkpoints and operators live: ``$PDM_EDGE_DATA`` or
    ``./var``."""
    return Path(os.environ.get("PDM_EDGE_DATA") or "var")


def output_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written at ``path`` (a directory, no such parent), or None.

    Asked before a command's work, so that an hour's replay does not end in "Is a directory".
    """
    p = Path(path)
    if p.is_dir():
        return "is a directory"
    parent = p.parent
    if not parent.exists():
        return f"no such directory {parent}"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    return None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: a temporary sibling, fsync,
    rename.

    A file already at ``path`` is replaced only once the new one is complete (a full disk
    or a crash leaves it as it was); a symbolic link at ``path`` is replaced by the file,
    never written through (what it points at is left alone); a directory is refused
    (``IsADirectoryError``). Other ``OSError`` s propagate; no temporary file is left.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(p))
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it (mkstemp: 0600)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_at_most(path: str | os.PathLike[str], limit: int, *, regular: bool = False) -> bytes:
    """The first ``limit + 1`` bytes of ``path`` at most: more than ``limit`` tells the caller
    the file is too large, without reading it all (``/dev/zero`` named by mistake).

    ``regular``: refuse anything but a regular file (``OSError`` EINVAL "not a regular
    file"), without blocking on a FIFO that has no writer (opened non-blocking, then fstat).
    """
    if not regular:
        with open(path, "rb") as f:
            return f.read(limit + 1)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        return f.read(limit + 1)
