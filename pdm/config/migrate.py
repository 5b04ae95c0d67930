"""The pipeline file's ``schema_version`` and the steps that bring an older file up to
:data:`SCHEMA_VERSION` before it is validated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pdm.config.locate import locate_keys
from pdm.config.messages import show
from pdm.errors import ConfigError

#: The schema version this code reads. Files with a lower version are migrated.
SCHEMA_VERSION = 1

#: Migration steps, keyed by the version they upgrade *from*: ``MIGRATIONS[1]``
#: would be ``migrate_1_to_2``, taking the parsed TOML dict of a version-1 file
#: and returning the equivalent version-2 dict (with ``schema_version`` set to 2).
#: Empty while only version 1 exists.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate_data(data: dict[str, Any], name: str, text: str) -> dict[str, Any]:
    """Check ``schema_version`` and bring ``data`` up to :data:`SCHEMA_VERSION`."""
    line = locate_keys(text).get(("schema_version",))
    head = f"{name}:{line}" if line is not None else name
    if "schema_version" not in data:
        raise ConfigError(
            f"{name}: schema_version: required key is missing "
            f"(put 'schema_version = {SCHEMA_VERSION}' at the top)"
        )
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{head}: schema_version: must be an integer (got {show(version)})")
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{head}: schema_version: schema_version {version} is newer than this "
            f"pdm-edge understands ({SCHEMA_VERSION})"
        )
    if version < 1:
        raise ConfigError(f"{head}: schema_version: must be >= 1 (got {version})")
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ConfigError(
                f"{head}: schema_version: no migration from version {version} to {version + 1}"
            )
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data
