"""The Anthropic Messages API (the `anthropic` SDK; optional extra `anthropic`).

The API has no `n` and no log-probabilities: n candidates are n parallel calls, and the bundle scores them
by rank (logic/tactics.py rank_score). System turns go to the `system` parameter, as the API wants.
The current Messages API (and SDK) takes no temperature or top_p: they are sent, in the request body, only
with `remote.send_sampling: true` (for older models and compatible servers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anthropic

from core.payloads import ChatMessages, Completion, SamplingRequest
from models.remote_engine import ApiFailure, RemoteChatEngine, failure_from_sdk_error

if TYPE_CHECKING:
    from core.config import BundleConfig


def to_api_failure(exc: anthropic.AnthropicError) -> ApiFailure:
    return failure_from_sdk_error(exc, anthropic.APITimeoutError, anthropic.APIStatusError)


def split_system(messages: ChatMessages) -> tuple[str | None, list[dict[str, str]]]:
    """Anthropic takes the system prompt apart from the user/assistant turns."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    return system, [m for m in messages if m["role"] != "system"]


class AnthropicChatEngine(RemoteChatEngine):
    supports_n_per_call = False
    sends_sampling_by_default = False

    def __init__(self, bundle: BundleConfig):
        super().__init__(bundle)
        self._client = anthropic.AsyncAnthropic(
            api_key=self.api_key, base_url=self.settings.base_url, timeout=self.settings.timeout_s, max_retries=0
        )

    async def _call(self, messages: ChatMessages, sampling: SamplingRequest, n: int) -> list[Completion]:
        system, turns = split_system(messages)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": sampling.max_tokens,
        }
        if system:
            request["system"] = system
        if sampling.stop:
            request["stop_sequences"] = list(sampling.stop)
        extra_body = dict(self.settings.extra_body)
        if self.send_sampling:  # no SDK parameters any more: sent as raw body fields
            extra_body.update(temperature=sampling.temperature, top_p=sampling.top_p)
        try:
            message = await self._client.messages.create(**request, extra_body=extra_body or None)
        except anthropic.AnthropicError as exc:
            raise to_api_failure(exc) from exc
        # Thinking blocks and tool calls are not the answer: keep the text blocks.
        text = "".join(block.text for block in message.content if block.type == "text")
        tokens = getattr(message.usage, "output_tokens", 0) or 0
        return [Completion(text=text, cumulative_logprob=None, num_tokens=tokens, finish_reason=message.stop_reason)]

    async def _close(self) -> None:
        await self._client.close()
