"""Request checks and sampling resolution: plain functions, tested without Ray."""

from __future__ import annotations

from deployments.config import RequestLimits, SamplingDefaults
from deployments.errors import InputTooLargeError, InvalidRequestError
from deployments.protocol import GenerateRequest, ProveRequest
from models.engine import SamplingRequest


def check_input_size(text: str, limits: RequestLimits) -> None:
    if len(text) > limits.max_input_chars:
        raise InputTooLargeError(
            f"input is {len(text)} characters; the limit is {limits.max_input_chars}"
        )


def check_generate_request(request: GenerateRequest, limits: RequestLimits) -> None:
    check_input_size(request.input, limits)
    if request.prefix and len(request.prefix) > limits.max_prefix_chars:
        raise InputTooLargeError(
            f"prefix is {len(request.prefix)} characters; the limit is {limits.max_prefix_chars}"
        )
    check_sampling_limits(request.n, request.max_tokens, limits)


def check_sampling_limits(n: int | None, max_tokens: int | None, limits: RequestLimits) -> None:
    if n is not None and n > limits.max_n:
        raise InvalidRequestError(f"n is {n}; the limit is {limits.max_n}")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise InvalidRequestError(f"max_tokens is {max_tokens}; the limit is {limits.max_tokens}")


def check_prove_request(request: ProveRequest, limits: RequestLimits) -> None:
    if not request.theorem.strip():
        raise InvalidRequestError("theorem is empty")
    if len(request.theorem) > limits.max_input_chars:
        raise InputTooLargeError(f"theorem is {len(request.theorem)} characters; the limit is {limits.max_input_chars}")
    if request.problem and len(request.problem) > limits.max_input_chars:
        raise InputTooLargeError(f"problem is {len(request.problem)} characters; the limit is {limits.max_input_chars}")
    check_sampling_limits(request.n, request.max_tokens, limits)


def resolve_sampling(defaults: SamplingDefaults, n: int | None, max_tokens: int | None) -> SamplingRequest:
    """The bundle's defaults, with the request's own `n` and `max_tokens` where it gives them."""
    return SamplingRequest(
        n=n or defaults.n,
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        max_tokens=max_tokens or defaults.max_tokens,
        stop=tuple(defaults.stop),
    )
