"""/health through the real HTTP app and service (deployments/health.py): cheap, cached, and honest about overload.
A flood probes each model once per interval; busy and keyless models are "degraded" (200), a dead one 503;
/health/live asks no model at all."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from fakes import FakeEngine
from ray.serve.exceptions import BackPressureError
from test_service import Call, FakeClock, Handle, Scorer, app_args, bundle_server, client

from deployments.http_app import build_http_app
from deployments.scorer_server import ScorerServer
from deployments.service import TacticService

INTERVAL_S = 2.0


class CountingHandle(Handle):
    """A handle that counts the `health` calls that reach its replica."""

    def __init__(self, target):
        super().__init__(target)
        self.health_calls = 0

    def __getattr__(self, method):
        if method == "health":
            self.health_calls += 1
        return super().__getattr__(method)


class RefusingHandle:
    """A deployment whose every call fails as Serve would fail it: `error` raised from the call."""

    def __init__(self, error: BaseException):
        self.error = error

    def __getattr__(self, method):
        async def fail(*args):
            raise self.error

        return SimpleNamespace(remote=lambda *args: Call(fail(*args)))


class KeylessEngine(FakeEngine):
    """A remote bundle started without its API key: up, but it cannot serve."""

    not_ready_reason = "not ready: environment variable HF_TOKEN is unset"


async def health_app(clock: FakeClock, overrides: dict | None = None, scorer=None, **ingress):
    args = app_args(ingress={"request_timeout_s": 300.0, "health_min_interval_s": INTERVAL_S, **ingress})
    handles = {b.name: CountingHandle(await bundle_server(b)) for b in args.models}
    handles.update(overrides or {})
    service = TacticService(args, handles, {"progress": scorer or Handle(Scorer())}, clock=clock)
    return build_http_app(service), handles


async def test_a_flood_of_health_probes_each_model_once_per_interval():
    clock = FakeClock()
    app, handles = await health_app(clock)
    async with client(app) as http:
        flood = await asyncio.gather(*(http.get("/health") for _ in range(50)))
        assert [r.status_code for r in flood] == [200] * 50
        assert all(r.json() == {"status": "ok", "models": {"tiny": "ok", "retriever": "ok"}, "scorers": {"progress": "ok"}}
                   for r in flood)
        assert handles["tiny"].health_calls == 1, "50 concurrent /health calls must share one probe"
        clock.now += INTERVAL_S / 2
        await http.get("/health/ready")
        assert handles["tiny"].health_calls == 1, "within the interval the last report is reused"
        clock.now += INTERVAL_S
        await http.get("/health")
        assert handles["tiny"].health_calls == 2


async def test_an_overloaded_model_is_degraded_not_down():
    overloaded = RefusingHandle(BackPressureError(num_queued_requests=8, max_queued_requests=8))
    app, _ = await health_app(FakeClock(), {"tiny": overloaded})
    async with client(app) as http:
        starting = await http.get("/health")
        app.state.service._answered.add("tiny")  # as after its first answer
        app.state.service.health_cache._report = None
        response = await http.get("/health")
    # Before a replica has ever answered it is loading its model: not up yet, so no traffic goes to it.
    assert starting.status_code == 503 and starting.json()["models"]["tiny"].startswith("starting")
    assert response.status_code == 200, "a load balancer must not drop an instance for being busy"
    assert response.json()["status"] == "degraded"
    assert response.json()["models"]["tiny"] == "degraded: busy (its health check waited for a slot)"


async def test_a_probe_that_times_out_is_busy_too():
    class Hung:
        async def health(self):
            await asyncio.Event().wait()

    app, _ = await health_app(FakeClock(), {"tiny": Handle(Hung())}, health_timeout_s=0.01)
    app.state.service._answered.add("tiny")  # as after its first answer
    async with client(app) as http:
        response = await http.get("/health")
    assert (response.status_code, response.json()["models"]["tiny"]) == (200, "degraded: busy (its health check waited for a slot)")


async def test_a_remote_bundle_without_its_key_is_degraded_and_the_rest_ok():
    args = app_args()
    keyless = Handle(await bundle_server(args.models[0], engine_factory=KeylessEngine))
    app, _ = await health_app(FakeClock(), {"tiny": keyless})
    async with client(app) as http:
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "models": {"tiny": "degraded: not ready: environment variable HF_TOKEN is unset", "retriever": "ok"},
        "scorers": {"progress": "ok"},
    }


async def test_a_dead_model_is_503_and_liveness_still_answers_without_asking_it():
    dead = RefusingHandle(RuntimeError("engine core died"))
    app, handles = await health_app(FakeClock(), {"tiny": dead})
    async with client(app) as http:
        ready = await http.get("/health")
        live = await http.get("/health/live")
    assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
    assert ready.json()["status"] == "unavailable" and ready.json()["models"]["tiny"] == "unavailable (RuntimeError)"
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert handles["retriever"].health_calls == 1  # only the readiness probe asked


async def test_a_caller_that_hangs_up_does_not_cancel_the_probe_the_others_wait_for():
    release = asyncio.Event()

    class Slow:
        async def health(self):
            await release.wait()
            return {"status": "ok"}

    app, _ = await health_app(FakeClock(), {"tiny": Handle(Slow())})
    service = app.state.service
    first = asyncio.ensure_future(service.health())
    second = asyncio.ensure_future(service.health())
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    report = await second
    assert report.models["tiny"] == "ok" and service.health_cache.probes == 1


async def test_the_scorers_health_runs_no_forward_pass():
    predicted = []
    scorer = ScorerServer.__new__(ScorerServer)
    scorer.scorer = SimpleNamespace(predict=lambda items: predicted.append(items) or [0.0] * len(items))
    scorer.batches = 0
    assert await scorer.health() == {"status": "ok", "batches": 0}
    assert predicted == []
