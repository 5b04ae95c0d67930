"""Operator PINs: who may acknowledge an alarm from the dashboard.

Viewing the dashboard needs nothing; acknowledging needs an operator name and
that operator's PIN (or password). PINs are stored hashed with scrypt
(N=2^14, r=8, p=1, 32-byte key) and a random 16-byte salt per operator in
``<data dir>/operators.json``, written atomically with mode 0600. Checking
compares in constant time, and an unknown name costs the same scrypt as a
known one, so timing tells nothing about which names exist.

``pdm-edge operators add NAME`` (``operators_main(["add", NAME])``) reads the
PIN twice from the terminal without echo (from stdin, one line each, when it
is not a terminal); ``remove NAME`` and ``list`` do what they say.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pdm.errors import ConfigError, PdmError

__all__ = [
    "MIN_PIN",
    "OPERATORS_FILE",
    "list_operators",
    "operators_main",
    "remove_operator",
    "set_pin",
    "verify_pin",
]

OPERATORS_FILE = "operators.json"
MIN_PIN = 4
MAX_PIN = 256
_N, _R, _P, _DKLEN = 1 << 14, 8, 1, 32
_MAXMEM = 64 * 2**20
_DUMMY_SALT = b"\x00" * 16


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the operators file: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
        ops = data["operators"]
        if not isinstance(ops, dict):
            raise TypeError("operators is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: the operators file is unreadable ({exc})") from exc
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
        raise ConfigError(f"PIN: at least {MIN_PIN} characters")
    if len(pin) > MAX_PIN:
        raise ConfigError(f"PIN: at most {MAX_PIN} characters")
    ops = _load(data_dir)
    salt = secrets.token_bytes(16)
    ops[name] = {
        "scrypt": {"n": _N, "r": _R, "p": _P},
        "salt": salt.hex(),
        "hash": _hash(pin, salt).hex(),
        "set": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _save(data_dir, ops)


def verify_pin(data_dir: Path, name: str, pin: str) -> bool:
    """True when ``name`` is an operator and ``pin`` is theirs. Never raises for a bad entry."""
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


def _read_pin(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise ConfigError("PIN: no input (give it twice on stdin, one line each)")
    return line.rstrip("\r\n")


def operators_main(argv: Sequence[str]) -> int:
    """``pdm-edge operators add NAME | remove NAME | list [--data-dir DIR]``; returns the exit code."""
    from pdm.history import default_data_dir

    p = argparse.ArgumentParser(
        prog="pdm-edge operators", description="who may acknowledge alarms on the dashboard"
    )
    p.add_argument("--data-dir", default=None, help="the appliance's data directory")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="add an operator or change their PIN (read twice, no echo)")
    add.add_argument("name")
    rm = sub.add_parser("remove", help="remove an operator")
    rm.add_argument("name")
    sub.add_parser("list", help="list the operators' names")
    args = p.parse_args(list(argv))
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
        else:
            for name in list_operators(data_dir):
                print(name)
    except PdmError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    return 0
