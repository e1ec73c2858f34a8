"""The ingress and bundle deployments on a real local Ray Serve, with a fake engine: fast, deterministic.

These cover what a random tiny model cannot: exact scores and order over HTTP, and /health when one
bundle's engine is dead while the other keeps serving. The real-engine tests are test_leancopilot_contract.py.
"""

from __future__ import annotations

import math

import fakes
import httpx
import pytest
from fakes import FLAGS_ENV, broken_flag, fake_engine_for
from ray import cloudpickle
from serve_app import free_port

from core.config import AppArgs

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory):
    import ray
    from ray import serve

    from deployments.app import bind_app

    flags = tmp_path_factory.mktemp("flags")
    args = AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1},
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
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {FLAGS_ENV: str(flags)}}
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(bind_app(args, engine_factory=fake_engine_for), name="fake", route_prefix="/", blocking=False)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, flags
    finally:
        cloudpickle.unregister_pickle_by_value(fakes)
        serve.shutdown()
        ray.shutdown()


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
