"""Which replica a routing key goes to: rendezvous (highest-random-weight) hashing with a per-replica load cap.

Each key ranks every replica by a hash of (key, replica id) and prefers its top one; when a replica joins or
leaves, only the keys whose top replica changed move (about 1/n of them), so the other replicas' prefix caches
stay warm. A preferred replica at or over its cap gets no more of that key's requests for now: they go to the
least-loaded replica. The cap is per replica, unlike Ray Serve LLM's PrefixCacheAffinityRouter, whose test
compares the fleet's most and least loaded replicas, so one hot replica switched affinity off for every key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence


def _weight(key: str, replica: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\0{replica}".encode(), digest_size=8).digest(), "big")


def rendezvous_order(key: str, replicas: Sequence[str]) -> list[str]:
    """`replicas` from the key's most to least preferred."""
    return sorted(replicas, key=lambda replica: _weight(key, replica), reverse=True)


def choose_ranks(key: str | None, loads: Mapping[str, int], cap: int) -> list[list[str]]:
    """Replica ids in ranks, the most preferred rank first (Serve tries each in turn; within a rank it takes
    the replica with the shortest queue). `loads` maps every candidate to its sequences in flight."""
    if not loads:
        return []
    by_load = sorted(loads, key=lambda replica: loads[replica])
    if key is None:
        return [by_load]
    preferred = rendezvous_order(key, list(loads))[0]
    if loads[preferred] >= cap:
        return [by_load]  # spill: the least-loaded replica, whoever it is
    return [[preferred], [r for r in by_load if r != preferred]]
