"""The FastAPI ingress: LeanCopilot's routes, composed over the bundles' DeploymentHandles.

It resolves a bundle by name or alias, calls it through its handle, and applies the contract of
../shared/CONTRACT.md to what comes back: prefix continuation, cleaning, deduplication, ranking, scores
in [0, 1], the LeanDojo-v2 extras as null, and honest error statuses as JSON `{"detail": ...}`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException

from deployments import auth
from deployments.bundle import TacticRequest
from deployments.config import AppArgs, BundleConfig
from deployments.errors import (
    GenerationTimeoutError,
    InvalidRequestError,
    LeanServeError,
    ScorerNotConfiguredError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnknownModelError,
    UnsupportedRouteError,
    find_leanserve_error,
)
from deployments.log_setup import configure_logging, request_logger
from deployments.protocol import (
    Candidate,
    EncodeRequest,
    EncodeResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    ModelInfo,
    ModelsResponse,
)
from deployments.validation import check_generate_request, check_input_size
from models.tactics import completions_to_tactics

REQUEST_ID_HEADER = "X-Request-Id"
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 503, 504)
}


class ModelRegistry:
    """Bundle lookup by name or alias; pure, so the ingress logic is tested without Ray."""

    def __init__(self, bundles: list[BundleConfig]):
        self.bundles = bundles
        self._by_name = {name: bundle for bundle in bundles for name in bundle.names}

    def resolve(self, name: str) -> BundleConfig:
        bundle = self._by_name.get(name)
        if bundle is None:
            raise UnknownModelError.for_name(name, list(self._by_name))
        return bundle

    def describe(self) -> ModelsResponse:
        return ModelsResponse(
            models=[ModelInfo(name=b.name, aliases=list(b.aliases), routes=b.routes) for b in self.bundles]
        )


def error_response(error: LeanServeError) -> JSONResponse:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, UnauthorizedError):
        headers["WWW-Authenticate"] = error.challenge
    return JSONResponse(status_code=error.status_code, content={"detail": error.detail}, headers=headers)


def as_leanserve_error(exc: BaseException) -> LeanServeError:
    """Map anything a route raised (Ray wraps replica errors) to one LeanServe error."""
    found = find_leanserve_error(exc)
    if found is not None:
        return found
    if isinstance(exc, (BackPressureError, DeploymentUnavailableError)):
        return ServiceUnavailableError("The model is overloaded or not ready; retry shortly.")
    if isinstance(exc, asyncio.TimeoutError):
        return GenerationTimeoutError("Generation timed out.")
    if isinstance(exc, (RayServeException, RayActorError, ActorUnavailableError)):
        return ServiceUnavailableError("A model replica was lost; retry shortly.")
    return LeanServeError("Internal server error.")


def describe_failure(exc: BaseException) -> str:
    """A short, safe reason for /health: ours verbatim, anything else by its type (Ray adds long tracebacks)."""
    found = find_leanserve_error(exc)
    if found is not None:
        return found.detail
    cause = getattr(exc, "cause", None) or exc
    return f"unavailable ({type(cause).__name__})"


app = FastAPI(
    title="LeanServe",
    summary="LeanCopilot-compatible tactic suggestions from Ray Serve and vLLM.",
    responses=_ERROR_RESPONSES,
)


@app.middleware("http")
async def _request_id_middleware(request: Request, call_next):
    # Serve's proxy puts the client's X-Request-Id (or a fresh one) on the request and echoes it on the
    # response; reuse it so the logs and the client see one id. Outside Serve (unit tests), make one.
    request.state.request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    # Before routing and body parsing: a stranger learns nothing, not even whether the body would be valid.
    client_host = request.client.host if request.client else None
    # Serve mounts the app under its route prefix (root_path): the gate sees the app's own path, /health etc.
    path = request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/")) or "/"
    try:
        auth.check_request(path, client_host, request.headers.get("authorization"))
    except UnauthorizedError as denied:
        return _log_and_respond(request, denied)
    return await call_next(request)


@app.exception_handler(LeanServeError)
async def _leanserve_error_handler(request: Request, exc: LeanServeError) -> JSONResponse:
    return _log_and_respond(request, exc)


@app.exception_handler(RequestValidationError)
async def _validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The contract promises a string detail; FastAPI's default is a list of error objects.
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: {err.get('msg')}"
        for err in exc.errors()
    )
    return _log_and_respond(request, InvalidRequestError(f"Malformed request: {problems}"))


@app.exception_handler(Exception)
async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return _log_and_respond(request, as_leanserve_error(exc), cause=exc)


def _log_and_respond(request: Request, error: LeanServeError, cause: BaseException | None = None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    log = request_logger(request_id)
    if error.status_code >= 500:
        log.opt(exception=cause).error("{} {} -> {}: {}", request.method, request.url.path, error.status_code, error.detail)
    else:
        log.warning("{} {} -> {}: {}", request.method, request.url.path, error.status_code, error.detail)
    return error_response(error)


@serve.ingress(app)
class LeanServeIngress:
    def __init__(self, args: AppArgs, bundles: dict[str, Any]):
        configure_logging("ingress")
        self.args = args
        # Fails the replica's start (Serve reports it) when the configured key source is missing or empty.
        auth.install_gate(auth.ApiKeyGate.from_settings(args.security))
        self.registry = ModelRegistry(args.models)
        # bundle name -> DeploymentHandle (Serve replaces the bound deployments with handles)
        self.handles = bundles

    @app.post("/generate", response_model=GenerateResponse)
    async def generate(self, body: GenerateRequest, request: Request) -> GenerateResponse:
        request_id = request.state.request_id
        started = time.perf_counter()
        check_generate_request(body, self.args.limits)
        bundle = self.registry.resolve(body.name)
        if body.use_reward:
            raise ScorerNotConfiguredError()
        if bundle.model is None:
            raise UnsupportedRouteError.generation(body.name)
        prefix = body.prefix or ""
        tactic_request = TacticRequest(request_id, body.input, prefix, body.n, body.max_tokens)
        output = await self._call(self.handles[bundle.name].generate.remote(tactic_request))
        tactics = completions_to_tactics(
            output.completions,
            prefix=prefix,
            chat=bundle.prompt.chat,
            require_tactic_shape=bundle.tactics.require_tactic_shape,
        )
        request_logger(request_id).info(
            "generate model={} input_chars={} prefix_chars={} sampled={} returned={} in {:.3f}s",
            bundle.name, len(body.input), len(prefix), len(output.completions), len(tactics),
            time.perf_counter() - started,
        )
        return GenerateResponse(outputs=[Candidate(output=t.output, score=t.score) for t in tactics])

    @app.post("/encode", response_model=EncodeResponse)
    async def encode(self, body: EncodeRequest, request: Request) -> EncodeResponse:
        request_id = request.state.request_id
        check_input_size(body.input, self.args.limits)
        bundle = self.registry.resolve(body.name)
        if bundle.encoder is None:
            raise UnsupportedRouteError.encoding(body.name)
        vector = await self._call(self.handles[bundle.name].encode.remote(request_id, body.input))
        return EncodeResponse(outputs=vector)

    @app.get("/health")
    async def health(self) -> JSONResponse:
        """200 only when every bundle's engine answers its own health check in time."""
        names = [b.name for b in self.args.models]
        too_slow = ServiceUnavailableError("The engine did not answer its health check in time.")
        results = await asyncio.gather(
            *(self._call(self.handles[n].health.remote(), self.args.ingress.health_timeout_s, too_slow) for n in names),
            return_exceptions=True,
        )
        report = {
            name: ("ok" if not isinstance(result, BaseException) else describe_failure(result))
            for name, result in zip(names, results)
        }
        healthy = all(status == "ok" for status in report.values())
        if healthy:
            return JSONResponse({"status": "ok", "models": report})
        return JSONResponse(
            status_code=503,
            content={"detail": "Some models cannot answer.", "status": "unavailable", "models": report},
            headers={"Retry-After": str(ServiceUnavailableError.retry_after_s)},
        )

    @app.get("/models", response_model=ModelsResponse)
    async def models(self) -> ModelsResponse:
        return self.registry.describe()

    async def _call(self, response: Any, timeout_s: float | None = None, on_timeout: LeanServeError | None = None) -> Any:
        """Await a handle call under the deadline; on timeout the call (and its engine request) is cancelled."""
        try:
            return await asyncio.wait_for(response, timeout_s or self.args.ingress.request_timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise (on_timeout or GenerationTimeoutError("Generation timed out.")) from None
        except LeanServeError:
            raise
        except Exception as exc:  # Ray wraps replica errors; find ours or map Ray's own
            raise as_leanserve_error(exc) from exc
