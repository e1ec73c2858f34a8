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
        # Serve's internal request id is the caller's own request's: the calls one request fans out (the batch
        # route's items) share it. So in-flight calls are a list per id, and choices are keyed by the call.
        self._in_flight: dict[str, list[tuple[ReplicaID, int]]] = {}  # internal id -> [(replica, sequences)]
        # id(call metadata) -> (replica, sequences, when, the metadata: held so that its id is not reused)
        self._chosen: dict[int, tuple[ReplicaID, int, float, Any]] = {}

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
        own_id = id(pending_request.metadata) if pending_request else None
        now = time.monotonic()
        # A request cancelled while it waited to be routed gets no hook: its choice lapses.
        self._chosen = {rid: c for rid, c in self._chosen.items() if now - c[2] < CHOICE_LAPSES_S}
        for request_id, (replica, sequences, _, _) in self._chosen.items():
            if request_id != own_id and replica.unique_id in loads:
                loads[replica.unique_id] += sequences
        ranks = [[by_id[i] for i in rank] for rank in choose_ranks(key, loads, self._load_cap)]
        if pending_request is not None and ranks:
            # Serve takes the first rank's replica unless it is full; the hooks below settle where it went.
            self._chosen[own_id] = (ranks[0][0].replica_id, self._sequences_of(payload), now, pending_request.metadata)
        return ranks

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        self._chosen.pop(id(pending_request.metadata), None)
        sequences = self._sequences_of(_request_payload(pending_request))
        self._in_flight.setdefault(pending_request.metadata.internal_request_id, []).append((replica_id, sequences))
        self._sequences[replica_id] = self._sequences.get(replica_id, 0) + sequences

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        # Also called for requests a replica rejected (never routed): those are not in the map, and their
        # choice lapses (CHOICE_LAPSES_S).
        calls = self._in_flight.get(internal_request_id, [])
        match = next((c for c in calls if c[0] == replica_id), None)
        if match is None:
            return
        calls.remove(match)
        if not calls:
            del self._in_flight[internal_request_id]
        left = self._sequences.get(replica_id, 0) - match[1]
        if left > 0:
            self._sequences[replica_id] = left
        else:
            self._sequences.pop(replica_id, None)

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: Any = None) -> None:
        """Hand the chosen replica to the call it was chosen for. Serve's own lookup is by internal request id,
        which the calls one request fans out share, so it would hand every choice to the first of them and
        leave the others waiting for retries (seconds each); they are told apart by their metadata object."""
        if request_metadata is not None:
            for pending in self._pending_requests_to_fulfill:
                if pending.metadata is request_metadata and not pending.future.done():
                    self._cancel_routing_task_for_pending_request(pending)
                    self._record_queue_wait_time(pending)
                    pending.future.set_result(replica)
                    self._remove_pending_request_from_indices(pending)
                    return
        super()._fulfill_next_pending_request(replica, request_metadata)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._sequences.pop(replica_id, None)
        self._chosen = {rid: chosen for rid, chosen in self._chosen.items() if chosen[0] != replica_id}
