"""The service's answers to hostile text, lost optional hops and callers that leave, over injected handles.

The same paths run on the real stack in tests/serve/test_hostile_and_chaos.py; these are the fast twins that
pin each rule: text checks at the edge (422/413 whatever engine), byte-aware limits for ByT5 bundles and
/encode, the scorer and dedup store failure policy (degrade, header, breaker), dedup scoped per caller and
stored as digests, and coalesced calls that outlive their first caller.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from support import LEANCOPILOT_HEADERS, leancopilot_bytes
from test_service import FakeClock, Handle, Scorer, app_args, bundle_server, client, make_app, post

from core.config import AppArgs
from deployments.dedup_store import DedupStore
from deployments.http_app import DEGRADED_HEADER, build_http_app
from deployments.service import TacticService
from logic.auth import ApiKeyGate

# -- text no tokenizer can take: 422, before any engine --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "payload"),
    [
        ("/generate", "input", {"name": "tiny", "prefix": ""}),
        ("/generate", "prefix", {"name": "tiny", "input": "⊢ True"}),
        ("/encode", "input", {"name": "retriever"}),
    ],
)
@pytest.mark.parametrize(("text", "problem"), [("⊢ \ud800 x", "lone surrogate"), ("⊢ a\x00b", "NUL")])
async def test_unencodable_text_is_422_not_500(path, field, payload, text, problem):
    app = await make_app(app_args(), FakeClock(), Scorer())
    # JSON's "\ud800" escape is how a lone surrogate arrives: the body itself is plain ASCII.
    body = json.dumps({**payload, field: text}, ensure_ascii=True).encode("ascii")
    async with client(app) as http:
        response = await http.post(path, content=body, headers=LEANCOPILOT_HEADERS)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field) and problem in response.json()["detail"]


# -- limits that count bytes where tokens are bytes ------------------------------------------------------------

BYT5 = {"name": "byt5", "engine": "transformers", "model": "fake", "prompt": {"template": "{state}"}}


def byte_args() -> AppArgs:
    return app_args(
        models=[
            {"name": "tiny", "model": "fake", "prompt": {"template": "{state}:::"}, "sampling": {"n": 3}},
            BYT5,
            {"name": "retriever", "encoder": {"model": "fake-encoder"}},
        ],
        limits={"max_input_chars": 100, "max_prefix_chars": 8},
    )


async def test_byt5_inputs_are_limited_in_utf8_bytes():
    app = await make_app(byte_args(), FakeClock(), Scorer())
    wide = "𝔸" * 26  # 26 characters, 104 UTF-8 bytes (and so 104 ByT5 tokens)
    byt5 = await post(app, "/generate", {"input": wide, "name": "byt5", "prefix": ""})
    assert byt5.status_code == 413
    assert byt5.json() == {"detail": "input is 104 UTF-8 bytes (its tokens are bytes); the limit is 100"}
    prefix = await post(app, "/generate", {"input": "⊢ x", "name": "byt5", "prefix": "ℝℝℝ"})  # 9 bytes
    assert prefix.status_code == 413 and prefix.json()["detail"].startswith("prefix is 9 UTF-8 bytes")
    fits = await post(app, "/generate", {"input": "𝔸" * 25, "name": "byt5", "prefix": ""})  # 100 bytes
    assert fits.status_code == 200, fits.text
    # A BPE bundle counts characters: the same 26 characters pass.
    vllm = await post(app, "/generate", {"input": wide, "name": "tiny", "prefix": ""})
    assert vllm.status_code == 200, vllm.text


async def test_encode_inputs_are_limited_in_utf8_bytes():
    app = await make_app(byte_args(), FakeClock(), Scorer())
    response = await post(app, "/encode", {"input": "𝔸" * 26, "name": "retriever"})
    assert (response.status_code, response.json()["detail"]) == (413, "input is 104 UTF-8 bytes (its tokens are bytes); the limit is 100")


# -- a lost scorer: unscored ranked candidates, said in a header, and no waiting once it is known lost ----------


class DeadScorer(Scorer):
    """A scorer whose replica is gone: every call fails as Ray's lost replica maps (503)."""

    async def score(self, request_id, items):
        self.calls += 1
        from core.errors import ServiceUnavailableError

        raise ServiceUnavailableError("The scorer's replica was lost.")


async def test_a_lost_scorer_degrades_use_reward_to_unscored_ranked_candidates():
    app = await make_app(app_args(), FakeClock(), DeadScorer())
    response = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": "", "use_reward": True})
    assert response.status_code == 200, response.text
    assert response.headers[DEGRADED_HEADER] == "scorer-unavailable"
    outputs = response.json()["outputs"]
    assert [o["output"] for o in outputs] == ["test_0", "test_1", "test_2"], "the generator's order"
    assert [o["steps_remaining"] for o in outputs] == [None] * 3 and [o["reward"] for o in outputs] == [None] * 3
    assert outputs[0]["score"] > outputs[1]["score"] > outputs[2]["score"] > 0
    plain = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": ""})
    assert DEGRADED_HEADER not in plain.headers


async def test_after_a_scorer_failure_requests_skip_it_until_the_cooldown_then_try_again():
    clock, scorer = FakeClock(), DeadScorer()
    app = await make_app(app_args(), clock, scorer)
    reward = {"input": "⊢ True", "name": "tiny", "prefix": "", "use_reward": True}
    for _ in range(3):
        assert (await post(app, "/generate", reward)).headers[DEGRADED_HEADER] == "scorer-unavailable"
    assert scorer.calls == 1, "calls after the first failure still went to the dead scorer"
    clock.now += 10.0  # ingress.breaker_cooldown_s
    await post(app, "/generate", reward)
    assert scorer.calls == 2


async def test_a_hanging_scorer_degrades_after_its_own_cap_not_the_whole_deadline():
    scorer = Scorer()
    scorer.hang = True
    args = app_args(ingress={"request_timeout_s": 300.0, "scorer_timeout_s": 0.05})
    app = await make_app(args, FakeClock(), scorer)
    response = await post(app, "/generate", {"input": "⊢ True", "name": "tiny", "prefix": "", "use_reward": True})
    assert response.status_code == 200 and response.headers[DEGRADED_HEADER] == "scorer-unavailable"
    await asyncio.sleep(0)
    assert scorer.cancelled == 1, "the abandoned scorer call was left running"


# -- dedup: per caller, digests only, and a lost store skipped fast ----------------------------------------------


def dedup_args() -> AppArgs:
    return app_args(
        models=[{"name": "tiny", "model": "fake", "prompt": {"template": "{state}:::"}, "sampling": {"n": 3},
                 "dedup": {"enabled": True}}],
        scorers=[],
    )


class RecordingStore(DedupStore):
    def __init__(self, args):
        super().__init__(args)
        self.seen: list[tuple] = []

    async def take_new(self, bundle, key, tactics):  # a handle call is awaitable
        self.seen.append((bundle, key, tactics))
        return super().take_new(bundle, key, tactics)


class DeadStore:
    def __init__(self):
        self.calls = 0

    async def take_new(self, bundle, key, tactics):
        self.calls += 1
        await asyncio.Event().wait()  # a store that never answers (its replica is gone and not yet replaced)


async def dedup_app(store, clock=None, gate=None):
    args = dedup_args()
    bundles = {b.name: Handle(await bundle_server(b)) for b in args.models}
    service = TacticService(args, bundles, {}, Handle(store), clock=clock or FakeClock())
    return build_http_app(service, gate)


async def test_dedup_is_scoped_per_api_key_and_stores_digests_only():
    store = RecordingStore(dedup_args())
    app = await dedup_app(store, gate=ApiKeyGate(["alice", "bob"], allow_networks=[]))
    state = "⊢ a secret lemma"
    body = leancopilot_bytes({"input": state, "name": "tiny", "prefix": ""})

    async def ask(key):
        async with client(app) as http:
            response = await http.post("/generate", content=body, headers={**LEANCOPILOT_HEADERS, "Authorization": f"Bearer {key}"})
        return [o["output"] for o in response.json()["outputs"]]

    assert await ask("alice") == ["test_0", "test_1", "test_2"]
    assert await ask("alice") == [], "the same caller gets only new tactics"
    assert await ask("bob") == ["test_0", "test_1", "test_2"], "another caller's answer was drained"
    for _, key, tactics in store.seen:
        assert isinstance(key, bytes) and len(key) == 32 and all(len(t) == 16 for t in tactics)
        assert state.encode() not in key and b"alice" not in key


async def test_without_keys_dedup_is_scoped_per_client_address():
    app = await dedup_app(RecordingStore(dedup_args()))
    body = {"input": "⊢ True", "name": "tiny", "prefix": ""}
    assert len((await post(app, "/generate", body)).json()["outputs"]) == 3
    assert (await post(app, "/generate", body)).json()["outputs"] == []
    # Another address (httpx's ASGI transport names the client): a whole answer.
    async with httpx_client(app, ("10.1.2.3", 4000)) as http:
        other = await http.post("/generate", content=leancopilot_bytes(body), headers=LEANCOPILOT_HEADERS)
    assert len(other.json()["outputs"]) == 3


def httpx_client(app, address):
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=address), base_url="http://leanserve")


@pytest.mark.timeout(20)  # each call waiting its budget would take 3 × 1 s; waiting on a dead store, forever
async def test_a_lost_dedup_store_costs_one_short_wait_then_none():
    store, clock = DeadStore(), FakeClock()
    app = await dedup_app(store, clock)
    body = {"input": "⊢ True", "name": "tiny", "prefix": ""}
    for _ in range(3):
        response = await post(app, "/generate", body)
        assert response.status_code == 200 and len(response.json()["outputs"]) == 3, "unfiltered, not failed"
        assert response.headers[DEGRADED_HEADER] == "dedup-unavailable"
    assert store.calls == 1, "requests after the failure still waited on the lost store"


# -- coalescing through the service: the last caller leaving aborts the engine call ----------------------------


class HeldCall:
    """A handle call that answers only when the test says so, and records its cancellation."""

    def __init__(self):
        self.release = asyncio.Event()
        self.calls = 0
        self.cancelled = 0

    def remote(self, request):
        self.calls += 1
        held = self

        class Response:
            def __init__(self):
                self.task = asyncio.ensure_future(self.run())

            async def run(self):
                await held.release.wait()
                from core.payloads import BundleAnswer, ScoredTactic

                return BundleAnswer(candidates=[ScoredTactic("simp", 0.5)], sampled=1)

            def __await__(self):
                return self.task.__await__()

            def cancel(self):
                held.cancelled += 1
                self.task.cancel()

        return Response()


async def test_coalesced_callers_leaving_one_by_one_then_all_cancels_the_engine_call():
    from types import SimpleNamespace

    from deployments.service import TacticQuery

    args = app_args(scorers=[])
    held = HeldCall()
    service = TacticService(args, {"tiny": SimpleNamespace(answer=held)}, {}, clock=FakeClock())
    query = TacticQuery("tiny", "⊢ True")
    callers = [asyncio.ensure_future(service.suggest_tactics(query, service.new_context(f"r{i}"))) for i in range(3)]
    await asyncio.sleep(0.01)
    callers[0].cancel()
    await asyncio.sleep(0.01)
    assert (held.calls, held.cancelled) == (1, 0)
    for caller in callers[1:]:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert held.cancelled == 1, "the engine request outlived every caller"
    assert service.flights.in_flight() == 0
