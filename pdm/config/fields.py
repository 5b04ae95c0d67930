"""What every part of the pipeline schema shares: the key patterns (with their words for
users), the key-path type and the error a cross-field check raises at a key of its choosing.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic_core import PydanticCustomError

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
BAND_NAME_PATTERN = r"^[a-z0-9_]{1,32}$"

# Regexes are shown to users in words; "must match ^[A-Za-z...$" helps no one.
PATTERN_WORDS = {
    ID_PATTERN: "must be 1–64 characters from A–Z, a–z, 0–9, '_', '.', '-'",
    BAND_NAME_PATTERN: "must be 1–32 characters from a–z, 0–9, '_'",
}

BEARING_TABLE_KEYS = "{rolling_elements, ball_diameter_mm, pitch_diameter_mm, contact_angle_deg}"

Loc = tuple[str | int, ...]


def invalid(reason: str, *path: str | int, got: object = ...) -> PydanticCustomError:
    """A validation error whose key path and shown value we choose ourselves.

    Cross-field checks run in ``model_validator``s, where pydantic would report
    the error at the model's own location; ``path`` (relative to that model)
    lets the message name the exact key instead.
    """
    ctx: dict[str, Any] = {"reason": reason, "path": path}
    if got is not ...:
        ctx["got"] = got
    return PydanticCustomError("pdm_config", "{reason}", ctx)


def fmt_num(x: float) -> str:
    """A number as a user wrote it: ``1797`` rather than ``1797.0``."""
    return f"{x:g}" if math.isfinite(x) and abs(x) < 1e15 else repr(x)
