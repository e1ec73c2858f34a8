"""What /health reports, and how little it costs.

- Each bundle and scorer is asked its replica's own, cheap state: the engine's health flag and whether it can
  serve (a remote bundle without its key cannot). No forward pass, no generation.
- The answer is cached for `ingress.health_min_interval_s`, and concurrent calls share one probe: a flood of
  /health costs the bundles at most one probe per interval and ingress replica, whatever its size. The shared
  probe runs on its own, so a caller that hangs up does not cancel it for the others.
- Overload is not death: a probe refused by a full queue, or not answered in time, reports the bundle
  "degraded: busy", and so does a remote bundle without its key ("degraded: <why>"). The report is then 200
  with `"status": "degraded"`, and a load balancer keeps the instance. Only a failed probe (a dead engine, a
  lost replica) makes it 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.ray_errors import describe_failure, is_overload

OK = "ok"
SCALES_TO_ZERO = "ok (min_replicas 0: not probed)"
DEGRADED = "degraded"
BUSY = f"{DEGRADED}: busy (its health check waited for a slot)"
# Not up: a replica that has not answered one probe yet is still loading its model.
STARTING = "starting: no answer to a health check yet"


def is_up(state: str) -> bool:
    return state in (OK, SCALES_TO_ZERO) or state.startswith(DEGRADED)


@dataclass(frozen=True)
class HealthReport:
    models: dict[str, str]
    scorers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """"ok", "degraded" (every model can be reached, some cannot serve fully) or "unavailable"."""
        states = [*self.models.values(), *self.scorers.values()]
        if not all(is_up(s) for s in states):
            return "unavailable"
        return DEGRADED if any(s.startswith(DEGRADED) for s in states) else OK

    @property
    def healthy(self) -> bool:
        return self.status != "unavailable"


def state_of(result: Any) -> str:
    """One probe's outcome as /health reports it: what the replica said, or why it said nothing."""
    if isinstance(result, BaseException):
        return BUSY if is_overload(result) else describe_failure(result)
    reason = result.get("not_ready") if isinstance(result, dict) else None
    return f"{DEGRADED}: {reason}" if reason else OK


class HealthCache:
    """The last report, reused for `min_interval_s`; one probe at a time, shared by every caller."""

    def __init__(
        self, probe: Callable[[], Awaitable[HealthReport]], min_interval_s: float, clock: Callable[[], float] = time.monotonic
    ):
        self._probe = probe
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._report: HealthReport | None = None
        self._probed_at = 0.0
        self._running: asyncio.Future[HealthReport] | None = None
        self.probes = 0  # how many probes ran (tests and the log read it)

    async def report(self) -> HealthReport:
        if self._report is not None and self._clock() - self._probed_at < self._min_interval_s:
            return self._report
        if self._running is None:
            self._running = asyncio.ensure_future(self._probe_once())
        # shield: a caller that goes away must not cancel the probe the others wait for.
        return await asyncio.shield(self._running)

    async def _probe_once(self) -> HealthReport:
        try:
            self.probes += 1
            report = await self._probe()
            self._report, self._probed_at = report, self._clock()
            return report
        finally:
            self._running = None
