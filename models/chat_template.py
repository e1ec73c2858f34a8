"""A local model's own chat template, from its tokenizer folder (transformers, no download)."""

from __future__ import annotations

from logic.prompts import ChatRenderer


def load_chat_renderer(tokenizer_path: str) -> ChatRenderer:
    """The model's own chat template, from its tokenizer folder (transformers, no download)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{tokenizer_path} has no chat template; set prompt.chat: false")

    def render(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return render
