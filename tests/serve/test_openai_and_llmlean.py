"""End to end: the `openai` SDK, LLMLean's exact curl requests and `vllm bench serve` against a real Ray Serve
app with a real vLLM engine (a tiny random model), through the same bundle that answers /generate.

The bundle samples greedily (temperature 0), so the tactics LLMLean gets can be compared with /generate's for
the same state: tactic mode must run the bundle's own prompt on the state and prefix taken out of LLMLean's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import openai
import pytest
from serve_app import ENCODER_DIM
from support import (
    LEANCOPILOT_HEADERS,
    REPO_ROOT,
    lean_goals,
    leancopilot_bytes,
    llmlean_fewshot_prompts,
    llmlean_headers,
    llmlean_instruct_prompt,
    llmlean_keeps,
    llmlean_ollama_body,
    llmlean_openai_body,
    llmlean_split_tac,
)

from core.config import AppArgs

pytestmark = pytest.mark.serve

MODEL = "tiny-openai"
ALIAS = "tiny-openai-alias"
NO_ENCODER = "tiny-text-only"
CONTEXT = "import Mathlib\n\ntheorem add_zero' (n : ℕ) : n + 0 = n := by\n"


def app_args(tiny_llama, tiny_encoder) -> AppArgs:
    engine = {
        "dtype": "float32", "max_model_len": 4096, "kv_cache_memory_bytes": 128 << 20, "max_num_seqs": 32,
        "enforce_eager": True,
    }
    return AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": 60},
            "limits": {"max_tokens": 4096, "max_n": 8},
            "models": [
                {
                    "name": MODEL,
                    "aliases": [ALIAS],
                    "model": str(tiny_llama),
                    "prompt": {"template": "{state}:::"},
                    # Greedy: tactic mode and /generate must agree on the same state.
                    "sampling": {"n": 1, "temperature": 0.0, "max_tokens": 10, "stop": ["\n"]},
                    "engine_args": engine,
                    "encoder": {"model": str(tiny_encoder)},
                    "deployment": {"num_cpus": 0.5},
                }
            ],
        }
    )


APP = "openai"


@pytest.fixture(scope="module")
def openai_app(shared_serve, tiny_llama, tiny_encoder) -> str:
    from deployments.app import build_app

    return shared_serve.deploy(APP, "/openai", lambda: build_app(app_args(tiny_llama, tiny_encoder)))


@pytest.fixture(scope="module")
def app(openai_app) -> str:
    return openai_app


@pytest.fixture(scope="module")
def sdk(app):
    # No retries: a test of an error status must see it once.
    return openai.OpenAI(base_url=f"{app}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def http(app):
    with httpx.Client(base_url=app, timeout=120) as client:
        yield client


def generate(http: httpx.Client, state: str, prefix: str = "") -> list[str]:
    body = leancopilot_bytes({"input": state, "name": MODEL, "prefix": prefix})
    response = http.post("/generate", content=body, headers=LEANCOPILOT_HEADERS)
    assert response.status_code == 200, response.text
    return [c["output"] for c in response.json()["outputs"]]


def as_llmlean_sees(tactics: list[str], prefix: str) -> list[str]:
    """LLMLean trims the continuation and puts the prefix back (`pfx ++ splitTac`): whitespace right after the
    prefix is lost, whatever the server sends."""
    return [prefix + t[len(prefix):].strip() for t in tactics if llmlean_keeps(t)]


def curl(url: str, body: str) -> dict:
    """LLMLean's `post`: curl with its headers and its `Json.pretty` body; it parses stdout, whatever the status."""
    args = ["curl", "-s", "-X", "POST", url]
    for header in llmlean_headers(""):
        args += ["-H", header]
    out = subprocess.run([*args, "-d", body], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


# -- the openai SDK ------------------------------------------------------------------------------------------


def test_models_lists_every_name_and_alias(sdk):
    listed = {m.id: m for m in sdk.models.list()}
    assert set(listed) == {MODEL, ALIAS}
    assert listed[ALIAS].owned_by == "leanserve"


def test_completions_continue_the_prompt_as_it_is_with_logprobs_and_usage(sdk):
    prompt = lean_goals(1)[0]
    answer = sdk.completions.create(model=MODEL, prompt=prompt, n=3, max_tokens=6, temperature=1.0, logprobs=2,
                                    extra_body={"ignore_eos": True})
    assert answer.object == "text_completion" and answer.model == MODEL and answer.id.startswith("cmpl-")
    assert [c.index for c in answer.choices] == [0, 1, 2]
    for choice in answer.choices:
        # The sampled tokens spell the text (a byte-level token that splits a character decodes to nothing,
        # where the text shows U+FFFD), each with at most 2 alternatives, and every log-prob is <= 0.
        assert "".join(choice.logprobs.tokens).replace("\ufffd", "") == choice.text.replace("\ufffd", "")
        assert len(choice.logprobs.tokens) == 6 and all(lp <= 0 for lp in choice.logprobs.token_logprobs)
        assert all(len(top) <= 2 for top in choice.logprobs.top_logprobs)
        assert choice.finish_reason == "length"
    assert answer.usage.completion_tokens == 18 and answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 18


def test_a_list_of_prompts_gets_n_choices_each_in_order(sdk):
    states = lean_goals(2)
    answer = sdk.completions.create(model=ALIAS, prompt=states, n=2, max_tokens=3, temperature=1.0)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    # Greedy: each prompt's choice matches the prompt sent alone, in order.
    greedy = sdk.completions.create(model=ALIAS, prompt=states, max_tokens=3, temperature=0.0)
    alone = [sdk.completions.create(model=MODEL, prompt=s, max_tokens=3, temperature=0.0).choices[0].text for s in states]
    assert [c.text for c in greedy.choices] == alone
    # vLLM refuses several greedy choices; the client gets the reason as a 422.
    with pytest.raises(openai.UnprocessableEntityError) as greedy_n:
        sdk.completions.create(model=MODEL, prompt="x", n=2, max_tokens=3, temperature=0.0)
    assert "greedy" in greedy_n.value.body["message"]


def test_streamed_completion_spells_the_same_text_and_reports_usage(sdk):
    prompt = lean_goals(3)[2]
    whole = sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0.0,
                                   extra_body={"ignore_eos": True})
    chunks = list(sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0.0, stream=True,
                                         stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 1, "streamed in several chunks"
    assert "".join(texts) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_async_chat_uses_the_models_chat_template(app):
    async def ask():
        client = openai.AsyncOpenAI(base_url=f"{app}/v1", api_key="unused", max_retries=0)
        async with client:
            messages = [{"role": "system", "content": "Answer with one Lean tactic."}, {"role": "user", "content": "⊢ 1 + 1 = 2"}]
            both = await asyncio.gather(
                client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0.0),
                client.completions.create(
                    model=MODEL, max_tokens=5, temperature=0.0,
                    # The tiny tokenizer's ChatML template, rendered by hand: the chat route must send exactly this.
                    prompt="<|im_start|>system\nAnswer with one Lean tactic.<|im_end|>\n"
                    "<|im_start|>user\n⊢ 1 + 1 = 2<|im_end|>\n<|im_start|>assistant\n",
                ),
            )
            stream = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0.0,
                                                          stream=True)
            streamed = [c async for c in stream]
            return both, streamed

    (chat, raw), streamed = asyncio.run(ask())
    assert chat.id.startswith("chatcmpl-") and chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == raw.choices[0].text
    assert chat.usage.completion_tokens == raw.usage.completion_tokens
    assert streamed[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == raw.choices[0].text


def test_embeddings_are_the_encode_routes_vectors(sdk, http):
    texts = ["theorem foo : 1 + 1 = 2", "⊢ n + 0 = n"]
    answer = sdk.embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64 and decodes it
    as_floats = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in answer.data] == [0, 1]
    for floats, decoded in zip(as_floats.data, answer.data, strict=True):
        assert floats.embedding == pytest.approx(decoded.embedding, abs=1e-6)
    for text, datum in zip(texts, answer.data, strict=True):
        encoded = http.post("/encode", content=leancopilot_bytes({"input": text, "name": MODEL}), headers=LEANCOPILOT_HEADERS)
        assert len(datum.embedding) == ENCODER_DIM
        assert datum.embedding == pytest.approx(encoded.json()["outputs"], abs=1e-5)


def test_errors_come_in_openais_shape_with_the_contracts_statuses(sdk, http):
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    error = unknown.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model" and MODEL in error["message"]
    with pytest.raises(openai.UnprocessableEntityError) as too_many:
        sdk.completions.create(model=MODEL, prompt="x", n=9, max_tokens=2)
    assert too_many.value.body["type"] == "invalid_request_error" and "limit is 8" in too_many.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as malformed:
        sdk.chat.completions.create(model=MODEL, messages=[], max_tokens=2)
    assert "messages" in malformed.value.body["message"]
    with pytest.raises(openai.APIStatusError) as too_long:  # beyond the model's 4096-token context
        sdk.completions.create(model=MODEL, prompt="a " * 5000, max_tokens=2, stream=True)
    assert too_long.value.status_code == 413 and too_long.value.body["code"] == "input_too_large"
    # The LeanCopilot routes keep the contract's shape.
    leancopilot = http.post("/generate", json={"input": "x", "name": "no-such-model"})
    assert leancopilot.status_code == 404 and set(leancopilot.json()) == {"detail"}


def test_a_client_leaving_a_stream_aborts_its_engine_request(app, sdk):
    from ray import serve

    bundle = serve.get_deployment_handle(f"bundle-{MODEL}", app_name=APP)
    stream = sdk.completions.create(model=MODEL, prompt="x", max_tokens=3000, temperature=1.0, stream=True,
                                    extra_body={"ignore_eos": True})
    first = next(iter(stream))
    assert first.choices[0].text is not None
    assert bundle.num_unfinished_requests.remote().result() == 1
    stream.close()
    deadline = time.monotonic() + 30
    while bundle.num_unfinished_requests.remote().result() != 0:
        assert time.monotonic() < deadline, "the engine request outlived its client"
        time.sleep(0.2)


# -- LLMLean, with the bytes its Lean code sends -------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "rw"])
def test_llmlean_openai_instruction_prompt_gets_generates_tactics(app, http, prefix):
    state = lean_goals(4)[3]
    expected = generate(http, state, prefix)
    assert expected, "the chosen state gives /generate a tactic"
    answer = curl(f"{app}/v1/chat/completions", llmlean_openai_body(MODEL, llmlean_instruct_prompt(CONTEXT, state, prefix), 4, 512))
    assert isinstance(answer["id"], str)  # LLMLean's OpenAIResponse requires it
    tactics = [prefix + llmlean_split_tac(c["message"]["content"]) for c in answer["choices"]]
    assert all(c["message"]["role"] == "assistant" for c in answer["choices"])
    assert tactics == as_llmlean_sees(expected, prefix)


@pytest.mark.parametrize("prefix", ["", "rw"])
def test_llmlean_ollama_samples_one_by_one_and_gets_generates_tactics(app, http, prefix):
    state = lean_goals(4)[3]
    expected = set(as_llmlean_sees(generate(http, state, prefix), prefix))
    assert expected
    prompts = llmlean_fewshot_prompts(CONTEXT, state, prefix)
    got, plain = set(), []
    for prompt in prompts:
        for i in range(4):  # tacticGenerationOllama: numSamples requests, the second at temperature 0
            answer = curl(f"{app}/api/generate", llmlean_ollama_body(MODEL, prompt, 0.0 if i == 1 else 0.7, 128))
            assert answer["done"] is True
            if prompt == prompts[0]:
                got.add(prefix + llmlean_split_tac(answer["response"]))
            else:
                plain.append(answer["response"])
    assert got == expected
    # Without a prefix FewShot's second prompt is the file itself: a plain completion, still answered.
    assert (len(plain) == 4 and all(isinstance(p, str) for p in plain)) if not prefix else plain == []


def test_llmlean_ollama_instruction_prompt_with_an_empty_key(app, http):
    state = lean_goals(5)[4]
    answer = curl(f"{app}/api/generate", llmlean_ollama_body(MODEL, llmlean_instruct_prompt(CONTEXT, state, ""), 0.7, 128))
    assert {"model", "response", "done"} <= set(answer)  # Ollama's shape
    assert llmlean_split_tac(answer["response"]) in as_llmlean_sees(generate(http, state), "")
    tags = http.get("/api/tags").json()["models"]
    assert {t["name"] for t in tags} == {MODEL, ALIAS}


# -- vLLM's own benchmark client -----------------------------------------------------------------------------


def test_vllm_bench_serve_runs_against_v1_completions(app, tiny_llama, tmp_path):
    dataset = tmp_path / "states.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": s}) + "\n" for s in lean_goals(6)), encoding="utf-8")
    script = (
        "import argparse, sys\n"
        "from vllm.benchmarks.serve import add_cli_args, main\n"
        "parser = argparse.ArgumentParser()\nadd_cli_args(parser)\n"
        "main(parser.parse_args(sys.argv[1:]))\n"
    )
    args = [
        "--backend", "openai", "--base-url", app, "--endpoint", "/v1/completions", "--model", MODEL,
        "--tokenizer", str(tiny_llama), "--dataset-name", "custom", "--dataset-path", str(dataset),
        "--custom-output-len", "4", "--skip-chat-template", "--num-prompts", "6", "--ignore-eos",
        "--save-result", "--result-dir", str(tmp_path), "--result-filename", "bench.json", "--disable-tqdm",
    ]
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (result["completed"], result["failed"]) == (6, 0)
    assert result["total_output_tokens"] == 24


def test_the_docs_sdk_example_runs(app):
    """docs/clients.md's OpenAI SDK snippet, as a user copies it, against this app."""
    text = (REPO_ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("http://localhost:23337", app).replace('model="default"', f'model="{MODEL}"')
    printed = []
    exec(compile(snippet, "docs/clients.md", "exec"), {"print": printed.append})
    assert len(printed) == 2 and all(isinstance(p, str) for p in printed)
