"""The ground truth of a spec: its frequencies, amplitudes, velocities and ISO zone as
JSON, and specs to and from dicts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np

from pdm.dsp.bearings import BearingGeometry
from pdm.errors import ConfigError
from pdm.sources.simulator.signals import (
    Resonator,
    impact_positions,
)
from pdm.sources.simulator.specs import (
    G0,
    GENERATOR_VERSION,
    IMPACT_GAIN_STEP,
    TONE_KINDS,
    FaultSpec,
    SensorFaultSpec,
    SimSpec,
    TransientSpec,
    impact_rate_hz,
    modulation_hz,
    sample_index,
    tone_components,
)

#: Fields added after generator version 1, left out of a spec's dict at their default so
#: the ground truth of recordings made before them (the committed fixtures) stays as it was.
_LATER_FIELDS = {"defect_slip": 0.0}


def spec_to_dict(spec: SimSpec) -> dict[str, Any]:
    """JSON-able form of a spec (an endless ``duration_s`` becomes None)."""
    d = dataclasses.asdict(spec)
    for name, default in _LATER_FIELDS.items():
        if d.get(name) == default:
            del d[name]
    if math.isinf(spec.duration_s):
        d["duration_s"] = None
    return _jsonable(d)


def spec_from_dict(d: dict[str, Any]) -> SimSpec:
    """Inverse of :func:`spec_to_dict`."""
    d = dict(d)
    try:
        if d.get("duration_s", 0.0) is None:
            d["duration_s"] = math.inf
        if "bearing" in d:
            d["bearing"] = BearingGeometry(**d["bearing"])
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        d["faults"] = tuple(FaultSpec(**f) for f in d.get("faults", ()))
        d["transients"] = tuple(TransientSpec(**t) for t in d.get("transients", ()))
        sfs = []
        for sf in d.get("sensor_faults", ()):
            sf = dict(sf)
            if sf.get("channels") is not None:
                sf["channels"] = tuple(sf["channels"])
            sfs.append(SensorFaultSpec(**sf))
        d["sensor_faults"] = tuple(sfs)
        return SimSpec(**d)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid simulator spec: {exc}") from exc


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def iso_utc(t: float) -> str:
    """POSIX seconds ``t`` as ISO 8601 UTC (``Z``), to the µs (whole seconds shown without)."""
    us = round(t * 1e6)
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return d.isoformat(timespec="microseconds" if us % 1_000_000 else "seconds").replace(
        "+00:00", "Z"
    )


def _velocity_mm_s(accel_g: float, f_hz: float) -> float:
    return accel_g * G0 * 1000.0 / (2 * math.pi * f_hz)


def ground_truth(spec: SimSpec) -> dict[str, Any]:
    """What a correct analysis of ``simulate(spec)`` should find.

    Returns
    -------
    dict
        JSON-able. Keys: ``generator``; ``spec`` (every field); ``sample_rate_hz``,
        ``n_samples``, ``start_time`` (POSIX s) and ``start_time_iso``; ``shaft_hz``;
        ``bearing`` (geometry, ``defect_frequencies_hz``); ``resonance``;
        ``channel_geometry``; ``faults`` (per fault: ``onset_sample``,
        ``full_amplitude_sample``, and either tone ``components`` with acceleration
        in g and velocity in mm/s (0-peak and rms), or the ``impact_rate_hz``,
        ``first_impact_sample`` and ``n_impacts`` of a bearing fault);
        ``transients``; ``sensor_faults`` (per fault: ``start_sample`` and
        exclusive ``end_sample``, the channels); ``expected`` (steady-state
        velocity rms in the ISO 10816 band 10–1000 Hz, mm/s, from tones and noise).
        Sample indices count from 0 at ``start_time``.
    """
    fs, fr = spec.fs, spec.shaft_hz
    n = spec.n_samples
    freqs = spec.bearing.defect_frequencies_hz(fr)
    faults: list[dict[str, Any]] = []
    band_v2 = 0.0  # tone velocity rms², mm²/s², inside 10–1000 Hz
    for i, f in enumerate(spec.faults):
        n0 = sample_index(f.onset_s, fs)
        ramp = sample_index(f.ramp_s, fs)
        entry: dict[str, Any] = {
            "index": i,
            "kind": f.kind,
            "amplitude_g": f.amplitude_g,
            "onset_s": f.onset_s,
            "onset_sample": n0,
            "ramp_s": f.ramp_s,
            "ramp_samples": ramp,
            "full_amplitude_sample": n0 + max(ramp - 1, 0),
        }
        if f.kind in TONE_KINDS:
            comps = []
            for order, amp in tone_components(f.kind, f.amplitude_g):
                fz = order * fr
                if fz >= fs / 2:
                    continue
                v = _velocity_mm_s(amp, fz)
                comps.append(
                    {
                        "order": order,
                        "frequency_hz": fz,
                        "accel_peak_g": amp,
                        "accel_rms_g": amp / math.sqrt(2),
                        "velocity_peak_mm_s": v,
                        "velocity_rms_mm_s": v / math.sqrt(2),
                    }
                )
                if 10.0 <= fz <= 1000.0:
                    band_v2 += (v / math.sqrt(2)) ** 2
            entry["components"] = comps
        else:
            rate = impact_rate_hz(spec, f.kind)
            mod_hz = modulation_hz(spec, f.kind)
            entry.update(
                {
                    "impact_rate_hz": rate,
                    "impact_period_s": 1.0 / rate,
                    "impact_peak_g": f.amplitude_g,
                    "modulation_hz": mod_hz,
                    "modulation_depth": spec.modulation_depth if mod_hz else 0.0,
                    "slip_jitter_std_s": spec.slip_jitter / rate,
                }
            )
            if n is not None:
                pos = impact_positions(spec, i)
                entry["n_impacts"] = int(pos.size)
                entry["first_impact_sample"] = math.floor(pos[0]) + 1 if pos.size else None
        faults.append(entry)

    sensor = []
    for i, sf in enumerate(spec.sensor_faults):
        a, b = sample_index(sf.start_s, fs), sample_index(sf.end_s, fs)
        if n is not None:
            a, b = min(a, n), min(b, n)
        sensor.append(
            {
                "index": i,
                "kind": sf.kind,
                "start_s": sf.start_s,
                "end_s": sf.end_s,
                "start_sample": a,
                "end_sample": b,
                "n_samples": b - a,
                "channels": list(sf.channels or spec.channels),
                "full_scale_g": sf.full_scale_g,
                "fill": sf.fill if sf.kind == "dropout" else None,
            }
        )

    # White noise of rms σ over 0…fs/2 has one-sided PSD S = 2σ²/fs (g²/Hz); its
    # velocity rms² in [f1, f2] is S·(g0·1000/2π)²·(1/f1 − 1/f2).
    psd = 2 * spec.noise_rms_g**2 / fs
    noise_v2 = psd * (G0 * 1000.0 / (2 * math.pi)) ** 2 * (1 / 10.0 - 1 / 1000.0)
    res = Resonator.make(spec)
    truth: dict[str, Any] = {
        "generator": {"name": "pdm.sources.simulator", "version": GENERATOR_VERSION},
        "spec": spec_to_dict(spec),
        "sample_rate_hz": fs,
        "n_samples": n,
        "duration_s": None if n is None else n / fs,
        "channels": list(spec.channels),
        "units": "g",
        "start_time": spec.start_time,
        "start_time_iso": iso_utc(spec.start_time),
        "rpm": spec.rpm,
        "shaft_hz": fr,
        "bearing": {
            **dataclasses.asdict(spec.bearing),
            "defect_multiples": spec.bearing.defect_multiples(),
            "defect_frequencies_hz": freqs,
            "ball_impact_rate_hz": 2.0 * freqs["bsf"],
        },
        "resonance": {
            "frequency_hz": spec.resonance_hz,
            "damping_ratio": spec.damping_ratio,
            "decay_time_constant_s": 1.0 / (res.decay * fs),
        },
        "channel_geometry": [
            {"channel": ch, "angle_deg": 90.0 * c, "impact_gain": IMPACT_GAIN_STEP**c}
            for c, ch in enumerate(spec.channels)
        ],
        "faults": faults,
        "transients": [
            {"time_s": t.time_s, "position_samples": t.time_s * fs, "amplitude_g": t.amplitude_g}
            for t in spec.transients
        ],
        "sensor_faults": sensor,
        "expected": {
            "noise_rms_g": spec.noise_rms_g,
            "dc_bias_g": spec.dc_bias_g,
            "tone_velocity_rms_mm_s_10_1000hz": math.sqrt(band_v2),
            "noise_velocity_rms_mm_s_10_1000hz": math.sqrt(noise_v2),
            "velocity_rms_mm_s_10_1000hz": math.sqrt(band_v2 + noise_v2),
            "note": "steady state after every onset; tones and noise only (impacts add a little)",
        },
    }
    return _jsonable(truth)
