"""Secrets come from the environment or from files, never from pipeline files.

Every secret ``NAME`` (``PDM_INFLUX_TOKEN``, ``PDM_INFLUX_PASSWORD``,
``PDM_WEBHOOK_SECRET``, ``PDM_API_TOKEN``) may be given as the variable itself
or as ``NAME_FILE``, the path of a file holding it (Docker and systemd
credentials); a file's trailing newline is dropped (``echo key > file``).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote_plus

from pdm.core.files import read_at_most
from pdm.errors import ConfigError

__all__ = ["MAX_SECRET_BYTES", "api_token", "redact_url", "secret_bytes"]

# Query parameters whose values are secrets in the URLs people paste (InfluxDB's token,
# webhook signatures, API keys).
_SECRET_NAME = re.compile(
    r"(?i)token|passw(?:or)?d|pwd|pass|secret|key|auth|sig|signature|credential|^code$"
)
_PARAM = re.compile(r"(^|[?&;])([^=&;#]*=)([^&;#]*)")


def _hide_secret_param(m: re.Match[str]) -> str:
    # The name as the URL parser reads it: "tok%65n=" is "token=" to it, so here too.
    secret = _SECRET_NAME.search(unquote_plus(m[2][:-1]).strip())
    return m[1] + m[2] + "***" if secret else m[0]


def redact_url(url: str) -> str:
    """``url`` fit for a message: a password in it (``user:SECRET@``) and the values of
    query parameters that carry secrets (``token=``, ``password=``, ``api_key=``, ``sig=``
    …) replaced by ``***``.

    >>> redact_url("influx2://db:8086?org=o&bucket=b&token=s3cr3t")
    'influx2://db:8086?org=o&bucket=b&token=***'
    >>> redact_url("https://bob:p@ss@example.com/hook?x=1")
    'https://bob:***@example.com/hook?x=1'
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    # The last '@' before any query: a password may hold '/' or '@' unencoded (people paste
    # them so); hiding too much of an odd path is the safer mistake.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***@{rest[at + 1 :]}"
    return head + sep + _PARAM.sub(_hide_secret_param, rest)


#: A secret file holds a token, a key or a password: a few hundred bytes (a PEM key ~4 kB).
MAX_SECRET_BYTES = 1 << 16


def secret_bytes(env: str, what: str) -> bytes | None:
    """The secret ``env`` (or the file named by ``{env}_FILE``); None when neither is set.

    Raises :class:`ConfigError` (one line naming ``what``) when both are set, or the file is
    unreadable or empty.
    """
    file_var = f"{env}_FILE"
    value = os.environ.get(env, "")
    path = os.environ.get(file_var, "")
    if value and path:
        raise ConfigError(f"{what}: set either {env} or {file_var}, not both")
    if value:
        return value.encode()
    if not path:
        return None
    try:
        # At most MAX_SECRET_BYTES: /dev/zero named by mistake was read until memory ran out.
        # (A FIFO stays allowed: `PDM_API_TOKEN_FILE=<(pass show …)` is a way to hand one over.)
        data = read_at_most(path, MAX_SECRET_BYTES)
    except OSError as exc:
        raise ConfigError(
            f"{file_var}={path}: cannot read the {what}: {exc.strerror or exc}"
        ) from exc
    if len(data) > MAX_SECRET_BYTES:  # the content is never shown: it may be the secret
        raise ConfigError(
            f"{file_var}={path}: the {what} file is larger than {MAX_SECRET_BYTES:,} bytes"
        )
    data = data.rstrip(b"\r\n")
    if not data:
        raise ConfigError(f"{file_var}={path}: the {what} file is empty")
    return data


def api_token(env: str = "PDM_API_TOKEN") -> str | None:
    """The control API's bearer token: the variable ``env``, or the file named by ``{env}_FILE``
    (its trailing newline dropped); None when neither is set. Here, below the service and
    the dashboard, because both read it (the service to ask for it, the dashboard to send it).

    Raises :class:`ConfigError` when both are set, or the file is unreadable, not UTF-8 or empty.
    """
    data = secret_bytes(env, "API token")
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{env}: the API token is not UTF-8 text") from exc
