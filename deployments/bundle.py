"""The bundle deployment: one model bundle's engine (and optional encoder) in an autoscaled replica.

It turns a tactic request into a prompt and an engine request, and returns the raw completions; the
ingress applies the contract (cleaning, deduplication, ranking). Engines are injected, vLLM by default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger
from ray import serve

from deployments.config import BundleConfig, EncoderConfig
from deployments.errors import UnsupportedRouteError
from deployments.log_setup import configure_logging
from deployments.validation import resolve_sampling
from models.engine import EngineOutput, GenerationEngine, TextEncoder
from models.prompts import PromptBuilder, load_chat_renderer

EngineFactory = Callable[[BundleConfig], GenerationEngine]
EncoderFactory = Callable[[EncoderConfig], TextEncoder]


@dataclass(frozen=True)
class TacticRequest:
    """What the ingress asks of a bundle (it crosses a process boundary: keep it plain)."""

    request_id: str
    state: str
    prefix: str = ""
    n: int | None = None
    max_tokens: int | None = None


def _default_engine_factory(config: BundleConfig) -> GenerationEngine:
    from models.vllm_engine import VLLMEngine  # lazy: the only path that imports vLLM

    return VLLMEngine(config)


def _default_encoder_factory(config: EncoderConfig) -> TextEncoder:
    from models.encoder import TransformersEncoder

    return TransformersEncoder(config)


# A short real state: the first requests of a fresh CPU engine are slow (seconds), so the replica
# sends these before it reports ready rather than making the first user wait.
WARMUP_STATE = "x : ℕ\nh₀ : x + 1 = 2\n⊢ x = 1"
WARMUP_REQUESTS = 2


class BundleServer:
    # async: Serve awaits it, and the engine's start and warm-up requests need the replica's event loop
    # (AsyncLLM binds its output handler to the loop of its first request).
    async def __init__(
        self,
        config: BundleConfig,
        engine_factory: EngineFactory | None = None,
        encoder_factory: EncoderFactory | None = None,
    ):
        configure_logging(f"bundle:{config.name}")
        self.config = config
        started = time.perf_counter()
        self.engine: GenerationEngine | None = None
        self.engine_requests = 0  # engine calls since start (shows coalescing at work in /health's report)
        self.prompts: PromptBuilder | None = None
        if config.model is not None:
            chat_renderer = load_chat_renderer(config.tokenizer or config.model) if config.prompt.chat else None
            self.prompts = PromptBuilder(config.prompt, chat_renderer)
            self.engine = (engine_factory or _default_engine_factory)(config)
            await self.engine.start()
            await self._warm_up()
        self.encoder: TextEncoder | None = None
        if config.encoder is not None:
            self.encoder = (encoder_factory or _default_encoder_factory)(config.encoder)
            self._encode_batch.set_max_batch_size(config.encoder.max_batch_size)
            self._encode_batch.set_batch_wait_timeout_s(config.encoder.batch_wait_timeout_s)
        logger.info("bundle {} ready in {:.1f}s (routes: {})", config.name, time.perf_counter() - started, config.routes)

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        sampling = resolve_sampling(self.config.sampling, None, None)
        for i in range(WARMUP_REQUESTS):
            await self.engine.generate(self.prompts.build(WARMUP_STATE), sampling, f"warmup-{i}-{id(self)}")
        logger.info("engine warm-up took {:.1f}s", time.perf_counter() - started)

    async def generate(self, request: TacticRequest) -> EngineOutput:
        if self.engine is None or self.prompts is None:
            raise UnsupportedRouteError.generation(self.config.name)
        log = logger.bind(request_id=request.request_id)
        sampling = resolve_sampling(self.config.sampling, request.n, request.max_tokens)
        prompt = self.prompts.build(request.state, request.prefix)
        log.debug("prompt: {!r}", prompt)
        started = time.perf_counter()
        self.engine_requests += 1
        output = await self.engine.generate(prompt, sampling, request.request_id)
        elapsed = time.perf_counter() - started
        generated = sum(c.num_tokens for c in output.completions)
        log.info(
            "generated n={} prompt_tokens={} tokens={} in {:.3f}s", sampling.n, output.prompt_tokens, generated, elapsed
        )
        return output

    async def encode(self, request_id: str, text: str) -> list[float]:
        if self.encoder is None:
            raise UnsupportedRouteError.encoding(self.config.name)
        started = time.perf_counter()
        vector = await self._encode_batch(text)
        logger.bind(request_id=request_id).info(
            "encoded {} chars in {:.3f}s", len(text), time.perf_counter() - started
        )
        return vector

    # Concurrent /encode calls share one forward pass; sizes are set from the config in __init__.
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _encode_batch(self, texts: list[str]) -> list[list[float]]:
        # The forward pass blocks: run it off the event loop so generation requests keep flowing.
        return await asyncio.to_thread(self.encoder.encode_batch, texts)

    async def check_health(self) -> None:
        """Called by Serve every health_check_period_s; raising gets this replica replaced."""
        if self.engine is not None:
            await self.engine.check_health()

    async def health(self) -> dict[str, object]:
        """What /health reports for this bundle; raises like check_health when the engine is gone."""
        await self.check_health()
        return {
            "status": "ok",
            "unfinished_requests": await self.num_unfinished_requests(),
            "engine_requests": self.engine_requests,
        }

    async def num_unfinished_requests(self) -> int:
        return await self.engine.num_unfinished_requests() if self.engine is not None else 0

    async def __del__(self) -> None:
        # Serve awaits this on graceful shutdown: stop the engine core process with the replica.
        if self.engine is not None:
            self.engine.shutdown()
            logger.info("engine of {} shut down", self.config.name)
