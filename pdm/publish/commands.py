"""Signed commands from the plant (MQTT ``…/<machine>/cmd/ack``): who may acknowledge, and once.

A command acts on a machine that may be running, so a broker account alone is not enough:
each command carries an HMAC-SHA256 over its content with a key shared with the sender
(a file on the appliance, never in a topic or the pipeline), a timestamp and a nonce. A
command is refused unless

* it is at most :data:`MAX_COMMAND_BYTES` of UTF-8 JSON: an object with exactly the keys
  ``by``, ``comment``, ``ts`` (Unix seconds, integer), ``nonce`` (8–64 characters of
  ``A–Z a–z 0–9 _ -``) and ``sig`` (64 lowercase hex digits);
* ``ts`` is within :data:`WINDOW_S` of the appliance's clock (a recorded command replayed
  later is refused);
* its nonce was not seen in the last 2 × :data:`WINDOW_S` (a command replayed at once is
  refused; at most :data:`MAX_NONCES` are remembered — past that, new commands are refused
  until old nonces expire, rather than forgetting one that could be replayed);
* ``sig`` is ``HMAC-SHA256(key, canonical)`` with ``canonical`` the UTF-8 lines::

      pdm-edge.cmd/1
      <appliance id>
      <machine id>
      ack
      <ts>
      <nonce>
      <by>
      <comment>

  (joined by ``\\n``, no trailing newline): the topic's machine and the appliance are
  inside the signature, so a command for one machine cannot be moved to another.

>>> key = b"k" * 32
>>> body = sign(key, "edge-1", "pump-01", by="M. Keller", comment="bearing checked", ts=1000, nonce="n0nce-0001")
>>> v = CommandVerifier(key, "edge-1")
>>> v.check("pump-01", body, now=1010.0)
('M. Keller', 'bearing checked', 'n0nce-0001')
>>> v.check("pump-01", body, now=1011.0)
Traceback (most recent call last):
...
pdm.publish.commands.CommandRefused: nonce 'n0nce-0001' already used
>>> v.check("fan-02", sign(key, "edge-1", "pump-01", by="x", comment="", ts=1000, nonce="other-001"), now=1000.0)
Traceback (most recent call last):
...
pdm.publish.commands.CommandRefused: bad signature
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from typing import Any

__all__ = [
    "COMMAND_SCHEMA",
    "MAX_COMMAND_BYTES",
    "MAX_NONCES",
    "MIN_KEY_BYTES",
    "WINDOW_S",
    "CommandRefused",
    "CommandVerifier",
    "canonical",
    "sign",
]

COMMAND_SCHEMA = "pdm-edge.cmd/1"
MAX_COMMAND_BYTES = 4096
#: A command's timestamp may be this far from the appliance's clock, s.
WINDOW_S = 60.0
MAX_NONCES = 100_000
#: The shortest HMAC key accepted, bytes.
MIN_KEY_BYTES = 32
_KEYS = frozenset({"by", "comment", "ts", "nonce", "sig"})
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")


class CommandRefused(Exception):
    """A command that is not carried out; the message says why, in one line."""


def canonical(appliance: str, machine: str, ts: int, nonce: str, by: str, comment: str) -> bytes:
    """The bytes the signature covers (see the module docstring)."""
    return "\n".join(
        (COMMAND_SCHEMA, appliance, machine, "ack", str(ts), nonce, by, comment)
    ).encode()


def sign(
    key: bytes, appliance: str, machine: str, *, by: str, comment: str, ts: int, nonce: str
) -> bytes:
    """A signed acknowledge command's payload (what a sender publishes)."""
    sig = hmac.new(key, canonical(appliance, machine, ts, nonce, by, comment), hashlib.sha256)
    doc = {"by": by, "comment": comment, "ts": ts, "nonce": nonce, "sig": sig.hexdigest()}
    return json.dumps(doc).encode()


class CommandVerifier:
    """Checks commands for one appliance (see the module docstring). Thread-safe."""

    def __init__(self, key: bytes, appliance: str, *, window_s: float = WINDOW_S) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the command key has {len(key)} bytes; at least {MIN_KEY_BYTES}")
        self._key = key
        self.appliance = appliance
        self.window_s = window_s
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> when it expires
        self._lock = threading.Lock()

    def check(
        self, machine: str, payload: bytes, *, now: float | None = None
    ) -> tuple[str, str, str]:
        """``(by, comment, nonce)`` of a valid command; :class:`CommandRefused` otherwise."""
        now = time.time() if now is None else now
        doc = self._parse(payload)
        by, comment, ts, nonce, sig = doc["by"], doc["comment"], doc["ts"], doc["nonce"], doc["sig"]
        if abs(now - ts) > self.window_s:
            raise CommandRefused(
                f"timestamp {ts} is {now - ts:+.0f} s from the appliance's clock "
                f"(at most {self.window_s:g} s)"
            )
        want = hmac.new(
            self._key, canonical(self.appliance, machine, ts, nonce, by, comment), hashlib.sha256
        )
        if not hmac.compare_digest(want.hexdigest(), sig):
            raise CommandRefused("bad signature")
        with self._lock:
            while self._nonces and next(iter(self._nonces.values())) < now:
                self._nonces.popitem(last=False)
            if nonce in self._nonces:
                raise CommandRefused(f"nonce {nonce!r} already used")
            if len(self._nonces) >= MAX_NONCES:
                raise CommandRefused(f"{MAX_NONCES} commands in {2 * self.window_s:g} s; wait")
            self._nonces[nonce] = now + 2 * self.window_s
        return by, comment, nonce

    @staticmethod
    def _parse(payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRefused(f"{len(payload)} bytes; at most {MAX_COMMAND_BYTES}")
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CommandRefused("not a UTF-8 JSON object") from None
        if not isinstance(doc, dict):
            raise CommandRefused("not a JSON object")
        if set(doc) != _KEYS:
            missing, extra = sorted(_KEYS - set(doc)), sorted(set(doc) - _KEYS)
            raise CommandRefused(
                "keys must be by, comment, ts, nonce, sig"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(map(repr, extra[:3]))}" if extra else "")
            )
        if not isinstance(doc["by"], str) or not isinstance(doc["comment"], str):
            raise CommandRefused("by and comment must be strings")
        if isinstance(doc["ts"], bool) or not isinstance(doc["ts"], int):
            raise CommandRefused("ts must be an integer (Unix seconds)")
        if not 0 <= doc["ts"] < 2**53:  # a float compares with it exactly (400 digits: overflow)
            raise CommandRefused("ts must be Unix seconds, 0 to 2**53")
        if not isinstance(doc["nonce"], str) or not _NONCE.match(doc["nonce"]):
            raise CommandRefused("nonce must be 8-64 characters of A-Z a-z 0-9 _ -")
        if not isinstance(doc["sig"], str) or not _SIG.match(doc["sig"]):
            raise CommandRefused("sig must be 64 lowercase hex digits (HMAC-SHA256)")
        return doc
