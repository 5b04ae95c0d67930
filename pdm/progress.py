"""Progress bars for the commands that read recordings: seconds of signal, with a total and ETA.

A bar is drawn on stderr only when stderr is a terminal (``tqdm(disable=None)``): logs,
pipes and JSON on stdout never see it. Its total is the recording's length estimated
before reading it — from the file's size and its first lines, and for a ``.gz`` from the
uncompressed size the gzip trailer records — so it shows an ETA from the first chunk on.
Counts are rounded to whole seconds (``10/12 s``), never ``10.922666666666666 s``.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from pdm.core.chunk import Chunk

__all__ = ["estimate_seconds", "seconds_bar", "through"]

#: tqdm's bar with counts rounded to whole seconds (its default prints floats in full).
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]"
BAR_FORMAT_OPEN = "{desc}: {n:.0f} s of signal [{elapsed}]"
_HEAD = 65536


def _uncompressed_size(path: str) -> int | None:
    """A gzip file's uncompressed size from its trailer (ISIZE: the size mod 2³²; a file
    larger than that, or with several members, is sized from the compressed size)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", f.read(4))
    except (OSError, struct.error):
        return None
    # ISIZE wraps at 4 GiB: trust it only when it is plausible for this compressed size.
    return isize if isize >= size else None


def estimate_seconds(path: str | os.PathLike[str], fs: float) -> float | None:
    """About how many seconds of signal a CSV recording at ``fs`` Hz holds (None: unknown).

    Rows are estimated as the file's (uncompressed) size over the mean length of its first
    lines; the estimate only sizes a progress bar.
    """
    p = os.fspath(path)
    if not fs or fs <= 0:
        return None
    try:
        with open(p, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        if gz:
            total = _uncompressed_size(p)
            with gzip.open(p, "rb") as f:
                head = f.read(_HEAD)
        else:
            total = os.path.getsize(p)
            with open(p, "rb") as f:
                head = f.read(_HEAD)
    except (OSError, EOFError):
        return None
    if total is None:
        return None
    lines = [ln for ln in head.splitlines()[:-1] if ln and not ln.startswith(b"#")]
    data = lines[1:]  # the header
    if len(data) < 10:
        return None
    per_row = sum(len(x) + 1 for x in data) / len(data)
    return total / per_row / fs


def seconds_bar(
    desc: str, total_s: float | None, *, leave: bool = False, disable: bool = False
) -> Any:
    """A tqdm bar counting seconds of signal (drawn only when stderr is a terminal, and
    never with ``disable``)."""
    from tqdm import tqdm

    return tqdm(
        desc=desc,
        total=None if total_s is None else max(1.0, round(total_s)),
        unit="s",
        disable=True if disable else None,
        file=sys.stderr,
        leave=leave,
        bar_format=BAR_FORMAT if total_s is not None else BAR_FORMAT_OPEN,
    )


def through(chunks: Iterable[Chunk], bar: Any) -> Iterator[Chunk]:
    """The chunks, advancing ``bar`` by each one's seconds of signal."""
    for chunk in chunks:
        yield chunk
        step = len(chunk.data) / chunk.fs
        if bar.total is not None and bar.n + step > bar.total:
            bar.total = round(bar.n + step)  # the estimate was short: grow, never pass 100 %
        bar.update(step)
