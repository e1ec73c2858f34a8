"""The application builder: `import_path: deployments.app:build_app` in a Serve config file.

No `from __future__ import annotations` here: Serve reads the builder's parameter annotation at run
time to validate the YAML `args` into AppArgs, so a typo fails at start and names the field.
"""

import os

from loguru import logger
from ray import serve
from ray.serve import Application

from core.config import AppArgs, parse_app_args, with_env_scorer
from deployments.bundle import BundleServer, EngineFactory
from deployments.dedup_store import DedupStore, needs_dedup_store
from deployments.ingress import LeanServeIngress
from deployments.options import (
    ReplicaSpec,
    bundle_spec,
    dedup_store_spec,
    deployment_options,
    ingress_options,
    scorer_spec,
)
from deployments.scorer_server import ScorerServer


def build_app(args: AppArgs) -> Application:
    """Bind one autoscaled deployment per bundle (and per scorer) and the ingress that composes them."""
    # LEANPROGRESS_MODEL is read here, the one path both `make serve` and `serve run` take.
    return bind_app(with_env_scorer(parse_app_args(args), os.environ))


def bind_app(args: AppArgs, engine_factory: EngineFactory | None = None) -> Application:
    """`build_app` with the engine injectable (tests bind a fake one); Serve's config path never sets it."""

    def deployment(cls: type, spec: ReplicaSpec):
        options = deployment_options(spec, args.ingress)
        actor = options["ray_actor_options"]
        # A summary, not the options: runtime_env may carry secrets.
        logger.info(
            "deployment {}: replicas {}..{}, max_ongoing {}, cpus {}, gpus {}",
            spec.name, spec.settings.autoscaling.min_replicas, spec.settings.autoscaling.max_replicas,
            spec.max_ongoing_requests, actor["num_cpus"], actor["num_gpus"],
        )
        return serve.deployment(cls).options(**options)

    bundles = {b.name: deployment(BundleServer, bundle_spec(b)).bind(b, engine_factory) for b in args.models}
    scorers = {s.name: deployment(ScorerServer, scorer_spec(s)).bind(s) for s in args.scorers}
    # One shared memory for every ingress replica keeps cross-call deduplication consistent.
    store = deployment(DedupStore, dedup_store_spec()).bind(args) if needs_dedup_store(args) else None
    ingress = serve.deployment(LeanServeIngress).options(**ingress_options(args.ingress))
    return ingress.bind(args, bundles, scorers, store)
