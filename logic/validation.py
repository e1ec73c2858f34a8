"""Request checks and sampling resolution: plain functions over plain values, shared by every front door.

Every text field is checked here, at the edge, before any engine sees it:
- it must be text a tokenizer can take: encodable as UTF-8 (JSON's `\\ud800` decodes to a lone surrogate,
  which every tokenizer chokes on) and free of NUL (no Lean text holds one) -> 422;
- it must fit the limits -> 413. Characters are counted, except where the tokens are UTF-8 bytes (ByT5
  bundles, see `BundleConfig.tokens_are_bytes`, and /encode): there one "𝔸" is four tokens, so the same
  limits count UTF-8 bytes (65,536 × "𝔸" is 262,144 tokens, four times the limit).
"""

from __future__ import annotations

from core.config import RequestLimits, SamplingDefaults
from core.errors import InputTooLargeError, InvalidRequestError
from core.payloads import SamplingRequest


def check_text(field: str, text: str) -> None:
    """422 for text no tokenizer can take: a lone surrogate (not encodable as UTF-8) or a NUL character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{field} is not valid Unicode text: a lone surrogate at character {exc.start}"
        ) from None
    if "\x00" in text:
        raise InvalidRequestError(f"{field} holds a NUL character at character {text.index(chr(0))}")


def check_text_size(field: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InputTooLargeError(f"{field} is {len(text)} characters; the limit is {limit}")


def check_byte_size(field: str, text: str, limit: int) -> None:
    """For byte-level tokenizers: the UTF-8 size is the token count (each character is 1 to 4 tokens)."""
    if len(text) * 4 <= limit:  # cannot be over: skip the encoding
        return
    size = len(text.encode("utf-8"))
    if size > limit:
        raise InputTooLargeError(f"{field} is {size} UTF-8 bytes (its tokens are bytes); the limit is {limit}")


def check_sampling_limits(n: int | None, max_tokens: int | None, limits: RequestLimits) -> None:
    if n is not None and n > limits.max_n:
        raise InvalidRequestError(f"n is {n}; the limit is {limits.max_n}")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise InvalidRequestError(f"max_tokens is {max_tokens}; the limit is {limits.max_tokens}")


def _check_field(field: str, text: str, limit: int, tokens_are_bytes: bool) -> None:
    check_text_size(field, text, limit)  # first: cheap, and it bounds the work of the checks below
    check_text(field, text)
    if tokens_are_bytes:
        check_byte_size(field, text, limit)


def check_tactic_request(
    state: str, prefix: str, n: int | None, max_tokens: int | None, limits: RequestLimits, tokens_are_bytes: bool = False
) -> None:
    _check_field("input", state, limits.max_input_chars, tokens_are_bytes)
    _check_field("prefix", prefix, limits.max_prefix_chars, tokens_are_bytes)
    check_sampling_limits(n, max_tokens, limits)


def check_proof_request(
    theorem: str, problem: str, n: int | None, max_tokens: int | None, limits: RequestLimits, tokens_are_bytes: bool = False
) -> None:
    if not theorem.strip():
        raise InvalidRequestError("theorem is empty")
    _check_field("theorem", theorem, limits.max_input_chars, tokens_are_bytes)
    _check_field("problem", problem, limits.max_input_chars, tokens_are_bytes)
    check_sampling_limits(n, max_tokens, limits)


def check_encode_request(text: str, limits: RequestLimits) -> None:
    # Encoders tokenize the whole input before truncating it, and LeanCopilot's retriever is ByT5: bytes count.
    _check_field("input", text, limits.max_input_chars, tokens_are_bytes=True)


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


def check_prompt(prompt: str | list[dict[str, str]], limits: RequestLimits, tokens_are_bytes: bool = False) -> None:
    """A raw prompt, or all turns together, within the input limit (in bytes where tokens are bytes), and text a
    tokenizer can take; no turn without text."""
    if isinstance(prompt, str):
        field, text = "prompt", prompt
    else:
        if not prompt:
            raise InvalidRequestError("messages is empty")
        field, text = "messages", "".join(turn.get("content", "") for turn in prompt)
    _check_field(field, text, limits.max_prompt_chars, tokens_are_bytes)


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
