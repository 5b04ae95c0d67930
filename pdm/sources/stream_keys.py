"""The keys of authenticated stream frames (version 2): a receiver's key file with its
replay guard (:class:`StreamKeys`) and a sender's key with its counter (:class:`FrameSigner`).

The key file's format is in ``docs/stream-protocol.md`` ("Authenticated frames").
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time

from pdm.errors import ConfigError

__all__ = [
    "KEYS_FILE_ENV",
    "KEY_ID",
    "MIN_SECRET_BYTES",
    "FrameSigner",
    "StreamKeys",
]

# The receiver's logger, as before these classes left pdm.sources.tcp.
log = logging.getLogger("pdm.sources.tcp")


#: A stream key's secret has at least this many bytes (128 bits).
MIN_SECRET_BYTES = 16


KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


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
            if not KEY_ID.match(kid):
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
            if not KEY_ID.match(kid):
                # Not shown: with the columns swapped, the first word is the secret.
                raise ConfigError(
                    f"{where}:{no}: the key id (the first word, {len(kid)} characters) must "
                    "be 1-32 characters A-Z a-z 0-9 . _ -; a line is KEY_ID SECRET_HEX [ID,...]"
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
        if not KEY_ID.match(key_id):
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
