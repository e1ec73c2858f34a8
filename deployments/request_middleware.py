"""The ingress's own middleware: request context, metrics and auth in one pure ASGI layer.

One layer, not three `@app.middleware("http")` ones: Starlette's BaseHTTPMiddleware runs the rest of the app in
a task group of its own and streams the answer back through memory streams, and three of them cost about 9% of
an ingress replica's CPU under load. Here each request costs one header scan and two wrapped `send`s. `receive`
passes untouched: the app sees the client's `http.disconnect` itself (a stream stops, its engine call is
cancelled). In turn, outermost first:

1. request context: the request id (Serve's proxy puts the client's X-Request-Id, or a fresh one, on the
   request), the request's one deadline, taken as it arrives, its session and the caller's identity, kept on
   `request.state` for the routers and the exception handlers; the answer's start gets the X-LeanServe-*
   headers, read from the context only then, since the service fills it in while the endpoint runs;
2. metrics: times and counts every answer of a model route, 401s, 422s and 429s included;
3. auth: the API-key gate, before routing and body parsing, so a stranger learns nothing, not even whether
   the body would be valid; then the request's priority class and the key's request rate
   (logic/caller_limits.py, 429 beyond), so a flood costs no body parsing either. Its refusals are answered
   here, in the front door's error shape; the app is not called.

Errors the app raises pass through (the metrics count them as 500) to FastAPI's handlers: LeanServeErrors are
answered inside (ExceptionMiddleware), through this layer's `send`; anything else by ServerErrorMiddleware,
outside it, like any user middleware.
"""

from __future__ import annotations

import hashlib
import time
import uuid

from fastapi import Request

from core.errors import InvalidRequestError, RateLimitedError, UnauthorizedError
from core.log_setup import request_logger
from core.request_context import RequestContext
from deployments.edge import ASGIApp, Message, Receive, Scope, Send, app_path
from deployments.error_responses import log_and_respond
from deployments.metrics import record_request
from deployments.service import TacticService
from logic.auth import Gate, presented_key
from logic.priority import PRIORITY_HEADER, resolve_class
from logic.routing_key import MAX_SESSION_ID_CHARS

REQUEST_ID_HEADER = "X-Request-Id"
SESSION_HEADER = "X-Session-Id"
# What the answer tells about its engine call: which replica (routing is visible), and the prompt's tokens
# and those the prefix cache already held (the benchmark's hit rate).
REPLICA_HEADER = "X-LeanServe-Replica"
PROMPT_TOKENS_HEADER = "X-LeanServe-Prompt-Tokens"
CACHED_TOKENS_HEADER = "X-LeanServe-Cached-Tokens"
# Which optional hops an answer went without (ctx.degraded, e.g. "scorer-unavailable"; docs/scoring.md).
DEGRADED_HEADER = "X-LeanServe-Degraded"
METERED_ROUTES = {
    "/generate": "generate",
    "/generate_batch": "generate_batch",
    "/prove": "prove",
    "/encode": "encode",
    "/v1/completions": "completions",
    "/v1/chat/completions": "chat_completions",
    "/v1/embeddings": "embeddings",
    "/api/generate": "ollama_generate",
}
# The request headers read here, as ASGI spells them (lower case); the first of each counts, as in Starlette.
_READ_HEADERS = frozenset(
    name.lower().encode() for name in (REQUEST_ID_HEADER, SESSION_HEADER, "authorization", "x-api-key", PRIORITY_HEADER)
)


def client_identity(key: str | None, host: str | None) -> str:
    """Who is asking, for state kept across requests: a hash of the key presented (never the key), or the
    client's address."""
    if key:
        return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"host:{host or ''}"


def _read_headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name in _READ_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _answer_headers(context: RequestContext) -> list[tuple[bytes, bytes]]:
    """The X-LeanServe-* headers, from what the service wrote into the context while the endpoint ran."""
    headers = [
        (name, str(value))
        for name, value in (
            (REPLICA_HEADER, context.replica),
            (PROMPT_TOKENS_HEADER, context.prompt_tokens),
            (CACHED_TOKENS_HEADER, context.cached_prompt_tokens),
        )
        if value is not None
    ]
    if context.degraded:
        headers.append((DEGRADED_HEADER, ", ".join(dict.fromkeys(context.degraded))))
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class RequestMiddleware:
    def __init__(self, app: ASGIApp, service: TacticService, gate: Gate | None):
        self.app = app
        self.service = service
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (and websockets, which no route takes) pass straight through
            await self.app(scope, receive, send)
            return
        # 1. Request context. Outside Serve (unit tests) there is no X-Request-Id from the proxy: make one.
        headers = _read_headers(scope)
        context = self.service.new_context(headers.get(REQUEST_ID_HEADER.lower()) or uuid.uuid4().hex)
        context.session_id = headers.get(SESSION_HEADER.lower(), "")[:MAX_SESSION_ID_CHARS] or None
        # The SDKs send `Authorization: Bearer`, LLMLean and Anthropic's `x-api-key` too ('' when it has none).
        api_key = presented_key(headers.get("authorization"), headers.get("x-api-key"))
        client = scope.get("client")
        client_host = client[0] if client else None
        context.client = client_identity(api_key, client_host)
        # Where Starlette keeps `request.state`: the routers and exception handlers find both there.
        state = scope.setdefault("state", {})
        state["api_key"] = api_key
        state["context"] = context

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = _answer_headers(context)
                if extra:
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        path = app_path(scope)
        route = METERED_ROUTES.get(path)
        if route is None:
            await self._authorized(scope, receive, send_with_context, context, path, headers, client_host, api_key)
            return

        # 2. Metrics. The latency runs to the end of the answer's body, a stream's last chunk included: what a
        # caller waits for the whole answer, as for a plain one (the three BaseHTTPMiddlewares stopped the clock
        # when a stream's first chunk was ready, so a stream's histogram only told its time to first token).
        status = 500  # the app raised before it started an answer
        started = time.perf_counter()

        async def send_metered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send_with_context(message)

        try:
            await self._authorized(scope, receive, send_metered, context, path, headers, client_host, api_key)
        finally:
            try:
                record_request(context.bundle, route, status, time.perf_counter() - started)
            except Exception:  # metrics must never fail a request
                request_logger(context.request_id).opt(exception=True).warning("could not record request metrics")

    async def _authorized(self, scope: Scope, receive: Receive, send: Send, context: RequestContext, path: str,
                          headers: dict[str, str], client_host: str | None, api_key: str | None) -> None:
        """3. Auth: the gate, the priority class and the key's request rate, then the app."""
        granted = None
        try:
            if self.gate is not None:
                granted = self.gate.check(path, client_host, api_key)
            context.key_class = granted
            context.priority_class = resolve_class(granted, headers.get(PRIORITY_HEADER.lower()))
            await self.service.caller_rate.charge(context.client, granted)
        except (UnauthorizedError, InvalidRequestError, RateLimitedError) as refused:
            await log_and_respond(Request(scope), refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)
