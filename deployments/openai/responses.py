"""OpenAI's response and server-sent-event shapes, built from what the service returns."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from core.errors import LeanServeError
from core.payloads import EngineOutput, StreamChunk, TokenLogprob
from deployments.openai.protocol import error_body

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_logprobs(tokens: Iterable[TokenLogprob] | None, start: int = 0) -> dict[str, Any] | None:
    """The legacy completions shape: parallel lists, `text_offset` counted in characters from `start`."""
    if tokens is None:
        return None
    tokens = list(tokens)
    offsets, position = [], start
    for token in tokens:
        offsets.append(position)
        position += len(token.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


def chat_logprobs(tokens: Iterable[TokenLogprob] | None, top: int | None) -> dict[str, Any] | None:
    if tokens is None:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8", "surrogatepass"))}

    return {
        "content": [
            {**entry(t.token, t.logprob), "top_logprobs": [entry(alt, lp) for alt, lp in t.top[: top or 0]]}
            for t in tokens
        ]
    }


def text_completion(request_id: str, model: str, outputs: list[EngineOutput], n: int) -> dict[str, Any]:
    """One `text_completion` for every prompt's choices: prompt i's choices are indexed i*n ... i*n+n-1."""
    choices = [
        {
            "index": i * n + j,
            "text": c.text,
            "logprobs": completion_logprobs(c.token_logprobs),
            "finish_reason": c.finish_reason or "stop",
        }
        for i, output in enumerate(outputs)
        for j, c in enumerate(output.completions)
    ]
    prompt_tokens = sum(o.prompt_tokens for o in outputs)
    generated = sum(o.generated_tokens for o in outputs)
    return {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, generated),
    }


def chat_completion(
    request_id: str, model: str, contents: list[tuple[str, str | None, Any]], tokens: tuple[int, int] | None
) -> dict[str, Any]:
    """`contents`: (text, finish_reason, logprobs) per choice; `tokens`: (prompt, completion) or None when
    unknown (tactic-mode answers come from /generate's pipeline, which counts candidates, not tokens)."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish or "stop",
            }
            for i, (text, finish, logprobs) in enumerate(contents)
        ],
        "usage": usage(*tokens) if tokens is not None else None,
    }


def stream_error(error: LeanServeError) -> str:
    """A failure after the stream began: the status is sent already, so the error goes as a chunk."""
    return sse(error_body(error))


async def completion_events(
    request_id: str, model: str, streams: list[AsyncIterator[StreamChunk]], n: int, include_usage: bool,
    chat: bool = False, top_logprobs: int | None = None,
) -> AsyncIterator[str]:
    """SSE for streamed completions (or chat completions), one prompt's stream after another, then the usage
    chunk when asked for, then `[DONE]`. A failure mid-stream goes out as an error chunk before `[DONE]`."""
    object_name, id_prefix = ("chat.completion.chunk", "chatcmpl") if chat else ("text_completion", "cmpl")
    head = {"id": f"{id_prefix}-{request_id}", "object": object_name, "created": now(), "model": model}
    prompt_tokens = completion_tokens = 0
    started: set[int] = set()
    offsets: dict[int, int] = {}
    try:
        for i, chunks in enumerate(streams):
            async for chunk in chunks:
                prompt_tokens += chunk.prompt_tokens or 0
                for delta in chunk.deltas:
                    index = i * n + delta.index
                    completion_tokens += delta.num_tokens
                    if chat:
                        body: dict[str, Any] = {"content": delta.text}
                        if index not in started:
                            body["role"] = "assistant"
                            started.add(index)
                        choice = {"index": index, "delta": body, "logprobs": chat_logprobs(delta.token_logprobs, top_logprobs)}
                    else:
                        start = offsets.get(index, 0)
                        offsets[index] = start + len(delta.text)
                        choice = {"index": index, "text": delta.text, "logprobs": completion_logprobs(delta.token_logprobs, start)}
                    choice["finish_reason"] = delta.finish_reason
                    yield sse({**head, "choices": [choice]})
        if include_usage:
            yield sse({**head, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})
    except LeanServeError as error:
        yield stream_error(error)
    yield DONE


async def answer_events(request_id: str, model: str, answers: list[str], include_usage: bool) -> AsyncIterator[str]:
    """Tactic-mode answers, streamed: each choice in one chunk."""
    head = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": now(), "model": model}
    for i, answer in enumerate(answers):
        delta = {"role": "assistant", "content": answer}
        yield sse({**head, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        yield sse({**head, "choices": [], "usage": usage(0, 0)})
    yield DONE


def embedding_list(model: str, vectors: list[list[float]], encoding_format: str) -> dict[str, Any]:
    def encoded(vector: list[float]) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        return vector

    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)],
        "model": model,
        # The encoder counts no tokens for the client; characters would be a made-up figure.
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
