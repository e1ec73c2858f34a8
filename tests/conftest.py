"""Shared fixtures: tiny random models built once per session from a config (no hub, no download)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import build_tiny_byt5, build_tiny_encoder, build_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("models") / "tiny-encoder")


@pytest.fixture(scope="session")
def tiny_byt5(tmp_path_factory) -> Path:
    """Stands in for kaiyuy/leandojo-lean4-tacgen-byt5-small."""
    return build_tiny_byt5(tmp_path_factory.mktemp("models") / "tiny-byt5-tacgen")


@pytest.fixture(scope="session")
def tiny_byt5_retriever(tmp_path_factory) -> Path:
    """Stands in for kaiyuy/leandojo-lean4-retriever-byt5-small."""
    return build_tiny_byt5(tmp_path_factory.mktemp("models") / "tiny-byt5-retriever", seed=1)


@pytest.fixture(scope="session")
def tiny_progress_checkpoint(tmp_path_factory) -> Path:
    from tiny_scorer import build_tiny_progress_checkpoint

    return build_tiny_progress_checkpoint(tmp_path_factory.mktemp("models") / "tiny-leanprogress")
