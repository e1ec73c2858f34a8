"""The builder's output, inspected without starting Ray."""

from support import REPO_ROOT

from core.config import IngressSettings, load_serve_config
from deployments.app import build_app
from deployments.options import bundle_spec, deployment_options


def _bound_deployments(app):
    ingress = app._bound_deployment
    bundles = ingress.init_args[1]
    return ingress, {name: bound._bound_deployment for name, bound in bundles.items()}


def test_one_autoscaled_deployment_per_bundle():
    args = load_serve_config(REPO_ROOT / "serve_config.yaml").applications[0].args
    ingress, bundles = _bound_deployments(build_app(args))
    assert ingress.name == "ingress"
    assert set(bundles) == {b.name for b in args.models}
    for bundle in args.models:
        deployment = bundles[bundle.name]
        assert deployment.name == bundle.deployment_name
        config = deployment._deployment_config
        assert config.max_ongoing_requests == bundle.max_ongoing_requests
        assert config.autoscaling_config.max_replicas == bundle.deployment.autoscaling.max_replicas
        assert deployment.ray_actor_options["num_gpus"] == bundle.deployment.num_gpus
        if bundle.engine == "vllm":  # a batching engine needs many requests in flight
            assert config.max_ongoing_requests >= 64 and deployment.ray_actor_options["num_gpus"] == 1


def test_dedup_store_is_bound_only_when_a_bundle_opts_in():
    from core.config import parse_app_args
    from deployments.options import DEDUP_DEPLOYMENT_NAME

    spec = {"name": "r", "engine": "openai", "model": "m", "prompt": {"chat": True}, "sampling": {"stop": []},
            "remote": {"api_key_env": "K"}}
    without = build_app(parse_app_args({"models": [spec]}))._bound_deployment
    assert without.init_args[3] is None  # (args, bundles, scorers, dedup store)
    with_dedup = build_app(parse_app_args({"models": [{**spec, "dedup": {"enabled": True}}]}))._bound_deployment
    assert with_dedup.init_args[3]._bound_deployment.name == DEDUP_DEPLOYMENT_NAME
    store = with_dedup.init_args[3]._bound_deployment._deployment_config
    # A bounded queue: a flood of dedup calls gets quick 503s (answers go unfiltered), not a backlog in memory.
    assert 0 < store.max_queued_requests <= 1024 and store.max_ongoing_requests <= 256


def test_options_carry_health_check_and_env():
    args = load_serve_config(REPO_ROOT / "configs/local.yaml").applications[0].args
    options = deployment_options(bundle_spec(args.models[0]), IngressSettings())
    assert options["health_check_timeout_s"] >= 30
    assert options["ray_actor_options"]["num_gpus"] == 0


def test_vllm_bundles_run_on_jemalloc_with_onednn_global_cache_off_unless_the_operator_sets_them():
    from core.config import BundleConfig
    from deployments.options import RAY_JEMALLOC, bundle_spec

    assert RAY_JEMALLOC.exists(), "Ray's wheel no longer ships jemalloc: the vLLM worker would fragment glibc's heap"
    vllm = BundleConfig(name="v", model="m")
    env = deployment_options(bundle_spec(vllm), IngressSettings())["ray_actor_options"]["runtime_env"]["env_vars"]
    # 0: oneDNN's global primitive cache off, or the CPU worker keeps ~1,000 per-M matmul primitives (MiBs each);
    # on CPUs the model runs in the engine core, not in a worker behind a busy-waiting queue
    assert env == {"LD_PRELOAD": str(RAY_JEMALLOC), "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0",
                   "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    own = BundleConfig(name="v", model="m", deployment={
        "env_vars": {"LD_PRELOAD": "/opt/libtcmalloc.so", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "256",
                     "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}})
    assert bundle_spec(own).settings.env_vars == {"LD_PRELOAD": "/opt/libtcmalloc.so",
                                                  "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "256",
                                                  "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    own_allocator = BundleConfig(name="v", model="m", deployment={"env_vars": {"LD_PRELOAD": "/opt/libtcmalloc.so"}})
    assert bundle_spec(own_allocator).settings.env_vars == {"LD_PRELOAD": "/opt/libtcmalloc.so",
                                                            "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0",
                                                            "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    # On GPUs vLLM's own executor choice stands
    gpu = BundleConfig(name="g", model="m", deployment={"num_gpus": 1})
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in bundle_spec(gpu).settings.env_vars
    encoder_only = BundleConfig(name="e", engine="transformers", model="m")
    assert "runtime_env" not in deployment_options(bundle_spec(encoder_only), IngressSettings())["ray_actor_options"]
