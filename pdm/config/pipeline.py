"""The whole pipeline model (:class:`Pipeline`): one machine, its acquisition, sensors,
envelope, bands and settings, cross-checked, and its re-validated copies.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pdm.config.fields import (
    Loc,
    fmt_num,
    invalid,
)
from pdm.config.flags import flag_for, flag_sensor, flag_speed
from pdm.config.machine import (
    Acquisition,
    Band,
    BearingSpec,
    Channel,
    Envelope,
    Machine,
    Sensor,
)
from pdm.config.messages import format_errors
from pdm.config.migrate import SCHEMA_VERSION
from pdm.config.settings import (
    AlarmSettings,
    HistorySettings,
    ModelSettings,
)
from pdm.dsp.bearings import (
    BearingGeometry,
)
from pdm.dsp.features import feature_names
from pdm.errors import ConfigError


class Pipeline(BaseModel):
    """A whole pipeline: one machine, its acquisition, sensors, envelope and bands.

    Build one with :func:`load_pipeline` (from a TOML file) or
    :func:`pipeline_from_flags` (from command-line options). Instances are
    immutable; :meth:`with_sample_rate` and :meth:`with_columns` return
    re-validated copies.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: StrictInt = Field(
        description=f"Schema version of the file (no unit); this pdm-edge reads {SCHEMA_VERSION}."
    )
    machine: Machine = Field(description="The monitored machine.")
    bearing_table: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Your own bearings: a CSV file (path relative to this file) with the "
        "columns designation, rolling_elements, element_diameter_mm, pitch_diameter_mm, "
        "contact_angle_deg, or designation, pitch_diameter_mm and the maker's orders bpfo, "
        "bpfi, bsf, ftf; its designations are looked up before the built-in catalogue.",
    )
    acquisition: Acquisition = Field(default=Acquisition(), description="Sampling and windowing.")
    sensors: tuple[Sensor, ...] = Field(
        default=(),
        max_length=256,
        validate_default=True,
        description="Sensors and their channels; at least one in a pipeline file.",
    )
    envelope: Envelope = Field(
        default=Envelope(), description="Envelope analysis for bearing defects."
    )
    bands: tuple[Band, ...] = Field(
        default=(), max_length=64, description="Extra spectral bands for band RMS, Hz."
    )
    model: ModelSettings = Field(
        default=ModelSettings(), description="Anomaly model and teach-in settings."
    )
    history: HistorySettings = Field(
        default=HistorySettings(), description="History store, retention and spool."
    )
    alarms: AlarmSettings = Field(
        default=AlarmSettings(), description="Alarm states, debouncing, relay and webhooks."
    )

    _source_path: str | None = PrivateAttr(default=None)
    _source_text: str | None = PrivateAttr(default=None)
    # Set for pipelines built from quick flags: the bearing to give the sensor that
    # with_columns() creates, and which flag named it (for messages).
    _pending_bearing: str | BearingSpec | None = PrivateAttr(default=None)
    _bearing_flag: str | None = PrivateAttr(default=None)
    _from_flags: bool = PrivateAttr(default=False)
    # The bearings of bearing_table, read by load_pipeline (designation -> geometry).
    _bearing_table: dict[str, BearingGeometry] | None = PrivateAttr(default=None)
    # Set when the command line replaced the speed of a model's pipeline (score --model).
    _speed_from_flags: bool = PrivateAttr(default=False)
    # False for pipelines from quick flags without --window (processing may lengthen it).
    _window_given: bool = PrivateAttr(default=True)

    @field_validator("schema_version", mode="after")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise PydanticCustomError(
                "pdm_config",
                "{reason}",
                {
                    "reason": f"schema_version {value} is newer than this pdm-edge "
                    f"understands ({SCHEMA_VERSION})"
                },
            )
        if value < SCHEMA_VERSION:
            # load_pipeline migrates old files first; only direct construction gets here.
            raise PydanticCustomError(
                "pdm_config",
                "{reason}",
                {"reason": f"must be {SCHEMA_VERSION} (load older files with load_pipeline)"},
            )
        return value

    @field_validator("sensors", mode="after")
    @classmethod
    def _sensors_required(cls, value: tuple[Sensor, ...], info: ValidationInfo) -> Any:
        # Only files must name their sensors; quick flags may leave them to the recording.
        if not value and info.context and info.context.get("require_sensors"):
            raise PydanticCustomError(
                "pdm_config",
                "{reason}",
                {"reason": "at least one [[sensors]] table with channels is required"},
            )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Pipeline:
        per_sample = -(-self.acquisition.window_samples // self.acquisition.hop_samples)
        on, of = self.alarms.delays(self.acquisition)
        if on <= per_sample:
            raise invalid(
                f"must exceed {per_sample}, the windows one sample falls in at this window and "
                "overlap, or one short event (a knock on the sensor) could raise an alarm",
                "alarms",
                "on_windows",
                got=on,
            )
        if of < on:
            raise invalid(f"must be >= on_windows ({on})", "alarms", "of_windows", got=of)
        known = set(feature_names([b.name for b in self.bands]))
        for i, lim in enumerate(self.alarms.limits):
            if lim.feature not in known:
                close = difflib.get_close_matches(lim.feature, sorted(known), n=1)
                hint = f", did you mean {close[0]!r}?" if close else ""
                raise invalid(
                    f"not a feature of this pipeline{hint}",
                    "alarms",
                    "limits",
                    i,
                    "feature",
                    got=lim.feature,
                )
            if lim.channel is not None and self.sensors and lim.channel not in self.columns:
                raise invalid(
                    f"not a channel of this pipeline ({', '.join(self.columns)})",
                    "alarms",
                    "limits",
                    i,
                    "channel",
                    got=lim.channel,
                )
        seen_ids: dict[str, int] = {}
        seen_columns: dict[str, str] = {}
        for i, sensor in enumerate(self.sensors):
            if sensor.id in seen_ids:
                raise invalid(
                    f"duplicate sensor id (also sensors[{seen_ids[sensor.id]}])",
                    "sensors",
                    i,
                    "id",
                    got=sensor.id,
                )
            seen_ids[sensor.id] = i
            for j, ch in enumerate(sensor.channels):
                if ch.column in seen_columns:
                    raise invalid(
                        f"duplicate column (also {seen_columns[ch.column]}); "
                        "each column belongs to one channel",
                        "sensors",
                        i,
                        "channels",
                        j,
                        "column",
                        got=ch.column,
                    )
                seen_columns[ch.column] = f"sensors[{i}].channels[{j}]"
            if sensor.bearing is not None and self.machine.speed is None:
                raise invalid(
                    "bearing defect frequencies need the shaft speed: add [machine.speed] "
                    "with rpm or nominal_rpm",
                    "sensors",
                    i,
                    "bearing",
                )
        seen_bands: dict[str, int] = {}
        for i, band in enumerate(self.bands):
            if band.name in seen_bands:
                raise invalid(
                    f"duplicate band name (also bands[{seen_bands[band.name]}])",
                    "bands",
                    i,
                    "name",
                    got=band.name,
                )
            seen_bands[band.name] = i
        fs = self.acquisition.sample_rate_hz
        if fs is not None:
            nyquist = fs / 2
            why = f"must be below Nyquist {fmt_num(nyquist)} Hz (sample rate {fmt_num(fs)} Hz)"
            edges = self.envelope.band
            if edges is not None and not edges[1] < nyquist:
                raise invalid(f"high edge {why}", "envelope", "band_hz", got=list(edges))
            for i, b in enumerate(self.bands):
                if not b.high_hz < nyquist:
                    raise invalid(why, "bands", i, "high_hz", got=b.high_hz)
        return self

    # ----------------------------------------------------------------- lookups

    @property
    def model_dir(self) -> Path | None:
        """``model.path`` resolved against the pipeline file's folder, or None."""
        if self.model.path is None:
            return None
        path = Path(self.model.path)
        if not path.is_absolute() and self._source_path is not None:
            return Path(os.path.normpath(Path(self._source_path).parent / path))
        return path

    @property
    def model_public_keys(self) -> list[Path]:
        """``model.public_keys`` resolved against the pipeline file's folder."""
        return [self.base_dir / k for k in self.model.public_keys]

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file resolve against (the cwd for flags)."""
        if self._source_path is not None:
            return Path(self._source_path).parent
        return Path.cwd()

    @property
    def source_path(self) -> str | None:
        """The file this pipeline was loaded from, or None (built from flags)."""
        return self._source_path

    @property
    def columns_from_file(self) -> bool:
        """True when no sensors are named: use every numeric column of the recording.

        Only pipelines built from quick flags without ``columns`` are like this;
        call :meth:`with_columns` once the recording's columns are known.
        """
        return not self.sensors

    @property
    def columns(self) -> tuple[str, ...]:
        """All channel columns, in sensor order then channel order."""
        return tuple(ch.column for s in self.sensors for ch in s.channels)

    def channel(self, column: str) -> tuple[Sensor, Channel]:
        """The sensor and channel that read ``column``.

        Raises
        ------
        KeyError
            When no channel reads that column (the message lists the known ones).
        """
        for sensor in self.sensors:
            for ch in sensor.channels:
                if ch.column == column:
                    return sensor, ch
        raise KeyError(f"no channel reads column {column!r} (columns: {', '.join(self.columns)})")

    def bearing_for(self, column: str) -> BearingGeometry | None:
        """The geometry of the bearing under ``column``'s sensor, or None.

        Raises
        ------
        KeyError
            When no channel reads that column.
        """
        return self.channel(column)[0].bearing_geometry

    @property
    def table_bearings(self) -> int:
        """How many bearings ``bearing_table`` holds (0 without one)."""
        return len(self._bearing_table or {})

    # ----------------------------------------------------------------- origins

    @classmethod
    def from_file_data(
        cls,
        data: dict[str, Any],
        *,
        path: str,
        text: str,
        bearing_table: dict[str, BearingGeometry] | None,
    ) -> Pipeline:
        """Validate ``data``, parsed from the file ``path`` (its ``text``), remembering both
        for messages that name a line and ``bearing_table``'s bearings for copies
        (:func:`~pdm.config.load.load_pipeline`). Raises pydantic's ``ValidationError``."""
        pipeline = cls.model_validate(
            data, context={"require_sensors": True, "bearing_table": bearing_table}
        )
        pipeline._source_path = path
        pipeline._source_text = text
        pipeline._bearing_table = bearing_table
        return pipeline

    @classmethod
    def from_flag_data(
        cls,
        data: dict[str, Any],
        *,
        bearing_flag: str,
        pending_bearing: str | BearingSpec | None,
        window_given: bool = True,
    ) -> Pipeline:
        """Validate ``data`` built from quick flags, remembering which flag named the bearing
        (for messages) and the bearing that :meth:`with_columns` gives its sensor
        (:func:`~pdm.config.quick.pipeline_from_flags`); ``window_given`` False: no
        ``--window`` (:attr:`window_given`). Raises pydantic's ``ValidationError``."""
        pipeline = cls.model_validate(data)
        pipeline._from_flags = True
        pipeline._window_given = window_given
        pipeline._bearing_flag = bearing_flag
        pipeline._pending_bearing = pending_bearing
        return pipeline

    # ----------------------------------------------------------------- copies

    def _revalidated(self, data: dict[str, Any], label: str | None = None) -> Pipeline:
        try:
            new = Pipeline.model_validate(data, context={"bearing_table": self._bearing_table})
        except ValidationError as exc:
            if label is not None:
                raise ConfigError(format_errors(exc, root=Pipeline, label=label)) from exc
            if self._from_flags:
                raise ConfigError(
                    format_errors(exc, root=Pipeline, flag_for=self._flag_name)
                ) from exc
            raise ConfigError(
                format_errors(exc, root=Pipeline, path=self._source_path, text=self._source_text)
            ) from exc
        new._copy_private_from(self)
        return new

    def _copy_private_from(self, other: Pipeline) -> None:
        self._source_path = other._source_path
        self._source_text = other._source_text
        self._pending_bearing = other._pending_bearing
        self._bearing_flag = other._bearing_flag
        self._from_flags = other._from_flags
        self._bearing_table = other._bearing_table
        self._speed_from_flags = other._speed_from_flags
        self._window_given = other._window_given

    def _flag_name(self, loc: Loc) -> str | None:
        return flag_for(loc, self._bearing_flag or "--bearing")

    def with_sample_rate(self, fs: float) -> Pipeline:
        """A copy with ``acquisition.sample_rate_hz`` set to ``fs`` (Hz), re-validated.

        Use it when the sample rate comes from the recording (a rate given in
        the file is replaced: compare the two first if that matters). Bands that do not
        fit below the new Nyquist frequency raise :class:`ConfigError` naming
        the key in the pipeline file.
        """
        data = self.model_dump()
        data["acquisition"]["sample_rate_hz"] = float(fs)
        return self._revalidated(data)

    def with_speed(
        self,
        *,
        rpm: float | None = None,
        nominal_rpm: float | None = None,
        rpm_range: str | None = None,
    ) -> Pipeline:
        """A copy whose ``machine.speed`` comes from the speed flags (as
        :func:`pipeline_from_flags` reads them), everything else kept: ``score --model M
        --rpm R`` scores a recording at another speed with the model's own pipeline.

        ``speed_from_flags`` is then True: the orders and defect lines the model learnt are
        read at this speed instead of the one it was trained at.
        """
        speed = flag_speed(rpm, nominal_rpm, rpm_range)
        if speed is None:
            return self
        data = self.model_dump()
        data["machine"]["speed"] = speed
        new = self._revalidated(data, label="command line")
        new._speed_from_flags = True
        return new

    @property
    def speed_from_flags(self) -> bool:
        """True when the command line replaced the speed (:meth:`with_speed`)."""
        return self._speed_from_flags

    def with_window(self, n: int) -> Pipeline:
        """A copy with ``acquisition.window_samples`` set to ``n``, re-validated (``diagnose``
        chooses the window for the resolution the bearing's lines need)."""
        data = self.model_dump()
        data["acquisition"]["window_samples"] = int(n)
        new = self._revalidated(data)
        new._window_given = True
        return new

    @property
    def window_given(self) -> bool:
        """False for a pipeline from quick flags without ``--window``: its window is the
        default, which a command may lengthen for the resolution the diagnosis needs
        (:func:`pdm.processing.open_recording`)."""
        return self._window_given

    def with_columns(self, cols: Sequence[str]) -> Pipeline:
        """A copy whose one sensor ``s1`` reads ``cols`` (unit g), for flag-built pipelines.

        The bearing given with ``--bearing``/``--bearing-geometry`` goes to that
        sensor.

        Raises
        ------
        ValueError
            When this pipeline already names its sensors (``columns_from_file`` is False).
        ConfigError
            When ``cols`` is empty or has duplicates.
        """
        if not self.columns_from_file:
            raise ValueError("with_columns() is only for pipelines without sensors")
        data = self.model_dump()
        data["sensors"] = [flag_sensor(list(cols), self._pending_bearing)]
        return self._revalidated(data, label="columns of the recording")
