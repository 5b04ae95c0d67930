"""The refined speed's median by a partition (:func:`pdm.diagnosis.shaft_speed.median`): the
very value ``np.median`` gives, for odd and even lengths, ties, and non-finite bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdm.diagnosis.shaft_speed import median


@pytest.mark.parametrize("n", [1, 2, 3, 4, 25, 48, 49, 50])
@pytest.mark.parametrize("kind", ["power", "ties", "tiny", "nan", "inf"])
def test_median_is_numpys(n: int, kind: str) -> None:
    rng = np.random.default_rng(n * 7 + len(kind))
    for _ in range(50):
        a = rng.exponential(1e-6, n)
        if kind == "ties":
            a = np.round(a * 1e6) / 1e6
        elif kind == "tiny":
            a = a * 1e-300
        elif kind == "nan":
            a[rng.integers(n)] = math.nan
        elif kind == "inf":
            a[rng.integers(n)] = math.inf
        want = float(np.median(a))
        got = median(a.copy())
        assert got == want or (math.isnan(got) and math.isnan(want)), (a, got, want)


def test_median_leaves_its_input_alone() -> None:
    a = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert median(a) == 3.0
    np.testing.assert_array_equal(a, [5.0, 1.0, 4.0, 2.0, 3.0])
