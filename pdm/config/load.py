"""Reading TOML files into validated models: a pipeline file (read, migrated, its bearing
table read, validated) and other settings files; every problem is one ConfigError line.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ValidationError,
)

from pdm.config.locate import MAX_TOML_DEPTH, locate_keys, too_deep_line
from pdm.config.messages import format_errors
from pdm.config.migrate import migrate_data
from pdm.config.pipeline import Pipeline
from pdm.dsp.bearings import (
    BearingGeometry,
    BearingTableError,
    parse_bearing_table,
)
from pdm.errors import ConfigError

_M = TypeVar("_M", bound=BaseModel)


#: A pipeline file is a few kB; anything over this is refused before parsing.
MAX_PIPELINE_BYTES = 1 << 20


_TOML_POS = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _read_toml(path: str | os.PathLike[str], what: str) -> tuple[str, dict[str, Any], str]:
    """``(name, data, text)`` of a TOML file of at most :data:`MAX_PIPELINE_BYTES`; one-line
    ConfigError (``FILE[:LINE[:COL]]: …``) when it cannot be read or parsed."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:  # a FIFO or /dev/stdin works; /dev/zero stops at the cap
            raw = f.read(MAX_PIPELINE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {what}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_PIPELINE_BYTES:
        raise ConfigError(
            f"{name}: larger than {MAX_PIPELINE_BYTES:,} bytes; a {what} is a few kB "
            f"(is this the right file?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{name}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from exc
    try:
        data = tomllib.loads(text)
    except RecursionError as exc:
        line = too_deep_line(text)
        raise ConfigError(
            f"{name}:{line}: TOML nested too deeply (arrays or inline tables more than "
            f"{MAX_TOML_DEPTH} levels deep); a {what} nests a few"
        ) from exc
    except ValueError as exc:
        if not isinstance(exc, tomllib.TOMLDecodeError):  # an integer of > 4300 digits
            first = str(exc).split(";")[0].split(":")[0]
            digits = re.search(r"[0-9A-Fa-f_]{4300,}", text)
            at = f":{text.count(chr(10), 0, digits.start()) + 1}" if digits else ""
            raise ConfigError(f"{name}{at}: TOML value not accepted: {first}") from exc
        msg = " ".join(str(exc).split())
        m = _TOML_POS.match(msg)
        if m is not None:
            where = f"{name}:{m['line']}:{m['col']}"
            msg = m["msg"]
        else:
            where, msg = name, msg.replace("(at end of document)", "at end of file")
        raise ConfigError(f"{where}: TOML syntax error: {msg[:1].lower()}{msg[1:]}") from exc
    return name, data, text


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read, migrate and validate a pipeline TOML file.

    Parameters
    ----------
    path : str or path-like
        The pipeline file.

    Returns
    -------
    Pipeline
        The validated pipeline; ``source_path`` is ``path``.

    Raises
    ------
    ConfigError
        For any problem (missing or unreadable file, TOML syntax, a failed
        check), with one line ``FILE[:LINE[:COL]]: key.path: reason (got VALUE)``.
    """
    name, data, text = _read_toml(path, "pipeline file")
    data = migrate_data(data, name, text)
    table = read_bearing_table(data.get("bearing_table"), name, text)
    try:
        return Pipeline.from_file_data(data, path=name, text=text, bearing_table=table)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, root=Pipeline, path=name, text=text)) from exc


def load_settings(path: str | os.PathLike[str], model: type[_M], *, what: str) -> _M:
    """Read and validate a TOML settings file other than a pipeline (a service config) into
    ``model``; every problem is one ConfigError line ``FILE[:LINE]: key.path: reason``."""
    name, data, text = _read_toml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, root=Pipeline, path=name, text=text)) from exc


#: A bearing table larger than this is refused unread (a catalogue of thousands fits).
BEARING_TABLE_MAX_BYTES = 1 << 20


def read_bearing_table(value: object, name: str, text: str) -> dict[str, BearingGeometry] | None:
    """The bearings of ``bearing_table`` (a path relative to the pipeline file ``name``), or
    None without one. ConfigError with the key's line, the table and its line on any problem."""
    if not isinstance(value, str) or not value.strip():
        return None  # absent, or not a string: the schema reports the latter with its line
    line = locate_keys(text).get(("bearing_table",))
    where = f"{name}:{line}" if line else name
    path = Path(value)
    if not path.is_absolute():
        path = Path(name).parent / path
    try:
        # A FIFO blocked `check` for ever (no writer); a device or a directory is no table.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{where}: bearing_table: {path} is not a regular file")
        with open(path, "rb") as f:
            raw = f.read(BEARING_TABLE_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{where}: bearing_table: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    if len(raw) > BEARING_TABLE_MAX_BYTES:
        raise ConfigError(
            f"{where}: bearing_table: {path} is larger than {BEARING_TABLE_MAX_BYTES} bytes"
        )
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a BOM, which hid the header's
        # first column ("header lacks column(s) designation").
        return parse_bearing_table(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: bearing_table: {path} is not UTF-8 text") from None
    except BearingTableError as exc:
        at = f"{path}:{exc.line}" if exc.line else str(path)
        raise ConfigError(f"{where}: bearing_table: {at}: {exc.reason}") from None
