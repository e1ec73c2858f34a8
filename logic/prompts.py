"""Prompt templates: a proof state (and the user's prefix) becomes the text the engine continues, or the chat
turns a remote API answers. Pure: the chat template itself is injected (models/chat_template.py loads it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import PromptConfig

# The model's own chat template as a function of the turns (models/chat_template.py loads one).
ChatRenderer = Callable[[list[dict[str, str]]], str]


class PromptBuilder:
    """Renders prompts for one bundle; generation always continues right after the returned text."""

    def __init__(self, config: PromptConfig, render_chat: ChatRenderer | None = None, messages_only: bool = False):
        # messages_only: the engine takes chat messages (remote APIs) and renders them itself.
        if config.chat and render_chat is None and not messages_only:
            raise ValueError("a chat prompt needs the model's chat template")
        self._config = config
        self._render_chat = render_chat

    def chat_messages(self, state: str, name: str = "") -> list[dict[str, str]]:
        config = self._config
        messages = [{"role": "system", "content": config.system}] if config.system else []
        for example in config.few_shot:
            messages.append({"role": "user", "content": config.template.format(state=example.state, name="")})
            messages.append({"role": "assistant", "content": example.tactic})
        messages.append({"role": "user", "content": config.template.format(state=state, name=name)})
        return messages

    def build_messages(self, state: str, prefix: str = "", name: str = "") -> list[dict[str, str]]:
        """Chat messages for an API that answers whole turns: a prefix cannot be continued there, so it is
        appended to the user turn (as the seed's HFTacticGenerator does) and answers must start with it."""
        messages = self.chat_messages(state, name)
        if prefix:
            last = messages[-1]
            messages[-1] = {**last, "content": last["content"] + f"\n\nThe tactic must start with: {prefix}"}
        return messages

    def render(self, messages: list[dict[str, str]]) -> str:
        """Turns the client wrote (LLMLean's prompt), through the model's chat template."""
        assert self._render_chat is not None, "only a chat prompt renders turns"
        return self._render_chat(messages)

    def build(self, state: str, prefix: str = "", name: str = "") -> str:
        """The prompt for `state`; a non-empty `prefix` is appended so the model continues it."""
        if not self._config.chat:
            return self._config.template.format(state=state, name=name) + prefix
        assert self._render_chat is not None
        return self._render_chat(self.chat_messages(state, name)) + prefix
