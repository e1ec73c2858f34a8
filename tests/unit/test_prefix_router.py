"""The prefix_affinity router's bookkeeping over Serve's hooks, driven without a cluster (fake replicas)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from core.payloads import TacticRequest
from deployments.prefix_router import PrefixAffinityRouter
from logic.affinity import rendezvous_order


def router(cap: int = 8) -> PrefixAffinityRouter:
    r = PrefixAffinityRouter.__new__(PrefixAffinityRouter)  # Serve builds it with a live deployment; we need none
    r.initialize_state(load_cap=cap, default_n=4)
    return r


def replica(name: str):
    from ray.serve._private.common import DeploymentID
    from ray.serve.request_router import ReplicaID

    return SimpleNamespace(replica_id=ReplicaID(name, DeploymentID("bundle-tiny", "app")))


def pending(request_id: str, key: str, n: int | None = None):
    payload = TacticRequest(request_id, "⊢ p", n=n, routing_key=key)
    return SimpleNamespace(args=[payload], kwargs={}, metadata=SimpleNamespace(internal_request_id=request_id))


def first_choice(r, replicas, request) -> str:
    ranks = asyncio.run(r.choose_replicas(replicas, request))
    return ranks[0][0].replica_id.unique_id


def test_a_burst_sees_its_own_earlier_members_and_spills_past_the_cap():
    r, replicas = router(cap=8), [replica("a"), replica("b")]
    preferred = rendezvous_order("k", ["a", "b"])[0]
    other = ({"a", "b"} - {preferred}).pop()
    # Three requests of 4 sequences arrive before Serve confirms any: the third must see the first two.
    choices = [first_choice(r, replicas, pending(f"r{i}", "k")) for i in range(3)]
    assert choices == [preferred, preferred, other]


def test_routed_and_completed_requests_move_the_load():
    r, replicas = router(cap=8), [replica("a"), replica("b")]
    preferred = rendezvous_order("k", ["a", "b"])[0]
    by_name = {x.replica_id.unique_id: x for x in replicas}
    for i in range(2):
        request = pending(f"r{i}", "k", n=4)
        first_choice(r, replicas, request)
        r.on_request_routed(request, by_name[preferred].replica_id, None)
    assert first_choice(r, replicas, pending("r2", "k")) != preferred  # at its cap
    r.on_request_completed(by_name[preferred].replica_id, "r0")
    r.on_request_completed(by_name[preferred].replica_id, "r2")  # chosen, then rejected: never routed
    assert first_choice(r, replicas, pending("r3", "k")) == preferred  # room again
    r.on_request_completed(by_name[preferred].replica_id, "never-seen")  # harmless


def test_a_bundle_selects_its_router_in_config():
    from ray.serve.config import RequestRouterConfig

    from core.config import BundleConfig, IngressSettings
    from deployments.options import bundle_spec, deployment_options

    default = BundleConfig(name="m", model="x")
    assert "request_router_config" not in deployment_options(bundle_spec(default), IngressSettings())
    affine = BundleConfig(name="m", model="x", engine_args={"max_num_seqs": 12}, sampling={"n": 3},
                          deployment={"request_router": "prefix_affinity"})
    config = deployment_options(bundle_spec(affine), IngressSettings())["request_router_config"]
    assert isinstance(config, RequestRouterConfig)
    assert config.request_router_class == "deployments.prefix_router:PrefixAffinityRouter"
    assert config.request_router_kwargs == {"load_cap": 12, "default_n": 3}


def test_calls_fanned_out_by_one_request_are_counted_apart():
    # Serve gives every call of one ingress request the same internal id (the batch route's items).
    r, replicas = router(cap=8), [replica("a"), replica("b")]
    a = replicas[0].replica_id
    items = [pending("same-id", "k", n=4) for _ in range(2)]
    for item in items:
        r.on_request_routed(item, a, None)
    assert r._sequences[a] == 8
    r.on_request_completed(a, "same-id")
    assert r._sequences[a] == 4  # one of the two finished, not both
    r.on_request_completed(a, "same-id")
    assert a not in r._sequences
