"""A machine's sensors judged together: where a bearing family's lines really come from.

A machine has several sensors, each on its own bearing housing. A defect's impacts travel
through the shaft and the frame: the other sensors see them too, weaker — 6 to 20 dB on
motors and pumps — and ringing other resonances. Judged alone, such a sensor can read the
travelling lines as a family of *its* bearing (FTF ≈ 0.4 × shaft for almost every bearing,
and a dense comb of lines meets some family's kinematics within the slip).

So each sensor is judged on its own first (module docstring), then the machine
arbitrates: a bearing verdict of sensor B whose evidence lines — the fundamental of every
family the verdict rests on, and at least half of their supporting lines — stand *more*
prominently over their local floor at another sensor A (at another location) is not a
fault of B's bearing: the lines are where they are strongest, which is nearest their
source. B's result says "transmitted from A"; when A's bearing kinematics explain the
fundamental (a harmonic of A's BPFO, BPFI, 2 × BSF or FTF — BPFO_A = Z_A × FTF_A, so A's
cage comb runs through its outer race) the reason names that line.

Prominence (dB over the local floor) is compared, not amplitude: sensors differ in
sensitivity and mounting, and a line that travelled is attenuated while the receiving
sensor's own noise is not, so its prominence there is lower. Sensors at one location
(axes of one housing) are never compared with each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.evidence import ChannelVerdict, FamilyEvidence
from pdm.diagnosis.lines import line_threshold_db, over_floor_db
from pdm.diagnosis.rules import BEARING_FAMILIES, Rules

__all__ = ["Transmission", "evidence_lines", "prominence_at", "transmitted"]

F64 = npt.NDArray[np.float64]

_SYMBOL = {"bpfo": "BPFO", "bpfi": "BPFI", "bsf2": "2×BSF", "ftf": "FTF"}


class Transmission(NamedTuple):
    """Why a channel's bearing verdict belongs to another sensor.

    Attributes
    ----------
    source : the channel where the evidence lines are strongest
    lines : (name, Hz, prominence here, prominence at the source), dB, per evidence line
    kinematic : the source bearing's line that explains the fundamental (e.g.
        ``"9× FTF of DE_g's bearing (6205)"``), or '' (a line of the machine, strongest there)
    """

    source: str
    lines: tuple[tuple[str, float, float, float], ...]
    kinematic: str

    def text(self, channel: str, family: str) -> str:
        """One line of reasons for the receiving channel."""
        fund = self.lines[0]
        why = (
            f"{self.kinematic}"
            if self.kinematic
            else "not one of its bearing's lines either: a line of the machine, strongest there"
        )
        return (
            f"{channel}: no fault of its own bearing: the {family.replace('_', ' ')} lines read "
            f"here ({fund[0]} {fund[1]:.1f} Hz {fund[2]:+.1f} dB) stand out more at "
            f"{self.source} ({fund[3]:+.1f} dB; {len(self.lines)} line(s) compared): "
            f"transmitted from {self.source}; {why}"
        )


def evidence_lines(f: FamilyEvidence) -> list[tuple[str, float, float]]:
    """(name, Hz, prominence dB) of a present bearing family's evidence: its fundamental and
    its significant harmonics and sidebands that are no other family's and on no shaft
    harmonic."""
    if not f.lines:
        return []
    fund = f.lines[0]
    out = [(fund.name, fund.found_hz, fund.prominence_db)]
    for ln in f.lines[1:]:
        if (
            ln.significant
            and ln.kind in ("harmonic", "sideband")
            and not ln.shared_with
            and not ln.at_shaft
        ):
            out.append((ln.name, ln.found_hz, ln.prominence_db))
    return out


def prominence_at(
    p: F64, hz: float, df: float, fr: float, healthy: F64 | None = None
) -> tuple[float, int]:
    """Prominence (dB over the local floor) of the strongest bin within ± (1 bin + 0.5 %) of
    ``hz`` in the power spectrum ``p``, and the bins searched; the floor is the median of
    half a shaft order each side (8–64 bins) outside the search range. With ``healthy``
    (the machine's healthy power on the same bins) the prominence is over
    ``max(floor, healthy)``, as the rules read it."""
    n = p.shape[-1]
    k0 = hz / df
    half = 1.0 + 0.005 * k0
    lo, hi = max(1, math.floor(k0 - half)), min(n - 2, math.ceil(k0 + half))
    if hi < lo:
        return -math.inf, 1
    k = lo + int(np.argmax(p[lo : hi + 1]))
    peak = float(p[k])
    fh = int(min(64, max(8, round(0.5 * fr / df))))
    g = math.ceil(half) + 2
    left = np.arange(lo - g - fh, lo - g)
    right = np.arange(hi + g + 1, hi + g + 1 + fh)
    idx = np.concatenate([left[left >= 1], right[right <= n - 2]])
    if idx.size < 4:
        return -math.inf, hi - lo + 1
    floor = max(float(np.median(p[idx])), float(np.finfo(np.float64).tiny))
    if healthy is not None:
        floor = max(floor, float(healthy[k]))
    return float(over_floor_db(peak, floor)), hi - lo + 1


def _kinematic(
    hz: float, fr: float, multiples: dict[str, float] | None, where: str, tol: float, df: float
) -> str:
    """The lowest harmonic of the source bearing's defect frequencies that lands on ``hz``."""
    if multiples is None or fr <= 0:
        return ""
    rates = {
        "bpfo": multiples["bpfo"],
        "bpfi": multiples["bpfi"],
        "bsf2": 2.0 * multiples["bsf"],
        "ftf": multiples["ftf"],
    }
    best: tuple[int, str] | None = None
    for key, m in rates.items():
        h = round(hz / (m * fr))
        if 1 <= h <= 32 and abs(hz - h * m * fr) <= tol * h * m * fr + 2 * df:
            if best is None or h < best[0]:
                best = (h, key)
    if best is None:
        return ""
    h, key = best
    return f"{h}× {_SYMBOL[key]} of {where}"


def _explain(
    hz: float,
    a: int,
    verdicts: Sequence[ChannelVerdict | None],
    names: Sequence[str],
    bearings: Sequence[str],
    multiples: Sequence[dict[str, float] | None],
    fr: float,
    df: float,
) -> str:
    """What the source shows at ``hz``: one of its bearing families' significant lines as
    found there, else the lowest harmonic of its bearing's defect frequencies within 1 %."""
    where = f"{names[a]}'s bearing" + (f" ({bearings[a]})" if bearings[a] else "")
    v = verdicts[a]
    if v is not None and v.label.startswith("bearing_"):
        for f in v.families:
            if not f.bearing:
                continue
            for ln in f.lines:
                if ln.significant and abs(ln.found_hz - hz) <= 2 * df + 0.005 * hz:
                    return f"{ln.name} of {where}, {f.family.replace('_', ' ')}"
    return _kinematic(hz, fr, multiples[a], where, 0.01, df)


def transmitted(
    verdicts: Sequence[ChannelVerdict | None],
    names: Sequence[str],
    locations: Sequence[str],
    bearings: Sequence[str],
    multiples: Sequence[dict[str, float] | None],
    env: F64,
    df: float,
    fr: float,
    k_eff: float,
    rules: Rules,
    healthy: F64 | None = None,
) -> list[Transmission | None]:
    """Per channel: the :class:`Transmission` when its bearing verdict's lines belong to a
    sensor at another location (module docstring), else None.

    Parameters
    ----------
    verdicts : every channel's verdict (None: not judged)
    names, locations, bearings : channel names, their sensor locations, bearing designations
    multiples : every channel's bearing defect multiples (None without a bearing)
    env : (C, n) averaged envelope power of every channel, g²
    df, fr : bin spacing and shaft frequency, Hz
    k_eff : independent windows behind ``env``
    healthy : (C, n) the machine's healthy envelope power on the same bins, or None (the
        prominences are then compared over it too, as the rules read them)
    """
    out: list[Transmission | None] = [None] * len(names)
    if len(set(locations)) < 2:
        return out
    bearing_families = {f for f, _k, _m in BEARING_FAMILIES}
    for b, v in enumerate(verdicts):
        if v is None or not v.label.startswith("bearing_"):
            continue
        fams = [v.family(f) for f in v.named_families if f in bearing_families]
        lines_by_family = [evidence_lines(f) for f in fams if f is not None]
        if not lines_by_family or not all(lines_by_family):
            continue
        best: tuple[float, int, list[tuple[str, float, float, float]]] | None = None
        for a in range(len(names)):
            if locations[a] == locations[b]:
                continue
            compared: list[tuple[str, float, float, float]] = []
            ok = True
            for lines in lines_by_family:
                held = 0
                for i, (name, hz, prom_b) in enumerate(lines):
                    prom_a, bins = prominence_at(
                        env[a], hz, df, fr, None if healthy is None else healthy[a]
                    )
                    thr = max(rules.min_line_db, line_threshold_db(k_eff, bins, rules.p_false))
                    stronger = prom_a >= max(thr, prom_b)
                    if i == 0 and not stronger:
                        ok = False
                        break
                    held += stronger
                    compared.append((name, hz, prom_b, prom_a))
                if not ok or held < 1 + math.ceil((len(lines) - 1) / 2):
                    ok = False
                    break
            if ok:
                total = sum(x[3] for x in compared)
                if best is None or total > best[0]:
                    best = (total, a, compared)
        if best is None:
            continue
        _total, a, compared = best
        out[b] = Transmission(
            names[a], tuple(compared), _explain(compared[0][1], a, verdicts, names, bearings,
                                                multiples, fr, df)
        )  # fmt: skip
    return out
