"""Ingress logic without Ray Serve: lookup and route support, request checks, sampling, error mapping."""

import pickle

import pytest
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from core.config import AppArgs, RequestLimits, SamplingDefaults
from core.errors import (
    InputTooLargeError,
    InvalidRequestError,
    ScorerNotConfiguredError,
    UnknownModelError,
    UnsupportedRouteError,
    find_leanserve_error,
)
from deployments.leancopilot.protocol import GenerateRequest
from deployments.ray_errors import as_leanserve_error, describe_failure
from logic.registry import ModelRegistry
from logic.validation import check_proof_request, check_tactic_request, resolve_sampling

ARGS = AppArgs.model_validate(
    {
        "models": [
            {"name": "prover", "aliases": ["kaiyuy/leandojo-lean4-tacgen-byt5-small"], "model": "x"},
            {"name": "retriever", "encoder": {"model": "y"}},
            {"name": "whole", "task": "whole_proof", "model": "z", "sampling": {"stop": []}},
        ]
    }
)


def test_registry_resolves_names_and_aliases():
    registry = ModelRegistry(ARGS.models)
    assert registry.resolve("kaiyuy/leandojo-lean4-tacgen-byt5-small", "generate").name == "prover"
    with pytest.raises(UnknownModelError) as caught:
        registry.lookup("nope")
    assert caught.value.status_code == 404
    assert "prover" in caught.value.detail and "retriever" in caught.value.detail


@pytest.mark.parametrize(
    ("name", "route", "detail"),
    [
        ("retriever", "generate", "Model 'retriever' does not support generation requests."),
        ("prover", "encode", "Model 'prover' does not support encoding requests."),
        ("whole", "generate", "Model 'whole' generates whole proofs: use /prove, not /generate."),
        ("prover", "prove", "Model 'prover' does not support whole-proof requests"),
    ],
)
def test_route_support_is_the_registrys_one_rule(name, route, detail):
    with pytest.raises(UnsupportedRouteError) as caught:
        ModelRegistry(ARGS.models).resolve(name, route)
    assert caught.value.status_code == 400 and caught.value.detail.startswith(detail)


def test_the_routes_follow_the_config():
    assert [(b.name, b.routes) for b in ARGS.models] == [
        ("prover", ["generate", "complete"]), ("retriever", ["encode"]), ("whole", ["prove", "complete"])
    ]


def test_leancopilot_body_parses_with_prefix_absent_null_or_empty():
    for body in ({"input": "s", "name": "m"}, {"input": "s", "name": "m", "prefix": None}, {"input": "s", "name": "m", "prefix": ""}):
        assert not GenerateRequest.model_validate(body).prefix
    assert GenerateRequest.model_validate({"input": "s", "name": "m", "unknown": 1}).input == "s"


def test_limits():
    limits = RequestLimits(max_input_chars=10, max_prefix_chars=3, max_n=4, max_tokens=8)
    check_tactic_request("x" * 10, "abc", 4, 8, limits)
    for state, prefix, n, max_tokens, error in [
        ("x" * 11, "", None, None, InputTooLargeError),
        ("x", "abcd", None, None, InputTooLargeError),
        ("x", "", 5, None, InvalidRequestError),
        ("x", "", None, 9, InvalidRequestError),
    ]:
        with pytest.raises(error):
            check_tactic_request(state, prefix, n, max_tokens, limits)
    with pytest.raises(InvalidRequestError, match="theorem is empty"):
        check_proof_request("  ", "", None, None, limits)
    with pytest.raises(InputTooLargeError, match="problem is 11 characters"):
        check_proof_request("t", "p" * 11, None, None, limits)


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
    assert as_leanserve_error(TimeoutError()).status_code == 504
    unknown = as_leanserve_error(RuntimeError("secret internals"))
    assert unknown.status_code == 500 and "secret" not in unknown.detail


def test_scorer_error_carries_the_contracts_message():
    error = ScorerNotConfiguredError()
    assert (error.status_code, error.detail) == (400, "LeanProgress scoring requested but no model configured.")


def test_health_failures_are_short_and_safe():
    wrapped = RayTaskError("health", "long traceback with internals", RuntimeError("engine core died")).as_instanceof_cause()
    assert describe_failure(wrapped) == "unavailable (RuntimeError)"
    assert describe_failure(UnsupportedRouteError.generation("m")) == "Model 'm' does not support generation requests."


def test_the_scorer_400_says_what_the_contract_says():
    from support import REPO_ROOT

    from core.errors import ScorerNotConfiguredError

    contract = (REPO_ROOT.parent / "shared" / "CONTRACT.md").read_text(encoding="utf-8")
    assert f"`{ScorerNotConfiguredError().detail}`" in contract or f'"{ScorerNotConfiguredError().detail}"' in contract
