"""`min_replicas: 0` on a real local Ray Serve (fake engine: this is about Serve, not vLLM): a bundle scaled
to zero is not woken by /health, a /generate waits for its cold start instead of failing, and idleness
takes the bundle back to zero."""

from __future__ import annotations

import fakes
import httpx
import pytest
from cluster_support import FAST_AUTOSCALING_METRICS_ENV, environment, replica_states, wait_for
from fakes import FakeEngine
from ray import cloudpickle
from serve_app import free_port

from core.config import AppArgs
from deployments.service import SCALES_TO_ZERO

pytestmark = pytest.mark.serve

APP = "zero"
BUNDLE = "on-demand"


@pytest.fixture(scope="module")
def zero_app():
    import ray
    from ray import serve

    from deployments.app import bind_app

    args = AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": 60},
            "models": [
                {
                    "name": BUNDLE,
                    "model": "fake",
                    "deployment": {
                        "num_cpus": 0.1,
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
    cloudpickle.register_pickle_by_value(fakes)
    port = free_port()
    with environment(FAST_AUTOSCALING_METRICS_ENV):
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(bind_app(args, engine_factory=FakeEngine), name=APP, route_prefix="/", blocking=False)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90) as client:
                yield client, args.models[0].deployment_name
        finally:
            cloudpickle.unregister_pickle_by_value(fakes)
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

    # No replica yet: the request waits in Serve's queue while one starts, then is answered.
    response = client.post("/generate", json={"input": "⊢ True", "name": BUNDLE})
    assert response.status_code == 200 and response.json()["outputs"]
    assert running() == 1

    wait_for(lambda: replica_states(APP, deployment) == {}, timeout_s=120, what="scale-in to zero replicas")
