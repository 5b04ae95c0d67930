"""A sideband is a line of its own, and two families reading one line are ranked by where
that line is (docs/diagnosis.md §3, *Which family*, *Shared lines*; §13 *rigprobe*), against
known answers on constructed envelope spectra.

A 13-roller cylindrical bearing (7.5 mm rollers on a 38.5 mm pitch, 0°, a JNU-like rig) at
600 r/min, 32768-sample windows at 50 kHz (1.526 Hz bins, the window ``diagnose`` chooses
for a 4 s recording): BPFO = 5.234 ×, 2 × BSF = 4.938 ×, FTF = 0.403 × — 52.3, 49.4 and
4.03 Hz, the ball's FTF sidebands 2.6 bins from their carrier. Each line of a family is
read within about a bin of where the family's comb puts it, so a sideband's search can
reach its carrier's own line, and the search of a family whose kinematics are 5 % off can
reach another family's line. On ``scripts/rig_probe.py``'s JNU-like outer race (×5, 600
r/min) the ball was named with confidence 1.00: its fundamental and its "+ FTF sideband"
were one line, the outer race's at 51.88 Hz, and the ball held that shared line because its
comb's offset (+1.2 %) was smaller than the outer race's (−1.6 %) — while the line itself is
0.9 % from BPFO and 5.1 % from 2 × BSF. The constructed spectra below fail on the old code
in both ways (a ball sideband on its carrier's line; a ball's line held by an outer race
whose comb sat at −3 %, the line 6 % from BPFO).
"""

from __future__ import annotations

import numpy as np

from pdm.diagnosis.verdict import judge_channels
from pdm.dsp.bearings import BearingGeometry

DF, FR = 50_000 / 32_768, 10.0
M = BearingGeometry(13, 7.5, 38.5, 0.0).defect_multiples()
BPFO, BALL, FTF = M["bpfo"] * FR, 2 * M["bsf"] * FR, M["ftf"] * FR
K = 10.5  # 11 windows at 50 % overlap


def _env(lines: list[tuple[float, float]], n: int = 1200) -> np.ndarray:
    """A flat 1e-6 g² envelope floor plus Hann-windowed lines (Hz, amplitude g): each line's
    bins within 3.5 of it weighted by the Hann kernel sinc(d) / (1 − d²) (½ at d = ± 1)."""
    f = np.array([x for x, _a in lines])
    amp = np.array([a for _f, a in lines])
    d = np.arange(n)[:, None] - f[None, :] / DF
    den = 1.0 - d * d
    pole = np.abs(den) < 1e-9
    w = np.where(pole, 0.5, np.sinc(d) / np.where(pole, 1.0, den))
    w = np.where(np.abs(d) <= 3.5, w, 0.0)
    return np.asarray(1e-6 + ((amp * w) ** 2).sum(axis=1))


#: An outer-race train 0.87 % under kinematics, its lines on bins 34, 68 and 102: impacts
#: ring the resonance, so the harmonics fall off slowly (|H(kf)| ≤ |H(f)|). No modulation:
#: an outer-race defect sits still in the load zone.
F0 = 34 * DF
OUTER = [(F0, 0.009), (2 * F0, 0.0085), (3 * F0, 0.008)]


def _judge(lines: list[tuple[float, float]]):
    return judge_channels(None, _env(lines)[None], DF, FR, M, K)[0]


def test_the_setting_is_the_one_described() -> None:
    assert abs(F0 / BPFO - 1) < 0.01  # the line is within 1 % of BPFO
    assert F0 / BALL - 1 > 0.04  # and over 4 % from 2 × BSF, beyond any slip
    assert 2 * DF < FTF < 3 * DF  # the ball's FTF sidebands 2–3 bins from their carrier


def test_an_outer_race_train_is_named_outer_race_not_ball() -> None:
    """Before: ``bearing_ball`` (confidence 1.00), the outer race "2×BSF 1×'s line"."""
    v = _judge(OUTER)
    assert v.label == "bearing_outer_race", v.reasons


def test_a_sideband_is_never_its_carriers_own_line() -> None:
    """Before: the ball's "2×BSF 1× + FTF" read 51.88 Hz, the very line its fundamental read."""
    v = _judge(OUTER)
    ball = v.family("ball")
    assert ball is not None
    carriers = {ln.name.split(" ")[0] + " " + ln.name.split(" ")[1]: ln.found_hz
                for ln in ball.lines if ln.kind == "harmonic"}  # fmt: skip
    for ln in ball.lines:
        if ln.kind == "sideband" and ln.significant and "FTF" in ln.name:
            carrier = carriers[" ".join(ln.name.split(" ")[:2])]
            assert abs(ln.found_hz - carrier) >= 0.5 * FTF, ln


def test_a_real_ball_train_is_still_the_ball() -> None:
    """The rule takes nothing from a ball whose sidebands are FTF from their carrier: 2 × BSF
    0.5 % under kinematics with its harmonics, each ± FTF (the cage carries the ball through
    the load zone), and the odd BSF line (unequal race impacts)."""
    b = BALL * 0.995
    lines = [(b, 0.006), (b - FTF, 0.0025), (b + FTF, 0.0025), (2 * b, 0.005),
             (2 * b - FTF, 0.002), (2 * b + FTF, 0.002), (b / 2, 0.002)]  # fmt: skip
    v = _judge(lines)
    assert v.label == "bearing_ball", v.reasons


def test_a_6205_balls_own_lines_are_no_cage_comb() -> None:
    """A 6205's BSF is 5.92 × FTF: a damaged ball's odd BSF line and its ± FTF sidebands (the
    cage carries the ball through the load zone) sit on the cage's 5th–7th harmonics, and the
    load zone's own modulation puts FTF and 2 × FTF in the envelope. Those are the ball's, not
    a cage's comb. Measured: ``scripts/rig_probe.py``'s CWRU-like 12 kHz ball (×6, 1797 r/min)
    read ``bearing_ball`` 0.89 on ca9c14f, whose cage comb sat at −3 % (a tie, §13), and
    ``bearing_cage`` 0.50 once shared lines were ranked by where they are, as on main ca97a09
    with the comb's ties at their middle; ``bearing_ball`` with the rule.
    Fails without it (``_ball_beside_cage``): ``bearing_cage``."""
    from pdm.dsp.bearings import BEARINGS

    df, fr = 12_000 / 8_192, 1796.7 / 60
    m = BEARINGS["6205"].defect_multiples()
    ftf, bsf = m["ftf"] * fr * 0.985, m["bsf"] * fr * 0.985  # the cage and ball slip alike
    b = 2 * bsf
    lines = [(b, 0.006), (b - ftf, 0.003), (b + ftf, 0.003), (2 * b, 0.005),
             (2 * b - ftf, 0.0025), (2 * b + ftf, 0.0025), (bsf, 0.004), (bsf - ftf, 0.0035),
             (bsf + ftf, 0.0035), (ftf, 0.006), (2 * ftf, 0.004)]  # fmt: skip
    f = np.array([x for x, _a in lines])
    amp = np.array([a for _f, a in lines])
    d = np.arange(1200)[:, None] - f[None, :] / df
    den = 1.0 - d * d
    pole = np.abs(den) < 1e-9
    w = np.where(pole, 0.5, np.sinc(d) / np.where(pole, 1.0, den))
    env = 1e-6 + ((amp * np.where(np.abs(d) <= 3.5, w, 0.0)) ** 2).sum(axis=1)
    v = judge_channels(None, env[None], df, fr, m, 12.4)[0]
    assert v.label == "bearing_ball", v.reasons
