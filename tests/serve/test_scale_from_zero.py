"""`min_replicas: 0` on a real local Ray Serve with a real vLLM engine (tiny random model): a bundle scaled to
zero is not woken by /health, a /generate waits for a real cold start (vLLM's import, engine start and the
bundle's warm-up, all inside the request's deadline) instead of failing, and idleness takes the bundle back
to zero."""

from __future__ import annotations

import math

import httpx
import pytest
from cluster_support import FAST_AUTOSCALING_METRICS_ENV, environment, replica_states, wait_for
from serve_app import free_port

from core.config import AppArgs
from deployments.service import SCALES_TO_ZERO

pytestmark = pytest.mark.serve

APP = "zero"
BUNDLE = "on-demand"
# A vLLM cold start here: about 15 s to import, 30 s to start the engine, then the warm-up; on a busy
# machine several times that. The first request must be answered within this one deadline.
REQUEST_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def zero_app(tiny_llama):
    import ray
    from ray import serve

    from deployments.app import build_app

    args = AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": REQUEST_TIMEOUT_S},
            "models": [
                {
                    "name": BUNDLE,
                    "model": str(tiny_llama),
                    "prompt": {"template": "{state}:::"},
                    "sampling": {"n": 2, "max_tokens": 8, "stop": []},
                    "engine_args": {"dtype": "float32", "max_model_len": 2048, "kv_cache_memory_bytes": 128 << 20,
                                    "max_num_seqs": 8, "enforce_eager": True},
                    "deployment": {
                        "num_cpus": 0.5,
                        "autoscaling": {
                            "min_replicas": 0,
                            "initial_replicas": 0,
                            "max_replicas": 1,
                            "upscale_delay_s": 0,
                            "downscale_delay_s": 2,
                            "downscale_to_zero_delay_s": 2,
                            "look_back_period_s": 11,
                        },
                    },
                }
            ],
        }
    )
    port = free_port()
    with environment(FAST_AUTOSCALING_METRICS_ENV):
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(args), name=APP, route_prefix="/", blocking=False)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT_S + 30) as client:
                yield client, args.models[0].deployment_name
        finally:
            serve.shutdown()
            ray.shutdown()


def test_bundle_starts_on_demand_and_returns_to_zero(zero_app):
    client, deployment = zero_app

    def running() -> int:
        return replica_states(APP, deployment).get("RUNNING", 0)

    assert running() == 0
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["models"] == {BUNDLE: SCALES_TO_ZERO}
    assert running() == 0, "/health must not wake a bundle scaled to zero"

    # No replica yet: the request waits in Serve's queue while a real vLLM replica starts and warms up, within
    # the request's deadline (a 504 or the client's timeout fails here), then is answered by that engine.
    response = client.post("/generate", json={"input": "⊢ True", "name": BUNDLE})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert 1 <= len(outputs) <= 2
    assert all(o["output"] and math.isfinite(o["score"]) and 0 <= o["score"] <= 1 for o in outputs)
    assert running() == 1

    wait_for(lambda: replica_states(APP, deployment) == {}, timeout_s=120, what="scale-in to zero replicas")
