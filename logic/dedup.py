"""Cross-call deduplication, as the seed's HFTacticGenerator does it: once a tactic was returned for an
input, later calls for that input skip it and return only new tactics.

- Scoped per caller: the memory of one caller (`RequestContext.client`: a hash of the API key it presented,
  else its address; deployments/request_middleware.py) never shapes another's answers. Shared by all, a replayed popular state would drain its tactics for
  everyone, and a shrinking answer would tell that someone else asked.
- Stored under digests only: the key is a SHA-256 of (bundle, scope, prefix, state) and each tactic a
  16-byte BLAKE2b digest, so the store never holds a proof state, a key or a tactic, and every entry is
  small whatever the request held: at most `max_inputs` × `max_tactics_per_input` × 16 bytes of digests
  (plus Python's per-entry overhead) per bundle.
- Bounded: a cachetools TTLCache per bundle holds at most `max_inputs` inputs (least recently used dropped
  first), each forgotten `ttl_s` seconds after it was first seen.

Pure; the shared holder that makes it consistent across replicas is deployments/dedup_store.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from cachetools import TTLCache


def dedup_key(bundle: str, scope: str, state: str, prefix: str) -> bytes:
    """One key per (bundle, caller, input, prefix): the same state with another prefix asks for other tactics.
    JSON keeps the parts apart whatever characters they hold."""
    parts = json.dumps([bundle, scope, prefix, state], ensure_ascii=True)
    return hashlib.sha256(parts.encode("ascii")).digest()


def tactic_digest(tactic: str) -> bytes:
    return hashlib.blake2b(tactic.encode("utf-8"), digest_size=16).digest()


class ReturnedTactics:
    """Which tactics (by digest) were already returned for which key, for one bundle."""

    def __init__(self, max_inputs: int, ttl_s: float, max_tactics_per_input: int,
                 timer: Callable[[], float] = time.monotonic):
        self._seen: TTLCache[bytes, dict[bytes, None]] = TTLCache(maxsize=max_inputs, ttl=ttl_s, timer=timer)
        self._max_tactics = max_tactics_per_input

    def take_new(self, key: bytes, tactics: list[bytes]) -> list[bytes]:
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


def skip_returned(tactics: list, fresh_digests: list[bytes], output: Callable[[object], str]) -> list:
    """`tactics` whose digest the store gave back as fresh, in their order."""
    keep = set(fresh_digests)
    return [t for t in tactics if tactic_digest(output(t)) in keep]
