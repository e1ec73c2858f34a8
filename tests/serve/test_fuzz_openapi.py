"""schemathesis against the ingress's own OpenAPI schema, over HTTP on a real local Ray Serve app.

The bundles run the fake engine (tests/fakes.py): the fuzzing is about the ingress (parsing, validation,
limits, error mapping), and hundreds of cases finish in seconds. No generated request may get a 5xx, and the
app must still answer afterwards.
"""

from __future__ import annotations

import fakes
import httpx
import pytest
import schemathesis
from fakes import FakeEngine
from hypothesis import HealthCheck, given, settings
from ray import cloudpickle
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from serve_app import free_port

from core.config import AppArgs

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def fuzz_app():
    import ray
    from ray import serve

    from deployments.app import bind_app

    args = AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1},
            # /encode is fuzzed too: the generator-only bundle answers it with 400 and unknown names with 404.
            "models": [{"name": "prover", "model": "fake", "deployment": {"num_cpus": 0.1}}],
        }
    )
    cloudpickle.register_pickle_by_value(fakes)
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(bind_app(args, engine_factory=FakeEngine), name="fuzz", route_prefix="/", blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        cloudpickle.unregister_pickle_by_value(fakes)
        serve.shutdown()
        ray.shutdown()


def test_no_generated_request_gets_a_server_error(fuzz_app):
    # schemathesis' lazy pytest loader (from_fixture) breaks on pytest 9 ('Function' has no '_nodeid'): drive each
    # operation's Hypothesis strategy directly instead; the cases and checks are the same.
    schema = schemathesis.openapi.from_url(f"{fuzz_app}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /generate", "POST /encode", "GET /health"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            # Only what the API promises: no 5xx, JSON where it says JSON, bodies as documented ({"detail": str}).
            case.call_and_validate(checks=[not_a_server_error, content_type_conformance, response_schema_conformance])

        fuzz()


def test_the_app_still_serves_after_the_fuzzing(fuzz_app):
    response = httpx.post(f"{fuzz_app}/generate", json={"input": "⊢ True", "name": "prover"}, timeout=30)
    assert response.status_code == 200 and response.json()["outputs"]
    assert httpx.get(f"{fuzz_app}/health", timeout=30).status_code == 200
