"""Seeded vibration simulator: accelerometer signals in g with known ground truth.

The simulator builds what a radial accelerometer on a bearing housing of a
rotating machine would see, from parts whose answer is known exactly:

* **Running-speed tones** at the shaft frequency ``fr = rpm / 60`` (Hz):
  ``unbalance`` (1×), ``misalignment`` (2× at the given amplitude plus 1× at half
  of it) and ``looseness`` (1×…10× decaying by 0.8 per order, plus a 0.5×
  sub-harmonic at 0.4 of the 1× amplitude). Amplitudes are 0-peak acceleration
  in g; :func:`ground_truth` converts them to velocity (mm/s) with
  ``v = a·g0 / (2π f)``.
* **Bearing-defect impulse trains** (``bpfo``, ``bpfi``, ``bsf``, ``ftf``): one
  impact per defect period, the rate taken from
  :meth:`pdm.dsp.bearings.BearingGeometry.defect_frequencies_hz` (a ball fault
  strikes both races once per spin revolution, so its rate is 2 × BSF). Each
  impact rings a structural resonance (a damped sinusoid, ``resonance_hz``,
  ``damping_ratio``); its instant is jittered by a random slip (``slip_jitter``
  × the period, standard deviation, drawn independently for every nominal
  instant so the error does not accumulate). ``defect_slip`` moves every defect
  rate off kinematics by a fixed fraction, as the rolling elements' slip does
  on real machines (lines sit 1–2 % off; 0 by default). Inner-race impacts are
  amplitude-modulated at 1× (the defect rotates through the load zone), ball
  impacts at FTF (the cage carries the ball through it).
* **Broadband Gaussian noise** (rms in g) and a **DC bias** (g).
* **Sensor faults** over spans: ``flatline`` (stuck at the last value),
  ``clipping`` (at ± full scale) and ``dropout`` (zeros or NaN).
* An optional **ADC quantisation step** ``lsb_g``.

Channel ``c`` is treated as a radial sensor at ``c × 90°``: a tone reaches it
with its phase retarded by that angle (the orbit of a forward-whirling rotor),
impacts with gain ``0.7**c``, and every channel has its own noise.

A **machine** of several bearings (:class:`MachineSpec`, :func:`simulate_machine`) has one
sensor per bearing housing, each with its own bearing, resonance and noise: a bearing
fault's impacts ring its own housing in full and reach the others ``transfer_db`` weaker
(6–20 dB through shaft and frame), at the same instants, ringing their resonances; the
shaft's running-speed tones reach every sensor.

Determinism
-----------
Samples are generated in fixed blocks of :data:`BLOCK_SAMPLES`, whatever chunk
size the caller asks for, with all random numbers keyed on the seed:

* noise of block ``k`` from ``default_rng([seed, 0, k])``;
* phases of fault ``i`` from ``default_rng([seed, 1, i])``;
* slip of impact ``n`` of fault ``i`` from ``default_rng([seed, 2, i, n // 4096])``.

The resonator's filter state (``lfilter``'s ``zi``) is carried from block to
block. So the same seed gives the same samples however the stream is cut, and a
shorter recording is a prefix of a longer one with the same spec.

>>> spec = SimSpec(duration_s=0.5, faults=(FaultSpec("unbalance", 0.1),))
>>> x = simulate(spec)
>>> x.shape
(12800, 2)
>>> ground_truth(spec)["shaft_hz"]
24.666666666666668
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import math
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import scipy
from scipy.signal import lfilter

from pdm.dsp.bearings import BearingGeometry, lookup_bearing
from pdm.errors import ConfigError, InputError, PdmError
from pdm.sources.base import Chunk

__all__ = [
    "BLOCK_SAMPLES",
    "GENERATOR_VERSION",
    "FaultSpec",
    "MachineSensor",
    "MachineSpec",
    "SensorFaultSpec",
    "SimSpec",
    "Simulator",
    "TransientSpec",
    "build_parser",
    "ground_truth",
    "impact_positions",
    "main",
    "simulate",
    "simulate_machine",
    "spec_from_dict",
    "spec_to_dict",
    "truth_path",
    "write_fixtures",
    "write_recording",
]

#: Bump when a change alters generated samples, so stale fixtures are explained.
GENERATOR_VERSION = 1

#: Internal generation block, samples. Fixed (never the caller's chunk size) so
#: the samples do not depend on how the stream is cut. Changing it changes output.
BLOCK_SAMPLES = 65536

#: Standard gravity, m/s² per g.
G0 = 9.80665

FaultKind = Literal["unbalance", "misalignment", "looseness", "bpfo", "bpfi", "bsf", "ftf"]
SensorFaultKind = Literal["flatline", "clipping", "dropout"]

_TONE_KINDS = ("unbalance", "misalignment", "looseness")
_IMPACT_KINDS = ("bpfo", "bpfi", "bsf", "ftf")
# Slip-jitter random numbers come in groups of this many impacts, one generator
# each, so impact n's jitter is a pure function of (seed, fault, n).
_JITTER_GROUP = 4096
# Jitter is clipped to ±0.4 period so impacts never swap order.
_JITTER_CLIP = 0.4
_IMPACT_GAIN_STEP = 0.7
_LOOSENESS_DECAY = 0.8
_LOOSENESS_SUB = 0.4
_DEFAULT_START = 1767225600.0  # 2026-01-01T00:00:00Z
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
        _check_finite("amplitude_g", self.amplitude_g, minimum=0.0)
        _check_finite("onset_s", self.onset_s, minimum=0.0)
        _check_finite("ramp_s", self.ramp_s, minimum=0.0)


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
        _check_finite("start_s", self.start_s, minimum=0.0)
        _check_finite("end_s", self.end_s, minimum=0.0)
        if not self.end_s > self.start_s:
            raise ConfigError(f"sensor fault end_s={self.end_s} must be > start_s={self.start_s}")
        if self.kind == "clipping":
            if self.full_scale_g is None:
                raise ConfigError("a clipping sensor fault needs full_scale_g")
            _check_finite("full_scale_g", self.full_scale_g, minimum=0.0, strict=True)
        if self.fill not in ("zero", "nan"):
            raise ConfigError(f"fill={self.fill!r} must be 'zero' or 'nan'")


@dataclass(frozen=True)
class TransientSpec:
    """A single knock at ``time_s`` ringing the resonance with peak ``amplitude_g`` (g)."""

    time_s: float
    amplitude_g: float

    def __post_init__(self) -> None:
        _check_finite("time_s", self.time_s, minimum=0.0)
        _check_finite("amplitude_g", self.amplitude_g, minimum=0.0)


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
    start_time: float = _DEFAULT_START
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
        _check_finite("fs", self.fs, minimum=0.0, strict=True)
        if not (self.duration_s > 0 and not math.isnan(self.duration_s)):
            raise ConfigError(f"duration_s={self.duration_s} must be > 0")
        _check_finite("rpm", self.rpm, minimum=0.0, strict=True)
        if not isinstance(self.bearing, BearingGeometry):
            raise ConfigError(f"bearing={self.bearing!r} must be a BearingGeometry")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise ConfigError(f"channels={self.channels!r} must be non-empty and unique")
        _check_finite("noise_rms_g", self.noise_rms_g, minimum=0.0)
        _check_finite("resonance_hz", self.resonance_hz, minimum=0.0, strict=True)
        if self.resonance_hz >= self.fs / 2:
            raise ConfigError(
                f"resonance_hz={self.resonance_hz} must be below Nyquist ({self.fs / 2} Hz)"
            )
        _check_finite("dc_bias_g", self.dc_bias_g)
        _check_finite("start_time", self.start_time)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an int >= 0")
        if not 0 < self.damping_ratio < 1:
            raise ConfigError(f"damping_ratio={self.damping_ratio} must be in (0, 1)")
        if not 0 <= self.slip_jitter <= 0.1:
            raise ConfigError(f"slip_jitter={self.slip_jitter} must be in [0, 0.1]")
        if not 0 <= self.modulation_depth <= 1:
            raise ConfigError(f"modulation_depth={self.modulation_depth} must be in [0, 1]")
        _check_finite("defect_slip", self.defect_slip)
        if not -0.05 <= self.defect_slip <= 0.05:
            raise ConfigError(f"defect_slip={self.defect_slip} must be in [-0.05, 0.05]")
        if self.lsb_g is not None:
            _check_finite("lsb_g", self.lsb_g, minimum=0.0, strict=True)
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
            rate = _impact_rate_hz(self, f.kind) if f.kind in _IMPACT_KINDS else 0.0
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
        return _sample_index(self.duration_s, self.fs)


def _check_finite(
    name: str, value: float, *, minimum: float | None = None, strict: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ConfigError(f"{name}={value} must be {'>' if strict else '>='} {minimum}")


def _sample_index(t_s: float, fs: float) -> int:
    """Index of the sample nearest to ``t_s`` seconds (halves round up)."""
    return math.floor(t_s * fs + 0.5)


def _impact_rate_hz(spec: SimSpec, kind: str) -> float:
    freqs = spec.bearing.defect_frequencies_hz(spec.shaft_hz)
    # A spalled ball hits the inner and the outer race once per spin revolution.
    rate = 2.0 * freqs["bsf"] if kind == "bsf" else freqs[kind]
    return rate * (1.0 - spec.defect_slip)


def _modulation_hz(spec: SimSpec, kind: str) -> float:
    if kind == "bpfi":
        return spec.shaft_hz
    if kind == "bsf":  # the cage carries the ball through the load zone; it slips too
        return spec.bearing.defect_frequencies_hz(spec.shaft_hz)["ftf"] * (1.0 - spec.defect_slip)
    return 0.0


def _tone_components(kind: str, amplitude_g: float) -> list[tuple[float, float]]:
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


def _envelope(pos: npt.NDArray[np.float64], n0: int, ramp: int) -> npt.NDArray[np.float64]:
    """Onset envelope at sample positions ``pos``: 0 before ``n0``, > 0 from ``n0`` on.

    With a ramp of ``ramp`` samples it grows linearly and reaches 1 at ``n0 + ramp − 1``.
    """
    if ramp <= 0:
        return (pos >= n0).astype(np.float64)
    return np.where(pos >= n0, np.clip((pos - n0 + 1.0) / ramp, 0.0, 1.0), 0.0)


# --------------------------------------------------------------------------- generator


@dataclass
class _Resonator:
    """Sampled impulse response ``exp(−σt)·sin(ω_d t)`` as a 2-pole recursive filter."""

    a: npt.NDArray[np.float64]  # lfilter denominator
    decay: float  # σ / fs, per sample
    theta: float  # ω_d / fs, rad per sample
    norm: float  # 1 / continuous peak, so amplitudes mean "peak in g"

    @classmethod
    def make(cls, spec: SimSpec) -> _Resonator:
        wn = 2 * math.pi * spec.resonance_hz
        zeta = spec.damping_ratio
        sigma = zeta * wn
        wd = wn * math.sqrt(1 - zeta * zeta)
        t_peak = math.atan2(wd, sigma) / wd
        peak = math.exp(-sigma * t_peak) * math.sin(wd * t_peak)
        p = math.exp(-sigma / spec.fs)
        theta = wd / spec.fs
        a = np.array([1.0, -2.0 * p * math.cos(theta), p * p])
        return cls(a=a, decay=sigma / spec.fs, theta=theta, norm=1.0 / peak)

    def inputs(
        self, tau: npt.NDArray[np.float64], amp: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Filter inputs that make the output an impact at fractional sample ``tau``.

        Two inputs, at ``m+1`` and ``m+2`` (``m = floor(tau)``), pin the first two
        output samples to the continuous response sampled ``1−δ`` and ``2−δ``
        after the impact; the 2-pole recursion then reproduces it exactly. This is
        an exact fractional delay, with no interpolation filter.
        """
        m = np.floor(tau)
        delta = tau - m
        u1 = 1.0 - delta
        u2 = 2.0 - delta
        y1 = np.exp(-self.decay * u1) * np.sin(self.theta * u1)
        y2 = np.exp(-self.decay * u2) * np.sin(self.theta * u2)
        scale = amp * self.norm
        c1 = scale * y1
        c2 = scale * (y2 + self.a[1] * y1)  # a[1] = −2p·cos θ
        return m.astype(np.int64) + 1, c1, c2


@dataclass
class _Train:
    """One bearing fault's impulse train; impact n is a pure function of (seed, n)."""

    index: int
    kind: str
    rate_hz: float
    period: float  # samples
    phase: float  # of the first nominal impact, in periods
    amplitude_g: float
    n0: int
    ramp: int
    mod_hz: float
    mod_depth: float
    mod_phase: float
    jitter: float
    seed: int
    fs: float
    _cache: dict[int, npt.NDArray[np.float64]] = dataclasses.field(default_factory=dict)

    def _z(self, n: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        groups = n // _JITTER_GROUP
        out = np.empty(n.shape, dtype=np.float64)
        for g in np.unique(groups).tolist():
            if g not in self._cache:
                rng = np.random.default_rng([self.seed, 2, self.index, g])
                self._cache[g] = rng.standard_normal(_JITTER_GROUP)
            sel = groups == g
            out[sel] = self._cache[g][n[sel] - g * _JITTER_GROUP]
        # The stream moves forward: forget groups that can no longer be needed.
        lowest = int(groups.min()) if groups.size else 0
        for g in [k for k in self._cache if k < lowest]:
            del self._cache[g]
        return out

    def impacts(
        self, lo: float, hi: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Impacts with fractional sample position in ``[lo, hi)``: (positions, peak g)."""
        T = self.period
        n_lo = max(0, math.floor((lo - self.n0 - _JITTER_CLIP * T) / T - self.phase) - 1)
        n_hi = math.floor((hi - self.n0 + _JITTER_CLIP * T) / T - self.phase) + 1
        if n_hi < n_lo or self.amplitude_g == 0.0:
            empty = np.empty(0, dtype=np.float64)
            return empty, empty
        n = np.arange(n_lo, n_hi + 1, dtype=np.int64)
        slip = np.clip(self.jitter * self._z(n), -_JITTER_CLIP, _JITTER_CLIP)
        tau = self.n0 + (n + self.phase) * T + slip * T
        keep = (tau >= lo) & (tau < hi) & (tau >= self.n0)
        tau = tau[keep]
        amp = self.amplitude_g * _envelope(tau, self.n0, self.ramp)
        if self.mod_hz > 0:
            # Load-zone modulation: full amplitude when the defect passes the
            # bottom of the load zone, (1 − depth) opposite it.
            cyc = 2 * math.pi * self.mod_hz * tau / self.fs + self.mod_phase
            amp = amp * (1.0 - self.mod_depth * 0.5 * (1.0 - np.cos(cyc)))
        return tau, amp


class _Synth:
    """Generates the recording block by block, strictly in order."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.nch = len(spec.channels)
        self.res = _Resonator.make(spec)
        self.zi = np.zeros(2)
        self.next_block = 0
        # Channel c sits at c·90°: exact quarter-turn sines avoid 6e-17 leakage.
        self.cos_psi = [(1.0, 0.0, -1.0, 0.0)[c % 4] for c in range(self.nch)]
        self.sin_psi = [(0.0, 1.0, 0.0, -1.0)[c % 4] for c in range(self.nch)]
        self.gain = np.array([_IMPACT_GAIN_STEP**c for c in range(self.nch)])
        fs, fr = spec.fs, spec.shaft_hz
        self.fr_cps = fr / fs  # shaft cycles per sample
        # (n0, ramp, [(order, complex amplitude a·e^{iφ} in g)]) per tone fault
        self.tones: list[tuple[int, int, list[tuple[float, complex]]]] = []
        self.trains: list[_Train] = []
        for i, f in enumerate(spec.faults):
            rng = np.random.default_rng([spec.seed, 1, i])
            n0 = _sample_index(f.onset_s, fs)
            ramp = _sample_index(f.ramp_s, fs)
            if f.kind in _TONE_KINDS:
                comps = []
                for order, amp in _tone_components(f.kind, f.amplitude_g):
                    phase = float(rng.uniform(0, 2 * math.pi))
                    if order * fr < fs / 2:  # a harmonic above Nyquist would alias
                        comps.append((order, amp * complex(math.cos(phase), math.sin(phase))))
                self.tones.append((n0, ramp, comps))
            else:
                rate = _impact_rate_hz(spec, f.kind)
                self.trains.append(
                    _Train(
                        index=i,
                        kind=f.kind,
                        rate_hz=rate,
                        period=fs / rate,
                        phase=float(rng.uniform(0, 1)),
                        amplitude_g=f.amplitude_g,
                        n0=n0,
                        ramp=ramp,
                        mod_hz=_modulation_hz(spec, f.kind),
                        mod_depth=spec.modulation_depth,
                        mod_phase=float(rng.uniform(0, 2 * math.pi)),
                        jitter=spec.slip_jitter,
                        seed=spec.seed,
                        fs=fs,
                    )
                )
        self.knocks = (
            np.array([t.time_s * fs for t in spec.transients], dtype=np.float64),
            np.array([t.amplitude_g for t in spec.transients], dtype=np.float64),
        )
        self.sensor: list[tuple[SensorFaultSpec, int, int, list[int]]] = []
        for sf in spec.sensor_faults:
            cols = [spec.channels.index(c) for c in (sf.channels or spec.channels)]
            self.sensor.append(
                (sf, _sample_index(sf.start_s, fs), _sample_index(sf.end_s, fs), cols)
            )
        self.hold: dict[int, npt.NDArray[np.float64]] = {}

    def block(self) -> npt.NDArray[np.float64]:
        """The next block of :data:`BLOCK_SAMPLES` samples, (BLOCK_SAMPLES, n_channels) g."""
        spec = self.spec
        blk = self.next_block
        self.next_block += 1
        s0, s1 = blk * BLOCK_SAMPLES, (blk + 1) * BLOCK_SAMPLES
        pos = np.arange(s0, s1, dtype=np.float64)
        out = np.zeros((BLOCK_SAMPLES, self.nch))

        # Tones as one complex sum F = Σ a·e^{i(kθ + φ)}: channel c at angle ψ gets
        # Re(F·e^{−iψ}) = Re F·cos ψ + Im F·sin ψ, so the trig is done once for all
        # channels. Integer orders are powers of e^{iθ} (one complex multiply each,
        # ~4× cheaper than cos + sin); θ is reduced to [0, 2π) first so hour-long
        # streams keep their precision.
        tone = np.zeros(BLOCK_SAMPLES, dtype=np.complex128)
        powers: dict[int, npt.NDArray[np.complex128]] = {}
        for n0, ramp, comps in self.tones:
            if s1 <= n0:
                continue
            fsum = np.zeros(BLOCK_SAMPLES, dtype=np.complex128)
            for order, camp in comps:
                if order.is_integer():
                    h = int(order)
                    if not powers:
                        powers[1] = np.exp(2j * math.pi * np.mod(self.fr_cps * pos, 1.0))
                    for j in range(max(powers) + 1, h + 1):
                        powers[j] = powers[j - 1] * powers[1]
                    fsum += camp * powers[h]
                else:
                    fsum += camp * np.exp(2j * math.pi * np.mod(order * self.fr_cps * pos, 1.0))
            if s0 < n0 + ramp:  # onset or ramp inside this block
                fsum *= _envelope(pos, n0, ramp)
            tone += fsum
        if self.tones:
            for c in range(self.nch):
                if self.cos_psi[c]:
                    out[:, c] += self.cos_psi[c] * tone.real
                if self.sin_psi[c]:
                    out[:, c] += self.sin_psi[c] * tone.imag

        # Impacts whose two filter inputs (m+1, m+2) fall in this block: tau in [s0−2, s1−1).
        x = np.zeros(BLOCK_SAMPLES)
        taus = [tr.impacts(s0 - 2.0, s1 - 1.0) for tr in self.trains]
        kt, ka = self.knocks
        sel = (kt >= s0 - 2.0) & (kt < s1 - 1.0)
        taus.append((kt[sel], ka[sel]))
        for tau, amp in taus:
            if tau.size == 0:
                continue
            i1, c1, c2 = self.res.inputs(tau, amp)
            for idx, val in ((i1, c1), (i1 + 1, c2)):
                ok = (idx >= s0) & (idx < s1)
                np.add.at(x, idx[ok] - s0, val[ok])
        ring, self.zi = lfilter([1.0], self.res.a, x, zi=self.zi)
        out += ring[:, None] * self.gain[None, :]

        if spec.noise_rms_g > 0:
            rng = np.random.default_rng([spec.seed, 0, blk])
            out += spec.noise_rms_g * rng.standard_normal((BLOCK_SAMPLES, self.nch))
        if spec.dc_bias_g:
            out += spec.dc_bias_g

        for j, (sf, a, b, cols) in enumerate(self.sensor):
            h = max(a - 1, 0)
            if sf.kind == "flatline" and s0 <= h < s1:
                self.hold[j] = out[h - s0, cols].copy()
            lo, hi = max(a, s0), min(b, s1)
            if lo >= hi:
                continue
            rows = slice(lo - s0, hi - s0)
            if sf.kind == "flatline":
                out[rows, cols] = self.hold[j]
            elif sf.kind == "clipping":
                fsg = float(sf.full_scale_g or 0.0)
                out[rows, cols] = np.clip(out[rows, cols], -fsg, fsg)
            else:
                out[rows, cols] = np.nan if sf.fill == "nan" else 0.0

        if spec.lsb_g is not None:
            out = np.round(out / spec.lsb_g) * spec.lsb_g
        out += 0.0  # turns −0.0 into 0.0 so text output never shows "-0"
        return out


def _require_finite(spec: SimSpec) -> int:
    n = spec.n_samples
    if n is None:
        raise ConfigError("duration_s is infinite: use Simulator for an endless stream")
    return n


def simulate(spec: SimSpec) -> npt.NDArray[np.float64]:
    """Generate a whole recording.

    Parameters
    ----------
    spec : SimSpec
        What to simulate; ``duration_s`` must be finite.

    Returns
    -------
    (n_samples, n_channels) float64
        Acceleration in g, ``n_samples = round(duration_s · fs)``, columns in
        ``spec.channels`` order. Sample ``i`` is at ``spec.start_time + i / fs``.
    """
    n = _require_finite(spec)
    synth = _Synth(spec)
    out = np.empty((n, len(spec.channels)))
    for s0 in range(0, n, BLOCK_SAMPLES):
        blk = synth.block()
        out[s0 : s0 + BLOCK_SAMPLES] = blk[: n - s0]
    return out


def impact_positions(spec: SimSpec, fault_index: int) -> npt.NDArray[np.float64]:
    """Fractional sample positions of the impacts of a bearing fault.

    Parameters
    ----------
    spec : SimSpec
        A finite spec.
    fault_index : int
        Index into ``spec.faults`` of a ``bpfo``/``bpfi``/``bsf``/``ftf`` fault.

    Returns
    -------
    (n_impacts,) float64
        Impact instants in samples from the start (time = position / fs); each
        impact's ringing is non-zero from sample ``floor(position) + 1``.
    """
    n = _require_finite(spec)
    if spec.faults[fault_index].kind not in _IMPACT_KINDS:
        raise ConfigError(f"fault {fault_index} ({spec.faults[fault_index].kind}) has no impacts")
    synth = _Synth(spec)
    train = next(t for t in synth.trains if t.index == fault_index)
    tau, amp = train.impacts(0.0, float(n))
    return tau[amp > 0]


# --------------------------------------------------------------------------- machines


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
    start_time: float = _DEFAULT_START
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
        _check_finite("transfer_db", self.transfer_db, minimum=0.0)
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
        tones = tuple(f for _i, f in self.faults if f.kind in _TONE_KINDS)
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
                if f.kind in _TONE_KINDS:
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
    n = _sample_index(spec.duration_s, spec.fs)
    out = np.zeros((n, len(spec.sensors)))
    for s, part, gain in spec.parts():
        out[:, s] += gain * simulate(part)[:, 0]
    return out


# --------------------------------------------------------------------------- streaming


class Simulator:
    """A :class:`pdm.sources.base.Source` that yields a simulated recording.

    Parameters
    ----------
    spec : SimSpec
        What to simulate; ``duration_s=math.inf`` streams for ever.
    chunk_samples : int
        Samples per chunk (the last one may be shorter). The samples do not
        depend on it.

    Examples
    --------
    >>> with Simulator(SimSpec(duration_s=1.0), chunk_samples=10000) as src:
    ...     [c.n_samples for c in src.chunks()]
    [10000, 10000, 5600]
    """

    def __init__(self, spec: SimSpec | None = None, *, chunk_samples: int = 8192) -> None:
        if chunk_samples < 1:
            raise ConfigError(f"chunk_samples={chunk_samples} must be >= 1")
        self.spec = spec if spec is not None else SimSpec()
        self.chunk_samples = int(chunk_samples)
        self.channels: tuple[str, ...] = self.spec.channels
        self.sample_rate_hz: float = self.spec.fs
        self._closed = False

    def chunks(self) -> Iterator[Chunk]:
        """Yield the recording from its start; each call starts over with the same samples."""
        if self._closed:
            raise InputError("the simulator is closed")
        spec = self.spec
        total = spec.n_samples
        synth = _Synth(spec)
        cs = self.chunk_samples
        emitted = 0  # samples yielded so far
        made = 0  # samples generated so far
        pending: list[npt.NDArray[np.float64]] = []
        n_pending = 0
        while total is None or emitted < total:
            while n_pending < cs and (total is None or made < total):
                blk = synth.block()
                if total is not None:
                    blk = blk[: total - made]
                made += blk.shape[0]
                pending.append(blk)
                n_pending += blk.shape[0]
            buf = np.concatenate(pending) if len(pending) > 1 else pending[0]
            take = min(cs, n_pending)
            yield Chunk(
                data=np.ascontiguousarray(buf[:take]),
                fs=spec.fs,
                t0=spec.start_time + emitted / spec.fs,
                channels=spec.channels,
            )
            emitted += take
            rest = buf[take:]
            pending = [rest] if rest.shape[0] else []
            n_pending = rest.shape[0]
            if self._closed:
                return

    def close(self) -> None:
        """Stop: a running :meth:`chunks` generator ends after its current chunk."""
        self._closed = True

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- ground truth


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


def _iso(t: float) -> str:
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
        n0 = _sample_index(f.onset_s, fs)
        ramp = _sample_index(f.ramp_s, fs)
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
        if f.kind in _TONE_KINDS:
            comps = []
            for order, amp in _tone_components(f.kind, f.amplitude_g):
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
            rate = _impact_rate_hz(spec, f.kind)
            mod_hz = _modulation_hz(spec, f.kind)
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
        a, b = _sample_index(sf.start_s, fs), _sample_index(sf.end_s, fs)
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
    res = _Resonator.make(spec)
    truth: dict[str, Any] = {
        "generator": {"name": "pdm.sources.simulator", "version": GENERATOR_VERSION},
        "spec": spec_to_dict(spec),
        "sample_rate_hz": fs,
        "n_samples": n,
        "duration_s": None if n is None else n / fs,
        "channels": list(spec.channels),
        "units": "g",
        "start_time": spec.start_time,
        "start_time_iso": _iso(spec.start_time),
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
            {"channel": ch, "angle_deg": 90.0 * c, "impact_gain": _IMPACT_GAIN_STEP**c}
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


# --------------------------------------------------------------------------- files

CsvFormat = Literal["csv", "csv.gz"]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def truth_path(path: str | os.PathLike[str]) -> Path:
    """Sidecar ground-truth path of a recording: ``<stem>.truth.json`` beside it."""
    p = Path(path)
    return p.with_name(_stem(p) + ".truth.json")


def _csv_text(spec: SimSpec, data: npt.NDArray[np.float64], time_column: bool) -> str:
    fs_txt = repr(int(spec.fs)) if float(spec.fs).is_integer() else repr(spec.fs)
    head = [f"# sample_rate_hz={fs_txt}", f"# start_time={_iso(spec.start_time)}"]
    cols = (["time"] if time_column else []) + list(spec.channels)
    head.append(",".join(cols))
    row_fmt = ",".join(["%.6g"] * data.shape[1])
    rows = [row_fmt % tuple(r) for r in data.tolist()]
    if time_column:
        # Integer microseconds: exact, and the same on every platform.
        base = np.datetime64(round(spec.start_time * 1e6), "us")
        offs = np.round(np.arange(data.shape[0]) * (1e6 / spec.fs)).astype(np.int64)
        stamps = np.datetime_as_string(base + offs.astype("timedelta64[us]"), unit="us")
        rows = [f"{t}Z,{r}" for t, r in zip(stamps.tolist(), rows, strict=True)]
    return "\n".join(head + rows) + "\n"


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


# Level 8 is within 0.5 % of level 9's size at 60 % of its time.
_GZIP_LEVEL = 8


def _gzip_bytes(raw: bytes) -> bytes:
    buf = io.BytesIO()
    # No file name and mtime 0 in the header, so the bytes depend on content only.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=_GZIP_LEVEL
    ) as gz:
        gz.write(raw)
    return buf.getvalue()


def _truth_bytes(spec: SimSpec) -> bytes:
    return (json.dumps(ground_truth(spec), indent=2, allow_nan=False) + "\n").encode()


def write_recording(
    path: str | os.PathLike[str],
    spec: SimSpec,
    *,
    fmt: CsvFormat | None = None,
    time_column: bool = False,
) -> None:
    """Write ``simulate(spec)`` as CSV and its ground truth as ``<stem>.truth.json``.

    The file starts with ``# sample_rate_hz=…`` and ``# start_time=…`` (ISO 8601,
    UTC) comment lines, then a header row (``time`` first when ``time_column``,
    then the channel names), then one row per sample with values in g as
    ``%.6g``. Times are ISO 8601 UTC with microseconds. NaN is written ``nan``.

    Parameters
    ----------
    path : path-like
        Output file.
    spec : SimSpec
        A finite spec.
    fmt : {"csv", "csv.gz"} or None
        Plain or gzip (reproducible: no name, mtime 0); None picks ``csv.gz``
        when the path ends in ``.gz``.
    time_column : bool
        Add a ``time`` column.
    """
    p = Path(path)
    if fmt is None:
        fmt = "csv.gz" if p.name.endswith(".gz") else "csv"
    if fmt not in get_args(CsvFormat):
        raise ConfigError(f"fmt={fmt!r} must be one of {get_args(CsvFormat)}")
    raw = _csv_text(spec, simulate(spec), time_column).encode("ascii")
    try:
        _atomic_write(p, _gzip_bytes(raw) if fmt == "csv.gz" else raw)
        _atomic_write(truth_path(p), _truth_bytes(spec))
    except OSError as exc:
        raise InputError(f"{p}: cannot write recording: {exc}") from exc


# --------------------------------------------------------------------------- fixtures

# Every fixture is quantised to 2 mg (the step of a ±16 g, 15-bit front end,
# common in MEMS sensors): 0.02 g noise spans ~10 steps, so spectra are
# unaffected, and short numbers keep the folder small.
_FIXTURE_LSB = 0.002
_HEALTHY = FaultSpec("unbalance", 0.05)


def _fixture_specs() -> dict[str, tuple[SimSpec, bool, str]]:
    base = SimSpec(duration_s=12.0, lsb_g=_FIXTURE_LSB)
    r = dataclasses.replace
    knocks = tuple(TransientSpec(t, 40.0) for t in (6.2, 6.4, 6.6, 6.8))
    return {
        "healthy.csv.gz": (
            r(base, faults=(_HEALTHY,), seed=101),
            False,
            "healthy machine: small unbalance (1× 0.05 g) and 0.02 g noise",
        ),
        "outer_race.csv.gz": (
            r(base, faults=(_HEALTHY, FaultSpec("bpfo", 0.8, onset_s=4.0)), seed=102),
            False,
            "outer-race defect (BPFO impacts, 0.8 g peak at 3.5 kHz) from 4.0 s",
        ),
        "inner_race.csv.gz": (
            r(base, faults=(_HEALTHY, FaultSpec("bpfi", 0.6)), seed=103),
            False,
            "inner-race defect (BPFI impacts, 0.6 g peak, modulated at 1×) from 0 s",
        ),
        "unbalance.csv.gz": (
            r(base, faults=(FaultSpec("unbalance", 0.2),), seed=104),
            False,
            "strong unbalance (1× 0.2 g, about 9 mm/s rms)",
        ),
        "sensor_faults.csv.gz": (
            r(
                base,
                faults=(_HEALTHY,),
                transients=knocks,
                sensor_faults=(
                    SensorFaultSpec("flatline", 3.0, 4.0),
                    SensorFaultSpec("clipping", 6.0, 7.0, full_scale_g=16.0),
                    SensorFaultSpec("dropout", 9.0, 10.0, fill="zero"),
                ),
                seed=105,
            ),
            False,
            "healthy signal with sensor faults: flatline 3–4 s, clipping at ±16 g "
            "6–7 s (40 g knocks at 6.2/6.4/6.6/6.8 s), dropout to zeros 9–10 s",
        ),
        "timed_iso8601.csv": (
            r(base, duration_s=1.0, faults=(_HEALTHY,), seed=106),
            True,
            "1 s healthy with an ISO 8601 `time` column (microseconds, UTC)",
        ),
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fixture_readme(meta_files: dict[str, dict[str, Any]]) -> str:
    ref = SimSpec()
    fr = ref.shaft_hz
    d = ref.bearing.defect_frequencies_hz(fr)
    lines = [
        "# Simulated recordings (fixtures)",
        "",
        "**Do not edit by hand.** Every file here is generated by `pdm/sources/simulator.py`;",
        "regenerate them all with",
        "",
        "    python -m pdm.sources.simulator --fixtures fixtures/",
        "",
        "(also `pdm-edge simulate --fixtures fixtures/`). `tests/test_simulator.py` fails when a",
        "file no longer matches what the code generates (SHA-256 in `_meta.json`).",
        "",
        "## Common to all",
        "",
        f"* 25 600 Hz, shaft 1480 rpm (1× = {fr:.3f} Hz), bearing SKF 6205 (9 balls,",
        f"  BPFO {d['bpfo']:.2f} Hz, BPFI {d['bpfi']:.2f} Hz, BSF {d['bsf']:.2f} Hz (ball impacts",
        f"  at 2×BSF = {2 * d['bsf']:.2f} Hz), FTF {d['ftf']:.2f} Hz), structural resonance",
        "  3500 Hz with damping ratio 0.07.",
        "* Columns `x_g`, `y_g`: acceleration in g of two radial sensors 90° apart (y lags x",
        "  by 90° on running-speed tones; bearing impacts reach y with gain 0.7).",
        "* 0.02 g rms white noise per channel; values quantised to 2 mg and written `%.6g`.",
        "* Start time 2026-01-01T00:00:00Z. Files begin with `# sample_rate_hz=25600` and",
        "  `# start_time=2026-01-01T00:00:00Z` comment lines, then a header row.",
        "* Each recording has a `<stem>.truth.json` sidecar: the full spec, defect",
        "  frequencies, onset sample of every fault, sensor-fault sample spans (end",
        "  exclusive), expected tone amplitudes (g) and velocities (mm/s).",
        "  Sample `i` is at `start_time + i / 25600`.",
        "* `_meta.json`: generator version, numpy/scipy/zlib versions, seeds, shapes and",
        "  SHA-256 of each file (`content_sha256` is of the uncompressed text).",
        "",
        "## Files",
        "",
        "| file | s | seed | what | ground truth |",
        "|---|---|---|---|---|",
    ]
    for name, (spec, _tc, what) in _fixture_specs().items():
        truth = ground_truth(spec)
        facts = []
        for f in truth["faults"]:
            if "impact_rate_hz" in f:
                facts.append(
                    f"{f['kind']} impacts every {1000 * f['impact_period_s']:.2f} ms "
                    f"({f['impact_rate_hz']:.2f} Hz) from sample {f['onset_sample']}"
                )
            else:
                c1 = f["components"][0]
                facts.append(
                    f"{f['kind']} 1× {c1['accel_peak_g']} g pk = "
                    f"{c1['velocity_rms_mm_s']:.2f} mm/s rms"
                )
        for sf in truth["sensor_faults"]:
            facts.append(f"{sf['kind']} samples [{sf['start_sample']}, {sf['end_sample']})")
        lines.append(
            f"| `{name}` | {spec.duration_s:g} | {spec.seed} | {what} | {'; '.join(facts)} |"
        )
    lines += [
        "",
        "Recording sizes: "
        + ", ".join(
            f"`{k}` {v['bytes'] / 1e6:.2f} MB" for k, v in meta_files.items() if "shape" in v
        )
        + f"; {sum(v['bytes'] for v in meta_files.values()) / 1e6:.2f} MB with the sidecars.",
        "",
    ]
    return "\n".join(lines)


def write_fixtures(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Regenerate every fixture, its truth sidecar, ``_meta.json`` and ``README.md``.

    The bytes depend only on this code and the numpy/scipy versions (and, for the
    ``.gz`` files, on zlib's deflate; ``_meta.json`` records its version).

    Parameters
    ----------
    out_dir : path-like
        Directory, created if missing.

    Returns
    -------
    list of Path
        Every file written, in a stable order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    meta_files: dict[str, dict[str, Any]] = {}
    for name, (spec, time_column, what) in _fixture_specs().items():
        path = out / name
        write_recording(path, spec, time_column=time_column)
        tpath = truth_path(path)
        data = path.read_bytes()
        content = gzip.decompress(data) if name.endswith(".gz") else data
        meta_files[name] = {
            "what": what,
            "seed": spec.seed,
            "shape": [spec.n_samples, len(spec.channels)],
            "channels": list(spec.channels),
            "sample_rate_hz": spec.fs,
            "duration_s": spec.duration_s,
            "time_column": time_column,
            "bytes": len(data),
            "sha256": _sha256(data),
            "content_sha256": _sha256(content),
        }
        meta_files[tpath.name] = {
            "bytes": tpath.stat().st_size,
            "sha256": _sha256(tpath.read_bytes()),
        }
        written += [path, tpath]
    readme = out / "README.md"
    _atomic_write(readme, _fixture_readme(meta_files).encode())
    meta_files["README.md"] = {
        "bytes": readme.stat().st_size,
        "sha256": _sha256(readme.read_bytes()),
    }
    meta = {
        "generator": "pdm.sources.simulator",
        "generator_version": GENERATOR_VERSION,
        "block_samples": BLOCK_SAMPLES,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "zlib_version": zlib.ZLIB_RUNTIME_VERSION,
        "regenerate": "python -m pdm.sources.simulator --fixtures fixtures/",
        "files": meta_files,
    }
    meta_path = out / "_meta.json"
    _atomic_write(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
    written += [readme, meta_path]
    return written


# --------------------------------------------------------------------------- CLI


def _parse_fault(text: str) -> FaultSpec:
    """``KIND:AMPLITUDE_G[@ONSET_S[+RAMP_S]]``, e.g. ``bpfo:0.5@2.0`` or ``unbalance:0.1@1+2``."""
    try:
        kind, rest = text.split(":", 1)
        amp, _, when = rest.partition("@")
        onset, _, ramp = when.partition("+")
        return FaultSpec(
            kind.strip().lower(),  # type: ignore[arg-type]  # checked in __post_init__
            float(amp),
            float(onset) if onset else 0.0,
            float(ramp) if ramp else 0.0,
        )
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(
            f"--fault {text!r}: expected KIND:AMPLITUDE_G[@ONSET_S[+RAMP_S]] ({exc})"
        ) from exc


def _parse_sensor_fault(text: str) -> SensorFaultSpec:
    """``KIND:START_S-END_S[:FULL_SCALE_G]``, e.g. ``clipping:6-7:16``."""
    try:
        parts = text.split(":")
        start, end = parts[1].split("-")
        full = float(parts[2]) if len(parts) > 2 else None
        return SensorFaultSpec(parts[0].strip().lower(), float(start), float(end), full)  # type: ignore[arg-type]
    except (ValueError, IndexError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(
            f"--sensor-fault {text!r}: expected KIND:START_S-END_S[:FULL_SCALE_G] ({exc})"
        ) from exc


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command-line parser (for ``python -m`` and ``pdm-edge simulate``)."""
    p = argparse.ArgumentParser(
        prog="python -m pdm.sources.simulator",
        description="Write simulated vibration recordings (g) with ground truth.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--fixtures", metavar="DIR", help="regenerate every fixture into DIR")
    what.add_argument("--out", metavar="FILE", help="write one recording (.csv or .csv.gz)")
    p.add_argument("--rpm", type=float, default=1480.0, help="shaft speed, rev/min")
    p.add_argument("--duration", type=float, default=10.0, help="length, s")
    p.add_argument("--fs", type=float, default=25600.0, help="sample rate, Hz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bearing", default="6205", help="designation in the built-in table")
    p.add_argument("--channels", default="x_g,y_g", help="comma-separated channel names")
    p.add_argument("--noise", type=float, default=0.02, help="noise rms, g")
    p.add_argument("--dc", type=float, default=0.0, help="DC bias, g")
    p.add_argument("--resonance", type=float, default=3500.0, help="resonance, Hz")
    p.add_argument("--lsb", type=float, default=None, help="ADC quantisation step, g")
    p.add_argument(
        "--fault",
        type=_parse_fault,
        action="append",
        default=[],
        help="KIND:AMPLITUDE_G[@ONSET_S[+RAMP_S]], repeatable; KIND one of "
        + ", ".join(get_args(FaultKind)),
    )
    p.add_argument(
        "--sensor-fault",
        type=_parse_sensor_fault,
        action="append",
        default=[],
        help="KIND:START_S-END_S[:FULL_SCALE_G], repeatable; KIND one of "
        + ", ".join(get_args(SensorFaultKind)),
    )
    p.add_argument("--time-column", action="store_true", help="add an ISO 8601 time column")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.fixtures:
            for path in write_fixtures(args.fixtures):
                print(path)
            return 0
        spec = SimSpec(
            fs=args.fs,
            duration_s=args.duration,
            rpm=args.rpm,
            bearing=lookup_bearing(args.bearing),
            channels=tuple(c.strip() for c in args.channels.split(",") if c.strip()),
            noise_rms_g=args.noise,
            resonance_hz=args.resonance,
            faults=tuple(args.fault),
            sensor_faults=tuple(args.sensor_fault),
            dc_bias_g=args.dc,
            seed=args.seed,
            lsb_g=args.lsb,
        )
        write_recording(args.out, spec, time_column=args.time_column)
        print(args.out)
        print(truth_path(args.out))
        return 0
    except (PdmError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
