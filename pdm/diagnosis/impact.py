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
    f_at: F64 | None = None,
    merged: npt.NDArray[np.bool_] | None = None,
    line_db: F64 | None = None,
    thr: F64 | None = None,
) -> ImpactTrain:
    """(C, F): whether each family's lines of each row are an impact train, and by which sign.

    ``prom``, ``found``, ``support``, ``free`` are (C, nb) over the layout's bearing lines
    (``nb = lay.shaft[0]``): prominence (dB), frequency found (Hz), supporting lines of
    their family, and lines neither another family's nor on a shaft comb; ``f_at`` (C, nb):
    the lines' frequencies interpolated between bins, read for every pair's symmetry (the
    ball's ± FTF pairs too); about a carrier ``merged`` (C, nb) with a stationary line (on a
    mains line; with a model, a line of the machine's healthy spectra) the sidebands' midpoint
    must lie within that line's main lobe; ``line_db``, ``thr`` (C, nb): each line's own
    prominence where its bin is a local maximum (0 where it is a skirt,
    :attr:`pdm.diagnosis.lines.LinesRead.line_db`) and its threshold — a sideband counts in a
    pair only as a line of its own.
    """
    ix = lay.train_index
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
    above = 10.0 ** (np.clip(prom, 0.0, None) / 10.0) - 1.0  # line / floor − 1
    strong = above >= above[:, ix.fund_of] / ix.harm_bound
    harmonic = np.add.reduceat(support & ix.is_harm & strong, ix.fund, axis=1) > 0
    if not ix.low.size:
        return ImpactTrain(harmonic, np.zeros_like(harmonic))
    mirror = free & (prom >= rules.min_line_db)
    sideband = support
    if line_db is not None and thr is not None:
        # A sideband is a line: its own bin a local maximum standing out by itself (the
        # significant one at its threshold, its mirror by any line's minimum). The strongest
        # bin of a search range may be the skirt of a stronger line just outside it — at the
        # range's edge, rising out of it, its interpolation clipped to half a bin — and, the
        # range's strongest bin being what ``prom`` reads, a noise bin beside that skirt
        # borrows its prominence.
        mirror = free & (line_db >= rules.min_line_db)
        sideband = support & (line_db >= thr)
    lo, hi = ix.low, ix.high
    even = np.abs(found[:, lo] + found[:, hi] - 2.0 * found[:, ix.carrier]) <= 1.5 * df
    if f_at is not None and merged is not None:
        # Interpolated, each sideband within half a bin and the carrier true: a real
        # modulation's pair is symmetric to hundredths of a bin; lines of the machine on
        # bins either side are not.
        sym = np.abs(f_at[:, lo] + f_at[:, hi] - 2.0 * f_at[:, ix.carrier]) <= 1.0 * df
        # Where a stationary line shares the carrier's lobe (the motor's pull; with a model, a
        # line the machine's healthy spectra hold there) neither reading of the carrier is
        # the train's: interpolated it reads that line, and over the healthy spectra the bin
        # found is where the train stands most over the line's skirt, pushed away from it.
        # The carrier is read at its sidebands' midpoint, as a train behind a line of the
        # machine reads its fundamental: within the main lobe (± 2 bins) of the line found
        # there, each sideband within half a bin.
        mid = np.abs(f_at[:, lo] + f_at[:, hi] - 2.0 * f_at[:, ix.carrier]) <= 5.0 * df
        on_line = merged[:, ix.carrier]
        even = np.where(on_line, mid, even & sym)
    # The ball's pairs at ± FTF count too: the cage carries the ball through the load zone.
    # A modulation's sidebands are equal: one significant, its mirror standing out of the
    # floor by any line's physical minimum (the statistics' threshold is for a line alone,
    # not for the predicted twin of one found).
    pair = ((sideband[:, lo] & mirror[:, hi]) | (sideband[:, hi] & mirror[:, lo])) & even
    # (C, P) → (C, F): a family is a train when any of its pairs is.
    return ImpactTrain(harmonic, (pair @ ix.of_family) > 0)
