"""The /v1 and /api front doors without Ray: real routes, middlewares, service, bundle and pipeline over a fake
engine (tests/serve/test_openai_and_llmlean.py runs them on the real engine with the real clients)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from fakes import FakeEngine, fake_engine_for
from support import (
    llmlean_fewshot_prompts,
    llmlean_instruct_prompt,
    llmlean_ollama_body,
    llmlean_openai_body,
    llmlean_qed_instruct_prompt,
)
from test_service import FakeClock, Handle, Scorer, bundle_server, client

from core.config import AppArgs
from core.errors import ServiceUnavailableError
from core.payloads import CompletionDelta, StreamChunk
from deployments.http_app import build_http_app
from deployments.service import TacticService
from logic.auth import ApiKeyGate

STATE = "n : ℕ\n⊢ n + 0 = n"
CONTEXT = "theorem t (n : ℕ) : n + 0 = n := by\n"


class StreamCall:
    """What `handle.options(stream=True).method.remote()` returns: an async iterator with `.cancel()`."""

    def __init__(self, generator):
        self.generator = generator
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.generator.__anext__()

    def cancel(self):
        self.cancelled = True


class StreamingHandle(Handle):
    def options(self, stream: bool = False):
        assert stream
        target = self._target
        return SimpleNamespace(
            complete_stream=SimpleNamespace(remote=lambda *args: StreamCall(target.complete_stream(*args)))
        )


def args(tiny_sampling: dict | None = None, **ingress) -> AppArgs:
    return AppArgs.model_validate(
        {
            "ingress": {"request_timeout_s": 300, **ingress},
            "limits": {"max_n": 8},
            "models": [
                {"name": "tiny", "aliases": ["tiny-alias"], "model": "fake", "prompt": {"template": "{state}:::"},
                 "sampling": {"n": 3, **(tiny_sampling or {})}, "encoder": {"model": "fake-encoder"}},
                {"name": "prover", "engine": "openai", "remote": {"api_key_env": None}, "prompt": {"chat": True},
                 "model": "fake", "task": "whole_proof", "sampling": {"n": 3, "stop": []}},
            ],
        }
    )


class Encoder:
    def encode_batch(self, texts):
        return [[float(len(t)), 1.0] for t in texts]


async def make(app_args: AppArgs, gate=None):
    servers = {}
    for bundle in app_args.models:
        server = await bundle_server(bundle, fake_engine_for)
        if bundle.encoder:
            # serve.batch needs a replica context; here each text is its own batch.
            async def encode_one(text):
                return Encoder().encode_batch([text])[0]

            server._encode_batch = encode_one
        servers[bundle.name] = server
    handles = {name: StreamingHandle(server) for name, server in servers.items()}
    service = TacticService(app_args, handles, {"progress": Handle(Scorer())}, clock=FakeClock())
    return build_http_app(service, gate), servers


async def post_bytes(app, path: str, body: str, headers: dict | None = None):
    async with client(app) as http:
        return await http.post(path, content=body.encode("utf-8"), headers={"Content-Type": "application/json", **(headers or {})})


def sse_events(text: str) -> list:
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line.strip()]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# -- tactic mode ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "ex"])
async def test_llmlean_openai_prompt_is_answered_by_the_bundles_own_prompt(prefix):
    app, servers = await make(args())
    body = llmlean_openai_body("tiny", llmlean_instruct_prompt(CONTEXT, STATE, prefix), 5, 512)
    response = await post_bytes(app, "/v1/chat/completions", body, {"Authorization": "Bearer ", "x-api-key": ""})
    assert response.status_code == 200, response.text
    answer = response.json()
    # The fake engine continues " test_i": the tactics are `{prefix} test_i`, best first; LLMLean gets what
    # follows the prefix, since it puts the prefix back itself.
    expected = [f" test_{i}" if prefix else f"test_{i}" for i in range(5)]
    assert [c["message"]["content"] for c in answer["choices"]] == expected
    assert [c["index"] for c in answer["choices"]] == list(range(5))
    assert answer["id"].startswith("chatcmpl-") and answer["object"] == "chat.completion"
    assert servers["tiny"].engine_requests == 1  # n=5 in one engine request


async def test_llmlean_proof_prompt_to_a_whole_proof_bundle_gets_the_proof_after_the_statement():
    app, _ = await make(args())
    body = llmlean_openai_body("prover", llmlean_qed_instruct_prompt(CONTEXT.rstrip()), 3, 1024, ("[/PROOF]", "</think>"))
    response = await post_bytes(app, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    # The prover answers the whole theorem again (tests/fakes.py FakeChatProver); LLMLean wants the proof only.
    assert [c["message"]["content"] for c in response.json()["choices"]] == ["  exact test_0", "  exact test_1"]


async def test_a_tactic_prompt_to_a_whole_proof_bundle_is_the_contracts_400():
    app, _ = await make(args())
    response = await post_bytes(app, "/v1/chat/completions", llmlean_openai_body("prover", llmlean_instruct_prompt(CONTEXT, STATE, ""), 2, 64))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_ollama_samples_once_for_llmleans_run_of_identical_requests():
    app, servers = await make(args())
    prompt = llmlean_fewshot_prompts(CONTEXT, STATE, "ex")[0]
    answers = []
    for i in range(4):
        response = await post_bytes(app, "/api/generate", llmlean_ollama_body("tiny", prompt, 0.0 if i == 1 else 0.7, 128))
        assert response.status_code == 200, response.text
        assert response.json()["done"] is True
        answers.append(response.json()["response"])
    # One engine request of the bundle's n=3 answers the first three, distinct and best first; the fourth
    # samples again.
    assert answers == [" test_0", " test_1", " test_2", " test_0"]
    assert servers["tiny"].engine_requests == 2


async def test_ollama_sample_window_off_samples_every_request():
    app, servers = await make(args(sample_window_s=0))
    prompt = llmlean_instruct_prompt(CONTEXT, STATE, "")
    answers = [(await post_bytes(app, "/api/generate", llmlean_ollama_body("tiny", prompt, 0.7, 128))).json()["response"] for _ in range(3)]
    assert answers == ["test_0"] * 3 and servers["tiny"].engine_requests == 3


async def test_ollama_plain_prompt_goes_to_the_engine_as_it_is():
    app, _ = await make(args())
    response = await post_bytes(app, "/api/generate", json.dumps({"model": "tiny", "prompt": "hello", "stream": False,
                                                                  "options": {"num_predict": 7, "stop": ["\n"]}}))
    body = response.json()
    # FakeEngine: prompt_tokens = len(prompt), so the raw prompt reached it unchanged.
    assert (body["response"], body["prompt_eval_count"], body["eval_count"], body["done_reason"]) == (
        " test_0\nignored", 5, 2, "stop",
    )


async def test_ollama_tags_lists_models_that_complete():
    app, _ = await make(args())
    async with client(app) as http:
        tags = (await http.get("/api/tags")).json()["models"]
    assert [t["name"] for t in tags] == ["tiny", "tiny-alias", "prover"]


# -- raw OpenAI routes ---------------------------------------------------------------------------------------


async def test_completions_stream_is_sse_with_usage_and_done_from_an_engine_that_does_not_stream():
    app, _ = await make(args())
    body = json.dumps({"model": "tiny", "prompt": "abc", "n": 2, "max_tokens": 4, "stream": True,
                       "stream_options": {"include_usage": True}})
    response = await post_bytes(app, "/v1/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [(e["choices"][0]["index"], e["choices"][0]["text"]) for e in events[:-1]] == [
        (0, " test_0\nignored"), (1, " test_1\nignored")
    ]
    assert events[-1]["choices"] == [] and events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_chat_with_plain_turns_reaches_a_remote_bundle_as_turns():
    app, _ = await make(args())
    body = json.dumps({"model": "prover", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    response = await post_bytes(app, "/v1/chat/completions", body)
    # FakeChatProver answers an unknown prompt with prose: the client's own turn reached it, not the preset.
    assert response.json()["choices"][0]["message"] == {"role": "assistant", "content": "I cannot help."}


async def test_embeddings_come_from_the_bundles_encoder_in_order():
    app, _ = await make(args())
    response = await post_bytes(app, "/v1/embeddings", json.dumps({"model": "tiny-alias", "input": ["a", "abc"]}))
    assert [d["embedding"] for d in response.json()["data"]] == [[1.0, 1.0], [3.0, 1.0]]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "tiny"),
        ("/v1/completions", {"model": "tiny", "prompt": []}, 422, "prompt"),
        ("/v1/completions", {"model": "tiny", "prompt": ["a", "b", "c"], "n": 3}, 422, "limit is 8"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "temperature": 9}, 422, "temperature"),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, 422, "role"),
        ("/v1/embeddings", {"model": "prover", "input": "x"}, 400, "does not support encoding"),
    ],
)
async def test_openai_errors_have_openais_shape_and_the_contracts_status(path, body, status, fragment):
    app, _ = await make(args())
    response = await post_bytes(app, path, json.dumps(body))
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and fragment in error["message"]


async def test_ollama_errors_have_ollamas_shape_and_leancopilot_keeps_the_contracts():
    app, _ = await make(args())
    ollama = await post_bytes(app, "/api/generate", json.dumps({"model": "nope", "prompt": "x", "stream": False}))
    leancopilot = await post_bytes(app, "/generate", json.dumps({"input": "x", "name": "nope"}))
    assert ollama.status_code == leancopilot.status_code == 404
    assert set(ollama.json()) == {"error"} and set(leancopilot.json()) == {"detail"}


async def test_keys_are_read_from_bearer_or_x_api_key_and_an_empty_one_is_none():
    app, _ = await make(args(), gate=ApiKeyGate(["sk-1"], allow_networks=[]))
    body = json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 2})
    empty = await post_bytes(app, "/v1/completions", body, {"Authorization": "Bearer ", "x-api-key": ""})
    wrong = await post_bytes(app, "/v1/completions", body, {"Authorization": "Bearer sk-2"})
    bearer = await post_bytes(app, "/v1/completions", body, {"Authorization": "Bearer sk-1"})
    x_api_key = await post_bytes(app, "/v1/completions", body, {"Authorization": "Bearer ", "x-api-key": "sk-1"})
    assert (empty.status_code, wrong.status_code, bearer.status_code, x_api_key.status_code) == (401, 401, 200, 200)
    assert empty.json()["error"]["type"] == "authentication_error" and "API key is required" in empty.json()["error"]["message"]
    assert wrong.json()["error"]["code"] == "invalid_api_key"


async def test_a_stream_whose_engine_fails_before_any_text_gets_an_http_status():
    app, servers = await make(args())

    class Failing(FakeEngine):
        async def generate(self, prompt, sampling, request_id):
            raise ServiceUnavailableError("The model's engine stopped; its replica is being replaced.")

    servers["tiny"].completer.engine = Failing(servers["tiny"].config)
    response = await post_bytes(app, "/v1/completions", json.dumps({"model": "tiny", "prompt": "x", "stream": True}))
    # The engine fails before any text: still an HTTP status, in OpenAI's shape.
    assert response.status_code == 503 and "stopped" in response.json()["error"]["message"]


async def test_a_stream_that_fails_midway_ends_with_an_error_chunk_then_done():
    app, servers = await make(args())

    class HalfStream(FakeEngine):
        async def generate_stream(self, prompt, sampling, request_id):
            yield StreamChunk([CompletionDelta(0, "intro", 1)], prompt_tokens=1)
            raise ServiceUnavailableError("The model's engine stopped; its replica is being replaced.")

    servers["tiny"].completer.engine = HalfStream(servers["tiny"].config)
    response = await post_bytes(app, "/v1/completions", json.dumps({"model": "tiny", "prompt": "x", "stream": True}))
    assert response.status_code == 200  # sent with the first chunk
    events = sse_events(response.text)
    assert events[0]["choices"][0]["text"] == "intro"
    assert events[1]["error"]["type"] == "server_error" and "stopped" in events[1]["error"]["message"]


async def test_a_greedy_bundle_samples_one_candidate_whatever_n_asks():
    app, _ = await make(args({"temperature": 0.0}))
    body = llmlean_openai_body("tiny", llmlean_instruct_prompt(CONTEXT, STATE, ""), 4, 512)
    response = await post_bytes(app, "/v1/chat/completions", body)
    # More greedy samples would all be the same (and vLLM refuses them): one engine sample, one choice.
    assert [c["message"]["content"] for c in response.json()["choices"]] == ["test_0"]
