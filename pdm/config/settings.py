"""The pipeline's settings tables: ``[model]``, ``[history]``, ``[alarms]`` (feature limits,
webhook targets, the relay URL kept as a checked string: :mod:`pdm.relay_url` parses it, the
actions build the relay above this floor).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from pdm.config.fields import (
    invalid,
)
from pdm.config.machine import (
    Acquisition,
)
from pdm.errors import ConfigError
from pdm.relay_url import RelayURL, parse_relay_url
from pdm.secrets import redact_url
from pdm.store_url import parse_store_url


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
        description="Fraction (no unit) of each healthy recording's last windows held out of "
        "the model's fit (split by time, with a gap): the card's evaluation, and the "
        "calibration when a cross-validated fold would be too small (docs/models.md).",
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
            try:
                parse_store_url(value, where="\0", secrets=False)
            except ConfigError as exc:
                # got=None: never echo the URL back (it may hold a password).
                raise invalid(str(exc).removeprefix("\0: "), got=None) from None
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
            raise invalid("give at least one of alert, danger, trip", got=None)
        if levels != sorted(levels) or len(set(levels)) != len(levels):
            raise invalid("levels must increase: alert < danger < trip", got=None)
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
        if not re.match(r"^https?://[^/\s]+", value):
            raise invalid(
                f"must be an http:// or https:// URL, not {redact_url(value)!r}", got=None
            )
        if "@" in value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]:
            # Credentials in the URL would go out as Basic auth; the file is 0644. got=None
            # and the URL redacted: never echo the password back.
            raise invalid(
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
            raise invalid(str(exc), got=None) from None
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
            raise invalid("on_windows must be <= of_windows", "on_windows", got=self.on_windows)
        if (
            self.iso_alert_zone != "none"
            and self.iso_danger_zone != "none"
            and self.iso_alert_zone >= self.iso_danger_zone
        ):
            raise invalid(
                "must be a worse zone than iso_alert_zone",
                "iso_danger_zone",
                got=self.iso_danger_zone,
            )
        return self
