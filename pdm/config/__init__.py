"""The pipeline: one TOML file per monitored machine, validated once, passed down.

A pipeline says what machine is watched (ISO 10816-3 group and foundation, shaft
speed), how it is sampled (sample rate, window, overlap, what to do with bad
data), which sensors and channels it has (units, full scale, bearing) and which
spectral bands to report. The schema is written out in ``pipelines/README.md``.

Every model is frozen and forbids unknown keys, so a typo is an error rather than
a silently ignored setting. Every problem a user can cause raises
:class:`pdm.errors.ConfigError` with ONE line that says where::

    pipelines/pump.toml:14: sensors[0].channels[0].unit: must be 'g' or 'm/s2' (got 'mm')

The line number comes from a small locator (:func:`pdm.config.locate.locate_keys`)
that walks the TOML text, because ``tomllib`` keeps no positions.

The file carries an integer ``schema_version``. A future change to the schema
adds one step ``migrate_N_to_N+1`` to :data:`MIGRATIONS`; the loader applies the
steps from the file's version up to :data:`SCHEMA_VERSION` before validating.

>>> p = pipeline_from_flags(fs=25600, columns=["x_g"], rpm=1797, bearing="6205")
>>> round(p.bearing_for("x_g").defect_frequencies_hz(p.machine.speed.nominal / 60)["bpfo"], 1)
107.4

The package, one module per concept (each imports only those listed before it):

=============  ==================================================================
``fields``     key patterns, the key-path type, the cross-field error
``machine``    speed, machine, acquisition, sensors and bearings, envelope, bands
``settings``   ``[model]``, ``[history]``, ``[alarms]`` (store and relay URLs kept
               as checked strings; the rooms above build the objects)
``locate``     the line of each key in TOML text
``messages``   pydantic's errors as one line that says where
``migrate``    ``schema_version`` and the migration steps
``flags``      which flag sets which key; speed and sensor from flags
``pipeline``   the whole :class:`Pipeline`, cross-checked, and its copies
``load``       TOML files read into validated models
``quick``      a pipeline from the command line's quick flags
``check``      ``pdm-edge check``'s summary of a pipeline file
=============  ==================================================================

Import the public names from here (``from pdm.config import Pipeline``).
"""

from __future__ import annotations

from pdm.config.check import check_pipeline
from pdm.config.load import load_pipeline, load_settings
from pdm.config.machine import (
    Acquisition,
    Band,
    BearingSpec,
    Channel,
    Envelope,
    Machine,
    Sensor,
    Speed,
)
from pdm.config.migrate import MIGRATIONS, SCHEMA_VERSION
from pdm.config.pipeline import Pipeline
from pdm.config.quick import pipeline_from_flags
from pdm.config.settings import (
    AlarmSettings,
    FeatureLimitSettings,
    HistorySettings,
    ModelSettings,
    WebhookTargetSettings,
)

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
