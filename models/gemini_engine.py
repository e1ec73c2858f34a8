"""Google Gemini (the `google-genai` SDK; optional extra `gemini`).

n candidates: `candidate_count` in one call (`remote.n_per_call: false`: n parallel calls). Scores: the
candidate's `avgLogprobs` when the API returns it (exp of it is the mean-token probability), otherwise the
bundle ranks them (logic/tactics.py rank_score). The SDK's own retries stay off: RemoteChatEngine retries.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from core.payloads import ChatMessages, Completion, SamplingRequest
from models.remote_engine import ApiFailure, RemoteChatEngine, parse_retry_after

if TYPE_CHECKING:
    from core.config import BundleConfig

try:  # the SDK's async path uses aiohttp when it is installed, httpx otherwise
    import aiohttp

    _CONNECTION_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, aiohttp.ClientError)
except ImportError:  # pragma: no cover
    _CONNECTION_ERRORS = (httpx.TransportError,)


def to_api_failure(exc: BaseException) -> ApiFailure:
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return ApiFailure(f"timed out: {exc!r}", timeout=True)
    if isinstance(exc, genai_errors.APIError):
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        retry_after = parse_retry_after(headers.get("retry-after")) if hasattr(headers, "get") else None
        return ApiFailure(f"HTTP {exc.code}: {exc.message}", status=exc.code, retry_after_s=retry_after)
    return ApiFailure(f"{type(exc).__name__}: {exc}")


def to_contents(messages: ChatMessages) -> tuple[str | None, list[types.Content]]:
    """Gemini's turns are `user` and `model`; the system prompt is a separate instruction."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    contents = [
        types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
        for m in messages
        if m["role"] != "system"
    ]
    return system, contents


def completion_from_candidate(candidate: Any) -> Completion:
    parts = getattr(candidate.content, "parts", None) or []
    # Thought summaries are not the answer.
    text = "".join(p.text for p in parts if p.text and not getattr(p, "thought", False))
    tokens = candidate.token_count or 0
    avg = candidate.avg_logprobs
    finish = candidate.finish_reason
    return Completion(
        text=text,
        cumulative_logprob=avg * max(1, tokens) if avg is not None else None,
        num_tokens=max(1, tokens) if avg is not None else tokens,
        finish_reason=getattr(finish, "value", finish),
    )


class GeminiChatEngine(RemoteChatEngine):
    supports_n_per_call = True

    def __init__(self, bundle: BundleConfig):
        super().__init__(bundle)
        http_options = types.HttpOptions(
            base_url=self.settings.base_url,
            timeout=int(self.settings.timeout_s * 1000),  # milliseconds
            retry_options=None,  # no SDK retries
        )
        self._client = genai.Client(api_key=self.api_key, http_options=http_options)

    async def _call(self, messages: ChatMessages, sampling: SamplingRequest, n: int) -> list[Completion]:
        system, contents = to_contents(messages)
        config: dict[str, Any] = {"max_output_tokens": sampling.max_tokens, "candidate_count": n}
        if system:
            config["system_instruction"] = system
        if self.send_sampling:
            config.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if sampling.stop:
            config["stop_sequences"] = list(sampling.stop)
        config.update(self.settings.extra_body)
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=contents, config=types.GenerateContentConfig(**config)
            )
        except (TimeoutError, genai_errors.APIError, *_CONNECTION_ERRORS) as exc:
            raise to_api_failure(exc) from exc
        return [completion_from_candidate(c) for c in response.candidates or []]

    async def _close(self) -> None:
        await self._client.aio.aclose()
