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
from deployments.errors import ServiceUnavailableError, UnsupportedRouteError
from deployments.log_setup import configure_logging
from deployments.metrics import record_engine_load, record_tokens
from deployments.validation import resolve_sampling
from models.engine import (
    EngineOutput,
    GenerationEngine,
    PrefixForcingEngine,
    SamplingRequest,
    TextEncoder,
    engine_not_ready_reason,
)
from models.engine_factory import make_engine
from models.prompts import ChatRenderer, PromptBuilder, load_chat_renderer
from models.whole_proof import whole_proof_messages

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


@dataclass(frozen=True)
class ProofRequest:
    """What the ingress asks of a whole-proof bundle."""

    request_id: str
    theorem: str
    problem: str = ""
    n: int | None = None
    max_tokens: int | None = None


def _default_engine_factory(config: BundleConfig) -> GenerationEngine:
    return make_engine(config)  # lazy imports per engine kind: vLLM only for vLLM bundles


def _default_encoder_factory(config: EncoderConfig) -> TextEncoder:
    from models.encoder import TransformersEncoder

    return TransformersEncoder(config)


# A short real state: the first requests of a fresh CPU engine are slow (seconds), so the replica
# sends these before it reports ready rather than making the first user wait.
WARMUP_STATE = "x : ℕ\nh₀ : x + 1 = 2\n⊢ x = 1"
WARMUP_THEOREM = "theorem warmup (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by\n  sorry"
WARMUP_REQUESTS = 2
# How often a replica publishes its engine's running/waiting requests (Ray exports metrics every few seconds).
ENGINE_LOAD_PERIOD_S = 2.0
# Warm-up compiles and fills caches; it need not sample a whole proof's thousands of tokens.
WARMUP_MAX_TOKENS = 128


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
        self.proof_renderer: ChatRenderer | None = None
        if config.model is not None:
            self.engine = (engine_factory or _default_engine_factory)(config)
            # Remote chat APIs take the turns themselves; local models get them rendered by their chat template.
            chat_renderer = None
            if not config.is_remote and (config.prompt.chat or config.task == "whole_proof"):
                chat_renderer = load_chat_renderer(config.tokenizer or config.model)
            self.prompts = PromptBuilder(
                config.prompt, chat_renderer if config.prompt.chat else None, messages_only=config.is_remote
            )
            if config.task == "whole_proof":
                self.proof_renderer = chat_renderer
            await self.engine.start()
            if not config.is_remote:  # a remote warm-up call costs money and proves nothing about this replica
                await self._warm_up()
            self._load_reporter = asyncio.create_task(self._report_engine_load())
        self.encoder: TextEncoder | None = None
        if config.encoder is not None:
            self.encoder = (encoder_factory or _default_encoder_factory)(config.encoder)
            self._encode_batch.set_max_batch_size(config.encoder.max_batch_size)
            self._encode_batch.set_batch_wait_timeout_s(config.encoder.batch_wait_timeout_s)
        logger.info("bundle {} ready in {:.1f}s (routes: {})", config.name, time.perf_counter() - started, config.routes)

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        max_tokens = min(self.config.sampling.max_tokens, WARMUP_MAX_TOKENS)
        sampling = resolve_sampling(self.config.sampling, None, max_tokens)
        for i in range(WARMUP_REQUESTS):
            request_id = f"warmup-{i}-{id(self)}"
            if self.config.task == "whole_proof":
                await self._run_proof(ProofRequest(request_id, WARMUP_THEOREM), sampling)
            else:
                await self.engine.generate(self.prompts.build(WARMUP_STATE), sampling, request_id)
        logger.info("engine warm-up took {:.1f}s", time.perf_counter() - started)

    async def _report_engine_load(self) -> None:
        while True:
            try:
                load = self.engine.load()
                record_engine_load(self.config.name, load.running, load.waiting)
            except Exception:  # metrics must never take the replica down
                logger.opt(exception=True).warning("could not record the engine load")
            await asyncio.sleep(ENGINE_LOAD_PERIOD_S)

    async def generate(self, request: TacticRequest) -> EngineOutput:
        if self.config.task == "whole_proof":
            raise UnsupportedRouteError.tactic_generation(self.config.name)
        if self.engine is None or self.prompts is None:
            raise UnsupportedRouteError.generation(self.config.name)
        log = logger.bind(request_id=request.request_id)
        sampling = resolve_sampling(self.config.sampling, request.n, request.max_tokens)
        started = time.perf_counter()
        self.engine_requests += 1
        if self.config.is_remote:
            # Remote chat APIs take the turns; the prefix is asked for in the user turn.
            prompt = self.prompts.build_messages(request.state, request.prefix)
            log.debug("prompt: {!r}", prompt)
            output = await self.engine.generate(prompt, sampling, request.request_id)
        elif request.prefix and isinstance(self.engine, PrefixForcingEngine):
            # Encoder-decoder: the state is the encoder's input, the prefix the start of the decoder's output.
            prompt = self.prompts.build(request.state)
            log.debug("prompt: {!r} forced prefix: {!r}", prompt, request.prefix)
            output = await self.engine.generate_with_prefix(prompt, request.prefix, sampling, request.request_id)
        else:
            prompt = self.prompts.build(request.state, request.prefix)
            log.debug("prompt: {!r}", prompt)
            output = await self.engine.generate(prompt, sampling, request.request_id)
        elapsed = time.perf_counter() - started
        generated = sum(c.num_tokens for c in output.completions)
        record_tokens(self.config.name, generated)
        log.info(
            "generated n={} prompt_tokens={} tokens={} in {:.3f}s", sampling.n, output.prompt_tokens, generated, elapsed
        )
        return output

    async def prove(self, request: ProofRequest) -> EngineOutput:
        """Complete proofs of a theorem (raw completions; the ingress extracts and ranks the proofs)."""
        if self.engine is None or self.config.task != "whole_proof":
            raise UnsupportedRouteError.proving(self.config.name)
        sampling = resolve_sampling(self.config.sampling, request.n, request.max_tokens)
        started = time.perf_counter()
        output = await self._run_proof(request, sampling)
        generated = sum(c.num_tokens for c in output.completions)
        logger.bind(request_id=request.request_id).info(
            "proved n={} prompt_tokens={} tokens={} in {:.3f}s",
            sampling.n, output.prompt_tokens, generated, time.perf_counter() - started,
        )
        return output

    async def _run_proof(self, request: ProofRequest, sampling: SamplingRequest) -> EngineOutput:
        preset = self.config.whole_proof_settings.preset
        messages = whole_proof_messages(preset, request.theorem, request.problem)
        if self.config.is_remote:  # remote chat APIs take the turns through generate() itself
            return await self.engine.generate(messages, sampling, request.request_id)
        assert self.proof_renderer is not None
        return await self.engine.generate(self.proof_renderer(messages), sampling, request.request_id)

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
        reason = engine_not_ready_reason(self.engine) if self.engine is not None else None
        if reason:
            raise ServiceUnavailableError(reason)
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
            if getattr(self, "_load_reporter", None) is not None:
                self._load_reporter.cancel()
            self.engine.shutdown()
            logger.info("engine of {} shut down", self.config.name)
