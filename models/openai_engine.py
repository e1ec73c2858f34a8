"""OpenAI-compatible chat completions (the official `openai` SDK, AsyncOpenAI with a base_url).

Covers the Hugging Face router (the seed's default `deepseek-ai/DeepSeek-Prover-V2-671B:novita`), OpenAI,
Together, and any remote vLLM server. n candidates: the API's `n` in one call (`remote.n_per_call: false`
for servers that lack it: then n parallel calls). Scores: the returned token log-probabilities when
`remote.logprobs` is on; otherwise the bundle ranks them (logic/tactics.py rank_score).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai

from core.payloads import ChatMessages, Completion, SamplingRequest
from models.remote_engine import ApiFailure, RemoteChatEngine, failure_from_sdk_error

if TYPE_CHECKING:
    from core.config import BundleConfig


def to_api_failure(exc: openai.OpenAIError) -> ApiFailure:
    return failure_from_sdk_error(exc, openai.APITimeoutError, openai.APIStatusError)


def completion_from_choice(choice: Any, fallback_tokens: int) -> Completion:
    """One choice of a chat completion; the log-probability is summed over its answer tokens."""
    tokens = getattr(getattr(choice, "logprobs", None), "content", None) or []
    logprobs = [t.logprob for t in tokens if t.logprob is not None]
    return Completion(
        text=choice.message.content or "",
        cumulative_logprob=sum(logprobs) if logprobs else None,
        num_tokens=len(logprobs) or fallback_tokens,
        finish_reason=choice.finish_reason,
    )


class OpenAIChatEngine(RemoteChatEngine):
    supports_n_per_call = True

    def __init__(self, bundle: BundleConfig):
        super().__init__(bundle)
        # max_retries=0: RemoteChatEngine retries with the configured policy (one policy for all APIs).
        self._client = openai.AsyncOpenAI(
            api_key=self.api_key, base_url=self.settings.base_url, timeout=self.settings.timeout_s, max_retries=0
        )

    async def _call(self, messages: ChatMessages, sampling: SamplingRequest, n: int) -> list[Completion]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": n,
            "max_tokens": sampling.max_tokens,
        }
        if self.send_sampling:
            request.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.stop:
            request["stop"] = list(sampling.stop)
        if self.settings.logprobs:
            request["logprobs"] = True
        try:
            response = await self._client.chat.completions.create(**request, extra_body=self.settings.extra_body or None)
        except openai.OpenAIError as exc:
            raise to_api_failure(exc) from exc
        usage_tokens = getattr(response.usage, "completion_tokens", 0) or 0
        per_choice = usage_tokens // max(1, len(response.choices))
        return [completion_from_choice(choice, per_choice) for choice in response.choices]

    async def _close(self) -> None:
        await self._client.close()
