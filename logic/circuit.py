"""A circuit breaker for the ingress's optional hops (the dedup store, the LeanProgress scorers).

A lost dependency must not make every request wait for it: after one failure the breaker opens, and for
`cooldown_s` calls skip the dependency at once (the service then answers degraded: unfiltered or unscored
candidates). Once the cooldown is over, one call at a time tries it again (half-open); its success closes the
breaker, its failure opens it for another cooldown. Pure and single-threaded (one asyncio loop), so unit-tested
on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._open_until: float | None = None  # None: closed
        self._trial = False  # a half-open trial call is in flight
        self.failures = 0

    @property
    def closed(self) -> bool:
        return self._open_until is None

    def allow(self) -> bool:
        """Whether a call may go to the dependency now. A True while open starts the one trial call: the
        caller must then report `succeeded`, `failed` or `abandoned`."""
        if self._open_until is None:
            return True
        if self._trial or self._clock() < self._open_until:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        self._open_until, self._trial = None, False

    def failed(self) -> None:
        self.failures += 1
        self._open_until, self._trial = self._clock() + self.cooldown_s, False

    def abandoned(self) -> None:
        """The call ended without a verdict (its caller left): let the next call try."""
        self._trial = False
