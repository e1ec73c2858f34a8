"""The Ollama sample window: one engine request of n candidates answers a run of identical requests.

LLMLean's Ollama client asks for its n samples one request after another, each with the same prompt (the
second at temperature 0), and keeps the distinct ones. Sampling the bundle's n candidates once and handing
them out one per request costs one engine request instead of n, and gives LLMLean n distinct tactics where n
independent samples of a small model often repeat one. Entries are scoped per client (RequestContext.client),
live `window_s`, and at most `max_entries` are kept (the oldest go first).

Pure asyncio with an injected clock, so it is unit-tested on its own.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from core.request_context import Clock
from logic.coalescing import SingleFlight

DEFAULT_MAX_ENTRIES = 4096


@dataclass
class _Entry:
    answers: deque[str]
    expires_at: float


class SampleBank:
    def __init__(self, window_s: float, clock: Clock = time.monotonic, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.window_s = window_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._fills: SingleFlight[None] = SingleFlight()
        self.fills = 0  # engine requests made (the rest of the answers came from the bank)

    async def take(self, key: Hashable, sample: Callable[[], Awaitable[list[str]]]) -> str | None:
        """The next banked answer for `key`, sampling a fresh batch when there is none; None if the batch was
        empty. Concurrent callers with one key share one batch (and get distinct answers from it)."""
        if self.window_s <= 0:
            answers = await sample()
            self.fills += 1
            return answers[0] if answers else None
        answer = self._pop(key)
        if answer is not None:
            return answer

        async def fill() -> None:
            answers = await sample()
            self.fills += 1
            self._store(key, answers)

        await self._fills.run(key, fill)
        return self._pop(key)

    def _pop(self, key: Hashable) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self.clock() or not entry.answers:
            del self._entries[key]
            return None
        answer = entry.answers.popleft()
        if not entry.answers:
            del self._entries[key]
        return answer

    def _store(self, key: Hashable, answers: list[str]) -> None:
        if not answers:
            return
        self._entries[key] = _Entry(deque(answers), self.clock() + self.window_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
