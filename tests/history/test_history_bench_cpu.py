"""``history_cpu_us_per_window`` of ``pdm-edge bench --json``: what it is made of (its size is
the bench's business, never a test's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdm.history import open_store
from pdm.tools.bench_history import CPU_CHANNELS, cpu_per_window


def test_the_figure_is_its_two_threads_and_every_row_reaches_the_store(tmp_path: Path) -> None:
    got = cpu_per_window(tmp_path, windows=80)
    assert got["history_cpu_windows"] == 80 and got["history_cpu_channels"] == len(CPU_CHANNELS)
    assert got["history_cpu_features_per_channel"] > 10
    submit, writer = (
        got["history_cpu_us_per_window_submit"],
        got["history_cpu_us_per_window_writer"],
    )
    assert submit > 0 and writer > 0
    assert got["history_cpu_us_per_window"] == pytest.approx(submit + writer, abs=0.2)
    (path,) = tmp_path.glob("cpu-history-*.db")
    with open_store(f"sqlite:///{path}") as store:
        assert store.count("features") == 80 * len(CPU_CHANNELS)
        assert store.count("scores") == 80
        sets, rest = divmod(store.count("spectra"), 2 * len(CPU_CHANNELS))
        assert rest == 0 and sets >= 8  # each machine's first set, then one on its grid
