"""A machine of several bearings, one sensor per housing: a fault's impacts ring its own
housing in full and reach the others weaker (:class:`MachineSpec`, :func:`simulate_machine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm.dsp.bearings import BearingGeometry
from pdm.errors import ConfigError
from pdm.sources.simulator.signals import (
    simulate,
)
from pdm.sources.simulator.specs import (
    DEFAULT_START,
    TONE_KINDS,
    FaultSpec,
    SimSpec,
    TransientSpec,
    check_finite,
    sample_index,
)


@dataclass(frozen=True)
class MachineSensor:
    """One sensor of a machine, on its own bearing's housing.

    Attributes
    ----------
    channel : its column name
    bearing : the bearing under it (its defects ring this housing first)
    resonance_hz : the resonance its housing rings at when struck, Hz
    noise_rms_g : its own broadband noise, rms g
    """

    channel: str
    bearing: BearingGeometry
    resonance_hz: float
    noise_rms_g: float = 0.02


@dataclass(frozen=True)
class MachineSpec:
    """A machine with several sensors, each on its own bearing (see :func:`simulate_machine`).

    Attributes
    ----------
    sensors : the sensors, one channel each
    faults : (sensor index, fault): a bearing fault is in that sensor's bearing; a
        running-speed fault (unbalance, misalignment, looseness) is the shaft's, seen by
        every sensor (the index is then ignored)
    transfer_db : how much weaker a bearing fault's impacts reach the other sensors, dB
        (through shaft and frame: 6–20 dB on motors and pumps)
    fs, duration_s, rpm, seed, start_time, defect_slip, slip_jitter, damping_ratio,
    modulation_depth, transients : as :class:`SimSpec` (knocks ring every housing)
    """

    sensors: tuple[MachineSensor, ...]
    faults: tuple[tuple[int, FaultSpec], ...] = ()
    transfer_db: float = 12.0
    fs: float = 25600.0
    duration_s: float = 10.0
    rpm: float = 1480.0
    seed: int = 0
    start_time: float = DEFAULT_START
    defect_slip: float = 0.0
    slip_jitter: float = 0.01
    damping_ratio: float = 0.07
    modulation_depth: float = 0.5
    transients: tuple[TransientSpec, ...] = ()

    def __post_init__(self) -> None:
        for name in ("sensors", "faults", "transients"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.sensors:
            raise ConfigError("a machine needs at least one sensor")
        names = [x.channel for x in self.sensors]
        if len(set(names)) != len(names):
            raise ConfigError(f"sensor channels {names} must be unique")
        check_finite("transfer_db", self.transfer_db, minimum=0.0)
        for i, f in self.faults:
            if not 0 <= i < len(self.sensors) or not isinstance(f, FaultSpec):
                raise ConfigError(f"fault ({i!r}, {f!r}) must name one of the sensors 0..")
        # Every part is a SimSpec: checked there (rates, resonances, slip) when built.
        self.parts()

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(x.channel for x in self.sensors)

    def parts(self) -> list[tuple[int, SimSpec, float]]:
        """(sensor, spec, gain) whose signals sum to each sensor's: its own noise and the
        shaft's tones, then every bearing fault as it arrives there (its own bearing's at
        gain 1, another's at ``10^(−transfer_db/20)``), ringing this housing's resonance.
        A fault's impacts come at the same instants at every sensor (one seed per fault)."""
        tones = tuple(f for _i, f in self.faults if f.kind in TONE_KINDS)
        common = {
            "fs": self.fs,
            "duration_s": self.duration_s,
            "rpm": self.rpm,
            "start_time": self.start_time,
            "defect_slip": self.defect_slip,
            "slip_jitter": self.slip_jitter,
            "damping_ratio": self.damping_ratio,
            "modulation_depth": self.modulation_depth,
        }
        out: list[tuple[int, SimSpec, float]] = []
        far = 10.0 ** (-self.transfer_db / 20.0)
        for s, sensor in enumerate(self.sensors):
            own = SimSpec(
                bearing=sensor.bearing,
                channels=(sensor.channel,),
                noise_rms_g=sensor.noise_rms_g,
                resonance_hz=sensor.resonance_hz,
                faults=tones,
                transients=self.transients,
                seed=self.seed * 64 + s,
                **common,  # type: ignore[arg-type]
            )
            out.append((s, own, 1.0))
            for k, (src, f) in enumerate(self.faults):
                if f.kind in TONE_KINDS:
                    continue
                part = SimSpec(
                    bearing=self.sensors[src].bearing,
                    channels=(sensor.channel,),
                    noise_rms_g=0.0,
                    resonance_hz=sensor.resonance_hz,
                    faults=(f,),
                    seed=self.seed * 64 + 32 + k,
                    **common,  # type: ignore[arg-type]
                )
                out.append((s, part, 1.0 if src == s else far))
        return out


def simulate_machine(spec: MachineSpec) -> npt.NDArray[np.float64]:
    """A machine's sensors: (n_samples, n_sensors) acceleration, g, columns in
    ``spec.channels`` order (the sum of :meth:`MachineSpec.parts`)."""
    n = sample_index(spec.duration_s, spec.fs)
    out = np.zeros((n, len(spec.sensors)))
    for s, part, gain in spec.parts():
        out[:, s] += gain * simulate(part)[:, 0]
    return out
