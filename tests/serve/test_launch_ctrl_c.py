"""Ctrl-C in a terminal: SIGINT reaches the launcher's whole process group, Ray's processes included.

The launcher runs the tiny test model from a config file, started by a shell in the background (which
ignores SIGINT unless the launcher installs its own handler), and must still stop everything cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from serve_app import build_test_app_args, free_port
from support import REPO_ROOT, descendants, still_running

from deployments.launch import wait_until_healthy

pytestmark = pytest.mark.serve


def test_ctrl_c_to_the_process_group_stops_everything(tiny_llama, tiny_encoder, tmp_path):
    port = free_port()
    config = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "leanserve",
                "import_path": "deployments.app:build_app",
                "args": build_test_app_args(tiny_llama, tiny_encoder).model_dump(mode="json"),
            }
        ],
    }
    path = tmp_path / "launch.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    log_path = tmp_path / "launch.log"
    # A background job of a script starts with SIGINT ignored; the shell itself ignores it too, and reports the
    # launcher's own exit status.
    launch = f'"{sys.executable}" -m deployments.launch "{path}" >"{log_path}" 2>&1'
    shell = subprocess.Popen(["sh", "-c", f"trap '' INT; {launch} & wait $!"], cwd=REPO_ROOT, start_new_session=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", timeout_s=300, still_starting=lambda: shell.poll() is None)
        tree = descendants([psutil.Process(shell.pid)])
        assert any("deployments.launch" in " ".join(p.cmdline()) for p in tree)
        os.killpg(shell.pid, signal.SIGINT)
        assert shell.wait(timeout=120) == 0
        deadline = time.time() + 60
        while still_running(tree) and time.time() < deadline:
            time.sleep(0.5)
        assert not still_running(tree), "processes outlived Ctrl-C"
        assert "stopping" in log_path.read_text(errors="replace")
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
