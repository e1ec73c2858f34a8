"""Per-key limits through the real HTTP app (routes, middlewares, service, bundle and pipeline over a fake
engine): a key over its rate gets 429 with Retry-After in its front door's shape, n x max_tokens over its
class's budget gets 422, a `batch` key gets the batch class's limits, and keys are counted apart."""

from __future__ import annotations

import json

import pytest
from test_openai_and_ollama_routes import make, post_bytes

from core.config import AppArgs
from logic.auth import ApiKeyGate, LoopbackOnlyGate

EDITOR, OTHER_EDITOR, SEARCH = "sk-editor", "sk-editor-2", "sk-search"
RATE = {"interactive": 3, "batch": 5}
BUDGET = {"interactive": 16, "batch": 64}  # n x max_tokens; the bundles' own defaults: tiny 3 x 4, prover 2 x 12


def limited_args() -> AppArgs:
    return AppArgs.model_validate(
        {
            "limits": {
                "max_n": 8, "max_batch_items": 3,
                "per_class": {cls: {"requests_per_minute": RATE[cls], "max_generated_tokens": BUDGET[cls]} for cls in RATE},
            },
            "models": [
                {"name": "tiny", "model": "fake", "prompt": {"template": "{state}:::"}, "sampling": {"n": 3, "max_tokens": 4},
                 "encoder": {"model": "fake-encoder"}},
                {"name": "prover", "engine": "openai", "remote": {"api_key_env": None}, "prompt": {"chat": True},
                 "model": "fake", "task": "whole_proof", "sampling": {"n": 2, "max_tokens": 12, "stop": []}},
            ],
        }
    )


def keyed_gate() -> ApiKeyGate:
    return ApiKeyGate({EDITOR: "interactive", OTHER_EDITOR: "interactive", SEARCH: "batch"})


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


# One cheap request per front door (within every budget, or the bundle's own defaults: /prove's 2 x 12).
DOORS = {
    "/generate": {"input": "⊢ True", "name": "tiny"},
    "/generate_batch": {"name": "tiny", "items": [{"input": "⊢ True"}]},
    "/prove": {"name": "prover", "theorem": "theorem t : True"},
    "/encode": {"input": "⊢ True", "name": "tiny"},
    "/v1/completions": {"model": "tiny", "prompt": "x", "max_tokens": 2},
    "/v1/chat/completions": {"model": "prover", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
    "/api/generate": {"model": "tiny", "prompt": "x", "stream": False, "options": {"num_predict": 2}},
}


def assert_rate_limited(response, path: str, cls: str) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    body = response.json()
    expected = f"the limit is {RATE[cls]} a minute for {cls} keys (limits.per_class.{cls}.requests_per_minute)"
    if path.startswith("/v1/"):
        error = body["error"]
        assert (error["type"], error["code"], error["param"]) == ("rate_limit_error", "rate_limit_exceeded", None)
        assert expected in error["message"]
    elif path.startswith("/api/"):
        assert set(body) == {"error"} and expected in body["error"]
    else:
        assert set(body) == {"detail"} and expected in body["detail"]


@pytest.mark.parametrize("path", list(DOORS))
async def test_every_front_door_answers_a_key_over_its_rate_with_429_and_retry_after_in_its_shape(path):
    app, _ = await make(limited_args(), gate=keyed_gate())
    body = json.dumps(DOORS[path])
    served = [await post_bytes(app, path, body, bearer(EDITOR)) for _ in range(RATE["interactive"])]
    assert [r.status_code for r in served] == [200] * RATE["interactive"], [r.text for r in served]
    assert_rate_limited(await post_bytes(app, path, body, bearer(EDITOR)), path, "interactive")


async def test_keys_are_counted_apart_and_the_open_health_paths_not_at_all():
    app, _ = await make(limited_args(), gate=keyed_gate())
    body = json.dumps(DOORS["/generate"])
    for _ in range(RATE["interactive"]):
        assert (await post_bytes(app, "/generate", body, bearer(EDITOR))).status_code == 200
    assert_rate_limited(await post_bytes(app, "/generate", body, bearer(EDITOR)), "/generate", "interactive")
    # Another key of the same class has its own window.
    assert (await post_bytes(app, "/generate", body, bearer(OTHER_EDITOR))).status_code == 200
    # The count is kept under each key's hash (RequestContext.client), never under the key.
    stored = list(app.state.service.caller_rate._limiter.storage.events)
    assert len(stored) == 2 and all("key:" in k and EDITOR not in k for k in stored), stored
    # The limited key's /health polls are neither refused nor counted.
    from test_service import client

    async with client(app) as http:
        health = [await http.get("/health/live", headers=bearer(EDITOR)) for _ in range(5)]
    assert [h.status_code for h in health] == [200] * 5


async def test_a_batch_key_gets_the_batch_classs_rate_and_budget_and_x_priority_buys_neither():
    app, _ = await make(limited_args(), gate=keyed_gate())
    wide = json.dumps({"input": "⊢ True", "name": "tiny", "n": 4, "max_tokens": 16})  # 64 tokens
    assert (await post_bytes(app, "/generate", wide, bearer(SEARCH))).status_code == 200
    # An interactive key that lowers its class with X-Priority still has the interactive budget and rate.
    lowered = await post_bytes(app, "/generate", wide, bearer(EDITOR, **{"X-Priority": "batch"}))
    assert lowered.status_code == 422 and lowered.json()["detail"] == (
        "n x max_tokens is 4 x 16 = 64 tokens; the limit is 16 for interactive callers "
        "(limits.per_class.interactive.max_generated_tokens)"
    )
    body = json.dumps(DOORS["/generate"])
    for _ in range(RATE["batch"] - 1):
        assert (await post_bytes(app, "/generate", body, bearer(SEARCH))).status_code == 200
    assert_rate_limited(await post_bytes(app, "/generate", body, bearer(SEARCH)), "/generate", "batch")
    for _ in range(RATE["interactive"] - 1):  # the lowered request above counted once
        assert (await post_bytes(app, "/generate", body, bearer(EDITOR, **{"X-Priority": "batch"}))).status_code == 200
    assert_rate_limited(await post_bytes(app, "/generate", body, bearer(EDITOR, **{"X-Priority": "batch"})), "/generate", "interactive")


@pytest.mark.parametrize(
    ("path", "body", "asked"),
    [
        ("/generate", {"input": "⊢ True", "name": "tiny", "n": 2, "max_tokens": 9}, "2 x 9 = 18"),
        ("/generate", {"input": "⊢ True", "name": "tiny", "max_tokens": 6}, "3 x 6 = 18"),  # the bundle's n
        ("/prove", {"name": "prover", "theorem": "theorem t : True", "n": 5, "max_tokens": 5}, "5 x 5 = 25"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "n": 2, "max_tokens": 9}, "2 x 9 = 18"),
        ("/api/generate", {"model": "tiny", "prompt": "x", "stream": False, "options": {"num_predict": 17}}, "1 x 17 = 17"),
    ],
)
async def test_n_times_max_tokens_over_the_class_budget_is_a_422_naming_the_limit(path, body, asked):
    app, servers = await make(limited_args(), gate=keyed_gate())
    response = await post_bytes(app, path, json.dumps(body), bearer(EDITOR))
    assert response.status_code == 422, response.text
    text = response.text
    assert f"n x max_tokens is {asked} tokens; the limit is 16 for interactive callers" in text
    assert "limits.per_class.interactive.max_generated_tokens" in text
    assert all(server.engine.running == 0 for server in servers.values())
    # Within the budget, or within the bundle's own defaults (the prover's 2 x 12, more than the budget), served.
    within = await post_bytes(app, "/generate", json.dumps({"input": "⊢ True", "name": "tiny", "n": 2, "max_tokens": 8}), bearer(EDITOR))
    defaults = await post_bytes(app, "/prove", json.dumps(DOORS["/prove"]), bearer(EDITOR))
    assert (within.status_code, defaults.status_code) == (200, 200), (within.text, defaults.text)


async def test_a_batch_over_the_budget_fails_whole_and_counts_its_items_against_the_rate():
    app, _ = await make(limited_args(), gate=keyed_gate())
    items = [{"input": f"⊢ {i} = {i}"} for i in range(3)]
    too_wide = await post_bytes(app, "/generate_batch", json.dumps({"name": "tiny", "items": items, "n": 2, "max_tokens": 9}), bearer(EDITOR))
    assert too_wide.status_code == 422 and "2 x 9 = 18 tokens; the limit is 16" in too_wide.json()["detail"]
    # That request counted once; a batch of 2 items counts 2 more, and fills the editor's window of 3.
    two = await post_bytes(app, "/generate_batch", json.dumps({"name": "tiny", "items": items[:2]}), bearer(EDITOR))
    assert two.status_code == 200 and [len(r["outputs"]) for r in two.json()["results"]] == [3, 3], two.text
    assert_rate_limited(await post_bytes(app, "/generate", json.dumps(DOORS["/generate"]), bearer(EDITOR)), "/generate", "interactive")


async def test_keyless_loopback_callers_are_held_to_the_budget_but_not_counted():
    app, _ = await make(limited_args(), gate=LoopbackOnlyGate())
    body = json.dumps(DOORS["/generate"])
    served = [await post_bytes(app, "/generate", body) for _ in range(3 * RATE["interactive"])]
    assert [r.status_code for r in served] == [200] * (3 * RATE["interactive"])
    wide = await post_bytes(app, "/generate", json.dumps({"input": "⊢ True", "name": "tiny", "n": 4, "max_tokens": 16}))
    assert wide.status_code == 422 and "the limit is 16 for interactive callers" in wide.json()["detail"]
