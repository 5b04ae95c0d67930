"""The generator: running-speed tones, bearing-defect impulse trains ringing a resonance,
noise, sensor faults, in fixed blocks keyed on the seed (:func:`simulate`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from pdm.errors import ConfigError
from pdm.sources.simulator.specs import (
    BLOCK_SAMPLES,
    IMPACT_GAIN_STEP,
    IMPACT_KINDS,
    JITTER_CLIP,
    JITTER_GROUP,
    TONE_KINDS,
    SensorFaultSpec,
    SimSpec,
    envelope,
    impact_rate_hz,
    modulation_hz,
    sample_index,
    tone_components,
)


@dataclass
class Resonator:
    """Sampled impulse response ``exp(−σt)·sin(ω_d t)`` as a 2-pole recursive filter."""

    a: npt.NDArray[np.float64]  # lfilter denominator
    decay: float  # σ / fs, per sample
    theta: float  # ω_d / fs, rad per sample
    norm: float  # 1 / continuous peak, so amplitudes mean "peak in g"

    @classmethod
    def make(cls, spec: SimSpec) -> Resonator:
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
        groups = n // JITTER_GROUP
        out = np.empty(n.shape, dtype=np.float64)
        for g in np.unique(groups).tolist():
            if g not in self._cache:
                rng = np.random.default_rng([self.seed, 2, self.index, g])
                self._cache[g] = rng.standard_normal(JITTER_GROUP)
            sel = groups == g
            out[sel] = self._cache[g][n[sel] - g * JITTER_GROUP]
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
        n_lo = max(0, math.floor((lo - self.n0 - JITTER_CLIP * T) / T - self.phase) - 1)
        n_hi = math.floor((hi - self.n0 + JITTER_CLIP * T) / T - self.phase) + 1
        if n_hi < n_lo or self.amplitude_g == 0.0:
            empty = np.empty(0, dtype=np.float64)
            return empty, empty
        n = np.arange(n_lo, n_hi + 1, dtype=np.int64)
        slip = np.clip(self.jitter * self._z(n), -JITTER_CLIP, JITTER_CLIP)
        tau = self.n0 + (n + self.phase) * T + slip * T
        keep = (tau >= lo) & (tau < hi) & (tau >= self.n0)
        tau = tau[keep]
        amp = self.amplitude_g * envelope(tau, self.n0, self.ramp)
        if self.mod_hz > 0:
            # Load-zone modulation: full amplitude when the defect passes the
            # bottom of the load zone, (1 − depth) opposite it.
            cyc = 2 * math.pi * self.mod_hz * tau / self.fs + self.mod_phase
            amp = amp * (1.0 - self.mod_depth * 0.5 * (1.0 - np.cos(cyc)))
        return tau, amp


class Synth:
    """Generates the recording block by block, strictly in order."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.nch = len(spec.channels)
        self.res = Resonator.make(spec)
        self.zi = np.zeros(2)
        self.next_block = 0
        # Channel c sits at c·90°: exact quarter-turn sines avoid 6e-17 leakage.
        self.cos_psi = [(1.0, 0.0, -1.0, 0.0)[c % 4] for c in range(self.nch)]
        self.sin_psi = [(0.0, 1.0, 0.0, -1.0)[c % 4] for c in range(self.nch)]
        self.gain = np.array([IMPACT_GAIN_STEP**c for c in range(self.nch)])
        fs, fr = spec.fs, spec.shaft_hz
        self.fr_cps = fr / fs  # shaft cycles per sample
        # (n0, ramp, [(order, complex amplitude a·e^{iφ} in g)]) per tone fault
        self.tones: list[tuple[int, int, list[tuple[float, complex]]]] = []
        self.trains: list[_Train] = []
        for i, f in enumerate(spec.faults):
            rng = np.random.default_rng([spec.seed, 1, i])
            n0 = sample_index(f.onset_s, fs)
            ramp = sample_index(f.ramp_s, fs)
            if f.kind in TONE_KINDS:
                comps = []
                for order, amp in tone_components(f.kind, f.amplitude_g):
                    phase = float(rng.uniform(0, 2 * math.pi))
                    if order * fr < fs / 2:  # a harmonic above Nyquist would alias
                        comps.append((order, amp * complex(math.cos(phase), math.sin(phase))))
                self.tones.append((n0, ramp, comps))
            else:
                rate = impact_rate_hz(spec, f.kind)
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
                        mod_hz=modulation_hz(spec, f.kind),
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
            self.sensor.append((sf, sample_index(sf.start_s, fs), sample_index(sf.end_s, fs), cols))
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
                fsum *= envelope(pos, n0, ramp)
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
    synth = Synth(spec)
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
    if spec.faults[fault_index].kind not in IMPACT_KINDS:
        raise ConfigError(f"fault {fault_index} ({spec.faults[fault_index].kind}) has no impacts")
    synth = Synth(spec)
    train = next(t for t in synth.trains if t.index == fault_index)
    tau, amp = train.impacts(0.0, float(n))
    return tau[amp > 0]
