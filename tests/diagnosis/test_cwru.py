"""Real recordings: the CWRU drive-end faults show at their own defect frequency.

Read in place from ../shared/datasets/cwru (never copied into the repository);
skipped with the reason when that folder is absent.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from pdm.config import load_pipeline
from pdm.processing import FeatureStream, open_recording

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"

DEFECTS = ("env_bpfo_g", "env_bpfi_g", "env_bsf_g", "env_ftf_g")


def drive_end_medians(path) -> dict[str, float]:
    rec, pl = open_recording(path, load_pipeline(PIPELINES / "cwru_drive_end.toml"))
    with rec:
        stream = FeatureStream(pl, rec.sample_rate_hz)
        rows = [r for wf in stream.feed(rec.chunks()) for r in wf.rows() if r["channel"] == "DE_g"]
    assert len(rows) >= 4
    return {k: statistics.median(r[k] for r in rows) for k in (*DEFECTS, "shaft_speed_rpm")}


@pytest.fixture(scope="module", params=["de12k", "de48k"])
def medians(request, cwru):
    folder = cwru / request.param
    normal = next(folder.glob("normal_*.csv"))
    return {
        "normal": drive_end_medians(normal),
        "inner": drive_end_medians(folder / "IR007_0hp.csv"),
        "outer": drive_end_medians(folder / "OR007at6_0hp.csv"),
    }


def stands_out(m: dict[str, float], feature: str, factor: float = 2.0) -> bool:
    """The line is at least ``factor`` times every other defect line of the same recording."""
    return all(m[feature] >= factor * m[other] for other in DEFECTS if other != feature)


def test_inner_race_fault_shows_at_bpfi(medians) -> None:
    m, normal = medians["inner"], medians["normal"]
    assert stands_out(m, "env_bpfi_g")
    assert m["env_bpfi_g"] > 20 * normal["env_bpfi_g"]


def test_outer_race_fault_shows_at_bpfo(medians) -> None:
    m, normal = medians["outer"], medians["normal"]
    assert stands_out(m, "env_bpfo_g", factor=5.0)
    assert m["env_bpfo_g"] > 50 * normal["env_bpfo_g"]


def test_normal_recording_shows_neither(medians) -> None:
    m = medians["normal"]
    assert not stands_out(m, "env_bpfi_g") and not stands_out(m, "env_bpfo_g")
    assert max(m[d] for d in DEFECTS) < 0.01


def test_running_speed_is_found(medians) -> None:
    for m in medians.values():
        assert m["shaft_speed_rpm"] == pytest.approx(1796.5, rel=0.01)
