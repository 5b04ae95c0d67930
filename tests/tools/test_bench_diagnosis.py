"""``pdm-edge bench --diagnosis-only``: the diagnosis engine's cost in the stream path the
service runs, against the extraction of the same windows (figures only in the bench's
output, never asserted on: docs/diagnosis.md §10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_diagnosis_only_prints_each_reading_mode_and_what_it_is() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pdm.cli", "bench", "--diagnosis-only", "--quick", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["diagnosis_extract_us_per_window"] > 0
    for key in ("diagnosis", "diagnosis_unread", "diagnosis_alerting"):
        # CPU-time differences of two streams: finite, possibly ~0 for the unread mode.
        assert isinstance(out[f"{key}_us_per_window"], float)
        assert isinstance(out[f"{key}_share_of_extract"], float)
        assert f"{key}_share_of_extract" in out["notes"]
