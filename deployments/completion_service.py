"""What the OpenAI and Ollama front doors ask of the bundles: raw completions (streamed or not), embeddings,
and LLMLean's tactic mode. It sits on the TacticService (deployments/service.py), so both kinds of request share
its registry, limits, deadline, coalescing, dedup and scoring.

Tactic mode: an LLMLean prompt (logic/llmlean.py) to a bundle with its own prompt is answered as /generate
answers the state and prefix inside it; a bundle whose prompt is a chat gets LLMLean's prompt as the user turn.
Either way the answers are the continuations after the prefix (LLMLean puts the prefix back itself), best first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from core.errors import GenerationTimeoutError
from core.log_setup import request_logger
from core.payloads import ChatMessages, CompletionRequest, EngineOutput, StreamChunk
from core.request_context import RequestContext
from deployments.ray_errors import as_leanserve_error
from deployments.service import ProofQuery, TacticQuery, TacticService, await_handle_call
from logic.llmlean import (
    LeanPrompt,
    continuation,
    kept_by_llmlean,
    parse_prompt,
    proof_after_statement,
    theorem_from_context,
)
from logic.priority import engine_priority
from logic.routing_key import routing_key
from logic.sample_bank import SampleBank
from logic.validation import check_batch, check_prompt, resolve_client_sampling


@dataclass(frozen=True)
class SamplingQuery:
    """The sampling fields of an OpenAI or Ollama request; None: the bundle's default."""

    n: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class CompletionQuery:
    name: str
    prompt: str | ChatMessages
    sampling: SamplingQuery


@dataclass(frozen=True)
class PreparedCompletion:
    """A checked completion request and the bundle that answers it."""

    bundle: str
    request: CompletionRequest


class CompletionService:
    def __init__(self, tactics: TacticService):
        self.tactics = tactics
        self.args = tactics.args
        self.sample_bank = SampleBank(self.args.ingress.sample_window_s, tactics.clock)
        self._streaming: dict[str, Any] = {}  # bundle name -> its handle with stream=True, made once

    # -- raw completions -------------------------------------------------------------------------------------

    def prepare(self, query: CompletionQuery, ctx: RequestContext) -> PreparedCompletion:
        """Name, limits and sampling checked before anything runs (a stream's status is sent with its first byte)."""
        bundle = self.tactics.registry.resolve(query.name, "complete")
        check_prompt(query.prompt, self.args.limits, bundle.tokens_are_bytes)
        ctx.bundle = bundle.name
        s = query.sampling
        sampling = resolve_client_sampling(
            bundle.sampling, self.args.limits, n=s.n, max_tokens=s.max_tokens, temperature=s.temperature,
            top_p=s.top_p, stop=s.stop, logprobs=s.logprobs, ignore_eos=s.ignore_eos,
        )
        self.tactics.check_generated_tokens(bundle, sampling.n, sampling.max_tokens, ctx)
        # The request's class orders the engine's queue; its key (session, LLMLean file context) its replica.
        sampling = dataclasses.replace(sampling, priority=engine_priority(ctx.priority_class))
        text = query.prompt if isinstance(query.prompt, str) else "".join(t.get("content", "") for t in query.prompt)
        request = CompletionRequest(ctx.request_id, query.prompt, sampling, routing_key=routing_key(text, ctx.session_id))
        return PreparedCompletion(bundle.name, request)

    async def complete(self, prepared: PreparedCompletion, ctx: RequestContext) -> EngineOutput:
        started = time.perf_counter()
        bundle, request = prepared.bundle, prepared.request
        with self._admitted(prepared, ctx):
            output = await await_handle_call(
                self.tactics.bundles[bundle].complete.remote(request), ctx.deadline.remaining()
            )
        request_logger(ctx.request_id).info(
            "complete model={} n={} prompt_tokens={} tokens={} in {:.3f}s",
            bundle, request.sampling.n, output.prompt_tokens, output.generated_tokens, time.perf_counter() - started,
        )
        return output

    async def stream(self, prepared: PreparedCompletion, ctx: RequestContext) -> AsyncIterator[StreamChunk]:
        """The chunks of a streamed completion. Every step waits only for what is left of the deadline; when
        the consumer stops (the client left) the bundle's generator is cancelled, and so is the engine request."""
        handle = self._streaming.get(prepared.bundle)
        if handle is None:
            handle = self._streaming[prepared.bundle] = self.tactics.bundles[prepared.bundle].options(stream=True)
        with self._admitted(prepared, ctx):
            async for chunk in self._chunks(handle, prepared, ctx):
                yield chunk

    def _admitted(self, prepared: PreparedCompletion, ctx: RequestContext):
        """Raw completions pass the same admission as tactic requests: n sequences of max_tokens each."""
        sampling = prepared.request.sampling
        return self.tactics.admitted(
            prepared.bundle, ctx.priority_class, sampling.n, sampling.n * sampling.max_tokens, ctx
        )

    @staticmethod
    async def _chunks(handle: Any, prepared: PreparedCompletion, ctx: RequestContext) -> AsyncIterator[StreamChunk]:
        chunks = handle.complete_stream.remote(prepared.request)
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), ctx.deadline.remaining())
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise GenerationTimeoutError("Generation timed out.") from None
                except Exception as exc:  # noqa: BLE001 - Ray wraps replica errors; find ours or map Ray's
                    raise as_leanserve_error(exc) from exc
                yield chunk
        finally:
            chunks.cancel()

    def prepare_all(self, queries: list[CompletionQuery], ctx: RequestContext) -> list[PreparedCompletion]:
        """Several prompts in one request (OpenAI allows a list): their choices together count against max_n."""
        check_batch(len(queries) * max(q.sampling.n or 1 for q in queries), self.args.limits)
        return [self.prepare(q, ctx) for q in queries]

    def ollama_prompt(self, name: str, prompt: str, system: str | None, raw: bool) -> str | ChatMessages:
        """Ollama applies the model's template unless `raw`: chat bundles get the turns, the others the text."""
        if raw or not self.tactics.registry.lookup(name).answers_chat_turns:
            return prompt
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]

    async def embed(self, name: str, texts: list[str], ctx: RequestContext) -> list[list[float]]:
        check_batch(len(texts), self.args.limits)
        # Concurrent: the bundle batches concurrent encodings into one forward pass.
        return list(await asyncio.gather(*(self.tactics.encode(name, text, ctx) for text in texts)))

    # -- LLMLean's tactic mode -------------------------------------------------------------------------------

    @staticmethod
    def lean_prompt(text: str) -> LeanPrompt | None:
        return parse_prompt(text)

    async def lean_answers(self, name: str, prompt_text: str, lean: LeanPrompt, n: int | None, ctx: RequestContext) -> list[str]:
        """LLMLean's answers to `lean`, best first, one per distinct tactic (or proof): what follows the prefix."""
        bundle = self.tactics.registry.lookup(name)
        if lean.kind == "proof":
            proofs = await self.tactics.prove(ProofQuery(name, theorem_from_context(lean.context), n=n), ctx)
            answers = [proof_after_statement(p.output, lean.context) for p in proofs]
        else:
            client_prompt = prompt_text if bundle.answers_chat_turns else None
            query = TacticQuery(name, lean.state, lean.prefix, n=n, client_prompt=client_prompt)
            tactics = await self.tactics.suggest_tactics(query, ctx)
            answers = [continuation(t.output, lean.prefix) for t in tactics]
        # LLMLean drops these anyway; and an empty continuation would make it suggest the bare prefix.
        kept = [a for a in answers if a.strip() and kept_by_llmlean(a)]
        return list(dict.fromkeys(kept))

    async def lean_answer_from_window(self, name: str, prompt_text: str, lean: LeanPrompt, ctx: RequestContext) -> str | None:
        """One answer for an Ollama request: LLMLean sends its samples one by one, so the identical requests
        of one client within the sample window share one engine request (logic/sample_bank.py)."""
        key = (ctx.client, name, prompt_text)
        return await self.sample_bank.take(key, lambda: self.lean_answers(name, prompt_text, lean, None, ctx))
