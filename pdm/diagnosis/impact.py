"""The impact-train test: a race's line counts only when it is a train of impacts (a harmonic
at the impacts' bound, or a true sideband pair about it), not a stationary tone.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pdm.diagnosis.layout import BearingLayout
from pdm.diagnosis.lines import F64
from pdm.diagnosis.rules import Rules

__all__ = ["ImpactTrain", "impact_train"]


class ImpactTrain(NamedTuple):
    """(C, F) per row and family: which of an impact train's signs its lines show."""

    harmonic: npt.NDArray[np.bool_]  # a harmonic at the impacts' bound
    pair: npt.NDArray[np.bool_]  # a sideband pair (± shaft, or the ball's ± FTF) symmetric
    # about a carrier

    @property
    def any(self) -> npt.NDArray[np.bool_]:
        return self.harmonic | self.pair


def impact_train(
    lay: BearingLayout,
    prom: F64,
    found: F64,
    support: npt.NDArray[np.bool_],
    free: npt.NDArray[np.bool_],
    df: float,
    rules: Rules,
) -> ImpactTrain:
    """(C, F): whether each family's lines of each row are an impact train, and by which sign.

    ``prom``, ``found``, ``support``, ``free`` are (C, nb) over the layout's bearing lines
    (``nb = lay.shaft[0]``): prominence (dB), frequency found (Hz), supporting lines of
    their family, and lines neither another family's nor on a shaft comb.
    """
    nb = lay.shaft[0]
    fund = np.array([a for a, _b in lay.spans], dtype=np.intp)
    fam_b = lay.fam[:nb]
    # What makes a line an impact train: a defect striking at a rate is a train of impulses,
    # which has lines at 2×, 3× the rate; an inner-race defect turning through the load zone
    # is that train amplitude-modulated by the shaft, and the envelope of a real modulation
    # puts its sidebands on *both* sides of the carrier at equal strength. A line with
    # neither — no harmonic of its own and at most one-sided sidebands — is what a
    # stationary tone of the machine (a structural or electrical line, two tones beating in
    # the band) looks like: not a bearing fault. A pair is one modulation only when it sits
    # symmetrically about the carrier as found (within the three lines' bin quantisation,
    # 1.5 bins): lines of the machine that happen to fall inside the sidebands' search
    # ranges on either side are not.
    #
    # How strong a harmonic must be: an impact rings the band's resonance and decays with a
    # time constant τ, so the envelope's harmonic k of a train at rate f has
    # |H(k f)| / |H(f)| = √((1 + (2πfτ)²) / (1 + (2πkfτ)²)) ≥ 1/k, whatever τ. The envelope
    # |z| of two stationary tones r ≤ 1 apart in amplitude beating at f has harmonics of
    # at most 1/5 (k = 2) and 3/35 (k = 3) of its fundamental (|cos| at r = 1), and noise
    # modulated sinusoidally at f none. So a harmonic supports an impact train when its
    # amplitude is at least the fundamental's / (1.5 k): 3.5 dB under the impacts' bound
    # (slip jitter broadens higher harmonics), 4.5 dB over the beats'. Amplitudes are read
    # as the lines' power above their floors (the envelope's noise floor is flat across
    # these few orders): a weak harmonic's reading is mostly the floor's.
    is_harm = np.array([k == "harmonic" for k in lay.kinds[:nb]], dtype=bool)
    fund_of = fund[fam_b]  # (nb,) each line's family fundamental
    order_k = np.where(is_harm, np.rint(lay.carrier[:nb] / lay.carrier[fund_of]), 1.0)
    above = 10.0 ** (np.clip(prom, 0.0, None) / 10.0) - 1.0  # line / floor − 1
    strong = above >= above[:, fund_of] / (1.5 * order_k) ** 2
    harmonic = np.add.reduceat(support & is_harm & strong, fund, axis=1) > 0
    train = np.zeros_like(harmonic)
    mirror = free & (prom >= rules.min_line_db)
    kinds = np.array(lay.kinds[:nb])
    fam_l, carrier_l, delta_l = fam_b, lay.carrier[:nb], lay.delta[:nb]
    # The ball's pairs at ± FTF count too: the cage carries the ball through the load zone.
    is_sb = kinds == "sideband"
    for i in np.flatnonzero(is_sb & (delta_l < 0.0)):
        same = (fam_l == fam_l[i]) & (carrier_l == carrier_l[i])
        mate = np.flatnonzero(is_sb & same & (delta_l == -delta_l[i]))
        carrier_line = np.flatnonzero(is_harm & same)
        if mate.size and carrier_line.size:
            j, hc = int(mate[0]), int(carrier_line[0])
            even = np.abs(found[:, i] + found[:, j] - 2.0 * found[:, hc]) <= 1.5 * df
            # A modulation's sidebands are equal: one significant, its mirror standing out
            # of the floor by any line's physical minimum (the statistics' threshold is
            # for a line alone, not for the predicted twin of one found).
            train[:, fam_l[i]] |= (
                (support[:, i] & mirror[:, j]) | (support[:, j] & mirror[:, i])
            ) & even
    return ImpactTrain(harmonic, train)
