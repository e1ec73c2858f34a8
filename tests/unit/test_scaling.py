"""Autoscaling and placement options, derived from the typed config (no Ray started)."""

import pytest
from ray.serve.config import AutoscalingConfig

from core.config import AutoscalingSettings, BundleConfig, ConfigError, DeploymentSettings, IngressSettings
from deployments.options import (
    autoscaling_config,
    bundle_spec,
    deployment_options,
    placement_options,
    target_ongoing_requests,
)


def bundle(**overrides) -> BundleConfig:
    return BundleConfig.model_validate({"name": "b", "model": "m", **overrides})


def test_target_is_half_the_batch_unless_set():
    assert target_ongoing_requests(AutoscalingSettings(), 128) == 64
    assert target_ongoing_requests(AutoscalingSettings(), 1) == 1
    assert target_ongoing_requests(AutoscalingSettings(target_ongoing_requests=5), 128) == 5
    options = deployment_options(bundle_spec(bundle(engine_args={"max_num_seqs": 32})), IngressSettings())
    assert options["autoscaling_config"]["target_ongoing_requests"] == 16


def test_defaults_scale_up_fast_and_down_slowly():
    config = autoscaling_config(AutoscalingSettings(), 64)
    assert config["upscale_delay_s"] < config["downscale_delay_s"]
    assert config["look_back_period_s"] > 10  # longer than Serve's 10 s metrics push
    assert "downscale_to_zero_delay_s" not in config and "initial_replicas" not in config
    # Serve accepts exactly what we build.
    AutoscalingConfig(**config)


def test_scale_to_zero_keeps_the_last_replica_longer_and_starts_with_initial_replicas():
    settings = AutoscalingSettings(min_replicas=0, initial_replicas=1, max_replicas=3)
    config = autoscaling_config(settings, 64)
    assert config["min_replicas"] == 0 and config["initial_replicas"] == 1
    assert config["downscale_to_zero_delay_s"] >= config["downscale_delay_s"]
    AutoscalingConfig(**config)


def test_initial_replicas_must_lie_in_range():
    with pytest.raises(ValueError, match="initial_replicas"):
        AutoscalingSettings(min_replicas=1, initial_replicas=3, max_replicas=2)


def test_custom_resources_reach_the_actor_options():
    options = deployment_options(bundle_spec(bundle(deployment={"num_cpus": 0.5, "resources": {"gpu_a": 1}})), IngressSettings())
    assert options["ray_actor_options"]["resources"] == {"gpu_a": 1}
    assert "placement_group_bundles" not in options


def test_tensor_parallel_on_gpus_gets_a_strict_pack_placement_group():
    config = bundle(
        engine_args={"tensor_parallel_size": 4},
        deployment={"num_gpus": 4, "num_cpus": 2, "resources": {"a100": 1}},
    )
    options = deployment_options(bundle_spec(config), IngressSettings())
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert options["placement_group_bundles"] == [{"CPU": 2, "GPU": 1, "a100": 1}, {"GPU": 1}, {"GPU": 1}, {"GPU": 1}]
    # The replica actor fits its first bundle; its vLLM workers take the GPUs.
    actor = options["ray_actor_options"]
    assert actor["num_gpus"] == 0 and actor["num_cpus"] == 2 and actor["resources"] == {"a100": 1}


def test_tensor_parallel_strategy_is_configurable():
    settings = DeploymentSettings(num_gpus=2, placement_strategy="PACK")
    assert placement_options(settings, 2)["placement_group_strategy"] == "PACK"


def test_single_gpu_replicas_need_no_placement_group():
    options = deployment_options(bundle_spec(bundle(deployment={"num_gpus": 1})), IngressSettings())
    assert options["ray_actor_options"]["num_gpus"] == 1
    assert "placement_group_bundles" not in options


@pytest.mark.parametrize(
    ("gpus", "message"), [(0, "shards the model over GPUs"), (1, "one whole GPU per shard"), (0.5, "it is 0.5")]
)
def test_tensor_parallel_needs_one_gpu_per_shard(gpus, message):
    with pytest.raises(ValueError, match=message):
        bundle(engine_args={"tensor_parallel_size": 2}, deployment={"num_gpus": gpus})


def test_tensor_parallel_error_is_readable_in_a_config_file():
    from core.config import parse_app_args

    with pytest.raises(ConfigError, match=r"models\.0.*tensor_parallel_size 2"):
        parse_app_args({"models": [{"name": "b", "model": "m", "engine_args": {"tensor_parallel_size": 2}}]})


def test_tensor_parallel_uses_rays_executor():
    from models.vllm_engine import build_engine_args  # noqa: PLC0415 - imports vLLM

    args = build_engine_args(bundle(engine_args={"tensor_parallel_size": 2}, deployment={"num_gpus": 2}))
    assert args.distributed_executor_backend == "ray" and args.tensor_parallel_size == 2
    assert build_engine_args(bundle()).distributed_executor_backend is None


def test_health_leaves_out_bundles_that_may_scale_to_zero():
    from deployments.service import bundles_to_probe

    kept = bundle(deployment={"autoscaling": {"min_replicas": 1}})
    on_demand = BundleConfig.model_validate(
        {"name": "z", "model": "m", "deployment": {"autoscaling": {"min_replicas": 0, "max_replicas": 2}}}
    )
    assert bundles_to_probe([kept, on_demand]) == ["b"]
