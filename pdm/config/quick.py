"""A pipeline from command-line quick flags, for runs without a pipeline file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import (
    ValidationError,
)

from pdm.config.flags import flag_for, flag_number, flag_sensor, flag_speed, parse_numbers
from pdm.config.machine import (
    BEARING_ADAPTER,
    BearingSpec,
)
from pdm.config.messages import describe, format_errors, key_path
from pdm.config.migrate import SCHEMA_VERSION
from pdm.config.pipeline import Pipeline
from pdm.errors import ConfigError


def pipeline_from_flags(
    *,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
    window: int | None = None,
    overlap: float | None = None,
    rpm: float | None = None,
    nominal_rpm: float | None = None,
    rpm_range: str | None = None,
    bearing: str | None = None,
    bearing_geometry: str | None = None,
    iso_group: int | None = None,
    foundation: str | None = None,
    envelope_band: str | None = None,
    machine_id: str = "adhoc",
) -> Pipeline:
    """A pipeline from command-line "quick flags", for runs without a pipeline file.

    Parameters
    ----------
    fs : float, optional
        ``--fs``: sample rate, Hz (default: from the recording).
    columns : sequence of str, optional
        ``--columns``: columns to analyse, each one channel (unit g) of one
        sensor ``s1``. None: every numeric column of the recording
        (``columns_from_file`` is True; call :meth:`Pipeline.with_columns`).
    window : int, optional
        ``--window``: window length, samples.
    overlap : float, optional
        ``--overlap``: window overlap, fraction.
    rpm : float, optional
        ``--rpm``: fixed shaft speed, r/min.
    nominal_rpm : float, optional
        ``--nominal-rpm``: nominal shaft speed, r/min; the speed is searched in each window
        within ±5 % of it (:data:`NOMINAL_SEARCH`), or within ``rpm_range``.
    rpm_range : str, optional
        ``--rpm-range``: ``"LO,HI"`` r/min searched (with ``nominal_rpm`` inside it, or alone:
        the nominal speed is then the middle of the range).
    bearing : str, optional
        ``--bearing``: designation from the built-in catalogue, e.g. ``"6309-2RS"``.
    bearing_geometry : str, optional
        ``--bearing-geometry``: ``"N,d_mm,D_mm,angle_deg"`` (angle may be left out: 0).
    iso_group : int, optional
        ``--iso-group``: ISO 10816-3 group, 1 or 2.
    foundation : str, optional
        ``--foundation``: ``"rigid"`` or ``"flexible"``.
    envelope_band : str, optional
        ``--envelope-band``: ``"auto"`` or ``"LOW,HIGH"`` in Hz.
    machine_id : str
        ``--machine-id``: machine identifier.

    Raises
    ------
    ConfigError
        Naming the flag: ``--bearing-geometry: expected N,d_mm,D_mm,angle_deg (got '9,7.94')``.
    """
    machine: dict[str, Any] = {"id": machine_id}
    if iso_group is not None:
        machine["iso_group"] = iso_group
    if foundation is not None:
        machine["foundation"] = foundation
    speed = flag_speed(rpm, nominal_rpm, rpm_range)
    if speed is not None:
        machine["speed"] = speed
    acquisition: dict[str, Any] = {}
    if fs is not None:
        acquisition["sample_rate_hz"] = flag_number("--fs", fs)
    if window is not None:
        acquisition["window_samples"] = window
    if overlap is not None:
        acquisition["overlap"] = flag_number("--overlap", overlap)
    envelope: dict[str, Any] = {}
    if envelope_band is not None:
        if envelope_band.strip().lower() == "auto":
            envelope["band_hz"] = "auto"
        else:
            envelope["band_hz"] = parse_numbers(
                "--envelope-band", envelope_band, "auto or LOW,HIGH in Hz", (2,)
            )

    if bearing is not None and bearing_geometry is not None:
        raise ConfigError("--bearing, --bearing-geometry: give one of them, not both")
    bearing_flag = "--bearing-geometry" if bearing_geometry is not None else "--bearing"
    bearing_value: str | BearingSpec | None = None
    raw_bearing: object = None
    if bearing is not None:
        raw_bearing = bearing
    elif bearing_geometry is not None:
        expected = "N,d_mm,D_mm,angle_deg"
        nums = parse_numbers("--bearing-geometry", bearing_geometry, expected, (3, 4))
        if nums[0] != int(nums[0]):
            raise ConfigError(
                f"--bearing-geometry: N (rolling elements) must be a whole number "
                f"(got {bearing_geometry!r})"
            )
        raw_bearing = {
            "rolling_elements": int(nums[0]),
            "ball_diameter_mm": nums[1],
            "pitch_diameter_mm": nums[2],
            "contact_angle_deg": nums[3] if len(nums) == 4 else 0.0,
        }
    if raw_bearing is not None:
        shown = bearing if bearing is not None else bearing_geometry
        try:
            bearing_value = BEARING_ADAPTER.validate_python(raw_bearing)
        except ValidationError as exc:
            loc, reason, _ = describe(exc.errors()[0], Pipeline)
            if loc:
                reason = f"{key_path(loc)}: {reason}"
            raise ConfigError(f"{bearing_flag}: {reason} (got {shown!r})") from exc
        if speed is None:
            raise ConfigError(
                f"{bearing_flag}: needs --rpm or --nominal-rpm (bearing defect frequencies "
                f"depend on the shaft speed) (got {shown!r})"
            )

    if isinstance(columns, str):
        # A caller that passed the raw option text: "DE_g,FE_g".
        columns = [c.strip() for c in columns.split(",")]
    if columns is not None and not list(columns):
        raise ConfigError("--columns: needs at least one column name (got '')")
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "machine": machine,
        "acquisition": acquisition,
        "envelope": envelope,
        "sensors": [] if columns is None else [flag_sensor(list(columns), bearing_value)],
    }
    try:
        return Pipeline.from_flag_data(
            data,
            bearing_flag=bearing_flag,
            pending_bearing=bearing_value if columns is None else None,
            window_given=window is not None,
        )
    except ValidationError as exc:
        raise ConfigError(
            format_errors(exc, root=Pipeline, flag_for=lambda loc: flag_for(loc, bearing_flag))
        ) from exc
