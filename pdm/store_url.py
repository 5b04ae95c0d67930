"""Store URLs (``--store`` and ``[history] store``) parsed into values; no I/O but reading a secret.

Below the configuration, so a pipeline file's ``store`` is checked where it is read;
:func:`pdm.history.open_store` turns a :class:`StoreURL` into a store. The forms::

    sqlite:///relative/path.db            relative to the pipeline file (or the cwd)
    sqlite:////absolute/path.db
    influx1://[USER@]HOST:PORT/DATABASE[?rp=RP]       InfluxDB 1.x HTTP API (/write, /query)
    influx2://HOST:PORT?org=ORG&bucket=BUCKET[&db=DB&rp=RP]   v2 write API, InfluxQL reads
    influx1s://…, influx2s://…            the same over HTTPS (certificates verified)

Secrets never go in a URL or a pipeline file: the InfluxDB 1.x password comes
from ``PDM_INFLUX_PASSWORD`` (or the file named by ``PDM_INFLUX_PASSWORD_FILE``),
the 2.x token from ``PDM_INFLUX_TOKEN`` (or ``PDM_INFLUX_TOKEN_FILE``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pdm.errors import ConfigError
from pdm.secrets import redact_url, secret_bytes

__all__ = ["Scheme", "StoreURL", "parse_store_url"]

Scheme = Literal["sqlite", "influx1", "influx2"]
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``secret`` (password or token) never appears in ``str()``."""

    scheme: Scheme
    text: str  # the URL as given (it never holds a secret)
    path: Path | None = None  # sqlite
    tls: bool = False
    host: str = ""
    port: int = 0
    database: str = ""  # influx1: database; influx2: the DBRP database name (default: bucket)
    rp: str = ""  # retention policy ('' = the database's default)
    user: str = ""
    org: str = ""
    bucket: str = ""
    secret: str = field(default="", repr=False)
    timeout_s: float = 10.0

    def __str__(self) -> str:
        return self.text

    @property
    def http_base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def _secret(var: str, where: str) -> str:
    """A secret from ``VAR`` or the file named by ``VAR_FILE`` ('' when neither is set)."""
    data = secret_bytes(var, f"{where}: secret")
    return "" if data is None else data.decode()


def parse_store_url(
    text: str,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    where: str = "--store",
    secrets: bool = True,
) -> StoreURL:
    """Parse a store URL; relative SQLite paths resolve against ``base_dir`` (default: cwd).

    With ``secrets=False`` (checking a file) the password or token is neither read nor
    required. Raises :class:`ConfigError` naming ``where`` and what is wrong.
    """
    text = text.strip()
    shown = redact_url(text)  # every message shows this: never a password or token
    parts = urlsplit(text)
    if parts.password is not None:
        raise ConfigError(
            f"{where}: {shown!r}: no password in the URL; set PDM_INFLUX_PASSWORD "
            "(or PDM_INFLUX_PASSWORD_FILE) instead"
        )
    scheme = parts.scheme.lower()
    known = "sqlite:///PATH, influx1://[USER@]HOST:PORT/DATABASE, influx2://HOST:PORT?org=ORG&bucket=BUCKET"
    if scheme == "sqlite":
        if parts.netloc or not text.lower().startswith("sqlite:///") or len(parts.path) < 2:
            raise ConfigError(
                f"{where}: {shown!r}: expected sqlite:///PATH (or sqlite:////ABS/PATH)"
            )
        raw = unquote(parts.path[1:])  # 'sqlite:///a.db' -> 'a.db'; 'sqlite:////a.db' -> '/a.db'
        path = Path(raw)
        if not path.is_absolute():
            path = Path(base_dir or Path.cwd()) / path
        return StoreURL("sqlite", text, path=path)
    if scheme not in ("influx1", "influx1s", "influx2", "influx2s"):
        raise ConfigError(f"{where}: {shown!r}: unknown store; use one of {known}")
    tls = scheme.endswith("s")
    kind: Scheme = "influx1" if scheme.startswith("influx1") else "influx2"
    try:
        port = parts.port
    except ValueError as exc:
        # (not the exception's text: it quotes the port, which may be part of a password)
        raise ConfigError(f"{where}: {shown!r}: the port is not a number 0-65535") from exc
    host = parts.hostname or ""
    if not host or port is None:
        raise ConfigError(
            f"{where}: {shown!r}: HOST:PORT is required, e.g. {kind}://127.0.0.1:8086"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = {"rp", "timeout"} if kind == "influx1" else {"org", "bucket", "db", "rp", "timeout"}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: {shown!r}: unknown parameter {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
    timeout = 10.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 300:
            raise ConfigError(f"{where}: {shown!r}: timeout must be seconds in (0, 300]")
    common: dict[str, Any] = {"tls": tls, "host": host, "port": port, "timeout_s": timeout}
    if kind == "influx1":
        db = unquote(parts.path.lstrip("/"))
        if not db or not _NAME.match(db):
            raise ConfigError(
                f"{where}: {shown!r}: the database name is missing or invalid (/DATABASE)"
            )
        user = unquote(parts.username or "")
        secret = _secret("PDM_INFLUX_PASSWORD", where) if user and secrets else ""
        if user and secrets and not secret:
            raise ConfigError(
                f"{where}: {shown!r}: user {user!r} needs a password in PDM_INFLUX_PASSWORD "
                "(or a file named by PDM_INFLUX_PASSWORD_FILE)"
            )
        return StoreURL(
            "influx1", text, database=db, rp=query.get("rp", ""), user=user, secret=secret, **common
        )
    if parts.path not in ("", "/") or parts.username:
        raise ConfigError(f"{where}: {shown!r}: influx2 takes no path or user; use ?org=…&bucket=…")
    for key in ("org", "bucket"):
        if not query.get(key):
            raise ConfigError(f"{where}: {shown!r}: ?{key}= is required")
    secret = _secret("PDM_INFLUX_TOKEN", where) if secrets else ""
    if secrets and not secret:
        raise ConfigError(
            f"{where}: {shown!r}: no token; set PDM_INFLUX_TOKEN (or PDM_INFLUX_TOKEN_FILE)"
        )
    return StoreURL(
        "influx2",
        text,
        org=query["org"],
        bucket=query["bucket"],
        database=query.get("db") or query["bucket"],
        rp=query.get("rp", ""),
        secret=secret,
        **common,
    )
