"""The PDMS stream protocol: frames encoded and decoded, their limits and name rules.

A DAQ or gateway sends nothing but *frames*; each frame is self-describing (sensor id,
channel names, sample rate, time of the first sample) and ends in a CRC32. The byte layout
is specified in ``docs/stream-protocol.md`` (version 1, and version 2 with a key id, a
counter and an HMAC tag); this module is its reference implementation, shared by the TCP
receiver (:mod:`pdm.sources.tcp`), the MQTT subscriber (:mod:`pdm.sources.mqtt`, which
takes the same ids and channel names) and the sender (``pdm-edge send``):

* :func:`encode_frame` builds one frame;
* :class:`FrameDecoder` turns a byte stream, cut anywhere, back into
  :class:`Frame` objects, checking every limit *before* it buffers a frame's
  body, so a header that claims 2 GB is refused after 30 bytes;
* :func:`peek_sensor_id` reads a frame's sensor id from its first bytes;
* :func:`frame_limit` is the largest frame worth taking for a pipeline;
* :func:`name_problem` says why a sensor id or channel name is not acceptable.

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

import hashlib
import hmac
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

try:  # the same CRC-32 as zlib's, 8x faster here (carry-less multiply instructions)
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - a platform without its wheels
    from zlib import crc32

from pdm.core.text import INVISIBLE_CHARS
from pdm.errors import InputError
from pdm.sources.base import Chunk
from pdm.sources.stream_keys import KEY_ID, MIN_SECRET_BYTES, StreamKeys

__all__ = [
    "AUTH_VERSION",
    "BAD_NAME_CHARS",
    "DTYPE_CODES",
    "HEAD",
    "MAGIC",
    "MAX_CHANNELS",
    "MAX_FRAME_BYTES",
    "MAX_KEY_ID_BYTES",
    "MAX_NAME_BYTES",
    "MAX_SAMPLES",
    "PEEK_BYTES",
    "TAG_BYTES",
    "U16",
    "VERSION",
    "Frame",
    "FrameDecoder",
    "FrameRefused",
    "WireDtype",
    "encode_frame",
    "frame_limit",
    "name_problem",
    "ns_from_seconds",
    "peek_sensor_id",
]


MAGIC = b"PDMS"
VERSION = 1
#: The version of an authenticated frame: version 1 with a key id, a counter and an
#: HMAC-SHA256 tag (docs/stream-protocol.md, "Authenticated frames").
AUTH_VERSION = 2
MAX_KEY_ID_BYTES = 32
TAG_BYTES = 32


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

#: A frame's fixed head: magic, version, dtype, n_channels, sample_rate_hz, t0_ns, n_samples,
#: sensor id length. Then each channel name after its length as :data:`U16`.
HEAD = struct.Struct("<4sBBHdqIH")
U16 = struct.Struct("<H")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_CRC_BYTES = _U32.size
# Offsets of the fixed fields, for error messages.
_OFF_VERSION, _OFF_DTYPE, _OFF_NCH, _OFF_FS, _OFF_NS, _OFF_SIDLEN = 4, 5, 6, 8, 24, 28

# Names end up in one-line log messages and in history tags: no line breaks or
# other control characters (C0, DEL, C1, and the Unicode line/paragraph separators).
BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64 = struct.Struct("<Q")
#: Bytes enough to read any frame's sensor id (a version 2 header with the longest key id).
PEEK_BYTES = HEAD.size + 1 + MAX_KEY_ID_BYTES + _U64.size + MAX_NAME_BYTES


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


def name_problem(raw: bytes, what: str) -> str | None:
    """Why ``raw`` is not an acceptable sensor id / channel name, or None."""
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        return f"{what} is {len(raw)} bytes; it must be 1 to {MAX_NAME_BYTES}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{what} {raw!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if BAD_NAME_CHARS.search(text):
        return f"{what} {text!r} contains a control character or line break"
    if INVISIBLE_CHARS.search(text):  # shown on the dashboard: 'pump\u202e7' reads reversed
        return f"{what} {text!r} contains an invisible formatting character"
    return None


def _check_name(name: str, what: str) -> bytes:
    if not isinstance(name, str):
        raise ValueError(f"{what} must be a str, not {type(name).__name__}")
    raw = name.encode("utf-8")
    problem = name_problem(raw, what)
    if problem:
        raise ValueError(problem)
    return raw


class FrameRefused(InputError):
    """Data refused, with its ``cause`` (a short word for counting and for rate-limited
    logs: ``protocol``, ``auth``, ``unknown_sensor``, ``channels``, ``sample_rate``,
    ``clock``, ...)."""

    def __init__(self, message: str, cause: str = "rejected") -> None:
        super().__init__(message)
        self.cause = cause


def encode_frame(
    sensor_id: str,
    data: npt.ArrayLike,
    *,
    fs: float,
    t0_ns: int,
    channels: Sequence[str],
    dtype: WireDtype = "float32",
    scale: float | None = None,
    key: tuple[str, bytes] | None = None,
    counter: int | None = None,
) -> bytes:
    """Build one frame of the PDMS stream protocol: version 1, or version 2 (authenticated)
    when ``key`` is given.

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
    key : (key id, secret), optional
        Sign the frame (version 2): the key id (1-32 characters ``A-Z a-z 0-9 . _ -``)
        and its secret (at least 16 bytes), as in the receiver's key file.
    counter : int, optional
        With ``key``: the frame's counter, 0..2**64-1, strictly increasing per key and
        sensor id on the receiver's side (the sender's clock in ns suits: see
        :class:`FrameSigner`).

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
    auth = b""
    if key is not None:
        kid, secret = key
        if not isinstance(kid, str) or not KEY_ID.match(kid):
            raise ValueError(f"key id {kid!r} must be 1-32 characters A-Z a-z 0-9 . _ -")
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a stream key secret has at least {MIN_SECRET_BYTES} bytes")
        if isinstance(counter, bool) or not isinstance(counter, int) or not 0 <= counter < 2**64:
            raise ValueError(f"{counter=} must be an int within 0..2**64-1 with a key")
        auth = bytes([len(kid)]) + kid.encode() + _U64.pack(counter)
    elif counter is not None:
        raise ValueError("counter is only for a signed frame (key=...)")
    wire = np.ascontiguousarray(arr, dtype=_NUMPY[code])
    if code == 1 and arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        overflow = np.isinf(wire) & np.isfinite(arr)
        if overflow.any():
            raise ValueError("a value is too large for float32 (|x| > 3.4e38); use float64")
    samples = wire.tobytes()

    size = HEAD.size + len(sid) + sum(2 + len(b) for b in names) + len(tail) + len(samples) + 4
    size += len(auth) + (TAG_BYTES if auth else 0)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"the frame would be {size} bytes; the limit is {MAX_FRAME_BYTES}")
    version = AUTH_VERSION if auth else VERSION
    parts = [
        HEAD.pack(MAGIC, version, code, c, float(fs), int(t0_ns), n, len(sid)),
        auth,
        sid,
        *(U16.pack(len(b)) + b for b in names),
        tail,
        samples,
    ]
    if key is not None:
        mac = hmac.new(key[1], digestmod=hashlib.sha256)
        for p in parts:
            mac.update(p)
        parts.append(mac.digest())
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
    if len(head) < HEAD.size:
        if not MAGIC.startswith(bytes(head[: len(MAGIC)])):
            raise InputError("the stream does not start with a PDMS frame (bad magic)")
        return None
    magic, version, *_rest, sid_len = HEAD.unpack_from(head)
    if magic != MAGIC or version not in (VERSION, AUTH_VERSION):
        raise InputError(
            f"the stream does not start with a PDMS version {VERSION} or {AUTH_VERSION} frame"
        )
    if not 1 <= sid_len <= MAX_NAME_BYTES:
        raise InputError(f"sensor id is {sid_len} bytes; it must be 1 to {MAX_NAME_BYTES}")
    start = HEAD.size
    if version == AUTH_VERSION:
        if len(head) <= start:
            return None
        if not 1 <= head[start] <= MAX_KEY_ID_BYTES:
            raise InputError(f"key id length {head[start]} is outside 1..{MAX_KEY_ID_BYTES}")
        start += 1 + head[start] + _U64.size
    if len(head) < start + sid_len:
        return None
    raw = bytes(head[start : start + sid_len])
    problem = name_problem(raw, "sensor id")
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
    key_id, counter : str and int, or None
        An authenticated frame's (version 2) key id and counter, its tag verified.
    """

    sensor_id: str
    channels: tuple[str, ...]
    sample_rate_hz: float
    t0_ns: int
    data: npt.NDArray[Any]
    scale: float | None
    offset: int
    size: int
    key_id: str | None = None
    counter: int | None = None
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
            with np.errstate(over="ignore"):  # ±inf: read as NaN and counted (to_chunk)
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
        # One pass that cannot warn (a sum can overflow, and switching numpy's error state
        # around it cost more than the pass: ~4 of ~8 µs for a frame of 2560 x 3 float32).
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


class _Head(NamedTuple):
    """The structure of the frame being received (checked, not yet CRC-verified). A tuple:
    one is made per frame, and a frozen dataclass's ``__init__`` cost four times as much."""

    code: int
    n_channels: int
    fs: float
    t0_ns: int
    n_samples: int
    sid_len: int
    names_end: int  # end of the sensor id + channel names section
    data_off: int  # first sample byte (after the scale for int16)
    total: int  # frame length, CRC included
    auth: int = 0  # bytes of the key id block after the fixed header (version 2)
    key_id: str | None = None


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
    keys : StreamKeys, optional
        Take only authenticated frames (version 2) signed with one of these keys, for a
        sensor id the key may send, with a counter above the last one seen (the key id is
        checked as soon as it arrives, before any sample is buffered). Without keys, only
        version 1 frames are taken.

    Notes
    -----
    After a violation the decoder is failed: every later :meth:`feed` or
    :meth:`close` raises the same error. A violation found after complete frames
    in the same :meth:`feed` call does not lose them: they are returned, and
    the error is raised by the next call (``feed(b"")`` will do) and kept in
    :attr:`error`.
    """

    def __init__(
        self,
        peer: str = "stream",
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        keys: StreamKeys | None = None,
    ) -> None:
        if not 64 <= max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"{max_frame_bytes=} must be within 64..{MAX_FRAME_BYTES}")
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self.keys = keys
        self.frames = 0  # frames decoded so far
        self._buf = bytearray()
        self._pos = 0  # stream offset of _buf[0] (always the start of a frame)
        self._head: _Head | None = None
        self._error: InputError | None = None
        # Names section of the last frame (sensor id length, bytes, channel count), and its
        # decoding.
        self._names_key: tuple[int, bytes, int] = (0, b"", 0)
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

    def release(self) -> None:
        """Drop the bytes held (the connection is gone). Its memory goes now: a failed
        decoder is in a reference cycle with its error's traceback, which only the cyclic
        collector would break, minutes later, holding a frame's worth of bytes meanwhile."""
        self._buf = bytearray()
        self._head = None
        if self._error is not None:
            self._error.__traceback__ = None

    # ------------------------------------------------------------------ internals

    @property
    def _version(self) -> int:
        return VERSION if self.keys is None else AUTH_VERSION

    def _fail(self, offset: int, reason: str, *, cause: str = "protocol") -> NoReturn:
        self._error = FrameRefused(f"stream from {self.peer}, byte {offset}: {reason}", cause)
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
        if n < HEAD.size:
            self._check_partial_head(buf, n)
            return None
        # The fixed head unpacked once, its fields checked in the order of the bytes (the
        # same checks and messages as byte by byte, above).
        magic, version, code, n_ch, fs, t0_ns, n_s, sid_len = HEAD.unpack_from(buf)
        if magic != MAGIC:
            self._bad_magic(buf)
        if version != self._version:
            self._bad_version(version)
        if code not in _DTYPE_NAMES:
            self._bad_dtype(code)
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
        auth, key_id = 0, None
        if self.keys is not None:
            block = self._key_block(buf, base)
            if block is None:
                return None
            auth, key_id = block
        item = _NUMPY[code].itemsize
        sample_bytes = n_s * n_ch * item
        tag = TAG_BYTES if auth else 0
        # Smallest the frame can be (every name 1 byte): refuse now, not after the names.
        least = HEAD.size + auth + sid_len + 3 * n_ch + (8 if code == _INT16 else 0) + tag
        if least + sample_bytes + _CRC_BYTES > self.max_frame_bytes:
            self._fail(
                base + _OFF_NS,
                f"frame too large: {n_s} samples x {n_ch} channels x {item} bytes = "
                f"{sample_bytes} bytes of samples; a frame may be at most "
                f"{self.max_frame_bytes} bytes",
            )
        pos = HEAD.size + auth + sid_len
        # A stream repeats its names frame after frame: the same sensor id length, channel
        # count and names section as the last frame's parse the same, so its name lengths
        # need no walk (the names are still compared in full, in _decode_names).
        last_sid, last_raw, last_nch = self._names_key
        end = pos - sid_len + len(last_raw)
        if (
            sid_len == last_sid
            and n_ch == last_nch
            and n >= end
            and buf[pos - sid_len : end] == last_raw
        ):
            pos = end
        else:
            for i in range(n_ch):
                if n < pos + 2:
                    return None
                (length,) = U16.unpack_from(buf, pos)
                if not 1 <= length <= MAX_NAME_BYTES:
                    self._fail(
                        base + pos,
                        f"channel {i} name length {length} is outside 1..{MAX_NAME_BYTES}",
                    )
                pos += 2 + length
        names_end = pos
        data_off = names_end + (8 if code == _INT16 else 0)
        total = data_off + sample_bytes + tag + _CRC_BYTES
        if total > self.max_frame_bytes:
            self._fail(
                base + _OFF_NS,
                f"frame too large: {total} bytes; a frame may be at most {self.max_frame_bytes}",
            )
        return _Head(code, n_ch, fs, t0_ns, n_s, sid_len, names_end, data_off, total, auth, key_id)

    def _check_partial_head(self, buf: bytearray | memoryview, n: int) -> None:
        """The first ``n`` (< 30) bytes of a header, checked byte by byte as they come: a
        stray HTTP or TLS client is refused at its first byte."""
        if n < len(MAGIC):
            if buf != MAGIC[:n]:
                self._bad_magic(buf)
            return
        if buf[:4] != MAGIC:
            self._bad_magic(buf)
        if n > _OFF_VERSION and buf[_OFF_VERSION] != self._version:
            self._bad_version(buf[_OFF_VERSION])
        if n > _OFF_DTYPE and buf[_OFF_DTYPE] not in _DTYPE_NAMES:
            self._bad_dtype(buf[_OFF_DTYPE])

    def _bad_version(self, got: int) -> NoReturn:
        if got == AUTH_VERSION:
            why = "an authenticated frame (version 2), but this receiver has no stream keys"
        elif got == VERSION:
            why = (
                "an unauthenticated frame (version 1): this receiver takes only frames "
                "signed with a stream key (version 2)"
            )
        else:
            why = f"unknown protocol version {got} (this receiver speaks {self._version})"
        self._fail(self._pos + _OFF_VERSION, why, cause="auth" if got in (1, 2) else "protocol")

    def _bad_dtype(self, code: int) -> NoReturn:
        known = ", ".join(f"{c} = {name}" for c, name in _DTYPE_NAMES.items())
        self._fail(self._pos + _OFF_DTYPE, f"unknown dtype {code} (known: {known})")

    def _key_block(self, buf: bytearray | memoryview, base: int) -> tuple[int, str] | None:
        """The key id block of an authenticated frame: (its length, the key id), checked
        against the keys before anything else of the frame is buffered; None: not all in."""
        assert self.keys is not None
        n, at = len(buf), HEAD.size
        if n <= at:
            return None
        k = buf[at]
        if not 1 <= k <= MAX_KEY_ID_BYTES:
            self._fail(base + at, f"key id length {k} is outside 1..{MAX_KEY_ID_BYTES}")
        if n < at + 1 + k:
            return None
        raw = bytes(buf[at + 1 : at + 1 + k])
        kid = raw.decode("ascii", "replace")
        if not KEY_ID.match(kid) or not self.keys.known(kid):
            shown = kid if KEY_ID.match(kid) else repr(raw)
            self._fail(base + at + 1, f"unknown key id {shown}", cause="auth")
        return 1 + k + _U64.size, kid

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
        code, n_ch, fs, t0_ns, n_s, sid_len, names_end, data_off, total, auth, key_id = h
        end = total - _CRC_BYTES
        counter: int | None = None
        with memoryview(buf) as mv:
            crc = crc32(mv[:end])
            (sent,) = _U32.unpack_from(buf, end)
            if crc != sent:
                self._fail(
                    base + end,
                    f"CRC32 mismatch: the frame starting at byte {base} ({total} bytes) "
                    f"computes 0x{crc:08x}, its trailer says 0x{sent:08x}; "
                    f"the frame is corrupt",
                )
            if key_id is not None:
                assert self.keys is not None
                tag_at = end - TAG_BYTES
                want = hmac.new(self.keys.secret(key_id), mv[:tag_at], hashlib.sha256).digest()
                if not hmac.compare_digest(want, mv[tag_at:end]):
                    self._fail(
                        base + tag_at,
                        f"the HMAC tag does not match key {key_id} (a wrong key, or the frame "
                        "was altered)",
                        cause="auth",
                    )
                (counter,) = _U64.unpack_from(buf, HEAD.size + auth - _U64.size)
            names_raw = bytes(mv[HEAD.size + auth : names_end])
            # One copy out of the receive buffer, and the frame owns it (see to_chunk).
            samples = np.frombuffer(mv, _NUMPY[code], n_s * n_ch, data_off).copy()
        sensor_id, channels = self._decode_names(sid_len, names_raw, base + HEAD.size + auth)
        if key_id is not None and counter is not None:
            assert self.keys is not None
            if not self.keys.allows(key_id, sensor_id):
                self._fail(
                    base + HEAD.size + auth,
                    f"key {key_id} may not send for sensor {sensor_id!r}",
                    cause="auth",
                )
            last = self.keys.advance(key_id, sensor_id, counter)
            if last is not None:
                self._fail(
                    base + HEAD.size + auth - _U64.size,
                    f"counter {counter} of key {key_id} for {sensor_id!r} is not above the "
                    f"last one taken ({last}): a replayed or reordered frame",
                    cause="auth",
                )
        scale: float | None = None
        if code == _INT16:
            (scale,) = _F64.unpack_from(buf, names_end)
            if not (math.isfinite(scale) and scale != 0):
                self._fail(base + names_end, f"int16 scale {scale!r} is not finite and non-zero")
        owned = samples.reshape(n_s, n_ch)
        data = owned.view()
        data.flags.writeable = False
        self._pos += total
        self.frames += 1
        return Frame(
            sensor_id=sensor_id,
            channels=channels,
            sample_rate_hz=fs,
            t0_ns=t0_ns,
            data=data,
            scale=scale,
            offset=base,
            size=total,
            key_id=key_id,
            counter=counter,
            _owned=owned,
        )

    def _decode_names(self, sid_len: int, raw: bytes, at: int) -> tuple[str, tuple[str, ...]]:
        """Sensor id and channel names from their section (``raw``, at stream offset ``at``)."""
        # A stream repeats the same names frame after frame: check them once.
        if sid_len == self._names_key[0] and raw == self._names_key[1]:
            return self._names
        problem = name_problem(raw[:sid_len], "sensor id")
        if problem:
            self._fail(at, problem)
        sensor_id = raw[:sid_len].decode("utf-8")
        channels: list[str] = []
        pos = sid_len
        while pos < len(raw):
            (length,) = U16.unpack_from(raw, pos)
            name = raw[pos + 2 : pos + 2 + length]
            problem = name_problem(name, f"channel {len(channels)} name")
            if problem:
                self._fail(at + pos + 2, problem)
            text = name.decode("utf-8")
            if text in channels:
                self._fail(
                    at + pos + 2,
                    f"channel {len(channels)} name {text!r} repeats channel {channels.index(text)}",
                )
            channels.append(text)
            pos += 2 + length
        self._names_key = (sid_len, raw, len(channels))
        self._names = (sensor_id, tuple(channels))
        return self._names


#: Room for the longest header a frame can have (a version 2 frame, every name 64 bytes,
#: 64 channels, an int16 scale, the tag and the CRC), bytes.
_HEADER_ROOM = PEEK_BYTES + MAX_CHANNELS * (2 + MAX_NAME_BYTES) + 8 + TAG_BYTES + _CRC_BYTES
_FRAME_LIMIT_MIN = 64 * 1024


def frame_limit(sample_rate_hz: float, window_samples: int, n_channels: int) -> int:
    """The largest frame worth taking for a pipeline, bytes: one analysis window or two
    seconds of samples, whichever is more, of every channel as float64, with room for the
    longest header; rounded up to 64 KiB, within 64 KiB .. :data:`MAX_FRAME_BYTES`.

    A sender has no reason to put more than that in one frame (a gateway sending blocks of
    a second fits twice over), and a receiver that takes no more holds at most that much of
    each connection's incomplete frame.

    >>> frame_limit(25600.0, 8192, 2)   # 2 s x 25600 Hz x 2 channels x 8 bytes + header
    851968
    """
    samples = max(int(window_samples), math.ceil(2.0 * float(sample_rate_hz)))
    raw = samples * int(n_channels) * 8 + _HEADER_ROOM
    rounded = -(-raw // _FRAME_LIMIT_MIN) * _FRAME_LIMIT_MIN
    return max(_FRAME_LIMIT_MIN, min(MAX_FRAME_BYTES, rounded))
