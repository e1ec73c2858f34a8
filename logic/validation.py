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
    """The bundle's defaults, with the request's own `n` and `max_tokens` where it gives them."""
    return SamplingRequest(
        n=n or defaults.n,
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
