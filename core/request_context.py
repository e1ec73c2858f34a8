"""What one HTTP request carries through the ingress: its id, its one deadline, and the bundle it reached.

The deadline is computed once, when the request arrives, and every hop (the engine call, cross-call dedup,
the scorer) waits only for what is left of it; so a request never outlives `ingress.request_timeout_s`,
and a replica that drains for that long (deployments/options.py) cuts no request off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Clock = Callable[[], float]
# Who waits for whom (logic/priority.py decides a request's class): highest first.
PriorityClass = Literal["interactive", "batch"]
PRIORITY_CLASSES: tuple[PriorityClass, ...] = ("interactive", "batch")
# The metrics label of a request whose model name resolved to no bundle (one value: typos cannot blow up
# the label's cardinality).
UNKNOWN_BUNDLE = "unknown"


@dataclass(frozen=True)
class Deadline:
    """A point in time on `clock` (monotonic seconds) by which the request must be answered."""

    expires_at: float
    clock: Clock = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.expires_at - self.clock())

    def budget(self, cap_s: float | None = None) -> float:
        """What one hop may wait: the time left, or less when the hop has a shorter budget of its own."""
        left = self.remaining()
        return left if cap_s is None else min(left, cap_s)


@dataclass
class RequestContext:
    """Made by the HTTP app when a request arrives; the service fills in `bundle` once the name resolves."""

    request_id: str
    deadline: Deadline
    bundle: str = UNKNOWN_BUNDLE
    priority_class: PriorityClass = "interactive"
    # The class the caller's API key grants (None: no key was checked). It picks the caller's limits
    # (logic/caller_limits.py); unlike priority_class, X-Priority never changes it.
    key_class: PriorityClass | None = None
    session_id: str | None = None  # the client's X-Session-Id: its requests share a replica
    # What the answer tells about its engine call (debug headers X-LeanServe-*): set by the service.
    replica: str | None = None
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    # Who is asking, for state kept across requests (the Ollama sample window, cross-call dedup's scope): a
    # hash of the API key the client presented, or its address. Never the key itself.
    client: str = ""
    # Optional hops skipped for this answer (e.g. "scorer-unavailable"): the HTTP app reports them in the
    # X-LeanServe-Degraded response header.
    degraded: list[str] = field(default_factory=list)
