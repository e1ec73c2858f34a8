"""Local stand-ins for paid chat APIs, speaking their real wire protocols over real HTTP on loopback.

- Anthropic Messages: `POST /v1/messages` (x-api-key or Bearer), answers `{"type": "message", "content": [...]}`.
- Gemini: `POST /v1beta/models/{model}:generateContent` or `/v1/...` (x-goog-api-key), answers `{"candidates": [...]}`.
- OpenAI chat completions: `POST /v1/chat/completions` (Bearer key), answers `{"choices": [...]}`.

Each checks the API key the way its real API does (the key the server was started with, in that API's
header) and answers a wrong or missing one with that API's own 401 (Gemini: 400 API_KEY_INVALID), before
anything else. A test scripts them: `fail_next(status, count)` makes the next calls fail as the real API would (429 with
Retry-After, 5xx), `delay_s` makes them slow, `answers(call_index, user_text, n)` decides what they say.
Every request is recorded (headers and JSON body) so tests can check what the engines really sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

AnswerFn = Callable[[int, str, int], list[str]]


def default_answers(call_index: int, user_text: str, n: int) -> list[str]:
    """Chat answers in the shapes real models use; they honour a requested prefix like a good model."""
    shapes = ["```lean4\nsimp [clean_up]\n```", "<think>case split</think>\nby_cases h : x = 0", "1. `linarith`",
              "by\n  nlinarith [sq_nonneg x]"]
    if "must start with: " in user_text:
        prefix = user_text.rsplit("must start with: ", 1)[1].strip()
        return [f"```lean\n{prefix} [h{i}]\n```" for i in range(n)]
    return [shapes[(call_index + i) % len(shapes)] for i in range(n)]


@dataclass
class StandinState:
    answers: AnswerFn = default_answers
    delay_s: float = 0.0
    failures: list[int] = field(default_factory=list)  # statuses of the next calls to fail
    retry_after_s: float = 0.0
    api_key: str = "sk-standin"  # the one key the stand-ins accept
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, count: int = 1) -> None:
        with self.lock:
            self.failures += [status] * count

    def reset(self) -> None:
        with self.lock:
            self.failures.clear()
            self.requests.clear()
            self.delay_s = 0.0
            self.answers = default_answers

    async def admit(self, request: Request, body: dict[str, Any]) -> tuple[int, JSONResponse | None]:
        """Record the call; return its index, or an error response: the API's own for a wrong key, else a
        scripted failure."""
        with self.lock:
            index = len(self.requests)
            self.requests.append({"headers": dict(request.headers), "body": body, "path": request.url.path})
            if not key_accepted(request, self.api_key):
                return index, key_refused(request.url.path)
            status = self.failures.pop(0) if self.failures else None
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if status is None:
            return index, None
        headers = {"retry-after": str(self.retry_after_s)} if status == 429 else {}
        return index, JSONResponse(status_code=status, content=_error_body(request.url.path, status), headers=headers)


def key_accepted(request: Request, api_key: str) -> bool:
    """The key where each real API reads it: Anthropic x-api-key (or a Bearer token, as newer SDKs send),
    Gemini x-goog-api-key (or ?key=), OpenAI a Bearer token."""
    path, headers = request.url.path, request.headers
    bearer = headers.get("authorization", "").removeprefix("Bearer ") if headers.get("authorization", "").startswith("Bearer ") else None
    if path.startswith("/v1/messages"):
        sent = headers.get("x-api-key") or bearer
    elif path.startswith(("/v1beta", "/v1/models")):
        sent = headers.get("x-goog-api-key") or request.query_params.get("key")
    else:
        sent = bearer
    return sent == api_key


def key_refused(path: str) -> JSONResponse:
    if path.startswith("/v1/messages"):
        return JSONResponse(status_code=401, content={"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    if path.startswith(("/v1beta", "/v1/models")):
        return JSONResponse(status_code=400, content={"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}})
    return JSONResponse(status_code=401, content={"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}})


def _error_body(path: str, status: int) -> dict[str, Any]:
    if path.startswith("/v1/messages"):
        kind = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": f"stand-in failure {status}"}}
    if path.startswith(("/v1beta", "/v1/models")):
        name = "RESOURCE_EXHAUSTED" if status == 429 else "UNAVAILABLE"
        return {"error": {"code": status, "message": f"stand-in failure {status}", "status": name}}
    return {"error": {"message": f"stand-in failure {status}", "type": "server_error", "code": status}}


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message["content"]
            return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return ""


def build_app(state: StandinState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/messages")
    async def anthropic_messages(request: Request):
        body = await request.json()
        index, failure = await state.admit(request, body)
        if failure:
            return failure
        text = state.answers(index, last_user_text(body["messages"]), 1)[0]
        return {
            "id": f"msg_{index}", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 7},
        }

    # The API serves both versions; google-genai 3.x calls v1, older releases v1beta.
    @app.post("/v1beta/models/{model_action}")
    @app.post("/v1/models/{model_action}")
    async def gemini_generate(model_action: str, request: Request):
        body = await request.json()
        index, failure = await state.admit(request, body)
        if failure:
            return failure
        model, _, action = model_action.partition(":")
        if action != "generateContent":
            return JSONResponse(status_code=404, content={"error": {"code": 404, "message": "no such method"}})
        n = body.get("generationConfig", {}).get("candidateCount", 1)
        user = "".join(p.get("text", "") for c in body["contents"] if c.get("role") == "user" for p in c["parts"])
        texts = state.answers(index, user, n)
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": t}]}, "finishReason": "STOP", "index": i,
                 "avgLogprobs": -0.25 * (i + 1), "tokenCount": 4}
                for i, t in enumerate(texts)
            ],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4 * n, "totalTokenCount": 10 + 4 * n},
            "modelVersion": model,
        }

    @app.post("/v1/chat/completions")
    async def openai_chat(request: Request):
        body = await request.json()
        index, failure = await state.admit(request, body)
        if failure:
            return failure
        n = body.get("n", 1)
        texts = state.answers(index, last_user_text(body["messages"]), n)
        with_logprobs = bool(body.get("logprobs"))
        return {
            "id": f"chatcmpl-{index}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": t},
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": "x", "logprob": -0.1 * (i + 1), "bytes": None, "top_logprobs": []}]}
                    if with_logprobs else None,
                }
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n},
        }

    return app


class StandinServer:
    """The stand-in app served by uvicorn in a background thread of the test process."""

    def __init__(self, port: int, api_key: str = "sk-standin"):
        self.state = StandinState(api_key=api_key)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(build_app(self.state), host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> StandinServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("stand-in server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
