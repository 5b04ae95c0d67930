"""Live input over TCP: the PDMS stream protocol, a receiver, and a silence watch.

A DAQ or gateway opens a TCP connection and sends nothing but *frames*; each
frame is self-describing (sensor id, channel names, sample rate, time of the
first sample) and ends in a CRC32. The byte layout is specified in
``docs/stream-protocol.md`` (version 1); this module is its reference
implementation:

* :func:`encode_frame` builds one frame;
* :class:`FrameDecoder` turns a byte stream, cut anywhere, back into
  :class:`Frame` objects, checking every limit *before* it buffers a frame's
  body, so a header that claims 2 GB is refused after 30 bytes;
* :class:`TcpStreamServer` accepts connections (loopback unless told
  otherwise), decodes frames into :class:`~pdm.sources.base.Chunk` objects and
  hands them to a callback; a protocol violation closes that one connection;
* :class:`SilenceWatch` tracks, per sensor, when the last chunk came and says
  which sensors went silent and which came back (the service turns that into
  ``sensor_fault``).

Every violation is an :class:`~pdm.errors.InputError` with a one-line message
``stream from PEER, byte OFFSET: reason``, OFFSET counting from the first byte
the peer sent on that connection.

>>> import numpy as np
>>> raw = encode_frame("pump-01", np.array([[0.5, -1.0]]), fs=1000.0,
...                    t0_ns=1_700_000_000_000_000_000, channels=("x", "y"))
>>> len(raw)
55
>>> (frame,) = FrameDecoder("example").feed(raw)
>>> frame.sensor_id, frame.channels, frame.to_chunk().data.tolist()
('pump-01', ('x', 'y'), [[0.5, -1.0]])
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, NamedTuple, NoReturn, Self

import numpy as np
import numpy.typing as npt

try:  # the same CRC-32 as zlib's, 8x faster here (carry-less multiply instructions)
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - a platform without its wheels
    from zlib import crc32

from pdm.errors import InputError, PdmError
from pdm.sources.base import Chunk

__all__ = [
    "DTYPE_CODES",
    "MAGIC",
    "MAX_CHANNELS",
    "MAX_FRAME_BYTES",
    "MAX_NAME_BYTES",
    "MAX_SAMPLES",
    "VERSION",
    "Frame",
    "FrameDecoder",
    "SilenceChanges",
    "SilenceWatch",
    "TcpStreamServer",
    "encode_frame",
    "ns_from_seconds",
    "peek_sensor_id",
]

log = logging.getLogger("pdm.sources.tcp")

MAGIC = b"PDMS"
VERSION = 1
MAX_CHANNELS = 64
MAX_SAMPLES = 1_048_576
MAX_NAME_BYTES = 64
MAX_FRAME_BYTES = 64 * 1024 * 1024

WireDtype = Literal["float32", "float64", "int16"]
#: Wire code of each sample type (the ``dtype`` byte of the header).
DTYPE_CODES: dict[str, int] = {"float32": 1, "float64": 2, "int16": 3}
_DTYPE_NAMES = {code: name for name, code in DTYPE_CODES.items()}
_NUMPY: dict[int, np.dtype[Any]] = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i2")}
_INT16 = 3

# magic, version, dtype, n_channels, sample_rate_hz, t0_ns, n_samples, sensor id length
_HEAD = struct.Struct("<4sBBHdqIH")
_U16 = struct.Struct("<H")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_CRC_BYTES = _U32.size
# Offsets of the fixed fields, for error messages.
_OFF_VERSION, _OFF_DTYPE, _OFF_NCH, _OFF_FS, _OFF_NS, _OFF_SIDLEN = 4, 5, 6, 8, 24, 28

# Names end up in one-line log messages and in history tags: no line breaks or
# other control characters (C0, DEL, C1, and the Unicode line/paragraph separators).
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

# SO_LINGER on, 0 s: close() sends RST.
_LINGER_RESET = struct.pack("ii", 1, 0)

# recv_into() buffer of the server's I/O thread (one thread, so one buffer).
_RECV_BYTES = 256 * 1024


def ns_from_seconds(t: float) -> int:
    """POSIX seconds (float) -> integer nanoseconds, rounded exactly (half to even).

    ``t * 1e9`` in floating point is off by up to ~128 ns at today's epoch;
    this is exact, and ``ns / 10**9`` (Python's correctly rounded integer
    division) gives back ``t`` for any time after 1970-04.

    >>> ns_from_seconds(1_700_000_000.25)
    1700000000250000000
    """
    if not math.isfinite(t):
        raise ValueError(f"{t=} must be finite")
    return round(Fraction(t) * 1_000_000_000)


def _name_problem(raw: bytes, what: str) -> str | None:
    """Why ``raw`` is not an acceptable sensor id / channel name, or None."""
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        return f"{what} is {len(raw)} bytes; it must be 1 to {MAX_NAME_BYTES}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{what} {raw!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if _BAD_NAME_CHARS.search(text):
        return f"{what} {text!r} contains a control character or line break"
    return None


def _check_name(name: str, what: str) -> bytes:
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a str, not {type(name).__name__}")
    raw = name.encode("utf-8")
    problem = _name_problem(raw, what)
    if problem:
        raise ValueError(problem)
    return raw


def encode_frame(
    sensor_id: str,
    data: npt.ArrayLike,
    *,
    fs: float,
    t0_ns: int,
    channels: Sequence[str],
    dtype: WireDtype = "float32",
    scale: float | None = None,
) -> bytes:
    """Build one frame of the PDMS stream protocol, version 1.

    Parameters
    ----------
    sensor_id : str
        1-64 bytes of UTF-8, no control characters.
    data : (n_samples, n_channels) array
        Samples in the channels' units (the pipeline's). For ``dtype="int16"``:
        integer ADC counts in -32768..32767; the receiver computes
        ``count * scale``.
    fs : float
        Sample rate, Hz (> 0).
    t0_ns : int
        Time of the first sample, ns since the epoch (UTC); see :func:`ns_from_seconds`.
    channels : sequence of str
        One distinct name per column of ``data`` (the pipeline's column names).
    dtype : {"float32", "float64", "int16"}
        Sample type on the wire. float32 rounds to ~7 significant digits.
    scale : float, optional
        Required with ``"int16"`` (channel units per count, finite, non-zero);
        not allowed otherwise.

    Returns
    -------
    bytes
        The frame, CRC32 included.

    Raises
    ------
    ValueError
        An argument breaks the protocol; the message names it.
    """
    if dtype not in DTYPE_CODES:
        raise ValueError(f"{dtype=} must be one of {', '.join(DTYPE_CODES)}")
    code = DTYPE_CODES[dtype]
    sid = _check_name(sensor_id, "sensor id")
    names = [_check_name(c, f"channel name {i}") for i, c in enumerate(channels)]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be distinct: {list(channels)}")
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(
            f"data has shape {arr.shape}; expected (n_samples, {len(names)}) for channels {list(channels)}"
        )
    n, c = arr.shape
    if not 1 <= c <= MAX_CHANNELS:
        raise ValueError(f"{c} channels; a frame carries 1 to {MAX_CHANNELS}")
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"{n} samples; a frame carries 1 to {MAX_SAMPLES}")
    if (
        isinstance(fs, bool)
        or not isinstance(fs, int | float)
        or not (math.isfinite(fs) and fs > 0)
    ):
        raise ValueError(f"{fs=} must be a finite number of Hz > 0")
    if isinstance(t0_ns, bool) or not isinstance(t0_ns, int | np.integer):
        raise ValueError(f"t0_ns must be an int (ns since the epoch), not {type(t0_ns).__name__}")
    if not _I64_MIN <= int(t0_ns) <= _I64_MAX:
        raise ValueError(f"{t0_ns=} does not fit in int64")

    tail = b""
    if code == _INT16:
        if scale is None or not (math.isfinite(scale) and scale != 0):
            raise ValueError(f"{scale=} must be finite and non-zero with dtype='int16'")
        if arr.dtype.kind not in "iu":
            raise ValueError(f"dtype='int16' takes integer ADC counts, not {arr.dtype} data")
        if arr.size and (int(arr.min()) < -32768 or int(arr.max()) > 32767):
            raise ValueError("int16 counts must be within -32768..32767")
        tail = _F64.pack(float(scale))
    elif scale is not None:
        raise ValueError(f"scale is only for dtype='int16', not {dtype!r}")
    wire = np.ascontiguousarray(arr, dtype=_NUMPY[code])
    if code == 1 and arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        overflow = np.isinf(wire) & np.isfinite(arr)
        if overflow.any():
            raise ValueError("a value is too large for float32 (|x| > 3.4e38); use float64")
    samples = wire.tobytes()

    size = _HEAD.size + len(sid) + sum(2 + len(b) for b in names) + len(tail) + len(samples) + 4
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"the frame would be {size} bytes; the limit is {MAX_FRAME_BYTES}")
    parts = [
        _HEAD.pack(MAGIC, VERSION, code, c, float(fs), int(t0_ns), n, len(sid)),
        sid,
        *(_U16.pack(len(b)) + b for b in names),
        tail,
        samples,
    ]
    crc = 0
    for p in parts:
        crc = crc32(p, crc)
    parts.append(_U32.pack(crc))
    return b"".join(parts)


def peek_sensor_id(head: bytes) -> str | None:
    """The sensor id of the frame that ``head`` (a stream's first bytes) starts with.

    None while too few bytes have come; ``InputError`` when they cannot start a frame.
    Used to route a connection before any of it is consumed (``MSG_PEEK``).
    """
    if len(head) < _HEAD.size:
        if not MAGIC.startswith(bytes(head[: len(MAGIC)])):
            raise InputError("the stream does not start with a PDMS frame (bad magic)")
        return None
    magic, version, *_rest, sid_len = _HEAD.unpack_from(head)
    if magic != MAGIC or version != VERSION:
        raise InputError(f"the stream does not start with a PDMS version {VERSION} frame")
    if not 1 <= sid_len <= MAX_NAME_BYTES:
        raise InputError(f"sensor id is {sid_len} bytes; it must be 1 to {MAX_NAME_BYTES}")
    if len(head) < _HEAD.size + sid_len:
        return None
    raw = bytes(head[_HEAD.size : _HEAD.size + sid_len])
    problem = _name_problem(raw, "sensor id")
    if problem:
        raise InputError(problem)
    return raw.decode()


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    sensor_id : str
    channels : tuple of str
    sample_rate_hz : float
    t0_ns : int
        Time of the first sample, ns since the epoch (UTC).
    data : (n_samples, n_channels) float32, float64 or int16, read-only
        The samples exactly as sent (int16: raw counts, see ``scale``).
    scale : float or None
        Channel units per count, for int16 frames.
    offset : int
        Stream offset of the frame's first byte.
    size : int
        Frame length in bytes, CRC included.
    """

    sensor_id: str
    channels: tuple[str, ...]
    sample_rate_hz: float
    t0_ns: int
    data: npt.NDArray[Any]
    scale: float | None
    offset: int
    size: int
    #: The decoder's writable copy behind ``data``, handed over by :meth:`to_chunk`.
    _owned: npt.NDArray[Any] | None = field(default=None, repr=False, compare=False)

    @property
    def dtype(self) -> str:
        """Wire sample type: ``"float32"``, ``"float64"`` or ``"int16"``."""
        return {"f4": "float32", "f8": "float64", "i2": "int16"}[self.data.dtype.str[1:]]

    @property
    def t0(self) -> float:
        """Time of the first sample, POSIX seconds (correctly rounded from ``t0_ns``)."""
        return self.t0_ns / 1_000_000_000

    def values(self) -> npt.NDArray[np.floating]:
        """(n_samples, n_channels) in the channels' units (int16: ``count * scale``), a copy:
        float32 for a float32 frame (the windows are float32: widening would only cost a
        copy twice the size), float64 otherwise."""
        if self.data.dtype.kind == "f" and self.data.dtype.itemsize == 4:
            return self.data.astype(np.float32)  # native order, and the frame's buffer is reused
        out = self.data.astype(np.float64)
        if self.scale is not None:
            out *= self.scale
        return out

    def to_chunk(self, received: float | None = None) -> Chunk:
        """The frame as a :class:`~pdm.sources.base.Chunk` (``received``: see there).
        A decoded float32 frame hands its samples over (call this once per frame).

        A non-finite sample (NaN: the sender could not read it; ±inf) becomes
        NaN and is counted in ``Chunk.bad_samples``.
        """
        d = self._owned
        if d is not None and d.dtype == np.float32 and d.dtype.isnative:
            out = d  # the decoder's own copy of a float32 frame: handed over, no second copy
        else:
            out = self.values()
        bad = 0
        # A finite sum means every sample is finite (one pass, no mask); else count them.
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(out.sum())
        if not math.isfinite(total):
            finite = np.isfinite(out)
            if not finite.all():
                bad = int(finite.size - np.count_nonzero(finite))
                out[~finite] = np.nan
        return Chunk(
            data=out,
            fs=self.sample_rate_hz,
            t0=self.t0,
            channels=self.channels,
            bad_samples=bad,
            received=received,
        )


@dataclass(frozen=True, slots=True)
class _Head:
    """The structure of the frame being received (checked, not yet CRC-verified)."""

    code: int
    n_channels: int
    fs: float
    t0_ns: int
    n_samples: int
    sid_len: int
    names_end: int  # end of the sensor id + channel names section
    data_off: int  # first sample byte (after the scale for int16)
    total: int  # frame length, CRC included


class FrameDecoder:
    """Incremental decoder of one connection's byte stream.

    Feed it bytes as they arrive, cut anywhere; it returns the frames completed
    so far. It keeps at most one frame's bytes: the fixed header is checked as
    soon as its 30 bytes are in (the magic byte by byte, so a stray HTTP or TLS
    client is refused at its first byte), and the frame's full length is known
    and checked against the limits before any of its samples are buffered.

    Parameters
    ----------
    peer : str
        Who is sending (``"10.0.0.7:51234"``), for messages.
    max_frame_bytes : int
        Refuse frames longer than this; at most (and by default) the protocol's
        64 MiB. A receiver with many connections and little memory may lower it.

    Notes
    -----
    After a violation the decoder is failed: every later :meth:`feed` or
    :meth:`close` raises the same error. A violation found after complete frames
    in the same :meth:`feed` call does not lose them: they are returned, and
    the error is raised by the next call (``feed(b"")`` will do) and kept in
    :attr:`error`.
    """

    def __init__(self, peer: str = "stream", *, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if not 64 <= max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"{max_frame_bytes=} must be within 64..{MAX_FRAME_BYTES}")
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self.frames = 0  # frames decoded so far
        self._buf = bytearray()
        self._pos = 0  # stream offset of _buf[0] (always the start of a frame)
        self._head: _Head | None = None
        self._error: InputError | None = None
        # Names section of the last frame (sensor id length, bytes), and its decoding.
        self._names_key: tuple[int, bytes] = (0, b"")
        self._names: tuple[str, tuple[str, ...]] = ("", ())

    @property
    def offset(self) -> int:
        """Bytes received so far (stream offset of the next byte)."""
        return self._pos + len(self._buf)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held in the buffer."""
        return len(self._buf)

    @property
    def error(self) -> InputError | None:
        """The violation that failed this decoder, if any."""
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return the frames they complete (possibly none).

        Raises
        ------
        InputError
            The stream breaks the protocol (one line, naming the peer and the
            byte offset of the offending field).
        """
        if self._error is not None:
            raise self._error
        frames: list[Frame] = []
        try:
            if self._buf:
                self._buf += data
                while self._next_frame(self._buf, frames):
                    del self._buf[: frames[-1].size]
            else:
                # Nothing held back: frames are cut straight out of ``data`` (one copy of
                # their samples, none of the stream's bytes), and only an incomplete tail
                # is kept for the next call.
                view = data if isinstance(data, memoryview) else memoryview(data)
                try:
                    while view and self._next_frame(view, frames):
                        view = view[frames[-1].size :]
                finally:
                    self._buf += view  # (a failed frame's bytes too, as pending shows)
        except InputError as exc:
            self._error = exc
            if not frames:
                raise
        return frames

    def close(self) -> None:
        """The peer closed the connection: raise if that cut a frame short."""
        if self._error is not None:
            raise self._error
        if self._buf:
            what = (
                f"{self._head.total} bytes"
                if self._head is not None
                else "its header to be complete"
            )
            self._fail(
                self.offset,
                f"connection closed in the middle of a frame: {len(self._buf)} bytes received "
                f"of the frame starting at byte {self._pos}, which needs {what}",
            )

    # ------------------------------------------------------------------ internals

    def _fail(self, offset: int, reason: str) -> NoReturn:
        self._error = InputError(f"stream from {self.peer}, byte {offset}: {reason}")
        raise self._error

    def _next_frame(self, buf: bytearray | memoryview, frames: list[Frame]) -> bool:
        """Cut the frame at the start of ``buf`` into ``frames``; False: not complete yet."""
        if self._head is None:
            self._head = self._parse_head(buf)
            if self._head is None:
                return False
        if len(buf) < self._head.total:
            return False
        frames.append(self._take(buf, self._head))
        self._head = None
        return True

    def _parse_head(self, buf: bytearray | memoryview) -> _Head | None:
        """Check the header as far as it has arrived in ``buf`` (starting at the frame's
        first byte); its structure once complete."""
        base = self._pos
        n = len(buf)
        if n < len(MAGIC):
            if buf != MAGIC[:n]:
                self._bad_magic(buf)
            return None
        if buf[:4] != MAGIC:
            self._bad_magic(buf)
        if n > _OFF_VERSION and buf[_OFF_VERSION] != VERSION:
            self._fail(
                base + _OFF_VERSION,
                f"unknown protocol version {buf[_OFF_VERSION]} (this receiver speaks {VERSION})",
            )
        if n > _OFF_DTYPE and buf[_OFF_DTYPE] not in _DTYPE_NAMES:
            known = ", ".join(f"{c} = {name}" for c, name in _DTYPE_NAMES.items())
            self._fail(base + _OFF_DTYPE, f"unknown dtype {buf[_OFF_DTYPE]} (known: {known})")
        if n < _HEAD.size:
            return None
        _, _, code, n_ch, fs, t0_ns, n_s, sid_len = _HEAD.unpack_from(buf)
        if not 1 <= n_ch <= MAX_CHANNELS:
            self._fail(base + _OFF_NCH, f"n_channels {n_ch} is outside 1..{MAX_CHANNELS}")
        if not (math.isfinite(fs) and fs > 0):
            self._fail(base + _OFF_FS, f"sample_rate_hz {fs!r} is not a finite number > 0")
        if not 1 <= n_s <= MAX_SAMPLES:
            self._fail(base + _OFF_NS, f"n_samples {n_s} is outside 1..{MAX_SAMPLES}")
        if not 1 <= sid_len <= MAX_NAME_BYTES:
            self._fail(
                base + _OFF_SIDLEN, f"sensor id length {sid_len} is outside 1..{MAX_NAME_BYTES}"
            )
        item = _NUMPY[code].itemsize
        sample_bytes = n_s * n_ch * item
        # Smallest the frame can be (every name 1 byte): refuse now, not after the names.
        least = _HEAD.size + sid_len + 3 * n_ch + (8 if code == _INT16 else 0)
        if least + sample_bytes + _CRC_BYTES > self.max_frame_bytes:
            self._fail(
                base + _OFF_NS,
                f"frame too large: {n_s} samples x {n_ch} channels x {item} bytes = "
                f"{sample_bytes} bytes of samples; a frame may be at most "
                f"{self.max_frame_bytes} bytes",
            )
        pos = _HEAD.size + sid_len
        for i in range(n_ch):
            if n < pos + 2:
                return None
            (length,) = _U16.unpack_from(buf, pos)
            if not 1 <= length <= MAX_NAME_BYTES:
                self._fail(
                    base + pos,
                    f"channel {i} name length {length} is outside 1..{MAX_NAME_BYTES}",
                )
            pos += 2 + length
        names_end = pos
        data_off = names_end + (8 if code == _INT16 else 0)
        total = data_off + sample_bytes + _CRC_BYTES
        if total > self.max_frame_bytes:
            self._fail(
                base + _OFF_NS,
                f"frame too large: {total} bytes; a frame may be at most {self.max_frame_bytes}",
            )
        return _Head(code, n_ch, fs, t0_ns, n_s, sid_len, names_end, data_off, total)

    def _bad_magic(self, buf: bytearray | memoryview) -> NoReturn:
        got = bytes(buf[:4])
        hint = ""
        if got[:1] == b"\x16":
            hint = " (a TLS handshake? this port speaks plain PDMS frames)"
        elif got[:1].isalpha():
            hint = " (text, e.g. an HTTP request? this port speaks binary PDMS frames)"
        where = "at the start of the stream" if self._pos == 0 else "where a frame should start"
        self._fail(self._pos, f"bad magic {got!r} {where}, expected {MAGIC!r}{hint}")

    def _take(self, buf: bytearray | memoryview, h: _Head) -> Frame:
        """Verify and decode the complete frame at the start of ``buf`` (the caller
        moves past its ``h.total`` bytes)."""
        base = self._pos
        end = h.total - _CRC_BYTES
        with memoryview(buf) as mv:
            crc = crc32(mv[:end])
            (sent,) = _U32.unpack_from(buf, end)
            if crc != sent:
                self._fail(
                    base + end,
                    f"CRC32 mismatch: the frame starting at byte {base} ({h.total} bytes) "
                    f"computes 0x{crc:08x}, its trailer says 0x{sent:08x}; "
                    f"the frame is corrupt",
                )
            names_raw = bytes(mv[_HEAD.size : h.names_end])
            # One copy out of the receive buffer, and the frame owns it (see to_chunk).
            count = h.n_samples * h.n_channels
            samples = np.frombuffer(mv, _NUMPY[h.code], count, h.data_off).copy()
        sensor_id, channels = self._decode_names(h.sid_len, names_raw, base)
        scale: float | None = None
        if h.code == _INT16:
            (scale,) = _F64.unpack_from(buf, h.names_end)
            if not (math.isfinite(scale) and scale != 0):
                self._fail(base + h.names_end, f"int16 scale {scale!r} is not finite and non-zero")
        owned = samples.reshape(h.n_samples, h.n_channels)
        data = owned.view()
        data.flags.writeable = False
        self._pos += h.total
        self.frames += 1
        return Frame(
            sensor_id=sensor_id,
            channels=channels,
            sample_rate_hz=h.fs,
            t0_ns=h.t0_ns,
            data=data,
            scale=scale,
            offset=base,
            size=h.total,
            _owned=owned,
        )

    def _decode_names(self, sid_len: int, raw: bytes, base: int) -> tuple[str, tuple[str, ...]]:
        """Sensor id and channel names from the section after the fixed header."""
        # A stream repeats the same names frame after frame: check them once.
        if sid_len == self._names_key[0] and raw == self._names_key[1]:
            return self._names
        problem = _name_problem(raw[:sid_len], "sensor id")
        if problem:
            self._fail(base + _HEAD.size, problem)
        sensor_id = raw[:sid_len].decode("utf-8")
        channels: list[str] = []
        pos = sid_len
        while pos < len(raw):
            (length,) = _U16.unpack_from(raw, pos)
            name = raw[pos + 2 : pos + 2 + length]
            problem = _name_problem(name, f"channel {len(channels)} name")
            if problem:
                self._fail(base + _HEAD.size + pos + 2, problem)
            text = name.decode("utf-8")
            if text in channels:
                self._fail(
                    base + _HEAD.size + pos + 2,
                    f"channel {len(channels)} name {text!r} repeats channel {channels.index(text)}",
                )
            channels.append(text)
            pos += 2 + length
        self._names_key, self._names = (sid_len, raw), (sensor_id, tuple(channels))
        return self._names


# ---------------------------------------------------------------------- server

OnChunk = Callable[[str, Chunk], object]
OnEvent = Callable[[str, str], object]


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    decoder: FrameDecoder
    last_rx: float
    frames: int = 0


def _peer_name(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TcpStreamServer:
    """Receives PDMS frames over TCP and hands them on as chunks.

    One I/O thread (:mod:`selectors`) serves the listener and every connection,
    so ``on_chunk`` and ``on_event`` are never called concurrently (they run
    on that thread; a slow ``on_chunk`` slows every sender through TCP flow
    control rather than queueing data in memory). The receiver never writes to
    a connection: closing it is its only answer. A connection it refuses
    (protocol error, rejected data) is reset (TCP RST); one that ends otherwise
    (the peer closed, idle, the receiver stops) is closed normally.

    Parameters
    ----------
    host : str
        Address to listen on. The default is loopback; a DAQ on another machine
        needs an explicit ``"0.0.0.0"``, ``"::"`` or an interface address (and
        then anyone who can reach the port can feed data). ``""`` is refused, as
        Python would take it to mean every interface.
    port : int
        TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    on_chunk : callable(sensor_id, Chunk)
        Called for each frame with its samples as float64 in the channels' units
        (int16 frames already scaled). Raising a :class:`~pdm.errors.PdmError`
        (e.g. unknown sensor) rejects the data: that connection is closed with a
        one-line ``rejected`` event. Any other exception is logged with its
        traceback and does the same.
    on_event : callable(kind, detail), optional
        ``kind`` is ``"connected"``, ``"disconnected"``, ``"protocol_error"``,
        ``"rejected"`` or ``"refused"`` (over ``max_connections``); ``detail``
        is one line starting with the peer.
    max_connections : int
        Connections served at once; more are accepted and closed at once.
    idle_timeout_s : float or None
        Close a connection that sends nothing for this long (a silent peer
        would otherwise hold a slot for ever). None: never.
    max_frame_bytes : int
        Largest frame accepted (default and maximum: the protocol's 64 MiB).
        Memory held is at most about ``max_connections × max_frame_bytes``.

    Attributes
    ----------
    port : int
        The bound port once started.
    frames, bytes_received, protocol_errors : int
        Totals since start, for metrics.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_chunk: OnChunk,
        on_event: OnEvent | None = None,
        max_connections: int = 32,
        idle_timeout_s: float | None = 300.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(
                f"{host=}: name the address to listen on ('127.0.0.1', or '0.0.0.0' for "
                f"every interface)"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"{port=} must be an int within 0..65535")
        if not 1 <= max_connections <= 4096:
            raise ValueError(f"{max_connections=} must be within 1..4096")
        if idle_timeout_s is not None and not (
            math.isfinite(idle_timeout_s) and idle_timeout_s > 0
        ):
            raise ValueError(f"{idle_timeout_s=} must be > 0 s or None")
        FrameDecoder(max_frame_bytes=max_frame_bytes)  # validates the value
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.frames = 0
        self.bytes_received = 0
        self.protocol_errors = 0
        self._on_chunk = on_chunk
        self._on_event = on_event
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._sel: selectors.BaseSelector | None = None  # driven mode: polled by its driver
        self._next_idle = 0.0
        self._driver: int | None = None  # the thread that polls a driven receiver
        self._closed = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._refusing = False  # log "refusing" once per episode, not per attempt
        self._scratch = bytearray(_RECV_BYTES)
        self._adopted: list[tuple[socket.socket, str]] = []  # handed over, not yet registered

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, driven: bool = False) -> Self:
        """Bind, listen and start the I/O thread — or, ``driven``, none: the caller's thread
        then calls :meth:`poll` (the service's processing thread does, so frames and windows
        never wait for each other's hold on the interpreter lock).

        Raises
        ------
        InputError
            The address cannot be resolved or bound (in use, not local).
        """
        with self._lock:
            if self._started:
                raise RuntimeError("TcpStreamServer.start() called twice; make a new server")
            where = f"{self.host}:{self.port}"
            try:
                infos = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
                family, type_, proto, _, addr = infos[0]
                listener = socket.socket(family, type_, proto)
            except OSError as exc:
                raise InputError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
            try:
                if os.name == "posix":  # so a restarted receiver gets its port back at once
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(addr)
                listener.listen(min(self.max_connections, 128))
                listener.setblocking(False)
            except OSError as exc:
                listener.close()
                raise InputError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
            self.port = int(listener.getsockname()[1])
            self._listener = listener
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            if not _is_loopback(self.host):
                log.warning(
                    "stream receiver listening on %s:%d (not loopback): anyone who can reach "
                    "this port can feed data",
                    self.host,
                    self.port,
                )
            else:
                log.info("stream receiver listening on %s:%d", self.host, self.port)
            self._started = True
            if driven:
                self._sel = self._open_selector()
            else:
                self._thread = threading.Thread(
                    target=self._run, name=f"pdm-tcp-{self.port}", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the listener and every connection; join the I/O thread. Idempotent.

        Bytes of an incomplete frame are dropped. Called from ``on_chunk`` (the
        I/O thread itself), it stops after that callback returns without joining.
        """
        with self._lock:
            thread = self._thread
            if not self._started or self._stopping.is_set():
                if thread is not None and thread is not threading.current_thread():
                    thread.join(timeout_s)
                elif self._sel is not None:
                    self._closed.wait(timeout_s)
                return
            self._stopping.set()
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"x")
                except OSError:
                    pass
        if thread is None:  # driven: the driver's next poll closes everything
            if threading.get_ident() == self._driver:
                return  # called by the driver itself (from on_chunk): its poll closes it
            if not self._closed.wait(timeout_s):
                log.warning(
                    "stream receiver: its driver did not poll within %g s; closing it here",
                    timeout_s,
                )
                sel, self._sel = self._sel, None
                if sel is not None:
                    self._shut(sel)
        elif thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("stream receiver thread did not stop within %g s", timeout_s)

    def adopt(self, sock: socket.socket, peer: str) -> None:
        """Serve a connection accepted elsewhere (a multi-process service's supervisor
        accepts on the public port and hands each connection to the worker that runs its
        machine). Thread-safe; the connection counts against ``max_connections``."""
        with self._lock:
            if not self._started or self._stopping.is_set():
                sock.close()
                return
            self._adopted.append((sock, peer))
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"a")
                except OSError:
                    pass

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._conns)

    def __enter__(self) -> Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TcpStreamServer({self.host!r}, {self.port}, connections={len(self._conns)})"

    # ------------------------------------------------------------------ I/O thread

    def _open_selector(self) -> selectors.BaseSelector:
        assert self._listener is not None and self._wake_r is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        return sel

    def _run(self) -> None:
        sel = self._open_selector()
        try:
            while not self._stopping.is_set():
                self._poll_once(sel, 1.0)
        except Exception:  # a bug here must not leave a half-dead receiver silently
            log.exception("stream receiver on port %d failed; closing it", self.port)
        finally:
            self._shut(sel)

    def poll(self, timeout: float) -> None:
        """Driven mode (``start(driven=True)``): wait up to ``timeout`` s for the network,
        then read what came (``on_chunk`` runs here, on the caller's thread). After
        :meth:`stop`, the next call closes every connection. Never raises."""
        sel = self._sel
        if sel is None:
            return
        self._driver = threading.get_ident()
        try:
            if not self._stopping.is_set():
                self._poll_once(sel, timeout)
        except Exception:
            log.exception("stream receiver on port %d failed; closing it", self.port)
            self._stopping.set()
        if self._stopping.is_set():
            self._sel = None
            self._shut(sel)

    def _poll_once(self, sel: selectors.BaseSelector, timeout: float) -> None:
        # The idle check walks every connection: at its deadline, not after every read
        # (with 150 connections it was a third of the reader's time per frame).
        timeout = min(timeout, max(0.0, self._next_idle - time.monotonic()))
        for key, _ in sel.select(timeout):
            if self._stopping.is_set():
                break
            if key.data == "listen":
                self._accept(sel)
            elif key.data == "wake":
                self._drain_wake()
                self._register_adopted(sel)
            else:
                self._read(sel, key.data)
        if time.monotonic() >= self._next_idle:
            self._next_idle = self._close_idle(sel)

    def _shut(self, sel: selectors.BaseSelector) -> None:
        for conn in list(self._conns):
            self._close(sel, conn, "disconnected", f"{conn.peer}: receiver stopped")
        sel.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._closed.set()

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:
            pass

    def _register_adopted(self, sel: selectors.BaseSelector) -> None:
        with self._lock:
            adopted, self._adopted = self._adopted, []
        for sock, peer in adopted:
            self._serve(sel, sock, peer)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving what we have
                log.warning("stream receiver: accept failed: %s", exc)
                return
            self._serve(sel, sock, _peer_name(addr))

    def _serve(self, sel: selectors.BaseSelector, sock: socket.socket, peer: str) -> None:
        if len(self._conns) >= self.max_connections:
            sock.close()
            detail = f"{peer}: refused, {len(self._conns)} connections open (the maximum)"
            if not self._refusing:
                log.warning("stream receiver: %s; refusing more until one closes", detail)
                self._refusing = True
            self._event("refused", detail, log_level=None)
            return
        sock.setblocking(False)
        conn = _Conn(
            sock,
            peer,
            FrameDecoder(peer, max_frame_bytes=self.max_frame_bytes),
            time.monotonic(),
        )
        self._conns.add(conn)
        sel.register(sock, selectors.EVENT_READ, conn)
        self._event("connected", f"{peer}: connected", log_level=logging.INFO)

    def _read(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        try:
            n = conn.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(sel, conn, "disconnected", f"{conn.peer}: {exc.strerror or exc}")
            return
        conn.last_rx = now = time.monotonic()
        try:
            if n == 0:
                conn.decoder.close()
                self._close(
                    sel,
                    conn,
                    "disconnected",
                    f"{conn.peer}: closed by the peer after {conn.frames} frames",
                )
                return
            self.bytes_received += n
            with memoryview(self._scratch) as mv:
                frames = conn.decoder.feed(mv[:n])
            for frame in frames:
                if not self._deliver(sel, conn, frame, now):
                    return
            if conn.decoder.error is not None:
                raise conn.decoder.error
        except InputError as exc:
            self.protocol_errors += 1
            self._close(sel, conn, "protocol_error", str(exc), log_level=logging.WARNING)

    def _deliver(
        self, sel: selectors.BaseSelector, conn: _Conn, frame: Frame, received: float
    ) -> bool:
        conn.frames += 1
        self.frames += 1
        try:
            self._on_chunk(frame.sensor_id, frame.to_chunk(received))
        except PdmError as exc:
            self._close(
                sel,
                conn,
                "rejected",
                f"{conn.peer}: sensor {frame.sensor_id!r}: {exc}",
                log_level=logging.WARNING,
            )
            return False
        except Exception as exc:
            log.exception("stream receiver: on_chunk failed for %s", conn.peer)
            self._close(
                sel,
                conn,
                "rejected",
                f"{conn.peer}: on_chunk failed: {type(exc).__name__}: {exc}".splitlines()[0],
                log_level=None,
            )
            return False
        return not self._stopping.is_set()

    def _close_idle(self, sel: selectors.BaseSelector) -> float:
        """Close the connections idle too long; returns when to look again (monotonic s):
        when the oldest left would time out (receiving only moves that later), within
        10 ms .. 1 s."""
        now = time.monotonic()
        if self.idle_timeout_s is None:
            return now + 1.0
        oldest = now
        for conn in list(self._conns):
            if now - conn.last_rx > self.idle_timeout_s:
                self._close(
                    sel,
                    conn,
                    "disconnected",
                    f"{conn.peer}: nothing received for {self.idle_timeout_s:g} s",
                )
            else:
                oldest = min(oldest, conn.last_rx)
        return now + max(0.01, min(1.0, oldest + self.idle_timeout_s - now))

    def _close(
        self,
        sel: selectors.BaseSelector,
        conn: _Conn,
        kind: str,
        detail: str,
        log_level: int | None = logging.INFO,
    ) -> None:
        self._conns.discard(conn)
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if kind in ("protocol_error", "rejected"):
            # Reset (RST), not a normal close: the sender's next write fails at once, and a
            # sender waiting for the close after its last frame learns that it was refused.
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        conn.sock.close()
        if self._refusing and len(self._conns) < self.max_connections:
            self._refusing = False
        self._event(kind, detail, log_level=log_level)

    def _event(self, kind: str, detail: str, *, log_level: int | None) -> None:
        if log_level is not None:
            log.log(log_level, "stream receiver: %s", detail)
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("stream receiver: on_event(%r) failed", kind)


# ---------------------------------------------------------------------- silence


class SilenceChanges(NamedTuple):
    """Transitions since the last :meth:`SilenceWatch.changes` call (sorted sensor ids)."""

    went_silent: list[str]
    came_back: list[str]


class SilenceWatch:
    """Which sensors have sent nothing for longer than a timeout.

    Times are :func:`time.monotonic` seconds (a wall-clock step must not fake an
    outage); every method takes ``now`` for tests. Thread-safe: the receiver's
    thread calls :meth:`seen` while the service polls :meth:`changes`.

    Parameters
    ----------
    timeout_s : float
        A sensor is silent when its last chunk is more than this old (s).
    expected : iterable of str
        Sensors the pipeline expects; they count as seen at construction, so
        one that never connects is reported after ``timeout_s``.
    now : float, optional
        Construction time (default: now).

    >>> w = SilenceWatch(2.0, expected=["a"], now=0.0)
    >>> w.seen("b", now=1.0)
    >>> w.silent(now=2.5)
    ['a']
    >>> w.changes(now=3.5)
    SilenceChanges(went_silent=['a', 'b'], came_back=[])
    >>> w.seen("a", now=4.0)
    >>> w.changes(now=4.0)
    SilenceChanges(went_silent=[], came_back=['a'])
    """

    def __init__(
        self, timeout_s: float, *, expected: Iterable[str] = (), now: float | None = None
    ) -> None:
        if isinstance(timeout_s, bool) or not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"{timeout_s=} must be a finite number of seconds > 0")
        self.timeout_s = float(timeout_s)
        t = time.monotonic() if now is None else now
        self._last: dict[str, float] = dict.fromkeys(expected, t)
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def seen(self, sensor_id: str, now: float | None = None) -> None:
        """Record that a chunk from ``sensor_id`` arrived."""
        t = time.monotonic() if now is None else now
        with self._lock:
            self._last[sensor_id] = t

    def silent(self, now: float | None = None) -> list[str]:
        """Sensors whose last chunk is more than ``timeout_s`` old, sorted."""
        t = time.monotonic() if now is None else now
        with self._lock:
            return sorted(s for s, last in self._last.items() if t - last > self.timeout_s)

    def changes(self, now: float | None = None) -> SilenceChanges:
        """Sensors that went silent, and came back, since the last call; each reported once."""
        t = time.monotonic() if now is None else now
        with self._lock:
            quiet = {s for s, last in self._last.items() if t - last > self.timeout_s}
            went = sorted(quiet - self._reported)
            back = sorted(self._reported - quiet)
            self._reported = quiet
        return SilenceChanges(went, back)

    def last_seen(self, sensor_id: str) -> float | None:
        """Monotonic time of the sensor's last chunk (or of construction, if expected)."""
        with self._lock:
            return self._last.get(sensor_id)

    def forget(self, sensor_id: str) -> None:
        """Stop watching a sensor (e.g. taken out of the pipeline)."""
        with self._lock:
            self._last.pop(sensor_id, None)
            self._reported.discard(sensor_id)
