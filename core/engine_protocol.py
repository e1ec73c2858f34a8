"""The small interfaces every engine implements (the data they exchange is in core/payloads.py).

The pipelines (logic/pipelines.py) and the bundle deployment depend on these only; concrete engines
(models/) are built by models/engine_factory.py, so pure logic never pulls in vLLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from core.payloads import ChatMessages, EngineLoad, EngineOutput, SamplingRequest, StreamChunk


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
class StreamingEngine(Protocol):
    """An engine that hands out each choice's new text as it is sampled (vLLM); the others answer at once."""

    def generate_stream(
        self, prompt: str | ChatMessages, sampling: SamplingRequest, request_id: str
    ) -> AsyncIterator[StreamChunk]: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into one vector each (/encode)."""

    def encode_batch(self, texts: list[str]) -> list[list[float]]: ...
