"""Shared test helpers: where the real recordings are, and a skip when they are not."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CWRU = REPO.parent / "shared" / "datasets" / "cwru"
FIXTURES = REPO / "fixtures"
PIPELINES = REPO / "pipelines"


@pytest.fixture(scope="session")
def cwru() -> Path:
    """The CWRU recordings folder (read in place, never copied); skips when absent."""
    if not (CWRU / "de12k").is_dir():
        pytest.skip(f"CWRU recordings not found at {CWRU} (see ../shared/datasets/cwru/README.md)")
    return CWRU
