"""Operator PINs: who may acknowledge an alarm from the dashboard.

Viewing the dashboard needs nothing; acknowledging needs an operator name and
that operator's PIN (or password). PINs are stored hashed with scrypt
(N=2^14, r=8, p=1, 32-byte key) and a random 16-byte salt per operator in
``<data dir>/operators.json``, written atomically with mode 0600. Checking
compares in constant time, and an unknown name costs the same scrypt as a
known one, so timing tells nothing about which names exist.

**Lockout.** After :data:`MAX_FAILURES` wrong PINs in a row for one operator
name, that name is locked for :data:`LOCK_BASE_S` seconds, doubling with each
lockout in a row up to :data:`LOCK_MAX_S`; a right PIN ends the series. The
count lives in ``<data dir>/operators-lockout.db`` (SQLite, mode 0600, beside the
operators file): it survives restarts and is shared by every Streamlit session
and process, and an attempt is counted *before* its PIN is checked (in one
SQLite write transaction), so parallel sessions cannot try more than the limit
between them. Unknown names are counted and locked alike, so a lock says nothing
about which names exist. When the count cannot be written the check fails
closed. ``pdm-edge operators unlock NAME`` ends a lock (someone locked a real
operator out by guessing on their name).

**Length.** New PINs need at least :data:`MIN_PIN` characters (six digits:
10^6 guesses against scrypt, and the lockout allows a few a minute). PINs set
under the old 4-character rule still work; ``operators list`` flags them
("may be short"), and one seen to be short when used is flagged "short".

``pdm-edge operators add NAME`` (``operators_main(["add", NAME])``) reads the
PIN twice from the terminal without echo (from stdin, one line each, when it
is not a terminal); ``remove NAME``, ``unlock NAME`` and ``list`` do what they say.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdm.core.files import default_data_dir, read_at_most
from pdm.errors import ConfigError, PdmError

__all__ = [
    "LOCKOUT_FILE",
    "LOCK_BASE_S",
    "LOCK_MAX_S",
    "MAX_FAILURES",
    "MIN_PIN",
    "OPERATORS_DESCRIPTION",
    "OPERATORS_FILE",
    "PinCheck",
    "add_operators_arguments",
    "check_pin",
    "list_operators",
    "operators_main",
    "remove_operator",
    "run_operators",
    "set_pin",
    "unlock_operator",
    "verify_pin",
]

OPERATORS_FILE = "operators.json"
LOCKOUT_FILE = "operators-lockout.db"
MIN_PIN = 6
#: The old rule: entries set before the 6-character rule may be this short.
_OLD_MIN_PIN = 4
MAX_PIN = 256
#: Wrong PINs in a row that lock an operator name.
MAX_FAILURES = 5
#: The first lock, s; each further lock in a row doubles it, up to LOCK_MAX_S.
LOCK_BASE_S = 60.0
LOCK_MAX_S = 24 * 3600.0
#: Names remembered in the lockout file at most (a guesser trying random names cannot
#: grow it without bound); the oldest are forgotten first.
_MAX_TRACKED = 10_000
_LOCK_BUSY_S = 10.0  # wait this long for another session's transaction
_N, _R, _P, _DKLEN = 1 << 14, 8, 1, 32
_MAXMEM = 64 * 2**20
_DUMMY_SALT = b"\x00" * 16
#: scrypt parameters an entry may carry (ours: n 2^14, r 8, p 1): a PIN check stays ~50 ms.
_MAX_N, _MAX_R, _MAX_P = 1 << 16, 16, 4
#: An operators file of thousands of names is ~1 MB.
_MAX_FILE_BYTES = 4 << 20


def _path(data_dir: Path) -> Path:
    return Path(data_dir) / OPERATORS_FILE


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ConfigError("operator name: give a name")
    if len(name) > 64 or not name.isprintable():
        raise ConfigError(f"operator name {name[:64]!r}: at most 64 printable characters")
    return name


def _hash(pin: str, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN
    )


def _load(data_dir: Path) -> dict[str, Any]:
    path = _path(data_dir)
    try:
        raw = read_at_most(path, _MAX_FILE_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the operators file: {exc.strerror or exc}") from exc
    try:
        if len(raw) > _MAX_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_FILE_BYTES:,} bytes")
        # Not UTF-8 (a UnicodeDecodeError) and nested too deep were tracebacks.
        data = json.loads(raw.decode("utf-8"))
        ops = data["operators"]
        if not isinstance(ops, dict):
            raise TypeError("operators is not an object")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:100]
        raise ConfigError(f"{path}: the operators file is unreadable ({why})") from exc
    return ops


def _save(data_dir: Path, ops: dict[str, Any]) -> None:
    path = _path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "operators": ops}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"{path}: cannot write the operators file: {exc.strerror or exc}"
        ) from exc


def set_pin(data_dir: Path, name: str, pin: str) -> None:
    """Add operator ``name`` or change their PIN (at least :data:`MIN_PIN` characters)."""
    name = _check_name(name)
    if len(pin) < MIN_PIN:
        raise ConfigError(f"PIN: at least {MIN_PIN} characters (6 digits or more)")
    if len(pin) > MAX_PIN:
        raise ConfigError(f"PIN: at most {MAX_PIN} characters")
    ops = _load(data_dir)
    salt = secrets.token_bytes(16)
    ops[name] = {
        "scrypt": {"n": _N, "r": _R, "p": _P},
        "salt": salt.hex(),
        "hash": _hash(pin, salt).hex(),
        "set": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "min_length": MIN_PIN,  # the rule it was set under (older entries: 4)
    }
    _save(data_dir, ops)
    with contextlib.suppress(PdmError), _lockout_db(data_dir) as db:
        db.execute("DELETE FROM attempts WHERE name = ?", (name,))  # a new PIN, a new start


# --- lockout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinCheck:
    """What :func:`check_pin` found: ``ok``; else ``locked_s`` > 0 while the name is locked
    (the PIN was not tried). ``message`` is one line for the operator (no full stop: the
    caller says what was not done)."""

    ok: bool
    locked_s: float = 0.0
    message: str = ""
    short: bool = False  # a right PIN shorter than MIN_PIN (set under the old rule)


@contextlib.contextmanager
def _lockout_db(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """The lockout file, in one write transaction (BEGIN IMMEDIATE: other sessions wait)."""
    path = Path(data_dir) / LOCKOUT_FILE
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # created private, never widened
        os.close(fd)
        db = sqlite3.connect(path, timeout=_LOCK_BUSY_S, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"{path}: cannot open the PIN lockout file: {exc}") from exc
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "CREATE TABLE IF NOT EXISTS attempts (name TEXT PRIMARY KEY, failures INTEGER "
            "NOT NULL, lockouts INTEGER NOT NULL, locked_until REAL NOT NULL, last REAL NOT "
            "NULL, short INTEGER NOT NULL DEFAULT 0)"
        )
        yield db
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: the PIN lockout file: {exc}") from exc
    finally:
        db.close()


def _lock_s(lockouts: int) -> float:
    return float(min(LOCK_MAX_S, LOCK_BASE_S * 2.0 ** max(0, min(lockouts - 1, 40))))


def _reserve(data_dir: Path, name: str, now: float) -> float:
    """Count one attempt for ``name`` before its PIN is checked; the seconds it is still
    locked (0: the attempt may go ahead). The attempt that makes MAX_FAILURES sets the lock
    (for the attempts after it); a right PIN then clears it (:func:`_settle`)."""
    with _lockout_db(data_dir) as db:
        row = db.execute(
            "SELECT failures, lockouts, locked_until FROM attempts WHERE name = ?", (name,)
        ).fetchone()
        failures, lockouts, until = row if row else (0, 0, 0.0)
        if until > now:
            return float(until - now)
        failures += 1
        if failures >= MAX_FAILURES:
            failures, lockouts = 0, lockouts + 1
            until = now + _lock_s(lockouts)
        db.execute(
            "INSERT INTO attempts (name, failures, lockouts, locked_until, last) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET failures = excluded.failures, "
            "lockouts = excluded.lockouts, locked_until = excluded.locked_until, "
            "last = excluded.last",
            (name, failures, lockouts, until, now),
        )
        if row is None:  # a new name: forget the oldest beyond the cap
            db.execute(
                "DELETE FROM attempts WHERE name IN (SELECT name FROM attempts "
                "WHERE locked_until < ? ORDER BY last DESC LIMIT -1 OFFSET ?)",
                (now, _MAX_TRACKED),
            )
        return 0.0


def _settle(data_dir: Path, name: str, short: bool) -> None:
    """A right PIN: the series of failures (and of locks) ends."""
    with _lockout_db(data_dir) as db:
        db.execute(
            "UPDATE attempts SET failures = 0, lockouts = 0, locked_until = 0, short = ? "
            "WHERE name = ?",
            (int(short), name),
        )


def unlock_operator(data_dir: Path, name: str) -> bool:
    """End a lock on ``name`` (and its count of failures); False when it had none."""
    with _lockout_db(data_dir) as db:
        cur = db.execute("DELETE FROM attempts WHERE name = ?", (name.strip(),))
        return cur.rowcount > 0


def _wait_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def check_pin(data_dir: Path, name: str, pin: str, *, now: float | None = None) -> PinCheck:
    """Check ``pin`` for operator ``name`` under the persisted lockout (module docstring).

    Never raises: a lockout file that cannot be written refuses the check (fails closed).
    """
    key = name.strip() if isinstance(name, str) else ""
    if not key or len(key) > 64 or not key.isprintable() or not isinstance(pin, str):
        return PinCheck(False, message="wrong operator name or PIN")
    t = time.time() if now is None else now
    try:
        locked = _reserve(data_dir, key, t)
    except PdmError as exc:
        return PinCheck(False, message=f"PIN not checked: {exc}")
    if locked > 0:
        return PinCheck(
            False,
            locked_s=locked,
            message=f"operator {key!r} is locked for {_wait_text(locked)} after "
            f"{MAX_FAILURES} wrong PINs in a row",
        )
    if not verify_pin(data_dir, key, pin):
        return PinCheck(False, message="wrong operator name or PIN")
    short = len(pin) < MIN_PIN
    try:
        _settle(data_dir, key, short)
    except PdmError as exc:
        return PinCheck(False, message=f"PIN not checked: {exc}")
    return PinCheck(True, short=short)


def _short_names(data_dir: Path) -> set[str]:
    path = Path(data_dir) / LOCKOUT_FILE
    if not path.exists():
        return set()
    try:
        with _lockout_db(data_dir) as db:
            return {r[0] for r in db.execute("SELECT name FROM attempts WHERE short = 1")}
    except PdmError:
        return set()


def verify_pin(data_dir: Path, name: str, pin: str) -> bool:
    """True when ``name`` is an operator and ``pin`` is theirs. Never raises for a bad entry.

    No lockout here: the dashboard calls :func:`check_pin`, which counts the attempt first.
    """
    try:
        ops = _load(data_dir)
    except PdmError:
        ops = {}
    entry = ops.get(name.strip()) if isinstance(name, str) else None
    try:
        if not isinstance(entry, dict) or len(pin) > MAX_PIN:
            raise ValueError("unknown")
        params = entry.get("scrypt", {})
        n, r, p = int(params.get("n", _N)), int(params.get("r", _R)), int(params.get("p", _P))
        if not (n <= _MAX_N and r <= _MAX_R and p <= _MAX_P):
            # maxmem bounds n·r, not p: "p": 1000000 took the dashboard's PIN check for ever.
            raise ValueError("scrypt parameters out of range")
        salt, want = bytes.fromhex(entry["salt"]), bytes.fromhex(entry["hash"])
    except (ValueError, KeyError, TypeError, AttributeError):
        _hash(pin[:MAX_PIN] if isinstance(pin, str) else "", _DUMMY_SALT)  # the same cost
        return False
    try:
        got = _hash(pin, salt, n, r, p)
    except ValueError:  # parameters scrypt refuses
        return False
    return hmac.compare_digest(got, want)


def remove_operator(data_dir: Path, name: str) -> bool:
    """Remove an operator; False when there was none by that name."""
    ops = _load(data_dir)
    if ops.pop(name.strip(), None) is None:
        return False
    _save(data_dir, ops)
    return True


def list_operators(data_dir: Path) -> list[str]:
    return sorted(_load(data_dir))


def _pin_note(name: str, entry: Any, short: set[str]) -> str:
    if name in short:
        return f"  (short PIN: fewer than {MIN_PIN} characters; set a new one)"
    if not isinstance(entry, dict) or int(entry.get("min_length", _OLD_MIN_PIN)) < MIN_PIN:
        return f"  (may be short: set under the old {_OLD_MIN_PIN}-character rule; set a new one)"
    return ""


def _read_pin(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise ConfigError("PIN: no input (give it twice on stdin, one line each)")
    return line.rstrip("\r\n")


#: ``pdm-edge operators --help``'s description.
OPERATORS_DESCRIPTION = "who may acknowledge alarms on the dashboard"


def operators_main(argv: Sequence[str]) -> int:
    """``pdm-edge operators add NAME | remove NAME | list [--data-dir DIR]``; returns the exit code."""
    p = argparse.ArgumentParser(prog="pdm-edge operators", description=OPERATORS_DESCRIPTION)
    add_operators_arguments(p)
    return run_operators(p.parse_args(list(argv)))


def add_operators_arguments(p: argparse.ArgumentParser) -> None:
    """``pdm-edge operators``' options and sub-commands, on ``p``."""
    p.add_argument("--data-dir", default=None, help="the appliance's data directory")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="add an operator or change their PIN (read twice, no echo)")
    add.add_argument("name")
    rm = sub.add_parser("remove", help="remove an operator")
    rm.add_argument("name")
    un = sub.add_parser("unlock", help="end a PIN lockout (after too many wrong PINs)")
    un.add_argument("name")
    sub.add_parser("list", help="list the operators' names; flags PINs that may be short")


def run_operators(args: argparse.Namespace) -> int:
    """``pdm-edge operators`` with its parsed options (:func:`add_operators_arguments`)."""
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    try:
        if args.cmd == "add":
            name = _check_name(args.name)
            first = _read_pin(f"PIN for {name}: ")
            second = _read_pin("Again: ")
            if not hmac.compare_digest(first.encode(), second.encode()):
                raise ConfigError("PIN: the two entries differ; nothing changed")
            set_pin(data_dir, name, first)
            print(f"operator {name}: PIN set in {_path(data_dir)}")
        elif args.cmd == "remove":
            if not remove_operator(data_dir, args.name):
                raise ConfigError(f"no operator {args.name.strip()!r} in {_path(data_dir)}")
            print(f"operator {args.name.strip()}: removed")
        elif args.cmd == "unlock":
            if not unlock_operator(data_dir, args.name):
                raise ConfigError(f"operator {args.name.strip()!r} is not locked")
            print(f"operator {args.name.strip()}: unlocked")
        else:
            ops, short = _load(data_dir), _short_names(data_dir)
            for name in sorted(ops):
                print(name + _pin_note(name, ops[name], short))
    except PdmError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    return 0
