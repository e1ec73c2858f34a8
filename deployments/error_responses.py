"""The HTTP app's error answers: an error in its front door's shape (deployments/error_bodies.py) with its
status's headers, logged with the request's id. Shared by the request middleware's early answers (401, 4xx on a
bad X-Priority, 429) and the app's exception handlers."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from core.errors import LeanServeError, UnauthorizedError
from core.log_setup import request_logger
from deployments.edge import app_path
from deployments.error_bodies import error_body


def error_response(error: LeanServeError, path: str = "/") -> JSONResponse:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, UnauthorizedError):
        headers["WWW-Authenticate"] = error.challenge
    return JSONResponse(status_code=error.status_code, content=error_body(error, path), headers=headers)


def request_id_of(request: Request) -> str | None:
    """The id the request middleware gave the request (None before it ran)."""
    context = getattr(request.state, "context", None)
    return context.request_id if context is not None else None


def log_and_respond(request: Request, error: LeanServeError, cause: BaseException | None = None) -> JSONResponse:
    log = request_logger(request_id_of(request))
    if error.status_code >= 500:
        log.opt(exception=cause).error("{} {} -> {}: {}", request.method, request.url.path, error.status_code, error.detail)
    else:
        log.warning("{} {} -> {}: {}", request.method, request.url.path, error.status_code, error.detail)
    return error_response(error, app_path(request.scope))
