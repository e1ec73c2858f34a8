"""LeanProgress scorer: dynamic batching against one request at a time, and its cost per /generate.

Usage: python -m bench.scorer_batching --checkpoint DIR [--config configs/local.yaml] [--concurrency 16]
       [--rounds 6] [--requests 8] [--skip-generate] [--label NAME]

1. Throughput. Two deployments of the same checkpoint on one local Ray Serve, equal resources: one with
   `@serve.batch` (max_batch_size 32) and one with max_batch_size 1. `--concurrency` clients each send a
   /generate-sized scoring call (4 candidates of a real miniF2F state), `--rounds` times, alternating the two
   deployments so machine noise hits both; the ratio of their throughputs comes from this same run.
2. Added latency. The app of `--config` (its first bundle) with this checkpoint as its scorer: sequential
   LeanCopilot /generate calls on real states, use_reward false and true alternating; the difference of the
   medians is what scoring adds to one request.
Results go to bench/results/scorer-<date>[-<label>].json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
CANDIDATES_PER_CALL = 4


def scoring_calls(count: int) -> list[list]:
    """`count` calls of 4 candidates each: real states with real (accepted) tactics from the proof steps."""
    from core.payloads import ScoringInput

    rows = [json.loads(line) for line in (DATA / "minif2f_proofsteps.jsonl").open(encoding="utf-8")]
    tactics = [r["tactic"] for r in rows]
    calls = []
    for i in range(count):
        row = rows[(i * 7) % len(rows)]
        picks = [tactics[(i * 13 + k * 31) % len(tactics)] for k in range(CANDIDATES_PER_CALL - 1)]
        calls.append([ScoringInput(row["state_before"], "", t) for t in [row["tactic"], *picks]])
    return calls


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def one_round(handle, calls: list[list]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(handle.score.remote(f"bench-{i}", call) for i, call in enumerate(calls)))
    return time.perf_counter() - started


async def throughput(handles: dict, concurrency: int, rounds: int) -> dict:
    calls = scoring_calls(concurrency)
    for handle in handles.values():  # warm both (first batches allocate)
        await one_round(handle, calls)
    times: dict[str, list[float]] = {name: [] for name in handles}
    for _ in range(rounds):
        for name, handle in handles.items():
            times[name].append(await one_round(handle, calls))
    # What one /generate pays for scoring when nothing else is in flight: one call of 4 candidates at a time.
    single_calls = []
    for call in calls:
        started = time.perf_counter()
        await handles["batched"].score.remote("bench-single", call)
        single_calls.append(time.perf_counter() - started)
    result: dict = {"one_call_alone_median_s": round(statistics.median(single_calls), 4)}
    for name, handle in handles.items():
        total = sum(times[name])
        stats = await handle.batch_stats.remote()
        result[name] = {
            "requests_per_s": round(concurrency * rounds / total, 2),
            "candidates_per_s": round(concurrency * rounds * CANDIDATES_PER_CALL / total, 1),
            "round_s_median": round(statistics.median(times[name]), 3),
            "mean_batch_size": round(stats["items"] / max(1, stats["batches"]), 2),
        }
    return result


def run_throughput(checkpoint: str, concurrency: int, rounds: int) -> dict:
    import ray
    from ray import serve

    from core.config import IngressSettings, ScorerConfig
    from deployments.options import deployment_options, scorer_spec
    from deployments.scorer_server import ScorerServer

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        handles = {}
        for name, batch in (("batched", 32), ("one_at_a_time", 1)):
            config = ScorerConfig(
                name=name, checkpoint=checkpoint, device="cpu", max_batch_size=batch, deployment={"num_cpus": 0.5}
            )
            app = serve.deployment(ScorerServer).options(**deployment_options(scorer_spec(config), IngressSettings())).bind(config)
            handles[name] = serve.run(app, name=f"bench-{name}", route_prefix=None)
        return asyncio.run(throughput(handles, concurrency, rounds))
    finally:
        serve.shutdown()
        ray.shutdown()


def run_added_latency(checkpoint: str, config_path: str, requests: int) -> dict:
    import httpx
    import ray
    from ray import serve

    from core.config import load_serve_config
    from deployments.app import build_app

    spec = load_serve_config(config_path).applications[0]
    args = spec.args.model_copy(update={"scorers": []})
    os.environ["LEANPROGRESS_MODEL"] = checkpoint  # the path a user takes
    os.environ["LEANPROGRESS_DEVICE"] = "cpu"
    bundle = args.models[0].name
    goals = sorted((json.loads(line)["goal"] for line in (DATA / "minif2f_goals.jsonl").open(encoding="utf-8")), key=len)
    states = goals[:: max(1, len(goals) // requests)][:requests]
    port = free_port()
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name="bench-scored", route_prefix="/", blocking=False)
        latencies: dict[str, list[float]] = {"plain": [], "use_reward": []}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            from deployments.launch import wait_until_healthy

            wait_until_healthy(f"http://127.0.0.1:{port}/health", timeout_s=600)
            client.post("/generate", json={"input": states[0], "name": bundle, "prefix": "", "use_reward": True})
            for state in states:
                for key, use_reward in (("plain", False), ("use_reward", True)):
                    started = time.perf_counter()
                    response = client.post(
                        "/generate", json={"input": state, "name": bundle, "prefix": "", "use_reward": use_reward}
                    )
                    latencies[key].append(time.perf_counter() - started)
                    response.raise_for_status()
        plain, scored = (statistics.median(latencies[k]) for k in ("plain", "use_reward"))
        return {
            "config": config_path,
            "bundle": bundle,
            "requests_each": len(states),
            "plain_median_s": round(plain, 3),
            "use_reward_median_s": round(scored, 3),
            "added_median_s": round(scored - plain, 3),
            "plain_s": [round(v, 3) for v in latencies["plain"]],
            "use_reward_s": [round(v, 3) for v in latencies["use_reward"]],
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="LeanProgress checkpoint folder")
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=8, help="sequential /generate calls of each kind")
    parser.add_argument("--skip-generate", action="store_true", help="only the throughput part")
    parser.add_argument("--label", default="")
    options = parser.parse_args()
    checkpoint = str(Path(options.checkpoint).expanduser().resolve())

    result: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": checkpoint,
        "machine": f"{os.cpu_count()} CPUs, shared with other work (load average {os.getloadavg()[0]:.1f} at start)",
        "concurrency": options.concurrency,
        "candidates_per_call": CANDIDATES_PER_CALL,
    }
    result["throughput"] = run_throughput(checkpoint, options.concurrency, options.rounds)
    batched, single = result["throughput"]["batched"], result["throughput"]["one_at_a_time"]
    result["batching_speedup"] = round(batched["requests_per_s"] / single["requests_per_s"], 2)
    print(json.dumps(result["throughput"], indent=2), f"\nbatching speedup: {result['batching_speedup']}x", flush=True)
    if not options.skip_generate:
        result["generate_latency"] = run_added_latency(checkpoint, options.config, options.requests)
        print(json.dumps({k: v for k, v in result["generate_latency"].items() if not k.endswith("_s")}, indent=2))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = REPO_ROOT / "bench" / "results" / f"scorer-{stamp}{'-' + options.label if options.label else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
