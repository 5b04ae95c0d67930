"""File-system steps that make a rename or a new file survive a power cut."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_dir", "fsync_dir"]


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
