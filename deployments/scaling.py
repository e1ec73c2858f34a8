"""Serve options for scaling and placement, derived from the typed config: autoscaling that follows the
engine's batch size, custom resources, and placement groups for tensor-parallel replicas.

Pure functions (no Ray import), shared by the bundle deployments and any other batching deployment
(the scorer calls `autoscaling_config(settings, max_batch_size)` the same way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployments.config import AutoscalingSettings, DeploymentSettings


def target_ongoing_requests(settings: AutoscalingSettings, batch_size: int) -> float:
    """Ongoing requests per replica to aim for: half the engine's batch, so a replica scales out while it
    still has room (queued requests then wait for a new replica, not for a full batch to drain)."""
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
