"""The ingress's HTTP app and service without Ray: real routes, middlewares, service, bundle and pipeline, over
injected handles and a fake engine. The real-engine path is proven by tests/serve/; this is its fast twin."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import httpx
import pytest
from fakes import FakeEngine
from support import LEANCOPILOT_HEADERS, leancopilot_bytes

from core.config import AppArgs, SecuritySettings
from deployments.bundle import BundleServer
from deployments.http_app import build_http_app
from deployments.service import TacticService
from logic.auth import ApiKeyGate

TIMEOUT_S = 300.0


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Call:
    """What a DeploymentHandle's `.remote()` returns: awaitable, and cancellable."""

    def __init__(self, coro):
        self.task = asyncio.ensure_future(coro)

    def __await__(self):
        return self.task.__await__()

    def cancel(self):
        self.task.cancel()


class Handle:
    """`handle.method.remote(*args)` calls `target.method(*args)` in this event loop."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, method):
        return SimpleNamespace(remote=lambda *args: Call(getattr(self._target, method)(*args)))


class Scorer:
    """A LeanProgress stand-in: predicts len(tactic) steps, or never answers while `hang` is set."""

    def __init__(self):
        self.hang = False
        self.calls = 0
        self.cancelled = 0

    async def score(self, request_id, items):
        self.calls += 1
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return [float(len(item.tactic)) for item in items]

    async def health(self):
        return {"status": "ok"}


def app_args(**overrides) -> AppArgs:
    return AppArgs.model_validate(
        {
            "ingress": {"request_timeout_s": TIMEOUT_S},
            "models": [
                {"name": "tiny", "model": "fake", "prompt": {"template": "{state}:::"}, "sampling": {"n": 3}},
                {"name": "retriever", "encoder": {"model": "fake-encoder"}},
            ],
            "scorers": [{"name": "progress", "checkpoint": "/fake"}],
            **overrides,
        }
    )


class LocalBundleServer(BundleServer):
    """The real bundle class, built in this event loop instead of a Serve replica."""

    def __del__(self):  # Serve awaits the real (async) one at shutdown; a fake engine has nothing to stop
        pass


async def bundle_server(config, engine_factory=FakeEngine) -> BundleServer:
    server = LocalBundleServer.__new__(LocalBundleServer)
    await server.__init__(config, engine_factory, encoder_factory=lambda _: SimpleNamespace())
    return server


async def make_app(args: AppArgs, clock: FakeClock, scorer: Scorer, engine_factory=FakeEngine, gate=None):
    bundles = {b.name: Handle(await bundle_server(b, engine_factory)) for b in args.models}
    service = TacticService(args, bundles, {"progress": Handle(scorer)}, clock=clock)
    return build_http_app(service, gate)


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://leanserve")


async def post(app, path: str, payload: dict, **kwargs) -> httpx.Response:
    async with client(app) as http:
        headers = {**LEANCOPILOT_HEADERS, **kwargs.pop("headers", {})}
        return await http.post(path, content=leancopilot_bytes(payload), headers=headers, **kwargs)


async def test_generate_goes_through_service_bundle_and_pipeline():
    app = await make_app(app_args(), FakeClock(), Scorer())
    response = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": "ex"})
    assert response.status_code == 200, response.text
    # The fake engine continues with " test_i\nignored" at mean log-prob -(i+1)/4: the bundle cuts each to one
    # line after the prefix, and ranks them best first.
    assert response.json() == {
        "outputs": [
            {"output": f"ex test_{i}", "score": pytest.approx(math.exp(-(i + 1) / 4)), "model_score": None,
             "steps_remaining": None, "reward": None}
            for i in range(3)
        ]
    }


async def test_leancopilot_json_pretty_bytes_are_served():
    # Exactly what LeanCopilot's `Json.pretty` writes, byte for byte, as a fixture of its own.
    body = b'{"input": "\xe2\x8a\xa2 True", "name": "tiny", "prefix": ""}'
    assert leancopilot_bytes({"prefix": "", "name": "tiny", "input": "⊢ True"}) == body
    app = await make_app(app_args(), FakeClock(), Scorer())
    async with client(app) as http:
        response = await http.post("/generate", content=body, headers=LEANCOPILOT_HEADERS)
    assert response.status_code == 200
    assert [o["output"] for o in response.json()["outputs"]] == ["test_0", "test_1", "test_2"]


async def test_use_reward_ranks_by_the_scorer():
    app = await make_app(app_args(), FakeClock(), Scorer())
    response = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": "", "use_reward": True})
    outputs = response.json()["outputs"]
    assert [o["output"] for o in outputs] == ["test_0", "test_1", "test_2"]
    assert [o["steps_remaining"] for o in outputs] == [6.0, 6.0, 6.0]
    assert all(o["score"] == o["reward"] == -6.0 for o in outputs)


class SlowEngine(FakeEngine):
    """An engine call that uses up all but 50 ms of the request's deadline (on the test's clock)."""

    clock: FakeClock

    async def generate(self, prompt, sampling, request_id):
        output = await super().generate(prompt, sampling, request_id)
        if not request_id.startswith("warmup"):
            self.clock.now += TIMEOUT_S - 0.05
        return output


@pytest.mark.timeout(30)  # a scorer hop with its own full budget would wait 300 s: the test fails by timing out
async def test_use_reward_ends_at_its_deadline_with_504_scorer_included():
    clock, scorer = FakeClock(), Scorer()
    scorer.hang = True
    SlowEngine.clock = clock
    app = await make_app(app_args(), clock, scorer, engine_factory=SlowEngine)
    response = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": "", "use_reward": True})
    assert response.status_code == 504
    assert response.json() == {"detail": "Generation timed out."}
    await asyncio.sleep(0)  # let the cancelled scorer call run its handler
    assert (scorer.calls, scorer.cancelled) == (1, 1), "the scorer call was not cut at the deadline"


async def test_errors_keep_the_contracts_shape():
    app = await make_app(app_args(), FakeClock(), Scorer())
    unknown = await post(app, "/generate", {"input": "⊢ True", "name": "nope", "prefix": ""})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Unknown model 'nope'. Known models: retriever, tiny."})
    wrong_route = await post(app, "/generate", {"input": "⊢ True", "name": "retriever", "prefix": ""})
    assert wrong_route.json() == {"detail": "Model 'retriever' does not support generation requests."}
    malformed = await post(app, "/generate", {"name": "tiny"})
    assert malformed.status_code == 422 and malformed.json()["detail"].startswith("Malformed request: input:")


async def test_with_keys_loopback_needs_one_too_and_without_keys_strangers_are_refused():
    args = app_args()
    body = leancopilot_bytes({"input": "⊢ True", "name": "tiny", "prefix": ""})
    keyed = ApiKeyGate.from_settings(SecuritySettings(api_keys_env="KEYS"), environ={"KEYS": "k-1"})
    closed = ApiKeyGate.from_settings(args.security, environ={})  # the default: no keys configured
    answers = {}
    for name, gate, host in [
        ("keyed-loopback", keyed, "127.0.0.1"),  # a same-host forwarder makes any stranger look like this
        ("closed-stranger", closed, "192.0.2.7"),
        ("closed-loopback", closed, "127.0.0.1"),
    ]:
        app = await make_app(args, FakeClock(), Scorer(), gate=gate)
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://leanserve") as http:
            answers[name] = await http.post("/generate", content=body, headers=LEANCOPILOT_HEADERS)
    assert answers["keyed-loopback"].status_code == 401
    assert answers["keyed-loopback"].json() == {"detail": "An API key is required: send `Authorization: Bearer <key>`."}
    assert answers["closed-stranger"].status_code == 401
    assert "own machine only" in answers["closed-stranger"].json()["detail"]
    assert answers["closed-loopback"].status_code == 200 and answers["closed-loopback"].json()["outputs"]


async def test_the_key_gate_answers_before_the_body_is_parsed():
    gate = ApiKeyGate(["k-1"])  # loopback too must send the key
    app = await make_app(app_args(), FakeClock(), Scorer(), gate=gate)
    async with client(app) as http:
        stranger = await http.post("/generate", content=b"{not json", headers=LEANCOPILOT_HEADERS)
        keyed = await http.post(
            "/generate", content=b"{not json", headers={**LEANCOPILOT_HEADERS, "Authorization": "Bearer k-1"}
        )
        health = await http.get("/health")
    assert (stranger.status_code, stranger.headers["www-authenticate"]) == (401, "Bearer")
    assert keyed.status_code == 422
    assert health.status_code == 200 and health.json()["scorers"] == {"progress": "ok"}


async def test_models_lists_every_bundle_with_its_routes():
    app = await make_app(app_args(), FakeClock(), Scorer())
    async with client(app) as http:
        listing = (await http.get("/models")).json()
    assert listing == {
        "models": [
            {"name": "tiny", "aliases": [], "routes": ["generate", "complete"]},
            {"name": "retriever", "aliases": [], "routes": ["encode"]},
        ]
    }


class RecordingEngine(FakeEngine):
    """Records each engine request's priority; a state that says `hang` never finishes (until cancelled)."""

    priorities: list[int] = []
    cancelled = 0

    async def generate(self, prompt, sampling, request_id):
        if not request_id.startswith("warmup"):
            RecordingEngine.priorities.append(sampling.priority)
        if "hang" in prompt:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                RecordingEngine.cancelled += 1
                raise
        return await super().generate(prompt, sampling, request_id)


async def test_generate_batch_answers_each_item_in_order_with_its_own_error():
    args = app_args(limits={"max_input_chars": 100, "max_batch_items": 4})
    app = await make_app(args, FakeClock(), Scorer())
    items = [{"input": "⊢ a", "prefix": "intro"}, {"input": "⊢ " + "x" * 200}, {"input": "⊢ b", "prefix": "simp"}]
    response = await post(app, "/generate_batch", {"name": "tiny", "items": items, "n": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [[o["output"] for o in r["outputs"]] for r in (results[0], results[2])] == [
        ["intro test_0", "intro test_1"], ["simp test_0", "simp test_1"]
    ]
    assert results[1] == {"error": {"status": 413, "detail": "input is 202 characters; the limit is 100"}}
    too_many = await post(app, "/generate_batch", {"name": "tiny", "items": [{"input": "⊢ a"}] * 5})
    assert too_many.status_code == 413 and too_many.json() == {"detail": "items has 5 entries; the limit is 4"}
    unknown = await post(app, "/generate_batch", {"name": "nope", "items": [{"input": "⊢ a"}]})
    assert unknown.json()["results"][0]["error"]["status"] == 404


@pytest.mark.timeout(30)
async def test_a_batch_item_past_the_deadline_gets_504_in_its_slot_and_its_engine_call_is_cancelled():
    RecordingEngine.cancelled = 0
    args = app_args(ingress={"request_timeout_s": 0.5})
    app = await make_app(args, FakeClock(), Scorer(), engine_factory=RecordingEngine)
    app.state.service.clock = __import__("time").monotonic  # a real clock: the deadline must pass for real
    items = [{"input": "⊢ a"}, {"input": "⊢ hang"}, {"input": "⊢ b"}]
    response = await post(app, "/generate_batch", {"name": "tiny", "items": items})
    results = response.json()["results"]
    assert "outputs" in results[0] and "outputs" in results[2]
    assert results[1] == {"error": {"status": 504, "detail": "Generation timed out."}}
    await asyncio.sleep(0)
    assert RecordingEngine.cancelled == 1


async def test_the_priority_class_reaches_the_engine():
    RecordingEngine.priorities = []
    gate = ApiKeyGate({"editor-key": "interactive", "search-key": "batch"})
    app = await make_app(app_args(), FakeClock(), Scorer(), engine_factory=RecordingEngine, gate=gate)
    body = {"input": "⊢ True", "name": "tiny", "prefix": ""}
    editor = {"Authorization": "Bearer editor-key"}
    assert (await post(app, "/generate", body, headers=editor)).status_code == 200
    await post(app, "/generate", {**body, "input": "⊢ 1"}, headers={**editor, "X-Priority": "batch"})
    search = {"Authorization": "Bearer search-key", "X-Priority": "interactive"}
    await post(app, "/generate", {**body, "input": "⊢ 2"}, headers=search)
    await post(app, "/generate_batch", {"name": "tiny", "items": [{"input": "⊢ 3"}]}, headers=editor)
    assert RecordingEngine.priorities == [0, 1, 1, 1]
    bad = await post(app, "/generate", body, headers={**editor, "X-Priority": "now!"})
    assert bad.status_code == 422 and "X-Priority" in bad.json()["detail"]


async def test_the_answer_names_its_replica_and_prompt_tokens():
    app = await make_app(app_args(), FakeClock(), Scorer())
    response = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": ""})
    assert response.headers["X-LeanServe-Replica"] == "local"
    assert int(response.headers["X-LeanServe-Prompt-Tokens"]) == len("⊢ True:::")
    assert response.headers["X-LeanServe-Cached-Tokens"] == "0"


async def two_sequence_app():
    """A bundle admitting two sequences per class (one per batch, one batch queued), on RecordingEngine."""
    RecordingEngine.cancelled, RecordingEngine.priorities = 0, []
    bundle = {"name": "tiny", "model": "fake", "prompt": {"template": "{state}:::"}, "sampling": {"n": 1},
              "engine_args": {"max_num_seqs": 1}, "deployment": {"admission": {"queued_batches": 1}}}
    args = AppArgs.model_validate({"ingress": {"request_timeout_s": TIMEOUT_S}, "models": [bundle]})
    return await make_app(args, FakeClock(), Scorer(), engine_factory=RecordingEngine)


async def test_beyond_the_admission_bound_the_answer_is_503_with_retry_after():
    app = await two_sequence_app()
    async with client(app) as http:
        hanging = [
            asyncio.create_task(http.post("/generate", json={"input": f"⊢ hang {i}", "name": "tiny"}))
            for i in range(2)
        ]
        while len(RecordingEngine.priorities) < 2:  # both in the engine
            await asyncio.sleep(0)
        refused = await http.post("/generate", json={"input": "⊢ one more", "name": "tiny"})
        editor_lane_full = await http.post("/generate", json={"input": "⊢ search", "name": "tiny"},
                                           headers={"X-Priority": "batch"})
        for task in hanging:
            task.cancel()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "bound of 2" in refused.json()["detail"]
    assert editor_lane_full.status_code == 200  # the other class has its own bound


async def test_raw_completions_pass_the_same_admission_as_tactic_requests():
    app = await two_sequence_app()
    async with client(app) as http:
        # One /generate and one /v1 completion in the engine fill the class's two sequences.
        hanging = [
            asyncio.create_task(http.post("/generate", json={"input": "⊢ hang", "name": "tiny"})),
            asyncio.create_task(http.post("/v1/completions", json={"model": "tiny", "prompt": "hang", "max_tokens": 4})),
        ]
        while len(RecordingEngine.priorities) < 2:  # both in the engine
            await asyncio.sleep(0)
        raw = await http.post("/v1/completions", json={"model": "tiny", "prompt": "one more", "max_tokens": 4})
        tactic = await http.post("/generate", json={"input": "⊢ one more", "name": "tiny"})
        for task in hanging:
            task.cancel()
    assert raw.status_code == 503 and raw.headers["Retry-After"] == "5"
    assert raw.json()["error"]["type"] == "server_error" and "bound of 2" in raw.json()["error"]["message"]
    assert tactic.status_code == 503 and "bound of 2" in tactic.json()["detail"]


async def test_no_route_runs_anything_in_fastapis_thread_pool(monkeypatch):
    # FastAPI runs a plain `def` dependency or endpoint in its thread pool: a thread hop per request each.
    import fastapi.dependencies.utils
    import fastapi.routing

    hopped = []
    for module in (fastapi.dependencies.utils, fastapi.routing):
        original = module.run_in_threadpool

        async def recording(func, *args, _original=original, **kwargs):
            hopped.append(getattr(func, "__name__", repr(func)))
            return await _original(func, *args, **kwargs)

        monkeypatch.setattr(module, "run_in_threadpool", recording)
    app = await make_app(app_args(), FakeClock(), Scorer())
    async with client(app) as http:
        answers = [
            await http.post("/generate", json={"input": "⊢ True", "name": "tiny"}),
            await http.post("/generate_batch", json={"name": "tiny", "items": [{"input": "⊢ True"}]}),
            await http.post("/v1/completions", json={"model": "tiny", "prompt": "⊢ True", "max_tokens": 4}),
            await http.post("/api/generate", json={"model": "tiny", "prompt": "⊢ True", "stream": False}),
        ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert answers[0].json()["outputs"][0]["output"] == "test_0"
    assert hopped == []
