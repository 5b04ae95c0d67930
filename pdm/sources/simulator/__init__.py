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

The package, one module per concept (each imports only those listed before it):
``specs`` (what to simulate, checked), ``signals`` (the generator), ``machine`` (several
bearings, one sensor each), ``stream`` (:class:`Simulator`, chunks), ``truth`` (the ground
truth as JSON), ``recordings`` (CSV and truth files), ``fixtures`` (the committed ones) and
``cli`` (``python -m pdm.sources.simulator``). Import the public names from here.
"""

from __future__ import annotations

from pdm.sources.simulator.cli import build_parser, main
from pdm.sources.simulator.fixtures import write_fixtures
from pdm.sources.simulator.machine import MachineSensor, MachineSpec, simulate_machine
from pdm.sources.simulator.recordings import truth_path, write_recording
from pdm.sources.simulator.signals import impact_positions, simulate
from pdm.sources.simulator.specs import (
    BLOCK_SAMPLES,
    GENERATOR_VERSION,
    MAX_CHUNK_SAMPLES,
    FaultSpec,
    SensorFaultSpec,
    SimSpec,
    TransientSpec,
)
from pdm.sources.simulator.stream import Simulator
from pdm.sources.simulator.truth import ground_truth, spec_from_dict, spec_to_dict

__all__ = [
    "BLOCK_SAMPLES",
    "GENERATOR_VERSION",
    "MAX_CHUNK_SAMPLES",
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
