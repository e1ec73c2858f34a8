"""The cluster path on this machine: Ray's own `serve run CONFIG.yaml` with the LeanServe builder.

The YAML's `args` go through Serve's validation into AppArgs (the builder's annotation), exactly as
`serve run serve_config.yaml` on a GPU cluster; here the bundle is the tiny random model on vLLM's CPU build.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from serve_app import GENERATOR, build_test_app_args, free_port
from support import LEANCOPILOT_HEADERS, REPO_ROOT, descendants, leancopilot_bytes, still_running

from deployments.launch import wait_until_healthy

pytestmark = pytest.mark.serve


def test_serve_run_config_file_serves_leancopilot(tiny_llama, tiny_encoder, tmp_path):
    import psutil

    port = free_port()
    args = build_test_app_args(tiny_llama, tiny_encoder).model_dump(mode="json")
    config = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{"name": "leanserve", "route_prefix": "/", "import_path": "deployments.app:build_app", "args": args}],
    }
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    serve_cli = shutil.which("serve", path=str(Path(sys.executable).parent)) or "serve"
    log_path = tmp_path / "serve.log"
    process = subprocess.Popen(
        [serve_cli, "run", str(path)], cwd=REPO_ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(f"{url}/health", timeout_s=300, still_starting=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{log_path.read_text(errors='replace')[-4000:]}")
        response = httpx.post(
            f"{url}/generate",
            content=leancopilot_bytes({"input": "x : ℕ\n⊢ x + 0 = x", "name": GENERATOR, "prefix": "simp"}),
            headers=LEANCOPILOT_HEADERS,
            timeout=60,
        )
        assert response.status_code == 200
        outputs = response.json()["outputs"]
        assert outputs and all(c["output"].startswith("simp") for c in outputs)
        children = descendants([psutil.Process(process.pid)])
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        deadline = time.time() + 60
        while still_running(children) and time.time() < deadline:
            time.sleep(0.5)
        assert not still_running(children), "serve run left processes behind"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
