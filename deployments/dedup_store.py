"""The shared memory of cross-call deduplication: one small Serve deployment that every ingress replica
asks, so a tactic returned through one replica is skipped by all of them.

One replica on purpose (the state lives in it; deployments/options.py sizes it); its methods never await, so each call is atomic on the
replica's event loop. If it restarts, the memory starts empty: deduplication is best effort, never a
reason to fail a request (the ingress then returns the candidates unfiltered).

It receives digests only (logic/dedup.py): the key of (bundle, caller, state, prefix) and one per tactic,
so a call is a few hundred bytes whatever the request held; its queue is bounded (deployments/options.py).
"""

from __future__ import annotations

from core.config import AppArgs
from core.log_setup import configure_logging
from logic.dedup import ReturnedTactics


def needs_dedup_store(args: AppArgs) -> bool:
    return any(bundle.dedup.enabled for bundle in args.models)


class DedupStore:
    def __init__(self, args: AppArgs):
        configure_logging("dedup-store")
        self._by_bundle = {
            bundle.name: ReturnedTactics(
                bundle.dedup.max_inputs, bundle.dedup.ttl_s, bundle.dedup.max_tactics_per_input
            )
            for bundle in args.models
            if bundle.dedup.enabled
        }

    def take_new(self, bundle: str, key: bytes, tactics: list[bytes]) -> list[bytes]:
        """The tactic digests of `tactics` not returned before under `key`; records them."""
        return self._by_bundle[bundle].take_new(key, tactics)

    def sizes(self) -> dict[str, int]:
        """Inputs remembered per bundle (for tests and debugging)."""
        return {name: len(memory) for name, memory in self._by_bundle.items()}
