"""A local multi-node Ray cluster (several raylets on this machine): bundles are placed by resources, and
when the node holding a replica is lost, Serve reschedules it on the remaining node and /generate recovers.

A custom resource, `fake_gpu`, stands in for GPUs: the head node has none, so the bundle can only run on a
worker node, as a GPU bundle can only run on a GPU node. The HTTP proxy and the ingress live on the head.
"""

from __future__ import annotations

import time

import pytest
from cluster_support import generate, report_figure, tiny_bundle_args, wait_for
from serve_app import APP_NAME, free_port

pytestmark = pytest.mark.serve

FAKE_GPU = "fake_gpu"


def replica_node_ids(deployment: str) -> set[str]:
    """Nodes of the ALIVE replica actors of `deployment` (from the GCS actor table)."""
    import ray

    class_name = f"ServeReplica:{APP_NAME}:{deployment}"
    return {
        info["Address"]["NodeID"]
        for info in ray._private.state.actors().values()
        if info["ActorClassName"] == class_name and info["State"] == "ALIVE"
    }


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    # Small nodes: the head takes the controller, the proxy and the ingress; each worker fits one replica.
    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [local.add_node(num_cpus=1, resources={FAKE_GPU: 1}) for _ in range(2)]
    local.wait_for_nodes()
    ray.init(address=local.address)
    try:
        yield local, workers
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            local.shutdown()


def test_bundle_runs_where_its_resource_is_and_survives_node_loss(cluster, tiny_llama):
    from ray import serve

    from deployments.app import build_app

    local, workers = cluster
    args = tiny_bundle_args(tiny_llama, deployment={"resources": {FAKE_GPU: 1}})
    deployment = args.models[0].deployment_name
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    assert generate(url).status_code == 200

    worker_ids = {node.node_id: node for node in workers}
    (first_node,) = replica_node_ids(deployment)
    assert first_node in worker_ids, "the bundle must run on a node with its resource, not on the head"

    lost = time.monotonic()
    local.remove_node(worker_ids[first_node])
    # Serve notices the dead replica and starts a new one on the node that still has the resource.
    wait_for(lambda: generate(url, timeout_s=30).status_code == 200, timeout_s=300, what="/generate 200 after node loss")
    report_figure("node lost -> /generate 200 again (tiny vLLM engine start included)", time.monotonic() - lost)
    (survivor,) = set(worker_ids) - {first_node}
    assert replica_node_ids(deployment) == {survivor}
