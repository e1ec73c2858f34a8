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
from deployments.bundle import ProofRequest, TacticRequest
from deployments.coalescing import SingleFlight
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
from deployments.metrics import UNKNOWN_BUNDLE, record_candidates, record_request
from deployments.protocol import (
    Candidate,
    EncodeRequest,
    EncodeResponse,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    ModelInfo,
    ModelsResponse,
    ProofCandidate,
    ProveRequest,
    ProveResponse,
)
from deployments.validation import check_generate_request, check_input_size, check_prove_request
from models.tactics import ScoredTactic, completions_to_tactics
from models.whole_proof import PRESETS, completions_to_proofs
from scorer.config import ScorerConfig
from scorer.ranking import rank_by_progress
from scorer.templates import ScoringInput

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


SCALES_TO_ZERO = "ok (min_replicas 0: not probed)"


def bundles_to_probe(bundles: list[BundleConfig]) -> list[str]:
    """The bundles /health calls. A bundle allowed to scale to zero is left out: a probe is a request, so it
    would start a replica (and wait minutes for its model) every time, and the bundle would never scale in.
    Serve's own health checks still replace its broken replicas while it runs."""
    return [b.name for b in bundles if b.deployment.autoscaling.min_replicas > 0]


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


METERED_ROUTES = {"/generate": "generate", "/prove": "prove", "/encode": "encode"}


@app.middleware("http")
async def _metrics_middleware(request: Request, call_next):
    # Every answer of a model route counts, errors included; the route sets request.state.bundle once the
    # model name resolves (before that, e.g. a malformed body, the bundle is "unknown").
    route = METERED_ROUTES.get(request.url.path)
    if route is None:
        return await call_next(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        bundle = getattr(request.state, "bundle", UNKNOWN_BUNDLE)
        try:
            record_request(bundle, route, status, time.perf_counter() - started)
        except Exception:  # metrics must never fail a request
            request_logger(getattr(request.state, "request_id", None)).opt(exception=True).warning(
                "could not record request metrics"
            )


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
    def __init__(
        self, args: AppArgs, bundles: dict[str, Any], scorers: dict[str, Any] | None = None, dedup_store: Any = None
    ):
        configure_logging("ingress")
        self.args = args
        # Fails the replica's start (Serve reports it) when the configured key source is missing or empty.
        auth.install_gate(auth.ApiKeyGate.from_settings(args.security))
        self.registry = ModelRegistry(args.models)
        # bundle name -> DeploymentHandle (Serve replaces the bound deployments with handles)
        self.handles = bundles
        # scorer name -> DeploymentHandle of its LeanProgress deployment
        self.scorer_handles = scorers or {}
        # The shared memory of cross-call deduplication (deployments/dedup_store.py); None: no bundle opted in.
        self.dedup_store = dedup_store
        self.flights: SingleFlight = SingleFlight()

    @app.post("/generate", response_model=GenerateResponse)
    async def generate(self, body: GenerateRequest, request: Request) -> GenerateResponse:
        request_id = request.state.request_id
        started = time.perf_counter()
        check_generate_request(body, self.args.limits)
        bundle = self.registry.resolve(body.name)
        request.state.bundle = bundle.name
        scorer = self.args.scorer_for(bundle) if body.use_reward else None
        if body.use_reward and (scorer is None or scorer.name not in self.scorer_handles):
            raise ScorerNotConfiguredError()
        if bundle.model is None:
            raise UnsupportedRouteError.generation(body.name)
        if bundle.task == "whole_proof":
            raise UnsupportedRouteError.tactic_generation(body.name)
        prefix = body.prefix or ""
        tactic_request = TacticRequest(request_id, body.input, prefix, body.n, body.max_tokens)

        def engine_call():
            return self._call(self.handles[bundle.name].generate.remote(tactic_request))

        # Not with cross-call dedup: the second of two identical requests must get other tactics than the first.
        if self.args.ingress.coalesce_identical_requests and not bundle.dedup.enabled:
            # Everything that shapes the answer is in the key; identical requests in flight share one engine call.
            key = (bundle.name, body.input, prefix, body.n, body.max_tokens, body.use_reward)
            output = await self.flights.run(key, engine_call)
        else:
            output = await engine_call()
        tactics = completions_to_tactics(
            output.completions,
            prefix=prefix,
            chat=bundle.prompt.chat,
            require_tactic_shape=bundle.tactics.require_tactic_shape,
            whole_answers=bundle.is_remote,
        )
        if bundle.dedup.enabled and self.dedup_store is not None:
            tactics = await self._skip_returned(bundle.name, body.input, prefix, tactics, request_id)
        record_candidates(bundle.name, len(tactics))
        if scorer is not None:
            outputs = await self._rank_by_progress(scorer, request_id, body.input, prefix, tactics)
        else:
            outputs = [Candidate(output=t.output, score=t.score) for t in tactics]
        request_logger(request_id).info(
            "generate model={} input_chars={} prefix_chars={} sampled={} returned={} scorer={} in {:.3f}s",
            bundle.name, len(body.input), len(prefix), len(output.completions), len(tactics),
            scorer.name if scorer else None, time.perf_counter() - started,
        )
        return GenerateResponse(outputs=outputs)

    async def _rank_by_progress(
        self, scorer: ScorerConfig, request_id: str, goal: str, prefix: str, tactics: list[ScoredTactic]
    ) -> list[Candidate]:
        """LeanProgress scores for every candidate, ranked per the contract (score = reward unless mixing)."""
        if not tactics:
            return []
        items = [ScoringInput(goal=goal, prefix=prefix, tactic=t.output) for t in tactics]
        steps = await self._call(self.scorer_handles[scorer.name].score.remote(request_id, items))
        ranked = rank_by_progress([(t.output, t.score) for t in tactics], steps, scorer.mixing)
        return [
            Candidate(output=c.output, score=c.score, model_score=c.model_score, steps_remaining=c.steps_remaining,
                      reward=c.reward)
            for c in ranked
        ]

    async def _skip_returned(self, bundle: str, state: str, prefix: str, tactics: list, request_id: str) -> list:
        """Cross-call deduplication: drop the tactics already returned for this input (by any replica)."""
        try:
            fresh = await self._call(
                self.dedup_store.take_new.remote(bundle, state, prefix, [t.output for t in tactics]),
                self.args.ingress.health_timeout_s,
            )
        except LeanServeError as exc:
            # Best effort: a lost store must not fail generation; the client gets the candidates unfiltered.
            request_logger(request_id).warning("dedup store unavailable ({}); returning unfiltered", exc.detail)
            return tactics
        keep = set(fresh)
        return [t for t in tactics if t.output in keep]

    @app.post("/prove", response_model=ProveResponse)
    async def prove(self, body: ProveRequest, request: Request) -> ProveResponse:
        """Complete proof candidates of `theorem` from a whole-proof bundle, best first (shaped like /generate)."""
        request_id = request.state.request_id
        started = time.perf_counter()
        check_prove_request(body, self.args.limits)
        bundle = self.registry.resolve(body.name)
        request.state.bundle = bundle.name
        if bundle.model is None or bundle.task != "whole_proof":
            raise UnsupportedRouteError.proving(body.name)
        proof_request = ProofRequest(request_id, body.theorem, body.problem or "", body.n, body.max_tokens)
        output = await self._call(self.handles[bundle.name].prove.remote(proof_request))
        proofs = completions_to_proofs(output.completions, fenced=PRESETS[bundle.whole_proof_settings.preset].fenced)
        request_logger(request_id).info(
            "prove model={} theorem_chars={} sampled={} returned={} in {:.3f}s",
            bundle.name, len(body.theorem), len(output.completions), len(proofs), time.perf_counter() - started,
        )
        return ProveResponse(outputs=[ProofCandidate(output=p.output, score=p.score) for p in proofs])

    @app.post("/encode", response_model=EncodeResponse)
    async def encode(self, body: EncodeRequest, request: Request) -> EncodeResponse:
        request_id = request.state.request_id
        check_input_size(body.input, self.args.limits)
        bundle = self.registry.resolve(body.name)
        request.state.bundle = bundle.name
        if bundle.encoder is None:
            raise UnsupportedRouteError.encoding(body.name)
        vector = await self._call(self.handles[bundle.name].encode.remote(request_id, body.input))
        return EncodeResponse(outputs=vector)

    @app.get("/health")
    async def health(self) -> JSONResponse:
        """200 only when every bundle's engine and every scorer answers its own health check in time."""
        report = await self._probe(self.handles, bundles_to_probe(self.args.models))
        report.update({b.name: SCALES_TO_ZERO for b in self.args.models if b.name not in report})
        scorers = await self._probe(self.scorer_handles, list(self.scorer_handles))
        healthy = all(status in ("ok", SCALES_TO_ZERO) for status in report.values()) and all(
            status == "ok" for status in scorers.values()
        )
        extra = {"scorers": scorers} if scorers else {}
        if healthy:
            return JSONResponse({"status": "ok", "models": report, **extra})
        return JSONResponse(
            status_code=503,
            content={"detail": "Some models cannot answer.", "status": "unavailable", "models": report, **extra},
            headers={"Retry-After": str(ServiceUnavailableError.retry_after_s)},
        )

    async def _probe(self, handles: dict[str, Any], names: list[str]) -> dict[str, str]:
        """Each deployment's health() at once: "ok", or a short reason."""
        too_slow = ServiceUnavailableError("The engine did not answer its health check in time.")
        results = await asyncio.gather(
            *(self._call(handles[n].health.remote(), self.args.ingress.health_timeout_s, too_slow) for n in names),
            return_exceptions=True,
        )
        return {
            name: ("ok" if not isinstance(result, BaseException) else describe_failure(result))
            for name, result in zip(names, results)
        }

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
