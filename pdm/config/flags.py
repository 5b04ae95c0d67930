"""The quick flags' pieces: which flag sets which key (to name it in messages), and the
speed, sensor and numbers that ``--rpm``, ``--columns`` and the like give.
"""

from __future__ import annotations

import math
from typing import Any

from pdm.config.fields import (
    Loc,
    fmt_num,
)
from pdm.config.machine import (
    BearingSpec,
)
from pdm.errors import ConfigError

# Key paths (array indices dropped) -> the command-line flag that sets them.
FLAG_PATHS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("acquisition", "sample_rate_hz"), "--fs"),
    (("acquisition", "window_samples"), "--window"),
    (("acquisition", "overlap"), "--overlap"),
    (("machine", "speed", "nominal_rpm"), "--nominal-rpm"),
    (("machine", "speed", "min_rpm"), "--rpm-range"),
    (("machine", "speed", "max_rpm"), "--rpm-range"),
    (("machine", "speed"), "--rpm"),
    (("machine", "iso_group"), "--iso-group"),
    (("machine", "foundation"), "--foundation"),
    (("machine", "id"), "--machine-id"),
    (("machine", "name"), "--machine-id"),
    (("sensors", "bearing"), "--bearing"),
    (("sensors",), "--columns"),
    (("envelope", "band_hz"), "--envelope-band"),
)


def flag_for(loc: Loc, bearing_flag: str) -> str | None:
    keys = tuple(p for p in loc if isinstance(p, str))
    for prefix, flag in FLAG_PATHS:
        if keys[: len(prefix)] == prefix:
            return bearing_flag if flag == "--bearing" else flag
    return None


def flag_sensor(columns: list[str], bearing: str | BearingSpec | None) -> dict[str, Any]:
    sensor: dict[str, Any] = {
        "id": "s1",
        "channels": [{"column": c, "unit": "g"} for c in columns],
    }
    if bearing is not None:
        sensor["bearing"] = bearing
    return sensor


def flag_number(flag: str, value: object) -> float:
    """A numeric flag as float; argparse may hand over int, float or str."""
    if isinstance(value, bool):
        raise ConfigError(f"{flag}: must be a number (got {value!r})")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: must be a number (got {value!r})") from None
    if not math.isfinite(number):
        raise ConfigError(f"{flag}: must be a finite number (got {value!r})")
    return number


def parse_numbers(flag: str, value: str, expected: str, counts: tuple[int, ...]) -> list[float]:
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in counts or not all(math.isfinite(x) for x in numbers):
        raise ConfigError(f"{flag}: expected {expected} (got {value!r})")
    return numbers


#: ``--nominal-rpm`` alone searches the speed within this fraction either side of it.
NOMINAL_SEARCH = 0.05


def flag_speed(rpm: object, nominal_rpm: object, rpm_range: str | None) -> dict[str, float] | None:
    """``machine.speed`` from --rpm, --nominal-rpm and --rpm-range (ConfigError naming the flag)."""
    if rpm is not None and (nominal_rpm is not None or rpm_range is not None):
        given = "--nominal-rpm" if nominal_rpm is not None else "--rpm-range"
        raise ConfigError(
            f"--rpm, {given}: give a fixed --rpm, or a --nominal-rpm/--rpm-range to search, not both"
        )
    if rpm is not None:
        return {"rpm": flag_number("--rpm", rpm)}
    nominal = None if nominal_rpm is None else flag_number("--nominal-rpm", nominal_rpm)
    if nominal is not None and nominal <= 0:
        raise ConfigError(f"--nominal-rpm: must be > 0 r/min (got {nominal_rpm!r})")
    if rpm_range is None:
        if nominal is None:
            return None
        return {
            "nominal_rpm": nominal,
            "min_rpm": nominal * (1 - NOMINAL_SEARCH),
            "max_rpm": nominal * (1 + NOMINAL_SEARCH),
        }
    lo, hi = parse_numbers("--rpm-range", str(rpm_range), "LO,HI in r/min", (2,))
    if not 0 < lo < hi:
        raise ConfigError(f"--rpm-range: needs 0 < LO < HI r/min (got {rpm_range!r})")
    if nominal is None:
        nominal = (lo + hi) / 2
    elif not lo < nominal < hi:
        raise ConfigError(
            f"--rpm-range: {rpm_range!r} does not hold --nominal-rpm {fmt_num(nominal)}"
        )
    return {"nominal_rpm": nominal, "min_rpm": lo, "max_rpm": hi}
