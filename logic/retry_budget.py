"""A retry budget: retries are at most a bounded share of calls, so a failing upstream API is not called
max_retries + 1 times for every call (on the owner's bill), whatever the traffic.

Like gRPC's retry throttling and Finagle's RetryBudget, as a token bucket: each call deposits `ratio`
tokens, time deposits `min_retries_per_s` (so a quiet client can still retry a lone failure), the balance is
capped at `max_saved` (it starts full), and each retry withdraws one token; with less than one left, the
failure is reported instead of retried. Over any stretch of time the retries are therefore at most
max_saved + ratio x calls + min_retries_per_s x seconds. No library offers this small rule on its own
(tenacity stops per call, not across calls). One budget per remote engine, i.e. per bundle replica.
"""

from __future__ import annotations

import time

from core.config import RetryBudgetConfig
from core.request_context import Clock

# Deposits are fractions (0.2 x 5 is 0.9999999999999999 in floats): a whole retry within this counts as one.
_ROUNDING = 1e-9


class RetryBudget:
    def __init__(self, config: RetryBudgetConfig, clock: Clock = time.monotonic):
        self.ratio = config.ratio
        self.min_retries_per_s = config.min_retries_per_s
        self.max_saved = config.max_saved
        self.clock = clock
        self._balance = config.max_saved
        self._updated = clock()

    def _refill(self, deposit: float) -> None:
        now = self.clock()
        earned = deposit + self.min_retries_per_s * max(0.0, now - self._updated)
        self._balance = min(self.max_saved, self._balance + earned)
        self._updated = now

    def deposit(self) -> None:
        """A call is made (its first attempt): it earns `ratio` retries."""
        self._refill(self.ratio)

    def try_withdraw(self) -> bool:
        """Spend one retry if the budget holds one; False: do not retry."""
        self._refill(0.0)
        if self._balance < 1.0 - _ROUNDING:
            return False
        self._balance = max(0.0, self._balance - 1.0)
        return True

    @property
    def balance(self) -> float:
        self._refill(0.0)
        return self._balance
