"""Request checks and sampling resolution: plain functions over plain values, shared by every front door."""

from __future__ import annotations

from core.config import RequestLimits, SamplingDefaults
from core.errors import InputTooLargeError, InvalidRequestError
from core.payloads import SamplingRequest


def check_text_size(field: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InputTooLargeError(f"{field} is {len(text)} characters; the limit is {limit}")


def check_sampling_limits(n: int | None, max_tokens: int | None, limits: RequestLimits) -> None:
    if n is not None and n > limits.max_n:
        raise InvalidRequestError(f"n is {n}; the limit is {limits.max_n}")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise InvalidRequestError(f"max_tokens is {max_tokens}; the limit is {limits.max_tokens}")


def check_tactic_request(state: str, prefix: str, n: int | None, max_tokens: int | None, limits: RequestLimits) -> None:
    check_text_size("input", state, limits.max_input_chars)
    check_text_size("prefix", prefix, limits.max_prefix_chars)
    check_sampling_limits(n, max_tokens, limits)


def check_proof_request(theorem: str, problem: str, n: int | None, max_tokens: int | None, limits: RequestLimits) -> None:
    if not theorem.strip():
        raise InvalidRequestError("theorem is empty")
    check_text_size("theorem", theorem, limits.max_input_chars)
    check_text_size("problem", problem, limits.max_input_chars)
    check_sampling_limits(n, max_tokens, limits)


def check_encode_request(text: str, limits: RequestLimits) -> None:
    check_text_size("input", text, limits.max_input_chars)


def resolve_sampling(
    defaults: SamplingDefaults, n: int | None, max_tokens: int | None, priority: int = 0
) -> SamplingRequest:
    """The bundle's defaults, with the request's own `n` and `max_tokens` where it gives them. A greedy bundle
    (temperature 0) samples one candidate: more would all be the same (and vLLM refuses n > 1 there)."""
    return SamplingRequest(
        n=1 if defaults.temperature == 0 else (n or defaults.n),
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        max_tokens=max_tokens or defaults.max_tokens,
        stop=tuple(defaults.stop),
        priority=priority,
    )


def check_batch_size(items: int, limits: RequestLimits) -> None:
    if items == 0:
        raise InvalidRequestError("items is empty")
    if items > limits.max_batch_items:
        raise InputTooLargeError(f"items has {items} entries; the limit is {limits.max_batch_items}")


def check_batch(count: int, limits: RequestLimits) -> None:
    """Texts (or choices) asked for in one request: no more than `max_n`."""
    if count > limits.max_n:
        raise InvalidRequestError(f"the request asks for {count} texts or choices; the limit is {limits.max_n}")


def check_prompt(prompt: str | list[dict[str, str]], limits: RequestLimits) -> None:
    """A raw prompt, or all turns together, within the input limit; no turn without text."""
    if isinstance(prompt, str):
        check_text_size("prompt", prompt, limits.max_prompt_chars)
        return
    if not prompt:
        raise InvalidRequestError("messages is empty")
    check_text_size("messages", "".join(turn.get("content", "") for turn in prompt), limits.max_prompt_chars)


def resolve_client_sampling(
    defaults: SamplingDefaults,
    limits: RequestLimits,
    *,
    n: int | None,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: tuple[str, ...],
    logprobs: int | None = None,
    ignore_eos: bool = False,
) -> SamplingRequest:
    """What a raw completion samples: the client's values within `limits`, else the bundle's defaults; one
    choice unless `n` says more (OpenAI's default), and only the client's own stop strings (the bundle's are
    for its own tactic prompt)."""
    check_sampling_limits(n, max_tokens, limits)
    return SamplingRequest(
        n=n or 1,
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p if top_p is None else top_p,
        max_tokens=max_tokens or defaults.max_tokens,
        stop=stop,
        logprobs=logprobs,
        ignore_eos=ignore_eos,
    )
