"""The DSP benchmark measures what it says: the same windows on both sides, the band
re-chosen as a stream re-chooses it, speeds that change from window to window, and growth
curves named by a fit that can tell the shapes apart. No timing is asserted (docs say
where the figures are measured)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from pdm.dsp.features import FeatureExtractor
from pdm.tools.bench_dsp import (
    NOMINAL_RPM,
    RPM_RANGE,
    StreamCalls,
    fit_growth,
    mixed_speed_fleet,
    speed_searched_extractor,
    windows,
)

REPO = Path(__file__).resolve().parents[2]


def test_fit_tells_n_log_n_from_linear_and_gives_the_fixed_part() -> None:
    n = np.array([4096.0, 8192, 16384, 32768, 65536])
    nlogn = fit_growth(n, 40.0 + 0.002 * n * np.log2(n), unit="us")
    assert nlogn["shape"] == "n log n" and abs(nlogn["a_us"] - 40.0) < 0.5
    c = np.array([1.0, 2, 3, 4, 6, 8])
    lin = fit_growth(c, 100.0 + 60.0 * c, unit="us")
    assert lin["shape"] == "linear" and abs(lin["a_us"] - 100.0) < 0.5 and lin["b"] == 60.0


class _Spy:
    """The extractor's passes, recorded: which chose the band, which looked at it."""

    def __init__(self, ex) -> None:
        self.ex, self.choices, self.looks, self.calls = ex, [], [], 0

    def __getattr__(self, name):
        return getattr(self.ex, name)

    def _extract(self, parts, envelope_band_hz, band_state=None, stage_s=None):
        if envelope_band_hz is None:
            self.choices.append(self.calls)
        self.calls += 1
        return self.ex._extract(parts, envelope_band_hz, band_state, stage_s)

    def band_holds(self, frame):
        self.looks.append(self.calls - 1)
        return self.ex.band_holds(frame)

    def extract_scheduled(self, windows, schedule, *, stage_s=None):
        return FeatureExtractor.extract_scheduled(self, windows, schedule, stage_s=stage_s)  # type: ignore[arg-type]


def test_the_band_is_chosen_and_looked_at_as_a_stream_does() -> None:
    """The bench's calls pay the band as FeatureStream's schedule does: choices at a
    segment's first window, 64, 192, 448, 960 and then every 1024 windows; a look every 128
    windows between; the steady period is 1024 windows. A segment every 64 windows costs
    a choice every 64 windows (the former policy)."""
    ex = speed_searched_extractor(n=4096, fs=12800.0)
    assert ex.auto_band
    pool = windows(16, n=4096, fs=12800.0).reshape(2, 8, 3, 4096)
    spy = _Spy(ex)
    stream = StreamCalls(spy, pool)  # type: ignore[arg-type]
    for _ in range(256):
        stream()
    assert stream.period == 128
    assert spy.choices == [0, 8, 24, 56, 120, 248]  # windows 0, 64, 192, 448, 960, 1984
    assert spy.looks and all(b - a >= 16 for a, b in itertools.pairwise(spy.looks))
    every64 = _Spy(ex)
    stream = StreamCalls(every64, pool, segment_windows=64)  # type: ignore[arg-type]
    for _ in range(24):
        stream()
    assert stream.period == 8 and every64.choices == [0, 8, 16] and not every64.looks
    single = _Spy(ex)
    stream = StreamCalls(single, pool.reshape(16, 3, 4096))  # type: ignore[arg-type]
    for _ in range(200):
        stream()
    assert stream.period == 1024 and single.choices == [0, 64, 192]


def test_bench_windows_run_at_speeds_the_search_finds_and_that_differ() -> None:
    ex = speed_searched_extractor()
    assert ex.rpm_range == RPM_RANGE
    frames = ex.extract_batch(windows(8, seed=1))
    rpm = np.array([f.shaft_speed_rpm for f in frames])
    assert np.all(np.abs(rpm / NOMINAL_RPM - 1) < 0.045)
    assert len(set(np.round(rpm, 3).tolist())) == 8


def test_the_mixed_speed_round_is_one_pass_of_machines_at_different_speeds() -> None:
    """The mixed fleet's machines run at four speeds, fixed and searched, and share a key:
    the figure times one pass, not eight."""
    fleet = mixed_speed_fleet()
    assert len(fleet) == 8 and len({ex.batch_key for ex in fleet}) == 1
    assert sorted({ex.rpm for ex in fleet if ex.rpm}) == [990.0, 1480.0, 1780.0, 2960.0]
    assert sum(ex.rpm_range is not None for ex in fleet) == 4


def _bench(*flags: str) -> dict:
    """``pdm-edge bench FLAGS --quick --json``'s output."""
    r = subprocess.run(
        [sys.executable, "-m", "pdm.cli", "bench", *flags, "--quick", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bench_dsp_only_prints_the_headline_keys_and_what_they_are() -> None:
    out = _bench("--dsp-only")
    for key in ("dsp_ratio_to_batched_rfft", "dsp_ratio_single"):
        assert out[key] > 0 and len(out[f"{key}_spread"]) == 2
        assert out[f"{key}_extract_us_per_window"] > 0 and out[f"{key}_rfft_us_per_window"] > 0
        assert key in out["notes"]
    mixed = "dsp_mixed_speed_us_per_window"
    assert out[mixed] > 0 and out["dsp_mixed_speed_rfft_us_per_window"] > 0
    assert out["dsp_mixed_speed_alone_us_per_window"] > 0 and mixed in out["notes"]
    assert set(out["dsp_variants"]) == {
        "fixed_band",
        "fixed_speed_fixed_band",
        "segment_start",
        "band_every_64_windows",
    }


def test_bench_diagnosis_only_prints_each_reading_mode_and_what_it_is() -> None:
    """The diagnosis engine's cost in the service's stream path against the extraction of
    the same windows (figures never asserted on: docs/diagnosis.md §10)."""
    out = _bench("--diagnosis-only")
    assert out["diagnosis_extract_us_per_window"] > 0
    for key in ("diagnosis", "diagnosis_unread", "diagnosis_alerting"):
        # CPU-time differences of two streams: finite, possibly ~0 for the unread mode.
        assert isinstance(out[f"{key}_us_per_window"], float)
        assert isinstance(out[f"{key}_share_of_extract"], float)
        assert f"{key}_share_of_extract" in out["notes"]
