"""The edge: what a request meets before anything reads, parses or routes it. Three pure ASGI middlewares.

- `BodyLimit`: a body longer than the limit gets 413 in its front door's JSON error shape (the contract's
  `{"detail": ...}`; OpenAI's under /v1, Ollama's under /api), read no further. A declared
  `Content-Length` over the limit is refused before a single body byte is read; a body without one (chunked)
  is counted as it arrives and refused as soon as it passes the limit.
- `StripClientControlHeaders`: Ray 2.60's proxy lets a client set its own timeout (`x-request-timeout-seconds`,
  0 or less switches it off) and keep its request running after it hangs up (`x-request-disconnect-disabled`).
  Those are for a trusted proxy in front (HAProxy), never for a caller: they are dropped.
- `LostReplicaAs503`: when the ingress replica serving a request dies mid-request (a node lost, an OOM kill, a
  rolling update's hard stop), Ray's proxy maps the `RayActorError` to 500 and sends nothing, so the HTTP server
  answers a bare `Internal Server Error`. Nothing was wrong with the request and another replica would answer it:
  a request the proxy left unanswered, with its client still there, gets 503 with `Retry-After` in its front
  door's shape. Every answer the app itself makes (its own 500s included) starts a response and passes untouched.

All three run in Serve's HTTP proxy, through Ray's own hook: the proxy imports `proxy_middlewares` from
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH and wraps its ASGI app in them. That is the only place either can
work: the proxy drains a body into memory as fast as the client sends it, and reads the control headers,
before the ingress sees the request. The ingress's FastAPI app applies `BodyLimit` again, with its own
application's limit, so the limit holds wherever the app runs (unit tests, a proxy started without the hook).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from loguru import logger

from core.config import PROXY_BODY_LIMIT_ENV, RequestLimits
from core.errors import InputTooLargeError, LeanServeError, ServiceUnavailableError
from deployments.error_bodies import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_CONTROL_HEADERS = frozenset({b"x-request-timeout-seconds", b"x-request-disconnect-disabled"})
REQUEST_ID_HEADER = b"x-request-id"


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def declared_length(scope: Scope) -> int | None:
    """The body's Content-Length, or None when the client sent none (chunked) or one that is not a number
    (the HTTP server refuses those before the app sees them)."""
    value = header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def app_path(scope: Scope) -> str:
    return scope.get("path", "/").removeprefix(scope.get("root_path", "").rstrip("/")) or "/"


async def send_json_error(send: Send, scope: Scope, error: LeanServeError, with_request_id: bool,
                          close: bool = True) -> None:
    """The error in its front door's shape (`{"detail": ...}`, OpenAI's under /v1, Ollama's under /api);
    `with_request_id` adds the request's id (the client's X-Request-Id, or a fresh one), where nothing after this
    middleware would (in the proxy it stands outside Serve's own id middleware). `close` when the rest of the
    body will never be read, so the connection cannot carry another request."""
    status, detail = error.status_code, error.detail
    body = json.dumps(error_body(error, app_path(scope))).encode("utf-8")
    request_id = header(scope, REQUEST_ID_HEADER) or uuid.uuid4().hex.encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    if error.retry_after_s is not None:
        headers.append((b"retry-after", str(error.retry_after_s).encode()))
    if with_request_id:
        headers.append((b"x-request-id", request_id))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    logger.bind(request_id=request_id.decode("latin-1")).warning(
        "{} {} -> {}: {}", scope.get("method"), scope.get("path"), status, detail
    )


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int, with_request_id: bool = False):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.with_request_id = with_request_id

    def _too_large(self) -> InputTooLargeError:
        return InputTooLargeError(f"Request body too large: the limit is {self.max_body_bytes} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await send_json_error(send, scope, self._too_large(), self.with_request_id)
            return
        received = 0
        refused = False
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    if not response_started:
                        await send_json_error(send, scope, self._too_large(), self.with_request_id)
                    # To the app the client has gone: it stops reading, and Serve's proxy cancels the call.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:  # the 413 is the answer; whatever the app makes of the "disconnect" is dropped
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)


class StripClientControlHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = scope.get("headers", ())
            if any(key.lower() in CLIENT_CONTROL_HEADERS for key, _ in headers):
                scope = {**scope, "headers": [(k, v) for k, v in headers if k.lower() not in CLIENT_CONTROL_HEADERS]}
        await self.app(scope, receive, send)


class LostReplicaAs503:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = client_gone = False

        async def watched_receive() -> Message:
            nonlocal client_gone
            message = await receive()
            if message["type"] == "http.disconnect":
                client_gone = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, watched_receive, watched_send)
        if not response_started and not client_gone:
            error = ServiceUnavailableError("The replica serving this request was lost; retry it.")
            error.retry_after_s = 1  # a replacement replica is already serving: retry soon
            await send_json_error(send, scope, error, with_request_id=True, close=False)


def proxy_body_limit(environ: MutableMapping[str, str] = os.environ) -> int:
    """The proxy's body limit: the launcher's (or the manifest's) variable, else RequestLimits' default."""
    value = environ.get(PROXY_BODY_LIMIT_ENV)
    return int(value) if value else RequestLimits().max_body_bytes


def proxy_middlewares() -> list[Any]:
    """Ray's HTTP proxy callback (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.edge:proxy_middlewares).

    Ray applies the list in order, each wrapping the last, so the last is outermost: the headers go first, the
    body limit sees every request, and a request left unanswered is seen after every answer but that one."""
    from starlette.middleware import Middleware  # Ray's hook wants Starlette's wrapper

    return [
        Middleware(BodyLimit, max_body_bytes=proxy_body_limit(), with_request_id=True),
        Middleware(StripClientControlHeaders),
        Middleware(LostReplicaAs503),
    ]
