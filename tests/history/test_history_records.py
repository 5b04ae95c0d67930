"""The history records built for every window: the one-window paths make what the general
paths make, and a record that does not fit still names its column."""

from __future__ import annotations

import numpy as np
import pytest

from pdm.history.records import FeatureRows, ScoreRows
from pdm.scoring.result import WindowScore


def _scores() -> list[WindowScore]:
    return [
        WindowScore(1_767_225_600_000_000_000, 7, "alert", np.float32(1.2345678), model="m1",
                    top_features=({"feature": "x_g.rms_g", "value": 0.5, "z": 6.0},),
                    diagnosis="unbalance"),
        WindowScore(1_767_225_600_320_000_000, 8, None, None, valid=False, model="m1"),
        WindowScore(1_767_225_600_640_000_000, 9, "ok", 0.25, model="m1"),
    ]  # fmt: skip


@pytest.mark.parametrize("i", [0, 1, 2])
def test_one_window_score_row_is_the_general_paths_row(i: int) -> None:
    """The service builds a window's score row alone: the same values and dtypes as the row
    of the same window among others (a float32 score written as float64, an unscored window
    ``invalid`` with NaN)."""
    many = _scores()
    pad = WindowScore(1, 0, "ok", 0.5, model="m1")
    alone = ScoreRows.from_scores("m", [many[i]])
    among = ScoreRows.from_scores("m", [many[i], pad])
    assert alone.model == among.model == "m1"
    for name in ("t_ns", "window", "score"):
        a, b = getattr(alone, name), getattr(among, name)[:1]
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for name in ("state", "diagnosis", "top"):
        assert getattr(alone, name) == getattr(among, name)[:1]


def test_scores_of_two_models_in_one_batch_are_refused() -> None:
    two = [WindowScore(1, 0, "ok", 0.1, model="a"), WindowScore(2, 1, "ok", 0.1, model="b")]
    with pytest.raises(ValueError, match="several models"):
        ScoreRows.from_scores("m", two)


@pytest.mark.parametrize("short", ["window", "sensor", "channel", "iso_zone", "valid"])
def test_feature_rows_that_do_not_fit_name_the_column(short: str) -> None:
    cols = {
        "window": np.arange(2, dtype=np.int64),
        "sensor": ("s", "s"),
        "channel": ("x", "y"),
        "iso_zone": ("A", "A"),
        "valid": np.ones(2, dtype=bool),
    }
    cols[short] = cols[short][:1]
    with pytest.raises(ValueError, match=f"^{short} has 1 entries for 2 rows"):
        FeatureRows(
            "m", np.zeros(2, dtype=np.int64), names=("rms_g",), values=np.zeros((2, 1)), **cols
        )  # type: ignore[arg-type]


@pytest.mark.parametrize("short", ["window", "score", "state", "diagnosis", "top"])
def test_score_rows_that_do_not_fit_name_the_column(short: str) -> None:
    cols = {
        "window": np.arange(2, dtype=np.int64),
        "score": np.zeros(2),
        "state": ("ok", "ok"),
        "diagnosis": ("", ""),
        "top": ("", ""),
    }
    cols[short] = cols[short][:1]
    with pytest.raises(ValueError, match=f"^{short} has 1 entries for 2 rows"):
        ScoreRows("m", "v", np.zeros(2, dtype=np.int64), **cols)  # type: ignore[arg-type]
