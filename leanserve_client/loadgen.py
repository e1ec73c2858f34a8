"""Load generation: closed-loop concurrency sweeps and open-loop Poisson arrivals, every request recorded.

The generators take any `send(state) -> GenerateResult` coroutine, so the same code drives LeanServe over
HTTP (`AsyncLeanServeClient.generate`) and, in bench/, other servers and a bare engine.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from leanserve_client.client import AsyncLeanServeClient, GenerateResult
from leanserve_client.states import cycle_states
from leanserve_client.summary import RequestRecord, Summary, summarize

Send = Callable[[str], Awaitable[GenerateResult]]


@dataclass
class LevelResult:
    """One load level: its records and their summary."""

    level: str
    concurrency: int | None
    rate: float | None
    summary: Summary
    records: list[RequestRecord] = field(repr=False)

    def as_dict(self, with_records: bool = True) -> dict:
        out = {"level": self.level, "concurrency": self.concurrency, "rate": self.rate, "summary": self.summary.as_dict()}
        if with_records:
            out["records"] = [r.as_row() for r in self.records]
        return out


def _record(level: str, index: int, state: str, sent_at: float, result: GenerateResult) -> RequestRecord:
    return RequestRecord(
        level=level,
        index=index,
        sent_at_s=sent_at,
        latency_s=result.latency_s,
        status=result.status,
        candidates=len(result.candidates),
        state_chars=len(state),
        error=result.error,
        outputs=tuple(output for output, _ in result.candidates),
    )


async def closed_loop(
    send: Send,
    states: list[str],
    concurrency: int,
    requests: int,
    *,
    offset: int = 0,
    deadline_s: float | None = None,
    progress: bool = True,
) -> LevelResult:
    """`concurrency` clients, each sending its next request as soon as its last one answered.

    `deadline_s` bounds the level's wall time: after it no new request starts (those in flight finish).
    """
    level = f"c={concurrency}"
    work = cycle_states(states, requests, offset)
    next_index = 0
    records: list[RequestRecord] = []
    bar = tqdm(total=requests, desc=level, disable=not progress, leave=False)
    started = time.perf_counter()

    async def client() -> None:
        nonlocal next_index
        while next_index < len(work):
            if deadline_s is not None and time.perf_counter() - started > deadline_s:
                return
            index, next_index = next_index, next_index + 1
            sent_at = time.perf_counter() - started
            result = await send(work[index])
            records.append(_record(level, index, work[index], sent_at, result))
            bar.update(1)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    bar.close()
    records.sort(key=lambda r: r.index)
    return LevelResult(level, concurrency, None, summarize(records, wall), records)


def poisson_arrivals(rate: float, count: int, seed: int = 0) -> list[float]:
    """Send times (seconds from the start) of `count` requests arriving as a Poisson process of `rate`/s."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    times, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


async def open_loop(
    send: Send, states: list[str], rate: float, requests: int, *, offset: int = 0, seed: int = 0, progress: bool = True
) -> LevelResult:
    """Requests arrive at `rate` per second (Poisson) whatever the server's pace: queueing shows as latency."""
    level = f"rate={rate:g}"
    work = cycle_states(states, requests, offset)
    arrivals = poisson_arrivals(rate, requests, seed)
    records: list[RequestRecord] = []
    bar = tqdm(total=requests, desc=level, disable=not progress, leave=False)
    started = time.perf_counter()

    async def one(index: int) -> None:
        await asyncio.sleep(max(0.0, arrivals[index] - (time.perf_counter() - started)))
        sent_at = time.perf_counter() - started
        result = await send(work[index])
        records.append(_record(level, index, work[index], sent_at, result))
        bar.update(1)

    await asyncio.gather(*(one(i) for i in range(requests)))
    wall = time.perf_counter() - started
    bar.close()
    records.sort(key=lambda r: r.index)
    return LevelResult(level, None, rate, summarize(records, wall), records)


async def sweep(
    url: str,
    model: str = "default",
    *,
    concurrency: list[int] | None = None,
    rates: list[float] | None = None,
    requests_per_level: int | Callable[[int], int] = 16,
    states: list[str] | None = None,
    deadline_s: float | None = None,
    timeout_s: float = 300.0,
    progress: bool = True,
    **extra,
) -> list[LevelResult]:
    """Load-test a LeanServe ingress: a closed-loop level per concurrency, then an open-loop level per rate.

    `requests_per_level` is a number or a function of the level's concurrency (e.g. `lambda c: 4 * c`).
    `extra` goes into every request body (n, max_tokens). Each level starts where the last one's states
    ended, so levels do not replay states the server has just cached.
    """
    states = states if states is not None else load_default_states()
    count = requests_per_level if callable(requests_per_level) else (lambda _c: requests_per_level)
    results: list[LevelResult] = []
    offset = 0
    biggest = max([*(concurrency or []), 1])
    async with AsyncLeanServeClient(url, timeout_s=timeout_s, max_connections=max(biggest, 64)) as client:

        async def send(state: str) -> GenerateResult:
            return await client.generate(state, model, **extra)

        for level in concurrency or []:
            n = count(level)
            results.append(await closed_loop(send, states, level, n, offset=offset, deadline_s=deadline_s, progress=progress))
            offset += n
        for rate in rates or []:
            n = count(1)
            results.append(await open_loop(send, states, rate, n, offset=offset, progress=progress))
            offset += n
    return results


def load_default_states() -> list[str]:
    from leanserve_client.states import load_states

    return load_states()
