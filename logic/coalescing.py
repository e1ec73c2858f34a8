"""Single-flight coalescing: concurrent identical requests share one engine call.

Lean re-elaborates a whole file on every edit, so LeanCopilot resends the very same proof states while the
first answers are still being generated. The ingress keys each /generate on everything that shapes the answer
(bundle, input, prefix, n, max_tokens, use_reward); a request whose key is already in flight waits for that
call instead of starting another. Only in-flight calls are shared: nothing is cached after they finish.

The shared call belongs to no caller: it runs in a context of its own (an empty `contextvars.Context`), so
whatever a caller's framework ties to that caller's request does not reach it. Ray Serve records each
handle call under the request context it was made in, and cancels those calls when that request is
cancelled (its client hung up): a shared call started in the first caller's context died with the first
caller, and every other caller got a CancelledError (Starlette's "No response returned." 500).

Pure asyncio (no Ray), so it is unit-tested on its own.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from core.errors import ServiceUnavailableError

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


@dataclass
class SingleFlight(Generic[T]):
    """`await flights.run(key, start)`: `start()` runs once per key at a time; every caller gets its result.

    One caller giving up (a client disconnecting, a deadline) does not cancel the shared call while others
    still wait for it; the last caller giving up cancels it, so the engine request is aborted, not leaked.
    """

    _flights: dict[Hashable, _Flight[T]] = field(default_factory=dict)
    started: int = 0  # calls actually started
    joined: int = 0  # requests answered by a call another request had started

    async def run(self, key: Hashable, start: Callable[[], Awaitable[T]], _restarted: bool = False) -> T:
        flight = self._flights.get(key)
        if flight is None:
            # An empty context: the call is made (start() runs) inside the task, detached from this caller.
            task = asyncio.get_running_loop().create_task(_call(start), context=contextvars.Context())
            flight = _Flight(task)
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _task, key=key, flight=flight: self._forget(key, flight))
            self.started += 1
        else:
            self.joined += 1
        flight.waiters += 1
        try:
            # shield: cancelling this caller must not cancel the task the other callers share.
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if flight.task.cancelled() and current is not None and not current.cancelling():
                # The shared call was cancelled by someone else while this caller still waits: never hand
                # this caller a cancellation it did not ask for. Start afresh once, then give a clear 503.
                if _restarted:
                    raise ServiceUnavailableError("The engine call was cancelled; please retry.") from None
                self._forget(key, flight)
                return await self.run(key, start, _restarted=True)
            if flight.waiters == 1 and not flight.task.done():
                flight.task.cancel()
                self._forget(key, flight)  # a request arriving now starts afresh, not on a cancelled call
            raise
        finally:
            flight.waiters -= 1

    def in_flight(self) -> int:
        return len(self._flights)

    def _forget(self, key: Hashable, flight: _Flight[T]) -> None:
        # Only remove our own flight: a newer one may already run under the same key.
        if self._flights.get(key) is flight:
            del self._flights[key]


async def _call(start: Callable[[], Awaitable[T]]) -> T:
    return await start()
