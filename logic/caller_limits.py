"""What one caller may ask of the server, by the priority class of its API key (`limits.per_class`):

- n x max_tokens of one engine request (`max_generated_tokens`, 422 beyond): a request within its bundle's own
  defaults always passes (the operator chose those), so only what a client asks beyond them is bounded;
- requests per minute of one API key (`requests_per_minute`, 429 with Retry-After beyond), in a moving window
  of 60 s (the `limits` library's, exact: it keeps one entry per request in the window). Keyless callers are
  not counted: without keys only this machine's own user is served (its editor, its benchmarks), or everyone
  behind an authenticating gateway, whose one address would lump all its users together.

The count lives in each ingress replica's memory: with k ingress replicas a key may send up to k times its
rate. It is stored under the caller's hashed identity (RequestContext.client, never the key itself), and it
stays bounded: at most `requests_per_minute` entries per key, only configured keys reach it (the auth gate
runs first), and the storage drops a key's expired entries, and the key with them, as later requests arrive.
The class is the one the key grants, not the X-Priority header's: a header may lower a request's scheduling
class but must not buy it the batch class's higher rate.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from core.config import CallerLimits, PerClassLimits
from core.errors import InvalidRequestError, RateLimitedError
from core.request_context import PRIORITY_CLASSES, PriorityClass
from logic.priority import DEFAULT_CLASS


def limits_class(key_class: PriorityClass | None) -> PriorityClass:
    """The class whose limits apply: the key's, or interactive for a caller without one."""
    return key_class or DEFAULT_CLASS


def check_generated_tokens(
    n: int, max_tokens: int, bundle_default_tokens: int, key_class: PriorityClass | None, per_class: PerClassLimits
) -> None:
    """422 when n x max_tokens of one engine request is over the caller's class budget and over what its bundle
    asks by default (`bundle_default_tokens`, the bundle's own n x max_tokens)."""
    cls = limits_class(key_class)
    budget = per_class.of(cls).max_generated_tokens
    asked = n * max_tokens
    if budget == 0 or asked <= max(budget, bundle_default_tokens):
        return
    raise InvalidRequestError(
        f"n x max_tokens is {n} x {max_tokens} = {asked} tokens; the limit is {budget} for {cls} callers "
        f"(limits.per_class.{cls}.max_generated_tokens)"
    )


class CallerRateLimiter:
    """Requests per minute of each API key, in this process (one per ingress replica)."""

    def __init__(self, per_class: PerClassLimits):
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        limits: dict[PriorityClass, CallerLimits] = {cls: per_class.of(cls) for cls in PRIORITY_CLASSES}
        self._windows = {
            cls: RateLimitItemPerMinute(limit.requests_per_minute)
            for cls, limit in limits.items()
            if limit.requests_per_minute > 0
        }

    async def charge(self, caller: str, key_class: PriorityClass | None, cost: int = 1) -> None:
        """Count `cost` requests of `caller` (its hashed identity); RateLimitedError (429) when its window is
        full, with the seconds until a request leaves the window. `key_class` None: no key, not counted."""
        if key_class is None or cost <= 0:
            return
        window = self._windows.get(key_class)
        if window is None:
            return
        if await self._limiter.hit(window, key_class, caller, cost=cost):
            return
        stats = await self._limiter.get_window_stats(window, key_class, caller)
        # The library's clock is the wall clock; at least 1 s (Retry-After is whole seconds).
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitedError(
            f"Too many requests: the limit is {window.amount} a minute for {key_class} keys "
            f"(limits.per_class.{key_class}.requests_per_minute); retry in {retry_after_s} s.",
            retry_after_s,
        )
