"""The ingress's HTTP app: FastAPI, LeanServe's middlewares and error mapping, the routers, over one service.

Middlewares, outermost first (Starlette runs the last one added first):
1. request context: the request id (Serve's proxy puts the client's X-Request-Id, or a fresh one, on the
   request and echoes it) and the request's one deadline, taken as it arrives; everything after logs with
   the id, and every hop shares the deadline;
2. metrics: times and counts every answer of a model route, 401s and 422s included;
3. auth: the API-key gate, before routing and body parsing, so a stranger learns nothing, not even whether
   the body would be valid; then the key's request rate (logic/caller_limits.py, 429 beyond), so a flood
   costs no body parsing either;
4. body limit (deployments/edge.py): 413 for a declared or counted body over `limits.max_body_bytes`, before
   the body is read whole or parsed (Serve's proxy applies the same middleware before the ingress).
Errors leave with an honest status (core/errors.py) in the shape of the front door they came through: the
contract's `{"detail": ...}`, OpenAI's `{"error": {...}}` under /v1, Ollama's `{"error": "..."}` under /api.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import InvalidRequestError, LeanServeError, RateLimitedError, UnauthorizedError
from core.log_setup import request_logger
from deployments.completion_service import CompletionService
from deployments.edge import BodyLimit
from deployments.error_bodies import error_body
from deployments.health_routes import router as health_router
from deployments.leancopilot.protocol import ErrorResponse
from deployments.leancopilot.router import router as leancopilot_router
from deployments.metrics import record_request
from deployments.ollama.router import router as ollama_router
from deployments.openai.router import router as openai_router
from deployments.ray_errors import as_leanserve_error
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
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503, 504)
}


def error_response(error: LeanServeError, path: str = "/") -> JSONResponse:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, UnauthorizedError):
        headers["WWW-Authenticate"] = error.challenge
    return JSONResponse(status_code=error.status_code, content=error_body(error, path), headers=headers)


def app_path(request: Request) -> str:
    """The path within the app: Serve mounts it under its route prefix (root_path)."""
    return request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/")) or "/"


def client_identity(key: str | None, host: str | None) -> str:
    """Who is asking, for state kept across requests: a hash of the key presented (never the key), or the
    client's address."""
    if key:
        return "key:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"host:{host or ''}"


def _request_id(request: Request) -> str | None:
    context = getattr(request.state, "context", None)
    return context.request_id if context is not None else None


def _log_and_respond(request: Request, error: LeanServeError, cause: BaseException | None = None) -> JSONResponse:
    log = request_logger(_request_id(request))
    if error.status_code >= 500:
        log.opt(exception=cause).error("{} {} -> {}: {}", request.method, request.url.path, error.status_code, error.detail)
    else:
        log.warning("{} {} -> {}: {}", request.method, request.url.path, error.status_code, error.detail)
    return error_response(error, app_path(request))


def _add_middlewares(app: FastAPI, service: TacticService, gate: Gate | None) -> None:
    # Added innermost first.
    app.add_middleware(BodyLimit, max_body_bytes=service.args.limits.max_body_bytes)

    @app.middleware("http")
    async def auth(request: Request, call_next):
        granted = None
        if gate is not None:
            client_host = request.client.host if request.client else None
            try:
                granted = gate.check(app_path(request), client_host, request.state.api_key)
            except UnauthorizedError as denied:
                return _log_and_respond(request, denied)
        context = request.state.context
        context.key_class = granted
        try:
            context.priority_class = resolve_class(granted, request.headers.get(PRIORITY_HEADER))
            await service.caller_rate.charge(context.client, granted)
        except (InvalidRequestError, RateLimitedError) as refused:
            return _log_and_respond(request, refused)
        return await call_next(request)

    @app.middleware("http")
    async def metrics(request: Request, call_next):
        route = METERED_ROUTES.get(app_path(request))
        if route is None:
            return await call_next(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            try:
                record_request(request.state.context.bundle, route, status, time.perf_counter() - started)
            except Exception:  # metrics must never fail a request
                request_logger(_request_id(request)).opt(exception=True).warning("could not record request metrics")

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        # Outside Serve (unit tests) there is no X-Request-Id from the proxy: make one.
        context = service.new_context(request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex)
        context.session_id = (request.headers.get(SESSION_HEADER) or "")[:MAX_SESSION_ID_CHARS] or None
        # The SDKs send `Authorization: Bearer`, LLMLean and Anthropic's `x-api-key` too ('' when it has none).
        request.state.api_key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        context.client = client_identity(request.state.api_key, request.client.host if request.client else None)
        request.state.context = context
        response = await call_next(request)
        for header, value in (
            (REPLICA_HEADER, context.replica),
            (PROMPT_TOKENS_HEADER, context.prompt_tokens),
            (CACHED_TOKENS_HEADER, context.cached_prompt_tokens),
        ):
            if value is not None:
                response.headers[header] = str(value)
        if context.degraded:
            response.headers[DEGRADED_HEADER] = ", ".join(dict.fromkeys(context.degraded))
        return response


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LeanServeError)
    async def leanserve_error(request: Request, exc: LeanServeError) -> JSONResponse:
        return _log_and_respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The contract promises a string detail; FastAPI's default is a list of error objects.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        )
        return _log_and_respond(request, InvalidRequestError(f"Malformed request: {problems}"))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return _log_and_respond(request, as_leanserve_error(exc), cause=exc)


def build_http_app(service: TacticService, gate: Gate | None = None) -> FastAPI:
    """The ASGI app of one ingress replica (or of a unit test, with a service over injected handles)."""
    app = FastAPI(
        title="LeanServe",
        summary="LeanCopilot-compatible tactic suggestions from Ray Serve and vLLM.",
        responses=_ERROR_RESPONSES,
    )
    app.state.service = service
    app.state.completions = CompletionService(service)
    app.include_router(leancopilot_router)
    app.include_router(openai_router)
    app.include_router(ollama_router)
    app.include_router(health_router)
    _add_error_handlers(app)
    _add_middlewares(app, service, gate)
    return app
