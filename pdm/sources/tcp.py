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

import hashlib
import hmac
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
from typing import Any, Literal, NamedTuple, NoReturn, Self, cast

import numpy as np
import numpy.typing as npt

try:  # the same CRC-32 as zlib's, 8x faster here (carry-less multiply instructions)
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - a platform without its wheels
    from zlib import crc32

from pdm.core.net import is_loopback
from pdm.errors import ConfigError, InputError, PdmError
from pdm.loglimit import LogLimiter
from pdm.sources.base import Chunk

__all__ = [
    "AUTH_VERSION",
    "BAD_NAME_CHARS",
    "DTYPE_CODES",
    "HEAD",
    "KEYS_FILE_ENV",
    "MAGIC",
    "MAX_CHANNELS",
    "MAX_FRAME_BYTES",
    "MAX_KEY_ID_BYTES",
    "MAX_NAME_BYTES",
    "MAX_SAMPLES",
    "MIN_SECRET_BYTES",
    "PEEK_BYTES",
    "TAG_BYTES",
    "U16",
    "VERSION",
    "Frame",
    "FrameDecoder",
    "FrameRefused",
    "FrameSigner",
    "SilenceChanges",
    "SilenceWatch",
    "StreamKeys",
    "TcpStreamServer",
    "encode_frame",
    "frame_limit",
    "name_problem",
    "ns_from_seconds",
    "peek_sensor_id",
    "peer_host",
    "peer_name",
]

log = logging.getLogger("pdm.sources.tcp")

MAGIC = b"PDMS"
VERSION = 1
#: The version of an authenticated frame: version 1 with a key id, a counter and an
#: HMAC-SHA256 tag (docs/stream-protocol.md, "Authenticated frames").
AUTH_VERSION = 2
MAX_KEY_ID_BYTES = 32
TAG_BYTES = 32
#: A stream key's secret has at least this many bytes (128 bits).
MIN_SECRET_BYTES = 16
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
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")

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


#: The variable naming the stream key file of a receiver (see :class:`StreamKeys`).
KEYS_FILE_ENV = "PDM_STREAM_KEYS_FILE"
_MAX_REPLAY_ENTRIES = 65_536


class StreamKeys:
    """The per-gateway keys of authenticated frames (version 2), and their replay guard.

    A key file holds one key a line: ``KEY_ID SECRET_HEX [ID,ID,...]``. The key id is 1-32
    characters ``A-Z a-z 0-9 . _ -``; the secret at least 16 bytes in hex (``openssl rand
    -hex 32`` makes one); the ids, when given, the sensor ids (as sent in frames) that the
    key may send for (none, or ``*``: any). ``#`` starts a comment. Thread-safe.

    >>> keys = StreamKeys.parse("gw-1 " + "ab" * 16 + " pump-01,pump-02", "keys")
    >>> keys.known("gw-1"), keys.allows("gw-1", "pump-01"), keys.allows("gw-1", "fan")
    (True, True, False)
    >>> keys.advance("gw-1", "pump-01", 5), keys.advance("gw-1", "pump-01", 5)
    (None, 5)
    """

    def __init__(self, keys: dict[str, tuple[bytes, frozenset[str] | None]]) -> None:
        for kid, (secret, _ids) in keys.items():
            if not _KEY_ID.match(kid):
                raise ValueError(f"key id {kid!r} must be 1-32 characters A-Z a-z 0-9 . _ -")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(f"key {kid}: a secret has at least {MIN_SECRET_BYTES} bytes")
        self._keys = dict(keys)
        self._last: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, where: str) -> StreamKeys:
        """Read a key file's text; :class:`~pdm.errors.ConfigError` ``WHERE:LINE: reason``
        (never showing a secret)."""
        keys: dict[str, tuple[bytes, frozenset[str] | None]] = {}
        for no, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) not in (2, 3):
                raise ConfigError(f"{where}:{no}: expected KEY_ID SECRET_HEX [ID,ID,...]")
            kid, hexed = words[0], words[1]
            if not _KEY_ID.match(kid):
                raise ConfigError(
                    f"{where}:{no}: key id {kid!r} must be 1-32 characters A-Z a-z 0-9 . _ -"
                )
            if kid in keys:
                raise ConfigError(f"{where}:{no}: key id {kid} given twice")
            try:
                secret = bytes.fromhex(hexed)
            except ValueError:
                raise ConfigError(f"{where}:{no}: key {kid}: the secret is not hex") from None
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"{where}:{no}: key {kid}: the secret has {len(secret)} bytes; at least "
                    f"{MIN_SECRET_BYTES} (openssl rand -hex 32)"
                )
            ids: frozenset[str] | None = None
            if len(words) == 3 and words[2] != "*":
                ids = frozenset(filter(None, words[2].split(",")))
            keys[kid] = (secret, ids)
        if not keys:
            raise ConfigError(f"{where}: no key in the file")
        return cls(keys)

    @classmethod
    def from_env(cls, env: str = KEYS_FILE_ENV) -> StreamKeys | None:
        """The keys of the file named by ``env``; None when it is not set."""
        path = os.environ.get(env, "")
        if not path:
            return None
        try:
            st = os.stat(path)
            with open(path, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{env}={path}: cannot read the stream keys: {why}") from exc
        if st.st_mode & 0o077:
            log.warning(
                "%s=%s is readable by other users (mode %o): anyone who reads it can sign "
                "frames; chmod 600 it",
                env,
                path,
                st.st_mode & 0o777,
            )
        return cls.parse(text, path)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never the secrets
        return f"StreamKeys({sorted(self._keys)})"

    def known(self, key_id: str) -> bool:
        return key_id in self._keys

    def secret(self, key_id: str) -> bytes:
        return self._keys[key_id][0]

    def allows(self, key_id: str, sensor_id: str) -> bool:
        """Whether ``key_id`` may send frames naming ``sensor_id``."""
        entry = self._keys.get(key_id)
        return entry is not None and (entry[1] is None or sensor_id in entry[1])

    def advance(self, key_id: str, sensor_id: str, counter: int) -> int | None:
        """Take ``counter`` for (key, sensor) if it is above the last one taken: None;
        otherwise refuse it and return that last counter (a replay)."""
        k = (key_id, sensor_id)
        with self._lock:
            last = self._last.get(k)
            if last is not None and counter <= last:
                return last
            if last is None and len(self._last) >= _MAX_REPLAY_ENTRIES:
                self._last.pop(next(iter(self._last)))
            self._last[k] = counter
            return None


class FrameSigner:
    """A sender's key: signs frames with a counter that is its clock in ns, kept strictly
    increasing (a restarted sender continues above what it sent before, as long as its clock
    has moved on).

    >>> signer = FrameSigner("gw-1", bytes(16))
    >>> a, b = signer.next_counter(), signer.next_counter()
    >>> b > a
    True
    """

    def __init__(self, key_id: str, secret: bytes) -> None:
        if not _KEY_ID.match(key_id):
            raise ValueError(f"key id {key_id!r} must be 1-32 characters A-Z a-z 0-9 . _ -")
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a stream key secret has at least {MIN_SECRET_BYTES} bytes")
        self.key = (key_id, secret)
        self._last = 0

    def next_counter(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last

    def __repr__(self) -> str:
        return f"FrameSigner({self.key[0]!r})"


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
        if not isinstance(kid, str) or not _KEY_ID.match(kid):
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
        if n < len(MAGIC):
            if buf != MAGIC[:n]:
                self._bad_magic(buf)
            return None
        if buf[:4] != MAGIC:
            self._bad_magic(buf)
        if n > _OFF_VERSION and buf[_OFF_VERSION] != self._version:
            got = buf[_OFF_VERSION]
            if got == AUTH_VERSION:
                why = "an authenticated frame (version 2), but this receiver has no stream keys"
            elif got == VERSION:
                why = (
                    "an unauthenticated frame (version 1): this receiver takes only frames "
                    "signed with a stream key (version 2)"
                )
            else:
                why = f"unknown protocol version {got} (this receiver speaks {self._version})"
            self._fail(base + _OFF_VERSION, why, cause="auth" if got in (1, 2) else "protocol")
        if n > _OFF_DTYPE and buf[_OFF_DTYPE] not in _DTYPE_NAMES:
            known = ", ".join(f"{c} = {name}" for c, name in _DTYPE_NAMES.items())
            self._fail(base + _OFF_DTYPE, f"unknown dtype {buf[_OFF_DTYPE]} (known: {known})")
        if n < HEAD.size:
            return None
        _, _, code, n_ch, fs, t0_ns, n_s, sid_len = HEAD.unpack_from(buf)
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
        if not _KEY_ID.match(kid) or not self.keys.known(kid):
            shown = kid if _KEY_ID.match(kid) else repr(raw)
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
        end = h.total - _CRC_BYTES
        counter: int | None = None
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
            if h.key_id is not None:
                assert self.keys is not None
                tag_at = end - TAG_BYTES
                want = hmac.new(self.keys.secret(h.key_id), mv[:tag_at], hashlib.sha256).digest()
                if not hmac.compare_digest(want, mv[tag_at:end]):
                    self._fail(
                        base + tag_at,
                        f"the HMAC tag does not match key {h.key_id} (a wrong key, or the frame "
                        "was altered)",
                        cause="auth",
                    )
                (counter,) = _U64.unpack_from(buf, HEAD.size + h.auth - _U64.size)
            names_raw = bytes(mv[HEAD.size + h.auth : h.names_end])
            # One copy out of the receive buffer, and the frame owns it (see to_chunk).
            count = h.n_samples * h.n_channels
            samples = np.frombuffer(mv, _NUMPY[h.code], count, h.data_off).copy()
        sensor_id, channels = self._decode_names(h.sid_len, names_raw, base + HEAD.size + h.auth)
        if h.key_id is not None and counter is not None:
            assert self.keys is not None
            if not self.keys.allows(h.key_id, sensor_id):
                self._fail(
                    base + HEAD.size + h.auth,
                    f"key {h.key_id} may not send for sensor {sensor_id!r}",
                    cause="auth",
                )
            last = self.keys.advance(h.key_id, sensor_id, counter)
            if last is not None:
                self._fail(
                    base + HEAD.size + h.auth - _U64.size,
                    f"counter {counter} of key {h.key_id} for {sensor_id!r} is not above the "
                    f"last one taken ({last}): a replayed or reordered frame",
                    cause="auth",
                )
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
            key_id=h.key_id,
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
        self._names_key, self._names = (sid_len, raw), (sensor_id, tuple(channels))
        return self._names


# ---------------------------------------------------------------------- server

OnChunk = Callable[[str, Chunk], object]
OnEvent = Callable[[str, str], object]

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


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    host: str
    decoder: FrameDecoder
    connected: float  # monotonic s
    last_rx: float
    frames: int = 0
    held: int = 0  # bytes of an incomplete frame held by the decoder
    frame_started: float | None = None  # when the incomplete frame's first byte came
    received: bool = False  # any byte at all


def peer_name(addr: Any) -> str:
    """``HOST:PORT`` (``[HOST]:PORT`` for IPv6) of a socket address."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def peer_host(peer: str) -> str:
    """The address part of :func:`peer_name`'s ``HOST:PORT`` (the whole text otherwise).

    >>> peer_host("10.0.0.7:51234"), peer_host("[::1]:9000"), peer_host("peer")
    ('10.0.0.7', '::1', 'peer')
    """
    if peer.startswith("[") and "]:" in peer:
        return peer[1 : peer.index("]:")]
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else peer


class TcpStreamServer:
    """Receives PDMS frames over TCP and hands them on as chunks.

    One I/O thread (:mod:`selectors`) serves the listener and every connection,
    so ``on_chunk`` and ``on_event`` are never called concurrently (they run
    on that thread; a slow ``on_chunk`` slows every sender through TCP flow
    control rather than queueing data in memory). The receiver never writes to
    a connection: closing it is its only answer. A connection it refuses
    (protocol error, rejected data, a limit below) is reset (TCP RST); one that
    ends otherwise (the peer closed, idle, the receiver stops) is closed normally.

    **Limits** (every one a refusal, counted in :attr:`refused` by cause, and logged at
    most once per ``log_interval_s`` per cause with a count of the rest):

    * ``max_connections`` in all and ``max_per_peer`` from one address (``too_many``,
      ``per_peer``);
    * a connection must send its first byte within ``first_byte_timeout_s``
      (``no_data``), and a frame once started must be complete within
      ``frame_timeout_s`` (``slow_frame``): a peer that connects and waits, or trickles
      a frame byte by byte, does not hold a slot;
    * ``max_frame_bytes`` per frame, so per connection (``protocol``, at the header);
    * ``max_input_bytes`` of incomplete frames across all connections: past it, the
      connection whose incomplete frame is oldest is closed (``memory``) — a frame of a
      sender that writes it at once completes in milliseconds, one that is held back is
      the one to go.

    Parameters
    ----------
    host : str
        Address to listen on. The default is loopback; a DAQ on another machine
        needs an explicit ``"0.0.0.0"``, ``"::"`` or an interface address (and
        then anyone who can reach the port can feed data, unless ``keys``).
        ``""`` is refused, as Python would take it to mean every interface.
    port : int
        TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    on_chunk : callable(sensor_id, Chunk)
        Called for each frame with its samples as float64 in the channels' units
        (int16 frames already scaled). Raising a :class:`~pdm.errors.PdmError`
        (e.g. unknown sensor; a :class:`FrameRefused` names its cause) rejects the
        data: that connection is closed with a one-line ``rejected`` event. Any other
        exception is logged with its traceback and does the same.
    on_event : callable(kind, detail), optional
        ``kind`` is ``"connected"``, ``"disconnected"``, ``"protocol_error"``,
        ``"rejected"``, ``"refused"`` (a limit above) or ``"timeout"`` (``no_data``,
        ``slow_frame``); ``detail`` is one line starting with the peer. Called for every
        event (only the log lines are limited).
    max_connections : int
        Connections served at once; more are accepted and closed at once.
    idle_timeout_s : float or None
        Close a connection that sends nothing for this long between frames (a silent
        peer would otherwise hold a slot for ever). None: never.
    max_frame_bytes : int
        Largest frame accepted (default and maximum: the protocol's 64 MiB; a service
        sizes it from its pipelines with :func:`frame_limit`).
    max_per_peer : int
        Connections from one address at once.
    first_byte_timeout_s, frame_timeout_s : float
        See the limits above.
    max_input_bytes : int, optional
        Bytes of incomplete frames held across all connections (default: 4 frames of
        ``max_frame_bytes``, at least 64 MiB).
    keys : StreamKeys, optional
        Take only frames signed with these keys (version 2; see :class:`FrameDecoder`).
    log_interval_s : float
        At most one log line per cause per this many seconds.

    Attributes
    ----------
    port : int
        The bound port once started.
    frames, bytes_received, protocol_errors : int
        Totals since start, for metrics.
    refused : dict of str to int
        Connections refused or closed for a limit or a protocol violation, by cause,
        since start.
    rejected : dict of str to int
        Connections closed because ``on_chunk`` rejected their data, by cause (a
        :class:`FrameRefused`'s, else ``rejected``), since start.
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
        max_per_peer: int = 64,
        first_byte_timeout_s: float = 5.0,
        frame_timeout_s: float = 30.0,
        max_input_bytes: int | None = None,
        keys: StreamKeys | None = None,
        log_interval_s: float = 60.0,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(
                f"{host=}: name the address to listen on ('127.0.0.1', or '0.0.0.0' for "
                f"every interface)"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"{port=} must be an int within 0..65535")
        if not 1 <= max_connections <= 65536:
            raise ValueError(f"{max_connections=} must be within 1..65536")
        if not 1 <= max_per_peer <= 65536:
            raise ValueError(f"{max_per_peer=} must be within 1..65536")
        for name, value in (
            ("idle_timeout_s", idle_timeout_s),
            ("first_byte_timeout_s", first_byte_timeout_s),
            ("frame_timeout_s", frame_timeout_s),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be > 0 s")
        FrameDecoder(max_frame_bytes=max_frame_bytes)  # validates the value
        if max_input_bytes is None:
            max_input_bytes = max(64 * 1024 * 1024, 4 * max_frame_bytes)
        if max_input_bytes < max_frame_bytes:
            raise ValueError(f"{max_input_bytes=} must be at least {max_frame_bytes=}")
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.max_per_peer = max_per_peer
        self.first_byte_timeout_s = float(first_byte_timeout_s)
        self.frame_timeout_s = float(frame_timeout_s)
        self.max_input_bytes = int(max_input_bytes)
        self.keys = keys
        self.frames = 0
        self.bytes_received = 0
        self.protocol_errors = 0
        self.refused: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self._limiter = LogLimiter(log_interval_s)
        self._on_chunk = on_chunk
        self._on_event = on_event
        self._conns: set[_Conn] = set()
        self._per_host: dict[str, int] = {}
        self._held = 0  # bytes of incomplete frames across connections
        self._listener: socket.socket | None = None
        self._listening = True
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._sel: selectors.BaseSelector | None = None  # driven mode: polled by its driver
        self._next_check = 0.0
        self._driver: int | None = None  # the thread that polls a driven receiver
        self._closed = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._scratch = bytearray(_RECV_BYTES)
        # Handed over (socket, peer, bytes already read), not yet registered.
        self._adopted: list[tuple[socket.socket, str, bytes]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, driven: bool = False, listen: bool = True) -> Self:
        """Bind, listen and start the I/O thread — or, ``driven``, none: the caller's thread
        then calls :meth:`poll` (the service's processing thread does, so frames and windows
        never wait for each other's hold on the interpreter lock). ``listen=False``: no
        port at all; the receiver serves only connections handed to :meth:`adopt` (a
        worker of a multi-process service).

        Raises
        ------
        InputError
            The address cannot be resolved or bound (in use, not local).
        """
        with self._lock:
            if self._started:
                raise RuntimeError("TcpStreamServer.start() called twice; make a new server")
            self._listening = listen
            if listen:
                self._listen()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._started = True
            if driven:
                self._sel = self._open_selector()
            else:
                self._thread = threading.Thread(
                    target=self._run, name=f"pdm-tcp-{self.port}", daemon=True
                )
                self._thread.start()
        return self

    def _listen(self) -> None:
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
            # Room for every connection the limits allow to arrive at once (a gateway opening
            # its sensors' connections together; the kernel caps it at net.core.somaxconn).
            listener.listen(self.max_connections)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise InputError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        if self.keys is not None:
            log.info(
                "stream receiver listening on %s:%d; frames must be signed (%d key(s))",
                self.host,
                self.port,
                len(self.keys),
            )
        elif not is_loopback(self.host):
            log.warning(
                "stream receiver listening on %s:%d (not loopback) without stream keys: anyone "
                "who can reach this port can feed data (docs/stream-protocol.md)",
                self.host,
                self.port,
            )
        else:
            log.info("stream receiver listening on %s:%d", self.host, self.port)

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

    def adopt(self, sock: socket.socket, peer: str, received: bytes = b"") -> None:
        """Serve a connection accepted elsewhere (a multi-process service's supervisor
        accepts on the public port, reads the first frame's header and hands the connection,
        with the bytes it read (``received``), to the worker that runs its machine).
        Thread-safe; the connection counts against every limit."""
        with self._lock:
            if not self._started or self._stopping.is_set():
                sock.close()
                return
            self._adopted.append((sock, peer, bytes(received)))
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"a")
                except OSError:
                    pass

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._conns)

    @property
    def input_bytes(self) -> int:
        """Bytes of incomplete frames held now, across connections."""
        return self._held

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
        assert self._wake_r is not None
        sel = selectors.DefaultSelector()
        if self._listener is not None:
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
        # The deadlines are walked at the soonest of them, not after every read (with 150
        # connections a walk per frame was a third of the reader's time).
        timeout = min(timeout, max(0.0, self._next_check - time.monotonic()))
        for key, _ in sel.select(timeout):
            if self._stopping.is_set():
                break
            if key.data == "listen":
                self._accept(sel)
            elif key.data == "wake":
                self._drain_wake()
                self._register_adopted(sel)
            elif key.data in self._conns:  # (not closed earlier in this round)
                self._read(sel, key.data)
        if time.monotonic() >= self._next_check:
            self._next_check = self._check_deadlines(sel)

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
        for sock, peer, received in adopted:
            conn = self._serve(sel, sock, peer)
            if conn is not None and received:
                self._take(sel, conn, received)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving what we have
                self._refuse("accept", f"accept failed: {exc.strerror or exc}", log_only=True)
                return
            self._serve(sel, sock, peer_name(addr))

    def _serve(self, sel: selectors.BaseSelector, sock: socket.socket, peer: str) -> _Conn | None:
        host = peer_host(peer)
        cause = ""
        if len(self._conns) >= self.max_connections:
            self._push_out_silent(sel)
        if self._per_host.get(host, 0) >= self.max_per_peer:
            self._push_out_silent(sel, host)
        if len(self._conns) >= self.max_connections:
            cause, why = "too_many", f"{len(self._conns)} connections open (the maximum)"
        elif self._per_host.get(host, 0) >= self.max_per_peer:
            cause, why = "per_peer", f"{self.max_per_peer} connections from {host} open already"
        if cause:
            _reset(sock)
            self._refuse(cause, f"{peer}: refused, {why}", kind="refused")
            return None
        sock.setblocking(False)
        now = time.monotonic()
        conn = _Conn(
            sock,
            peer,
            host,
            FrameDecoder(peer, max_frame_bytes=self.max_frame_bytes, keys=self.keys),
            now,
            now,
        )
        self._conns.add(conn)
        self._per_host[host] = self._per_host.get(host, 0) + 1
        sel.register(sock, selectors.EVENT_READ, conn)
        self._next_check = min(self._next_check, now + self.first_byte_timeout_s)
        self._event("connected", f"{peer}: connected", log_level=logging.INFO)
        return conn

    def _push_out_silent(self, sel: selectors.BaseSelector, host: str | None = None) -> None:
        """Every slot taken (``host``: every slot of that address): close the oldest
        connection (from ``host``) that has sent nothing yet, so that idle connections can
        never keep a sensor out (none: the newcomer is refused)."""
        silent = [c for c in self._conns if not c.received and host in (None, c.host)]
        if silent:
            oldest = min(silent, key=lambda c: c.connected)
            limit = (
                f"{self.max_connections} connections"
                if host is None
                else f"{self.max_per_peer} connections from {host}"
            )
            self._close(
                sel,
                oldest,
                "refused",
                f"{oldest.peer}: closed, every one of {limit} taken "
                f"and this one had sent nothing for {time.monotonic() - oldest.connected:.1f} s",
                cause="too_many" if host is None else "per_peer",
            )

    def _read(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        try:
            n = conn.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(sel, conn, "disconnected", f"{conn.peer}: {exc.strerror or exc}")
            return
        if n == 0:
            try:
                conn.decoder.close()
            except InputError as exc:
                self.protocol_errors += 1
                self._close(sel, conn, "protocol_error", str(exc), cause="protocol")
                return
            self._close(
                sel,
                conn,
                "disconnected",
                f"{conn.peer}: closed by the peer after {conn.frames} frames",
            )
            return
        with memoryview(self._scratch) as mv:
            self._take(sel, conn, mv[:n])

    def _take(self, sel: selectors.BaseSelector, conn: _Conn, data: memoryview | bytes) -> None:
        """Decode bytes received on ``conn`` and deliver the frames they complete."""
        conn.last_rx = now = time.monotonic()
        try:
            conn.received = True
            self.bytes_received += len(data)
            frames = conn.decoder.feed(data)
            self._hold(conn, now, completed=bool(frames))
            for frame in frames:
                if not self._deliver(sel, conn, frame, now):
                    return
            if conn.decoder.error is not None:
                raise conn.decoder.error
        except InputError as exc:
            self.protocol_errors += 1
            cause = exc.cause if isinstance(exc, FrameRefused) else "protocol"
            self._close(sel, conn, "protocol_error", str(exc), cause=cause)
            return
        if self._held > self.max_input_bytes:
            self._shed(sel)

    def _hold(self, conn: _Conn, now: float, *, completed: bool) -> None:
        """Account for the bytes of ``conn``'s incomplete frame after a read."""
        held = conn.decoder.pending
        self._held += held - conn.held
        if held == 0:
            conn.frame_started = None
        elif conn.held == 0 or completed:
            conn.frame_started = now  # a new frame began in this read
            self._next_check = min(self._next_check, now + self.frame_timeout_s)
        conn.held = held

    def _shed(self, sel: selectors.BaseSelector) -> None:
        """Over ``max_input_bytes``: close the connections whose incomplete frames are
        oldest until the rest fits."""
        waiting = sorted(
            (c for c in self._conns if c.held and c.frame_started is not None),
            key=lambda c: c.frame_started or 0.0,
        )
        for conn in waiting:
            if self._held <= self.max_input_bytes:
                break
            age = time.monotonic() - (conn.frame_started or 0.0)
            self._close(
                sel,
                conn,
                "refused",
                f"{conn.peer}: closed, {self._held} bytes of incomplete frames held across "
                f"connections (limit {self.max_input_bytes}); its frame, {conn.held} bytes so "
                f"far, was the oldest ({age:.1f} s)",
                cause="memory",
            )

    def _deliver(
        self, sel: selectors.BaseSelector, conn: _Conn, frame: Frame, received: float
    ) -> bool:
        conn.frames += 1
        self.frames += 1
        try:
            self._on_chunk(frame.sensor_id, frame.to_chunk(received))
        except PdmError as exc:
            cause = exc.cause if isinstance(exc, FrameRefused) else "rejected"
            self._close(
                sel,
                conn,
                "rejected",
                f"{conn.peer}: sensor {frame.sensor_id!r}: {exc}",
                cause=cause,
            )
            return False
        except Exception as exc:
            log.exception("stream receiver: on_chunk failed for %s", conn.peer)
            self._close(
                sel,
                conn,
                "rejected",
                f"{conn.peer}: on_chunk failed: {type(exc).__name__}: {exc}".splitlines()[0],
                cause="error",
                logged=True,
            )
            return False
        return not self._stopping.is_set()

    def _check_deadlines(self, sel: selectors.BaseSelector) -> float:
        """Close the connections past a deadline (first byte, frame, idle); tell the
        refusals held back whose interval passed. Returns when to look again (monotonic
        s): the soonest deadline left, within 10 ms .. 1 s."""
        now = time.monotonic()
        soonest = now + 1.0
        for conn in list(self._conns):
            if not conn.received:
                limit = self.first_byte_timeout_s
                if self.idle_timeout_s is not None:
                    limit = min(limit, self.idle_timeout_s)
                due = conn.connected + limit
                if now >= due:
                    if limit < self.first_byte_timeout_s:  # the idle limit is the shorter
                        self._close(
                            sel,
                            conn,
                            "disconnected",
                            f"{conn.peer}: nothing received for {self.idle_timeout_s:g} s",
                        )
                    else:
                        self._close(
                            sel,
                            conn,
                            "timeout",
                            f"{conn.peer}: sent nothing within {limit:g} s of connecting",
                            cause="no_data",
                        )
                    continue
            elif conn.frame_started is not None:
                due = conn.frame_started + self.frame_timeout_s
                if now >= due:
                    self._close(
                        sel,
                        conn,
                        "timeout",
                        f"{conn.peer}: a frame was not complete {self.frame_timeout_s:g} s "
                        f"after its first byte ({conn.held} bytes received)",
                        cause="slow_frame",
                    )
                    continue
            elif self.idle_timeout_s is not None:
                due = conn.last_rx + self.idle_timeout_s
                if now >= due:
                    self._close(
                        sel,
                        conn,
                        "disconnected",
                        f"{conn.peer}: nothing received for {self.idle_timeout_s:g} s",
                    )
                    continue
            else:
                continue
            soonest = min(soonest, due)
        for key, count in self._limiter.pending(now):
            kind, cause = cast(tuple[str, str], key)
            log.warning(
                "stream receiver: %d more %s (%s) in the last %g s",
                count,
                kind.replace("_", " "),
                cause,
                self._limiter.interval_s,
            )
        return max(now + 0.01, soonest)

    def _close(
        self,
        sel: selectors.BaseSelector,
        conn: _Conn,
        kind: str,
        detail: str,
        *,
        cause: str = "",
        logged: bool = False,
    ) -> None:
        """Close ``conn``. A ``cause`` makes it a refusal: reset, counted, and logged at
        most once per interval for that cause."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        left = self._per_host.get(conn.host, 1) - 1
        if left > 0:
            self._per_host[conn.host] = left
        else:
            self._per_host.pop(conn.host, None)
        self._held -= conn.held
        conn.held = 0
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if cause:
            # Reset (RST), not a normal close: the sender's next write fails at once, and a
            # sender waiting for the close after its last frame learns that it was refused.
            _reset(conn.sock)
            self._refuse(cause, detail, kind=kind, log_only=logged)
        else:
            conn.sock.close()
            self._event(kind, detail, log_level=logging.INFO)
        big = conn.decoder.pending >= _TRIM_AFTER_BYTES
        conn.decoder.release()  # its buffer goes now, not when the cyclic collector runs
        if big:
            _trim_heap()

    def _refuse(
        self, cause: str, detail: str, *, kind: str = "refused", log_only: bool = False
    ) -> None:
        """Count a refusal, log it (at most once per interval per cause) and report it."""
        counts = self.rejected if kind == "rejected" else self.refused
        counts[cause] = counts.get(cause, 0) + 1
        held = self._limiter.check((kind, cause))
        if held is not None and not log_only:
            more = f" ({held} more like this in the last {self._limiter.interval_s:g} s)"
            log.warning("stream receiver: %s%s", detail, more if held else "")
        if not log_only:
            self._event(kind, detail, log_level=None)

    def _event(self, kind: str, detail: str, *, log_level: int | None) -> None:
        if log_level is not None:
            log.log(log_level, "stream receiver: %s", detail)
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("stream receiver: on_event(%r) failed", kind)


#: After a connection that held this much closes, free memory goes back to the system.
_TRIM_AFTER_BYTES = 1 << 20


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER on, 0 s)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


def _trim_heap() -> None:
    """Give free heap memory back to the system (glibc ``malloc_trim``): a frame buffer of
    a few MB is freed into the heap, where it would stay in the process's resident size."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


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
