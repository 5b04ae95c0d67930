"""What to simulate: a fault, a sensor fault, a transient, a whole recording
(:class:`SimSpec`), checked when built, and the rates and orders a spec implies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from pdm.dsp.bearings import BearingGeometry, lookup_bearing
from pdm.errors import ConfigError

#: Bump when a change alters generated samples, so stale fixtures are explained.
GENERATOR_VERSION = 1

#: Internal generation block, samples. Fixed (never the caller's chunk size) so
#: the samples do not depend on how the stream is cut. Changing it changes output.
BLOCK_SAMPLES = 65536

#: The longest chunk a :class:`Simulator` yields, samples (the longest analysis window).
MAX_CHUNK_SAMPLES = 2**22

#: Standard gravity, m/s² per g.
G0 = 9.80665

#: The largest amplitude, noise or bias a spec may ask for, g: beyond ±1e6 g no accelerometer
#: reads, and a reader takes such samples for no measurement (README, "Recordings").
MAX_G = 1e6

#: The most values (samples × channels) one recording file may hold: it is built in memory
#: (float64 samples, then ~12 bytes of text a value), 50 M ≈ 1 GB at the peak; e.g. 10 min of
#: three channels at 25.6 kHz is 46 M. Longer runs: several files, or ``run --simulate``.
MAX_RECORDING_VALUES = 50_000_000

FaultKind = Literal["unbalance", "misalignment", "looseness", "bpfo", "bpfi", "bsf", "ftf"]
SensorFaultKind = Literal["flatline", "clipping", "dropout"]

TONE_KINDS = ("unbalance", "misalignment", "looseness")
IMPACT_KINDS = ("bpfo", "bpfi", "bsf", "ftf")
# Slip-jitter random numbers come in groups of this many impacts, one generator
# each, so impact n's jitter is a pure function of (seed, fault, n).
JITTER_GROUP = 4096
# Jitter is clipped to ±0.4 period so impacts never swap order.
JITTER_CLIP = 0.4
IMPACT_GAIN_STEP = 0.7
_LOOSENESS_DECAY = 0.8
_LOOSENESS_SUB = 0.4
DEFAULT_START = 1767225600.0  # 2026-01-01T00:00:00Z
_DEFAULT_BEARING = lookup_bearing("6205")


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class FaultSpec:
    """One machine fault component.

    Attributes
    ----------
    kind : {"unbalance", "misalignment", "looseness", "bpfo", "bpfi", "bsf", "ftf"}
        What fault. See the module docstring for the signature of each.
    amplitude_g : float
        For tones: 0-peak acceleration of the reference order in g (1× for
        unbalance and looseness, 2× for misalignment). For bearing faults: peak
        of one impact's ringing at the resonance in g (at the top of the
        modulation for ``bpfi``/``bsf``).
    onset_s : float
        Time after the start of the recording at which the fault appears, s.
        The component is exactly zero before sample ``round(onset_s · fs)``.
    ramp_s : float
        Duration of a linear growth from onset to full amplitude, s (0: a step).
    """

    kind: FaultKind
    amplitude_g: float
    onset_s: float = 0.0
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ConfigError(f"fault kind={self.kind!r} must be one of {get_args(FaultKind)}")
        check_finite("amplitude_g", self.amplitude_g, minimum=0.0, maximum=MAX_G)
        check_finite("onset_s", self.onset_s, minimum=0.0)
        check_finite("ramp_s", self.ramp_s, minimum=0.0)


@dataclass(frozen=True)
class SensorFaultSpec:
    """A sensor/acquisition fault over ``[start_s, end_s)``.

    Attributes
    ----------
    kind : {"flatline", "clipping", "dropout"}
        ``flatline``: the output sticks at the value of the sample just before
        the span. ``clipping``: samples are limited to ± ``full_scale_g``.
        ``dropout``: samples are replaced by ``fill``.
    start_s, end_s : float
        Span, s from the start of the recording; samples
        ``round(start_s · fs)`` up to (not including) ``round(end_s · fs)``.
    full_scale_g : float or None
        Clipping level in g; required for ``clipping``.
    channels : tuple of str or None
        Affected channels; None for all.
    fill : {"zero", "nan"}
        What a ``dropout`` writes. CSV fixtures use zeros so they stay numeric.
    """

    kind: SensorFaultKind
    start_s: float
    end_s: float
    full_scale_g: float | None = None
    channels: tuple[str, ...] | None = None
    fill: Literal["zero", "nan"] = "zero"

    def __post_init__(self) -> None:
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(self.channels))
        if self.kind not in get_args(SensorFaultKind):
            raise ConfigError(
                f"sensor fault kind={self.kind!r} must be one of {get_args(SensorFaultKind)}"
            )
        check_finite("start_s", self.start_s, minimum=0.0)
        check_finite("end_s", self.end_s, minimum=0.0)
        if not self.end_s > self.start_s:
            raise ConfigError(f"sensor fault end_s={self.end_s} must be > start_s={self.start_s}")
        if self.kind == "clipping":
            if self.full_scale_g is None:
                raise ConfigError("a clipping sensor fault needs full_scale_g")
            check_finite("full_scale_g", self.full_scale_g, minimum=0.0, strict=True)
        if self.fill not in ("zero", "nan"):
            raise ConfigError(f"fill={self.fill!r} must be 'zero' or 'nan'")


@dataclass(frozen=True)
class TransientSpec:
    """A single knock at ``time_s`` ringing the resonance with peak ``amplitude_g`` (g)."""

    time_s: float
    amplitude_g: float

    def __post_init__(self) -> None:
        check_finite("time_s", self.time_s, minimum=0.0)
        check_finite("amplitude_g", self.amplitude_g, minimum=0.0, maximum=MAX_G)


@dataclass(frozen=True)
class SimSpec:
    """Everything that determines a simulated recording.

    Attributes
    ----------
    fs : float
        Sample rate, Hz.
    duration_s : float
        Length, s. ``math.inf`` gives an endless :class:`Simulator` stream
        (:func:`simulate` and :func:`write_recording` need a finite one).
    rpm : float
        Shaft speed, rev/min (constant).
    bearing : BearingGeometry
        Bearing whose defect frequencies the impact trains use.
    channels : tuple of str
        Channel names; channel ``c`` is a radial sensor at ``c × 90°``.
    noise_rms_g : float
        Broadband (white, 0…fs/2) Gaussian noise, rms g, independent per channel.
    resonance_hz : float
        Structural resonance rung by impacts, Hz (< fs/2).
    faults : tuple of FaultSpec
        Machine faults.
    sensor_faults : tuple of SensorFaultSpec
        Sensor faults, applied in this order after everything else is summed.
    dc_bias_g : float
        Constant offset, g.
    start_time : float
        Time of the first sample, POSIX seconds (UTC).
    seed : int
        Seed of every random number (>= 0).
    damping_ratio : float
        Damping ratio ζ of the resonance (0.05–0.1 is typical of housings).
    slip_jitter : float
        Standard deviation of each impact's time error, as a fraction of the
        defect period.
    defect_slip : float
        Fraction by which every bearing-defect rate (and the FTF modulation of a
        ball fault) runs *below* its kinematic value: ``rate · (1 − defect_slip)``.
        Negative values run above. Within ± 0.05; 0 (pure rolling) by default.
    modulation_depth : float
        Depth of the load-zone modulation of ``bpfi`` (at 1×) and ``bsf`` (at
        FTF) impacts: their peak varies between ``(1 − depth)`` and 1 times
        ``amplitude_g``.
    transients : tuple of TransientSpec
        Single knocks (e.g. to drive a channel into clipping).
    lsb_g : float or None
        ADC quantisation step, g; None for no quantisation.
    """

    fs: float = 25600.0
    duration_s: float = 10.0
    rpm: float = 1480.0
    bearing: BearingGeometry = _DEFAULT_BEARING
    channels: tuple[str, ...] = ("x_g", "y_g")
    noise_rms_g: float = 0.02
    resonance_hz: float = 3500.0
    faults: tuple[FaultSpec, ...] = ()
    sensor_faults: tuple[SensorFaultSpec, ...] = ()
    dc_bias_g: float = 0.0
    start_time: float = DEFAULT_START
    seed: int = 0
    damping_ratio: float = 0.07
    slip_jitter: float = 0.01
    modulation_depth: float = 0.5
    transients: tuple[TransientSpec, ...] = ()
    lsb_g: float | None = None
    defect_slip: float = 0.0

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples, so a spec stays hashable.
        for name in ("channels", "faults", "sensor_faults", "transients"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_finite("fs", self.fs, minimum=0.0, strict=True, maximum=10e6)
        if not (self.duration_s > 0 and not math.isnan(self.duration_s)):
            raise ConfigError(f"duration_s={self.duration_s} must be > 0")
        check_finite("rpm", self.rpm, minimum=0.0, strict=True, maximum=200_000)
        if not isinstance(self.bearing, BearingGeometry):
            raise ConfigError(f"bearing={self.bearing!r} must be a BearingGeometry")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise ConfigError(f"channels={self.channels!r} must be non-empty and unique")
        check_finite("noise_rms_g", self.noise_rms_g, minimum=0.0, maximum=MAX_G)
        check_finite("resonance_hz", self.resonance_hz, minimum=0.0, strict=True)
        if self.resonance_hz >= self.fs / 2:
            raise ConfigError(
                f"resonance_hz={self.resonance_hz} must be below Nyquist ({self.fs / 2} Hz)"
            )
        check_finite("dc_bias_g", self.dc_bias_g, minimum=-MAX_G, maximum=MAX_G)
        check_finite("start_time", self.start_time)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an int >= 0")
        if not 0 < self.damping_ratio < 1:
            raise ConfigError(f"damping_ratio={self.damping_ratio} must be in (0, 1)")
        if not 0 <= self.slip_jitter <= 0.1:
            raise ConfigError(f"slip_jitter={self.slip_jitter} must be in [0, 0.1]")
        if not 0 <= self.modulation_depth <= 1:
            raise ConfigError(f"modulation_depth={self.modulation_depth} must be in [0, 1]")
        check_finite("defect_slip", self.defect_slip)
        if not -0.05 <= self.defect_slip <= 0.05:
            raise ConfigError(f"defect_slip={self.defect_slip} must be in [-0.05, 0.05]")
        if self.lsb_g is not None:
            check_finite("lsb_g", self.lsb_g, minimum=0.0, strict=True)
        for f in self.faults:
            if not isinstance(f, FaultSpec):
                raise ConfigError(f"faults must hold FaultSpec, got {f!r}")
        for t in self.transients:
            if not isinstance(t, TransientSpec):
                raise ConfigError(f"transients must hold TransientSpec, got {t!r}")
        for sf in self.sensor_faults:
            if not isinstance(sf, SensorFaultSpec):
                raise ConfigError(f"sensor_faults must hold SensorFaultSpec, got {sf!r}")
            unknown = set(sf.channels or ()) - set(self.channels)
            if unknown:
                raise ConfigError(
                    f"sensor fault channels {sorted(unknown)} are not in channels={self.channels}"
                )
        fr = self.rpm / 60.0
        for f in self.faults:
            rate = impact_rate_hz(self, f.kind) if f.kind in IMPACT_KINDS else 0.0
            if rate * 4 > self.fs:
                raise ConfigError(
                    f"{f.kind} impact rate {rate:.1f} Hz at rpm={self.rpm} "
                    f"is too high for fs={self.fs} Hz"
                )
        if fr >= self.fs / 2:
            raise ConfigError(f"rpm={self.rpm} puts 1× above Nyquist at fs={self.fs}")

    @property
    def shaft_hz(self) -> float:
        """Shaft frequency ``rpm / 60``, Hz."""
        return self.rpm / 60.0

    @property
    def n_samples(self) -> int | None:
        """Samples in the recording, ``round(duration_s · fs)``; None when endless."""
        if math.isinf(self.duration_s):
            return None
        return sample_index(self.duration_s, self.fs)


def check_finite(
    name: str,
    value: float,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ConfigError(f"{name}={value} must be {'>' if strict else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value:g} must be <= {maximum:g}")


def sample_index(t_s: float, fs: float) -> int:
    """Index of the sample nearest to ``t_s`` seconds (halves round up)."""
    return math.floor(t_s * fs + 0.5)


def impact_rate_hz(spec: SimSpec, kind: str) -> float:
    freqs = spec.bearing.defect_frequencies_hz(spec.shaft_hz)
    # A spalled ball hits the inner and the outer race once per spin revolution.
    rate = 2.0 * freqs["bsf"] if kind == "bsf" else freqs[kind]
    return rate * (1.0 - spec.defect_slip)


def modulation_hz(spec: SimSpec, kind: str) -> float:
    if kind == "bpfi":
        return spec.shaft_hz
    if kind == "bsf":  # the cage carries the ball through the load zone; it slips too
        return spec.bearing.defect_frequencies_hz(spec.shaft_hz)["ftf"] * (1.0 - spec.defect_slip)
    return 0.0


def tone_components(kind: str, amplitude_g: float) -> list[tuple[float, float]]:
    """(order, 0-peak amplitude in g) of a running-speed fault."""
    if kind == "unbalance":
        return [(1.0, amplitude_g)]
    if kind == "misalignment":
        return [(1.0, 0.5 * amplitude_g), (2.0, amplitude_g)]
    # looseness: a truncated, rattling response rich in harmonics, plus the
    # 0.5× sub-harmonic typical of a part that touches every other revolution.
    comps = [(0.5, _LOOSENESS_SUB * amplitude_g)]
    comps += [(float(k), amplitude_g * _LOOSENESS_DECAY ** (k - 1)) for k in range(1, 11)]
    return comps


def envelope(pos: npt.NDArray[np.float64], n0: int, ramp: int) -> npt.NDArray[np.float64]:
    """Onset envelope at sample positions ``pos``: 0 before ``n0``, > 0 from ``n0`` on.

    With a ramp of ``ramp`` samples it grows linearly and reaches 1 at ``n0 + ramp − 1``.
    """
    if ramp <= 0:
        return (pos >= n0).astype(np.float64)
    return np.where(pos >= n0, np.clip((pos - n0 + 1.0) / ramp, 0.0, 1.0), 0.0)
