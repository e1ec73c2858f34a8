"""LeanServe's own metrics, as Ray Serve custom metrics on Ray's Prometheus endpoint.

Serve adds the `deployment`, `replica` and `application` tags to each; Ray exports them with the `ray_`
prefix (Counters also get `_total`, Histograms `_bucket`/`_sum`/`_count`): `prometheus_name` gives the
exported name, and the Grafana dashboard (deploy/grafana/leanserve.json) queries exactly those names.

`METRICS` is the one list of what exists; the recorders below create their Ray metric objects lazily in
the replica that records (Ray metrics must be created inside a Ray worker process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
LATENCY_BOUNDARIES_S = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    @property
    def prometheus_name(self) -> str:
        """The series name on Ray's Prometheus endpoint (for histograms: the base of _bucket/_sum/_count)."""
        return f"ray_{self.name}" + ("_total" if self.kind == "counter" else "")


REQUESTS = MetricSpec(
    "leanserve_requests", "counter", "HTTP requests by bundle, route and status code.", ("bundle", "route", "status")
)
REQUEST_LATENCY = MetricSpec(
    "leanserve_request_latency_s", "histogram", "Seconds from request to response, by bundle and route.",
    ("bundle", "route"), tuple(LATENCY_BOUNDARIES_S),
)
CANDIDATES = MetricSpec("leanserve_candidates_returned", "counter", "Tactic candidates returned by /generate.", ("bundle",))
TOKENS = MetricSpec("leanserve_tokens_generated", "counter", "Tokens the engine generated (all candidates).", ("bundle",))
ENGINE_RUNNING = MetricSpec(
    "leanserve_engine_running_requests", "gauge", "Requests in the engine's running batch, per replica.", ("bundle",)
)
ENGINE_WAITING = MetricSpec(
    "leanserve_engine_waiting_requests", "gauge", "Requests queued in the engine, per replica.", ("bundle",)
)
PREFIX_CACHE_QUERIES = MetricSpec(
    "leanserve_prefix_cache_queries", "counter", "Prompt tokens vLLM looked up in its prefix cache, per replica.",
    ("bundle",),
)
PREFIX_CACHE_HITS = MetricSpec(
    "leanserve_prefix_cache_hits", "counter", "Prompt tokens found in vLLM's prefix cache, per replica.", ("bundle",)
)
ABANDONED = MetricSpec(
    "leanserve_engine_requests_abandoned", "counter",
    "Engine requests aborted because their caller left (client gone, deadline) before they finished, per replica.",
    ("bundle",),
)
TIMEOUTS = MetricSpec("leanserve_timeouts", "counter", "Requests that hit their deadline (504).", ("bundle", "route"))
UNAVAILABLE = MetricSpec(
    "leanserve_unavailable", "counter", "Requests answered 503 (overloaded, replica lost, engine dead).", ("bundle", "route")
)
SCORER_BATCH_SIZE = MetricSpec(
    "leanserve_scorer_batch_size", "histogram", "Candidates scored in one scorer batch.", ("scorer",),
    tuple(BATCH_SIZE_BOUNDARIES),
)

METRICS: tuple[MetricSpec, ...] = (
    REQUESTS, REQUEST_LATENCY, CANDIDATES, TOKENS, ENGINE_RUNNING, ENGINE_WAITING, PREFIX_CACHE_QUERIES,
    PREFIX_CACHE_HITS, ABANDONED, TIMEOUTS, UNAVAILABLE, SCORER_BATCH_SIZE,
)

_instances: dict[str, object] = {}


def _metric(spec: MetricSpec):
    """The Ray Serve metric object of `spec` in this process (created on first use)."""
    metric = _instances.get(spec.name)
    if metric is None:
        from ray.serve import metrics as serve_metrics  # lazy: the specs above are imported without Ray

        if spec.kind == "counter":
            metric = serve_metrics.Counter(spec.name, spec.description, tag_keys=spec.tags)
        elif spec.kind == "gauge":
            metric = serve_metrics.Gauge(spec.name, spec.description, tag_keys=spec.tags)
        else:
            metric = serve_metrics.Histogram(
                spec.name, spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tags
            )
        _instances[spec.name] = metric
    return metric


def record_request(bundle: str, route: str, status: int, latency_s: float) -> None:
    """One answered request (the ingress calls this for every /generate and /encode, errors included)."""
    _metric(REQUESTS).inc(1, tags={"bundle": bundle, "route": route, "status": str(status)})
    _metric(REQUEST_LATENCY).observe(latency_s, tags={"bundle": bundle, "route": route})
    if status == 504:
        _metric(TIMEOUTS).inc(1, tags={"bundle": bundle, "route": route})
    elif status == 503:
        _metric(UNAVAILABLE).inc(1, tags={"bundle": bundle, "route": route})


def record_candidates(bundle: str, count: int) -> None:
    if count:
        _metric(CANDIDATES).inc(count, tags={"bundle": bundle})


def record_tokens(bundle: str, count: int) -> None:
    if count:
        _metric(TOKENS).inc(count, tags={"bundle": bundle})


def record_engine_load(bundle: str, running: int, waiting: int) -> None:
    _metric(ENGINE_RUNNING).set(running, tags={"bundle": bundle})
    _metric(ENGINE_WAITING).set(waiting, tags={"bundle": bundle})


def record_prefix_cache(bundle: str, queries: int, hits: int) -> None:
    """Tokens queried and hit since the last report (the hit rate is hits / queries over any window)."""
    if queries:
        _metric(PREFIX_CACHE_QUERIES).inc(queries, tags={"bundle": bundle})
    if hits:
        _metric(PREFIX_CACHE_HITS).inc(hits, tags={"bundle": bundle})


def record_abandoned(bundle: str, count: int) -> None:
    if count:
        _metric(ABANDONED).inc(count, tags={"bundle": bundle})


def record_scorer_batch(size: int, scorer: str = "scorer") -> None:
    """The hook for the scorer deployment: call once per batch with the number of candidates scored."""
    _metric(SCORER_BATCH_SIZE).observe(size, tags={"scorer": scorer})
