"""SingleFlight: concurrent identical requests share one call; cancellation never leaks or wrongly kills it."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from logic.coalescing import SingleFlight


class CountingCall:
    def __init__(self, result="answer", delay_s=0.05, error: Exception | None = None):
        self.calls, self.cancelled, self.result, self.delay_s, self.error = 0, 0, result, delay_s, error

    async def __call__(self):
        self.calls += 1
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return f"{self.result}-{self.calls}"


async def test_identical_concurrent_requests_share_one_call():
    flights, call = SingleFlight(), CountingCall()
    results = await asyncio.gather(*(flights.run("k", call) for _ in range(8)))
    assert call.calls == 1 and results == ["answer-1"] * 8
    assert (flights.started, flights.joined, flights.in_flight()) == (1, 7, 0)


async def test_different_keys_run_separately():
    flights, call = SingleFlight(), CountingCall()
    await asyncio.gather(flights.run(("a", 4), call), flights.run(("a", 8), call), flights.run(("b", 4), call))
    assert call.calls == 3


async def test_nothing_is_cached_after_the_call_finishes():
    flights, call = SingleFlight(), CountingCall()
    assert await flights.run("k", call) == "answer-1"
    assert await flights.run("k", call) == "answer-2"


async def test_an_error_reaches_every_waiter_and_is_not_kept():
    flights, call = SingleFlight(), CountingCall(error=ValueError("bad"))
    results = await asyncio.gather(*(flights.run("k", call) for _ in range(3)), return_exceptions=True)
    assert call.calls == 1 and all(isinstance(r, ValueError) for r in results)
    call.error = None
    assert await flights.run("k", call) == "answer-2"


async def test_one_waiter_giving_up_does_not_cancel_the_shared_call():
    flights, call = SingleFlight(), CountingCall(delay_s=0.2)
    first = asyncio.ensure_future(flights.run("k", call))
    second = asyncio.ensure_future(flights.run("k", call))
    await asyncio.sleep(0.05)
    first.cancel()
    assert await second == "answer-1"
    assert call.cancelled == 0
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_last_waiter_giving_up_cancels_the_call():
    flights, call = SingleFlight(), CountingCall(delay_s=5)
    waiters = [asyncio.ensure_future(flights.run("k", call)) for _ in range(2)]
    await asyncio.sleep(0.05)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.sleep(0)
    assert call.cancelled == 1 and flights.in_flight() == 0


async def test_a_timeout_in_one_waiter_leaves_the_others_served():
    flights, call = SingleFlight(), CountingCall(delay_s=0.2)
    impatient = asyncio.wait_for(flights.run("k", call), timeout=0.05)
    patient = flights.run("k", call)
    results = await asyncio.gather(impatient, patient, return_exceptions=True)
    assert isinstance(results[0], asyncio.TimeoutError) and results[1] == "answer-1" and call.calls == 1


# -- the shared call belongs to no caller --------------------------------------------------------------------

REQUEST = contextvars.ContextVar("request", default=None)


class RaySim:
    """What Ray Serve does with handle calls (ray.serve.context's in-flight requests): each call is recorded
    under the request whose context made it, and cancelling that request cancels its calls."""

    def __init__(self):
        self.children: dict[str, list[asyncio.Task]] = {}
        self.engine_calls = 0
        self.engine_cancelled = 0

    async def _engine(self):
        self.engine_calls += 1
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            self.engine_cancelled += 1
            raise
        return "answer"

    def call(self):
        task = asyncio.ensure_future(self._engine())
        parent = REQUEST.get()
        if parent is not None:
            self.children.setdefault(parent, []).append(task)
        return task

    async def request(self, request_id: str, flights: SingleFlight):
        REQUEST.set(request_id)
        return await flights.run("k", self.call)

    def cancel_request(self, request_id: str, task: asyncio.Task):
        task.cancel()
        for child in self.children.get(request_id, []):
            child.cancel()


async def test_the_first_caller_hanging_up_does_not_cancel_the_others_answer():
    ray, flights = RaySim(), SingleFlight()
    first = asyncio.ensure_future(ray.request("first", flights))
    second = asyncio.ensure_future(ray.request("second", flights))
    await asyncio.sleep(0.05)
    ray.cancel_request("first", first)  # the first client hangs up: Ray cancels its request and its calls
    assert await second == "answer"
    assert (ray.engine_calls, ray.engine_cancelled) == (1, 0)
    assert ray.children == {}, "the shared call was made in a caller's request context"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_shared_call_cancelled_from_outside_is_restarted_not_passed_on_as_a_cancellation():
    flights, calls = SingleFlight(), []

    async def start():
        calls.append(asyncio.current_task())
        await asyncio.sleep(0.1)
        return "answer"

    waiter = asyncio.ensure_future(flights.run("k", start))
    await asyncio.sleep(0.01)
    calls[0].cancel()  # e.g. Ray cancelling a call it tied to some other request
    assert await waiter == "answer"
    assert len(calls) == 2
