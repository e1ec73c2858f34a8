"""`serve deploy` to a running cluster: `ray start --head` (its own ports and temp dir, token
authentication on), `serve deploy CONFIG.yaml --address`, LeanCopilot's request over HTTP.

Only this cluster is stopped at the end, by its own processes: `ray stop` would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from cluster_support import generate, tiny_bundle_args
from serve_app import free_port
from support import REPO_ROOT, descendants, processes_matching, still_running

from deployments.launch import wait_until_healthy

pytestmark = pytest.mark.serve

BIN = Path(sys.executable).parent


def cli(name: str) -> str:
    return shutil.which(name, path=str(BIN)) or name


def run(args: list[str], env: dict[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


def stop_cluster(temp_dir: str) -> None:
    """Stop the processes of the cluster started in `temp_dir` (their command lines name it) and their children."""
    import psutil

    roots = processes_matching(temp_dir)
    everything = roots + descendants(roots)
    for proc in everything:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    deadline = time.time() + 30
    while still_running(everything) and time.time() < deadline:
        time.sleep(0.5)
    for proc in still_running(everything):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture()
def ray_cluster():
    """A head node of its own; yields (dashboard address, environment with its token)."""
    # Short path: Ray's Unix sockets live under the temp dir and their paths are length-limited.
    temp_dir = tempfile.mkdtemp(prefix="lsdeploy-", dir="/tmp")
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_DEDUP_LOGS": "0",
    }
    dashboard_port = free_port()
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard_port,
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    start = [
        cli("ray"), "start", "--head", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp_dir}", "--disable-usage-stats", *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    try:
        started = run(start, env)
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"http://127.0.0.1:{dashboard_port}", env
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_serve_deploy_to_a_running_cluster(ray_cluster, tiny_llama, tmp_path):
    address, env = ray_cluster
    port = free_port()
    config = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "leanserve",
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": tiny_bundle_args(tiny_llama).model_dump(mode="json"),
            }
        ],
    }
    path = tmp_path / "deploy_config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))

    deployed = run([cli("serve"), "deploy", str(path), "--address", address], env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", timeout_s=300)
        assert generate(url).status_code == 200

        status = run([cli("serve"), "status", "--address", address], env)
        assert status.returncode == 0, status.stderr
        assert yaml.safe_load(status.stdout)["applications"]["leanserve"]["status"] == "RUNNING"

        # Authentication stays on: without the token (none in the environment or under HOME), the CLI is refused.
        anonymous = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
        anonymous["HOME"] = str(tmp_path)
        refused = run([cli("serve"), "status", "--address", address], anonymous)
        assert refused.returncode != 0 and "RUNNING" not in refused.stdout
    finally:
        run([cli("serve"), "shutdown", "-y", "--address", address], env, timeout_s=120)
