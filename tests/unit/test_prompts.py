"""Prompt templates: raw prover prompts, chat prompts with few-shot turns, prefix continuation."""

import pytest

from core.config import PromptConfig
from logic.prompts import PromptBuilder
from models.chat_template import load_chat_renderer

STATE = "x : ℕ\n⊢ x + 0 = x"


def test_raw_template_is_continued_after_the_prefix():
    builder = PromptBuilder(PromptConfig(template="{state}:::"))
    assert builder.build(STATE) == STATE + ":::"
    assert builder.build(STATE, prefix="simp ") == STATE + ":::simp "


def test_state_with_braces_is_not_a_format_string():
    builder = PromptBuilder(PromptConfig(template="{state}:::"))
    assert builder.build("⊢ {x | x > 0} = ∅") == "⊢ {x | x > 0} = ∅:::"


def test_chat_prompt_uses_the_model_chat_template(tiny_llama):
    config = PromptConfig(chat=True, system="One tactic.", few_shot=[{"state": "⊢ 1 = 1", "tactic": "rfl"}])
    builder = PromptBuilder(config, load_chat_renderer(str(tiny_llama)))
    prompt = builder.build(STATE, prefix="simp")
    assert prompt.startswith("<|im_start|>system\nOne tactic.<|im_end|>\n")
    assert "<|im_start|>user\n⊢ 1 = 1<|im_end|>\n<|im_start|>assistant\nrfl<|im_end|>\n" in prompt
    assert prompt.endswith(f"<|im_start|>user\n{STATE}<|im_end|>\n<|im_start|>assistant\nsimp")


def test_chat_prompt_needs_a_chat_template():
    with pytest.raises(ValueError):
        PromptBuilder(PromptConfig(chat=True))
