"""Proof search on LeanServe: prefix-cache routing, priorities, and admission at concurrency 64.

Three experiments, each on a real local Ray Serve app (in this process) or a real `vllm serve`:
- routing: the search replay (bench/search_workload.py) on two bundle replicas with prefix_affinity and with
  power_of_two, and on one replica as the reference: prefix-cache hit rate (cached / prompt tokens, from the
  X-LeanServe-* headers) and throughput;
- editor: an editor's requests (one at a time, with think time) alone, beside a search sent as interactive
  (no priorities), and beside the same search sent as batch (priorities): editor p50 and p99;
- c64: 64 concurrent requests once, on LeanServe (`make serve`'s launcher) and on vLLM's OpenAI server:
  served and failed.
Variants are interleaved over `--repeats` (A B C, C B A, ...); every figure is a ratio to its baseline in the same
repeat, reported with its spread. Results go to bench/results/search-<UTC timestamp>.json (never overwritten).
Run under the shared lock: `flock /tmp/leanserve-heavy.lock env PYTHONPATH=$PWD python -m bench.proof_search ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.search_workload import SearchPlan, editor_states, expansions, percentile, spread
from core.config import AppArgs, load_serve_config

RESULTS_DIR = Path(__file__).resolve().parent / "results"
APP_NAME = "search-bench"
ROUTING_VARIANTS = {"one-replica": (1, "power_of_two"), "power-of-two": (2, "power_of_two"),
                    "prefix-affinity": (2, "prefix_affinity")}
EDITOR_VARIANTS = ("alone", "no-priorities", "priorities")


def bench_args(config: str, replicas: int, router: str, block_size: int | None) -> AppArgs:
    """The config's first bundle alone (no encoder), on `replicas` replicas behind `router`."""
    args = load_serve_config(config).applications[0].args.model_dump(exclude_none=True)
    bundle = args["models"][0]
    bundle.pop("encoder", None)
    deployment = bundle.setdefault("deployment", {})
    # Two replicas and the ingress must fit 2 CPUs' worth of Ray resources.
    deployment.update({"num_cpus": min(deployment.get("num_cpus", 0.5), 0.8), "request_router": router,
                       "autoscaling": {"min_replicas": replicas, "max_replicas": replicas}})
    if block_size:
        # The CPU backend's default block is 128 tokens: shorter shared hypotheses would never hit.
        bundle.setdefault("engine_args", {}).setdefault("extra", {})["block_size"] = block_size
    args["models"] = [bundle]
    args.setdefault("ingress", {})["num_cpus"] = 0.1
    args["scorers"] = []
    return AppArgs.model_validate(args)


@contextlib.contextmanager
def local_cluster():
    """One local Ray with Serve for every variant of a run (each variant deploys its own app on it)."""
    import ray
    from ray import serve

    from bench.compare_stacks import free_port

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@contextlib.contextmanager
def local_app(url: str, args: AppArgs):
    """`args` deployed on the running cluster until the block ends (its engines start fresh)."""
    from ray import serve

    from deployments.app import build_app
    from deployments.launch import wait_until_healthy

    started = time.perf_counter()
    serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
    try:
        wait_until_healthy(f"{url}/health", timeout_s=900)
        print(f"  app ready in {time.perf_counter() - started:.0f} s", flush=True)
        yield url
    finally:
        serve.delete(APP_NAME)


async def send(http: httpx.AsyncClient, model: str, state: str, n: int, max_tokens: int,
               headers: dict | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = await http.post("/generate", json={"name": model, "input": state, "prefix": "", "n": n,
                                                      "max_tokens": max_tokens}, headers=headers or {})
        status = response.status_code
    except httpx.HTTPError:
        response, status = None, 0
    record = {"status": status, "latency_s": time.perf_counter() - started}
    if response is not None and status == 200:
        record.update(replica=response.headers.get("X-LeanServe-Replica"),
                      prompt=int(response.headers.get("X-LeanServe-Prompt-Tokens", 0)),
                      cached=int(response.headers.get("X-LeanServe-Cached-Tokens", 0)))
    return record


async def search(http, model: str, plan: SearchPlan, n: int, max_tokens: int, headers: dict | None = None,
                 stop: asyncio.Event | None = None) -> list[dict]:
    """The replay: `parallel_theorems` workers, each keeping `in_flight` expansions of its theorem going.
    With `stop`, theorems are searched again until it is set (a search that saturates the bundle)."""
    records: list[dict] = []
    theorems = expansions(plan)
    gate = asyncio.Semaphore(plan.parallel_theorems)

    async def theorem(states: list[str]) -> None:
        async with gate:
            queue = list(states)

            async def lane() -> None:
                while queue and not (stop is not None and stop.is_set()):
                    records.append(await send(http, model, queue.pop(0), n, max_tokens, headers))

            await asyncio.gather(*(lane() for _ in range(plan.in_flight)))

    while True:
        await asyncio.gather(*(theorem(states) for states in theorems))
        if stop is None or stop.is_set():
            return records


def search_summary(records: list[dict], wall_s: float) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == 200]
    prompt = sum(r["prompt"] for r in ok)
    errors: dict[str, int] = {}
    for r in records:
        if r["status"] != 200:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    replicas: dict[str, int] = {}
    for r in ok:
        replicas[r["replica"]] = replicas.get(r["replica"], 0) + 1
    return {"requests": len(records), "ok": len(ok), "errors": errors, "wall_s": round(wall_s, 2),
            "requests_per_s": round(len(ok) / wall_s, 3) if wall_s else None,
            "hit_rate": round(sum(r["cached"] for r in ok) / prompt, 4) if prompt else None,
            "per_replica": sorted(replicas.values(), reverse=True)}


async def run_search(url: str, model: str, plan: SearchPlan, n: int, max_tokens: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        records = await search(http, model, plan, n, max_tokens)
        return search_summary(records, time.perf_counter() - started)


async def run_editor(url: str, model: str, variant: str, plan: SearchPlan, n: int, max_tokens: int,
                     editor_requests: int, think_s: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        stop = asyncio.Event()
        background = None
        if variant != "alone":
            headers = {"X-Priority": "batch"} if variant == "priorities" else {}
            background = asyncio.create_task(search(http, model, plan, n, max_tokens, headers, stop))
            await asyncio.sleep(think_s * 4)  # let the search fill the engines before the editor asks
        latencies, statuses = [], []
        for state in editor_states(editor_requests):
            record = await send(http, model, state, n, max_tokens)
            statuses.append(record["status"])
            latencies.append(record["latency_s"])
            await asyncio.sleep(think_s)
        stop.set()
        searched = await background if background is not None else []
        ok = [lat for lat, s in zip(latencies, statuses, strict=True) if s == 200]
        return {"editor_ok": len(ok), "editor_errors": len(latencies) - len(ok),
                "p50_s": percentile(ok, 0.5), "p99_s": percentile(ok, 0.99),
                "search_requests": len(searched), "search_ok": sum(r["status"] == 200 for r in searched)}


def interleaved(variants: list[str], repeats: int) -> list[tuple[int, str]]:
    """A B C, C B A, A B C, ...: drift in the machine's load falls on every variant alike."""
    order = []
    for r in range(repeats):
        order += [(r, v) for v in (variants if r % 2 == 0 else variants[::-1])]
    return order


def routing(options, results: dict) -> None:
    plan = SearchPlan(theorems=options.theorems)
    runs: dict[str, list[dict]] = {v: [] for v in ROUTING_VARIANTS}
    with local_cluster() as url:
        for repeat, variant in interleaved(list(ROUTING_VARIANTS), options.repeats):
            replicas, router = ROUTING_VARIANTS[variant]
            print(f"routing {variant} (repeat {repeat})", flush=True)
            args = bench_args(options.config, replicas, router, options.block_size)
            # Each variant starts from fresh engines: no cache carries over from the one before.
            with local_app(url, args):
                summary = asyncio.run(run_search(url, args.models[0].name, plan, options.n, options.max_tokens))
            print(f"  {summary}", flush=True)
            runs[variant].append(summary)
            results["routing"] = {"runs": runs, "ratios": routing_ratios(runs)}
            write(results)


def routing_ratios(runs: dict[str, list[dict]]) -> dict[str, Any]:
    def per_repeat(figure: str, variant: str, base: str) -> list[float | None]:
        return [a[figure] / b[figure] if a.get(figure) and b.get(figure) else None
                for a, b in zip(runs[variant], runs[base], strict=False)]

    return {
        "hit_rate": {v: spread([r["hit_rate"] for r in runs[v]]) for v in runs},
        "throughput_affinity_over_power_of_two": spread(per_repeat("requests_per_s", "prefix-affinity", "power-of-two")),
        "throughput_affinity_over_one_replica": spread(per_repeat("requests_per_s", "prefix-affinity", "one-replica")),
        "throughput_power_of_two_over_one_replica": spread(per_repeat("requests_per_s", "power-of-two", "one-replica")),
        "hit_rate_affinity_over_power_of_two": spread(per_repeat("hit_rate", "prefix-affinity", "power-of-two")),
    }


def editor(options, results: dict) -> None:
    plan = SearchPlan(theorems=options.theorems, parallel_theorems=8, in_flight=2)
    args = bench_args(options.config, options.editor_replicas, "prefix_affinity", options.block_size)
    runs: dict[str, list[dict]] = {v: [] for v in EDITOR_VARIANTS}
    with local_cluster() as url, local_app(url, args):
        for repeat, variant in interleaved(list(EDITOR_VARIANTS), options.repeats):
            print(f"editor {variant} (repeat {repeat})", flush=True)
            summary = asyncio.run(run_editor(url, args.models[0].name, variant, plan, options.n, options.max_tokens,
                                             options.editor_requests, options.think_s))
            print(f"  {summary}", flush=True)
            runs[variant].append(summary)
            results["editor"] = {"runs": runs, "ratios": editor_ratios(runs)}
            write(results)


def editor_ratios(runs: dict[str, list[dict]]) -> dict[str, Any]:
    def over_alone(variant: str, figure: str) -> dict:
        return spread([a[figure] / b[figure] if a.get(figure) and b.get(figure) else None
                       for a, b in zip(runs[variant], runs["alone"], strict=False)])

    return {f"{v}_{f}_over_alone": over_alone(v, f) for v in ("no-priorities", "priorities") for f in ("p50_s", "p99_s")}


def concurrency_64(options, results: dict) -> None:
    from bench.compare_stacks import run_stack
    from bench.workload import Workload, load_bundle

    bundle = load_bundle(options.config)
    workload = Workload(options.config, bundle.name, n=options.n, max_tokens=options.max_tokens, levels=(64,),
                        requests={64: 64}, warmup_requests=2, level_deadline_s=300.0, request_timeout_s=330.0)
    runs: dict[str, list[dict]] = {"leanserve": [], "vllm-openai": []}
    logs = Path(f"/tmp/proof-search-bench-{datetime.now(UTC):%H%M%S}")
    logs.mkdir(parents=True, exist_ok=True)
    for repeat, stack in interleaved(list(runs), options.repeats):
        print(f"c64 {stack} (repeat {repeat}, log {logs}/{stack}-{repeat}.log)", flush=True)
        try:
            level = run_stack(stack, workload, logs / f"{stack}-{repeat}.log")["levels"][0]
            summary = level["summary"]
        except Exception as exc:  # noqa: BLE001 - one failed stack must not lose the other's figures
            summary = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
        print(f"  {json.dumps(summary)[:600]}", flush=True)
        runs[stack].append(summary)
        results["c64"] = {"workload": json.loads(workload.to_json()), "runs": runs}
        write(results)


STAMP = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")


def write(results: dict) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"search-{STAMP}.json").write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", choices=["routing", "editor", "c64"])
    parser.add_argument("--config", default="configs/local.yaml", help="LeanServe config; its first bundle is the model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--theorems", type=int, default=24)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=32, help="vLLM KV block (tokens); 0: the engine's")
    parser.add_argument("--editor-replicas", type=int, default=1)
    parser.add_argument("--editor-requests", type=int, default=10)
    parser.add_argument("--think-s", type=float, default=0.5)
    options = parser.parse_args(argv)
    results: dict[str, Any] = {"date": STAMP, "argv": sys.argv[1:], "options": vars(options)}
    from bench.compare_stacks import load_average

    results["load_before"] = load_average()
    for experiment in options.experiments:
        {"routing": routing, "editor": editor, "c64": concurrency_64}[experiment](options, results)
    results["load_after"] = load_average()
    write(results)
    print(f"wrote {RESULTS_DIR / f'search-{STAMP}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
