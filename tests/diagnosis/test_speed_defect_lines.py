"""A bearing's own defect lines do not read the running speed (issue 18: what the diagnosis
says must hold on machines it was never shaped on; docs/diagnosis.md §1, the running speed).

An 8-element deep-groove bearing (6203, 6204, 6309 …) has its BPFO at 3.04–3.06 × shaft and
its BSF at 1.96–2.0 ×: inside the ± 2 % where the diagnosis looks for 3× and 2×, and inside
the ± 5 % the per-window search (``--nominal-rpm``) looks in. With no 1× standing out (a
balanced machine) an outer race's BPFO line was taken for 3× and set the speed 1.8 % high:
the race's harmonics then sat "on 6× and 9× shaft", the reported speed and the kinematic
deviation were wrong. Known answers from the simulator (its shaft runs at exactly the speed
asked; no unbalance line unless asked), and from tones on a flat floor: all but the
no-bearing and 1×-present cases fail on main (bbb30a3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdm.config import pipeline_from_flags
from pdm.diagnose import diagnose_files
from pdm.diagnosis.shaft_speed import refine_speed
from pdm.dsp.bearings import defect_line_orders, lookup_bearing
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate


def _recording(
    tmp: Path, bearing: str, rpm: float, unbalance_g: float = 0.0, fs: float = 25600.0
) -> Path:
    """``pdm-edge simulate --rpm RPM --duration 6 --fs FS --seed 7 --bearing B --channels a
    --noise 0.05 --resonance 3500 --fault bpfo:0.15`` (plus a 1× when ``unbalance_g``)."""
    faults = [FaultSpec("bpfo", 0.15)]
    if unbalance_g:
        faults.append(FaultSpec("unbalance", unbalance_g))
    spec = SimSpec(fs=fs, duration_s=6.0, rpm=rpm, bearing=lookup_bearing(bearing),
                   channels=("a",), noise_rms_g=0.05, resonance_hz=3500.0,
                   faults=tuple(faults), seed=7)  # fmt: skip
    x = simulate(spec)[:, 0]
    path = tmp / f"{bearing}_{rpm:g}.csv"
    np.savetxt(path, x, fmt="%.6g", header=f"# sample_rate_hz={fs:g}\na", comments="")
    return path


CASES = [
    ("6203", 3600.0, 25600.0),
    ("6203", 2700.0, 25600.0),
    ("6204", 2100.0, 51200.0),
    ("6204", 3600.0, 25600.0),
]


# The per-window search's half of the rule (a speed must stand without its strongest line a
# named bearing's defect could make) was built and withdrawn: on the CWRU rig, whose pipeline
# names the fan end's 6203 (BSF 1.99 ×, BPFO 3.05 ×), every 2× and 3× is such a line, the
# windows' speeds moved 0.6 % further from the truth (4096-sample windows at 12 kHz) and a
# held-out healthy window alerted (tests/scoring/test_evaluation.py). With the speed searched
# and no 1×, the windows still stand on the race's BPFO and the averages take them: a known
# limit (docs/diagnosis.md §13, speedcomb), until the search can tell them apart.
SEARCHED_STANDS_ON_BPFO = pytest.mark.xfail(
    strict=True, reason="per-window search without the defect-line rule (docs/diagnosis.md §13)"
)


@pytest.mark.parametrize(
    "searched",
    [False, pytest.param(True, marks=SEARCHED_STANDS_ON_BPFO)],
    ids=["rpm", "nominal-rpm"],
)
@pytest.mark.parametrize(
    ("bearing", "rpm", "fs"), CASES, ids=[f"{b}-{r:g}-{f / 1000:g}kHz" for b, r, f in CASES]
)
def test_an_outer_race_alone_does_not_set_the_speed(
    bearing: str, rpm: float, fs: float, searched: bool, tmp_path: Path
) -> None:
    """The race named, the speed reported within 0.2 % of the shaft's (main: 3664.8 r/min for
    the 6203 at 3600, 2748.6 at 2700; the 6204 3663.0, and 2136.8 at 2100 sampled at 51.2 kHz — all +1.8 %), and no BPFO
    harmonic claimed to sit on a shaft harmonic (main: "BPFO 2× … on 6× shaft")."""
    path = _recording(tmp_path, bearing, rpm, fs=fs)
    flags = {"nominal_rpm": rpm} if searched else {"rpm": rpm}
    (res,) = diagnose_files([str(path)], pipeline_from_flags(bearing=bearing, **flags))
    ch = res.diagnosis.channels[0]
    assert ch.label == "bearing_outer_race", ch.reasons
    assert ch.shaft_speed_rpm == pytest.approx(rpm, rel=0.002), ch.reasons
    outer = next(f for f in ch.families if f.family == "outer_race")
    on_shaft = [(ln.name, ln.at_shaft) for ln in outer.lines if ln.at_shaft]
    assert not on_shaft, on_shaft


@pytest.mark.parametrize(("rpm", "fs"), [(3600.0, 25600.0), (1480.0, 51200.0)])
def test_with_a_1x_the_speed_is_still_read(rpm: float, fs: float) -> None:
    """The same race with an unbalance line (1× at 0.05 g): the shaft's own line reads the
    speed, searched ± 5 %, in every window (the BPFO line does not outscore it). At 1480
    r/min and 51.2 kHz (8 bins per order) the 1× stood in 1 of 24 windows while FTF's 3rd
    harmonic (1.146 ×) counted among the lines a defect could make."""
    n = 16384
    spec = SimSpec(fs=fs, duration_s=3.0, rpm=rpm, bearing=lookup_bearing("6203"),
                   channels=("a",), noise_rms_g=0.05, resonance_hz=3500.0,
                   faults=(FaultSpec("bpfo", 0.15), FaultSpec("unbalance", 0.05)),
                   seed=7)  # fmt: skip
    x = simulate(spec)[:, 0].astype(np.float32)
    fx = FeatureExtractor(fs, n, [ChannelSpec("a", lookup_bearing("6203"))],
                          rpm_range=(0.95 * rpm, 1.05 * rpm))  # fmt: skip
    for start in range(0, x.size - n + 1, n // 2):
        frame = fx.extract(x[None, start : start + n])
        assert frame.speed_measured
        assert abs(frame.shaft_speed_rpm - rpm) / 60 <= fs / n / 6  # half a bin at 3×


def _power(fs: float, n: int, lines: list[tuple[float, float]], floor: float) -> np.ndarray:
    """Amplitude² spectrum (g², Hann window, one-sided) of tones ``(Hz, g)`` over a flat
    ``floor``."""
    t = np.arange(n) / fs
    x = sum((a * np.sin(2 * np.pi * f * t) for f, a in lines), np.zeros(n))
    w = np.hanning(n + 1)[:n]
    return (np.abs(np.fft.rfft(x * w) / (w.sum() / 2)) ** 2 + floor)[None, :]


FS, N = 25600.0, 32768  # 0.78 Hz bins
DF = FS / N


@pytest.mark.parametrize("bearing", ["6203", "6204", "6309", "6311"])
def test_a_lone_bpfo_in_the_3x_range_leaves_the_given_speed(bearing: str) -> None:
    """Only the race's line stands out (at 3.04–3.06 ×): it could be 3× of a speed 1–2 %
    higher or the race's own at this one, so it reads nothing — the given speed stays. With
    no bearing named it is 3× (the median of one, as before)."""
    fr = 1480.0 / 60.0
    m = lookup_bearing(bearing).defect_multiples()
    p = _power(FS, N, [(m["bpfo"] * fr, 0.002)], 1e-10)
    given = fr * 1.0002
    assert refine_speed(p, DF, given, defects=defect_line_orders([m])) == given
    assert refine_speed(p, DF, given) == pytest.approx(m["bpfo"] * fr / 3, rel=0.001)


def test_orders_that_agree_read_the_speed_though_a_defect_could_explain_each() -> None:
    """2× and 3× of one shaft, each within the reach of a 6203's BSF (1.99 ×) and BPFO
    (3.05 ×): they agree with each other, which no pair of its defect lines does here, so
    they read the speed."""
    fr = 1500.0 / 60.0
    m = lookup_bearing("6203").defect_multiples()
    p = _power(FS, N, [(2 * fr, 0.002), (3 * fr, 0.002)], 1e-10)
    got = refine_speed(p, DF, fr * 1.01, defects=defect_line_orders([m]))
    assert got == pytest.approx(fr, rel=0.001)


def test_a_1x_is_believed_over_a_race_line() -> None:
    """1× and a 6309's BPFO at 3.037 × (1.2 % from 3×): 1× reads the speed, as before."""
    fr = 1480.0 / 60.0
    m = lookup_bearing("6309").defect_multiples()
    p = _power(FS, N, [(fr, 0.01), (m["bpfo"] * fr, 0.002)], 1e-10)
    got = refine_speed(p, DF, fr * 1.0002, defects=defect_line_orders([m]))
    assert got == pytest.approx(fr, rel=0.001)


@pytest.mark.parametrize(
    ("flags", "unbalance_g", "source"),
    [
        ({"rpm": 3600.0}, 0.0, "given"),
        pytest.param({"nominal_rpm": 3600.0}, 0.0, "nominal", marks=SEARCHED_STANDS_ON_BPFO),
        ({"rpm": 3600.0}, 0.05, "spectrum"),
        ({"nominal_rpm": 3600.0}, 0.05, "spectrum"),
    ],
    ids=["given", "nominal", "given-1x", "searched-1x"],
)
def test_the_report_says_what_the_speed_rests_on(
    flags: dict[str, float], unbalance_g: float, source: str, tmp_path: Path
) -> None:
    """``diagnose --json``'s ``shaft_speed_source``: a speed searched where nothing stood out
    (the race alone) is the nominal one and says so, in the JSON and in the text; with a 1×
    the spectrum read it; a speed given and not read stays "given". The feature rows say
    per window whether their speed was measured (``speed_measured``)."""
    path = _recording(tmp_path, "6203", 3600.0, unbalance_g)
    pl = pipeline_from_flags(bearing="6203", **flags)
    (res,) = diagnose_files([str(path)], pl)
    ch = res.diagnosis.channels[0]
    assert ch.as_dict()["shaft_speed_source"] == source
    assert ("nominal: no speed measured" in ch.reasons[-1]) == (source == "nominal")
    if source == "nominal":
        fx = FeatureExtractor(25600.0, 16384, [ChannelSpec("a", lookup_bearing("6203"))],
                              rpm_range=(0.95 * 3600.0, 1.05 * 3600.0))  # fmt: skip
        x = np.loadtxt(path, skiprows=2, dtype=np.float32)[None, :16384]
        (row,) = fx.extract(x).as_dicts()
        assert row["speed_measured"] is False
