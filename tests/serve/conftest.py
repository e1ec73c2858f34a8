"""Real local Ray Serve apps with real vLLM engines on tiny random models, driven over real HTTP.

Starting a local Ray cluster with Serve costs tens of seconds here, so the modules that need nothing of their
own share one (`shared_serve`): each deploys its app under its own name and route prefix. Modules that start a
cluster of their own (environment variables, killed nodes, CLIs) get the shared one stopped first, and
collection runs the sharing modules one after another, so it starts once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from serve_app import APP_NAME, ServeApp, build_test_app_args, free_port

from core.config import (
    PROXY_BODY_LIMIT_ENV,
    PROXY_CALLBACK,
    PROXY_CALLBACK_ENV,
    WORKER_NICENESS,
    WORKER_NICENESS_ENV,
    RequestLimits,
)

MAX_BODY_BYTES = RequestLimits().max_body_bytes

# The fixtures that deploy on the shared cluster.
SHARED_FIXTURES = frozenset({"serve_app", "openai_app"})


class SharedServe:
    def __init__(self):
        self.url: str | None = None

    def deploy(self, name: str, route_prefix: str, build: Callable[[], object]) -> str:
        """The URL of app `name`, deployed now unless it still runs (a test may have deleted it)."""
        import ray
        from ray import serve

        if self.url is None:
            port = free_port()
            # Serve's proxy with LeanServe's edge (body limit, Ray's client headers stripped) and workers at normal
            # priority, as `make serve` starts them: the cluster's processes inherit these from this one.
            os.environ.update({PROXY_CALLBACK_ENV: PROXY_CALLBACK, PROXY_BODY_LIMIT_ENV: str(MAX_BODY_BYTES),
                               WORKER_NICENESS_ENV: WORKER_NICENESS})
            ray.init(address="local", num_cpus=2, include_dashboard=False)
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            self.url = f"http://127.0.0.1:{port}"
        if name not in serve.status().applications:
            serve.run(build(), name=name, route_prefix=route_prefix, blocking=False)
        return self.url + route_prefix.rstrip("/")

    def stop(self) -> None:
        if self.url is not None:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
            for name in (PROXY_CALLBACK_ENV, PROXY_BODY_LIMIT_ENV, WORKER_NICENESS_ENV):
                os.environ.pop(name, None)
            self.url = None


def _shares(item) -> bool:
    return bool(SHARED_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(session, config, items):
    """The sharing modules of tests/serve first (in their own order), then the others."""
    serve_items = [item for item in items if "tests/serve/" in str(item.path).replace("\\", "/")]
    if not serve_items:
        return
    sharing_modules = {item.path for item in serve_items if _shares(item)}
    ordered = [i for i in serve_items if i.path in sharing_modules] + [i for i in serve_items if i.path not in sharing_modules]
    first = items.index(serve_items[0])
    rest = [item for item in items if item not in set(serve_items)]
    items[:] = rest[:first] + ordered + rest[first:]


@pytest.fixture(scope="session")
def shared_serve():
    shared = SharedServe()
    yield shared
    shared.stop()


@pytest.fixture(scope="module", autouse=True)
def _own_cluster_stops_the_shared_one(request, shared_serve):
    if not any(_shares(item) for item in request.session.items if item.path == request.path):
        shared_serve.stop()
    yield


@pytest.fixture(scope="module")
def serve_app(shared_serve, tiny_llama, tiny_encoder):
    from deployments.app import build_app

    args = build_test_app_args(tiny_llama, tiny_encoder)
    url = shared_serve.deploy(APP_NAME, "/", lambda: build_app(args))
    return ServeApp(url=url, args=args)
