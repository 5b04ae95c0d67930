"""The machine and how it is sampled: speed, machine, acquisition, sensors, channels,
bearings, envelope and bands (the tables of a pipeline file below ``[model]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pdm.config.fields import (
    BAND_NAME_PATTERN,
    BEARING_TABLE_KEYS,
    ID_PATTERN,
    fmt_num,
    invalid,
)
from pdm.core.text import HIDDEN_CHARS
from pdm.dsp.bearings import (
    BearingGeometry,
    lookup_bearing,
)

_UNIT_ALIASES = {"m/s^2": "m/s2", "m/s²": "m/s2"}


class Speed(BaseModel):
    """Shaft speed: either fixed, or nominal with a search range.

    Give ``rpm`` when the machine runs at one known speed. Give ``nominal_rpm``
    when the speed varies a little (induction motors slip with load): the
    feature extractor then finds the running speed in the spectrum between
    ``min_rpm`` and ``max_rpm``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=200_000,
        description="Fixed shaft speed, r/min (revolutions per minute).",
    )
    nominal_rpm: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=200_000,
        description="Nominal shaft speed, r/min; the actual speed is searched in the spectrum.",
    )
    min_rpm: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=200_000,
        description="Lower end of the speed search range, r/min (default 0.9 × nominal_rpm).",
    )
    max_rpm: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=200_000,
        description="Upper end of the speed search range, r/min (default 1.1 × nominal_rpm).",
    )

    @model_validator(mode="after")
    def _one_mode(self) -> Speed:
        if self.rpm is None and self.nominal_rpm is None:
            raise invalid(
                "give rpm (fixed speed, r/min) or nominal_rpm (speed searched in the spectrum)"
            )
        if self.rpm is not None:
            if self.nominal_rpm is not None:
                raise invalid(
                    "cannot be combined with rpm: give a fixed rpm, or a nominal_rpm "
                    "(with optional min_rpm/max_rpm), not both",
                    "nominal_rpm",
                    got=self.nominal_rpm,
                )
            for key in ("min_rpm", "max_rpm"):
                if getattr(self, key) is not None:
                    raise invalid(
                        "only applies with nominal_rpm (a fixed rpm is not searched)",
                        key,
                        got=getattr(self, key),
                    )
            return self
        lo, hi = self.search_rpm or (0.0, 0.0)
        nominal = self.nominal
        if not lo < nominal:
            raise invalid(f"must be below nominal_rpm={fmt_num(nominal)}", "min_rpm", got=lo)
        if not nominal < hi:
            raise invalid(f"must be above nominal_rpm={fmt_num(nominal)}", "max_rpm", got=hi)
        return self

    @property
    def fixed_rpm(self) -> float | None:
        """The fixed speed in r/min, or None when the speed is searched."""
        return self.rpm

    @property
    def search_rpm(self) -> tuple[float, float] | None:
        """``(min_rpm, max_rpm)`` search range in r/min, or None for a fixed speed."""
        if self.nominal_rpm is None:
            return None
        lo = self.min_rpm if self.min_rpm is not None else 0.9 * self.nominal_rpm
        hi = self.max_rpm if self.max_rpm is not None else 1.1 * self.nominal_rpm
        return (lo, hi)

    @property
    def nominal(self) -> float:
        """The fixed speed, or the nominal one, in r/min."""
        value = self.rpm if self.rpm is not None else self.nominal_rpm
        if value is None:  # only reachable through model_construct(), which skips checks
            raise ValueError("Speed has neither rpm nor nominal_rpm")
        return value


def _iso_group(value: object) -> object:
    # Literal[1, 2] alone accepts True and 2.0; a TOML user who wrote those made a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("pdm_config", "{reason}", {"reason": "must be 1 or 2"})
    return value


def _plain_text(value: str) -> str:
    # Names and locations are shown on the dashboard, in `check`'s and `diagnose`'s output
    # and in one-line logs: an escape sequence or a direction override would rewrite them.
    bad = HIDDEN_CHARS.search(value)
    if bad:
        reason = f"holds U+{ord(bad.group()):04X}, a control or invisible formatting character"
        raise PydanticCustomError("pdm_config", "{reason}", {"reason": reason})
    return value


PlainText = Annotated[StrictStr, AfterValidator(_plain_text)]


class Machine(BaseModel):
    """The monitored machine, as ISO 10816-3 classifies it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(
        pattern=ID_PATTERN,
        description="Machine identifier (no unit); used in history, alarms and file names.",
    )
    name: PlainText = Field(
        default="", max_length=200, description="Human-readable name (no unit); defaults to the id."
    )
    iso_group: Annotated[Literal[1, 2], BeforeValidator(_iso_group)] = Field(
        default=2,
        description="ISO 10816-3 machine group (no unit): 1 = 300 kW–50 MW or shaft "
        "height >= 315 mm, 2 = 15–300 kW or 160–315 mm.",
    )
    foundation: Literal["rigid", "flexible"] = Field(
        default="rigid",
        description="ISO 10816-3 foundation class (no unit): 'rigid' or 'flexible'.",
    )
    speed: Speed | None = Field(
        default=None,
        description="Shaft speed, r/min. Omitted: speed unknown, so no order or "
        "bearing-defect features.",
    )

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("name") and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data


class Acquisition(BaseModel):
    """How the signal is sampled and cut into analysis windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate_hz: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        description="Sample rate, Hz. Omitted: taken from the recording or stream.",
    )
    window_samples: StrictInt = Field(
        default=16384, ge=256, le=2**22, description="Analysis window length, samples."
    )
    overlap: StrictFloat = Field(
        default=0.5,
        ge=0,
        le=0.95,
        description="Overlap of consecutive windows, fraction of a window.",
    )
    on_bad_data: Literal["error", "invalidate"] = Field(
        default="error",
        description="What a bad sample does (no unit): 'error' stops with a one-line "
        "message, 'invalidate' marks the windows it touches invalid and counts them.",
    )
    max_gap_s: StrictFloat = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="A time gap larger than this, s, resets the window; 0 means "
        "'more than 1.5 sample periods'.",
    )
    max_clock_ahead_s: StrictFloat = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="A live input (stream, MQTT) refuses a frame whose first sample is more "
        "than this far ahead of the appliance's clock, s.",
    )
    max_clock_behind_s: StrictFloat = Field(
        default=3600.0,
        gt=0,
        le=31 * 86_400,
        description="A live input refuses a frame whose first sample is more than this far "
        "behind the appliance's clock, s.",
    )

    @property
    def hop_samples(self) -> int:
        """Samples between the starts of consecutive windows (at least 1)."""
        return max(1, self.window_samples - round(self.window_samples * self.overlap))

    def gap_threshold_s(self, fs: float) -> float:
        """The time gap, s, above which the windower starts over, at sample rate ``fs`` Hz."""
        return self.max_gap_s if self.max_gap_s > 0 else 1.5 / fs


class Channel(BaseModel):
    """One measured signal: a CSV column or stream channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: PlainText = Field(
        min_length=1,
        max_length=128,
        description="CSV column / stream channel name (no unit); unique across all sensors.",
    )
    unit: Literal["g", "m/s2"] = Field(
        default="g", description="Unit of the samples: 'g' or 'm/s2' (aliases 'm/s^2', 'm/s²')."
    )
    full_scale: StrictFloat | None = Field(
        default=None,
        gt=0,
        description="Sensor full scale, in the channel's unit; samples at it count as clipped.",
    )
    axis: Literal["radial", "horizontal", "vertical", "axial"] = Field(
        default="radial", description="Measurement direction (no unit)."
    )

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_alias(cls, value: object) -> object:
        return _UNIT_ALIASES.get(value, value) if isinstance(value, str) else value


class BearingSpec(BaseModel):
    """A bearing given by its geometry rather than by a catalogue designation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rolling_elements: StrictInt = Field(
        ge=1, le=200, description="Number of balls or rollers (count)."
    )
    ball_diameter_mm: StrictFloat = Field(
        gt=0, le=2000, description="Rolling-element diameter d, mm."
    )
    pitch_diameter_mm: StrictFloat = Field(gt=0, le=10_000, description="Pitch diameter D, mm.")
    contact_angle_deg: StrictFloat = Field(
        default=0.0,
        ge=0,
        lt=90,
        description="Contact angle φ, degrees (0 for deep-groove ball bearings).",
    )

    @model_validator(mode="after")
    def _ball_fits(self) -> BearingSpec:
        if not self.ball_diameter_mm < self.pitch_diameter_mm:
            raise invalid(
                f"must be smaller than pitch_diameter_mm={fmt_num(self.pitch_diameter_mm)}",
                "ball_diameter_mm",
                got=self.ball_diameter_mm,
            )
        return self

    def geometry(self) -> BearingGeometry:
        """This geometry as the DSP core's :class:`~pdm.dsp.bearings.BearingGeometry`."""
        return BearingGeometry(
            self.rolling_elements,
            self.ball_diameter_mm,
            self.pitch_diameter_mm,
            self.contact_angle_deg,
        )


def _context_table(info: ValidationInfo) -> dict[str, BearingGeometry] | None:
    """The pipeline's own bearing table, handed to validation in its context."""
    table = info.context.get("bearing_table") if info.context else None
    return table if isinstance(table, dict) else None


def _known_designation(value: str, info: ValidationInfo) -> str:
    try:
        lookup_bearing(value, _context_table(info))
    except KeyError as exc:
        reason = str(exc.args[0])
        raise PydanticCustomError("pdm_config", "{reason}", {"reason": reason}) from None
    return value


def _strip(value: str) -> str:
    return value.strip()


def _bearing_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "designation"
    if isinstance(value, Mapping | BearingSpec):
        return "geometry"
    return None


# The tags name the union member in pydantic's error locations; the message
# formatter drops them so users see ``sensors[0].bearing.ball_diameter_mm``.
BEARING_TAGS = ("designation", "geometry")

BearingField = Annotated[
    Annotated[
        StrictStr,
        BeforeValidator(_strip),
        AfterValidator(_plain_text),
        AfterValidator(_known_designation),
        Tag("designation"),
    ]
    | Annotated[BearingSpec, Tag("geometry")],
    # _strip would crash on non-str input, but the discriminator only routes
    # strings to that branch.
    Discriminator(
        _bearing_kind,
        custom_error_type="bearing_type",
        custom_error_message="must be a designation such as '6205' or an inline table with "
        "rolling_elements, ball_diameter_mm, pitch_diameter_mm, contact_angle_deg",
    ),
]

BEARING_ADAPTER: TypeAdapter[Any] = TypeAdapter(BearingField)


class Sensor(BaseModel):
    """One sensor (usually a bearing housing) with one or more channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(
        pattern=ID_PATTERN, description="Sensor identifier (no unit); unique across sensors."
    )
    location: PlainText | None = Field(
        default=None, max_length=200, description="Where the sensor sits, free text (no unit)."
    )
    bearing: BearingField | None = Field(
        default=None,
        description="Bearing under the sensor: a designation from the pipeline's bearing_table "
        "or the built-in catalogue (e.g. '6205', '6309-2RS'; suffixes ignored) or an inline "
        "table " + BEARING_TABLE_KEYS + " in mm and degrees.",
    )
    channels: tuple[Channel, ...] = Field(
        min_length=1, max_length=64, description="The sensor's channels (axes)."
    )

    _geometry: BearingGeometry | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve_bearing(self, info: ValidationInfo) -> Sensor:
        # A designation is resolved once, against the pipeline's own table when it has one.
        if isinstance(self.bearing, str):
            self._geometry = lookup_bearing(self.bearing, _context_table(info))
        elif self.bearing is not None:
            self._geometry = self.bearing.geometry()
        return self

    @property
    def bearing_geometry(self) -> BearingGeometry | None:
        """The bearing's geometry (designations resolved), or None without a bearing."""
        return self._geometry


def _band_edges(value: object) -> object:
    """Normalise ``band_hz``: "auto" or two increasing positive numbers, Hz."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        low, high = float(value[0]), float(value[1])
        if not (0 < low < high and math.isfinite(high)):
            raise PydanticCustomError(
                "pdm_config", "{reason}", {"reason": "needs 0 < low < high, in Hz"}
            )
        return (low, high)
    raise PydanticCustomError(
        "pdm_config", "{reason}", {"reason": "must be 'auto' or [low_hz, high_hz]"}
    )


class Envelope(BaseModel):
    """Envelope (demodulation) analysis for bearing defects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    band_hz: Annotated[Literal["auto"] | tuple[float, float], BeforeValidator(_band_edges)] = Field(
        default="auto",
        description="Demodulation band, Hz: 'auto' (where the defect lines stand out most "
        "above the floor, pipelines/README.md) "
        "or [low, high] with 0 < low < high < Nyquist.",
    )
    slip_tolerance: StrictFloat = Field(
        default=0.03,
        gt=0,
        le=0.2,
        description="Search ± this fraction around each computed defect frequency "
        "(bearings slip 1–2 %).",
    )

    @property
    def band(self) -> tuple[float, float] | None:
        """The fixed band ``(low, high)`` in Hz, or None for 'auto'."""
        return self.band_hz if isinstance(self.band_hz, tuple) else None


class Band(BaseModel):
    """An extra spectral band whose RMS is reported as a feature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr = Field(
        pattern=BAND_NAME_PATTERN,
        description="Band name (no unit); part of the feature name, unique across bands.",
    )
    low_hz: StrictFloat = Field(ge=0, description="Lower band edge, Hz.")
    high_hz: StrictFloat = Field(gt=0, description="Upper band edge, Hz (below Nyquist).")

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if not self.low_hz < self.high_hz:
            raise invalid(
                f"must be above low_hz={fmt_num(self.low_hz)}", "high_hz", got=self.high_hz
            )
        return self
