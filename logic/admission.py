"""Admission of one bundle's work, in sequences (requests x n), per priority class, sized from the deadline.

The engine batches sequences, not requests: a request with n=8 is eight sequences of work. The gate admits a
request when the sequences ahead of it (its own class and the classes the engine serves first) plus its own
can finish within what is left of its deadline at the bundle's measured service rate; otherwise it answers 503
at once, with a Retry-After drawn from the same estimate. So work that can finish waits, and work that cannot
is turned away before it spends engine time.

The service rate is an exponential moving average of sequences completed per second, measured only while the
work in flight fills at least one engine batch (`saturation`): below that, throughput says how busy clients
are, not what the engine can do. Until a first saturated sample, only the hard bound applies. The hard bound
(per class) holds whatever the estimate says. Pure: a clock is injected, no Ray, no asyncio.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from core.errors import ServiceUnavailableError
from core.request_context import Clock
from logic.priority import PRIORITY_CLASSES, PriorityClass, classes_ahead

# The Retry-After of a rejection without a measured rate (the client retries soon; nothing better is known).
UNMEASURED_RETRY_AFTER_S = ServiceUnavailableError.retry_after_s


class OverloadedError(ServiceUnavailableError):
    """Admission refused: the work ahead cannot finish within this request's deadline (or the bound is hit)."""

    def __init__(self, detail: str, retry_after_s: int = UNMEASURED_RETRY_AFTER_S):
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (type(self), (self.detail, self.retry_after_s))


@dataclass(frozen=True)
class Ticket:
    """What an admitted request holds until its engine call ends."""

    priority_class: PriorityClass
    sequences: int


@dataclass
class ServiceRate:
    """Sequences per second the bundle completes while saturated, as a moving average."""

    window_s: float
    smoothing: float
    sequences_per_s: float | None = None
    _window_start: float | None = None
    _window_done: int = 0

    def saturated(self, now: float) -> None:
        if self._window_start is None:
            self._window_start, self._window_done = now, 0

    def unsaturated(self) -> None:
        self._window_start = None

    def completed(self, sequences: int, now: float) -> None:
        if self._window_start is None:
            return
        self._window_done += sequences
        elapsed = now - self._window_start
        if elapsed >= self.window_s:
            sample = self._window_done / elapsed
            previous = self.sequences_per_s
            self.sequences_per_s = sample if previous is None else previous + self.smoothing * (sample - previous)
            self._window_start, self._window_done = now, 0


@dataclass
class AdmissionGate:
    """One bundle's admission in one ingress replica."""

    bound_per_class: int  # sequences one class may have in flight (bundle-wide, in this ingress)
    saturation: int  # sequences that fill the bundle's engine batches
    rate: ServiceRate
    clock: Clock = time.monotonic
    in_flight: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITY_CLASSES, 0))

    def estimated_wait_s(self, priority_class: PriorityClass, sequences: int) -> float | None:
        """Seconds until this work would be done, if admitted now; None while the rate is unmeasured."""
        if self.rate.sequences_per_s is None:
            return None
        ahead = sum(self.in_flight[c] for c in classes_ahead(priority_class))
        return (ahead + sequences) / self.rate.sequences_per_s

    def admit(self, priority_class: PriorityClass, sequences: int, budget_s: float) -> Ticket:
        """A ticket for `sequences` of work that must finish within `budget_s`, or OverloadedError."""
        mine = self.in_flight[priority_class]
        rate = self.rate.sequences_per_s
        # A lone request always goes, however large: it would wait for nothing.
        if mine and mine + sequences > self.bound_per_class:
            retry = (mine + sequences - self.bound_per_class) / rate if rate else UNMEASURED_RETRY_AFTER_S
            raise OverloadedError(
                f"The model is at its bound of {self.bound_per_class} waiting sequences ({priority_class}); retry later.",
                _whole_seconds(retry),
            )
        ahead = sum(self.in_flight[c] for c in classes_ahead(priority_class))
        if rate is not None and ahead + sequences > self.saturation:
            wait_s = (ahead + sequences) / rate
            if wait_s > budget_s:
                raise OverloadedError(
                    f"The model cannot finish this request within its deadline (about {wait_s:.0f}s of work ahead, "
                    f"{budget_s:.0f}s left); retry later.",
                    _whole_seconds(wait_s - budget_s),
                )
        self._change(priority_class, sequences)
        return Ticket(priority_class, sequences)

    def release(self, ticket: Ticket, completed: bool) -> None:
        """The ticket's engine call ended; `completed`: it produced its sequences (they count for the rate)."""
        if completed:
            self.rate.completed(ticket.sequences, self.clock())
        self._change(ticket.priority_class, -ticket.sequences)

    def _change(self, priority_class: PriorityClass, delta: int) -> None:
        self.in_flight[priority_class] += delta
        if sum(self.in_flight.values()) >= self.saturation:
            self.rate.saturated(self.clock())
        else:
            self.rate.unsaturated()


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
