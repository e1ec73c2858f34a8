"""The ingress's HTTP app: FastAPI, LeanServe's middlewares and error mapping, the routers, over one service.

Middlewares, outermost first (Starlette runs the last one added first):
1. the request middleware (deployments/request_middleware.py), one pure ASGI layer: the request context (the
   request id, the request's one deadline, the X-LeanServe-* answer headers), then the metrics of the model
   routes, then auth (the API-key gate and the key's request rate, 401 and 429 before routing and body parsing);
2. body limit (deployments/edge.py): 413 for a declared or counted body over `limits.max_body_bytes`, before
   the body is read whole or parsed (Serve's proxy applies the same middleware before the ingress).
Errors leave with an honest status (core/errors.py) in the shape of the front door they came through: the
contract's `{"detail": ...}`, OpenAI's `{"error": {...}}` under /v1, Ollama's `{"error": "..."}` under /api.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import InvalidRequestError, LeanServeError
from deployments.completion_service import CompletionService
from deployments.edge import BodyLimit
from deployments.error_responses import error_response, log_and_respond
from deployments.health_routes import router as health_router
from deployments.leancopilot.protocol import ErrorResponse
from deployments.leancopilot.router import router as leancopilot_router
from deployments.ollama.router import router as ollama_router
from deployments.openai.router import router as openai_router
from deployments.ray_errors import as_leanserve_error
from deployments.request_middleware import DEGRADED_HEADER, RequestMiddleware
from deployments.service import TacticService
from logic.auth import Gate

# Where callers and tests have always found them.
__all__ = ["DEGRADED_HEADER", "build_http_app", "error_response"]

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503, 504)
}


def _add_middlewares(app: FastAPI, service: TacticService, gate: Gate | None) -> None:
    # Added innermost first.
    app.add_middleware(BodyLimit, max_body_bytes=service.args.limits.max_body_bytes)
    app.add_middleware(RequestMiddleware, service=service, gate=gate)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LeanServeError)
    async def leanserve_error(request: Request, exc: LeanServeError) -> JSONResponse:
        return log_and_respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The contract promises a string detail; FastAPI's default is a list of error objects.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        )
        return log_and_respond(request, InvalidRequestError(f"Malformed request: {problems}"))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return log_and_respond(request, as_leanserve_error(exc), cause=exc)


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
