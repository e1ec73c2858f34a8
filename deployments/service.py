"""The service every front door calls: it composes the bundles, scorers and the dedup store behind their
DeploymentHandles, and owns what spans bundles.

- name resolution and route support (logic/registry.py), request limits (logic/validation.py), and each
  caller's (logic/caller_limits.py): n x max_tokens here, its request rate (counted by the HTTP app's auth
  middleware, before the body is read; a /generate_batch's further items here);
- coalescing of identical requests in flight, cross-call deduplication, LeanProgress scoring and ranking;
- the one deadline of each request (core/request_context.py): every hop waits only for what is left of it;
- the failure policy of the optional hops (docs/scoring.md): a lost dedup store or scorer degrades the
  answer (unfiltered, or unscored and ranked by the generator) and names it in `ctx.degraded`; a circuit
  breaker per hop (logic/circuit.py) then skips it for a cooldown, so no request waits for a dead hop;
- Ray's errors mapped to LeanServe's (deployments/ray_errors.py).

No FastAPI here: the routers (deployments/leancopilot/router.py) translate their wire protocol to these calls,
and unit tests drive the service with injected handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.config import AppArgs, BundleConfig, ScorerConfig
from core.errors import (
    GenerationTimeoutError,
    LeanServeError,
    ScorerNotConfiguredError,
)
from core.log_setup import request_logger
from core.payloads import BundleAnswer, ProofRequest, ScoredTactic, ScoringInput, TacticRequest
from core.request_context import Clock, Deadline, RequestContext
from deployments.health import BUSY, SCALES_TO_ZERO, STARTING, HealthCache, HealthReport, is_up, state_of
from deployments.metrics import record_candidates
from deployments.ray_errors import as_leanserve_error
from logic.admission import AdmissionGate, ServiceRate
from logic.caller_limits import CallerRateLimiter, check_generated_tokens
from logic.circuit import CircuitBreaker
from logic.coalescing import SingleFlight
from logic.dedup import dedup_key, skip_returned, tactic_digest
from logic.priority import PriorityClass, engine_priority
from logic.progress_ranking import ProgressCandidate, rank_by_progress
from logic.registry import ModelRegistry
from logic.routing_key import routing_key
from logic.validation import (
    check_batch_size,
    check_encode_request,
    check_proof_request,
    check_sampling_limits,
    check_tactic_request,
)

# A DeploymentHandle, or in unit tests anything with `handle.method.remote(...)` returning an awaitable
# that has `.cancel()`.
Handle = Any
# Values of ctx.degraded (the X-LeanServe-Degraded header): which optional hop the answer went without.
SCORER_UNAVAILABLE = "scorer-unavailable"
DEDUP_UNAVAILABLE = "dedup-unavailable"


class HopSkipped(Exception):
    """An optional hop failed, timed out on its own budget, or its breaker is open: answer without it."""


@dataclass(frozen=True)
class TacticQuery:
    """A tactic request as a front door hands it over (LeanCopilot's /generate fields)."""

    name: str
    state: str
    prefix: str = ""
    use_reward: bool = False
    n: int | None = None
    max_tokens: int | None = None
    session_id: str | None = None  # routes the request with its session's others (else the context's)
    # LLMLean's own prompt, for bundles that answer chat turns (deployments/completion_service.py).
    client_prompt: str | None = None


@dataclass(frozen=True)
class ProofQuery:
    name: str
    theorem: str
    problem: str = ""
    n: int | None = None
    max_tokens: int | None = None


def bundles_to_probe(bundles: list[BundleConfig]) -> list[str]:
    """The bundles /health calls. A bundle allowed to scale to zero is left out: a probe is a request, so it
    would start a replica (and wait minutes for its model) every time, and the bundle would never scale in.
    Serve's own health checks still replace its broken replicas while it runs."""
    return [b.name for b in bundles if b.deployment.autoscaling.min_replicas > 0]


async def await_handle_call(response: Any, timeout_s: float, on_timeout: LeanServeError | None = None) -> Any:
    """Await a handle call for at most `timeout_s`. On timeout, and when the awaiting task is cancelled (its
    last caller left), the call and its engine request are cancelled too: Ray cancels a handle call by itself
    only with the request it was made in, and a coalesced call belongs to none (logic/coalescing.py)."""
    try:
        return await asyncio.wait_for(response, timeout_s)
    except asyncio.CancelledError:
        response.cancel()
        raise
    except TimeoutError:
        response.cancel()
        raise (on_timeout or GenerationTimeoutError("Generation timed out.")) from None
    except LeanServeError:
        raise
    except Exception as exc:  # Ray wraps replica errors; find ours or map Ray's own
        raise as_leanserve_error(exc) from exc


def admission_gate(bundle: BundleConfig, clock: Clock) -> AdmissionGate:
    """A bundle's admission in this ingress: bounded by its largest fleet, saturated by its smallest."""
    scaling, admission = bundle.deployment.autoscaling, bundle.deployment.admission
    return AdmissionGate(
        bound_per_class=bundle.admitted_sequences_per_class * scaling.max_replicas,
        saturation=bundle.engine_args.max_num_seqs * max(1, scaling.min_replicas),
        rate=ServiceRate(admission.rate_window_s, admission.rate_smoothing),
        clock=clock,
    )


# The /generate_batch route serves proof search: its items queue behind the editors' requests.
BATCH_ROUTE_CLASS: PriorityClass = "batch"


class TacticService:
    def __init__(
        self,
        args: AppArgs,
        bundles: Mapping[str, Handle],
        scorers: Mapping[str, Handle] | None = None,
        dedup_store: Handle | None = None,
        clock: Clock = time.monotonic,
    ):
        self.args = args
        self.clock = clock  # the deadlines' clock (tests pass their own)
        self.registry = ModelRegistry(args.models)
        self.bundles = bundles  # bundle name -> handle of its deployment
        self.scorers = scorers or {}  # scorer name -> handle of its LeanProgress deployment
        self.dedup_store = dedup_store  # None: no bundle opted into cross-call dedup
        self.flights: SingleFlight[BundleAnswer] = SingleFlight()
        self.caller_rate = CallerRateLimiter(args.limits.per_class)  # requests per minute of each API key
        self.admission = {b.name: admission_gate(b, clock) for b in args.models}
        cooldown_s = args.ingress.breaker_cooldown_s
        self.dedup_breaker = CircuitBreaker(cooldown_s, clock)
        self.scorer_breakers = {name: CircuitBreaker(cooldown_s, clock) for name in self.scorers}
        self._answered: set[str] = set()  # bundles and scorers that have answered a health probe once
        self.health_cache = HealthCache(self._probe_all, args.ingress.health_min_interval_s, clock)

    def new_context(self, request_id: str) -> RequestContext:
        """The context of a request arriving now: its deadline starts here."""
        return RequestContext(request_id, Deadline.after(self.args.ingress.request_timeout_s, self.clock))

    # -- tactics ---------------------------------------------------------------------------------------------

    async def suggest_tactics(self, query: TacticQuery, ctx: RequestContext) -> list[ScoredTactic | ProgressCandidate]:
        """Candidates for the next tactic, best first: the bundle's cleaned candidates, minus those returned
        before (cross-call dedup), ranked by the LeanProgress scorer when `use_reward` asks for it."""
        started = time.perf_counter()
        bundle = self.registry.lookup(query.name)
        check_tactic_request(
            query.state, query.prefix, query.n, query.max_tokens, self.args.limits, bundle.tokens_are_bytes
        )
        ctx.bundle = bundle.name
        sequences = query.n or bundle.sampling.n
        max_tokens = query.max_tokens or bundle.sampling.max_tokens
        self.check_generated_tokens(bundle, sequences, max_tokens, ctx)
        # LeanDojo-v2's 400 comes first: it answers any bundle without a scorer, encoder-only ones too.
        scorer = self._scorer_for(bundle) if query.use_reward else None
        self.registry.check_route(bundle, "generate", query.name)
        priority_class = ctx.priority_class
        request = TacticRequest(
            ctx.request_id, query.state, query.prefix, query.n, query.max_tokens,
            priority=engine_priority(priority_class),
            # An LLMLean prompt's file context (its [CTX] part) is the key when the client sends no session.
            routing_key=routing_key(query.client_prompt or query.state, query.session_id or ctx.session_id),
            client_prompt=query.client_prompt,
        )
        work = sequences * max_tokens

        def bundle_call():
            return self._admitted_call(bundle.name, priority_class, sequences, work, request, ctx)

        # Not with cross-call dedup: the second of two identical requests must get other tactics than the first.
        if self.args.ingress.coalesce_identical_requests and not bundle.dedup.enabled:
            # Everything that shapes the answer is in the key; identical requests in flight share one engine call.
            key = (
                bundle.name, query.state, query.prefix, query.n, query.max_tokens, query.use_reward,
                query.client_prompt, priority_class,
            )
            answer = await self.flights.run(key, bundle_call)
        else:
            answer = await bundle_call()
        ctx.replica, ctx.prompt_tokens, ctx.cached_prompt_tokens = (
            answer.replica, answer.prompt_tokens, answer.cached_prompt_tokens
        )
        tactics = answer.candidates
        if bundle.dedup.enabled and self.dedup_store is not None:
            tactics = await self._skip_returned(bundle.name, query, tactics, ctx)
        record_candidates(bundle.name, len(tactics))
        ranked = await self._rank_by_progress(scorer, query, tactics, ctx) if scorer is not None else tactics
        request_logger(ctx.request_id).info(
            "generate model={} input_chars={} prefix_chars={} sampled={} returned={} scorer={} replica={} "
            "priority={} in {:.3f}s",
            bundle.name, len(query.state), len(query.prefix), answer.sampled, len(ranked),
            scorer.name if scorer else None, answer.replica, priority_class, time.perf_counter() - started,
        )
        return ranked

    async def suggest_tactics_batch(
        self, queries: list[TacticQuery], ctx: RequestContext
    ) -> list[list[ScoredTactic | ProgressCandidate] | LeanServeError]:
        """One answer per query, in order: its candidates, or the error it alone met. The items fan out at once
        under the request's one deadline, each its own engine request (its n samples together); cancelling
        this call (the client left) cancels them all, and with them their engine requests."""
        check_batch_size(len(queries), self.args.limits)
        # n, max_tokens and the model are the batch's: a bad one fails it whole, not every item alike (each item
        # is still checked as the engine request it is; an unknown name is each item's 404).
        first = queries[0]
        check_sampling_limits(first.n, first.max_tokens, self.args.limits)
        if (bundle := self.registry.find(first.name)) is not None:
            self.check_generated_tokens(
                bundle, first.n or bundle.sampling.n, first.max_tokens or bundle.sampling.max_tokens, ctx
            )
        # The HTTP app counted the request once; a batch that will run costs its caller's rate one per item.
        await self.caller_rate.charge(ctx.client, ctx.key_class, len(queries) - 1)
        started = time.perf_counter()
        # Each item its own context (the answer's replica and tokens), all under the request's one deadline.
        contexts = [dataclasses.replace(ctx, priority_class=BATCH_ROUTE_CLASS) for _ in queries]

        async def one(query: TacticQuery, item_ctx: RequestContext):
            try:
                return await self.suggest_tactics(query, item_ctx)
            except LeanServeError as exc:
                return exc

        results = await asyncio.gather(*(one(q, c) for q, c in zip(queries, contexts, strict=True)))
        reached = {c.bundle for c in contexts}
        if len(reached) == 1:
            ctx.bundle = reached.pop()  # the metrics label of the whole batch
        request_logger(ctx.request_id).info(
            "generate_batch items={} failed={} in {:.3f}s",
            len(queries), sum(isinstance(r, LeanServeError) for r in results), time.perf_counter() - started,
        )
        return results

    @contextlib.contextmanager
    def admitted(
        self, bundle: str, priority_class: PriorityClass, sequences: int, work: int, ctx: RequestContext
    ) -> Iterator[None]:
        """Holds the bundle's admission for `sequences` (work: sequences x max_tokens) while the block runs: the
        one gate every front door's engine work passes (else OverloadedError, a 503 at once). Only work that
        finished counts toward the measured service rate."""
        gate = self.admission[bundle]
        ticket = gate.admit(priority_class, sequences, work, ctx.deadline.remaining())
        completed = False
        try:
            yield
            completed = True
        finally:
            gate.release(ticket, completed)

    async def _admitted_call(
        self, bundle: str, priority_class: PriorityClass, sequences: int, work: int, request, ctx: RequestContext
    ) -> BundleAnswer:
        """The bundle call, once admission lets its sequences in."""
        with self.admitted(bundle, priority_class, sequences, work, ctx):
            return await await_handle_call(self.bundles[bundle].answer.remote(request), ctx.deadline.remaining())

    def check_generated_tokens(self, bundle: BundleConfig, n: int, max_tokens: int, ctx: RequestContext) -> None:
        """422 when one engine request asks for more tokens (n x max_tokens) than its caller's class allows."""
        default_tokens = bundle.sampling.n * bundle.sampling.max_tokens
        check_generated_tokens(n, max_tokens, default_tokens, ctx.key_class, self.args.limits.per_class)

    def _scorer_for(self, bundle: BundleConfig) -> ScorerConfig:
        scorer = self.args.scorer_for(bundle)
        if scorer is None or scorer.name not in self.scorers:
            raise ScorerNotConfiguredError()
        return scorer

    async def _optional_hop(self, breaker: CircuitBreaker, start, cap_s: float, ctx: RequestContext) -> Any:
        """One call to an optional hop, within its own cap and the request's deadline. Raises HopSkipped when
        the breaker is open, or the hop fails or outlasts its cap (the breaker then opens). When the request's
        own deadline is what ran out, the request gets its 504 as from any hop, and the hop is not blamed."""
        if not breaker.allow():
            raise HopSkipped("skipped for a while: it failed moments ago")
        budget_s = ctx.deadline.budget(cap_s)
        try:
            result = await await_handle_call(start(), budget_s)
        except GenerationTimeoutError as exc:
            if budget_s < cap_s:  # the deadline, not the hop's cap, was the limit
                breaker.abandoned()
                raise
            breaker.failed()
            raise HopSkipped(f"no answer within {cap_s:g} s") from exc
        except LeanServeError as exc:
            if exc.status_code < 500:  # the request's fault, not the hop's
                breaker.abandoned()
                raise
            breaker.failed()
            raise HopSkipped(exc.detail) from exc
        except BaseException:  # cancelled: the caller left before a verdict
            breaker.abandoned()
            raise
        breaker.succeeded()
        return result

    async def _skip_returned(
        self, bundle: str, query: TacticQuery, tactics: list[ScoredTactic], ctx: RequestContext
    ) -> list[ScoredTactic]:
        """Cross-call deduplication: drop the tactics this caller got before for this input (by any replica).
        The store sees digests only (logic/dedup.py)."""
        key = dedup_key(bundle, ctx.client, query.state, query.prefix)
        digests = [tactic_digest(t.output) for t in tactics]
        try:
            fresh = await self._optional_hop(
                self.dedup_breaker, lambda: self.dedup_store.take_new.remote(bundle, key, digests),
                self.args.ingress.dedup_timeout_s, ctx,
            )
        except HopSkipped as skipped:
            # A lost store must not fail generation, nor stall it: the client gets the candidates unfiltered.
            request_logger(ctx.request_id).warning("dedup store unavailable ({}); returning unfiltered", skipped)
            ctx.degraded.append(DEDUP_UNAVAILABLE)
            return tactics
        return skip_returned(tactics, fresh, lambda t: t.output)

    async def _rank_by_progress(
        self, scorer: ScorerConfig, query: TacticQuery, tactics: list[ScoredTactic], ctx: RequestContext
    ) -> list[ProgressCandidate] | list[ScoredTactic]:
        """LeanProgress scores for every candidate, ranked per the contract (score = reward unless mixing).
        Without the scorer (lost, overloaded, or skipped by its breaker): the generator's candidates in its
        order, unscored, and SCORER_UNAVAILABLE in `ctx.degraded` (docs/scoring.md)."""
        if not tactics:
            return []
        items = [ScoringInput(goal=query.state, prefix=query.prefix, tactic=t.output) for t in tactics]
        try:
            steps = await self._optional_hop(
                self.scorer_breakers[scorer.name],
                lambda: self.scorers[scorer.name].score.remote(ctx.request_id, items),
                self.args.ingress.scorer_timeout_s, ctx,
            )
        except HopSkipped as skipped:
            request_logger(ctx.request_id).warning("scorer {} unavailable ({}); returning unscored", scorer.name, skipped)
            ctx.degraded.append(SCORER_UNAVAILABLE)
            return tactics
        return rank_by_progress([(t.output, t.score) for t in tactics], steps, scorer.mixing)

    # -- whole proofs and encodings --------------------------------------------------------------------------

    async def prove(self, query: ProofQuery, ctx: RequestContext) -> list[ScoredTactic]:
        """Complete proof candidates of `query.theorem` from a whole-proof bundle, best first."""
        started = time.perf_counter()
        bundle = self.registry.resolve(query.name, "prove")
        check_proof_request(
            query.theorem, query.problem, query.n, query.max_tokens, self.args.limits, bundle.tokens_are_bytes
        )
        ctx.bundle = bundle.name
        sequences = query.n or bundle.sampling.n
        max_tokens = query.max_tokens or bundle.sampling.max_tokens
        self.check_generated_tokens(bundle, sequences, max_tokens, ctx)
        request = ProofRequest(
            ctx.request_id, query.theorem, query.problem, query.n, query.max_tokens,
            priority=engine_priority(ctx.priority_class), routing_key=routing_key(query.theorem, ctx.session_id),
        )
        work = sequences * max_tokens
        answer = await self._admitted_call(bundle.name, ctx.priority_class, sequences, work, request, ctx)
        ctx.replica = answer.replica
        request_logger(ctx.request_id).info(
            "prove model={} theorem_chars={} sampled={} returned={} in {:.3f}s",
            bundle.name, len(query.theorem), answer.sampled, len(answer.candidates), time.perf_counter() - started,
        )
        return answer.candidates

    async def encode(self, name: str, text: str, ctx: RequestContext) -> list[float]:
        check_encode_request(text, self.args.limits)
        bundle = self.registry.resolve(name, "encode")
        ctx.bundle = bundle.name
        call = self.bundles[bundle.name].encode.remote(ctx.request_id, text)
        return await await_handle_call(call, ctx.deadline.remaining())

    # -- health and models -----------------------------------------------------------------------------------

    def models(self) -> list[BundleConfig]:
        return self.registry.bundles

    async def health(self) -> HealthReport:
        """The readiness report, from a probe at most `health_min_interval_s` old (deployments/health.py)."""
        return await self.health_cache.report()

    async def _probe_all(self) -> HealthReport:
        """Every bundle's engine and every scorer, each asked its own (cheap) health state at once."""
        models, scorers = await asyncio.gather(
            self._probe(self.bundles, bundles_to_probe(self.args.models)), self._probe(self.scorers, list(self.scorers))
        )
        models.update({b.name: SCALES_TO_ZERO for b in self.args.models if b.name not in models})
        return HealthReport(models, scorers)

    async def _probe(self, handles: Mapping[str, Handle], names: list[str]) -> dict[str, str]:
        timeout_s = self.args.ingress.health_timeout_s

        async def probe(name: str) -> Any:
            call = handles[name].health.remote()
            try:
                return await asyncio.wait_for(call, timeout_s)
            except TimeoutError:
                call.cancel()
                raise

        results = await asyncio.gather(*(probe(n) for n in names), return_exceptions=True)
        states = {name: state_of(result) for name, result in zip(names, results, strict=True)}
        # A replica that has never answered is starting (its engine loads for minutes), not busy: until it
        # answers once, /health says unavailable, so a launcher or load balancer does not send it traffic yet.
        self._answered.update(name for name, result in zip(names, results, strict=True) if is_up(states[name]) and states[name] != BUSY)
        return {name: (STARTING if state == BUSY and name not in self._answered else state) for name, state in states.items()}
