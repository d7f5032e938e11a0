"""Shared fixtures: the sample corpus and the public corpora beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_corpora"
SHARED_DATA = Path(os.environ.get("NERX_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public corpora not found at {SHARED_DATA} (set NERX_SHARED_DATA)")
    return SHARED_DATA
