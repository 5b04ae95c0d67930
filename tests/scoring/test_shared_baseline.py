"""Models whose cards hold the same healthy baseline share one :class:`Baseline` (its lines are
found once, not once a machine), and only those: equal content decides, not the ONNX digest
alone, and a card changed after it was read changes nothing of what was shared
(:func:`pdm.scoring.runtime.shared_baseline`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from pdm.diagnosis.baseline import Baseline
from pdm.scoring.runtime import Model, shared_baseline


def section(scale: float = 1.0) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return Baseline(
        ("x_g", "y_g"),
        0.0125,
        24.7,
        tuple(rng.exponential(1e-4 * scale, 300) for _ in range(2)),
        tuple(rng.exponential(1e-6 * scale, 200) for _ in range(2)),
        (2000.0, 6000.0),
        48,
    ).to_dict()


def same(a: Baseline, b: Baseline) -> bool:
    return (
        a.channels == b.channels
        and a.order_step == b.order_step
        and a.shaft_hz == b.shaft_hz
        and a.envelope_band_hz == b.envelope_band_hz
        and a.windows == b.windows
        and all(np.array_equal(x, y) for x, y in zip(a.acc + a.env, b.acc + b.env, strict=True))
    )


def model(sha: str, baseline: dict[str, Any] | None) -> Model:
    """A model as far as its baseline goes (the card's ONNX digest and baseline section)."""
    card: dict[str, Any] = {"onnx": {"sha256": sha}}
    if baseline is not None:
        card["diagnosis_baseline"] = baseline
    return Model(Path("."), card, None, None, (), 1.0)  # type: ignore[arg-type]


def test_machines_of_one_model_share_its_baseline() -> None:
    a, b = model("a1" * 32, section()), model("a1" * 32, section())  # two reads of one card
    assert a.baseline is b.baseline is a.baseline
    assert a.baseline is not None and same(a.baseline, Baseline.from_dict(section()))
    assert model("a1" * 32, None).baseline is None


def test_another_baseline_under_the_same_digest_is_its_own() -> None:
    sha = "b2" * 32
    first = shared_baseline(sha, section())
    edited = section(scale=2.0)  # a card edited by hand: the ONNX file (and digest) as it was
    other = shared_baseline(sha, edited)
    assert other is not first
    assert same(other, Baseline.from_dict(edited)) and not same(other, first)
    # ... and back: the original content is read again, not taken for the edited one.
    back = shared_baseline(sha, section())
    assert same(back, Baseline.from_dict(section()))


def test_a_card_changed_after_reading_changes_nothing_shared() -> None:
    sha = "c3" * 32
    d = section()
    first = shared_baseline(sha, d)
    original = copy.deepcopy(d)
    d["channels"]["x_g"]["acc_g2"][5] *= 10.0  # the dict the first model read, changed in place
    d["windows"] = 7
    assert shared_baseline(sha, original) is first  # what was read is what is compared
    changed = shared_baseline(sha, d)
    assert changed is not first and changed.windows == 7
    assert same(first, Baseline.from_dict(original))
