"""The prefix_affinity request router of a bundle: Ray Serve's custom RequestRouter API (Serve 2.60).

A request's routing key (logic/routing_key.py, carried on the TacticRequest) picks its replica by rendezvous
hashing (logic/affinity.py), so a theorem's states meet the KV cache of their shared prefix; a replica at its
load cap spills the key's requests to the least-loaded replica until it has room again.

Load is counted in sequences (requests x n) that this caller has in flight on each replica, kept from Serve's
own hooks (`on_request_routed`, `on_request_completed`), plus the requests chosen but not yet confirmed (so a
burst that arrives at once sees its own first members): routing never waits on a probe or a `ray.get`. Serve's queue-length cache still guards each replica's
`max_ongoing_requests` (a full replica rejects, and Serve tries the next rank).

Selected per bundle with `deployment.request_router: prefix_affinity` (deployments/options.py).
"""

from __future__ import annotations

import time
from typing import Any

from ray.serve.request_router import (
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

from logic.affinity import choose_ranks

ROUTER_CLASS_PATH = "deployments.prefix_router:PrefixAffinityRouter"
# Routing takes milliseconds; a choice older than this belongs to a request that was cancelled meanwhile.
CHOICE_LAPSES_S = 30.0


def _request_payload(pending_request: PendingRequest | None) -> Any:
    """The TacticRequest / ProofRequest of a bundle call (`answer.remote(request)`), or None."""
    if pending_request is None:
        return None
    for arg in pending_request.args:
        if hasattr(arg, "routing_key"):
            return arg
    return None


class PrefixAffinityRouter(LocalityMixin, MultiplexMixin, RequestRouter):
    # No FIFOMixin: it hands a chosen replica to the oldest pending request, whatever that one's key.

    def initialize_state(self, load_cap: int = 64, default_n: int = 1) -> None:
        self._load_cap = load_cap
        self._default_n = default_n
        self._sequences: dict[ReplicaID, int] = {}
        self._in_flight: dict[str, tuple[ReplicaID, int]] = {}  # internal request id -> (replica, sequences)
        self._chosen: dict[str, tuple[ReplicaID, int, float]] = {}  # chosen, not yet routed (and when)

    def _sequences_of(self, payload: Any) -> int:
        n = getattr(payload, "n", None)
        return n or self._default_n

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        payload = _request_payload(pending_request)
        key = getattr(payload, "routing_key", None)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        loads = {unique_id: self._sequences.get(r.replica_id, 0) for unique_id, r in by_id.items()}
        own_id = pending_request.metadata.internal_request_id if pending_request else None
        now = time.monotonic()
        # A request cancelled while it waited to be routed gets no hook: its choice lapses.
        self._chosen = {rid: c for rid, c in self._chosen.items() if now - c[2] < CHOICE_LAPSES_S}
        for request_id, (replica, sequences, _) in self._chosen.items():
            if request_id != own_id and replica.unique_id in loads:
                loads[replica.unique_id] += sequences
        ranks = [[by_id[i] for i in rank] for rank in choose_ranks(key, loads, self._load_cap)]
        if pending_request is not None and ranks:
            # Serve takes the first rank's replica unless it is full; the hooks below settle where it went.
            self._chosen[own_id] = (ranks[0][0].replica_id, self._sequences_of(payload), now)
        return ranks

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        request_id = pending_request.metadata.internal_request_id
        self._chosen.pop(request_id, None)
        sequences = self._sequences_of(_request_payload(pending_request))
        self._in_flight[request_id] = (replica_id, sequences)
        self._sequences[replica_id] = self._sequences.get(replica_id, 0) + sequences

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        # Also called for requests a replica rejected (never routed): those are not in the map.
        self._chosen.pop(internal_request_id, None)
        routed = self._in_flight.pop(internal_request_id, None)
        if routed is not None:
            replica, sequences = routed
            left = self._sequences.get(replica, 0) - sequences
            if left > 0:
                self._sequences[replica] = left
            else:
                self._sequences.pop(replica, None)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._sequences.pop(replica_id, None)
        self._chosen = {rid: chosen for rid, chosen in self._chosen.items() if chosen[0] != replica_id}
