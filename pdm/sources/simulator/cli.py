"""``python -m pdm.sources.simulator`` (and ``pdm-edge simulate``): a recording or the
fixtures from the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import get_args

from pdm.dsp.bearings import lookup_bearing
from pdm.errors import ConfigError, PdmError
from pdm.sources.simulator.fixtures import (
    write_fixtures,
)
from pdm.sources.simulator.recordings import (
    truth_path,
    write_recording,
)
from pdm.sources.simulator.specs import (
    FaultKind,
    FaultSpec,
    SensorFaultKind,
    SensorFaultSpec,
    SimSpec,
)


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
        print(f"pdm-edge: error: {msg}", file=sys.stderr)
        return 2
