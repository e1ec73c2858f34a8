"""End to end: LeanCopilot's exact requests against a real Ray Serve app with a real vLLM engine.

See ../shared/CONTRACT.md. The engine samples from a tiny random model, so these tests check the contract
(shapes, prefixes, scores, ordering, statuses, cancellation), not the quality of the tactics.
"""

from __future__ import annotations

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

    def one(state: str) -> int:
        return post_leancopilot(client, "/generate", {"input": state, "name": GENERATOR, "prefix": ""}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(one, states))
    assert statuses == [200] * len(states)
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


def test_concurrent_encodes_are_batched_and_each_gets_its_own_vector(client):
    texts = lean_goals(12)
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda t: client.post("/encode", json={"input": t, "name": ENCODER_ONLY}), texts))
    vectors = [tuple(r.json()["outputs"]) for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert len(set(vectors)) == len(texts)


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
    started = time.perf_counter()
    response = client.post("/generate", json={"input": "⊢ True", "name": GENERATOR, **LONG_REQUEST})
    assert response.status_code == 504
    assert response.json()["detail"] == "Generation timed out."
    assert time.perf_counter() - started < REQUEST_TIMEOUT_S + 10
    remaining, _ = wait_for_unfinished(serve_app, lambda n: n == 0, 10)
    assert remaining == 0, "the engine kept generating for a request nobody waits for"


def test_client_disconnect_aborts_the_engine_request(serve_app):
    def doomed_request():
        with httpx.Client(base_url=serve_app.url, timeout=3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                impatient.post("/generate", json={"input": "⊢ True", "name": GENERATOR, **LONG_REQUEST})

    sender = threading.Thread(target=doomed_request)
    sender.start()
    running, _ = wait_for_unfinished(serve_app, lambda n: n >= 1, 3)
    assert running >= 1, "the long request should be running in the engine"
    sender.join()
    # Well before the ingress deadline: only the disconnect can have stopped it.
    remaining, waited = wait_for_unfinished(serve_app, lambda n: n == 0, REQUEST_TIMEOUT_S - 8)
    assert remaining == 0, f"engine still running {remaining} request(s) {waited:.1f}s after the client left"


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
