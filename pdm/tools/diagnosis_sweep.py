"""Known answers for the diagnosis engine: a seeded sweep over the simulator.

Each case simulates one machine (a bearing geometry, a speed, a sample rate, a
resonance, a noise level, a slip) with one fault or none, runs it through the project's
own window path (:class:`pdm.processing.FeatureStream` with a pipeline built for it,
window chosen by :func:`pdm.diagnosis.resolution.choose_window` as ``pdm-edge diagnose``
chooses it) and compares the engine's final diagnosis with the truth.

Outcomes: ``right`` (the fault named), ``uncertain`` (``bearing_uncertain`` for a
bearing fault), ``missed`` (``unknown`` for a fault), ``wrong`` (another fault named;
for a healthy machine, any fault named). A ball or cage fault called
``bearing_uncertain`` is acceptable, a race is wrong.

Tone cases (:func:`make_tone_cases`, ``--tones``): healthy machines with a stationary line
at their BPFI or BPFO (two tones beating in the band, or the band's noise modulated at it),
which must not be called a fault.

Machine cases (:data:`MACHINE_KINDS`, ``--machines``) judge what one sensor alone cannot:
a fault in one bearing of a two-bearing machine reaching the other sensor 6–20 dB weaker
through another resonance (:class:`pdm.sources.simulator.MachineSpec`; the right bearing
must be named and the healthy one not given a fault at confidence ≥ 0.5), two faults in one
bearing (either named is right), and a structural line at a defect-like order in the
machine's healthy running, judged over the healthy baseline, without and with a real fault
there.

    python -m pdm.tools.diagnosis_sweep                 # the full sweep (several minutes)
    python -m pdm.tools.diagnosis_sweep --cases 60 --machines 20   # a quick one
    python -m pdm.tools.diagnosis_sweep --calibrate     # also fit the confidence map
    python -m pdm.tools.diagnosis_sweep --cases 0 --machines 0 --tones 120   # the tone cases only

Nothing here is tuned to real recordings; the thresholds of :mod:`pdm.diagnosis.rules`
are chosen so that this sweep has no healthy case called a fault.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import butter, sosfiltfilt

from pdm.config import Pipeline
from pdm.diagnosis.baseline import Baseline, BaselineBuilder
from pdm.diagnosis.resolution import choose_window
from pdm.dsp.bearings import BearingGeometry
from pdm.errors import DspError
from pdm.processing import FeatureStream
from pdm.sources.base import Chunk
from pdm.sources.simulator import (
    FaultSpec,
    MachineSensor,
    MachineSpec,
    SimSpec,
    TransientSpec,
    simulate,
    simulate_machine,
)

__all__ = [
    "GEOMETRIES",
    "MACHINE_KINDS",
    "Case",
    "MachineCase",
    "breakdown",
    "make_cases",
    "make_machine_cases",
    "make_tone_cases",
    "run_case",
    "run_machine_case",
    "summarise",
    "summarise_machines",
    "tone_signal",
]

#: Test geometries: (rolling elements, element diameter mm, pitch diameter mm, contact
#: angle °). Boundary dimensions from ISO 15 (pitch ≈ (bore + OD) / 2); element counts
#: and diameters are the usual complements of these designations (the 6205 and 6203 as
#: CWRU publishes them). A spread of defect multiples, not a catalogue.
GEOMETRIES: dict[str, BearingGeometry] = {
    "6205": BearingGeometry(9, 7.94, 39.04, 0.0, "6205"),
    "6203": BearingGeometry(8, 6.746, 28.5, 0.0, "6203"),
    "6309": BearingGeometry(8, 17.462, 72.5, 0.0, "6309"),
    "6003": BearingGeometry(10, 4.762, 26.0, 0.0, "6003"),
    "NU208": BearingGeometry(14, 11.0, 60.0, 0.0, "NU208"),
    "22210": BearingGeometry(17, 10.0, 70.0, 10.0, "22210"),
}
KINDS = ("healthy", "bpfo", "bpfi", "bsf", "ftf", "unbalance", "misalignment", "looseness", "rub")
TRUTH = {
    "healthy": "unknown",
    "tone": "unknown",  # a stationary line at a defect frequency (make_tone_cases)
    "rub": "unknown",  # once-per-revolution knocks: impulsive, not a bearing
    "bpfo": "bearing_outer_race",
    "bpfi": "bearing_inner_race",
    "bsf": "bearing_ball",
    "ftf": "bearing_cage",
    "unbalance": "unbalance",
    "misalignment": "misalignment",
    "looseness": "looseness",
}
RATES = (10240.0, 12000.0, 25600.0, 48000.0, 51200.0, 100000.0)


@dataclass(frozen=True)
class Case:
    """One simulated machine and its truth."""

    index: int
    kind: str
    bearing: str
    rpm: float
    fs: float
    resonance_hz: float
    noise_g: float
    snr: float  # impact peak / noise rms (bearing faults); velocity / ISO A/B (tones)
    slip: float
    speed: str  # "fixed" or "searched"
    seed: int
    window: int = 0  # samples; 0: chosen for the bearing's lines, as diagnose chooses it
    extra: str = ""  # a second, running-speed fault at its ISO A/B level ("" for none)
    rpm_error: float = 0.0  # a fixed speed in the pipeline this fraction off the real one
    windows: int = 10  # half-overlapping windows in the recording
    healthy_1x: float = 0.25  # the 1× every machine has, × the ISO A/B boundary
    # ``tone`` cases (:func:`make_tone_cases`): how the machine's stationary line at a defect
    # frequency gets into the envelope ("beat": two tones in the band that far apart; "am":
    # the band's noise modulated sinusoidally at it), the family and its offset from it.
    tone: str = ""
    tone_family: str = ""
    tone_offset: float = 0.0

    @property
    def truth(self) -> str:
        return TRUTH[self.kind]


def make_cases(n: int, seed: int = 0) -> list[Case]:
    """``n`` cases, the kinds in turn, every other parameter drawn at random (seeded)."""
    rng = np.random.default_rng([seed, 18])
    names = sorted(GEOMETRIES)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        fs = float(rng.choice(RATES))
        rpm = float(np.exp(rng.uniform(math.log(600.0), math.log(6000.0))))
        res = float(rng.uniform(0.12, 0.38) * fs)
        res = min(max(res, 1500.0), 20000.0)
        snr = float(np.exp(rng.uniform(math.log(0.5), math.log(30.0))))
        if kind in ("unbalance", "misalignment", "looseness"):
            snr = float(np.exp(rng.uniform(math.log(1.2), math.log(6.0))))
        # Most cases get diagnose's window; some the fixed windows an online pipeline uses.
        window = int(rng.choice([0, 0, 0, 16384, 4096]))
        extra = ""
        if kind in ("bpfo", "bpfi", "bsf", "ftf") and rng.uniform() < 0.25:
            extra = str(rng.choice(["unbalance", "misalignment"]))
        speed = "searched" if rng.uniform() < 0.5 else "fixed"
        # A nameplate speed is not the running speed: a fixed speed off by up to 1.5 %.
        rpm_error = round(float(rng.uniform(-0.015, 0.015)), 4) if speed == "fixed" else 0.0
        n_windows = int(rng.choice([4, 10, 10, 20]))
        healthy_1x = round(float(rng.uniform(0.1, 1.0)), 3)
        out.append(
            Case(
                index=i,
                kind=kind,
                bearing=str(rng.choice(names)),
                rpm=round(rpm, 1),
                fs=fs,
                resonance_hz=round(res, 0),
                noise_g=float(rng.choice([0.01, 0.02, 0.05])),
                snr=round(snr, 2),
                slip=round(float(rng.uniform(-0.02, 0.02)), 4),
                speed=speed,
                seed=int(rng.integers(0, 2**31)),
                window=window,
                extra=extra,
                rpm_error=rpm_error,
                windows=n_windows,
                healthy_1x=healthy_1x,
            )
        )
    return out


#: Healthy machines with a stationary line at a bearing's defect frequency: not a fault.
TONE_KINDS = ("beat", "am")


def make_tone_cases(n: int, seed: int = 0) -> list[Case]:
    """``n`` healthy machines (random bearing, speed, rate, resonance, noise, as
    :func:`make_cases` draws them) with a *stationary* line at their BPFI or BPFO (± 2 %):
    two tones in the demodulation band that far apart, whose beat puts a line in the
    envelope spectrum (a structural or electrical tone; the healthy CWRU fan end's 164 Hz),
    or the band's noise modulated sinusoidally at it (a fan's or a flow's pulsation). The
    truth is ``unknown``: neither is a train of impacts."""
    rng = np.random.default_rng([seed, 18, 3])
    names = sorted(GEOMETRIES)
    out = []
    for i in range(n):
        fs = float(rng.choice(RATES))
        rpm = float(np.exp(rng.uniform(math.log(600.0), math.log(6000.0))))
        res = min(max(float(rng.uniform(0.12, 0.38) * fs), 1500.0), 20000.0)
        speed = "searched" if rng.uniform() < 0.5 else "fixed"
        out.append(
            Case(
                index=i,
                kind="tone",
                bearing=str(rng.choice(names)),
                rpm=round(rpm, 1),
                fs=fs,
                resonance_hz=round(res, 0),
                noise_g=float(rng.choice([0.01, 0.02, 0.05])),
                # the stronger tone's amplitude / noise rms (log-uniform 0.3–3)
                snr=round(float(np.exp(rng.uniform(math.log(0.3), math.log(3.0)))), 2),
                slip=0.0,
                speed=speed,
                seed=int(rng.integers(0, 2**31)),
                window=int(rng.choice([0, 0, 0, 16384, 4096])),
                rpm_error=round(float(rng.uniform(-0.015, 0.015)), 4) if speed == "fixed" else 0.0,
                windows=int(rng.choice([4, 10, 10, 20])),
                healthy_1x=round(float(rng.uniform(0.1, 1.0)), 3),
                tone=TONE_KINDS[i % len(TONE_KINDS)],
                tone_family=str(rng.choice(["bpfi", "bpfi", "bpfo"])),
                tone_offset=round(float(rng.uniform(-0.02, 0.02)), 4),
            )
        )
    return out


def tone_signal(case: Case, n_samples: int) -> np.ndarray:
    """(n_samples, 2) g: the stationary line of a ``tone`` case, added to both channels'
    healthy signal (:func:`make_tone_cases`)."""
    g = GEOMETRIES[case.bearing]
    f_line = g.defect_multiples()[case.tone_family] * (1 + case.tone_offset) * case.rpm / 60.0
    rng = np.random.default_rng([case.seed, 7])
    t = np.arange(n_samples) / case.fs
    a = case.snr * case.noise_g
    lo, hi = _band(case)
    if case.tone == "beat":
        # Two tones inside the band, the second 0.3–0.6 × the first, f_line apart.
        f1 = float(rng.uniform(lo, max(lo, hi - f_line)))
        r = float(rng.uniform(0.3, 0.6))
        y = a * np.sin(2 * np.pi * f1 * t) + r * a * np.sin(2 * np.pi * (f1 + f_line) * t + 1.0)
    else:
        # Band-limited noise, its amplitude 1 + m·cos(2π f_line t), m 0.3–0.8.
        m = float(rng.uniform(0.3, 0.8))
        sos = butter(4, [lo, hi], "bandpass", fs=case.fs, output="sos")
        w = sosfiltfilt(sos, rng.standard_normal(n_samples))
        w *= a / max(float(np.std(w)), 1e-12)
        y = w * (1.0 + m * np.cos(2 * np.pi * f_line * t))
    return np.stack([y, y], axis=1)


def _spec(case: Case, duration_s: float) -> SimSpec:
    g = GEOMETRIES[case.bearing]
    fr = case.rpm / 60.0
    faults: list[FaultSpec] = []
    transients: tuple[TransientSpec, ...] = ()
    # Every machine runs with some unbalance: 1× at up to the ISO A/B boundary (zone A).
    ab, bc = 1.4, 2.8  # ISO 10816-3 group 2 rigid, A/B and B/C, mm/s rms
    healthy_1x = case.healthy_1x * ab * math.sqrt(2) * 2 * math.pi * fr / 9806.65
    faults.append(FaultSpec("unbalance", healthy_1x))
    if case.kind in ("bpfo", "bpfi", "bsf", "ftf"):
        faults.append(FaultSpec(case.kind, case.snr * case.noise_g))  # type: ignore[arg-type]
    elif case.kind in ("unbalance", "misalignment", "looseness"):
        # Velocity of the reference order = snr × B/C: a fault by ISO's measure.
        order = 2.0 if case.kind == "misalignment" else 1.0
        amp = case.snr * bc * math.sqrt(2) * 2 * math.pi * order * fr / 9806.65
        faults.append(FaultSpec(case.kind, amp))  # type: ignore[arg-type]
    if case.extra:
        order = 2.0 if case.extra == "misalignment" else 1.0
        amp = 1.5 * bc * math.sqrt(2) * 2 * math.pi * order * fr / 9806.65
        faults.append(FaultSpec(case.extra, amp))  # type: ignore[arg-type]
    if case.kind == "rub":
        period = 1.0 / fr
        knocks = np.arange(0.3 * period, duration_s, period)
        transients = tuple(TransientSpec(float(t), case.snr * case.noise_g) for t in knocks)
    return SimSpec(
        fs=case.fs,
        duration_s=duration_s,
        rpm=case.rpm,
        bearing=g,
        channels=("x_g", "y_g"),
        noise_rms_g=case.noise_g,
        resonance_hz=case.resonance_hz,
        faults=tuple(faults),
        seed=case.seed,
        defect_slip=case.slip,
        transients=transients,
    )


def _band(case: Case) -> tuple[float, float]:
    """A fixed demodulation band around the resonance, as an analyst would set it."""
    lo = max(0.6 * case.resonance_hz, 500.0)
    hi = min(1.5 * case.resonance_hz, 0.45 * case.fs)
    return (round(lo), round(hi))


def pipeline_for(case: Case, window: int, band: tuple[float, float] | str) -> Pipeline:
    g = GEOMETRIES[case.bearing]
    speed: dict[str, float] = (
        {"rpm": round(case.rpm * (1 + case.rpm_error), 2)}
        if case.speed == "fixed"
        else {"nominal_rpm": case.rpm, "min_rpm": 0.95 * case.rpm, "max_rpm": 1.05 * case.rpm}
    )
    return Pipeline.model_validate(
        {
            "schema_version": 1,
            "machine": {"id": f"sweep-{case.index}", "speed": speed},
            "acquisition": {"sample_rate_hz": case.fs, "window_samples": window, "overlap": 0.5},
            "sensors": [
                {
                    "id": "s1",
                    "bearing": {
                        "rolling_elements": g.rolling_elements,
                        "ball_diameter_mm": g.ball_diameter_mm,
                        "pitch_diameter_mm": g.pitch_diameter_mm,
                        "contact_angle_deg": g.contact_angle_deg,
                    },
                    "channels": [{"column": "x_g", "unit": "g"}, {"column": "y_g", "unit": "g"}],
                }
            ],
            "envelope": {"band_hz": band if isinstance(band, str) else list(band)},
        }
    )


def run_case(case: Case, *, band: str = "fixed") -> dict[str, Any]:
    """Simulate ``case``, diagnose it; returns the case, the verdict and the outcome."""
    g = GEOMETRIES[case.bearing]
    windows = case.windows
    n = case.window or choose_window(case.fs, case.rpm / 60.0, g.defect_multiples())
    duration = n * (1 + (windows - 1) / 2) / case.fs + 0.01
    spec = _spec(case, duration)
    x = simulate(spec)
    if case.tone:
        x = x + tone_signal(case, x.shape[0])
    used = band
    try:
        pipeline = pipeline_for(case, n, _band(case) if band == "fixed" else "auto")
        stream = FeatureStream(pipeline, case.fs)
    except DspError:  # 'auto' finds no candidate band at this rate and speed: as given
        used = "fixed"
        stream = FeatureStream(pipeline_for(case, n, _band(case)), case.fs)
    last = None
    for wf in stream.feed([Chunk(x, case.fs, spec.start_time, spec.channels)]):
        last = wf.diagnosis
    assert last is not None
    return {
        **dataclasses.asdict(case),
        "truth": case.truth,
        "window": n,
        "band": used,
        "label": last.label,
        "confidence": last.confidence,
        "margin_db": next((c.margin_db for c in last.channels if c.channel == last.channel), 0.0),
        "calibration": next(
            (c.verdict.calibration for c in last.channels if c.channel == last.channel), ""
        ),
        "outcome": outcome(case.truth, last.label, case.extra),
    }


# --------------------------------------------------------------------------- machines

#: Machine-level cases: a fault in one of two bearings seen by both sensors (``crosstalk``),
#: two faults in one bearing (``mixed``), and a healthy machine with a structural line at a
#: defect-like order, judged over its healthy baseline, without and with a real fault there
#: (``structural``, ``structural_fault``).
MACHINE_KINDS = ("crosstalk", "mixed", "structural", "structural_fault")
_BEARING_KINDS = ("bpfo", "bpfi", "bsf", "ftf")


@dataclass(frozen=True)
class MachineCase:
    """One machine-level case and its truth (see :data:`MACHINE_KINDS`)."""

    index: int
    kind: str
    fault: str  # the bearing fault (bpfo, bpfi, bsf, ftf) or the structural line's family
    fault2: str  # mixed: the second fault in the same bearing
    bearing: str  # the faulty (or only) bearing
    bearing2: str  # crosstalk: the other sensor's bearing
    rpm: float
    fs: float
    resonance_hz: float
    resonance2_hz: float
    noise_g: float
    snr: float  # the (first) fault's impact peak / noise rms; the structural line's
    ratio: float  # mixed: second / first amplitude; structural_fault: fault / line
    transfer_db: float  # crosstalk
    offset: float  # structural: the line's fraction off the family's kinematic frequency
    slip: float
    seed: int
    windows: int = 10

    @property
    def truth(self) -> tuple[str, ...]:
        if self.kind == "structural":
            return ("unknown",)
        if self.kind == "mixed":
            return (TRUTH[self.fault], TRUTH[self.fault2])
        return (TRUTH[self.fault],)


def make_machine_cases(n: int, seed: int = 0) -> list[MachineCase]:
    """``n`` machine cases, the kinds in turn, the rest drawn at random (seeded)."""
    rng = np.random.default_rng([seed, 18, 2])
    names = sorted(GEOMETRIES)
    out = []
    for i in range(n):
        kind = MACHINE_KINDS[i % len(MACHINE_KINDS)]
        fs = float(rng.choice(RATES))
        rpm = float(np.exp(rng.uniform(math.log(600.0), math.log(6000.0))))
        res = [min(max(float(rng.uniform(0.12, 0.38) * fs), 1500.0), 20000.0) for _ in range(2)]
        fault = str(rng.choice(_BEARING_KINDS))
        fault2 = str(rng.choice([k for k in ("bpfo", "bpfi", "bsf") if k != fault]))
        if kind.startswith("structural"):
            fault = str(rng.choice(["bpfo", "bpfi"]))  # a line where a race puts its own
        b1 = str(rng.choice(names))
        # Half the machines carry the same bearing at both ends (many motors do): the other
        # end's lines are then exactly this sensor's families.
        b2 = str(rng.choice(names)) if rng.uniform() < 0.5 else b1
        out.append(
            MachineCase(
                index=i,
                kind=kind,
                fault=fault,
                fault2=fault2 if kind == "mixed" else "",
                bearing=b1,
                bearing2=b2,
                rpm=round(rpm, 1),
                fs=fs,
                resonance_hz=round(res[0]),
                resonance2_hz=round(res[1]),
                noise_g=float(rng.choice([0.01, 0.02, 0.05])),
                snr=round(float(np.exp(rng.uniform(math.log(1.0), math.log(30.0)))), 2),
                ratio=round(
                    float(np.exp(rng.uniform(math.log(0.3), math.log(3.0))))
                    if kind == "mixed"
                    else float(rng.uniform(1.5, 4.0)),
                    3,
                ),
                transfer_db=round(float(rng.uniform(6.0, 20.0)), 1),
                offset=round(float(rng.uniform(-0.01, 0.01)), 4),
                slip=round(float(rng.uniform(-0.02, 0.02)), 4),
                seed=int(rng.integers(0, 2**28)),
                windows=int(rng.choice([10, 10, 20])),
            )
        )
    return out


def _machine_pipeline(case: MachineCase, window: int, two: bool) -> Pipeline:
    sensors = []
    for sid, (col, name) in enumerate(
        (("a_g", case.bearing), ("b_g", case.bearing2)) if two else (("x_g", case.bearing),)
    ):
        g = GEOMETRIES[name]
        cols = [col] if two else ["x_g", "y_g"]
        sensors.append(
            {
                "id": f"s{sid + 1}",
                "bearing": {
                    "rolling_elements": g.rolling_elements,
                    "ball_diameter_mm": g.ball_diameter_mm,
                    "pitch_diameter_mm": g.pitch_diameter_mm,
                    "contact_angle_deg": g.contact_angle_deg,
                },
                "channels": [{"column": c, "unit": "g"} for c in cols],
            }
        )
    lo = max(0.6 * min(case.resonance_hz, case.resonance2_hz if two else 1e9), 500.0)
    hi = min(1.5 * max(case.resonance_hz, case.resonance2_hz if two else 0.0), 0.45 * case.fs)
    return Pipeline.model_validate(
        {
            "schema_version": 1,
            "machine": {
                "id": f"machine-{case.index}",
                "speed": {
                    "nominal_rpm": case.rpm,
                    "min_rpm": 0.95 * case.rpm,
                    "max_rpm": 1.05 * case.rpm,
                },
            },
            "acquisition": {"sample_rate_hz": case.fs, "window_samples": window, "overlap": 0.5},
            "sensors": sensors,
            "envelope": {"band_hz": [round(lo), round(hi)]},
        }
    )


def _structural(case: MachineCase, duration: float, amp: float) -> tuple[TransientSpec, ...]:
    """Knocks at a fixed rate near the family's kinematic frequency (a structural or
    electrical line: not locked to the shaft, not jittered)."""
    g = GEOMETRIES[case.bearing]
    f = g.defect_frequencies_hz(case.rpm / 60.0)[case.fault] * (1.0 + case.offset)
    return tuple(TransientSpec(t, amp) for t in np.arange(0.37 / f, duration, 1.0 / f).tolist())


def _single(case: MachineCase, duration: float, seed: int, faults: list[FaultSpec]) -> SimSpec:
    fr = case.rpm / 60.0
    healthy_1x = 0.5 * 1.4 * math.sqrt(2) * 2 * math.pi * fr / 9806.65
    transients: tuple[TransientSpec, ...] = ()
    if case.kind.startswith("structural"):
        transients = _structural(case, duration, case.snr * case.noise_g)
    return SimSpec(
        fs=case.fs,
        duration_s=duration,
        rpm=case.rpm,
        bearing=GEOMETRIES[case.bearing],
        channels=("x_g", "y_g"),
        noise_rms_g=case.noise_g,
        resonance_hz=case.resonance_hz,
        faults=(FaultSpec("unbalance", healthy_1x), *faults),
        seed=seed,
        defect_slip=case.slip,
        transients=transients,
    )


def _diagnose(
    pipeline: Pipeline,
    x: np.ndarray[Any, Any],
    fs: float,
    channels: tuple[str, ...],
    baseline: Baseline | None = None,
) -> Any:
    stream = FeatureStream(pipeline, fs)
    assert stream.engine is not None
    stream.engine.set_baseline(baseline)
    for _wf in stream.feed([Chunk(x, fs, 0.0, channels)]):
        pass
    return stream.engine.judge()


def run_machine_case(case: MachineCase) -> dict[str, Any]:
    """Simulate a machine case and diagnose it; the case, the verdict and the outcome."""
    g = GEOMETRIES[case.bearing]
    n = choose_window(case.fs, case.rpm / 60.0, g.defect_multiples())
    if case.kind == "crosstalk":
        g2 = GEOMETRIES[case.bearing2]
        n = max(n, choose_window(case.fs, case.rpm / 60.0, g2.defect_multiples()))
    duration = n * (1 + (case.windows - 1) / 2) / case.fs + 0.01
    amp = case.snr * case.noise_g
    extra: dict[str, Any] = {}
    if case.kind == "crosstalk":
        fr = case.rpm / 60.0
        healthy_1x = 0.5 * 1.4 * math.sqrt(2) * 2 * math.pi * fr / 9806.65
        spec = MachineSpec(
            sensors=(
                MachineSensor("a_g", g, case.resonance_hz, case.noise_g),
                MachineSensor("b_g", GEOMETRIES[case.bearing2], case.resonance2_hz, case.noise_g),
            ),
            faults=((0, FaultSpec("unbalance", healthy_1x)), (0, FaultSpec(case.fault, amp))),  # type: ignore[arg-type]
            transfer_db=case.transfer_db,
            fs=case.fs,
            duration_s=duration,
            rpm=case.rpm,
            seed=case.seed,
            defect_slip=case.slip,
        )
        d = _diagnose(
            _machine_pipeline(case, n, True), simulate_machine(spec), case.fs, spec.channels
        )
        other = next((c for c in d.channels if c.channel == "b_g"), None)
        extra = {
            "channel": d.channel,
            "healthy_label": other.label if other is not None else "",
            "healthy_confidence": other.confidence if other is not None else 0.0,
            "healthy_transmitted_from": other.transmitted_from if other is not None else "",
            "healthy_alone": other.verdict.label if other is not None else "",
        }
    else:
        faults: list[FaultSpec] = []
        if case.kind == "mixed":
            faults = [FaultSpec(case.fault, amp), FaultSpec(case.fault2, amp * case.ratio)]  # type: ignore[arg-type]
        elif case.kind == "structural_fault":
            faults = [FaultSpec(case.fault, amp * case.ratio)]  # type: ignore[arg-type]
        pl = _machine_pipeline(case, n, False)
        x = simulate(_single(case, duration, case.seed, faults))
        baseline = None
        if case.kind.startswith("structural"):
            # The machine's healthy running, recorded before: the same line, no fault.
            healthy = simulate(_single(case, duration, case.seed ^ 0x5A5A, []))
            stream = FeatureStream(pl, case.fs)
            builder = BaselineBuilder(n, pl.columns)
            for wf in stream.feed([Chunk(healthy, case.fs, 0.0, ("x_g", "y_g"))]):
                builder.add(wf.features, case.fs)
            baseline = builder.result()
            extra["label_without_baseline"] = _diagnose(pl, x, case.fs, ("x_g", "y_g")).label
        d = _diagnose(pl, x, case.fs, ("x_g", "y_g"), baseline)
        extra["channel"] = d.channel
    margin = next((c.margin_db for c in d.channels if c.channel == d.channel), 0.0)
    res = {
        **dataclasses.asdict(case),
        "truth": list(case.truth),
        "window": n,
        "label": d.label,
        "confidence": d.confidence,
        "margin_db": margin,
        "calibration": next(
            (c.verdict.calibration for c in d.channels if c.channel == d.channel), ""
        ),
        **extra,
    }
    res["outcome"] = machine_outcome(res)
    return res


def machine_outcome(r: dict[str, Any]) -> str:
    """``right``, ``uncertain``, ``missed`` or ``wrong`` of a machine case; for a fault seen
    by two sensors also ``wrong`` when the healthy sensor's bearing is named at a confidence
    of 0.5 or more or the fault is placed at the healthy sensor."""
    truth, label = r["truth"], r["label"]
    if r["kind"] == "crosstalk":
        if r["healthy_label"].startswith("bearing_") and r["healthy_confidence"] >= 0.5:
            return "wrong"
        if label in truth and r["channel"] != "a_g":
            return "wrong"
    if label in truth:
        return "right"
    if truth == ["unknown"]:
        return "wrong"
    if label == "unknown":
        return "missed"
    if label == "bearing_uncertain":
        return "uncertain"
    return "wrong"


def summarise_machines(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table of the machine cases: outcomes per kind; for the two-bearing
    machine, how often the healthy sensor said "transmitted" or named a fault of its own;
    for the structural line, what the verdict was without the baseline."""
    lines = [
        "| case | cases | right | uncertain | missed | wrong | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in MACHINE_KINDS:
        rs = [r for r in results if r["kind"] == kind]
        if not rs:
            continue
        c = collections.Counter(r["outcome"] for r in rs)
        note = ""
        if kind == "crosstalk":
            sent = sum(bool(r["healthy_transmitted_from"]) for r in rs)
            own = sum(r["healthy_label"].startswith("bearing_") for r in rs)
            conf = sum(
                r["healthy_label"].startswith("bearing_") and r["healthy_confidence"] >= 0.5
                for r in rs
            )
            alone = sum(r["healthy_alone"].startswith("bearing_") for r in rs)
            note = (
                f"healthy sensor: judged alone {alone} bearing verdicts; {sent} said "
                f"transmitted, {own} named a fault of its own ({conf} at ≥ 0.5)"
            )
        elif kind.startswith("structural"):
            truth = {r["index"]: r["truth"] for r in rs}
            without = sum(r["label_without_baseline"] in truth[r["index"]] for r in rs)
            note = f"without the baseline: {without} right"
        lines.append(
            f"| {kind} | {len(rs)} | {c['right']} | {c['uncertain']} | {c['missed']} "
            f"| {c['wrong']} | {note} |"
        )
    return "\n".join(lines)


def outcome(truth: str, label: str, extra: str = "") -> str:
    """``right``, ``uncertain``, ``missed`` or ``wrong`` (module docstring); naming the
    second fault a case also has (``extra``) is ``missed`` for its first."""
    if label == truth:
        return "right"
    if extra and label == extra:
        return "missed"
    if truth == "unknown":
        return "wrong"
    if label == "unknown":
        return "missed"
    if label == "bearing_uncertain" and truth.startswith("bearing_"):
        return "uncertain"
    return "wrong"


def summarise(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table: outcomes per fault kind, and the wrong cases listed."""
    by: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        by[r["kind"]][r["outcome"]] += 1
    lines = [
        "| fault | cases | right | uncertain | missed | wrong |",
        "|---|---|---|---|---|---|",
    ]
    for kind in (*KINDS, "tone"):
        c = by.get(kind)
        if not c:
            continue
        total = sum(c.values())
        lines.append(
            f"| {kind} | {total} | {c['right']} | {c['uncertain']} | {c['missed']} | {c['wrong']} |"
        )
    return "\n".join(lines)


#: Bearing fault kinds, the cases :func:`breakdown` groups.
BEARING_KINDS = ("bpfo", "bpfi", "bsf", "ftf")


def breakdown(results: Sequence[dict[str, Any]]) -> str:
    """Markdown tables of the bearing-fault cases by what limits them: the impact peak over
    the noise rms, the bins per shaft order (``rpm/60 ÷ fs/window``: the gates of
    docs/diagnosis.md §2) and the bearing."""

    def snr_group(r: dict[str, Any]) -> str:
        edges = ((1.0, "< 1"), (3.0, "1–3"), (10.0, "3–10"))
        return next((name for edge, name in edges if r["snr"] < edge), "≥ 10")

    def bins_group(r: dict[str, Any]) -> str:
        per_order = r["rpm"] / 60.0 / (r["fs"] / r["window"])
        edges = ((6.0, "< 6"), (20.0, "6–20"))
        return next((name for edge, name in edges if per_order < edge), "≥ 20")

    bearing_cases = [r for r in results if r["kind"] in BEARING_KINDS]
    tables = []
    for title, key, order in (
        ("impact peak / noise rms", snr_group, ("< 1", "1–3", "3–10", "≥ 10")),
        ("bins per shaft order", bins_group, ("< 6", "6–20", "≥ 20")),
        ("bearing", lambda r: str(r["bearing"]), tuple(GEOMETRIES)),
    ):
        lines = [
            f"| {title} | cases | right | uncertain | missed | wrong |",
            "|---|---|---|---|---|---|",
        ]
        for group in order:
            c = collections.Counter(r["outcome"] for r in bearing_cases if key(r) == group)
            if c:
                lines.append(
                    f"| {group} | {sum(c.values())} | {c['right']} | {c['uncertain']} "
                    f"| {c['missed']} | {c['wrong']} |"
                )
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _kind(r: dict[str, Any]) -> str | None:
    """The confidence map a result's verdict is read with (:mod:`pdm.diagnosis.confidence`)."""
    label = r["label"]
    if label == "bearing_uncertain":
        return "bearing_uncertain"
    if label.startswith("bearing_"):
        # "bearing_cage_bare" is read on the bearing map, capped, and not fitted (its
        # ambiguity, another bearing's cage, is not in a one-bearing simulation).
        return str(r.get("calibration") or "bearing")
    if label in ("unbalance", "misalignment", "looseness"):
        return "speed"
    return None


def _truths(r: dict[str, Any]) -> list[str]:
    truth = r["truth"]
    return [*truth] if isinstance(truth, list) else [truth, r.get("extra", "")]


def _correct(r: dict[str, Any]) -> bool:
    """Is a verdict right, as its confidence claims: the named fault (either of a mixed
    case's two), or for ``bearing_uncertain`` some bearing fault."""
    if r["label"] == "bearing_uncertain":
        return any(t.startswith("bearing_") for t in _truths(r))
    return r["label"] in _truths(r)


def calibrate(
    results: Sequence[dict[str, Any]], reruns: Sequence[dict[str, Any]]
) -> dict[str, tuple[float, float]]:
    """Logistic fit ``P(confirmed) = 1 / (1 + exp(−(a + b·margin)))`` per kind of label.

    A verdict is *confirmed* when it is right and a second recording of the same machine
    (``reruns``: the same case with another seed) gets the same label: on the simulator
    nearly every named verdict is right, and what a margin buys is that the call holds.
    """
    from sklearn.linear_model import LogisticRegression

    out = {}
    for kind in ("bearing", "bearing_contested", "bearing_uncertain", "speed"):
        pairs = [(r, q) for r, q in zip(results, reruns, strict=True) if _kind(r) == kind]
        x = np.array([[min(max(r["margin_db"], -100.0), 100.0)] for r, _q in pairs])
        y = np.array([_correct(r) and q["label"] == r["label"] for r, q in pairs])
        if len(pairs) < 10 or y.all() or not y.any():
            out[kind] = (0.0, round(math.log(19) / 10, 4))  # 0.5 at 0 dB, 0.95 at 10 dB
            continue
        lr = LogisticRegression(C=1.0).fit(x, y)
        out[kind] = (round(float(lr.intercept_[0]), 3), round(float(lr.coef_[0][0]), 4))
    return out


def reliability(
    results: Sequence[dict[str, Any]], reruns: Sequence[dict[str, Any]] | None = None
) -> str:
    """A markdown table: named verdicts by confidence, how often they were right, and (with
    ``reruns``) how often they were right and held on the second recording."""
    bins = [(0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01)]
    again: list[dict[str, Any] | None] = list(reruns) if reruns else [None] * len(results)
    head = "| confidence | verdicts | right |" + (" right and held |" if reruns else "")
    lines = [head, "|---|---|---|" + ("---|" if reruns else "")]
    for lo, hi in bins:
        sel = [
            (r, q)
            for r, q in zip(results, again, strict=True)
            if _kind(r) and lo <= r["confidence"] < hi
        ]
        if not sel:
            continue
        right = sum(_correct(r) for r, _q in sel)
        row = f"| {lo:.2f}–{min(hi, 1.0):.2f} | {len(sel)} | {right} ({right / len(sel):.0%}) |"
        if reruns:
            held = sum(_correct(r) and q is not None and q["label"] == r["label"] for r, q in sel)
            row += f" {held} ({held / len(sel):.0%}) |"
        lines.append(row)
    return "\n".join(lines)


def _iter_results(cases: Sequence[Case], band: str) -> Iterator[dict[str, Any]]:
    for case in cases:
        yield run_case(case, band=band)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdm.tools.diagnosis_sweep", description=__doc__)
    p.add_argument("--cases", type=int, default=540, help="cases (default 540)")
    p.add_argument(
        "--machines",
        type=int,
        default=200,
        help="machine-level cases: two bearings, mixed faults, structural lines (default 200)",
    )
    p.add_argument(
        "--tones",
        type=int,
        default=0,
        help="healthy machines with a stationary line at a defect frequency (default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--band", choices=("fixed", "auto"), default="fixed")
    p.add_argument("--json", metavar="FILE", help="write every case's result as JSON Lines")
    p.add_argument(
        "--calibrate", action="store_true", help="also fit the confidence map (confidence.py)"
    )
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    machines: list[dict[str, Any]] = []
    out = open(args.json, "w") if args.json else None
    cases = make_cases(args.cases, args.seed) + make_tone_cases(args.tones, args.seed)
    mcases = make_machine_cases(args.machines, args.seed)
    try:
        for r in _iter_results(cases, args.band):
            results.append(r)
            if out is not None:
                out.write(json.dumps(r) + "\n")
            if r["outcome"] == "wrong":
                print(f"wrong: {json.dumps(r)}", file=sys.stderr)
        for mc in mcases:
            r = run_machine_case(mc)
            machines.append(r)
            if out is not None:
                out.write(json.dumps(r) + "\n")
            if r["outcome"] == "wrong":
                print(f"wrong: {json.dumps(r)}", file=sys.stderr)
    finally:
        if out is not None:
            out.close()
    print(summarise(results))
    print()
    print(breakdown(results))
    if machines:
        print()
        print(summarise_machines(machines))
    reruns = None
    if args.calibrate:
        again = [dataclasses.replace(c, seed=c.seed ^ 0x5EED) for c in cases]
        reruns = list(_iter_results(again, args.band))
        reruns += [run_machine_case(dataclasses.replace(c, seed=c.seed ^ 0x5EED)) for c in mcases]
        if args.json:
            with open(args.json, "a") as f:
                for r in reruns:
                    f.write(json.dumps({**r, "rerun": True}) + "\n")
    print()
    print(reliability(results + machines, reruns))
    if reruns is not None:
        print()
        print(f"CALIBRATION = {calibrate(results + machines, reruns)!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
