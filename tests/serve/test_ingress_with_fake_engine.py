"""The ingress and bundle deployments on a real local Ray Serve, with a fake engine: fast, deterministic.

These cover what a random tiny model cannot: exact scores and order over HTTP, and /health when one
bundle's engine is dead while the other keeps serving. The real-engine tests are test_leancopilot_contract.py.
Serve's proxy runs LeanServe's edge middlewares here as the launcher starts them (deployments/edge.py), with a
body limit below the ingress's own, so an answer shows which of the two refused.
"""

from __future__ import annotations

import json
import math
import os

import fakes
import httpx
import pytest
from fakes import FLAGS_ENV, broken_flag, fake_engine_for
from raw_http import chunked, post_raw
from ray import cloudpickle
from serve_app import free_port

from core.config import PROXY_BODY_LIMIT_ENV, PROXY_CALLBACK, PROXY_CALLBACK_ENV, AppArgs

pytestmark = pytest.mark.serve

INGRESS_TIMEOUT_S = 10.0
PROXY_TIMEOUT_S = 12.0  # http_options.request_timeout_s: what cuts a trickling upload
PROXY_BODY_LIMIT = 256 << 10  # below the ingress's 1 MiB: a 413 naming this limit came from the proxy
HUGE = 1 << 30


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory):
    import ray
    from ray import serve

    from deployments.app import bind_app

    flags = tmp_path_factory.mktemp("flags")
    args = AppArgs.model_validate(
        {
            # health_min_interval_s 0: a test that breaks an engine sees it at the next /health.
            "ingress": {"num_cpus": 0.1, "request_timeout_s": INGRESS_TIMEOUT_S, "health_min_interval_s": 0},
            "models": [
                {"name": "good", "model": "fake", "sampling": {"n": 3}, "deployment": {"num_cpus": 0.1}},
                {"name": "flaky", "model": "fake", "deployment": {"num_cpus": 0.1}},
                {
                    "name": "prover",
                    "engine": "openai",  # a remote chat API: the bundle passes the chat turns to the engine
                    "remote": {"api_key_env": None},
                    "prompt": {"chat": True},
                    "model": "fake",
                    "task": "whole_proof",
                    "sampling": {"n": 4, "stop": []},
                    "deployment": {"num_cpus": 0.1},
                },
            ],
        }
    )
    # The replicas cannot import the tests folder: ship the fake engine's module by value.
    cloudpickle.register_pickle_by_value(fakes)
    port = free_port()
    # As the launcher does: the proxy, a process of the cluster ray.init starts, inherits its environment.
    proxy_env = {PROXY_CALLBACK_ENV: PROXY_CALLBACK, PROXY_BODY_LIMIT_ENV: str(PROXY_BODY_LIMIT)}
    saved = {name: os.environ.get(name) for name in proxy_env}
    os.environ.update(proxy_env)
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {FLAGS_ENV: str(flags)}}
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": PROXY_TIMEOUT_S})
        serve.run(bind_app(args, engine_factory=fake_engine_for), name="fake", route_prefix="/", blocking=False)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, flags
    finally:
        cloudpickle.unregister_pickle_by_value(fakes)
        serve.shutdown()
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_scores_and_order_survive_the_whole_path(fake_app):
    client, _ = fake_app
    response = client.post("/generate", json={"input": "⊢ True", "name": "good", "prefix": "exact"})
    assert response.status_code == 200
    outputs = response.json()["outputs"]
    assert [c["output"] for c in outputs] == ["exact test_0", "exact test_1", "exact test_2"]
    assert [c["score"] for c in outputs] == pytest.approx([math.exp(-(i + 1) / 4) for i in range(3)])


def test_health_is_503_while_one_engine_is_dead_and_the_other_keeps_serving(fake_app):
    client, flags = fake_app
    assert client.get("/health").status_code == 200
    flag = broken_flag(flags, "flaky")
    flag.touch()
    try:
        health = client.get("/health")
        assert health.status_code == 503 and health.headers["retry-after"]
        body = health.json()
        assert body["models"]["good"] == "ok" and body["models"]["flaky"] != "ok"
        assert isinstance(body["detail"], str)
        assert client.post("/generate", json={"input": "⊢ True", "name": "good"}).status_code == 200
        dead = client.post("/generate", json={"input": "⊢ True", "name": "flaky"})
        assert dead.status_code == 503 and dead.headers["retry-after"]
    finally:
        flag.unlink()
    assert client.get("/health").status_code == 200


def test_prove_extracts_ranks_and_scores_the_final_lean4_blocks(fake_app):
    client, _ = fake_app
    theorem = "theorem t (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by"
    response = client.post("/prove", json={"name": "prover", "theorem": theorem + "\n"})
    assert response.status_code == 200
    outputs = response.json()["outputs"]
    # The DeepSeek-Prover-V2 prompt reached the chat engine; the plans are gone, the cut-off answer is dropped.
    assert [c["output"] for c in outputs] == [f"{theorem}\n  exact test_{i}" for i in range(3)]
    assert [c["score"] for c in outputs] == pytest.approx([math.exp(-(i + 1) / 4) for i in range(3)])
    assert set(outputs[0]) == {"output", "score"}


# --- the edge: Serve's proxy with LeanServe's middlewares ------------------------------------------------------

PROXY_413 = {"detail": f"Request body too large: the limit is {PROXY_BODY_LIMIT} bytes."}
# What the client may have written before the answer came: the limit, and what the sockets' buffers hold.
BUFFERS = 32 << 20


def test_the_proxy_refuses_a_huge_chunked_body_without_reading_it(fake_app):
    client, _ = fake_app
    status, headers, body, sent = post_raw(
        client.base_url.port, "/generate", {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                                            "X-Request-Id": "lean-huge"}, chunked(HUGE)
    )
    assert status == 413 and json.loads(body) == PROXY_413
    assert headers["x-request-id"] == "lean-huge"
    assert sent < PROXY_BODY_LIMIT + BUFFERS, f"the server took {sent} bytes of a {HUGE}-byte body before its 413"
    assert client.post("/generate", json={"input": "⊢ True", "name": "good"}).status_code == 200


def test_the_proxy_refuses_a_declared_huge_length_before_the_body(fake_app):
    client, _ = fake_app
    status, _, body, sent = post_raw(
        client.base_url.port, "/generate", {"Content-Type": "application/json", "Content-Length": str(HUGE)},
        (b"x" * (1 << 16) for _ in range(HUGE >> 16)),
    )
    assert status == 413 and json.loads(body) == PROXY_413
    assert sent < BUFFERS, f"the server took {sent} bytes before refusing a declared {HUGE}-byte body"


def test_a_body_within_the_proxys_limit_reaches_the_ingress_and_its_own_limits(fake_app):
    client, _ = fake_app
    response = client.post("/generate", json={"input": "x" * (100 << 10), "name": "good"})
    # 100 KiB passes the proxy (256 KiB); the ingress's own limit on input (65,536 characters) answers.
    assert response.status_code == 413 and response.json()["detail"] == "input is 102400 characters; the limit is 65536"


def test_a_clients_timeout_header_no_longer_steers_serves_proxy(fake_app):
    client, _ = fake_app
    # Ray 2.60's proxy would give this request a 1 µs timeout (408); stripped at the edge, the configured one holds.
    steered = client.post(
        "/generate",
        json={"input": "⊢ True", "name": "good"},
        headers={"x-request-timeout-seconds": "0.000001", "x-request-disconnect-disabled": "?1"},
    )
    assert steered.status_code == 200, steered.text
    assert [c["output"] for c in steered.json()["outputs"]] == ["test_0", "test_1", "test_2"]


def test_a_trickling_upload_is_cut_by_the_proxys_request_timeout(fake_app):
    client, _ = fake_app

    def trickle():
        yield b'{"input": "'  # then nothing more: the rest of the declared 100 bytes never comes

    status, _, body, sent = post_raw(
        client.base_url.port, "/generate", {"Content-Type": "application/json", "Content-Length": "100"}, trickle()
    )
    # Without http_options.request_timeout_s the ingress would wait for the body for good, holding its slot.
    assert status == 408 and b"timed out after 12.0s" in body
    assert sent == len(b'{"input": "')
