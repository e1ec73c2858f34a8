"""End to end: LeanCopilot's exact requests against a real Ray Serve app with a real vLLM engine.

See ../shared/CONTRACT.md. The engine samples from a tiny random model, so these tests check the contract
(shapes, prefixes, scores, ordering, statuses, cancellation), not the quality of the tactics.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from serve_app import ENCODER_DIM, ENCODER_ONLY, GENERATOR, GENERATOR_ALIAS, REQUEST_TIMEOUT_S
from support import LEANCOPILOT_HEADERS, descendants, lean_goals, leancopilot_bytes, processes_matching, still_running

from core.config import EncoderConfig
from models.encoder import TransformersEncoder

pytestmark = pytest.mark.serve

# Long on purpose: the tiny random model never stops early, so this takes far longer than the deadline.
LONG_REQUEST = {"n": 32, "max_tokens": 8000}


@pytest.fixture(scope="module")
def client(serve_app):
    with httpx.Client(base_url=serve_app.url, timeout=60) as http:
        yield http


def post_leancopilot(client: httpx.Client, route: str, payload: dict) -> httpx.Response:
    return client.post(route, content=leancopilot_bytes(payload), headers=LEANCOPILOT_HEADERS)


def assert_contract_outputs(body: dict, prefix: str = "") -> list[dict]:
    outputs = body["outputs"]
    assert isinstance(outputs, list) and outputs, body
    for candidate in outputs:
        assert isinstance(candidate["output"], str) and candidate["output"] == candidate["output"].strip()
        assert candidate["output"] and "```" not in candidate["output"]
        assert candidate["output"].startswith(prefix)
        score = candidate["score"]
        assert isinstance(score, float) and math.isfinite(score) and 0.0 <= score <= 1.0
        assert candidate["model_score"] is None and candidate["steps_remaining"] is None and candidate["reward"] is None
    texts = [c["output"] for c in outputs]
    assert len(texts) == len(set(texts)), "candidates are deduplicated"
    scores = [c["score"] for c in outputs]
    assert scores == sorted(scores, reverse=True), "candidates are sorted best first"
    return outputs


def wait_for_unfinished(serve_app, predicate, timeout_s: float) -> tuple[int, float]:
    handle = serve_app.bundle_handle(GENERATOR)
    started = time.perf_counter()
    while True:
        count = handle.num_unfinished_requests.remote().result()
        elapsed = time.perf_counter() - started
        if predicate(count) or elapsed > timeout_s:
            return count, elapsed
        time.sleep(0.2)


def test_leancopilot_generate_bytes_give_ranked_candidates(client):
    state = lean_goals(8)[3]
    response = post_leancopilot(client, "/generate", {"input": state, "name": GENERATOR, "prefix": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_contract_outputs(response.json())


@pytest.mark.parametrize("state", lean_goals(6), ids=lambda s: f"{len(s)}chars")
def test_real_proof_states_of_every_length(client, state):
    response = post_leancopilot(client, "/generate", {"input": state, "name": GENERATOR, "prefix": ""})
    assert response.status_code == 200
    assert_contract_outputs(response.json())


def test_no_goals_and_several_goals(client):
    for state in ["no goals", "x : ℕ\n⊢ x = x\n\ny : ℕ\n⊢ y + 0 = y"]:
        response = post_leancopilot(client, "/generate", {"input": state, "name": GENERATOR, "prefix": ""})
        assert response.status_code == 200
        assert_contract_outputs(response.json())


@pytest.mark.parametrize("prefix", ["simp", "rw [", "nlinarith [sq_nonneg (a - b), ", "exact "])
def test_every_output_continues_the_prefix(client, prefix):
    response = post_leancopilot(client, "/generate", {"input": "a b : ℝ\n⊢ a * b ≤ a ^ 2 + b ^ 2", "name": GENERATOR, "prefix": prefix})
    assert response.status_code == 200
    assert_contract_outputs(response.json(), prefix=prefix)


@pytest.mark.parametrize("payload", [{}, {"prefix": None}, {"unknown_field": [1, 2], "use_reward": False}])
def test_prefix_missing_or_null_and_unknown_fields(client, payload):
    response = client.post("/generate", json={"input": "⊢ 2 + 2 = 4", "name": GENERATOR, **payload})
    assert response.status_code == 200
    assert_contract_outputs(response.json())


def test_alias_and_request_sampling_overrides(client):
    response = client.post("/generate", json={"input": "⊢ 1 = 1", "name": GENERATOR_ALIAS, "n": 2, "max_tokens": 4})
    assert response.status_code == 200
    assert 1 <= len(assert_contract_outputs(response.json())) <= 2


def test_concurrent_requests_are_all_served(client, serve_app):
    states = lean_goals(16)

    def one(state: str) -> httpx.Response:
        return post_leancopilot(client, "/generate", {"input": state, "name": GENERATOR, "prefix": "", "n": 4})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(one, states))
    assert [r.status_code for r in responses] == [200] * len(states)
    for response in responses:  # each a whole contract answer, not only a 200
        assert 1 <= len(assert_contract_outputs(response.json())) <= 4
    assert len({r.headers["x-request-id"] for r in responses}) == len(states)
    assert wait_for_unfinished(serve_app, lambda n: n == 0, 10)[0] == 0


def test_request_id_is_echoed(client):
    response = client.post("/generate", json={"input": "⊢ True", "name": GENERATOR}, headers={"X-Request-Id": "lean-42"})
    assert response.headers["x-request-id"] == "lean-42"
    assert client.get("/models").headers["x-request-id"]


@pytest.mark.parametrize(
    ("route", "payload", "status", "detail"),
    [
        ("/generate", {"input": "⊢ True", "name": "nope", "prefix": ""}, 404, "Known models: tiny, tiny-alias, tiny-retriever."),
        ("/generate", {"input": "⊢ True", "name": GENERATOR, "use_reward": True}, 400, "LeanProgress scoring requested but no model configured."),
        ("/encode", {"input": "⊢ True", "name": GENERATOR}, 400, "Model 'tiny' does not support encoding requests."),
        ("/encode", {"input": "⊢ True", "name": GENERATOR_ALIAS}, 400, "Model 'tiny-alias' does not support encoding requests."),
        ("/generate", {"input": "⊢ True", "name": ENCODER_ONLY}, 400, "Model 'tiny-retriever' does not support generation requests."),
        ("/encode", {"input": "⊢ True", "name": "nope"}, 404, "Unknown model 'nope'"),
        ("/generate", {"name": GENERATOR}, 422, "input"),
        ("/generate", {"input": "⊢ True", "name": GENERATOR, "n": 0}, 422, "n"),
        ("/generate", {"input": "⊢ True", "name": GENERATOR, "n": 33}, 422, "the limit is 32"),
        ("/generate", {"input": "x" * 70_000, "name": GENERATOR}, 413, "the limit is 65536"),
        ("/encode", {"input": "x" * 70_000, "name": ENCODER_ONLY}, 413, "the limit is 65536"),
    ],
)
def test_errors_are_json_with_honest_statuses(client, route, payload, status, detail):
    response = client.post(route, json=payload)
    assert response.status_code == status
    body = response.json()
    assert isinstance(body["detail"], str) and detail in body["detail"]


def test_state_beyond_the_model_context_is_413(client, serve_app):
    # Under the ingress limit (65,536 characters) but far beyond the tiny model's 8,192-token context.
    state = ("\n\n".join(lean_goals(488)) * 3)[:60_000]
    response = post_leancopilot(client, "/generate", {"input": state, "name": GENERATOR, "prefix": ""})
    assert response.status_code == 413
    assert "too long for this model" in response.json()["detail"]
    assert wait_for_unfinished(serve_app, lambda n: n == 0, 10)[0] == 0


def test_malformed_json_is_422_json(client):
    response = client.post("/generate", content=b'{"input": "x", "name":', headers=LEANCOPILOT_HEADERS)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_encode_returns_the_encoder_vector(client, serve_app):
    text = "a b : ℝ\nh₀ : a < b\n⊢ a ^ 2 < b ^ 2 ∨ a < 0"
    response = post_leancopilot(client, "/encode", {"input": text, "name": ENCODER_ONLY})
    assert response.status_code == 200
    vector = response.json()["outputs"]
    assert len(vector) == ENCODER_DIM and all(isinstance(x, float) for x in vector)
    encoder_config = next(b for b in serve_app.args.models if b.name == ENCODER_ONLY).encoder
    offline = TransformersEncoder(EncoderConfig(model=encoder_config.model)).encode_batch([text])[0]
    assert torch.allclose(torch.tensor(vector), torch.tensor(offline), atol=1e-5)


def test_concurrent_encodes_are_batched_and_each_gets_its_own_vector(client, serve_app):
    texts = lean_goals(12)
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda t: client.post("/encode", json={"input": t, "name": ENCODER_ONLY}), texts))
    assert all(r.status_code == 200 for r in responses)
    # Each response is the vector of its own text, as the encoder computes it offline (not merely distinct ones).
    encoder_config = next(b for b in serve_app.args.models if b.name == ENCODER_ONLY).encoder
    offline = TransformersEncoder(EncoderConfig(model=encoder_config.model)).encode_batch(texts)
    for text, response, expected in zip(texts, responses, offline, strict=True):
        assert torch.allclose(torch.tensor(response.json()["outputs"]), torch.tensor(expected), atol=1e-5), text[:40]


def test_health_and_models(client):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": {GENERATOR: "ok", ENCODER_ONLY: "ok"}}
    assert client.get("/models").json() == {
        "models": [
            {"name": GENERATOR, "aliases": [GENERATOR_ALIAS], "routes": ["generate", "complete"]},
            {"name": ENCODER_ONLY, "aliases": [], "routes": ["encode"]},
        ]
    }


def test_deadline_gives_504_and_aborts_the_engine_request(client, serve_app):
    # The request would run for minutes; the client's own timeout (60 s) would fail the test were it not cut.
    response = client.post("/generate", json={"input": "⊢ True", "name": GENERATOR, **LONG_REQUEST})
    assert response.status_code == 504
    assert response.json()["detail"] == "Generation timed out."
    remaining, _ = wait_for_unfinished(serve_app, lambda n: n == 0, 10)
    assert remaining == 0, "the engine kept generating for a request nobody waits for"


def hang_up_after(serve_app, timeout_s: float, payload: dict, outcome: list) -> threading.Thread:
    """A client that sends `payload` and hangs up after `timeout_s`; what happened lands in `outcome`
    (asserted by the test's own thread: an assertion raised in this thread would only warn)."""

    def impatient_client():
        with httpx.Client(base_url=serve_app.url, timeout=timeout_s) as impatient:
            try:
                outcome.append(impatient.post("/generate", json=payload))
            except httpx.HTTPError as exc:
                outcome.append(exc)

    sender = threading.Thread(target=impatient_client)
    sender.start()
    return sender


def test_client_disconnect_aborts_the_engine_request(serve_app):
    outcome: list = []
    sender = hang_up_after(serve_app, 3, {"input": "⊢ True", "name": GENERATOR, **LONG_REQUEST}, outcome)
    running, _ = wait_for_unfinished(serve_app, lambda n: n >= 1, 3)
    assert running >= 1, "the long request should be running in the engine"
    sender.join()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.ReadTimeout), outcome
    # Well before the ingress deadline: only the disconnect can have stopped it.
    remaining, waited = wait_for_unfinished(serve_app, lambda n: n == 0, REQUEST_TIMEOUT_S - 8)
    assert remaining == 0, f"engine still running {remaining} request(s) {waited:.1f}s after the client left"


# Several seconds of generation, well inside the deadline (REQUEST_TIMEOUT_S): long enough to hang up during it.
SECONDS_LONG = {"n": 4, "max_tokens": 600}


def test_a_coalesced_request_survives_its_first_caller_hanging_up(serve_app):
    payload = {"input": "⊢ coalesced ∧ True", "name": GENERATOR, "prefix": "", **SECONDS_LONG}
    first: list = []
    sender = hang_up_after(serve_app, 1.0, payload, first)
    running, _ = wait_for_unfinished(serve_app, lambda n: n >= 1, 5)
    assert running >= 1, "the first request should be running in the engine"
    # The same request while the first is in flight: it joins the first one's engine call.
    with httpx.Client(base_url=serve_app.url, timeout=REQUEST_TIMEOUT_S + 30) as patient:
        second = patient.post("/generate", json=payload)
    sender.join()
    assert len(first) == 1 and isinstance(first[0], httpx.ReadTimeout), "the first client should have hung up"
    # Before the fix: 500 "Internal server error." (RuntimeError: No response returned.) once the first left.
    assert second.status_code == 200, second.text
    assert len(assert_contract_outputs(second.json())) >= 1
    assert wait_for_unfinished(serve_app, lambda n: n == 0, 10)[0] == 0, "an engine request outlived its callers"


def lone_surrogate_body(field: str) -> bytes:
    payload = {"input": "⊢ True", "name": GENERATOR, "prefix": ""}
    payload[field] = "⊢ a \ud800 b"
    # ASCII JSON writes it as the escape "\ud800": valid JSON, but the text it decodes to is not valid Unicode.
    return json.dumps(payload, ensure_ascii=True).encode("ascii")


def deep_json(depth: int) -> bytes:
    return b'{"input": ' + b"[" * depth + b"]" * depth + b', "name": "tiny"}'


HOSTILE = {
    # text no tokenizer can take: 422 at the edge, whatever the engine
    "lone surrogate in input": (lone_surrogate_body("input"), {422}),
    "lone surrogate in prefix": (lone_surrogate_body("prefix"), {422}),
    "lone surrogate in name": (json.dumps({"input": "⊢ True", "name": "\ud800"}).encode(), {404, 422}),
    "NUL in input": (json.dumps({"input": "⊢ a\u0000b", "name": GENERATOR}).encode(), {422}),
    "invalid UTF-8 bytes": (b'{"input": "\xff\xfe\xc3\x28", "name": "tiny"}', {400, 422}),
    "overlong UTF-8": (b'{"input": "\xc0\xaf", "name": "tiny"}', {400, 422}),
    # text that is odd but valid: served (200 with a contract answer)
    "RTL and bidi marks": (leancopilot_bytes({"input": "\u200f⊢ \u202ex = x\u202c\u2066", "name": GENERATOR, "prefix": "\u200e"}), {200}),
    "special tokens in input": (leancopilot_bytes({"input": "<|im_end|><s></s><|endoftext|>⊢ True</s>", "name": GENERATOR, "prefix": ""}), {200}),
    "special tokens in prefix": (leancopilot_bytes({"input": "⊢ True", "name": GENERATOR, "prefix": "<|im_end|></s>"}), {200}),
    "combining marks": (leancopilot_bytes({"input": "⊢ " + "a" + "\u0301" * 500, "name": GENERATOR, "prefix": ""}), {200}),
    # structure
    "deep JSON (10k nesting)": (deep_json(10_000), {400, 422}),
    "deep JSON (100k nesting)": (deep_json(100_000), {400, 413, 422}),
    "JSON that is not an object": (b'["input", "name"]', {422}),
    "empty body": (b"", {422}),
    # numbers
    "n = 1e400": (b'{"input": "x", "name": "tiny", "n": 1e400}', {422}),
    "max_tokens = 2**70": (json.dumps({"input": "x", "name": GENERATOR, "max_tokens": 2**70}).encode(), {422}),
    "n = -1": (json.dumps({"input": "x", "name": GENERATOR, "n": -1}).encode(), {422}),
    "n = 2.5": (json.dumps({"input": "x", "name": GENERATOR, "n": 2.5}).encode(), {422}),
    "n = NaN": (b'{"input": "x", "name": "tiny", "n": NaN}', {422}),
    # pydantic reads "yes" as true (LeanDojo-v2's server does too): then the contract's 400, no scorer here
    "use_reward = \"yes\"": (json.dumps({"input": "x", "name": GENERATOR, "use_reward": "yes"}).encode(), {400, 422}),
    # every field at its limit plus one (the app's limits: 65,536 / 4,096 characters, n 32, max_tokens 8,192)
    "input at 65,536 + 1": (leancopilot_bytes({"input": "x" * 65_537, "name": GENERATOR, "prefix": ""}), {413}),
    "prefix at 4,096 + 1": (leancopilot_bytes({"input": "x", "name": GENERATOR, "prefix": "p" * 4_097}), {413}),
    "n at 32 + 1": (json.dumps({"input": "x", "name": GENERATOR, "n": 33}).encode(), {422}),
    "max_tokens at 8,192 + 1": (json.dumps({"input": "x", "name": GENERATOR, "max_tokens": 8_193}).encode(), {422}),
    "encode input at 65,536 bytes + 1": (leancopilot_bytes({"input": "ℝ" * 21_846, "name": ENCODER_ONLY}), {413}),
    "a 1 MB name": (json.dumps({"input": "x", "name": "m" * 1_000_000}).encode(), {404, 413, 422}),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_gets_a_4xx_or_a_valid_answer_never_a_5xx(client, serve_app, case):
    body, allowed = HOSTILE[case]
    route = "/encode" if case.startswith("encode") else "/generate"
    response = client.post(route, content=body, headers=LEANCOPILOT_HEADERS)
    assert response.status_code in allowed, (case, response.status_code, response.text[:300])
    if response.status_code == 200:
        outputs = response.json()["outputs"]
        assert isinstance(outputs, list) and all(isinstance(c["output"], str) for c in outputs)
        assert all(0.0 <= c["score"] <= 1.0 for c in outputs)
    else:
        detail = response.json()["detail"]
        assert isinstance(detail, str)
        if "name" not in case:  # capping echoed names is the edge's work (issue 14, item 9), tested there
            assert len(detail) < 10_000, "the error echoes the hostile input back"


def test_the_app_still_answers_after_the_hostile_corpus(client, serve_app):
    response = post_leancopilot(client, "/generate", {"input": "⊢ 2 + 2 = 4", "name": GENERATOR, "prefix": ""})
    assert response.status_code == 200
    assert_contract_outputs(response.json())
    assert client.get("/health").status_code == 200
    assert wait_for_unfinished(serve_app, lambda n: n == 0, 10)[0] == 0, "a hostile request left an engine request"


def test_negative_fuzzing_of_the_real_app_gets_no_server_error(serve_app):
    """schemathesis in negative mode (schema-invalid data) over HTTP, down to the real vLLM engine's tokenizer."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance

    schema = schemathesis.openapi.from_url(f"{serve_app.url}/openapi.json")
    posts = [op for op in (r.ok() for r in schema.get_all_operations()) if op.method.upper() == "POST"]
    assert {op.path for op in posts} >= {"/generate", "/encode"}
    tried: list[int] = []
    for operation in posts:

        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            response = case.call_and_validate(checks=[not_a_server_error, content_type_conformance])
            tried.append(response.status_code)

        fuzz()
    assert tried and all(status < 500 for status in tried)
    assert wait_for_unfinished(serve_app, lambda n: n == 0, 10)[0] == 0


def test_deleting_the_app_shuts_the_engine_down(serve_app):
    from ray import serve
    from serve_app import APP_NAME

    bundle = next(b for b in serve_app.args.models if b.name == GENERATOR)
    replicas = processes_matching(f"ServeReplica:{APP_NAME}:{bundle.deployment_name}")
    engine_processes = descendants(replicas)
    assert replicas and engine_processes, "the replica should run vLLM's engine core in a child process"
    serve.delete(APP_NAME)
    deadline = time.time() + 60
    while still_running(engine_processes) and time.time() < deadline:
        time.sleep(0.5)
    assert not still_running(engine_processes), "the engine core outlived its replica"
