"""End to end: /generate with use_reward on a real Ray Serve app, a real vLLM engine and a LeanProgress
checkpoint that this test trains with scorer.train; what comes back over HTTP is checked against the same
checkpoint loaded offline.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_app import ENCODER_ONLY, GENERATOR, build_test_app_args, free_port
from support import LEANCOPILOT_HEADERS, lean_goals, leancopilot_bytes, shared_data_path

from core.config import AppArgs
from core.errors import SCORER_NOT_CONFIGURED
from core.payloads import ScoringInput
from scorer.model import ProgressScorer

pytestmark = pytest.mark.serve

APP_NAME = "leanserve-scored"
SCORER = "tiny-progress"


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory, tiny_encoder):
    from scorer.train import main

    out = tmp_path_factory.mktemp("scorer") / "leanprogress-tiny"
    argv = ["--data", str(shared_data_path("minif2f_proofsteps.jsonl")), "--base", str(tiny_encoder)]
    assert main([*argv, "--out", str(out), "--epochs", "1", "--batch-size", "16", "--max-length", "256", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def scored_app(tiny_llama, tiny_encoder, trained_checkpoint):
    """The shared test app plus a scorer; the encoder-only bundle opts out of scoring."""
    import ray
    from ray import serve

    from deployments.app import build_app

    base = build_test_app_args(tiny_llama, tiny_encoder).model_dump()
    for bundle in base["models"]:
        bundle["scorer"] = bundle["name"] != ENCODER_ONLY
    base["scorers"] = [
        {
            "name": SCORER,
            "checkpoint": str(trained_checkpoint),
            "device": "cpu",
            "max_input_tokens": 256,
            "deployment": {"num_cpus": 0.1},
        }
    ]
    args = AppArgs.model_validate(base)
    port = free_port()
    # address="local": a fresh cluster of our own, even when another one on this machine is the "current" one.
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield client
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def offline(trained_checkpoint):
    return ProgressScorer(trained_checkpoint, device="cpu", max_input_tokens=256)


def generate(client: httpx.Client, payload: dict) -> httpx.Response:
    return client.post("/generate", content=leancopilot_bytes(payload), headers=LEANCOPILOT_HEADERS)


def assert_scored(outputs: list[dict], offline: ProgressScorer, state: str, prefix: str) -> None:
    assert outputs
    predicted = offline.predict([ScoringInput(state, prefix, c["output"]) for c in outputs])
    for candidate, expected in zip(outputs, predicted):
        assert candidate["steps_remaining"] == pytest.approx(expected, abs=1e-4)
        assert candidate["steps_remaining"] >= 0
        assert candidate["reward"] == -candidate["steps_remaining"]
        assert candidate["score"] == candidate["reward"]
        assert 0.0 <= candidate["model_score"] <= 1.0
        assert candidate["output"].startswith(prefix)
    scores = [c["score"] for c in outputs]
    assert scores == sorted(scores, reverse=True), "fewest steps left first"


@pytest.mark.parametrize("prefix", ["", "nlin"])
def test_use_reward_returns_what_the_checkpoint_predicts_offline(scored_app, offline, prefix):
    state = lean_goals(8)[2]
    response = generate(scored_app, {"input": state, "name": GENERATOR, "prefix": prefix, "use_reward": True})
    assert response.status_code == 200, response.text
    assert_scored(response.json()["outputs"], offline, state, prefix)


def test_without_use_reward_the_extras_stay_null(scored_app):
    response = generate(scored_app, {"input": lean_goals(8)[1], "name": GENERATOR, "prefix": ""})
    assert response.status_code == 200
    outputs = response.json()["outputs"]
    assert outputs, "no candidate: the loop below would check nothing"
    for candidate in outputs:
        assert candidate["steps_remaining"] is None and candidate["reward"] is None and candidate["model_score"] is None
        assert 0.0 <= candidate["score"] <= 1.0


def test_concurrent_requests_share_batches_and_each_gets_its_own_scores(scored_app, offline):
    from ray import serve

    states = lean_goals(8)
    with ThreadPoolExecutor(len(states)) as pool:
        responses = list(
            pool.map(lambda s: generate(scored_app, {"input": s, "name": GENERATOR, "prefix": "", "use_reward": True}), states)
        )
    for state, response in zip(states, responses):
        assert response.status_code == 200, response.text
        assert_scored(response.json()["outputs"], offline, state, "")
    stats = serve.get_deployment_handle(f"scorer-{SCORER}", app_name=APP_NAME).batch_stats.remote().result()
    assert stats["items"] > stats["batches"], f"candidates were scored one forward pass each: {stats}"


def test_a_bundle_without_scorer_gives_the_contracts_400(scored_app):
    response = generate(scored_app, {"input": "⊢ True", "name": ENCODER_ONLY, "prefix": "", "use_reward": True})
    assert response.status_code == 400
    assert response.json() == {"detail": SCORER_NOT_CONFIGURED}


def test_health_reports_the_scorer(scored_app):
    response = scored_app.get("/health")
    assert response.status_code == 200
    assert response.json()["scorers"] == {SCORER: "ok"}
