"""The automatic band beside the machine's own lines: steady tones beating in a band, and a
gear's mesh filling the resonance (pdm/dsp/envelope.py, ``select_band``; docs/diagnosis.md §13).

Known answers: a bearing fault rings a structural resonance, and a line of the machine puts
envelope lines at (or within the slip of) a defect rate somewhere else or on top of it; the band
must hold the resonance and the fault's family must stand out of the others there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdm.dsp.bearings import BearingGeometry, lookup_bearing
from pdm.dsp.envelope import (
    LINES_MIN_DB,
    SK_Z_MIN,
    TONAL_SK,
    TONAL_SK_Z,
    BandScores,
    candidate_bands,
    candidate_floor_hz,
    select_band,
)
from pdm.dsp.features import ChannelSpec, FeatureExtractor
from pdm.sources.simulator import FaultSpec, SimSpec, simulate

# --------------------------------------------------------------------------- the rules, as tables

BANDS = ((2000.0, 4000.0), (3000.0, 3500.0), (10000.0, 11000.0))
NB = np.array([[800.0, 200.0, 400.0]])


def scores(level, sk, sk_z, lines) -> BandScores:
    level = np.array([level], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = 10 * np.log10((10 ** (level / 10) - 1) * NB)
    return BandScores(
        BANDS,
        level,
        np.array([1.0]),
        excess,
        np.array([sk], dtype=float),
        np.array([sk_z], dtype=float),
        np.array([lines], dtype=float),
    )


@pytest.mark.parametrize(
    ("case", "s", "band"),
    [
        # two steady tones beat in band 0 (SK −0.7: they carry the band), the impacts ring band 1
        # (impulsive, lines over the threshold though fewer dB): band 1
        ("tones beside impacts", scores([20, 3, 1], [-0.7, 0.6, 0], [-12, 9, 0], [25, 18, 5]), 1),
        # the same but band 1 is not impulsive: nothing says band 0's tones are not the train
        # itself (a fast defect rate whose rings overlap), so its lines stand
        ("no impacts elsewhere", scores([20, 3, 1], [-0.7, 0.2, 0], [-12, 3, 0], [25, 18, 5]), 0),
        # SK −0.2 (tones carry < half the band): not a tone's band
        ("some tone", scores([20, 3, 1], [-0.2, 0.6, 0], [-12, 9, 0], [25, 18, 5]), 0),
        # ... nor an insignificant SK estimate of −0.7
        ("insignificant", scores([20, 3, 1], [-0.7, 0.6, 0], [-1.5, 9, 0], [25, 18, 5]), 0),
    ],
)
def test_select_band_beside_lines_of_the_machine(case, s, band) -> None:
    got = select_band(s)
    assert (got.band, got.criterion) == (BANDS[band], "lines"), case
    assert (TONAL_SK, TONAL_SK_Z, SK_Z_MIN, LINES_MIN_DB) == (-0.25, -2.0, 8.0, 12.0)


def test_steady_tones_read_their_power_share_in_spectral_kurtosis() -> None:
    """The rule's premise: steady tones of power fractions f_i over Gaussian noise give
    SK = −Σ f_i² (a tone alone −1, noise 0), measured by the scorer on a band holding two."""
    from pdm.dsp.envelope import BandScorer

    fs, n = 25600.0, 16384
    t = np.arange(n) / fs
    rng = np.random.default_rng(2)
    # 1.2 and 0.5 amplitude tones in 6–7 kHz, unit-rms noise over 0–12.8 kHz
    x = 1.2 * np.sin(2 * np.pi * 6400.0 * t) + 0.5 * np.sin(2 * np.pi * 6480.0 * t)
    x += rng.standard_normal(n) * math.sqrt(12.8 / 1.0) * 0.1
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    spec = np.fft.rfft(w * x)[None, :]
    band = (6000.0, 7000.0)
    sc = BandScorer(fs, n, [band], 600.0, (1000.0, 11000.0))(spec)
    p1, p2 = 1.2**2 / 2, 0.5**2 / 2
    noise = 0.01 * 12.8 * (band[1] - band[0]) / (fs / 2)  # the noise power inside the band
    total = p1 + p2 + noise
    expect = -((p1 / total) ** 2 + (p2 / total) ** 2)
    assert sc.sk[0, 0] == pytest.approx(expect, abs=0.05)


# --------------------------------------------------------------------------- simulated machines


def fault_window(
    fs: float, n: int, rpm: float, bearing: BearingGeometry, kind: str, resonance: float,
    noise: float, peak: float, seed: int,
) -> np.ndarray:  # fmt: skip
    spec = SimSpec(fs=fs, duration_s=n / fs, rpm=rpm, bearing=bearing, channels=("x",),
                   noise_rms_g=noise, resonance_hz=resonance, seed=seed,
                   faults=(FaultSpec(kind, peak),))  # fmt: skip
    return simulate(spec)[:n, 0]


def families(frame, kind: str) -> tuple[float, list[float]]:
    row = frame.as_dicts()[0]
    return row[f"env_{kind}_g"], [row[f"env_{d}_g"] for d in ("bpfo", "bpfi", "bsf") if d != kind]


@pytest.mark.parametrize(("bearing", "rpm", "kind", "seed"),
                         [("6205", 1616.0, "bpfi", 1), ("6006", 720.0, "bpfi", 2),
                          ("6309", 1500.0, "bpfo", 3)])  # fmt: skip
def test_tones_beating_at_a_defect_rate_beside_the_resonance(bearing, rpm, kind, seed) -> None:
    """Two structural tones at 0.93 × the resonance, 1.2 and 0.5 × the noise rms, beat at the
    *other* race's rate (a stationary envelope line 20–30 dB over the floor in every band that
    holds them); the fault's impacts (4.4 × the noise) ring the 20 kHz resonance beside them,
    at the floor's level. Before the tonal rule the band followed the tones (the rig sweep's
    seed 2, cases 17 and 37: `unknown`); the band must hold the resonance and the fault's
    family stand out there."""
    g = lookup_bearing(bearing)
    fs, n, resonance, noise = 96000.0, 65536, 20000.0, 0.02
    x = fault_window(fs, n, rpm, g, kind, resonance, noise, 4.4 * noise, seed)
    other = "bpfo" if kind == "bpfi" else "bpfi"
    beat = g.defect_frequencies_hz(rpm / 60)[other] * 1.01
    t = np.arange(n) / fs
    f1 = 0.93 * resonance
    x = x + noise * (1.2 * np.sin(2 * np.pi * f1 * t) + 0.5 * np.sin(2 * np.pi * (f1 + beat) * t))
    fx = FeatureExtractor(fs, n, [ChannelSpec("x", g)], rpm=rpm, envelope_band_hz="auto")
    frame = fx.extract(x[None, :].astype(np.float32))
    lo, hi = frame.envelope_band_hz
    assert frame.band_choice is not None and frame.band_choice.criterion == "lines"
    assert not lo <= f1 <= hi and not lo <= f1 + beat <= hi, (lo, hi)
    assert lo <= resonance * 1.05 and hi >= resonance * 0.95, (lo, hi)
    mine, others = families(frame, kind)
    assert all(mine > 2 * o for o in others)


def gear_mesh(t: np.ndarray, teeth: int, fr: float, resonance: float, noise: float,
              rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """A gear of ``teeth`` on the shaft: mesh harmonics up through the resonance (0.6 × the
    noise rms within ± 25 % of it, where the structure amplifies them, 0.05 × elsewhere), each
    with ± 1× sidebands (eccentricity): the envelope of any band there is periodic at the shaft,
    its lines on whole orders, the mesh's among them."""
    fm = teeth * fr
    y = np.zeros_like(t)
    for k in range(1, int(1.3 * resonance / fm)):
        a = noise * (0.6 if abs(k * fm - resonance) < 0.25 * resonance else 0.05)
        ph = rng.uniform(0, 2 * np.pi, 3)
        for df, amp, p in ((0.0, 1.0, ph[0]), (-fr, 0.3, ph[1]), (fr, 0.3, ph[2])):
            y += a * amp * np.sin(2 * np.pi * (k * fm + df) * t + p)
    return y


def own_line_db(frame, f_hz: float) -> float:
    """The fault's own line at its kinematic rate (the simulator's defect_slip is 0), 1× and
    2× (± 1 bin), over the median of the envelope spectrum around it, dB (mean of the two): an
    analyst's reading, apart from the scorer, that no line on a whole shaft order can lift."""
    freqs, amp = frame.envelope_spectrum()
    power = amp[0] ** 2
    df = freqs[1]
    out = []
    for h in (1, 2):
        k = round(h * f_hz / df)
        near = np.r_[k - 40 : k - 3, k + 4 : min(k + 41, power.size)]
        out.append(10 * math.log10(power[k - 1 : k + 2].max() / np.median(power[near])))
    return float(np.mean(out))


MESH_FILLS_THE_RESONANCE = pytest.mark.xfail(
    strict=True,
    reason="a limit (docs/diagnosis.md §11, §13): every band holding the resonance holds the "
    "mesh, whose envelope line within the slip of BPFI chooses among them; judging lines off "
    "the whole orders chose the right band here but, on the rig sweep, read the decimated "
    "envelope's aliases of the mesh (|z| is not band-limited) as defect lines on healthy "
    "gearboxes, and was withdrawn; the alias-free squared envelope fails it too (§14): the "
    "alias is not what decides this case",
)


@pytest.mark.parametrize(("bearing", "rpm", "kind", "seeds"),
                         [pytest.param("22205", 755.0, "bpfi", range(6),
                                       marks=MESH_FILLS_THE_RESONANCE),
                          ("6309", 3000.0, "bpfi", range(3))])  # fmt: skip
def test_a_gear_mesh_near_the_defect_rate_fills_the_resonance(bearing, rpm, kind, seeds) -> None:
    """A gearbox: the mesh on the whole order nearest the fault's rate (or a harmonic of it),
    its harmonics and ± 1× sidebands filling the resonance the bearing's impacts ring (8 × the
    noise). Every band there holds the mesh, and its envelope line, on a whole order within
    the slip of the defect rate, is the strongest 'defect line' of any of them: chosen by it,
    the band follows the mesh (the rig sweep's seed 0 case 72: 5.0–6.25 kHz beside a 6.9 kHz
    resonance, `unknown`). The known answer: the chosen band shows the fault's own line within
    3 dB of the best band for it, on every seed. A 6309 at 3000 r/min, whose impacts stand
    over the mesh, meets it; the 22205 at 755 r/min does not yet (seed 0: 7 dB against 16)."""
    g = lookup_bearing(bearing)
    fs, n, resonance, noise = 20000.0, 32768, 6900.0, 0.02
    fr = rpm / 60
    df = fs / n
    order = g.defect_multiples()[kind]
    f_hz = order * fr
    teeth = next(round(k * order) for k in range(1, 8) if round(k * order) >= 7)
    assert abs(order - round(order)) * fr / df > 3  # resolved from the mesh's order
    t = np.arange(n) / fs
    for seed in seeds:
        x = fault_window(fs, n, rpm, g, kind, resonance, noise, 8.0 * noise, seed)
        x = x + gear_mesh(t, teeth, fr, resonance, noise, np.random.default_rng(seed))
        x32 = x[None, :].astype(np.float32)
        auto = FeatureExtractor(fs, n, [ChannelSpec("x", g)], rpm=rpm, envelope_band_hz="auto")
        frame = auto.extract(x32)
        assert frame.band_choice is not None and frame.band_choice.criterion == "lines"
        best = max(
            own_line_db(
                FeatureExtractor(fs, n, [ChannelSpec("x", g)], rpm=rpm, envelope_band_hz=b)
                .extract(x32), f_hz)
            for b in candidate_bands(fs, candidate_floor_hz(fr, auto.env_max_hz), 2 * auto.env_max_hz, n=n)
        )  # fmt: skip
        got = own_line_db(frame, f_hz)
        print(f"seed {seed}: band {frame.envelope_band_hz} {got:.1f} dB, best {best:.1f} dB")
        assert got >= best - 3.0, seed
