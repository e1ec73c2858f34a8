"""Helpers of the scaling, node-loss, metrics and `serve deploy` tests: a one-bundle tiny-vLLM app,
replica counts from serve.status(), bounded polling, load from concurrent LeanCopilot clients, and `make serve`'s
launcher started as a user starts it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_app import GENERATOR
from support import LEANCOPILOT_HEADERS, REPO_ROOT, lean_goals, leancopilot_bytes

from core.config import AppArgs

# Replicas and handles report their queues every second (Serve's default is 10 s), so decisions come fast.
FAST_AUTOSCALING_METRICS_ENV = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


def start_launcher(args: list[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None):
    """`python -m deployments.launch ARGS` in its own session, logging to `log_path`; returns the process once it
    says it is ready, or fails the test with the log's tail."""
    process = subprocess.Popen([sys.executable, "-m", "deployments.launch", *args], cwd=REPO_ROOT, env=env,
                               stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    started = time.perf_counter()
    while "LeanServe ready on" not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.perf_counter() - started > timeout_s:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"launcher never got ready:\n{log_path.read_text(errors='replace')[-5000:]}")
        time.sleep(1)
    return process


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """Set variables for the block; a local Ray started inside it inherits them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def tiny_bundle_args(tiny_llama, *, deployment: dict[str, Any] | None = None, ingress: dict[str, Any] | None = None) -> AppArgs:
    """One tiny vLLM bundle; `deployment` overrides its Serve settings (autoscaling, resources)."""
    return AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": 30, **(ingress or {})},
            # No n x max_tokens budget: the metrics test asks for a request past the deadline on purpose.
            "limits": {"max_tokens": 8192, "per_class": {"interactive": {"max_generated_tokens": 0}}},
            "models": [
                {
                    "name": GENERATOR,
                    "model": str(tiny_llama),
                    "prompt": {"template": "{state}:::"},
                    "sampling": {"n": 2, "max_tokens": 8, "stop": []},
                    "engine_args": {
                        "dtype": "float32",
                        "max_model_len": 8192,
                        "kv_cache_memory_bytes": 128 << 20,
                        "max_num_seqs": 16,
                        "enforce_eager": True,
                    },
                    "deployment": {"num_cpus": 0.5, **(deployment or {})},
                }
            ],
        }
    )


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, period_s: float = 1.0) -> Any:
    """Poll until `predicate()` is truthy; fail with `what` (and the last value) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # a cluster in motion answers with errors for a while
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(period_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}")


def report_figure(name: str, seconds: float) -> None:
    """A measured duration, printed for the issue's notes (`pytest -s`); never asserted (timings are noisy here)."""
    print(f"\nFIGURE {name}: {seconds:.1f} s")


def replica_states(app_name: str, deployment_name: str) -> dict[str, int]:
    """Replica counts by state ("RUNNING", "STARTING", ...) as Serve's controller reports them."""
    from ray import serve

    status = serve.status().applications[app_name].deployments[deployment_name]
    return {str(getattr(state, "value", state)): count for state, count in status.replica_states.items() if count}


def generate(url: str, timeout_s: float = 60, **payload: Any) -> httpx.Response:
    body = {"input": "x : ℕ\n⊢ x + 0 = x", "name": GENERATOR, **payload}
    return httpx.post(f"{url}/generate", content=leancopilot_bytes(body), headers=LEANCOPILOT_HEADERS, timeout=timeout_s)


class LoadGenerator:
    """`clients` threads sending /generate back to back (real goals, long answers) until stopped."""

    def __init__(self, url: str, clients: int, max_tokens: int = 256):
        self.url, self.max_tokens = url, max_tokens
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, index: int) -> None:
        goals = lean_goals(8)
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                body = {"input": goals[index % len(goals)], "name": GENERATOR, "max_tokens": self.max_tokens}
                try:
                    response = client.post(f"{self.url}/generate", content=leancopilot_bytes(body), headers=LEANCOPILOT_HEADERS)
                    self.statuses.append(response.status_code)
                except httpx.HTTPError:
                    self.statuses.append(-1)

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)
