"""Proof search at cluster scale, on a real local Ray Serve app: one tiny vLLM bundle with TWO replicas behind
the prefix_affinity router, priority classes, /generate_batch, and admission sized from the deadline.

Its own app (one module-scoped cluster for all of these tests). Each engine runs one sequence at a time
(max_num_seqs 1) and the tiny model has no EOS, so every sequence decodes exactly max_tokens: the order in
which requests finish is the order in which the engine scheduled them, whatever the machine's speed. Which
replica answered comes back in X-LeanServe-Replica (Serve's replica id, also in the bundle's log lines).
Tests run in file order; the last two measure the service rate and then flood the bundle.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cluster_support import replica_states, wait_for
from serve_app import free_port
from support import LEANCOPILOT_HEADERS, lean_goals, leancopilot_bytes

from core.config import AppArgs
from core.payloads import TacticRequest
from logic.routing_key import routing_key

pytestmark = pytest.mark.serve

APP = f"search{os.getpid()}"
MODEL = "tiny"
REQUEST_TIMEOUT_S = 90.0
LOAD_CAP = 8  # sequences in flight on a replica before its keys spill
MAX_BATCH_ITEMS = 8
MAX_INPUT_CHARS = 2_000
HYPOTHESES = "x y : ℕ\nh₀ : x + y = 10\nh₁ : x - y = 2\n"


def search_app_args(tiny_llama) -> AppArgs:
    return AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": REQUEST_TIMEOUT_S},
            # No n x max_tokens budget: the flood test asks for n=32 x 4,000 tokens on purpose.
            "limits": {"max_tokens": 4096, "max_n": 32, "max_batch_items": MAX_BATCH_ITEMS,
                       "max_input_chars": MAX_INPUT_CHARS, "per_class": {"interactive": {"max_generated_tokens": 0}}},
            "models": [
                {
                    "name": MODEL,
                    "model": str(tiny_llama),
                    "prompt": {"template": "{state}:::"},
                    "sampling": {"n": 1, "max_tokens": 8, "stop": []},
                    "engine_args": {
                        "dtype": "float32",
                        "max_model_len": 4096,
                        "kv_cache_memory_bytes": 128 << 20,
                        "max_num_seqs": 1,
                        "enforce_eager": True,
                    },
                    "deployment": {
                        "num_cpus": 0.4,
                        "autoscaling": {"min_replicas": 2, "max_replicas": 2},
                        "request_router": "prefix_affinity",
                        "affinity": {"load_cap": LOAD_CAP},
                        # One sequence per batch: 128 batches per replica and class hold 64 requests at n=4.
                        "admission": {"queued_batches": 127},
                    },
                }
            ],
        }
    )


class SearchApp:
    def __init__(self, url: str, deployment_name: str):
        self.url = url
        self.deployment_name = deployment_name

    def replica_of(self, session: str) -> dict:
        """The report of the replica that `session`'s requests are routed to (the router reads the key)."""
        from ray import serve

        handle = serve.get_deployment_handle(self.deployment_name, app_name=APP)
        probe = TacticRequest("probe", "", routing_key=routing_key("", session))
        return handle.replica_report.remote(probe).result()

    def abandoned(self, session: str) -> int:
        return self.replica_of(session)["abandoned_requests"]

    def wait_unfinished(self, session: str, predicate, timeout_s: float) -> int:
        deadline = time.time() + timeout_s
        while True:
            count = self.replica_of(session)["unfinished_requests"]
            if predicate(count) or time.time() > deadline:
                return count
            time.sleep(0.1)


@pytest.fixture(scope="module")
def search_app(tiny_llama):
    import ray
    from ray import serve

    from deployments.app import build_app

    args = search_app_args(tiny_llama)
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP, route_prefix="/", blocking=False)
        deployment = args.models[0].deployment_name
        # Both bundle replicas running before any test: a router that knows one replica sends everything there,
        # and the driver's probe (which knows both) would then look at the other.
        wait_for(lambda: replica_states(APP, deployment) == {"RUNNING": 2}, timeout_s=600, what="two RUNNING replicas")
        yield SearchApp(f"http://127.0.0.1:{port}", deployment)
    finally:
        serve.shutdown()
        ray.shutdown()


def generate(app: SearchApp, state: str, headers: dict | None = None, timeout: float = 120, **extra) -> httpx.Response:
    return httpx.post(
        f"{app.url}/generate",
        content=leancopilot_bytes({"input": state, "name": MODEL, "prefix": "", **extra}),
        headers={**LEANCOPILOT_HEADERS, **(headers or {})},
        timeout=timeout,
    )


def replica(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["outputs"], list)
    return response.headers["X-LeanServe-Replica"]


def session() -> str:
    return f"theorem-{uuid.uuid4().hex[:8]}"


def test_a_session_or_shared_hypotheses_stay_on_one_replica(search_app):
    same_session = session()
    goals = [f"⊢ x + {i} = {i} + x" for i in range(5)]
    by_session = {replica(generate(search_app, goal, {"X-Session-Id": same_session})) for goal in goals}
    assert len(by_session) == 1, "one session's requests must meet one replica's prefix cache"
    # No session: the hypotheses (the text before ⊢) are the key, so a theorem's states share a replica.
    by_hypotheses = {replica(generate(search_app, f"{HYPOTHESES}⊢ x = {6 + i}")) for i in range(5)}
    assert len(by_hypotheses) == 1
    # And different theorems spread over both replicas (rendezvous hashing; 20 keys on one replica: 2e-6).
    spread = {replica(generate(search_app, "⊢ True", {"X-Session-Id": session()})) for _ in range(20)}
    assert len(spread) == 2, f"20 sessions all went to {spread}"


def test_a_replica_over_its_cap_spills_to_the_least_loaded(search_app):
    hot = session()
    preferred = search_app.replica_of(hot)["replica"]
    # n=4 x 200 tokens, one sequence at a time: each request holds its replica for seconds, so all six are in
    # flight together, 24 sequences for a cap of 8.
    with ThreadPoolExecutor(6) as pool:
        # Distinct states: identical requests in flight would share one engine call (coalescing).
        answers = list(pool.map(lambda i: generate(search_app, f"⊢ {i} = {i}", {"X-Session-Id": hot}, n=4, max_tokens=200),
                                range(6)))
    served_by = [replica(a) for a in answers]
    assert served_by.count(preferred) >= 2, served_by
    assert len(set(served_by)) == 2, f"all six stayed on {preferred} although it was over its cap of {LOAD_CAP} sequences"


def test_an_interactive_request_is_scheduled_before_queued_batch_work(search_app):
    lane = session()
    finished: list[str] = []
    lock = threading.Lock()

    def send(label: str, headers: dict):
        response = generate(search_app, f"⊢ {label} = {label}", {"X-Session-Id": lane, **headers}, max_tokens=400)
        with lock:
            finished.append(label)
        return response

    with ThreadPoolExecutor(6) as pool:
        batch = [pool.submit(send, f"batch{i}", {"X-Priority": "batch"}) for i in range(5)]
        # All five in the engine of the session's replica (one decoding, four waiting) before the editor asks.
        assert search_app.wait_unfinished(lane, lambda n: n >= 5, 60) == 5
        interactive = pool.submit(send, "editor", {})
        responses = [f.result() for f in [*batch, interactive]]
    served_by = {replica(r) for r in responses}
    assert len(served_by) == 1, "the test needs one replica's queue (5 + 1 sequences, under the cap)"
    after = finished[finished.index("editor") + 1 :]
    # First come, first served would finish it last; by priority it goes right after the one decoding.
    assert len(after) >= 3, f"finish order {finished}: the editor waited behind queued batch work"


def test_x_priority_cannot_be_raised_and_must_be_known(search_app):
    response = generate(search_app, "⊢ True", {"X-Priority": "urgent"})
    assert response.status_code == 422 and "X-Priority" in response.json()["detail"]


def batch(app: SearchApp, items: list[dict], timeout: float = 120, **extra) -> httpx.Response:
    return httpx.post(
        f"{app.url}/generate_batch",
        content=leancopilot_bytes({"name": MODEL, "items": items, **extra}),
        headers=LEANCOPILOT_HEADERS,
        timeout=timeout,
    )


def test_generate_batch_answers_every_item_in_order_with_its_own_errors(search_app):
    prefixes = ["intro", "simp", "omega", "exact"]
    items = [{"input": f"{HYPOTHESES}⊢ x = {i}", "prefix": p} for i, p in enumerate(prefixes)]
    items.insert(2, {"input": "⊢ " + "x" * MAX_INPUT_CHARS, "prefix": ""})
    response = batch(search_app, items, n=2, max_tokens=6)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(items)
    assert results[2] == {"error": {"status": 413, "detail": f"input is {MAX_INPUT_CHARS + 2} characters; the limit is {MAX_INPUT_CHARS}"}}
    for prefix, result in zip(prefixes, results[:2] + results[3:], strict=True):
        assert set(result) == {"outputs"}
        assert result["outputs"] and all(o["output"].startswith(prefix) for o in result["outputs"]), (prefix, result)
        assert all(set(o) == {"output", "score", "model_score", "steps_remaining", "reward"} for o in result["outputs"])


def test_generate_batch_limits_apply_to_the_whole_batch(search_app):
    too_many = batch(search_app, [{"input": "⊢ True"}] * (MAX_BATCH_ITEMS + 1))
    assert too_many.status_code == 413 and str(MAX_BATCH_ITEMS) in too_many.json()["detail"]
    assert batch(search_app, []).status_code == 422
    too_wide = batch(search_app, [{"input": "⊢ True"}], n=33)
    assert too_wide.status_code == 422 and "n is 33" in too_wide.json()["detail"]


def open_batch(app: SearchApp, items: list[dict], **extra) -> socket.socket:
    """A /generate_batch request sent whole on a socket of its own; closing the socket is the client leaving."""
    body = leancopilot_bytes({"name": MODEL, "items": items, **extra})
    host, port = app.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /generate_batch HTTP/1.1\r\nHost: leanserve\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def test_leaving_a_batch_aborts_all_its_engine_requests(search_app):
    lane = session()
    abandoned_before = search_app.abandoned(lane)
    sock = open_batch(search_app, [{"input": f"⊢ {i} = {i}"} for i in range(3)], max_tokens=4000, session_id=lane)
    try:
        # The batch's session routes its three items to one replica: one decoding, two waiting there.
        assert search_app.wait_unfinished(lane, lambda n: n == 3, 120) == 3
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable, "the batch answered before its client left"
    finally:
        sock.close()  # the client leaves
    # Every item's engine request is aborted, the decoding one and the two still waiting: none finishes.
    assert search_app.wait_unfinished(lane, lambda n: n == 0, 300) == 0
    assert search_app.abandoned(lane) - abandoned_before == 3


def test_64_concurrent_requests_that_can_finish_in_time_all_succeed(search_app):
    states = [f"{goal}\n-- {i}" for i, goal in enumerate(lean_goals(16) * 4)]  # 64 distinct: no coalescing
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda s: generate(search_app, s, n=4, timeout=REQUEST_TIMEOUT_S + 30), states))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 64, {s: statuses.count(s) for s in set(statuses)}
    assert all(len(a.json()["outputs"]) >= 1 for a in answers)


def test_a_flood_that_cannot_finish_in_time_gets_fast_503s_with_retry_after(search_app):
    # Saturate both engines for a few seconds: the gate measures the service rate only then.
    with ThreadPoolExecutor(8) as pool:
        warm = list(pool.map(lambda i: generate(search_app, f"⊢ {i} < {i + 1}", max_tokens=200), range(8)))
    assert all(r.status_code == 200 for r in warm)

    arrived: list[int] = []
    lock = threading.Lock()

    def heavy(i: int) -> httpx.Response:
        # n=32 x 4,000 tokens, one sequence at a time: several minutes of work each, far past the deadline.
        try:
            response = generate(search_app, f"⊢ {i} ≠ {i + 1}", timeout=20, n=32, max_tokens=4000)
        except httpx.ReadTimeout:
            response = None  # admitted on a fast machine: we leave (and so abort it) rather than wait
        with lock:
            arrived.append(response.status_code if response is not None else 0)
        return response

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(heavy, range(12)))
    refused = [a for a in answers if a is not None and a.status_code == 503]
    assert len(refused) >= 10, arrived
    for answer in refused:
        assert "deadline" in answer.json()["detail"], answer.text
        assert int(answer.headers["Retry-After"]) >= 1
    # Fast: every refusal came back before anything admitted finished (or was given up on).
    assert arrived[: len(refused)] == [503] * len(refused), arrived
