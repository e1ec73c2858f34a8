"""Single-flight coalescing: concurrent identical requests share one engine call.

Lean re-elaborates a whole file on every edit, so LeanCopilot resends the very same proof states while the
first answers are still being generated. The ingress keys each /generate on everything that shapes the answer
(bundle, input, prefix, n, max_tokens, use_reward); a request whose key is already in flight waits for that
call instead of starting another. Only in-flight calls are shared: nothing is cached after they finish.

Pure asyncio (no Ray), so it is unit-tested on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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

    async def run(self, key: Hashable, start: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(start()))
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
