"""Ollama's /api/generate and /api/tags over the same bundles, with LLMLean's tactic mode (its default API).

LLMLean asks for its samples one request after another with one prompt; identical requests within the sample
window are answered from one engine request (CompletionService.lean_answer_from_window).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from core.errors import LeanServeError
from core.request_context import RequestContext
from deployments.completion_service import CompletionQuery, CompletionService, PreparedCompletion, SamplingQuery
from deployments.ollama.protocol import ErrorResponse, GenerateRequest, ModelTag, TagsResponse, error_body
from deployments.route_dependencies import completion_service, request_context

router = APIRouter(
    prefix="/api", responses={status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503, 504)}
)
STARTED_AT = datetime.now(UTC).isoformat()


def _done(model: str, response: str, reason: str, started: float, prompt_tokens: int, tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": datetime.now(UTC).isoformat(),
        "response": response,
        "done": True,
        "done_reason": reason,
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "prompt_eval_count": prompt_tokens,
        "eval_count": tokens,
    }


async def _lines(service: CompletionService, prepared: PreparedCompletion, ctx: RequestContext, model: str) -> AsyncIterator[str]:
    """Ollama's stream: one JSON object per line, the last with `done: true` (or the error)."""
    started, prompt_tokens, tokens, reason = time.perf_counter(), 0, 0, "stop"
    try:
        async for chunk in service.stream(prepared, ctx):
            prompt_tokens += chunk.prompt_tokens or 0
            for delta in chunk.deltas:
                tokens += delta.num_tokens
                reason = delta.finish_reason or reason
                line = {"model": model, "created_at": datetime.now(UTC).isoformat(), "response": delta.text, "done": False}
                yield json.dumps(line, ensure_ascii=False) + "\n"
    except LeanServeError as error:
        yield json.dumps(error_body(error), ensure_ascii=False) + "\n"
        return
    yield json.dumps(_done(model, "", reason, started, prompt_tokens, tokens)) + "\n"


@router.post("/generate")
async def generate(
    body: GenerateRequest, service: CompletionService = Depends(completion_service), ctx: RequestContext = Depends(request_context)
):
    started = time.perf_counter()
    lean = None if body.raw else service.lean_prompt(body.prompt)
    if lean is not None:  # LLMLean's tactic mode: one distinct answer per request
        answer = await service.lean_answer_from_window(body.model, body.prompt, lean, ctx)
        done = _done(body.model, answer or "", "stop", started, 0, 0)
        if body.stream:
            return StreamingResponse(iter([json.dumps(done, ensure_ascii=False) + "\n"]), media_type="application/x-ndjson")
        return done
    options = body.options
    sampling = SamplingQuery(1, options.token_limit(), options.temperature, options.top_p, tuple(options.stop or ()))
    prompt = service.ollama_prompt(body.model, body.prompt, body.system, body.raw)
    prepared = service.prepare(CompletionQuery(body.model, prompt, sampling), ctx)
    if body.stream:
        return StreamingResponse(_lines(service, prepared, ctx, body.model), media_type="application/x-ndjson")
    output = await service.complete(prepared, ctx)
    first = output.completions[0] if output.completions else None
    return _done(
        body.model, first.text if first else "", (first.finish_reason if first else None) or "stop", started,
        output.prompt_tokens, output.generated_tokens,
    )


@router.get("/tags", response_model=TagsResponse)
async def tags(service: CompletionService = Depends(completion_service)) -> TagsResponse:
    names = [name for bundle in service.tactics.models() if "complete" in bundle.routes for name in bundle.names]
    return TagsResponse(
        models=[
            ModelTag(name=n, model=n, modified_at=STARTED_AT, digest=hashlib.sha256(n.encode()).hexdigest())
            for n in names
        ]
    )
