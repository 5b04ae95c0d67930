"""Chunked reader for CSV recordings as plants export them.

A *recording* is a text table: optional leading ``#`` comment lines, one header
row, then one row per sample. :class:`CsvRecording` streams it as
:class:`~pdm.sources.base.Chunk` blocks of at most ``chunk_rows`` rows, so memory
stays bounded whatever the file size (a 2 GB export streams like a 2 MB one).

What it copes with, because real exports do it:

* delimiter ``,`` ``;`` or tab, sniffed from the header; decimal comma
  (``0,123``) when the delimiter is ``;`` or tab;
* gzip (``.csv.gz``), detected from the file's magic bytes, not its name;
* UTF-8 (with or without BOM) and, failing that, Windows-1252 (what Excel writes);
* an optional time column, in seconds (relative or POSIX) or ISO 8601;
* the sample rate given as an argument, a ``# sample_rate_hz=`` comment, a
  ``<stem>.json`` sidecar, or derived from the time column.

What it refuses, because memory must stay bounded and times must fit the
appliance's integer nanoseconds: a line longer than :data:`MAX_LINE_BYTES`
(256 KiB; ``/dev/zero`` renamed ``.csv`` is one endless line), more than
:data:`MAX_CHANNELS` channels, a file that is not a regular file (a FIFO or a
device such as ``/dev/zero``: the reader reads a file more than once), and a
time outside the years 1900–2199 (:data:`TIME_RANGE_S`). A block of rows holds
at most ~32 MiB of text whatever ``chunk_rows`` says.

Every problem with the file is a one-line :class:`~pdm.errors.CsvError`
``FILE:LINE: column 'X': reason``; nothing is skipped silently.

Parsing is done a block at a time with :func:`numpy.loadtxt` (C parser). Only
when a block fails is it re-scanned line by line in Python, to name the exact
line and column (or, with ``on_bad_data="invalidate"``, to replace the bad
cells by NaN).
"""

from __future__ import annotations

import calendar
import codecs
import difflib
import gzip
import io
import json
import math
import os
import re
import stat
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice, pairwise, repeat
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import numpy as np
import numpy.typing as npt

from pdm.core.text import HIDDEN_CHARS, listing
from pdm.errors import CsvError, InputError
from pdm.sources.base import Chunk

__all__ = ["MAX_CHANNELS", "MAX_LINE_BYTES", "TIME_COLUMN_NAMES", "TIME_RANGE_S", "CsvRecording"]

#: Header names (case-insensitive) recognised as the time column.
TIME_COLUMN_NAMES = frozenset({"time", "t", "timestamp", "time_s", "seconds", "datetime", "date"})

#: The longest line (bytes, after gzip; the line break excluded) a recording may have.
#: A row of 10,000 numbers or a header of 10,000 names fits; an endless line (``/dev/zero``,
#: a binary file) is refused at its line number instead of growing memory until it swaps.
MAX_LINE_BYTES = 1 << 18

#: The most channels read from one recording (the stream protocol's limit as well): with
#: a window of up to 2**22 samples each channel costs 16 MiB a window.
MAX_CHANNELS = 64

#: Times a recording may carry, POSIX seconds: 1900-01-01 to 2200-01-01 (UTC). Inside the
#: appliance times are int64 nanoseconds (±292 years around 1970); this range keeps every
#: window, gap and derived time far from that edge, and no plant recording lies outside it.
TIME_RANGE_S = (-2_208_988_800.0, 7_258_118_400.0)

# Text read for one block at most (bytes): bounds memory when lines are long, whatever
# chunk_rows says. A block of 65,536 typical rows (20-60 bytes) is far below it.
_BLOCK_BYTES = 32 << 20

# A sidecar holds a few keys; anything bigger is not one.
_SIDECAR_BYTES = 1 << 20

_NS_RANGE = (int(TIME_RANGE_S[0]) * 1_000_000_000, int(TIME_RANGE_S[1]) * 1_000_000_000)

# A numeric time column whose first value is at least this is taken as POSIX
# seconds (1e8 s is 1973-03-03); below it, as seconds relative to start_time.
# Nobody records for three years without a break, so the two never overlap.
_POSIX_THRESHOLD = 1e8

# The derived rate is snapped to the nearest integer when it is this close
# (relative): time stamps rounded to 1 µs leave ~1e-7 of noise on a 65536-row
# block, and 12000.000002 Hz in a report only confuses people.
_SNAP_RTOL = 1e-5

# Two declared rates are "the same" below this relative difference.
_RATE_RTOL = 1e-6

# Time steps may deviate this much (relative) from the median before a derived
# rate is refused, and a declared rate may differ this much from the time column.
_JITTER_RTOL = 0.01

# A given rate is checked against the time column only with this many steps
# in the first block (fewer steps are too easily dominated by gaps or rounding).
_MIN_STEPS_FOR_CHECK = 16

# Bad-cell descriptions kept per block for Chunk.notes (invalidate mode).
_MAX_NOTES_PER_BLOCK = 10

_COMMENT_KV = re.compile(r"#\s*([A-Za-z_][\w.]*)\s*[=:]\s*(.*?)\s*$")
_ISO_RE = re.compile(
    r"\s*(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?"  # date, time, fraction
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*\Z"  # UTC offset
)
_DECIMAL_COMMA_CELL = re.compile(r"\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*\Z")
_DELIMITERS = (",", ";", "\t")
_DELIM_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_STRIP_SUFFIXES = (".csv.gz", ".tsv.gz", ".txt.gz", ".csv", ".tsv", ".txt", ".gz")


@dataclass(slots=True)
class _Block:
    """One parsed block of rows (internal).

    Attributes
    ----------
    data : (n_rows, n_channels) float64
        Channel values; NaN only for invalidated cells.
    t_raw : (n_rows,) int64 ns or float64 s, or None
        Time column as read: int64 nanoseconds since the epoch for ISO 8601,
        float64 seconds (as written) for numeric time; None without a time column.
    problems : list of (line, column, reason)
        Invalidated cells (at most ``_MAX_NOTES_PER_BLOCK`` kept).
    """

    data: npt.NDArray[np.float64]
    t_raw: npt.NDArray[Any] | None
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)


class CsvRecording:
    """A CSV recording, read in chunks of bounded size.

    Implements the :class:`~pdm.sources.base.Source` protocol. Opening reads the
    comments, the header and the first block (to sniff the format and settle the
    sample rate); :meth:`chunks` then streams the whole file from the start and
    may be called again to replay it.

    Parameters
    ----------
    path : str or os.PathLike
        ``.csv``, ``.tsv``, ``.txt``, optionally gzip-compressed (``.gz``).
    columns : sequence of str, optional
        Header names of the channels to read, in this order. Default: every
        column except the time column. A column listed here is never taken as
        the time column (so a temperature column named ``T`` can be read).
    fs : float, optional
        Sample rate in Hz (from ``--fs`` or the pipeline). Wins over the file's
        own rate, but it is an :class:`~pdm.errors.InputError` if the file
        declares a different one.
    on_bad_data : {"error", "invalidate"}
        ``"error"``: the first bad cell or row raises :class:`~pdm.errors.CsvError`.
        ``"invalidate"``: bad cells (non-numeric, empty, NaN, inf) become NaN and
        a row with the wrong number of fields becomes an all-NaN row; both are
        counted in ``Chunk.bad_samples`` and :attr:`bad_samples`. A bad or
        non-increasing time is never repairable and always raises.
    start_time : float, optional
        POSIX seconds (UTC) of the first sample, for files without absolute
        times. Default: the ``# start_time=`` comment, else the sidecar's
        ``start_time``, else 0. Ignored when the time column holds absolute
        (ISO 8601 or POSIX) times.
    chunk_rows : int
        Maximum rows per block read and per chunk yielded.
    max_gap_s : float, optional
        With a time column, a step longer than this (seconds) is a gap: the
        current chunk ends and a new one starts at the row after the gap.
        Default: 1.5 sample periods.

    Attributes
    ----------
    path : str
        The file, as given.
    channels : tuple of str
        Channel (column) names, in the order of ``Chunk.data``'s columns.
    sample_rate_hz : float
        Sample rate in Hz.
    fs_source : {"argument", "comment", "sidecar", "time column"}
        Where :attr:`sample_rate_hz` came from.
    time_column : str or None
        Header name of the time column, if there is one.
    time_format : {"seconds", "posix", "iso8601"} or None
        How the time column is written ("seconds" = relative to start_time).
    delimiter : str
        Field delimiter: ``","``, ``";"`` or ``"\\t"``.
    decimal : str
        Decimal mark: ``"."`` or ``","``.
    encoding : str
        Text encoding used to decode the file.
    start_time : float
        POSIX seconds (UTC) of the first sample.
    header_line : int
        1-based line number of the header row.
    bad_samples : int
        Values replaced by NaN so far in the current pass of :meth:`chunks`.
    """

    path: str
    channels: tuple[str, ...]
    sample_rate_hz: float
    fs_source: str
    time_column: str | None
    time_format: str | None
    delimiter: str
    decimal: str
    encoding: str
    start_time: float
    header_line: int
    bad_samples: int

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        columns: Sequence[str] | None = None,
        fs: float | None = None,
        on_bad_data: Literal["error", "invalidate"] = "error",
        start_time: float | None = None,
        chunk_rows: int = 65536,
        max_gap_s: float | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if on_bad_data not in ("error", "invalidate"):
            raise InputError(
                f"{self.path}: on_bad_data must be 'error' or 'invalidate', not {on_bad_data!r}"
            )
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InputError(
                f"{self.path}: chunk_rows must be a positive integer, not {chunk_rows!r}"
            )
        if max_gap_s is not None and not (_is_number(max_gap_s) and max_gap_s > 0):
            raise InputError(f"{self.path}: max_gap_s must be a positive number, not {max_gap_s!r}")
        if start_time is not None and not _is_number(start_time):
            raise InputError(f"{self.path}: start_time must be POSIX seconds, not {start_time!r}")
        fs_arg = None if fs is None else _check_rate(fs, self.path, "the fs argument")
        self._invalidate = on_bad_data == "invalidate"
        self._chunk_rows = chunk_rows
        self._max_gap_s = max_gap_s
        self._handles: set[IO[str]] = set()
        self._time_idx: int | None = None
        self.bad_samples = 0

        self._gzip, self.encoding = self._sniff_container()
        with self._open() as f:
            comments, header_raw = self._read_preamble(f)
            first = next(self._blocks(f, self.header_line + 1), None)
        if first is None:
            raise CsvError(self.path, self.header_line + 1, None, "no data rows after the header")
        first_start, first_lines = first

        self.delimiter = _sniff_delimiter(header_raw, first_lines[0])
        self._names = self._split_header(header_raw)
        self._nf = len(self._names)
        self._select_columns(columns)
        self.decimal = self._sniff_decimal(first_lines)
        self._decimal_comma = self.decimal == ","
        self._iso_cache: dict[tuple[str, str, str | None], int] = {}
        self.time_format = None
        if self._time_idx is not None:
            self.time_format = self._sniff_time_format(first_start, first_lines[0])
        numeric_time = self.time_format in ("seconds", "posix")
        usecols = list(self._data_idx)
        if numeric_time and self._time_idx is not None:
            usecols.append(self._time_idx)  # parsed with the data, last column of the array
        self._usecols = tuple(usecols)
        # loadtxt raises for a short row only if the row lacks a used column, and
        # ignores surplus fields. When the last column is used, a short row always
        # raises, so the block's total delimiter count is enough to catch long rows;
        # otherwise every row's count is checked.
        self._last_col_used = (self._nf - 1) in self._usecols

        # Sample rate and start time declared by the file (comment, sidecar).
        sidecar_path, sidecar = self._read_sidecar()
        declared: list[tuple[float, str, str]] = []  # (rate, source, where)
        if "sample_rate_hz" in comments:
            value, line = comments["sample_rate_hz"]
            declared.append((self._comment_rate(value, line), "comment", f"comment on line {line}"))
        if sidecar is not None and sidecar.get("sample_rate_hz") is not None:
            sidecar_rate = _check_rate(
                sidecar["sample_rate_hz"], sidecar_path, "key 'sample_rate_hz'"
            )
            declared.append((sidecar_rate, "sidecar", f"sidecar {sidecar_path}"))
        if len(declared) == 2 and _rates_differ(declared[0][0], declared[1][0]):
            (r1, _, w1), (r2, _, w2) = declared
            raise InputError(
                f"{self.path}: the file declares two sample rates: {r1:.10g} Hz in the {w1} "
                f"and {r2:.10g} Hz in the {w2}; fix one of them"
            )
        if fs_arg is not None:
            for declared_rate, _, where in declared:
                if _rates_differ(fs_arg, declared_rate):
                    raise InputError(
                        f"{self.path}: sample rate {fs_arg:.10g} Hz from the fs argument "
                        f"(--fs or acquisition.sample_rate_hz) disagrees with "
                        f"{declared_rate:.10g} Hz declared in the {where}; analysing at the "
                        f"wrong rate shifts every frequency, so make them agree"
                    )
        start_where: tuple[int | None, str] | None = None  # (comment line, where) of start_time
        if start_time is None and "start_time" in comments:
            value, line = comments["start_time"]
            start_time = self._parse_start_time(value, f"comment on line {line}", line)
            start_where = (line, f"comment on line {line}")
        if start_time is None and sidecar is not None and sidecar.get("start_time") is not None:
            where = f"sidecar {sidecar_path} key 'start_time'"
            start_time = self._parse_start_time(sidecar["start_time"], where, None)
            start_where = (None, where)
        start = 0.0 if start_time is None else float(start_time)
        if (why := _time_problem(start)) is not None:
            where = f"{start_where[1]}" if start_where else "the start_time argument (--start)"
            if start_where and start_where[0] is not None:
                raise CsvError(self.path, start_where[0], None, f"start_time: {why}")
            raise InputError(f"{self.path}: {where}: start_time: {why}")

        rate: float | None
        if fs_arg is not None:
            rate, self.fs_source = fs_arg, "argument"
        elif declared:
            rate, self.fs_source = declared[0][0], declared[0][1]
        else:
            rate, self.fs_source = None, "time column"

        # The first block settles the time reference, and the rate if nobody gave one.
        block = self._parse_block(first_start, first_lines)
        self._t_ref_raw: float | int = 0
        self._t_ref = start
        if block.t_raw is not None:
            t_raw = block.t_raw
            self._check_increasing(first_start, first_lines, t_raw, None, None)
            if self.time_format == "iso8601":
                self._t_ref_raw = int(t_raw[0])
                self._t_ref = self._t_ref_raw / 1e9
            else:
                self._t_ref_raw = float(t_raw[0])
                self.time_format = "posix" if self._t_ref_raw >= _POSIX_THRESHOLD else "seconds"
                posix = self.time_format == "posix"
                self._t_ref = self._t_ref_raw if posix else start + self._t_ref_raw
            t_rel = self._rel(t_raw)
            if rate is None:
                rate = self._derive_rate(first_start, first_lines, t_rel)
            else:
                self._check_rate_against_time(rate, t_rel)
        elif rate is None:
            raise InputError(
                f"{self.path}: no sample rate: the file has no time column, no "
                f"'# sample_rate_hz=' comment and no sidecar {sidecar_path} with 'sample_rate_hz'; "
                f"pass --fs or set acquisition.sample_rate_hz"
            )
        self.sample_rate_hz = rate
        self.start_time = self._t_ref

    # ------------------------------------------------------------------ protocol

    def chunks(self) -> Iterator[Chunk]:
        """Stream the recording from its first data row.

        Yields
        ------
        Chunk
            ``data`` (n_samples, n_channels) float64 with ``n_samples <= chunk_rows``;
            ``t0`` in POSIX seconds. Without a time column ``t0 = start_time +
            index / fs`` for the integer index of the chunk's first sample. With
            one, ``t0`` is the first row's time, and a step longer than
            ``max_gap_s`` (default 1.5 sample periods) ends the chunk, so the
            next chunk's ``t0`` jumps and downstream windowing restarts.

        Raises
        ------
        CsvError
            A bad line or cell (``on_bad_data="error"``), or a time that does not increase.
        InputError
            The file cannot be read (I/O error, corrupt gzip).
        """
        self.bad_samples = 0
        fs = self.sample_rate_hz
        max_gap = self._max_gap_s if self._max_gap_s is not None else 1.5 / fs
        f = self._open()
        self._handles.add(f)
        try:
            for _ in islice(f, self.header_line):
                pass
            index = 0  # samples so far, for t0 without a time column
            prev_raw: float | int | None = None
            prev_rel = 0.0
            prev_line: str | None = None
            for start, lines in self._blocks(f, self.header_line + 1):
                block = self._parse_block(start, lines)
                n = block.data.shape[0]
                if block.t_raw is None:
                    t0 = self.start_time + index / fs
                    self._check_times(start, n, t0, 1.0 / fs)
                    chunk = self._make_chunk(block, 0, n, start, t0, ())
                    index += n
                    yield chunk
                    if f.closed:  # close() while this pass ran: it ends here
                        return
                    continue
                self._check_increasing(start, lines, block.t_raw, prev_raw, prev_line)
                t_rel = self._rel(block.t_raw)
                self._check_times(start, n, self._t_ref, t_rel)
                steps = np.diff(t_rel, prepend=prev_rel if prev_raw is not None else t_rel[0])
                cuts = np.flatnonzero(steps > max_gap)
                bounds = [0, *(int(c) for c in cuts if c > 0), n]
                for a, b in pairwise(bounds):
                    notes: tuple[str, ...] = ()
                    if steps[a] > max_gap:
                        notes = (
                            f"gap of {steps[a]:.6g} s before line {start + a} "
                            f"(more than {max_gap:.6g} s): time base restarts",
                        )
                    t0 = self._t_ref + float(t_rel[a])
                    yield self._make_chunk(block, a, b, start, t0, notes)
                    if f.closed:
                        return
                prev_raw = block.t_raw[-1].item()
                prev_rel = float(t_rel[-1])
                prev_line = lines[-1]
        finally:
            self._handles.discard(f)
            f.close()

    def close(self) -> None:
        """Close any file a running :meth:`chunks` generator holds open; that pass then
        ends after the chunk it last yielded (as a source stops when asked)."""
        for f in list(self._handles):
            f.close()
        self._handles.clear()

    def __enter__(self) -> CsvRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # getattr: repr may run (in a traceback) on a half-initialised object.
        return (
            f"CsvRecording({self.path!r}, channels={getattr(self, 'channels', None)!r}, "
            f"sample_rate_hz={getattr(self, 'sample_rate_hz', None)!r} "
            f"({getattr(self, 'fs_source', '?')}), "
            f"time_column={getattr(self, 'time_column', None)!r})"
        )

    # ------------------------------------------------------------------ opening

    def _sniff_container(self) -> tuple[bool, str]:
        """Return (is gzip, text encoding) from the file's first bytes."""
        try:
            mode = os.stat(self.path).st_mode
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {_os_reason(exc)}") from exc
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else _special_kind(mode)
            raise InputError(
                f"{self.path}: not a regular file ({what}); a recording is read more than "
                f"once, so save the data to a file first"
            )
        try:
            with open(self.path, "rb") as raw:
                is_gz = raw.read(2) == b"\x1f\x8b"
            opener = gzip.open if is_gz else open
            with opener(self.path, "rb") as fb:
                head = fb.read(65536)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{self.path}: cannot read: {_os_reason(exc)}") from exc
        try:
            # final=False: a multi-byte character cut at the 64 KiB mark is fine.
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            # Not UTF-8: almost surely an Excel export on Windows (Windows-1252).
            return is_gz, "cp1252"
        return is_gz, "utf-8-sig"  # -sig drops a BOM, which Excel also writes

    def _open(self) -> IO[str]:
        """The file as text, through :class:`_BoundedLines` (``f.buffer``)."""
        try:
            raw: Any = gzip.open(self.path, "rb") if self._gzip else open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open: {_os_reason(exc)}") from exc
        # TextIOWrapper takes any object with the buffer methods it calls (typeshed: a protocol).
        guard: Any = _BoundedLines(raw, MAX_LINE_BYTES)
        return io.TextIOWrapper(guard, encoding=self.encoding)

    def _read_preamble(self, f: IO[str]) -> tuple[dict[str, tuple[str, int]], str]:
        """Read comment lines up to the header; set ``header_line``.

        Returns
        -------
        comments : dict
            ``key -> (value, line)`` for each ``# key=value`` / ``# key: value`` comment
            (keys lower-cased).
        header : str
            The header line, without its line break.
        """
        comments: dict[str, tuple[str, int]] = {}
        lineno = 0
        while True:
            batch = self._read_block(f, lineno + 1, 1)
            if not batch:
                break
            lineno += 1
            text = batch[0].strip()
            if not text:
                continue
            if text.startswith("#"):
                m = _COMMENT_KV.match(text)
                if m:
                    key = m.group(1).lower()
                    if key in comments and comments[key][0] != m.group(2):
                        raise CsvError(
                            self.path,
                            lineno,
                            None,
                            f"comment {key!r} repeats with a different value "
                            f"(line {comments[key][1]} says {comments[key][0]!r})",
                        )
                    comments[key] = (m.group(2), lineno)
                continue
            self.header_line = lineno
            return comments, batch[0].rstrip("\r\n")
        what = "empty file" if lineno == 0 else "only comments or blank lines"
        raise CsvError(self.path, lineno + 1, None, f"{what}: a header row is required")

    def _read_block(self, f: IO[str], first_line: int, n: int) -> list[str]:
        """Read up to ``n`` lines, at most ~``_BLOCK_BYTES`` of text (fewer lines when they
        are long); read errors become InputError / CsvError, a line over
        :data:`MAX_LINE_BYTES` a CsvError at its line."""
        out: list[str] = []
        guard = getattr(f, "buffer", None)
        assert isinstance(guard, _BoundedLines)
        start = guard.bytes_read
        try:
            # Steps of lines that cannot overrun the budget even at the longest line length.
            while len(out) < n:
                room = _BLOCK_BYTES - (guard.bytes_read - start)
                step = min(n - len(out), room // MAX_LINE_BYTES)
                if step <= 0 and out:
                    break
                before = len(out)
                out.extend(islice(f, max(step, 1)))  # extend keeps the lines read on error
                if len(out) - before < max(step, 1):
                    break  # end of file
            return out
        except _LongLine:
            raise CsvError(
                self.path,
                first_line + len(out),
                None,
                f"line longer than {MAX_LINE_BYTES:,} bytes (the limit); not a CSV recording?",
            ) from None
        except UnicodeDecodeError as exc:
            raise CsvError(
                self.path,
                first_line,
                None,
                f"not valid {self.encoding} text in this line or the next {n - 1} "
                f"({exc.reason}); re-save the file as UTF-8",
            ) from exc
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(
                f"{self.path}: cannot read after line {first_line - 1}: {_os_reason(exc)}"
            ) from exc

    def _blocks(self, f: IO[str], first_line: int) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line number of first line, lines)`` blocks of at most ``chunk_rows`` rows.

        Blank lines right after the header and at the very end of the file are
        dropped (exporters and editors add them; no sample is lost). Blank lines
        between data rows stay in and are reported as bad rows.
        """
        start = first_line  # line of the next line to yield
        blanks = 0  # blank lines after it, held back: only EOF makes them harmless
        leading = True
        while True:
            new = self._read_block(f, start + blanks, self._chunk_rows)
            if not new:
                return  # the held-back blank lines were trailing ones
            if leading:
                skip = 0
                while skip < len(new) and not new[skip].strip():
                    skip += 1
                start += skip
                new = new[skip:] if skip else new
                leading = not new
                if leading:
                    continue
            k = len(new)
            while k > 0 and not new[k - 1].strip():
                k -= 1
            if k == 0:
                blanks += len(new)  # counted, not kept: a million blank lines cost nothing
                continue
            rows = self._chunk_rows
            while blanks >= rows:  # data follows: the held-back lines are bad rows
                yield start, ["\n"] * rows
                start, blanks = start + rows, blanks - rows
            if blanks:
                lines = ["\n"] * blanks + new[:k]
                for i in range(0, len(lines), rows):
                    yield start + i, lines[i : i + rows]
                start += len(lines)
            else:
                yield start, (new[:k] if k < len(new) else new)
                start += k
            blanks = len(new) - k

    # ------------------------------------------------------------------ header

    def _split_header(self, header: str) -> list[str]:
        names = [_unquote(x) for x in header.split(self.delimiter)]
        if len(names) > 1 and names[-1] == "":
            # Some exporters end every line with the delimiter; the last field is
            # then always empty and never a channel, but still counts as a field.
            names[-1] = f"<unnamed column {len(names)}>"
        for i, name in enumerate(names):
            if name == "":
                raise CsvError(self.path, self.header_line, None, f"header field {i + 1} is empty")
            bad = HIDDEN_CHARS.search(name)
            if bad:
                # A name is printed to terminals, logs and pages: an escape sequence in it
                # would rewrite the analyst's screen, a direction override reverse the line.
                raise CsvError(
                    self.path,
                    self.header_line,
                    None,
                    f"header field {i + 1} holds U+{ord(bad.group()):04X}, a control or "
                    "invisible formatting character; rename the column",
                )
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise CsvError(
                    self.path,
                    self.header_line,
                    name,
                    f"duplicate header name (fields {seen[name] + 1} and {i + 1})",
                )
            seen[name] = i
        if all(_float_or_none(x) is not None for x in names):
            raise CsvError(
                self.path,
                self.header_line,
                None,
                "no header row: the first line holds numbers; add a header naming the columns",
            )
        return names

    def _select_columns(self, columns: Sequence[str] | None) -> None:
        """Set ``channels``, ``time_column`` and the column indices."""
        names = self._names
        if isinstance(columns, str):
            columns = [columns]
        wanted = None if columns is None else list(columns)
        if wanted is not None:
            if not wanted:
                raise InputError(f"{self.path}: columns is empty; name at least one channel")
            for c in wanted:
                if wanted.count(c) > 1:
                    raise InputError(f"{self.path}: column {c!r} is requested twice")
                if c not in names:
                    header = listing(names)
                    close = difflib.get_close_matches(c, names, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise CsvError(
                        self.path,
                        self.header_line,
                        c,
                        f"not in the header; the columns are {header}{hint}",
                    )
        self._time_idx = None
        for i, name in enumerate(names):
            if name.lower() in TIME_COLUMN_NAMES and (wanted is None or name not in wanted):
                self._time_idx = i
                break
        self.time_column = None if self._time_idx is None else names[self._time_idx]
        if wanted is None:
            wanted = [
                n
                for i, n in enumerate(names)
                if i != self._time_idx and not n.startswith("<unnamed column")
            ]
            if not wanted:
                raise CsvError(
                    self.path, self.header_line, None, "no data columns besides the time column"
                )
        if len(wanted) > MAX_CHANNELS:
            raise CsvError(
                self.path,
                self.header_line,
                None,
                f"{len(wanted)} channels: at most {MAX_CHANNELS} are read from one recording; "
                f"choose the columns (--columns or the pipeline's sensors)",
            )
        self.channels = tuple(wanted)
        index = {name: i for i, name in enumerate(names)}
        self._data_idx = [index[c] for c in wanted]

    def _sniff_decimal(self, lines: list[str]) -> str:
        """Decimal comma if a used cell in the first rows holds a comma."""
        if self.delimiter == ",":
            return "."
        used = [*self._data_idx, *(() if self._time_idx is None else (self._time_idx,))]
        for line in lines[:200]:
            fields = line.split(self.delimiter)
            for i in used:
                if i < len(fields) and "," in fields[i]:
                    return ","
        return "."

    def _sniff_time_format(self, lineno: int, line: str) -> str:
        assert self._time_idx is not None and self.time_column is not None
        fields = line.rstrip("\r\n").split(self.delimiter)
        if self._time_idx >= len(fields):
            raise CsvError(
                self.path,
                lineno,
                self.time_column,
                f"missing: the row has {len(fields)} fields, the header {self._nf}",
            )
        cell = fields[self._time_idx]
        if _float_or_none(self._num(cell)) is not None:
            return "seconds"  # refined to "posix" once the first value is known
        if _iso_to_ns(cell, {}) is not None:
            return "iso8601"
        raise CsvError(
            self.path,
            lineno,
            self.time_column,
            f"neither seconds nor an ISO 8601 date-time: {cell.strip()!r}",
        )

    # ------------------------------------------------------------------ rate & time

    def _read_sidecar(self) -> tuple[str, dict[str, Any] | None]:
        """Return (sidecar path, its JSON object or None if there is no sidecar).

        The sidecar is ``<stem>.json`` next to the file, the stem being the name
        without ``.csv``/``.csv.gz`` (or ``.tsv``, ``.txt``, ``.gz``).
        """
        p = Path(self.path)
        name = p.name
        for suffix in _STRIP_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        else:
            name = p.stem  # rec.dat -> rec.json
        sidecar = str(p.with_name(name + ".json"))
        if not os.path.isfile(sidecar):
            return sidecar, None
        try:
            with open(sidecar, "rb") as fh:
                raw = fh.read(_SIDECAR_BYTES + 1)
            if len(raw) > _SIDECAR_BYTES:
                raise InputError(
                    f"{sidecar}: the sidecar is larger than {_SIDECAR_BYTES:,} bytes; "
                    f"it holds a few keys (sample_rate_hz, start_time)"
                )
            meta = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            # ValueError: bad JSON, or an integer of more digits than Python converts.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if isinstance(exc, RecursionError):
                reason = "nested too deeply"
            raise InputError(f"{sidecar}: cannot read the sidecar JSON: {reason}") from exc
        if not isinstance(meta, dict):
            raise InputError(f"{sidecar}: the sidecar must hold a JSON object")
        return sidecar, meta

    def _comment_rate(self, value: str, line: int) -> float:
        text = re.sub(r"\s*hz\s*$", "", value, flags=re.IGNORECASE)
        rate = _float_or_none(text.replace(",", ".") if "." not in text else text)
        if rate is None or not 0 < rate < math.inf:  # 400 nines parse as inf
            raise CsvError(
                self.path, line, None, f"sample_rate_hz is not a positive number: {value!r}"
            )
        return rate

    def _parse_start_time(self, value: object, where: str, line: int | None) -> float:
        if _is_number(value):
            return float(value)  # type: ignore[arg-type]
        if isinstance(value, str):
            num = _float_or_none(value)
            if num is not None:
                return num
            ns = _iso_to_ns(value, {})
            if ns is not None:
                return ns / 1e9
        reason = f"start_time is neither POSIX seconds nor ISO 8601: {value!r}"
        if line is not None:
            raise CsvError(self.path, line, None, reason)
        raise InputError(f"{self.path}: {where}: {reason}")

    def _rel(self, t_raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Times relative to the first sample, seconds (n,) float64.

        ISO times are subtracted as int64 nanoseconds before the float
        conversion, so steps of microseconds survive (POSIX float64 seconds
        resolve only ~0.24 µs today).
        """
        if t_raw.dtype.kind == "i":
            return (t_raw - np.int64(self._t_ref_raw)).astype(np.float64) / 1e9
        return np.asarray(t_raw - self._t_ref_raw, dtype=np.float64)

    def _derive_rate(self, start: int, lines: list[str], t_rel: npt.NDArray[np.float64]) -> float:
        """Sample rate from the first block's time column, or CsvError if it is irregular.

        A step may differ from the median step by 1 %, plus the resolution the
        stamps are written with when that is under a tenth of the step: 25.6 kHz
        stamped to 1 µs has steps of 39 and 40 µs, which is rounding, not jitter.
        Anything more (jitter, a gap) is refused, naming the line, since the rate
        would then be a guess.
        """
        n = t_rel.shape[0]
        if n < 2:
            raise InputError(
                f"{self.path}: cannot derive the sample rate from a single data row; "
                f"pass --fs or set acquisition.sample_rate_hz"
            )
        steps = np.diff(t_rel)
        med = float(np.median(steps))
        res = self._stamp_resolution(lines)
        # Rounding is only forgiven when it is small against the step: with whole
        # seconds at 1 Hz, "one unit" would be a whole missing sample.
        tol = _JITTER_RTOL * med + (res if res <= 0.1 * med else 0.0)
        bad = np.flatnonzero(np.abs(steps - med) > tol)
        if bad.size:
            k = int(bad[0])
            raise CsvError(
                self.path,
                start + k + 1,
                self.time_column,
                f"time step {steps[k]:.9g} s differs from the median step {med:.9g} s by more "
                f"than 1 % (plus the stamps' rounding), so the sample rate cannot be derived "
                f"from the time column; "
                f"pass --fs or set acquisition.sample_rate_hz",
            )
        # Every step is within 1 % of the median (no gaps), so the mean step over
        # the block is a far better estimate than the median of rounded stamps.
        rate = (n - 1) / float(t_rel[-1] - t_rel[0])
        nearest = round(rate)
        if nearest > 0 and abs(rate - nearest) <= _SNAP_RTOL * rate:
            rate = float(nearest)
        return rate

    def _stamp_resolution(self, lines: list[str]) -> float:
        """Rounding step of the time stamps (s), from the decimals of the first rows."""
        decimals = 0
        for line in lines[:100]:
            cell = self._time_text(line)
            if self.time_format == "iso8601":
                m = _ISO_RE.match(cell)
                frac = m.group(3) if m else None
                decimals = max(decimals, len(frac or ""))
            elif "e" not in cell.lower():
                cell = self._num(cell)
                if "." in cell:
                    decimals = max(decimals, len(cell) - cell.index(".") - 1)
            else:
                return 0.0  # exponent notation: the precision is relative, assume exact
        return 10.0**-decimals

    def _check_rate_against_time(self, rate: float, t_rel: npt.NDArray[np.float64]) -> None:
        """Refuse a given rate that the time column contradicts (the wrong-physics trap).

        Uses the first block. The step estimate is the mean of the steps within
        0.5-1.5x the median (gaps left out; the mean undoes the rounding of
        time stamps, which makes single steps at 48 kHz and 1 µs stamps 4 % off).
        It needs at least ``_MIN_STEPS_FOR_CHECK`` steps, and a majority of
        regular ones: with fewer, a few gaps could pass for a slower rate.
        """
        steps = np.diff(t_rel)
        if steps.size < _MIN_STEPS_FOR_CHECK:
            return
        med = float(np.median(steps))
        regular = steps[(steps > 0.5 * med) & (steps < 1.5 * med)]
        if 2 * regular.size < steps.size:
            return
        step = float(np.mean(regular))
        if abs(step * rate - 1.0) > _JITTER_RTOL:
            raise InputError(
                f"{self.path}: the time column {self.time_column!r} steps by {step:.9g} s "
                f"({1 / step:.8g} Hz) but the sample rate is {rate:.10g} Hz "
                f"(from the {self.fs_source}); make them agree"
            )

    def _check_times(
        self, start: int, n: int, t0: float, step: float | npt.NDArray[np.float64]
    ) -> None:
        """Raise at the first of ``n`` rows (from line ``start``) whose time is outside
        :data:`TIME_RANGE_S`. Row k's time is ``t0 + k·step`` (no time column), or
        ``t0 + step[k]`` with ``step`` the times relative to ``t0``; times increase."""

        def time_of(k: int) -> float:
            return t0 + (k * step if isinstance(step, float) else float(step[k]))

        if _time_problem(time_of(0)) is None and _time_problem(time_of(n - 1)) is None:
            return
        bad = 0
        if _time_problem(time_of(0)) is None:  # the first bad row, by bisection
            good, bad = 0, n - 1
            while bad - good > 1:
                mid = (good + bad) // 2
                good, bad = (mid, bad) if _time_problem(time_of(mid)) is None else (good, mid)
        where = self.time_column if self.time_format is not None else None
        raise CsvError(self.path, start + bad, where, str(_time_problem(time_of(bad))))

    def _check_increasing(
        self,
        start: int,
        lines: list[str],
        t_raw: npt.NDArray[Any],
        prev: float | int | None,
        prev_line: str | None,
    ) -> None:
        """Raise at the first time that is not after the one before (never repairable)."""
        if prev is not None:
            steps = np.diff(t_raw, prepend=np.asarray([prev], dtype=t_raw.dtype))
            offset = 0
        else:
            steps = np.diff(t_raw)
            offset = 1
        bad = np.flatnonzero(steps <= 0)
        if not bad.size:
            return
        k = int(bad[0]) + offset
        before = lines[k - 1] if k > 0 else prev_line
        assert self.time_column is not None
        raise CsvError(
            self.path,
            start + k,
            self.time_column,
            f"time {self._time_text(lines[k])!r} is not after the previous row's "
            f"{self._time_text(before)!r}; times must increase strictly",
        )

    def _time_text(self, line: str | None) -> str:
        if line is None or self._time_idx is None:
            return "?"
        fields = line.rstrip("\r\n").split(self.delimiter)
        return fields[self._time_idx].strip() if self._time_idx < len(fields) else "?"

    # ------------------------------------------------------------------ parsing

    def _num(self, cell: str) -> str:
        return cell.replace(",", ".") if self._decimal_comma else cell

    def _parse_block(self, start: int, lines: list[str]) -> _Block:
        """Parse one block of rows, fast when it is clean.

        Parameters
        ----------
        start : int
            1-based file line of ``lines[0]``.
        lines : list of str
            The rows, with their line breaks.
        """
        n = len(lines)
        d = self.delimiter
        if not lines[0].strip():  # a blank line is a bad row (and loadtxt warns on no data)
            return self._scan_block(start, lines)
        fast = None
        joined = "".join(lines)
        # Cheap structural checks first; loadtxt ignores surplus fields and blank lines.
        if joined.count(d) == n * (self._nf - 1) and (
            self._last_col_used or set(map(str.count, lines, repeat(d))) == {self._nf - 1}
        ):
            source: Any = lines
            if self._decimal_comma:
                # The delimiter is ';' or tab here, so a comma can only be a decimal mark.
                source = io.StringIO(joined.replace(",", "."))
            try:
                arr = np.loadtxt(
                    source,
                    delimiter=d,
                    usecols=self._usecols,
                    comments=None,
                    dtype=np.float64,
                    ndmin=2,
                    quotechar=None,
                )
            except ValueError:
                arr = None
            if arr is not None and arr.shape[0] == n and bool(np.isfinite(arr).all()):
                fast = arr
        del joined
        if fast is None:
            return self._scan_block(start, lines)
        nd = len(self._data_idx)
        data = np.ascontiguousarray(fast[:, :nd])
        t_raw: npt.NDArray[Any] | None = None
        if self._time_idx is not None:
            if self.time_format == "iso8601":
                t_raw = self._iso_column(start, lines)
            else:
                t_raw = np.ascontiguousarray(fast[:, nd])
        return _Block(data, t_raw)

    def _iso_column(self, start: int, lines: list[str]) -> npt.NDArray[np.int64]:
        ti = self._time_idx
        assert ti is not None
        d = self.delimiter
        cache = self._iso_cache
        out = np.empty(len(lines), dtype=np.int64)
        cells = (
            [ln.split(d, 1)[0] for ln in lines]
            if ti == 0
            else [ln.split(d, ti + 1)[ti] for ln in lines]
        )
        lo, hi = _NS_RANGE
        for i, cell in enumerate(cells):
            ns = _iso_to_ns(cell, cache)
            if ns is None or not lo <= ns < hi:
                self._bad_iso(start + i, cell)
            out[i] = ns
        return out

    def _bad_iso(self, lineno: int, cell: str) -> NoReturn:
        ns = _iso_to_ns(cell, {})
        why = _time_problem(ns / 1e9) if ns is not None else None
        reason = (
            f"{cell.strip()!r}: {why}" if why else f"not an ISO 8601 date-time: {cell.strip()!r}"
        )
        raise CsvError(self.path, lineno, self.time_column, reason)

    def _scan_block(self, start: int, lines: list[str]) -> _Block:
        """Line-by-line parse of a block that failed the fast path.

        Finds the exact line and column of each problem; raises on the first one,
        or (invalidate mode) writes NaN and goes on.
        """
        n = len(lines)
        nd = len(self._data_idx)
        data = np.empty((n, nd), dtype=np.float64)
        ti = self._time_idx
        iso = self.time_format == "iso8601"
        t_raw: npt.NDArray[Any] | None = None
        if ti is not None:
            t_raw = np.empty(n, dtype=np.int64 if iso else np.float64)
        problems: list[tuple[int, str | None, str]] = []

        def bad(lineno: int, column: str | None, reason: str) -> None:
            if not self._invalidate:
                raise CsvError(self.path, lineno, column, reason)
            if len(problems) < _MAX_NOTES_PER_BLOCK:
                problems.append((lineno, column, reason))

        for i, raw in enumerate(lines):
            lineno = start + i
            line = raw.rstrip("\r\n")
            fields = line.split(self.delimiter)
            nfields = len(fields)
            if ti is not None and t_raw is not None:
                # The time decides where the row goes, so a bad one is never repaired.
                if ti >= nfields or not fields[ti].strip():
                    reason = (
                        "empty line"
                        if not line.strip()
                        else (
                            f"missing: the row has {nfields} fields, the header {self._nf}"
                            if ti >= nfields
                            else "empty cell"
                        )
                    )
                    raise CsvError(
                        self.path, lineno, self.time_column, reason + " (time is required)"
                    )
                cell = fields[ti]
                if iso:
                    ns = _iso_to_ns(cell, self._iso_cache)
                    if ns is None or not _NS_RANGE[0] <= ns < _NS_RANGE[1]:
                        self._bad_iso(lineno, cell)
                    t_raw[i] = ns
                else:
                    value, why = self._cell(cell)
                    if why is not None:
                        raise CsvError(self.path, lineno, self.time_column, why)
                    t_raw[i] = value
            if nfields != self._nf:
                if not line.strip():
                    reason, column = "empty line", None
                elif nfields < self._nf:
                    reason = f"too few fields: {nfields}, the header has {self._nf}"
                    column = self._names[nfields]  # the first missing one
                else:
                    reason, column = f"too many fields: {nfields}, the header has {self._nf}", None
                bad(lineno, column, reason)
                data[i] = np.nan
                continue
            for j, idx in enumerate(self._data_idx):
                value, why = self._cell(fields[idx])
                if why is not None:
                    bad(lineno, self._names[idx], why)
                    value = math.nan
                data[i, j] = value
        if not self._invalidate:
            # The scan found nothing loadtxt disliked: do not pretend it is fine.
            self._loadtxt_disagrees(start, lines)
        return _Block(data, t_raw, problems)

    def _loadtxt_disagrees(self, start: int, lines: list[str]) -> None:
        source: Any = lines
        if self._decimal_comma:
            source = [ln.replace(",", ".") for ln in lines]
        try:
            np.loadtxt(
                source,
                delimiter=self.delimiter,
                usecols=self._usecols,
                comments=None,
                dtype=np.float64,
                ndmin=2,
                quotechar=None,
            )
        except ValueError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CsvError(self.path, start, None, f"in the block starting here: {reason}") from exc

    def _cell(self, cell: str) -> tuple[float, str | None]:
        """Parse one numeric cell: ``(value, None)`` or ``(nan, reason)``."""
        text = cell.strip()
        if not text:
            return math.nan, "empty cell"
        value = _float_or_none(self._num(text))
        if value is None:
            return math.nan, f"not a number: {text!r}"
        if not math.isfinite(value):
            return math.nan, f"not a finite number: {text!r}"
        return value, None

    def _make_chunk(
        self, block: _Block, a: int, b: int, start: int, t0: float, notes: tuple[str, ...]
    ) -> Chunk:
        data = block.data[a:b] if (a, b) != (0, block.data.shape[0]) else block.data
        nbad = int(np.count_nonzero(np.isnan(data))) if self._invalidate else 0
        if nbad:
            self.bad_samples += nbad
            notes = notes + tuple(
                f"line {ln}: " + (f"column {col!r}: " if col else "") + f"{why} -> NaN"
                for ln, col, why in block.problems
                if start + a <= ln < start + b
            )
        return Chunk(
            data=data,
            fs=self.sample_rate_hz,
            t0=t0,
            channels=self.channels,
            first_line=start + a,
            bad_samples=nbad,
            notes=notes,
        )


# ---------------------------------------------------------------------- helpers


class _LongLine(Exception):
    """Raised through the text layer by :class:`_BoundedLines` (internal)."""


class _BoundedLines:
    """A binary file under the text layer that refuses a line longer than ``limit`` bytes.

    ``TextIOWrapper`` reads a line whole before returning it, so a file with no line
    break would fill memory; this layer sees every byte first (hands them out at most
    ``limit`` at a time, so a line within one read is always short enough) and raises
    :class:`_LongLine` once the bytes since the last ``\n`` or ``\r`` exceed ``limit``.
    ``bytes_read`` counts the bytes handed out (the block budget). A plain class, not an
    ``io.BufferedIOBase``: the text layer reads a subclass of that ~2x slower.
    """

    def __init__(self, raw: Any, limit: int) -> None:
        self._raw = raw  # BufferedReader or GzipFile: both have read1
        self._limit = limit
        self._run = 0  # bytes since the last line break
        self.bytes_read = 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def read1(self, size: int = -1) -> bytes:
        if size < 0 or size > self._limit:
            size = self._limit
        data: bytes = self._raw.read1(size)
        self.bytes_read += len(data)
        nl, cr = data.find(b"\n"), data.find(b"\r")
        first = cr if nl < 0 else nl if cr < 0 else min(nl, cr)
        if first < 0:
            self._run += len(data)
        else:
            if self._run + first > self._limit:
                raise _LongLine
            self._run = len(data) - 1 - max(data.rfind(b"\n"), data.rfind(b"\r"))
        if self._run > self._limit:
            raise _LongLine
        return data

    def read(self, size: int = -1) -> bytes:
        # The text layer asks for bounded reads; an unbounded one is served in pieces.
        if size < 0:
            parts = []
            while part := self.read1(self._limit):
                parts.append(part)
            return b"".join(parts)
        return self.read1(size)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._raw.close()


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO or pipe"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _time_problem(t: float) -> str | None:
    """Why POSIX seconds ``t`` cannot be a sample's time, or None when it can."""
    lo, hi = TIME_RANGE_S
    if lo <= t < hi:
        return None
    year = f" (the year {1970 + t / 31_556_952:.0f})" if math.isfinite(t) and abs(t) < 1e15 else ""
    return (
        f"time {t:.6g} s since 1970{year} is outside the years 1900-2199 that pdm-edge "
        f"handles (times inside are int64 nanoseconds)"
    )


def _sniff_delimiter(header: str, first_row: str) -> str:
    """Pick the delimiter from the header, using the first data row to break ties.

    A header like ``Zeit;Beschl. X, m/s²`` has both ``;`` and ``,``; the right
    one is the one the data row has as often as the header.
    """
    counts = {d: header.count(d) for d in _DELIMITERS}
    candidates = [d for d in _DELIMITERS if counts[d] > 0]
    if not candidates:
        # One column: the delimiter does not matter, but a decimal-comma value
        # must not be split at its comma.
        cell = first_row.rstrip("\r\n")
        return ";" if _DECIMAL_COMMA_CELL.match(cell) else ","
    consistent = [d for d in candidates if first_row.count(d) == counts[d]]
    pool = consistent or candidates
    return max(pool, key=lambda d: counts[d])


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name


def _float_or_none(text: str) -> float | None:
    text = text.strip()
    if "_" in text:  # Python accepts 1_000; CSV writers and numpy do not
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _is_number(x: object) -> bool:
    return (
        isinstance(x, int | float | np.integer | np.floating)
        and not isinstance(x, bool)
        and (math.isfinite(float(x)))
    )


def _check_rate(value: object, where: str, what: str) -> float:
    if not _is_number(value) or float(value) <= 0:  # type: ignore[arg-type]
        raise InputError(
            f"{where}: {what}: sample rate must be a positive number of Hz, not {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def _rates_differ(a: float, b: float) -> bool:
    return abs(a - b) > _RATE_RTOL * max(abs(a), abs(b))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _iso_to_ns(text: str, cache: dict[tuple[str, str, str | None], int]) -> int | None:
    """ISO 8601 date-time -> integer nanoseconds since the epoch (UTC), or None.

    Accepts ``YYYY-MM-DD[T ]hh:mm:ss[.fff…][Z|±hh[:mm]]``; naive times are UTC.
    The whole-second part is cached, since at kHz rates thousands of rows share it.
    """
    m = _ISO_RE.match(text)
    if m is None:
        return None
    date, hms, frac, tz = m.groups()
    key = (date, hms, tz)
    sec = cache.get(key)
    if sec is None:
        try:
            dt = datetime.fromisoformat(f"{date}T{hms}")
        except ValueError:
            return None
        offset = 0
        if tz and tz not in ("Z", "z"):
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            hh, mm = int(digits[:2]), int(digits[2:] or 0)
            if hh > 23 or mm > 59:
                return None
            offset = sign * (hh * 3600 + mm * 60)
        sec = calendar.timegm(dt.timetuple()) - offset
        if len(cache) > 65536:
            cache.clear()
        cache[key] = sec
    ns = sec * 1_000_000_000
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    return ns
