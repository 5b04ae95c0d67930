"""Spectrum cursors an analyst reads a spectrum by: harmonics, sidebands, peaks. Pure numpy.

For one channel at one shaft speed: the shaft orders 1×–5× and, for the bearing under the
channel's sensor, 1×–5× each defect frequency (BPFO outer race, BPFI inner race, BSF ball
spin, FTF cage), with the sidebands physics puts around them — BPFI ± 1× shaft (the
defect turns with the shaft through the load zone) and BSF ± FTF (the cage carries the
ball through it); an outer-race defect is stationary and is not modulated. Then:

* :func:`default_range` — the frequency range a chart opens on: the envelope up to just
  past the 5th harmonic of the highest defect frequency shown; the acceleration up to
  20 × shaft speed (unbalance, misalignment, looseness live there; the full range is a
  click away);
* :func:`peak_readout` — for every cursor the strongest line within the slip tolerance,
  its amplitude and how far it stands above the local floor;
* :func:`label_rows` — rows for cursor labels so that no two overlap, placed for the
  narrowest plot the dashboard draws (at 1280 px): wider plots only spread them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.diagnosis.report import place_labels

__all__ = [
    "FAMILIES",
    "FAMILY_COLOURS",
    "Cursor",
    "Peak",
    "cursors",
    "default_families",
    "default_range",
    "defect_frequencies",
    "label_rows",
    "peak_readout",
]

F64 = npt.NDArray[np.float64]

#: Cursor families: key → what an analyst calls it.
FAMILIES: dict[str, str] = {
    "shaft": "shaft speed (1×)",
    "bpfo": "BPFO (outer race)",
    "bpfi": "BPFI (inner race)",
    "bsf": "BSF (ball spin)",
    "ftf": "FTF (cage)",
}
#: One colour per family, the same in every chart and report (readable on dark and light).
FAMILY_COLOURS: dict[str, str] = {
    "shaft": "#8ab4f8",
    "bpfo": "#ff6b6b",
    "bpfi": "#26c6da",
    "bsf": "#ce93d8",
    "ftf": "#ffb74d",
}
_SYMBOL = {"shaft": "", "bpfo": "BPFO", "bpfi": "BPFI", "bsf": "BSF", "ftf": "FTF"}
#: Px per character of a 12 px label (the charts' label font): DejaVu Sans capitals, with margin.
CHAR_PX = 7.8
#: The narrowest plot area the dashboard draws a spectrum in (1280 px window, sidebar open).
MIN_PLOT_PX = 700.0


@dataclass(frozen=True)
class Cursor:
    """One expected line.

    Attributes
    ----------
    family : a key of :data:`FAMILIES`
    harmonic : 1 for the fundamental, k for the k-th harmonic
    kind : ``fundamental``, ``harmonic`` or ``sideband``
    freq_hz : where kinematics puts it, Hz
    label : the short text on the chart (``BPFO``, ``3×BPFO``, ``2×``); '' for sidebands
    name : the full name (``3× BPFO``, ``2× BPFI − 1× shaft``)
    """

    family: str
    harmonic: int
    kind: str
    freq_hz: float
    label: str
    name: str


def defect_frequencies(
    pipeline: Pipeline | None, channel: str | None, *, rpm: float | None = None
) -> tuple[float | None, dict[str, float]]:
    """(shaft frequency in Hz or None, ``{"bpfo": Hz, …}``) of ``channel``'s bearing at the
    pipeline's nominal speed, or ``rpm`` (the speed a window was analysed at)."""
    if rpm is None or not math.isfinite(rpm) or rpm <= 0:
        speed = pipeline.machine.speed if pipeline is not None else None
        if speed is None:
            return None, {}
        rpm = float(speed.fixed_rpm if speed.fixed_rpm is not None else speed.nominal)
    shaft = rpm / 60.0
    bearing = None
    if pipeline is not None and channel is not None:
        try:
            bearing = pipeline.bearing_for(channel)
        except KeyError:
            bearing = None
    if bearing is None:
        return shaft, {}
    return shaft, {k: float(v) for k, v in bearing.defect_frequencies_hz(shaft).items()}


def cursors(
    shaft_hz: float | None,
    defects: dict[str, float],
    families: Sequence[str],
    *,
    harmonics: int = 5,
    sidebands: bool = False,
    max_hz: float | None = None,
) -> list[Cursor]:
    """The cursors of ``families`` (keys of :data:`FAMILIES`): 1…``harmonics`` × each
    fundamental, and with ``sidebands`` BPFI h× ± 1× shaft and BSF h× ± FTF."""
    out: list[Cursor] = []
    for fam in families:
        if fam == "shaft":
            f0 = shaft_hz
        else:
            f0 = defects.get(fam)
        if f0 is None or not f0 > 0:
            continue
        sym = _SYMBOL[fam]
        for h in range(1, harmonics + 1):
            f = h * f0
            if fam == "shaft":
                label = name = f"{h}×"
                name = f"{h}× shaft"
            else:
                label = sym if h == 1 else f"{h}×{sym}"
                name = f"{h}× {sym}"
            out.append(Cursor(fam, h, "fundamental" if h == 1 else "harmonic", f, label, name))
            offset = None
            if sidebands and fam == "bpfi" and shaft_hz:
                offset, of = shaft_hz, "1× shaft"
            elif sidebands and fam == "bsf" and defects.get("ftf"):
                offset, of = defects["ftf"], "FTF"
            if offset is not None:
                for sign, mark in ((-1, "−"), (1, "+")):
                    out.append(
                        Cursor(fam, h, "sideband", f + sign * offset, "", f"{name} {mark} {of}")
                    )
    if max_hz is not None:
        out = [c for c in out if 0 < c.freq_hz <= max_hz]
    return [c for c in out if c.freq_hz > 0]


def default_families(defects: dict[str, float], diagnosis: str = "") -> list[str]:
    """Cursors a chart opens with: the shaft, and the diagnosed bearing family (else BPFO
    and BPFI, the commonest)."""
    named = {
        "bearing_outer_race": "bpfo",
        "bearing_inner_race": "bpfi",
        "bearing_ball": "bsf",
        "bearing_cage": "ftf",
    }.get(diagnosis)
    picks = [named] if named else ["bpfo", "bpfi"]
    return ["shaft", *(p for p in picks if p in defects)]


def default_range(
    kind: str, shaft_hz: float | None, defects: dict[str, float], top_hz: float
) -> tuple[float, float]:
    """(low, high) Hz a chart opens on: envelope up to 5.5 × the highest defect frequency
    (every defect's 5th harmonic in view), acceleration up to 20 × shaft speed; the whole
    spectrum when the speed or the bearing is unknown. Never beyond ``top_hz``."""
    hi = top_hz
    if kind == "envelope" and defects:
        hi = 5.5 * max(defects.values())
    elif kind != "envelope" and shaft_hz:
        hi = 20.0 * shaft_hz
    return 0.0, float(min(hi, top_hz))


@dataclass(frozen=True)
class Peak:
    """The strongest line found near a cursor."""

    line: str  # the cursor's name
    family: str
    expected_hz: float
    found_hz: float
    amplitude: float  # in the spectrum's unit
    above_floor_db: float  # over the median within ± 10 %, dB (NaN: no floor)


def peak_readout(
    freqs_hz: F64,
    amps: F64,
    marks: Sequence[Cursor],
    *,
    tolerance: float = 0.03,
) -> list[Peak]:
    """For each cursor: the strongest line within ± ``tolerance`` of its frequency (at least
    ± 1.5 bins), its amplitude, and its height over the local floor (the median within
    ± 10 %, dB); cursors outside the spectrum are left out."""
    f = np.asarray(freqs_hz, dtype=np.float64)
    a = np.asarray(amps, dtype=np.float64)
    if f.size < 3:
        return []
    df = float(f[1] - f[0])
    rows: list[Peak] = []
    for c in marks:
        half = max(tolerance * c.freq_hz, 1.5 * df)
        lo, hi = np.searchsorted(f, [c.freq_hz - half, c.freq_hz + half])
        hi = min(int(hi), f.size)
        if hi <= lo:
            continue
        i = int(lo) + int(np.argmax(a[lo:hi]))
        wide = max(0.1 * c.freq_hz, 6 * df)
        flo, fhi = np.searchsorted(f, [c.freq_hz - wide, c.freq_hz + wide])
        floor = float(np.median(a[flo:fhi])) if fhi > flo else float("nan")
        peak = float(a[i])
        db = 20.0 * math.log10(peak / floor) if floor > 0 and peak > 0 else float("nan")
        rows.append(Peak(c.name, c.family, c.freq_hz, float(f[i]), peak, db))
    return rows


def label_rows(
    marks: Sequence[Cursor],
    lo_hz: float,
    hi_hz: float,
    *,
    plot_px: float = MIN_PLOT_PX,
    rows: int = 3,
) -> list[int]:
    """Row (0 = top) of each cursor's label so that no two overlap at ``plot_px`` or wider;
    -1 for a label left out (no room, or no label: sidebands)."""
    span = max(hi_hz - lo_hz, 1e-9)
    xs = [(c.freq_hz - lo_hz) / span * plot_px for c in marks]
    widths = [len(c.label) * CHAR_PX + 4 if c.label else 0.0 for c in marks]
    inside = [bool(c.label) and lo_hz <= c.freq_hz <= hi_hz for c in marks]
    placed = place_labels(
        [x for x, ok in zip(xs, inside, strict=True) if ok],
        [w for w, ok in zip(widths, inside, strict=True) if ok],
        rows=rows,
    )
    it = iter(placed)
    return [next(it) if ok else -1 for ok in inside]
