"""The application builder: `import_path: deployments.app:build_app` in a Serve config file.

No `from __future__ import annotations` here: Serve reads the builder's parameter annotation at run
time to validate the YAML `args` into AppArgs, so a typo fails at start and names the field.
"""

import os
from typing import Any, Optional

from loguru import logger
from ray import serve
from ray.serve import Application

from deployments.bundle import BundleServer, EngineFactory
from deployments.config import AppArgs, BundleConfig, IngressSettings, parse_app_args, with_env_scorer
from deployments.dedup_store import DedupStore, get_dedup_deployment_options, needs_dedup_store
from deployments.ingress import LeanServeIngress
from deployments.scaling import autoscaling_config, placement_options
from deployments.scorer_server import ScorerServer, get_scorer_deployment_options

INGRESS_DEPLOYMENT_NAME = "ingress"
SHUTDOWN_MARGIN_S = 10.0


def drain_timeout_s(ingress: IngressSettings) -> float:
    """How long a stopping replica waits for its requests: as long as their deadline, so a redeploy cuts none."""
    return ingress.request_timeout_s + SHUTDOWN_MARGIN_S


def get_bundle_deployment_options(bundle: BundleConfig, ingress: Optional[IngressSettings] = None) -> dict[str, Any]:
    """Serve options of one bundle's deployment, all derived from its typed config (and the ingress deadline)."""
    settings = bundle.deployment
    drain_s = settings.graceful_shutdown_timeout_s
    if drain_s is None:
        drain_s = drain_timeout_s(ingress or IngressSettings())
    return {
        "name": bundle.deployment_name,
        "max_ongoing_requests": bundle.max_ongoing_requests,
        "max_queued_requests": bundle.max_queued_requests,
        "autoscaling_config": autoscaling_config(settings.autoscaling, bundle.engine_args.max_num_seqs),
        **placement_options(settings, bundle.engine_args.tensor_parallel_size),
        "health_check_period_s": settings.health_check_period_s,
        "health_check_timeout_s": settings.health_check_timeout_s,
        "graceful_shutdown_timeout_s": drain_s,
    }


def get_ingress_deployment_options(settings: IngressSettings) -> dict[str, Any]:
    return {
        "name": INGRESS_DEPLOYMENT_NAME,
        "num_replicas": settings.num_replicas,
        "max_ongoing_requests": settings.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": settings.num_cpus},
        # On a redeploy the old ingress replica stops; its requests may still wait for a bundle that restarts
        # meanwhile. Serve's 20 s default would cut them off: wait as long as their own deadline instead.
        "graceful_shutdown_timeout_s": drain_timeout_s(settings),
    }


def build_app(args: AppArgs) -> Application:
    """Bind one autoscaled deployment per bundle (and per scorer) and the ingress that composes them."""
    # LEANPROGRESS_MODEL is read here, the one path both `make serve` and `serve run` take.
    return bind_app(with_env_scorer(parse_app_args(args), os.environ))


def bind_app(args: AppArgs, engine_factory: Optional[EngineFactory] = None) -> Application:
    """`build_app` with the engine injectable (tests bind a fake one); Serve's config path never sets it."""
    bundles = {}
    for bundle in args.models:
        options = get_bundle_deployment_options(bundle, args.ingress)
        logger.info("bundle {} -> deployment {}: {}", bundle.name, options["name"], options)
        bundles[bundle.name] = serve.deployment(BundleServer).options(**options).bind(bundle, engine_factory)
    scorers = {}
    for scorer in args.scorers:
        options = get_scorer_deployment_options(scorer)
        logger.info("scorer {} ({}) -> deployment {}: {}", scorer.name, scorer.checkpoint, options["name"], options)
        scorers[scorer.name] = serve.deployment(ScorerServer).options(**options).bind(scorer)
    ingress = serve.deployment(LeanServeIngress).options(**get_ingress_deployment_options(args.ingress))
    store = None
    if needs_dedup_store(args):
        # One shared memory for every ingress replica: cross-call deduplication stays consistent.
        store = serve.deployment(DedupStore).options(**get_dedup_deployment_options()).bind(args)
    return ingress.bind(args, bundles, scorers, store)
