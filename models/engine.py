"""The small interface every generation engine implements, and the data it exchanges.

The bundle deployment depends on this module only; concrete engines (vLLM today) are imported lazily,
so tests and pure logic never pull in vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


# A chat conversation ({"role": ..., "content": ...} turns): what remote engines take instead of a string.
ChatMessages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingRequest:
    """What one engine request samples: `n` candidates for one prompt."""

    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    """One sampled continuation, with what the score needs."""

    text: str
    cumulative_logprob: float | None
    num_tokens: int
    # "stop" (a stop string or EOS) or "length" (cut at max_tokens); None if the engine does not say.
    finish_reason: str | None = None
    # The engine's own probability in [0, 1], where the model's convention is not exp(mean token log-prob):
    # beam search scores exp(sequence log-prob), as LeanCopilot does. None: scored from the log-prob.
    score: float | None = None


@dataclass(frozen=True)
class EngineOutput:
    completions: list[Completion]
    prompt_tokens: int = 0


@dataclass(frozen=True)
class EngineLoad:
    """The engine's own queue, for metrics: requests in the running batch and requests waiting for it."""

    running: int = 0
    waiting: int = 0


@runtime_checkable
class GenerationEngine(Protocol):
    """An engine. `start` loads it; cancelling `generate` must abort the request inside the engine."""

    async def start(self) -> None: ...

    async def generate(self, prompt: str | ChatMessages, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        """`prompt` is the rendered text, or the chat messages for engines that take chat (remote APIs)."""

    async def check_health(self) -> None:
        """Raise if the engine can no longer serve (the replica is then replaced)."""

    async def num_unfinished_requests(self) -> int: ...

    def load(self) -> EngineLoad:
        """Running and waiting requests as the engine's scheduler last reported them."""

    def shutdown(self) -> None: ...


def engine_not_ready_reason(engine: GenerationEngine) -> str | None:
    """Why a started engine cannot serve yet (a remote bundle without its API key), or None.

    An optional attribute, not a health failure: a failing check_health makes Serve restart the replica
    in a loop, while a not-ready bundle should stay deployed and say why.
    """
    return getattr(engine, "not_ready_reason", None)


@runtime_checkable
class PrefixForcingEngine(Protocol):
    """An encoder-decoder engine: the prompt goes to the encoder and the prefix is forced on the decoder,
    so the prefix cannot simply be appended to the prompt as for a decoder-only model."""

    async def generate_with_prefix(
        self, prompt: str, prefix: str, sampling: SamplingRequest, request_id: str
    ) -> EngineOutput: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into one vector each (/encode)."""

    def encode_batch(self, texts: list[str]) -> list[list[float]]: ...
