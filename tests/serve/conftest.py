"""A real local Ray Serve app with a real vLLM engine on a tiny random model, driven over real HTTP."""

from __future__ import annotations

import pytest
from serve_app import APP_NAME, ServeApp, build_test_app_args, free_port


@pytest.fixture(scope="module")
def serve_app(tiny_llama, tiny_encoder):
    import ray
    from ray import serve

    from deployments.app import build_app

    args = build_test_app_args(tiny_llama, tiny_encoder)
    port = free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
        yield ServeApp(url=f"http://127.0.0.1:{port}", args=args)
    finally:
        serve.shutdown()
        ray.shutdown()
