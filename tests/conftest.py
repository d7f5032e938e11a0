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


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A random 2-layer BERT whose vocabulary holds every word of the sample corpus."""
    import re

    from tests.tiny_encoder import build_tiny_encoder

    words = set(re.findall(r"\w+|[^\w\s]", (SAMPLES / "news.jsonl").read_text(encoding="utf-8")))
    return str(build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), words))
