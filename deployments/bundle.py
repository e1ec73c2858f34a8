"""The bundle deployment: one model bundle's engine (and optional encoder) in an autoscaled replica.

It answers a tactic or proof request with cleaned, ranked candidates through the pipeline it picked for its
kind at start (logic/pipelines.py); the ingress adds what spans bundles (dedup across calls, scoring).
Engines are injected, built by models/engine_factory.py by default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable

from loguru import logger
from ray import serve
from ray.serve.exceptions import RayServeException

from core.config import BundleConfig, EncoderConfig
from core.engine_protocol import GenerationEngine, TextEncoder, engine_not_ready_reason
from core.log_setup import configure_logging
from core.payloads import (
    BundleAnswer,
    CompletionRequest,
    EngineLoad,
    EngineOutput,
    ProofRequest,
    StreamChunk,
    TacticRequest,
)
from deployments.metrics import record_abandoned, record_engine_load, record_prefix_cache, record_tokens
from logic.completions import RawCompletions
from logic.pipelines import Pipeline, build_completer, build_pipeline
from models.chat_template import load_chat_renderer
from models.engine_factory import make_engine

EngineFactory = Callable[[BundleConfig], GenerationEngine]
EncoderFactory = Callable[[EncoderConfig], TextEncoder]

# How often a replica publishes its engine's running/waiting requests (Ray exports metrics every few seconds).
ENGINE_LOAD_PERIOD_S = 2.0


def _default_encoder_factory(config: EncoderConfig) -> TextEncoder:
    from models.encoder import TransformersEncoder  # lazy: torch loads only in bundles with an encoder

    return TransformersEncoder(config)


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except RayServeException:  # built outside a Serve replica (the service's unit tests)
        return "local"


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
        self.pipeline: Pipeline | None = None
        self.completer: RawCompletions | None = None
        self.engine_requests = 0  # engine calls since start (shows coalescing at work in /health's report)
        # Serve's id of this replica: each answer carries it, so routing is visible (X-LeanServe-Replica).
        self.replica_id = _replica_id()
        if config.model is not None:
            self.engine = (engine_factory or make_engine)(config)
            await self.engine.start()
            self.pipeline = build_pipeline(config, self.engine, load_chat_renderer)
            self.completer = build_completer(config, self.engine, load_chat_renderer)
            await self.pipeline.warm_up()
            self._load_reporter = asyncio.create_task(self._report_engine_load())
        self.encoder: TextEncoder | None = None
        if config.encoder is not None:
            self.encoder = (encoder_factory or _default_encoder_factory)(config.encoder)
            self._encode_batch.set_max_batch_size(config.encoder.max_batch_size)
            self._encode_batch.set_batch_wait_timeout_s(config.encoder.batch_wait_timeout_s)
        logger.info("bundle {} ready in {:.1f}s (routes: {})", config.name, time.perf_counter() - started, config.routes)

    async def _report_engine_load(self) -> None:
        reported = EngineLoad()
        while True:
            try:
                load = self.engine.load()
                record_engine_load(self.config.name, load.running, load.waiting)
                record_abandoned(self.config.name, load.abandoned_requests - reported.abandoned_requests)
                record_prefix_cache(
                    self.config.name,
                    load.prefix_cache_queries - reported.prefix_cache_queries,
                    load.prefix_cache_hits - reported.prefix_cache_hits,
                )
                reported = load
            except Exception:  # metrics must never take the replica down
                logger.opt(exception=True).warning("could not record the engine load")
            await asyncio.sleep(ENGINE_LOAD_PERIOD_S)

    async def answer(self, request: TacticRequest | ProofRequest) -> BundleAnswer:
        """Cleaned, deduplicated candidates, best first. The ingress routes only what this bundle serves
        (logic/registry.py), so the request matches the pipeline."""
        started = time.perf_counter()
        self.engine_requests += 1
        answer = await self.pipeline.answer(request)
        record_tokens(self.config.name, answer.generated_tokens)
        logger.bind(request_id=request.request_id).info(
            "answered sampled={} returned={} prompt_tokens={} cached_tokens={} tokens={} priority={} in {:.3f}s",
            answer.sampled, len(answer.candidates), answer.prompt_tokens, answer.cached_prompt_tokens,
            answer.generated_tokens, request.priority, time.perf_counter() - started,
        )
        return dataclasses.replace(answer, replica=self.replica_id)

    async def complete(self, request: CompletionRequest) -> EngineOutput:
        """A raw completion (the OpenAI and Ollama front doors): the client's prompt, not the bundle's."""
        started = time.perf_counter()
        self.engine_requests += 1
        output = await self.completer.complete(request)
        record_tokens(self.config.name, output.generated_tokens)
        logger.bind(request_id=request.request_id).info(
            "completed n={} prompt_tokens={} tokens={} in {:.3f}s",
            len(output.completions), output.prompt_tokens, output.generated_tokens, time.perf_counter() - started,
        )
        return output

    async def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """The same, streamed: the caller's handle uses `.options(stream=True)`; closing it aborts the request."""
        started = time.perf_counter()
        self.engine_requests += 1
        tokens = 0
        try:
            async for chunk in self.completer.stream(request):
                tokens += sum(d.num_tokens for d in chunk.deltas)
                yield chunk
        finally:
            record_tokens(self.config.name, tokens)
            logger.bind(request_id=request.request_id).info(
                "streamed tokens={} in {:.3f}s", tokens, time.perf_counter() - started
            )

    async def encode(self, request_id: str, text: str) -> list[float]:
        started = time.perf_counter()
        vector = await self._encode_batch(text)
        logger.bind(request_id=request_id).info("encoded {} chars in {:.3f}s", len(text), time.perf_counter() - started)
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
        """What /health reports for this bundle, from state the replica holds (no generation); raises like
        check_health when the engine is gone. A bundle that cannot serve yet (a remote one without its key)
        says why in `not_ready`: /health reports it degraded, not down."""
        await self.check_health()
        reason = engine_not_ready_reason(self.engine) if self.engine is not None else None
        return {
            "status": "degraded" if reason else "ok",
            "not_ready": reason,
            "unfinished_requests": await self.num_unfinished_requests(),
            "engine_requests": self.engine_requests,
        }

    async def replica_report(self, routed_like: TacticRequest | None = None) -> dict[str, object]:
        """This replica's id and unfinished engine requests. The prefix_affinity router sends the call where it
        would send `routed_like` (its routing key), so a caller can look at the replica a key lives on."""
        return {"replica": self.replica_id, "unfinished_requests": await self.num_unfinished_requests(),
                "abandoned_requests": self.engine.load().abandoned_requests if self.engine is not None else 0}

    async def num_unfinished_requests(self) -> int:
        return await self.engine.num_unfinished_requests() if self.engine is not None else 0

    async def __del__(self) -> None:
        # Serve awaits this on graceful shutdown: stop the engine core process with the replica.
        if self.engine is not None:
            if getattr(self, "_load_reporter", None) is not None:
                self._load_reporter.cancel()
            self.engine.shutdown()
            logger.info("engine of {} shut down", self.config.name)
