"""The pipeline: one TOML file per monitored machine, validated once, passed down.

A pipeline says what machine is watched (ISO 10816-3 group and foundation, shaft
speed), how it is sampled (sample rate, window, overlap, what to do with bad
data), which sensors and channels it has (units, full scale, bearing) and which
spectral bands to report. The schema is written out in ``pipelines/README.md``.

Every model is frozen and forbids unknown keys, so a typo is an error rather than
a silently ignored setting. Every problem a user can cause raises
:class:`pdm.errors.ConfigError` with ONE line that says where::

    pipelines/pump.toml:14: sensors[0].channels[0].unit: must be 'g' or 'm/s2' (got 'mm')

The line number comes from a small locator (:func:`_locate_keys`) that walks the
TOML text, because ``tomllib`` keeps no positions.

The file carries an integer ``schema_version``. A future change to the schema
adds one step ``migrate_N_to_N+1`` to :data:`MIGRATIONS`; the loader applies the
steps from the file's version up to :data:`SCHEMA_VERSION` before validating.

>>> p = pipeline_from_flags(fs=25600, columns=["x_g"], rpm=1797, bearing="6205")
>>> round(p.bearing_for("x_g").defect_frequencies_hz(p.machine.speed.nominal / 60)["bpfo"], 1)
107.4
"""

from __future__ import annotations

import bisect
import difflib
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pdm.dsp.bearings import (
    BearingGeometry,
    BearingTableError,
    lookup_bearing,
    parse_bearing_table,
)
from pdm.dsp.features import feature_names
from pdm.dsp.iso import iso_band_hz, zone_limits
from pdm.errors import ConfigError
from pdm.relay_url import RelayURL, parse_relay_url

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Acquisition",
    "AlarmSettings",
    "Band",
    "BearingSpec",
    "Channel",
    "Envelope",
    "FeatureLimitSettings",
    "HistorySettings",
    "Machine",
    "ModelSettings",
    "Pipeline",
    "Sensor",
    "Speed",
    "WebhookTargetSettings",
    "check_pipeline",
    "load_pipeline",
    "load_settings",
    "pipeline_from_flags",
]

_M = TypeVar("_M", bound=BaseModel)

#: The schema version this code reads. Files with a lower version are migrated.
SCHEMA_VERSION = 1

#: Migration steps, keyed by the version they upgrade *from*: ``MIGRATIONS[1]``
#: would be ``migrate_1_to_2``, taking the parsed TOML dict of a version-1 file
#: and returning the equivalent version-2 dict (with ``schema_version`` set to 2).
#: Empty while only version 1 exists.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
BAND_NAME_PATTERN = r"^[a-z0-9_]{1,32}$"

# Regexes are shown to users in words; "must match ^[A-Za-z...$" helps no one.
_PATTERN_WORDS = {
    ID_PATTERN: "must be 1–64 characters from A–Z, a–z, 0–9, '_', '.', '-'",
    BAND_NAME_PATTERN: "must be 1–32 characters from a–z, 0–9, '_'",
}

_UNIT_ALIASES = {"m/s^2": "m/s2", "m/s²": "m/s2"}

_BEARING_TABLE_KEYS = "{rolling_elements, ball_diameter_mm, pitch_diameter_mm, contact_angle_deg}"

Loc = tuple[str | int, ...]


def _invalid(reason: str, *path: str | int, got: object = ...) -> PydanticCustomError:
    """A validation error whose key path and shown value we choose ourselves.

    Cross-field checks run in ``model_validator``s, where pydantic would report
    the error at the model's own location; ``path`` (relative to that model)
    lets the message name the exact key instead.
    """
    ctx: dict[str, Any] = {"reason": reason, "path": path}
    if got is not ...:
        ctx["got"] = got
    return PydanticCustomError("pdm_config", "{reason}", ctx)


def _fmt_num(x: float) -> str:
    """A number as a user wrote it: ``1797`` rather than ``1797.0``."""
    return f"{x:g}" if math.isfinite(x) and abs(x) < 1e15 else repr(x)


# --------------------------------------------------------------------------- models


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
            raise _invalid(
                "give rpm (fixed speed, r/min) or nominal_rpm (speed searched in the spectrum)"
            )
        if self.rpm is not None:
            if self.nominal_rpm is not None:
                raise _invalid(
                    "cannot be combined with rpm: give a fixed rpm, or a nominal_rpm "
                    "(with optional min_rpm/max_rpm), not both",
                    "nominal_rpm",
                    got=self.nominal_rpm,
                )
            for key in ("min_rpm", "max_rpm"):
                if getattr(self, key) is not None:
                    raise _invalid(
                        "only applies with nominal_rpm (a fixed rpm is not searched)",
                        key,
                        got=getattr(self, key),
                    )
            return self
        lo, hi = self.search_rpm or (0.0, 0.0)
        nominal = self.nominal
        if not lo < nominal:
            raise _invalid(f"must be below nominal_rpm={_fmt_num(nominal)}", "min_rpm", got=lo)
        if not nominal < hi:
            raise _invalid(f"must be above nominal_rpm={_fmt_num(nominal)}", "max_rpm", got=hi)
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


class Machine(BaseModel):
    """The monitored machine, as ISO 10816-3 classifies it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(
        pattern=ID_PATTERN,
        description="Machine identifier (no unit); used in history, alarms and file names.",
    )
    name: StrictStr = Field(
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

    column: StrictStr = Field(
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
            raise _invalid(
                f"must be smaller than pitch_diameter_mm={_fmt_num(self.pitch_diameter_mm)}",
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
_BEARING_TAGS = ("designation", "geometry")

BearingField = Annotated[
    Annotated[
        StrictStr,
        BeforeValidator(_strip),
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

_BEARING_ADAPTER: TypeAdapter[Any] = TypeAdapter(BearingField)


class Sensor(BaseModel):
    """One sensor (usually a bearing housing) with one or more channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(
        pattern=ID_PATTERN, description="Sensor identifier (no unit); unique across sensors."
    )
    location: StrictStr | None = Field(
        default=None, max_length=200, description="Where the sensor sits, free text (no unit)."
    )
    bearing: BearingField | None = Field(
        default=None,
        description="Bearing under the sensor: a designation from the pipeline's bearing_table "
        "or the built-in catalogue (e.g. '6205', '6309-2RS'; suffixes ignored) or an inline "
        "table " + _BEARING_TABLE_KEYS + " in mm and degrees.",
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
            raise _invalid(
                f"must be above low_hz={_fmt_num(self.low_hz)}", "high_hz", got=self.high_hz
            )
        return self


class ModelSettings(BaseModel):
    """The anomaly model of the machine, and how to learn it (teach-in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: StrictStr | None = Field(
        default=None,
        description="Model directory (holding model.onnx and model.json), relative to the "
        "pipeline file or absolute; None: no model (features only).",
    )
    detector: Literal["mahalanobis", "gmm", "pca", "iforest"] = Field(
        default="gmm",
        description="Detector trained on healthy windows (see docs/models.md for the evaluation "
        "that chose the default).",
    )
    alerts_per_week: StrictFloat = Field(
        default=1.0,
        gt=0,
        le=10_000,
        description="False alerts per week the calibrated alert threshold aims at, 1/week, "
        "at this pipeline's window rate, before any alarm on-delay.",
    )
    holdout: StrictFloat = Field(
        default=0.3,
        ge=0.1,
        le=0.6,
        description="Fraction (no unit) of each healthy recording's last windows held out to "
        "calibrate thresholds (split by time, with a gap).",
    )
    teach_in_s: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=30 * 86_400,
        description="Learning mode: when the model directory does not exist yet, collect this "
        "many seconds of healthy windows, train, write the model, then monitor. s.",
    )
    teach_in_restarts: StrictInt = Field(
        default=2,
        ge=0,
        le=100,
        description="Teach-in: how often learning starts again after the healthy windows "
        "trended or stepped before it asks an operator to accept or restart, no unit "
        "(docs/models.md, Teach-in).",
    )
    public_keys: tuple[StrictStr, ...] = Field(
        default=(),
        max_length=16,
        description="Ed25519 public keys (PEM files, relative to the pipeline file) that sign "
        "model bundles; when set, the service accepts only models signed by one of them.",
    )
    intra_op_threads: StrictInt = Field(
        default=1,
        ge=1,
        le=64,
        description="onnxruntime threads per model session (no unit); sized here, not from the "
        "host's core count.",
    )


class HistorySettings(BaseModel):
    """Where history goes and how much of it is kept (see docs/history.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: StrictStr | None = Field(
        default=None,
        description="Store URL: sqlite:///PATH (relative to the pipeline file), "
        "influx1://[USER@]HOST:PORT/DATABASE[?rp=RP] or influx2://HOST:PORT?org=ORG&bucket=BUCKET "
        "(influx1s/influx2s for HTTPS); secrets come from PDM_INFLUX_PASSWORD / PDM_INFLUX_TOKEN. "
        "None: the embedded SQLite store in the data directory.",
    )

    @field_validator("store", mode="after")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None:
            from pdm.store_url import parse_store_url

            try:
                parse_store_url(value, where="\0", secrets=False)
            except ConfigError as exc:
                # got=None: never echo the URL back (it may hold a password).
                raise _invalid(str(exc).removeprefix("\0: "), got=None) from None
        return value

    retention_days: StrictFloat = Field(
        default=90.0,
        ge=0,
        le=36_500,
        description="SQLite: rows older than this (counted back from now, or from a machine's "
        "newest row when that is earlier) are deleted, days; 0 keeps everything. InfluxDB: the "
        "server's retention policy applies.",
    )
    spool_max_mb: StrictFloat = Field(
        default=512.0,
        gt=0,
        le=1_000_000,
        description="Bound on the disk spool that holds history while the store is down, MB "
        "(when full: the oldest spectra go first, then feature and score rows; alarm states, "
        "events, actions and captures never).",
    )
    spectra_every_s: StrictFloat = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="Keep a decimated spectrum and envelope spectrum of each channel this often, "
        "s of signal (and of the first valid window); 0: every window.",
    )
    spectrum_lines: StrictInt = Field(
        default=800,
        ge=64,
        le=16_384,
        description="Lines per stored spectrum (peak-hold decimation of the FFT bins), no unit.",
    )
    envelope_max_hz: StrictFloat = Field(
        default=1000.0,
        gt=0,
        le=100_000,
        description="Upper frequency of the stored envelope spectrum, Hz.",
    )
    capture_windows: StrictInt = Field(
        default=2,
        ge=1,
        le=64,
        description="Raw windows kept on each alarm transition (the window that changed the "
        "state and the ones before it), no unit.",
    )


class FeatureLimitSettings(BaseModel):
    """Alert/danger/trip levels on one feature (in the unit its name carries)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: StrictStr = Field(
        description="Feature name as the features command prints it, e.g. env_bpfo_g, "
        "velocity_rms_mm_s (the unit is in the name).",
        pattern=r"^[a-z][a-z0-9_]*$",
    )
    channel: StrictStr | None = Field(
        default=None, description="Channel (column) it applies to; None: every channel."
    )
    alert: StrictFloat | None = Field(default=None, description="Alert level, feature's unit.")
    danger: StrictFloat | None = Field(default=None, description="Danger level, feature's unit.")
    trip: StrictFloat | None = Field(default=None, description="Trip level, feature's unit.")

    @model_validator(mode="after")
    def _ordered(self) -> FeatureLimitSettings:
        levels = [x for x in (self.alert, self.danger, self.trip) if x is not None]
        if not levels:
            raise _invalid("give at least one of alert, danger, trip", got=None)
        if levels != sorted(levels) or len(set(levels)) != len(levels):
            raise _invalid("levels must increase: alert < danger < trip", got=None)
        return self


class WebhookTargetSettings(BaseModel):
    """One webhook receiver; the HMAC secret comes from the environment, never from this file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: StrictStr = Field(description="http(s) URL the alarm events are POSTed to.")
    format: Literal["json", "slack", "teams"] = Field(
        default="json",
        description="Body: the pdm-edge.alarm/1 JSON event, or a Slack / Teams compatible message.",
    )
    secret_env: StrictStr = Field(
        default="PDM_WEBHOOK_SECRET",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the HMAC-SHA256 secret (or <NAME>_FILE naming "
        "a file that holds it).",
    )
    timeout_s: StrictFloat = Field(default=5.0, gt=0, le=120, description="Request timeout, s.")

    @field_validator("url", mode="after")
    @classmethod
    def _http(cls, value: str) -> str:
        from pdm.secrets import redact_url

        if not re.match(r"^https?://[^/\s]+", value):
            raise _invalid(
                f"must be an http:// or https:// URL, not {redact_url(value)!r}", got=None
            )
        if "@" in value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]:
            # Credentials in the URL would go out as Basic auth; the file is 0644. got=None
            # and the URL redacted: never echo the password back.
            raise _invalid(
                f"{redact_url(value)!r}: no user or password in a webhook URL (pipeline files "
                "are readable by everyone); the receiver checks the HMAC signature instead",
                got=None,
            )
        return value


class AlarmSettings(BaseModel):
    """How window results become alarm states, and what acts on them (docs/alarms.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_windows: StrictInt | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="On-delay: windows (of the last of_windows) that must reach a level before "
        "the state rises to it, no unit. It must exceed the windows one sample falls in "
        "(ceil(window_samples / hop)), so that one short event can never raise an alarm; "
        "None: that count + 1, and at least 3.",
    )
    of_windows: StrictInt | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="On-delay window count M (N of the last M), no unit; None: on_windows + 3.",
    )
    off_windows: StrictInt = Field(
        default=25,
        ge=1,
        le=100_000,
        description="Off-delay: consecutive clear windows before "
        "alert falls back, or a latch (danger, trip) may end once acknowledged, no unit.",
    )
    hysteresis: StrictFloat = Field(
        default=0.9,
        ge=0.3,
        le=1.0,
        description="A window is clear below every threshold × this factor, no unit (0.9: a "
        "machine that alarmed on a velocity of 2.8 mm/s must fall below 2.52 to clear).",
    )
    score_trip: StrictFloat | None = Field(
        default=None,
        description="Anomaly score from which a window may trip, no unit (the alert threshold "
        "is 1.0; danger comes from the model card), and then only with a second kind of "
        "evidence in the same window (trip_requires); None or 0: the score never trips "
        "(the default: a model's thresholds are statistical, not protection limits).",
    )
    trip_requires: tuple[Literal["iso", "limit", "diagnosis", "none"], ...] = Field(
        default=("iso", "limit", "diagnosis"),
        min_length=1,
        max_length=3,
        description="Evidence that must show in the same window for score_trip to trip, any "
        'one of: "iso" (velocity RMS above the ISO 10816-3 C/D boundary on a channel), '
        '"limit" (a feature limit at its danger level), "diagnosis" (a named bearing or '
        'running-speed fault, confidence >= trip_diagnosis_confidence); ["none"]: the score '
        "trips alone (not recommended).",
    )
    trip_diagnosis_confidence: StrictFloat = Field(
        default=0.7,
        ge=0.5,
        le=1.0,
        description="Confidence (0-1, no unit) from which a diagnosis corroborates a score trip.",
    )
    iso_alert_zone: Literal["B", "C", "D", "none"] = Field(
        default="C",
        description='ISO 10816-3 zone from which velocity RMS raises alert; "none": never.',
    )
    iso_danger_zone: Literal["C", "D", "none"] = Field(
        default="D",
        description='ISO 10816-3 zone from which velocity RMS raises danger; "none": never.',
    )
    iso_trip: StrictFloat | None = Field(
        default=1.25,
        description="Velocity RMS above this × the C/D boundary trips, "
        "no unit (practice: trip ≤ 1.25 × C/D); 0: velocity never trips.",
    )
    limits: tuple[FeatureLimitSettings, ...] = Field(
        default=(), max_length=256, description="Limits on named features."
    )
    sensor_fault_inhibits: StrictBool = Field(
        default=True,
        description="Ignore a faulty sensor's evidence (its zones, limits and the "
        "anomaly score) so a broken cable never trips the machine.",
    )
    sensor_on_windows: StrictInt = Field(
        default=2,
        ge=1,
        le=10_000,
        description="Faulty windows in a row before sensor_fault, no unit.",
    )
    sensor_off_windows: StrictInt = Field(
        default=5,
        ge=1,
        le=10_000,
        description="Healthy windows in a row before it clears, no unit.",
    )
    relay: StrictStr = Field(
        default="log:",
        description="Shutdown relay: modbus://HOST[:PORT]?device=1&coil=0&polarity=normal, "
        "gpio:///dev/gpiochip0?line=17, or log: (dry run). Energised = the machine may run.",
    )
    webhooks: tuple[WebhookTargetSettings, ...] = Field(
        default=(), max_length=16, description="Webhook receivers of alarm events."
    )

    @field_validator("relay", mode="after")
    @classmethod
    def _relay_url(cls, value: str) -> str:
        if not re.match(r"^(modbus://|gpio://|log:)", value):
            raise ValueError("must start with modbus://, gpio:// or log:")
        try:
            # Only parsed (pdm.relay_url does no I/O): checking a file must not touch a relay.
            parse_relay_url(value)
        except ConfigError as exc:
            raise _invalid(str(exc), got=None) from None
        return value

    @property
    def relay_url(self) -> RelayURL:
        """``relay`` as the checked value :func:`pdm.actions.relay.relay_from_url` builds from."""
        return parse_relay_url(self.relay)

    @field_validator("score_trip", mode="after")
    @classmethod
    def _score_trip(cls, value: float | None) -> float | None:
        if value == 0:
            return None
        if value is not None and not value > 1.0:
            raise ValueError("must be above the alert threshold 1.0 (or 0: never)")
        return value

    @field_validator("trip_requires", mode="after")
    @classmethod
    def _trip_requires(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each kind of evidence at most once")
        if "none" in value and len(value) > 1:
            raise ValueError('"none" (the score trips alone) cannot be combined with evidence')
        return value

    @field_validator("iso_trip", mode="after")
    @classmethod
    def _iso_trip(cls, value: float | None) -> float | None:
        if value == 0:
            return None
        if value is not None and not 0.5 < value <= 3.0:
            raise ValueError("must be in (0.5, 3] × the C/D boundary (or 0: never)")
        return value

    def delays(self, acq: Acquisition) -> tuple[int, int]:
        """(on_windows, of_windows) for an acquisition, defaults resolved."""
        per_sample = -(-acq.window_samples // acq.hop_samples)
        on = self.on_windows if self.on_windows is not None else max(3, per_sample + 1)
        return on, self.of_windows if self.of_windows is not None else on + 3

    @model_validator(mode="after")
    def _delays(self) -> AlarmSettings:
        if (
            self.on_windows is not None
            and self.of_windows is not None
            and self.on_windows > self.of_windows
        ):
            raise _invalid("on_windows must be <= of_windows", "on_windows", got=self.on_windows)
        if (
            self.iso_alert_zone != "none"
            and self.iso_danger_zone != "none"
            and self.iso_alert_zone >= self.iso_danger_zone
        ):
            raise _invalid(
                "must be a worse zone than iso_alert_zone",
                "iso_danger_zone",
                got=self.iso_danger_zone,
            )
        return self


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
        "contact_angle_deg; its designations are looked up before the built-in catalogue.",
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
            raise _invalid(
                f"must exceed {per_sample}, the windows one sample falls in at this window and "
                "overlap, or one short event (a knock on the sensor) could raise an alarm",
                "alarms",
                "on_windows",
                got=on,
            )
        if of < on:
            raise _invalid(f"must be >= on_windows ({on})", "alarms", "of_windows", got=of)
        known = set(feature_names([b.name for b in self.bands]))
        for i, lim in enumerate(self.alarms.limits):
            if lim.feature not in known:
                close = difflib.get_close_matches(lim.feature, sorted(known), n=1)
                hint = f", did you mean {close[0]!r}?" if close else ""
                raise _invalid(
                    f"not a feature of this pipeline{hint}",
                    "alarms",
                    "limits",
                    i,
                    "feature",
                    got=lim.feature,
                )
            if lim.channel is not None and self.sensors and lim.channel not in self.columns:
                raise _invalid(
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
                raise _invalid(
                    f"duplicate sensor id (also sensors[{seen_ids[sensor.id]}])",
                    "sensors",
                    i,
                    "id",
                    got=sensor.id,
                )
            seen_ids[sensor.id] = i
            for j, ch in enumerate(sensor.channels):
                if ch.column in seen_columns:
                    raise _invalid(
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
                raise _invalid(
                    "bearing defect frequencies need the shaft speed: add [machine.speed] "
                    "with rpm or nominal_rpm",
                    "sensors",
                    i,
                    "bearing",
                )
        seen_bands: dict[str, int] = {}
        for i, band in enumerate(self.bands):
            if band.name in seen_bands:
                raise _invalid(
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
            why = f"must be below Nyquist {_fmt_num(nyquist)} Hz (sample rate {_fmt_num(fs)} Hz)"
            edges = self.envelope.band
            if edges is not None and not edges[1] < nyquist:
                raise _invalid(f"high edge {why}", "envelope", "band_hz", got=list(edges))
            for i, b in enumerate(self.bands):
                if not b.high_hz < nyquist:
                    raise _invalid(why, "bands", i, "high_hz", got=b.high_hz)
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

    # ----------------------------------------------------------------- copies

    def _revalidated(self, data: dict[str, Any], label: str | None = None) -> Pipeline:
        try:
            new = Pipeline.model_validate(data, context={"bearing_table": self._bearing_table})
        except ValidationError as exc:
            if label is not None:
                raise ConfigError(_format_errors(exc, label=label)) from exc
            if self._from_flags:
                raise ConfigError(_format_errors(exc, flag_for=self._flag_name)) from exc
            raise ConfigError(
                _format_errors(exc, path=self._source_path, text=self._source_text)
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

    def _flag_name(self, loc: Loc) -> str | None:
        return _flag_for(loc, self._bearing_flag or "--bearing")

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
        speed = _flag_speed(rpm, nominal_rpm, rpm_range)
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
        return self._revalidated(data)

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
        data["sensors"] = [_flag_sensor(list(cols), self._pending_bearing)]
        return self._revalidated(data, label="columns of the recording")


# --------------------------------------------------------------------------- errors

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


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the table at ``loc`` (for key suggestions)."""
    model: type[BaseModel] = Pipeline
    for part in loc:
        if isinstance(part, int) or part in _BEARING_TAGS:
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
        if part in _BEARING_TAGS and (not out or out[-1] == "bearing"):
            continue
        out.append(part)
    return tuple(out)


def _key_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: object) -> str:
    """A value as the user wrote it, short: ``'mm'``, ``1797``, ``true``, ``[1, 2]``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = _fmt_num(value)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: Mapping[str, Any]) -> tuple[Loc, str, str | None]:
    """One pydantic error as (key path, reason, shown value or None)."""
    etype = err["type"]
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"])
    value = err.get("input")
    got: str | None = None
    if etype == "pdm_config":
        loc = loc + tuple(ctx.get("path", ()))
        reason = str(ctx["reason"])
        if "got" in ctx:
            got = None if ctx["got"] is None else _show(ctx["got"])  # None: show nothing
        elif not ctx.get("path") and not isinstance(value, Mapping) and value not in ((), []):
            got = _show(value)
        return _clean_loc(loc), reason, got
    loc = _clean_loc(loc)
    if etype == "extra_forbidden":
        key = str(loc[-1])
        reason = f"unknown key {key!r}"
        model = _model_at(loc[:-1])
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
        reason = f"must be {op} {_show(bound)}"
    elif etype == "string_pattern_mismatch":
        reason = _PATTERN_WORDS.get(ctx.get("pattern", ""), f"must match {ctx.get('pattern')}")
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
        got = _show(value)
    return loc, reason, got


def _format_errors(
    exc: ValidationError,
    *,
    path: str | None = None,
    text: str | None = None,
    label: str | None = None,
    flag_for: Callable[[Loc], str | None] | None = None,
) -> str:
    """All of ``exc`` as ONE line: the first error (by line) plus "(and N more)"."""
    lines = _locate_keys(text) if text is not None else {}
    described = []
    for err in exc.errors():
        loc, reason, got = _describe(err)
        described.append((_line_for(lines, loc), loc, reason, got))
    # An unknown key comes first: it is usually a typo that also explains a
    # "missing" error. Otherwise users fix a file top to bottom; errors without
    # a line go last.
    described.sort(key=lambda d: (not d[2].startswith("unknown key"), d[0] is None, d[0] or 0))
    line, loc, reason, got = described[0]
    where = _key_path(loc)
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


# --------------------------------------------------------------------------- locator

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Numbers, booleans and dates: everything up to the next separator.
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _Scanner:
    """Finds the line of every key path in valid TOML text (best effort, no values)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[Loc, int] = {}

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_space(self, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def string(self) -> str:
        text, start = self.text, self.pos
        for quote in ('"""', "'''"):
            if text.startswith(quote, start):
                i = start + 3
                while True:
                    j = text.find(quote, i)
                    if j < 0:
                        raise ValueError("unterminated string")
                    if quote == '"""' and _escaped(text, j):
                        i = j + 1
                        continue
                    # A multi-line string may end in up to two extra quotes.
                    while text.startswith(quote[0], j + 3):
                        j += 1
                    self.pos = j + 3
                    return text[start + 3 : j]
        quote = text[start]
        i = start + 1
        while True:
            j = text.find(quote, i)
            if j < 0:
                raise ValueError("unterminated string")
            if quote == '"' and _escaped(text, j):
                i = j + 1
                continue
            self.pos = j + 1
            # Escapes stay undecoded: a quoted key with escapes is rare enough to miss.
            return text[start + 1 : j]

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_space(newlines=False)
            c = self.peek()
            if c in ('"', "'"):
                parts.append(self.string())
            else:
                m = _BARE_KEY.match(self.text, self.pos)
                if m is None:
                    raise ValueError("bad key")
                parts.append(m.group())
                self.pos = m.end()
            self.skip_space(newlines=False)
            if self.peek() != ".":
                return parts
            self.pos += 1

    def record(self, loc: Loc, pos: int) -> None:
        self.lines.setdefault(loc, self.line(pos))

    def value(self, loc: Loc) -> None:
        self.skip_space(newlines=False)
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_space(newlines=True)
                if self.peek() == "]":
                    self.pos += 1
                    return
                self.record((*loc, index), self.pos)
                self.value((*loc, index))
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
                    index += 1
        elif c == "{":
            self.pos += 1
            while True:
                self.skip_space(newlines=True)
                if self.peek() == "}":
                    self.pos += 1
                    return
                self.key_value(loc)
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
        else:
            m = _SCALAR.match(self.text, self.pos)
            assert m is not None  # the pattern matches the empty string
            if m.end() == self.pos:
                raise ValueError("empty value")
            self.pos = m.end()

    def key_value(self, table: Loc) -> None:
        start = self.pos
        keys = self.key()
        for n in range(1, len(keys) + 1):
            self.record((*table, *keys[:n]), start)
        self.skip_space(newlines=False)
        if self.peek() != "=":
            raise ValueError("expected '='")
        self.pos += 1
        self.value((*table, *keys))

    def scan(self) -> dict[Loc, int]:
        arrays: dict[Loc, int] = {}  # array-of-tables path -> index of its current element
        table: Loc = ()
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            start = self.pos
            if self.peek() == "[":
                is_array = self.peek(2) == "[["
                self.pos += 2 if is_array else 1
                keys = self.key()
                self.pos += 2 if is_array else 1
                path: Loc = ()
                for n, k in enumerate(keys):
                    path = (*path, k)
                    if is_array and n == len(keys) - 1:
                        self.record(path, start)
                        arrays[path] = arrays.get(path, -1) + 1
                        path = (*path, arrays[path])
                    elif path in arrays:
                        path = (*path, arrays[path])
                    self.record(path, start)
                table = path
            else:
                self.key_value(table)


def _escaped(text: str, quote_pos: int) -> bool:
    n = 0
    while quote_pos - 1 - n >= 0 and text[quote_pos - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def _locate_keys(text: str) -> dict[Loc, int]:
    """Map each key path of TOML ``text`` to the 1-based line where it is written.

    Tables map to their header line, keys to the line where the key starts, and
    elements of arrays (inline or ``[[array]]``) to the line where they start.
    Best effort: on anything unexpected it returns what it found so far.
    """
    scanner = _Scanner(text)
    try:
        return scanner.scan()
    except (ValueError, IndexError, RecursionError):
        return scanner.lines


def _line_for(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest written parent (a missing key's table)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


# --------------------------------------------------------------------------- loading

#: A pipeline file is a few kB; anything over this is refused before parsing.
MAX_PIPELINE_BYTES = 1 << 20
#: Nesting reported as "too deep" when the TOML parser runs out of recursion (tomllib
#: recurses per level; Python's limit is ~1000 frames). Only used to find the line.
MAX_TOML_DEPTH = 100


def _too_deep_line(text: str) -> int:
    """The line where ``[``/``{`` nesting inside values first exceeds :data:`MAX_TOML_DEPTH`
    (strings and comments skipped); the last line when it never does."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while True:
                j = text.find(quote, j)
                if j < 0 or c == "'" or not _escaped(text, j):
                    break
                j += 1
            end = n if j < 0 else j + len(quote)
            line += text.count("\n", i, end)
            i = end
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return line
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return line


_TOML_POS = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _migrate(data: dict[str, Any], name: str, text: str) -> dict[str, Any]:
    """Check ``schema_version`` and bring ``data`` up to :data:`SCHEMA_VERSION`."""
    line = _locate_keys(text).get(("schema_version",))
    head = f"{name}:{line}" if line is not None else name
    if "schema_version" not in data:
        raise ConfigError(
            f"{name}: schema_version: required key is missing "
            f"(put 'schema_version = {SCHEMA_VERSION}' at the top)"
        )
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{head}: schema_version: must be an integer (got {_show(version)})")
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
        line = _too_deep_line(text)
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
    data = _migrate(data, name, text)
    table = _read_bearing_table(data.get("bearing_table"), name, text)
    try:
        pipeline = Pipeline.model_validate(
            data, context={"require_sensors": True, "bearing_table": table}
        )
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path=name, text=text)) from exc
    pipeline._source_path = name
    pipeline._source_text = text
    pipeline._bearing_table = table
    return pipeline


def load_settings(path: str | os.PathLike[str], model: type[_M], *, what: str) -> _M:
    """Read and validate a TOML settings file other than a pipeline (a service config) into
    ``model``; every problem is one ConfigError line ``FILE[:LINE]: key.path: reason``."""
    name, data, text = _read_toml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path=name, text=text)) from exc


#: A bearing table larger than this is refused unread (a catalogue of thousands fits).
BEARING_TABLE_MAX_BYTES = 1 << 20


def _read_bearing_table(value: object, name: str, text: str) -> dict[str, BearingGeometry] | None:
    """The bearings of ``bearing_table`` (a path relative to the pipeline file ``name``), or
    None without one. ConfigError with the key's line, the table and its line on any problem."""
    if not isinstance(value, str) or not value.strip():
        return None  # absent, or not a string: the schema reports the latter with its line
    line = _locate_keys(text).get(("bearing_table",))
    where = f"{name}:{line}" if line else name
    path = Path(value)
    if not path.is_absolute():
        path = Path(name).parent / path
    try:
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
        return parse_bearing_table(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: bearing_table: {path} is not UTF-8 text") from None
    except BearingTableError as exc:
        at = f"{path}:{exc.line}" if exc.line else str(path)
        raise ConfigError(f"{where}: bearing_table: {at}: {exc.reason}") from None


# --------------------------------------------------------------------------- quick flags

# Key paths (array indices dropped) -> the command-line flag that sets them.
_FLAG_PATHS: tuple[tuple[tuple[str, ...], str], ...] = (
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


def _flag_for(loc: Loc, bearing_flag: str) -> str | None:
    keys = tuple(p for p in loc if isinstance(p, str))
    for prefix, flag in _FLAG_PATHS:
        if keys[: len(prefix)] == prefix:
            return bearing_flag if flag == "--bearing" else flag
    return None


def _flag_sensor(columns: list[str], bearing: str | BearingSpec | None) -> dict[str, Any]:
    sensor: dict[str, Any] = {
        "id": "s1",
        "channels": [{"column": c, "unit": "g"} for c in columns],
    }
    if bearing is not None:
        sensor["bearing"] = bearing
    return sensor


def _flag_number(flag: str, value: object) -> float:
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


def _parse_numbers(flag: str, value: str, expected: str, counts: tuple[int, ...]) -> list[float]:
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


def _flag_speed(rpm: object, nominal_rpm: object, rpm_range: str | None) -> dict[str, float] | None:
    """``machine.speed`` from --rpm, --nominal-rpm and --rpm-range (ConfigError naming the flag)."""
    if rpm is not None and (nominal_rpm is not None or rpm_range is not None):
        given = "--nominal-rpm" if nominal_rpm is not None else "--rpm-range"
        raise ConfigError(
            f"--rpm, {given}: give a fixed --rpm, or a --nominal-rpm/--rpm-range to search, not both"
        )
    if rpm is not None:
        return {"rpm": _flag_number("--rpm", rpm)}
    nominal = None if nominal_rpm is None else _flag_number("--nominal-rpm", nominal_rpm)
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
    lo, hi = _parse_numbers("--rpm-range", str(rpm_range), "LO,HI in r/min", (2,))
    if not 0 < lo < hi:
        raise ConfigError(f"--rpm-range: needs 0 < LO < HI r/min (got {rpm_range!r})")
    if nominal is None:
        nominal = (lo + hi) / 2
    elif not lo < nominal < hi:
        raise ConfigError(
            f"--rpm-range: {rpm_range!r} does not hold --nominal-rpm {_fmt_num(nominal)}"
        )
    return {"nominal_rpm": nominal, "min_rpm": lo, "max_rpm": hi}


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
    speed = _flag_speed(rpm, nominal_rpm, rpm_range)
    if speed is not None:
        machine["speed"] = speed
    acquisition: dict[str, Any] = {}
    if fs is not None:
        acquisition["sample_rate_hz"] = _flag_number("--fs", fs)
    if window is not None:
        acquisition["window_samples"] = window
    if overlap is not None:
        acquisition["overlap"] = _flag_number("--overlap", overlap)
    envelope: dict[str, Any] = {}
    if envelope_band is not None:
        if envelope_band.strip().lower() == "auto":
            envelope["band_hz"] = "auto"
        else:
            envelope["band_hz"] = _parse_numbers(
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
        nums = _parse_numbers("--bearing-geometry", bearing_geometry, expected, (3, 4))
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
            bearing_value = _BEARING_ADAPTER.validate_python(raw_bearing)
        except ValidationError as exc:
            loc, reason, _ = _describe(exc.errors()[0])
            if loc:
                reason = f"{_key_path(loc)}: {reason}"
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
        "sensors": [] if columns is None else [_flag_sensor(list(columns), bearing_value)],
    }
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(exc, flag_for=lambda loc: _flag_for(loc, bearing_flag))
        ) from exc
    pipeline._from_flags = True
    pipeline._bearing_flag = bearing_flag
    pipeline._pending_bearing = bearing_value if columns is None else None
    return pipeline


# --------------------------------------------------------------------------- summary


def _bearing_text(geometry: BearingGeometry, rpm: float | None, slip: float) -> str:
    name = geometry.designation or "custom"
    text = (
        f"bearing {name}: {geometry.rolling_elements} elements, "
        f"d {geometry.ball_diameter_mm:.2f} mm, D {geometry.pitch_diameter_mm:.2f} mm, "
        f"contact angle {_fmt_num(geometry.contact_angle_deg)}°"
    )
    if rpm is None:
        return text
    freqs = geometry.defect_frequencies_hz(rpm / 60)
    lines = ", ".join(f"{k.upper()} {v:.1f} Hz" for k, v in freqs.items())
    return f"{text}\n      at {_fmt_num(rpm)} r/min: {lines} (searched ±{slip:.0%})"


def check_pipeline(path: str | os.PathLike[str]) -> str:
    """Load a pipeline file and describe it in a few lines, for ``pdm-edge check``.

    Parameters
    ----------
    path : str or path-like
        The pipeline file.

    Returns
    -------
    str
        A multi-line summary: machine and ISO zones, speed, sampling and
        windowing, sensors with bearing defect frequencies, envelope band, bands.

    Raises
    ------
    ConfigError
        When the file does not load (see :func:`load_pipeline`).
    """
    p = load_pipeline(path)
    m, acq = p.machine, p.acquisition
    out = [f"{os.fspath(path)}: OK (schema_version {p.schema_version})"]
    name = f" ({m.name})" if m.name != m.id else ""
    out.append(
        f"machine   {m.id}{name}: ISO 10816-3 group {m.iso_group}, {m.foundation} foundation"
    )
    ab, bc, cd = zone_limits(m.iso_group, m.foundation)
    speed = m.speed
    low, high = iso_band_hz(speed.nominal if speed is not None else None)
    out.append(
        f"  zones   velocity RMS {_fmt_num(low)}–{_fmt_num(high)} Hz: A/B {ab} mm/s, "
        f"B/C {bc} mm/s, C/D {cd} mm/s"
    )
    if speed is None:
        out.append("speed     unknown (no order or bearing-defect features)")
    elif speed.fixed_rpm is not None:
        fixed = speed.fixed_rpm
        out.append(f"speed     fixed {_fmt_num(fixed)} r/min ({fixed / 60:.2f} Hz shaft frequency)")
    else:
        lo, hi = speed.search_rpm or (0.0, 0.0)
        out.append(
            f"speed     nominal {_fmt_num(speed.nominal)} r/min, searched "
            f"{_fmt_num(lo)}–{_fmt_num(hi)} r/min"
        )
    fs = acq.sample_rate_hz
    hop = acq.hop_samples
    if fs is not None:
        out.append(
            f"sampling  {_fmt_num(fs)} Hz; window {acq.window_samples} samples "
            f"({acq.window_samples / fs:.3f} s, {fs / acq.window_samples:.3g} Hz resolution), "
            f"overlap {acq.overlap:.0%} → hop {hop} samples ({hop / fs:.3f} s)"
        )
    else:
        out.append(
            f"sampling  rate from the recording; window {acq.window_samples} samples, "
            f"overlap {acq.overlap:.0%} → hop {hop} samples (durations depend on the rate)"
        )
    gap = f"{_fmt_num(acq.max_gap_s)} s" if acq.max_gap_s > 0 else "1.5 sample periods"
    out.append(f"  bad data: {acq.on_bad_data}; a time gap over {gap} restarts the window")
    n_channels = sum(len(s.channels) for s in p.sensors)
    out.append(f"sensors   {len(p.sensors)} sensor(s), {n_channels} channel(s)")
    if p.bearing_table is not None:
        out.append(
            f"  bearing table {p.bearing_table}: {len(p._bearing_table or {})} bearing(s), "
            "looked up before the built-in catalogue"
        )
    for s in p.sensors:
        where = f" ({s.location})" if s.location else ""
        chans = ", ".join(
            f"{c.column} [{c.unit}, {c.axis}"
            + (f", full scale {_fmt_num(c.full_scale)} {c.unit}" if c.full_scale else "")
            + "]"
            for c in s.channels
        )
        out.append(f"  {s.id}{where}: {chans}")
        geometry = s.bearing_geometry
        if geometry is not None:
            rpm = speed.nominal if speed is not None else None
            out.append("    " + _bearing_text(geometry, rpm, p.envelope.slip_tolerance))
    band = p.envelope.band
    if band is None:
        out.append(
            "envelope  band chosen automatically (where the defect lines stand out most "
            "above the floor; docs/models.md)"
        )
    else:
        out.append(f"envelope  band {_fmt_num(band[0])}–{_fmt_num(band[1])} Hz")
    if p.bands:
        out.append(
            "bands     "
            + ", ".join(f"{b.name} {_fmt_num(b.low_hz)}–{_fmt_num(b.high_hz)} Hz" for b in p.bands)
        )
    else:
        out.append("bands     none")
    h = p.history
    keep = f"{_fmt_num(h.retention_days)} days" if h.retention_days else "everything"
    out.append(
        f"history   {h.store or 'sqlite:///<data dir>/history.db (embedded default)'}; "
        f"keeps {keep} (SQLite), spool up to {_fmt_num(h.spool_max_mb)} MB"
    )
    settings = p.model
    if p.model_dir is None:
        out.append("model     none (features only)")
    else:
        present = (p.model_dir / "model.json").exists()
        state = (
            "present"
            if present
            else (
                f"absent: teach-in learns {_fmt_num(settings.teach_in_s)} s first"
                if settings.teach_in_s
                else "absent"
            )
        )
        out.append(
            f"model     {p.model_dir} ({state}); detector {settings.detector}, alert aims at "
            f"{_fmt_num(settings.alerts_per_week)} false alerts/week, {settings.holdout:.0%} held out"
        )
    return "\n".join(out)
