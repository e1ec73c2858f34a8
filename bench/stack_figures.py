"""Start-up, memory and latency of the whole `make serve` stack, measured as a user meets them.

Usage: python -m bench.stack_figures [--config configs/local.yaml] [--requests 8] [--port 23338] [--label NAME]

It starts the launcher as `make serve` does, reads the engine's start and warm-up times from its log,
measures time to ready (process start to GET /health 200), the memory of the whole process tree (PSS, so
shared pages count once), and the latency of sequential LeanCopilot /generate calls with n=4 on real
miniF2F states. Then it stops the stack with Ctrl-C (SIGINT) and times that too. Results go to
bench/results/stack-<date>[-<label>].json.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from deployments.launch import wait_until_healthy

REPO_ROOT = Path(__file__).resolve().parents[1]
GOALS = REPO_ROOT.parent / "shared" / "data" / "minif2f_goals.jsonl"


def tree_memory_gib(root: psutil.Process) -> dict[str, float]:
    pss = rss = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss += getattr(info, "pss", info.rss)
        rss += info.rss
    return {"pss_gib": round(pss / 2**30, 2), "rss_sum_gib": round(rss / 2**30, 2)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_stack(config: str, port: int) -> tuple[subprocess.Popen, str, Path]:
    """`make serve`'s launcher on `port`, in its own session (SIGINT stops the whole stack), once /health is 200.
    On a failed start the launcher log's tail goes to stderr and the error is raised. Returns the launcher,
    the base URL and the launcher's log (the engine start and warm-up times are read from it)."""
    log_path = Path(tempfile.mkstemp(suffix="-stack.log")[1])
    launcher = subprocess.Popen(
        [sys.executable, "-m", "deployments.launch", config, "--port", str(port)],
        cwd=REPO_ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", timeout_s=900, still_starting=lambda: launcher.poll() is None)
    except (RuntimeError, TimeoutError):
        print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(timeout=180)
        raise
    return launcher, url, log_path


def write_result(kind: str, label: str, result: dict) -> Path:
    """bench/results/<kind>-<date>[-<label>].json"""
    out_dir = REPO_ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"-{label}" if label else ""
    out = out_dir / f"{kind}-{datetime.now(UTC):%Y-%m-%d}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--port", type=int, default=23338)
    parser.add_argument("--model", default="default")
    parser.add_argument("--label", default="", help="suffix of the results file, to keep variants apart")
    options = parser.parse_args()

    subprocess.run([sys.executable, "-m", "models.prepare", "--out", ".models"], cwd=REPO_ROOT, check=True)
    started = time.perf_counter()
    try:
        launcher, url, log_path = start_stack(options.config, options.port)
    except (RuntimeError, TimeoutError):
        return 1
    ready_s = time.perf_counter() - started
    log = log_path.read_text(errors="replace")
    engine_start = [float(x) for x in re.findall(r"vLLM engine for \S+ started in ([\d.]+)s", log)]
    warm_up = [float(x) for x in re.findall(r"engine warm-up took ([\d.]+)s", log)]
    memory_idle = tree_memory_gib(psutil.Process(launcher.pid))

    states = [json.loads(line)["goal"] for line in GOALS.open(encoding="utf-8")][: options.requests]
    latencies, candidates = [], []
    with httpx.Client(base_url=url, timeout=600) as client:
        for state in states:
            body = json.dumps({"input": state, "name": options.model, "prefix": ""}, ensure_ascii=False)
            t0 = time.perf_counter()
            response = client.post("/generate", content=body.encode(), headers={"Content-Type": "application/json"})
            latencies.append(time.perf_counter() - t0)
            response.raise_for_status()
            candidates.append(len(response.json()["outputs"]))
    memory_busy = tree_memory_gib(psutil.Process(launcher.pid))

    t0 = time.perf_counter()
    launcher.send_signal(signal.SIGINT)
    exit_code = launcher.wait(timeout=180)
    stop_s = time.perf_counter() - t0

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": options.config,
        "label": options.label,
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "time_to_ready_s": round(ready_s, 1),
        "engine_start_s": engine_start,
        "engine_warm_up_s": warm_up,
        "memory_after_ready": memory_idle,
        "memory_after_requests": memory_busy,
        "generate_n4_latency_s": {
            "requests": len(latencies),
            "p50": round(statistics.median(latencies), 3),
            "p90": round(percentile(latencies, 0.9), 3),
            "max": round(max(latencies), 3),
            "mean_candidates": round(statistics.mean(candidates), 2),
        },
        "ctrl_c_stop_s": round(stop_s, 1),
        "launcher_exit_code": exit_code,
    }
    write_result("stack", options.label, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
