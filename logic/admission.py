"""Admission of one bundle's work, per priority class, sized from the deadline.

The engine batches sequences, not requests: a request with n=8 is eight sequences. The hard bound counts
sequences (requests x n) per class. The deadline estimate weighs each sequence by the tokens it may decode
(n x max_tokens, the request's work), since a 1,024-token sequence holds its batch slot 100 times longer than
a 10-token one. A request is admitted when the work ahead of it (its own class and the classes the engine
serves first) plus its own can finish within what is left of its deadline at the bundle's measured service
rate; otherwise it gets 503 at once, with a Retry-After drawn from the same estimate. So work that can finish
waits, and work that cannot is turned away before it spends engine time.

The service rate is an exponential moving average of work completed per second, measured only while the
sequences in flight fill the engine batches (`saturation`): below that, throughput says how busy clients are,
not what the engine can do. Until a first saturated sample only the hard bound applies, and work that fits
in the batches is never refused. Pure: a clock is injected, no Ray, no asyncio.
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
    sequences: int  # n
    work: int  # n x max_tokens: the tokens its sequences may decode


@dataclass
class ServiceRate:
    """Work (sequence-tokens) per second the bundle completes while saturated, as a moving average."""

    window_s: float
    smoothing: float
    work_per_s: float | None = None
    _window_start: float | None = None
    _window_done: int = 0

    def saturated(self, now: float) -> None:
        if self._window_start is None:
            self._window_start, self._window_done = now, 0

    def unsaturated(self) -> None:
        self._window_start = None

    def completed(self, work: int, now: float) -> None:
        if self._window_start is None:
            return
        self._window_done += work
        elapsed = now - self._window_start
        if elapsed >= self.window_s:
            sample = self._window_done / elapsed
            previous = self.work_per_s
            self.work_per_s = sample if previous is None else previous + self.smoothing * (sample - previous)
            self._window_start, self._window_done = now, 0


@dataclass
class AdmissionGate:
    """One bundle's admission in one ingress replica."""

    bound_per_class: int  # sequences one class may have in flight (bundle-wide, in this ingress)
    saturation: int  # sequences that fill the bundle's engine batches
    rate: ServiceRate
    clock: Clock = time.monotonic
    sequences: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITY_CLASSES, 0))
    work: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITY_CLASSES, 0))

    def estimated_wait_s(self, priority_class: PriorityClass, work: int) -> float | None:
        """Seconds until `work` more would be done if admitted now; None while the rate is unmeasured."""
        if self.rate.work_per_s is None:
            return None
        return (sum(self.work[c] for c in classes_ahead(priority_class)) + work) / self.rate.work_per_s

    def admit(self, priority_class: PriorityClass, sequences: int, work: int, budget_s: float) -> Ticket:
        """A ticket for `sequences` (decoding up to `work` tokens in all) that must finish within `budget_s`,
        or OverloadedError."""
        mine = self.sequences[priority_class]
        rate = self.rate.work_per_s
        # A lone request always goes, however large: it would wait for nothing.
        if mine and mine + sequences > self.bound_per_class:
            # Room comes back as the class's work drains: about its share of the work per sequence over.
            over = (mine + sequences - self.bound_per_class) * self.work[priority_class] / mine
            raise OverloadedError(
                f"The model holds its bound of {self.bound_per_class} waiting sequences ({priority_class}); retry later.",
                _whole_seconds(over / rate if rate else UNMEASURED_RETRY_AFTER_S),
            )
        ahead = sum(self.sequences[c] for c in classes_ahead(priority_class))
        wait_s = self.estimated_wait_s(priority_class, work)
        if wait_s is not None and ahead + sequences > self.saturation and wait_s > budget_s:
            raise OverloadedError(
                f"The model cannot finish this request within its deadline (about {wait_s:.0f}s of work ahead, "
                f"{budget_s:.0f}s left); retry later.",
                _whole_seconds(wait_s - budget_s),
            )
        self._change(priority_class, sequences, work)
        return Ticket(priority_class, sequences, work)

    def release(self, ticket: Ticket, completed: bool) -> None:
        """The ticket's engine call ended; `completed`: it did its work (which then counts for the rate)."""
        if completed:
            self.rate.completed(ticket.work, self.clock())
        self._change(ticket.priority_class, -ticket.sequences, -ticket.work)

    def _change(self, priority_class: PriorityClass, sequences: int, work: int) -> None:
        self.sequences[priority_class] += sequences
        self.work[priority_class] += work
        if sum(self.sequences.values()) >= self.saturation:
            self.rate.saturated(self.clock())
        else:
            self.rate.unsaturated()


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
