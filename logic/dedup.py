"""Cross-call deduplication, as the seed's HFTacticGenerator does it: once a tactic was returned for an
input, later calls for that input skip it and return only new tactics.

Pure and bounded: a cachetools TTLCache per bundle holds at most `max_inputs` inputs, each forgotten
`ttl_s` seconds after it was first seen, and at most `max_tactics_per_input` tactics per input. The shared
holder that makes it consistent across replicas is deployments/dedup_store.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache


def dedup_key(state: str, prefix: str) -> str:
    """One key per (input, prefix): the same state with another prefix asks for other tactics."""
    return f"{prefix}\x00{state}"


class ReturnedTactics:
    """Which tactics were already returned for which input, for one bundle."""

    def __init__(self, max_inputs: int, ttl_s: float, max_tactics_per_input: int,
                 timer: Callable[[], float] = time.monotonic):
        self._seen: TTLCache[str, dict[str, None]] = TTLCache(maxsize=max_inputs, ttl=ttl_s, timer=timer)
        self._max_tactics = max_tactics_per_input

    def take_new(self, key: str, tactics: list[str]) -> list[str]:
        """The tactics not returned before for `key`, in their order; they count as returned from now on."""
        seen = self._seen.get(key)
        if seen is None:
            seen = {}
            self._seen[key] = seen  # the entry's lifetime starts at the first call for this input
        fresh = []
        for tactic in tactics:
            if tactic in seen:
                continue
            fresh.append(tactic)
            seen[tactic] = None
            while len(seen) > self._max_tactics:  # dicts keep insertion order: forget the oldest
                del seen[next(iter(seen))]
        return fresh

    def __len__(self) -> int:
        return len(self._seen)
