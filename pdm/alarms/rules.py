"""An alarm configuration (a pipeline's ``[alarms]`` and machine) as the state machine's rules."""

from __future__ import annotations

from pdm.alarms.state import AlarmRules, FeatureLimit
from pdm.config import Pipeline

__all__ = ["rules_from"]


def rules_from(pipeline: Pipeline) -> AlarmRules:
    a = pipeline.alarms
    m = pipeline.machine
    on, of = a.delays(pipeline.acquisition)
    return AlarmRules(
        on_windows=on,
        of_windows=of,
        off_windows=a.off_windows,
        hysteresis=a.hysteresis,
        score_trip=a.score_trip,
        trip_requires=() if a.trip_requires == ("none",) else tuple(a.trip_requires),
        trip_diagnosis_confidence=a.trip_diagnosis_confidence,
        iso_alert_zone=None if a.iso_alert_zone == "none" else a.iso_alert_zone,
        iso_danger_zone=None if a.iso_danger_zone == "none" else a.iso_danger_zone,
        iso_trip=a.iso_trip,
        iso_group=m.iso_group,
        foundation=m.foundation,
        limits=tuple(
            FeatureLimit(lim.feature, lim.alert, lim.danger, lim.trip, lim.channel)
            for lim in a.limits
        ),
        sensor_on_windows=a.sensor_on_windows,
        sensor_off_windows=a.sensor_off_windows,
        sensor_fault_inhibits=a.sensor_fault_inhibits,
    )
