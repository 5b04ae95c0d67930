"""Pydantic's validation errors as ONE line that says where::

    pipelines/pump.toml:14: sensors[0].channels[0].unit: must be 'g' or 'm/s2' (got 'mm')

The key path in words, the value as the user wrote it, a suggestion for an unknown key.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from pdm.config.fields import (
    PATTERN_WORDS,
    Loc,
    fmt_num,
)
from pdm.config.locate import line_for, locate_keys
from pdm.config.machine import (
    BEARING_TAGS,
)

_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be an array",
    "list_type": "must be an array",
    "missing": "required key is missing",
}


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the table at ``loc`` below ``root`` (for key
    suggestions)."""
    model = root
    for part in loc:
        if isinstance(part, int) or part in BEARING_TAGS:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        sub = _first_model(field.annotation)
        if sub is None:
            return None
        model = sub
    return model


def _first_model(tp: object) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is not None:
        for arg in typing.get_args(tp):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


def _clean_loc(loc: Loc) -> Loc:
    out: list[str | int] = []
    for part in loc:
        if part in BEARING_TAGS and (not out or out[-1] == "bearing"):
            continue
        out.append(part)
    return tuple(out)


def key_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show(value: object) -> str:
    """A value as the user wrote it, short: ``'mm'``, ``1797``, ``true``, ``[1, 2]``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = fmt_num(value)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def describe(err: Mapping[str, Any], root: type[BaseModel]) -> tuple[Loc, str, str | None]:
    """One pydantic error as (key path, reason, shown value or None); ``root`` is the model
    whose keys an unknown key is compared with (at the error's table)."""
    etype = err["type"]
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"])
    value = err.get("input")
    got: str | None = None
    if etype == "pdm_config":
        loc = loc + tuple(ctx.get("path", ()))
        reason = str(ctx["reason"])
        if "got" in ctx:
            got = None if ctx["got"] is None else show(ctx["got"])  # None: show nothing
        elif not ctx.get("path") and not isinstance(value, Mapping) and value not in ((), []):
            got = show(value)
        return _clean_loc(loc), reason, got
    loc = _clean_loc(loc)
    if etype == "extra_forbidden":
        key = str(loc[-1])
        reason = f"unknown key {key!r}"
        model = _model_at(root, loc[:-1])
        if model is not None:
            close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
            if close:
                reason += f", did you mean {close[0]!r}?"
        return loc, reason, None
    if etype in _TYPE_WORDS:
        reason = _TYPE_WORDS[etype]
    elif etype == "literal_error":
        reason = f"must be {ctx['expected']}"
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(etype, "<=")
        bound = next(iter(ctx.values()))
        reason = f"must be {op} {show(bound)}"
    elif etype == "string_pattern_mismatch":
        reason = PATTERN_WORDS.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}")
    elif etype == "string_too_short":
        reason = "must not be empty"
    elif etype == "string_too_long":
        reason = f"must be at most {ctx['max_length']} characters"
    elif etype == "too_short":
        reason = f"needs at least {ctx['min_length']} item(s)"
    elif etype == "too_long":
        reason = f"allows at most {ctx['max_length']} items"
    else:
        reason = str(err.get("msg", etype)).removeprefix("Value error, ")
        reason = reason.replace("Input should be", "must be")
    if etype != "missing" and not isinstance(value, Mapping):
        got = show(value)
    return loc, reason, got


def format_errors(
    exc: ValidationError,
    *,
    root: type[BaseModel],
    path: str | None = None,
    text: str | None = None,
    label: str | None = None,
    flag_for: Callable[[Loc], str | None] | None = None,
) -> str:
    """All of ``exc`` as ONE line: the first error (by line) plus "(and N more)"."""
    lines = locate_keys(text) if text is not None else {}
    described = []
    for err in exc.errors():
        loc, reason, got = describe(err, root)
        described.append((line_for(lines, loc), loc, reason, got))
    # An unknown key comes first: it is usually a typo that also explains a
    # "missing" error. Otherwise users fix a file top to bottom; errors without
    # a line go last.
    described.sort(key=lambda d: (not d[2].startswith("unknown key"), d[0] is None, d[0] or 0))
    line, loc, reason, got = described[0]
    where = key_path(loc)
    flag = flag_for(loc) if flag_for is not None else None
    if flag is not None:
        head = flag
    elif path is not None:
        head = f"{path}:{line}" if line is not None else path
        head = f"{head}: {where}" if where else head
    else:
        head = f"{label}: {where}" if label and where else (label or where or "pipeline")
    message = f"{head}: {reason}"
    if got is not None:
        message += f" (got {got})"
    if len(described) > 1:
        message += f" (and {len(described) - 1} more)"
    return " ".join(message.split())
