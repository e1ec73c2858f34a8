"""Ingress logic without Ray Serve: lookup, request checks, sampling, error mapping."""

import asyncio
import pickle

import pytest
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from deployments.config import AppArgs, RequestLimits, SamplingDefaults
from deployments.errors import (
    SCORER_NOT_CONFIGURED,
    InputTooLargeError,
    InvalidRequestError,
    UnknownModelError,
    UnsupportedRouteError,
    find_leanserve_error,
)
from deployments.ingress import ModelRegistry, as_leanserve_error
from deployments.protocol import GenerateRequest
from deployments.validation import check_generate_request, resolve_sampling

ARGS = AppArgs.model_validate(
    {
        "models": [
            {"name": "prover", "aliases": ["kaiyuy/leandojo-lean4-tacgen-byt5-small"], "model": "x"},
            {"name": "retriever", "encoder": {"model": "y"}},
        ]
    }
)


def test_registry_resolves_names_and_aliases():
    registry = ModelRegistry(ARGS.models)
    assert registry.resolve("kaiyuy/leandojo-lean4-tacgen-byt5-small").name == "prover"
    with pytest.raises(UnknownModelError) as caught:
        registry.resolve("nope")
    assert caught.value.status_code == 404
    assert "prover" in caught.value.detail and "retriever" in caught.value.detail


def test_models_listing_shape():
    listing = ModelRegistry(ARGS.models).describe().model_dump()
    assert listing == {
        "models": [
            {"name": "prover", "aliases": ["kaiyuy/leandojo-lean4-tacgen-byt5-small"], "routes": ["generate"]},
            {"name": "retriever", "aliases": [], "routes": ["encode"]},
        ]
    }


def test_leancopilot_body_parses_with_prefix_absent_null_or_empty():
    for body in ({"input": "s", "name": "m"}, {"input": "s", "name": "m", "prefix": None}, {"input": "s", "name": "m", "prefix": ""}):
        assert not GenerateRequest.model_validate(body).prefix
    assert GenerateRequest.model_validate({"input": "s", "name": "m", "unknown": 1}).input == "s"


def test_limits():
    limits = RequestLimits(max_input_chars=10, max_prefix_chars=3, max_n=4, max_tokens=8)
    check_generate_request(GenerateRequest(input="x" * 10, name="m", prefix="abc", n=4, max_tokens=8), limits)
    with pytest.raises(InputTooLargeError):
        check_generate_request(GenerateRequest(input="x" * 11, name="m"), limits)
    with pytest.raises(InputTooLargeError):
        check_generate_request(GenerateRequest(input="x", name="m", prefix="abcd"), limits)
    with pytest.raises(InvalidRequestError):
        check_generate_request(GenerateRequest(input="x", name="m", n=5), limits)
    with pytest.raises(InvalidRequestError):
        check_generate_request(GenerateRequest(input="x", name="m", max_tokens=9), limits)


def test_sampling_uses_bundle_defaults_unless_the_request_lowers_them():
    defaults = SamplingDefaults(n=4, max_tokens=64, stop=["\n"])
    assert resolve_sampling(defaults, None, None).n == 4
    sampling = resolve_sampling(defaults, 2, 16)
    assert (sampling.n, sampling.max_tokens, sampling.stop) == (2, 16, ("\n",))


def test_errors_survive_pickling_and_ray_wrapping():
    error = UnsupportedRouteError.encoding("prover")
    assert error.detail == "Model 'prover' does not support encoding requests."
    restored = pickle.loads(pickle.dumps(error))
    assert restored.detail == error.detail and restored.status_code == 400
    wrapped = RayTaskError("generate", "traceback", error).as_instanceof_cause()
    assert find_leanserve_error(wrapped) is error or find_leanserve_error(wrapped).detail == error.detail
    assert as_leanserve_error(wrapped).status_code == 400


def test_ray_and_timeout_errors_map_to_retryable_statuses():
    assert as_leanserve_error(BackPressureError(num_queued_requests=1, max_queued_requests=1)).status_code == 503
    assert as_leanserve_error(asyncio.TimeoutError()).status_code == 504
    unknown = as_leanserve_error(RuntimeError("secret internals"))
    assert unknown.status_code == 500 and "secret" not in unknown.detail


def test_scorer_message_is_the_contracts():
    assert SCORER_NOT_CONFIGURED == "LeanProgress scoring requested but no model configured."


def test_health_failures_are_short_and_safe():
    from deployments.ingress import describe_failure

    wrapped = RayTaskError("health", "long traceback with internals", RuntimeError("engine core died")).as_instanceof_cause()
    assert describe_failure(wrapped) == "unavailable (RuntimeError)"
    assert describe_failure(UnsupportedRouteError.generation("m")) == "Model 'm' does not support generation requests."
