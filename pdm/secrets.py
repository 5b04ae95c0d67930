"""Secrets come from the environment or from files, never from pipeline files.

Every secret ``NAME`` (``PDM_INFLUX_TOKEN``, ``PDM_INFLUX_PASSWORD``,
``PDM_WEBHOOK_SECRET``, ``PDM_API_TOKEN``) may be given as the variable itself
or as ``NAME_FILE``, the path of a file holding it (Docker and systemd
credentials); a file's trailing newline is dropped (``echo key > file``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pdm.errors import ConfigError

__all__ = ["secret_bytes"]


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
        data = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(
            f"{file_var}={path}: cannot read the {what}: {exc.strerror or exc}"
        ) from exc
    if not data:
        raise ConfigError(f"{file_var}={path}: the {what} file is empty")
    return data
