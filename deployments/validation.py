"""Request checks and sampling resolution: plain functions, tested without Ray."""

from __future__ import annotations

from deployments.config import RequestLimits, SamplingDefaults
from deployments.errors import InputTooLargeError, InvalidRequestError
from deployments.protocol import GenerateRequest
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
    if request.n is not None and request.n > limits.max_n:
        raise InvalidRequestError(f"n is {request.n}; the limit is {limits.max_n}")
    if request.max_tokens is not None and request.max_tokens > limits.max_tokens:
        raise InvalidRequestError(f"max_tokens is {request.max_tokens}; the limit is {limits.max_tokens}")


def resolve_sampling(defaults: SamplingDefaults, n: int | None, max_tokens: int | None) -> SamplingRequest:
    """The bundle's defaults, with the request's own `n` and `max_tokens` where it gives them."""
    return SamplingRequest(
        n=n or defaults.n,
        temperature=defaults.temperature,
        top_p=defaults.top_p,
        max_tokens=max_tokens or defaults.max_tokens,
        stop=tuple(defaults.stop),
    )
