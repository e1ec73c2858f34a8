"""The `make serve` launcher fails fast, before Ray starts, on what a user can fix."""

import subprocess
import sys

from support import REPO_ROOT


def test_typo_in_a_config_file_fails_the_launcher_at_start(tmp_path):
    bad = (REPO_ROOT / "configs/local.yaml").read_text().replace("max_num_seqs", "max_num_seq")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    result = subprocess.run(
        [sys.executable, "-m", "deployments.launch", str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "engine_args.max_num_seq" in result.stderr and "Extra inputs are not permitted" in result.stderr


def test_launcher_refuses_a_busy_port_before_starting_anything():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "deployments.launch", "configs/local.yaml", "--port", str(port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr
