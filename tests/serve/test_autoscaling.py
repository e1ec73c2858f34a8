"""Autoscaling on a real local Ray Serve: load on a tiny vLLM bundle adds a second replica, idleness
removes it. The delays are shortened for the test; the production defaults are in core/config/."""

from __future__ import annotations

import time

import pytest
from cluster_support import (
    FAST_AUTOSCALING_METRICS_ENV,
    LoadGenerator,
    environment,
    generate,
    replica_states,
    report_figure,
    tiny_bundle_args,
    wait_for,
)
from serve_app import APP_NAME, free_port

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def scaling_app(tiny_llama):
    import ray
    from ray import serve

    from deployments.app import build_app

    args = tiny_bundle_args(
        tiny_llama,
        deployment={
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": 2,
                "upscale_delay_s": 1,
                "downscale_delay_s": 5,
                "look_back_period_s": 11,
            }
        },
    )
    port = free_port()
    with environment(FAST_AUTOSCALING_METRICS_ENV):
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
            yield f"http://127.0.0.1:{port}", args.models[0].deployment_name
        finally:
            serve.shutdown()
            ray.shutdown()


def running(deployment: str) -> int:
    return replica_states(APP_NAME, deployment).get("RUNNING", 0)


def test_bundle_scales_out_under_load_and_back_when_idle(scaling_app):
    url, deployment = scaling_app
    assert generate(url).status_code == 200
    assert replica_states(APP_NAME, deployment) == {"RUNNING": 1}

    # 8 clients against a target of 2 ongoing requests per replica: Serve wants more than the max of 2.
    with LoadGenerator(url, clients=8) as load:
        started = time.monotonic()
        wait_for(lambda: running(deployment) == 2, timeout_s=240, what="a second RUNNING replica under load")
        report_figure("load -> 2 RUNNING replicas (tiny vLLM engine start included)", time.monotonic() - started)
        # Both replicas serve: requests keep succeeding while the new one joins.
        served_before = len(load.statuses)
        wait_for(lambda: len(load.statuses) >= served_before + 8, timeout_s=120, what="requests on two replicas")
    assert load.statuses and set(load.statuses) == {200}, f"statuses under load: {sorted(set(load.statuses))}"

    idle = time.monotonic()
    wait_for(lambda: replica_states(APP_NAME, deployment) == {"RUNNING": 1}, timeout_s=120, what="scale-in to 1 replica")
    report_figure("idle -> 1 replica (downscale_delay_s 5)", time.monotonic() - idle)
    assert generate(url).status_code == 200
