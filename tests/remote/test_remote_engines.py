"""The Anthropic, Gemini and OpenAI-compatible engines against local servers speaking the real protocols:
what they send, n candidates, scores, bounded retries with backoff on 429/5xx, timeouts, missing keys."""

from __future__ import annotations

import math

import pytest

from core.config import BundleConfig
from core.errors import EngineFailureError, GenerationTimeoutError, ServiceUnavailableError
from core.payloads import SamplingRequest
from logic.tactics import tactics_from_chat_answers
from models.engine_factory import make_engine

KEY_ENV = "LEANSERVE_TEST_STANDIN_KEY"
UNSET_ENV = "LEANSERVE_TEST_NEVER_SET_KEY"
MESSAGES = [{"role": "system", "content": "Answer with one Lean 4 tactic."},
            {"role": "user", "content": "x : ℕ\n⊢ x + 0 = x"}]
SAMPLING = SamplingRequest(n=3, temperature=0.6, top_p=0.9, max_tokens=64)


def bundle(engine: str, url: str, key_env: str = KEY_ENV, **remote) -> BundleConfig:
    model = {"anthropic": "claude-test", "gemini": "gemini-test", "openai": "org/model:provider"}[engine]
    settings = {"base_url": url + ("/v1" if engine == "openai" else ""), "api_key_env": key_env,
                "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_retries": 2, **remote}
    return BundleConfig(name=f"{engine}-b", engine=engine, model=model, prompt={"chat": True},
                        sampling={"stop": []}, remote=settings)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    monkeypatch.delenv(UNSET_ENV, raising=False)


async def generate(engine, sampling=SAMPLING):
    await engine.start()
    try:
        return await engine.generate(MESSAGES, sampling, "req-1")
    finally:
        engine.shutdown()


async def test_anthropic_sends_the_messages_api_and_makes_n_parallel_calls(api):
    output = await generate(make_engine(bundle("anthropic", api.url)))
    assert len(output.completions) == 3
    assert len(api.state.requests) == 3  # the Messages API has no `n`
    sent = api.state.requests[0]
    assert sent["path"] == "/v1/messages"
    headers = sent["headers"]
    assert headers.get("x-api-key") == "sk-test-123" or headers.get("authorization") == "Bearer sk-test-123"
    assert "anthropic-version" in sent["headers"]
    body = sent["body"]
    assert body["system"] == "Answer with one Lean 4 tactic."
    assert body["messages"] == [{"role": "user", "content": "x : ℕ\n⊢ x + 0 = x"}]
    assert body["model"] == "claude-test" and body["max_tokens"] == 64
    assert "temperature" not in body and "top_p" not in body  # the current Messages API takes neither
    # No log-probabilities: the ingress scores by agreement and rank.
    assert all(c.cumulative_logprob is None for c in output.completions)
    tactics = tactics_from_chat_answers(output.completions)
    assert {t.output for t in tactics} <= {"simp [clean_up]", "by_cases h : x = 0", "linarith", "nlinarith [sq_nonneg x]"}
    assert all(0.0 < t.score <= 0.5 for t in tactics)


async def test_anthropic_sends_sampling_when_asked(api):
    await generate(make_engine(bundle("anthropic", api.url, send_sampling=True)), SamplingRequest(1, 0.6, 0.9, 64))
    body = api.state.requests[0]["body"]
    assert body["temperature"] == 0.6 and body["top_p"] == 0.9


async def test_anthropic_retries_a_429_then_succeeds(api):
    api.state.fail_next(429, count=1)
    output = await generate(make_engine(bundle("anthropic", api.url)), SamplingRequest(1, 0.6, 0.9, 64))
    assert len(output.completions) == 1
    assert len(api.state.requests) == 2


async def test_anthropic_gives_up_after_the_configured_retries(api):
    api.state.fail_next(503, count=10)
    engine = make_engine(bundle("anthropic", api.url, max_retries=2))
    with pytest.raises(ServiceUnavailableError, match="unavailable or rate-limited"):
        await generate(engine, SamplingRequest(1, 0.6, 0.9, 64))
    assert len(api.state.requests) == 3  # 1 + max_retries, never more


async def test_client_errors_are_not_retried(api):
    api.state.fail_next(400, count=1)
    with pytest.raises(EngineFailureError):
        await generate(make_engine(bundle("anthropic", api.url)), SamplingRequest(1, 0.6, 0.9, 64))
    assert len(api.state.requests) == 1


@pytest.mark.parametrize("engine_kind", ["anthropic", "gemini", "openai"])
async def test_missing_key_makes_the_bundle_not_ready_without_calling(api, engine_kind):
    engine = make_engine(bundle(engine_kind, api.url, key_env=UNSET_ENV))
    await engine.start()  # deploys fine
    await engine.check_health()  # and never fails Serve's health check (that would restart it in a loop)
    assert UNSET_ENV in engine.not_ready_reason and "not ready" in engine.not_ready_reason
    with pytest.raises(ServiceUnavailableError, match=UNSET_ENV):
        await engine.generate(MESSAGES, SAMPLING, "req-1")
    assert api.state.requests == []


async def test_gemini_asks_for_n_candidates_in_one_call_and_scores_by_logprobs(api):
    output = await generate(make_engine(bundle("gemini", api.url)))
    assert len(api.state.requests) == 1
    sent = api.state.requests[0]
    assert sent["path"] in ("/v1/models/gemini-test:generateContent", "/v1beta/models/gemini-test:generateContent")
    assert sent["headers"]["x-goog-api-key"] == "sk-test-123"
    config = sent["body"]["generationConfig"]
    assert config["candidateCount"] == 3 and config["maxOutputTokens"] == 64 and config["topP"] == 0.9
    assert sent["body"]["systemInstruction"]["parts"][0]["text"] == "Answer with one Lean 4 tactic."
    assert [c["role"] for c in sent["body"]["contents"]] == ["user"]
    scores = [c.cumulative_logprob / c.num_tokens for c in output.completions]
    assert scores == pytest.approx([-0.25, -0.5, -0.75])
    tactics = tactics_from_chat_answers(output.completions)
    assert tactics[0].score == pytest.approx(math.exp(-0.25))


async def test_gemini_retries_a_429_then_succeeds(api):
    api.state.fail_next(429, count=2)
    output = await generate(make_engine(bundle("gemini", api.url)))
    assert len(output.completions) == 3
    assert len(api.state.requests) == 3


async def test_gemini_parallel_calls_when_n_per_call_is_off(api):
    output = await generate(make_engine(bundle("gemini", api.url, n_per_call=False)))
    assert len(output.completions) == 3
    assert [r["body"]["generationConfig"]["candidateCount"] for r in api.state.requests] == [1, 1, 1]


async def test_openai_compatible_sends_n_logprobs_and_extra_body(api):
    engine = make_engine(bundle("openai", api.url, extra_body={"top_k": 20}))
    output = await generate(engine)
    sent = api.state.requests[0]
    assert sent["headers"]["authorization"] == "Bearer sk-test-123"
    body = sent["body"]
    assert body["n"] == 3 and body["logprobs"] is True and body["top_k"] == 20
    assert body["model"] == "org/model:provider" and "stop" not in body
    assert body["temperature"] == 0.6 and body["top_p"] == 0.9
    assert [c.cumulative_logprob for c in output.completions] == pytest.approx([-0.1, -0.2, -0.3])


async def test_openai_compatible_retries_a_5xx_then_succeeds(api):
    api.state.fail_next(502, count=1)
    output = await generate(make_engine(bundle("openai", api.url)))
    assert len(output.completions) == 3
    assert len(api.state.requests) == 2


async def test_slow_api_is_a_timeout(api):
    api.state.delay_s = 1.0
    engine = make_engine(bundle("openai", api.url, timeout_s=0.2, max_retries=1))
    with pytest.raises(GenerationTimeoutError):
        await generate(engine)
    assert len(api.state.requests) == 2  # the timeout is retried once, then reported


async def test_cancelling_generate_cancels_every_parallel_call(api):
    import asyncio

    api.state.delay_s = 5.0
    engine = make_engine(bundle("anthropic", api.url))
    await engine.start()
    task = asyncio.create_task(engine.generate(MESSAGES, SAMPLING, "req-cancel"))
    while len(api.state.requests) < 3:  # all three parallel calls are in flight
        await asyncio.sleep(0.02)
    assert await engine.num_unfinished_requests() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await engine.num_unfinished_requests() == 0
    engine.shutdown()


@pytest.mark.parametrize("engine_kind", ["anthropic", "gemini", "openai"])
async def test_a_wrong_key_is_refused_by_the_api_and_reported_as_such(api, monkeypatch, engine_kind):
    # The stand-ins check keys as the real APIs do: a wrong one gets the API's own refusal, not an answer.
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(ServiceUnavailableError, match="refused the API key"):
        await generate(make_engine(bundle(engine_kind, api.url)), SamplingRequest(1, 0.6, 0.9, 64))
    assert len(api.state.requests) == 1, "a refused key must not be retried on the owner's bill"


async def test_a_failing_api_is_called_within_the_retry_budget_not_max_retries_times_per_call(api):
    from loguru import logger

    api.state.fail_next(503, count=1000)
    budget = {"ratio": 0.5, "min_retries_per_s": 0, "max_saved": 2}  # no floor: the count is exact, not timed
    engine = make_engine(bundle("openai", api.url, max_retries=3, retry_budget=budget))
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{level} {message}")
    await engine.start()
    try:
        for _ in range(6):
            with pytest.raises(ServiceUnavailableError, match="unavailable or rate-limited"):
                await engine.generate(MESSAGES, SamplingRequest(1, 0.6, 0.9, 64), "req-flood")
        # 6 calls and 4 retries: the 2 saved, then one per two calls (the first call's deposit found the budget
        # full). Without the budget: 6 x (1 + max_retries) = 24 calls on the owner's bill.
        assert len(api.state.requests) == 6 + 4
        skipped = [line for line in lines if "retry budget spent" in line]
        assert skipped and all(line.startswith("INFO") and "(HTTP 503)" in line for line in skipped), lines
        assert not any("stand-in failure" in line for line in lines), "the API's own text stays out of INFO logs"
        # A spent budget gates retries only: once the API answers again, the next call is served.
        api.state.reset()
        output = await engine.generate(MESSAGES, SamplingRequest(1, 0.6, 0.9, 64), "req-after")
        assert len(output.completions) == 1 and len(api.state.requests) == 1
    finally:
        logger.remove(sink)
        engine.shutdown()
