"""The OpenAI-compatible routes under /v1: each translates its wire model (protocol.py) to a service call and
builds OpenAI's answer (responses.py). Errors leave in OpenAI's shape (deployments/error_responses.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from core.payloads import StreamChunk
from core.request_context import RequestContext
from deployments.completion_service import CompletionQuery, CompletionService, SamplingQuery
from deployments.openai import responses
from deployments.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
    Model,
    ModelList,
)
from deployments.route_dependencies import completion_service, request_context

# OpenAI's error shape in the schema too (the app's default documents the contract's `{"detail"}`).
router = APIRouter(
    prefix="/v1", responses={status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503, 504)}
)
STARTED_AT = responses.now()


async def _started(chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
    """`chunks` with its first step taken already, so an error before any text (an unknown model, a prompt
    beyond the model's context) is an HTTP status rather than an error chunk."""
    first = await anext(chunks, None)

    async def replay() -> AsyncIterator[StreamChunk]:
        if first is not None:
            yield first
        async for chunk in chunks:
            yield chunk

    return replay()


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/models", response_model=ModelList)
async def models(service: CompletionService = Depends(completion_service)) -> ModelList:
    return ModelList(
        data=[Model(id=name, created=STARTED_AT, root=b.name) for b in service.tactics.models() for name in b.names]
    )


@router.post("/completions")
async def completions(
    body: CompletionRequest, service: CompletionService = Depends(completion_service), ctx: RequestContext = Depends(request_context)
):
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    sampling = SamplingQuery(
        body.n, body.max_tokens, body.temperature, body.top_p, body.stop_strings(), body.logprobs, body.ignore_eos
    )
    prepared = service.prepare_all([CompletionQuery(body.model, p, sampling) for p in prompts], ctx)
    if body.stream:
        streams = [await _started(service.stream(prepared[0], ctx))]
        streams += [service.stream(p, ctx) for p in prepared[1:]]
        return _event_stream(responses.completion_events(ctx.request_id, body.model, streams, body.n, body.include_usage))
    outputs = await asyncio.gather(*(service.complete(p, ctx) for p in prepared))
    return responses.text_completion(ctx.request_id, body.model, list(outputs), body.n)


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest, service: CompletionService = Depends(completion_service), ctx: RequestContext = Depends(request_context)
):
    last = body.messages[-1]
    lean = service.lean_prompt(last.text()) if last.role == "user" else None
    if lean is not None:  # LLMLean's tactic mode
        answers = await service.lean_answers(body.model, last.text(), lean, body.n, ctx)
        if body.stream:
            return _event_stream(responses.answer_events(ctx.request_id, body.model, answers, body.include_usage))
        return responses.chat_completion(ctx.request_id, body.model, [(a, "stop", None) for a in answers], None)
    top = body.top_logprobs if body.logprobs else None
    sampling = SamplingQuery(
        body.n, body.token_limit(), body.temperature, body.top_p, body.stop_strings(),
        (top or 0) if body.logprobs else None, body.ignore_eos,
    )
    prepared = service.prepare(CompletionQuery(body.model, body.turns(), sampling), ctx)
    if body.stream:
        streams = [await _started(service.stream(prepared, ctx))]
        events = responses.completion_events(
            ctx.request_id, body.model, streams, body.n, body.include_usage, chat=True, top_logprobs=top
        )
        return _event_stream(events)
    output = await service.complete(prepared, ctx)
    contents = [(c.text, c.finish_reason, responses.chat_logprobs(c.token_logprobs, top)) for c in output.completions]
    return responses.chat_completion(
        ctx.request_id, body.model, contents, (output.prompt_tokens, output.generated_tokens)
    )


@router.post("/embeddings")
async def embeddings(
    body: EmbeddingRequest, service: CompletionService = Depends(completion_service), ctx: RequestContext = Depends(request_context)
):
    texts = [body.input] if isinstance(body.input, str) else body.input
    return responses.embedding_list(body.model, await service.embed(body.model, texts, ctx), body.encoding_format)
