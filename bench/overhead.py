"""The serving layer's own cost, against its peers and its floor: repeated, interleaved runs (`make bench`).

Usage: python -m bench.overhead [--suites tiny,noop,...] [--repeats 3] [--quick] [--no-docs]

Suites (each its own interleaved run; ratios are taken within one run, repeat by repeat):
  tiny         the tests' tiny random model on real vLLM: the bare AsyncLLM in-process, LeanServe, `vllm serve`
               (python -m vllm.entrypoints.openai.api_server) and Serve's floor (the trivial Serve app below,
               its deployment making the bare engine's call), at concurrency 1, 16, 64. The model computes
               almost nothing, so what differs is the serving layer;
  noop         an engine that answers at once behind LeanServe, a trivial Ray Serve app of the same shape
               (FastAPI ingress + one handle hop) and one uvicorn + FastAPI process (bench/noop_stacks.py);
  tuning       LeanServe on the no-op engine, default against one tuning candidate at a time;
  tiny-tuning  the same for Serve's switches, on the tiny model;
  batched-hop  Serve's floor on the tiny model with its handle hop batched (@serve.batch) against it unbatched;
  threads      the tiny model's engine with 2 OpenMP threads against 1;
  vllm-bench   vLLM's own load generator against LeanServe's /v1/completions and `vllm serve`;
  smollm2      the offline SmolLM2 of configs/local.yaml: the same four stacks as tiny;
  smollm2-tuning  Serve's control loop at 0.5 s against the default, on SmolLM2.
Every stack starts, serves the same requests, and stops, A B C A B C ... `--repeats` times. The machine's load
average and the CPU time of other processes are recorded around each run. Every finished run is appended to
bench/results/<UTC timestamp>-overhead-<suite>.runs.jsonl; the summary (medians with min-max spread, failed
requests per column, ratios, goals) goes to a new bench/results/<UTC timestamp>-overhead-<suite>.json, and the
table of docs/benchmarks.md is regenerated from the latest full run of each suite.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import configs, vllm_bench
from bench.compare_stacks import DOCS_PAGE, LeanCopilotSender, free_port, run_server, run_stack, stack_env
from bench.results_io import (
    RESULTS_DIR,
    append_line,
    format_spread,
    latest_full_run,
    new_results_path,
    spread,
    write_new,
)
from bench.workload import Workload, load_bundle, make_workload
from core.config import HAPROXY_INGRESS_ENV

TABLE_START, TABLE_END = "<!-- overhead-table:start -->", "<!-- overhead-table:end -->"
LEVELS = (1, 16, 64)


@dataclass(frozen=True)
class Stack:
    """One server (or the bare engine) under one configuration."""

    name: str  # as the tables show it: "tiny-leanserve", "noop-leanserve@throughput-optimized"
    kind: str  # bare | leanserve | vllm-openai (bench/compare_stacks.py) | noop-leanserve | noop-serve | noop-uvicorn
    #            (bench/noop_stacks.py's three servers; noop-serve with variant "vllm" holds the real engine)
    config: dict  # the serve config file its bundle (and LeanServe's settings) come from
    env: dict = field(default_factory=dict)  # a tuning candidate's switch
    variant: str = ""  # bench/noop_stacks.py --variant
    note: str = ""
    tool: str = "loadgen"  # loadgen (leanserve_client's closed loop) | vllm-bench (`vllm bench serve`, /v1/completions)


@dataclass(frozen=True)
class Suite:
    name: str
    stacks: tuple[Stack, ...]
    levels: tuple[int, ...]
    requests: dict[int, int]
    ratios: tuple[tuple[str, str], ...]  # (numerator, denominator): throughput ratio per level, per repeat
    warmup_requests: int = 2
    level_deadline_s: float = 60.0


# -- the suites ----------------------------------------------------------------------------------------------

# Tuning candidates on the no-op LeanServe (name, env, ingress settings, note); the default is the baseline.
NOOP_CANDIDATES = (
    ("throughput-optimized", {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}, {},
     "Serve's throughput mode: direct ingress, gRPC between deployments, user code on the replica's loop"),
    ("grpc-handles", {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}, {},
     "handle option: calls by value over gRPC (_by_reference=False) instead of Ray actor calls"),
    ("no-uvloop", {"RAY_USE_UVLOOP": "0"}, {},
     "Ray's replicas and proxy on asyncio's own event loop (uvloop is Ray's default where installed)"),
    ("no-coalesce", {}, {"coalesce_identical_requests": False}, "no single-flight table in the ingress"),
    ("2-ingress", {}, {"num_replicas": 2}, "two ingress replicas on the 2 cores"),
    ("ingress-max-ongoing-16", {}, {"max_ongoing_requests": 16}, "ingress max_ongoing_requests 16 (default 256)"),
)


HAPROXY_ON = {HAPROXY_INGRESS_ENV: "1"}  # Serve's HAProxy ingress, the one switch of TINY_CANDIDATES that wins


def tiny_one_thread_config() -> dict:
    """The tiny model's config with every stack's engine on one OpenMP thread (the bare engine would otherwise
    take both cores), so stacks differ only in what surrounds the engine."""
    return configs.with_changes(configs.tiny_config(), bundle_env={"OMP_NUM_THREADS": "1"})


# Serve's switches one at a time on the tiny model's LeanServe (name, env, note); the default is the baseline.
# Each keeps Ray actor-call handles and the HTTP proxy unless its note says otherwise.
TINY_CANDIDATES = (
    ("user-code-on-replica-loop", {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"},
     "each replica runs LeanServe's code on its own event loop, not on a second loop in a thread"),
    ("router-on-caller-loop", {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"},
     "a handle's router runs on the calling code's loop, not on a loop of its own"),
    ("serve-logs-to-files", {"RAY_SERVE_LOG_TO_STDERR": "0"},
     "Serve's access and replica logs go to their files only, not also through stderr to the driver"),
    ("warning-logs", {"LEANSERVE_LOG_LEVEL": "WARNING"}, "no per-request INFO lines from LeanServe"),
    ("grpc-handles", {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"},
     "handle calls by value over gRPC (breaks prefix affinity: see below)"),
    ("throughput-optimized", {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
     "Serve's throughput mode: all of the above but LeanServe's logs; its direct ingress lets the ingress "
     "replica serve HTTP itself, but clients on Serve's port still go through the proxy"),
    ("haproxy", HAPROXY_ON,
     "Serve's HAProxy ingress: HAProxy on Serve's port, straight to the ingress replica's own HTTP server "
     "(no Python proxy, no ASGI messages over actor calls); it hides client addresses"),
)


# Requests per level and repeat of the tiny model's three-level suites (tiny, batched-hop, threads).
TINY_REQUESTS = {1: 24, 16: 96, 64: 192}


def tiny_stacks(config: dict, prefix: str = "tiny") -> tuple[Stack, ...]:
    return (Stack(f"{prefix}-bare", "bare", config), Stack(f"{prefix}-leanserve", "leanserve", config),
            Stack(f"{prefix}-vllm-serve", "vllm-openai", config))


def serve_floor(config: dict, prefix: str = "tiny") -> Stack:
    """Serve's floor around the same engine: the trivial Serve app (bench/noop_stacks.py) whose deployment makes
    the bare engine's call. LeanServe against it is LeanServe's own cost; it against the bare engine is Serve's."""
    return Stack(f"{prefix}-serve", "noop-serve", config, variant="vllm",
                 note="the trivial Ray Serve app (FastAPI ingress, one handle hop) around the bare engine's call")


def floor_ratios(prefix: str) -> tuple[tuple[str, str], ...]:
    return ((f"{prefix}-leanserve", f"{prefix}-serve"), (f"{prefix}-serve", f"{prefix}-bare"))


def engine_ratios(prefix: str) -> tuple[tuple[str, str], ...]:
    return ((f"{prefix}-leanserve", f"{prefix}-bare"), (f"{prefix}-leanserve", f"{prefix}-vllm-serve"),
            (f"{prefix}-vllm-serve", f"{prefix}-bare"))


def make_suite(name: str, quick: bool) -> Suite:
    scale = 0.5 if quick else 1.0

    def requests(per_level: dict[int, int]) -> dict[int, int]:
        return {c: max(c, int(r * scale)) for c, r in per_level.items()}

    if name == "tiny":
        config = tiny_one_thread_config()
        # Beside the three: Serve's floor around the same engine call, and LeanServe behind the HAProxy ingress
        # (the one switch that wins, opt-in: see TINY_CANDIDATES) against the same baselines.
        haproxy = Stack("tiny-leanserve@haproxy", "leanserve", config, env=HAPROXY_ON,
                        note="LeanServe behind Serve's HAProxy ingress (opt-in: it hides client addresses)")
        return Suite(name, tiny_stacks(config) + (serve_floor(config), haproxy), LEVELS,
                     requests(TINY_REQUESTS),
                     engine_ratios("tiny") + floor_ratios("tiny") + (("tiny-leanserve@haproxy", "tiny-bare"),
                                                                      ("tiny-leanserve@haproxy", "tiny-serve")))
    if name == "noop":
        config = configs.noop_config()
        stacks = (Stack("noop-leanserve", "noop-leanserve", config), Stack("noop-serve", "noop-serve", config),
                  Stack("noop-uvicorn", "noop-uvicorn", config))
        ratios = (("noop-leanserve", "noop-serve"), ("noop-leanserve", "noop-uvicorn"), ("noop-serve", "noop-uvicorn"))
        return Suite(name, stacks, LEVELS, requests({1: 150, 16: 320, 64: 448}), ratios, warmup_requests=20,
                     level_deadline_s=30.0)
    if name == "tuning":
        base = configs.noop_config()
        stacks = [Stack("noop-leanserve", "noop-leanserve", base)]
        for candidate, env, ingress, note in NOOP_CANDIDATES:
            stacks.append(Stack(f"noop-leanserve@{candidate}", "noop-leanserve", configs.with_changes(base, ingress=ingress),
                                env=env, note=note))
        stacks += [Stack("noop-uvicorn", "noop-uvicorn", base),
                   Stack("noop-uvicorn@asyncio-h11", "noop-uvicorn", base, variant="asyncio-h11",
                         note="the HTTP floor without uvloop and httptools")]
        ratios = tuple((s.name, "noop-leanserve") for s in stacks[1:-2]) + (("noop-uvicorn@asyncio-h11", "noop-uvicorn"),)
        return Suite(name, tuple(stacks), (1, 16), requests({1: 100, 16: 240}), ratios, warmup_requests=20,
                     level_deadline_s=25.0)
    if name == "threads":
        base = tiny_one_thread_config()
        stacks = (Stack("tiny-leanserve", "leanserve", base),
                  Stack("tiny-leanserve@omp2", "leanserve", configs.with_changes(base, bundle_env={"OMP_NUM_THREADS": "2"}),
                        note="the engine replica computes with 2 OpenMP threads instead of 1"))
        return Suite(name, stacks, LEVELS, requests(TINY_REQUESTS), (("tiny-leanserve@omp2", "tiny-leanserve"),))
    if name == "tiny-tuning":
        base = tiny_one_thread_config()
        stacks = (Stack("tiny-leanserve", "leanserve", base),) + tuple(
            Stack(f"tiny-leanserve@{candidate}", "leanserve", base, env=env, note=note)
            for candidate, env, note in TINY_CANDIDATES)
        return Suite(name, stacks, (1, 16), requests({1: 24, 16: 96}),
                     tuple((s.name, "tiny-leanserve") for s in stacks[1:]))
    if name == "batched-hop":
        # Handle options: the one hop batched, tried on Serve's floor (LeanServe's hop would also have to batch its
        # cancellation and prefix-affinity routing, so it is worth that only if the floor gains).
        config = tiny_one_thread_config()
        batched = Stack("tiny-serve@batched-hop", "noop-serve", config, variant="vllm-batched",
                        note="Serve's floor with concurrent requests sharing one handle call (@serve.batch, 1 ms)")
        return Suite(name, (Stack("tiny-bare", "bare", config), serve_floor(config), batched), LEVELS,
                     requests(TINY_REQUESTS),
                     (("tiny-serve@batched-hop", "tiny-serve"), ("tiny-serve@batched-hop", "tiny-bare"),
                      ("tiny-serve", "tiny-bare")))
    if name == "vllm-bench":
        # vLLM's own load generator on /v1/completions (streamed, n=1, 12 tokens, EOS ignored) against LeanServe's
        # OpenAI front door and `vllm serve`, same engine settings.
        config = tiny_one_thread_config()
        stacks = (Stack("tiny-leanserve-v1", "leanserve", config, tool="vllm-bench"),
                  Stack("tiny-leanserve-v1@haproxy", "leanserve", config, env=HAPROXY_ON,
                        tool="vllm-bench", note="Serve's HAProxy ingress (as in tiny-tuning)"),
                  Stack("tiny-vllm-serve-v1", "vllm-openai", config, tool="vllm-bench"))
        # Two levels: each is one `vllm bench serve` process, which imports vLLM (about 15 s) before it sends.
        return Suite(name, stacks, (1, 16), requests({1: 24, 16: 96}),
                     (("tiny-leanserve-v1", "tiny-vllm-serve-v1"), ("tiny-leanserve-v1@haproxy", "tiny-vllm-serve-v1"),
                      ("tiny-leanserve-v1@haproxy", "tiny-leanserve-v1")))
    if name == "smollm2":
        config = configs.yaml_config(configs.REPO_ROOT / "configs" / "local.yaml")
        per_level = {1: 4, 16: 32, 64: 64} if quick else {1: 8, 16: 48, 64: 128}
        return Suite(name, tiny_stacks(config, "smollm2") + (serve_floor(config, "smollm2"),), LEVELS, per_level,
                     engine_ratios("smollm2") + floor_ratios("smollm2"), level_deadline_s=300.0)
    if name == "smollm2-tuning":
        # Ray's own idle processes take CPU from the engine's OpenMP threads: Serve's control loop at 0.5 s
        # instead of 0.1 s against the default, on the engine where that shows.
        config = configs.yaml_config(configs.REPO_ROOT / "configs" / "local.yaml")
        stacks = (Stack("smollm2-leanserve", "leanserve", config),
                  Stack("smollm2-leanserve@control-loop-0.5s", "leanserve", config,
                        env={"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5"},
                        note="Serve's controller loop every 0.5 s (default 0.1 s)"))
        return Suite(name, stacks, (1, 16), {1: 8, 16: 48}, (("smollm2-leanserve@control-loop-0.5s", "smollm2-leanserve"),),
                     level_deadline_s=300.0)
    raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")


SUITES = ("tiny", "noop", "tuning", "tiny-tuning", "batched-hop", "threads", "vllm-bench", "smollm2", "smollm2-tuning")
DEFAULT_SUITES = ("tiny", "noop", "tuning", "tiny-tuning", "vllm-bench", "smollm2")


def workload_for(suite: Suite, stack: Stack, config_path: str, quick: bool) -> Workload:
    if suite.name.startswith("smollm2"):
        base = make_workload(config_path, quick, suite.levels)
        return Workload(**{**base.__dict__, "requests": suite.requests, "level_deadline_s": suite.level_deadline_s})
    bundle = load_bundle(config_path)
    return Workload(config_path, bundle.name, n=bundle.sampling.n, max_tokens=bundle.sampling.max_tokens,
                    levels=suite.levels, requests=suite.requests, warmup_requests=suite.warmup_requests,
                    level_deadline_s=suite.level_deadline_s, request_timeout_s=60.0,
                    extra={"stack": stack.name})


# -- one run ---------------------------------------------------------------------------------------------------


class MachineLoad:
    """The load around one run: load averages before and after, and how much CPU other processes took.

    Other processes' CPU time is the machine's busy time minus this benchmark's own process tree (this load
    generator and the stack it started), sampled every half second so processes that exit still count.
    """

    def __init__(self, period_s: float = 0.5):
        self.period_s = period_s
        self.me = psutil.Process()
        self._own: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                self._own[(proc.pid, proc.create_time())] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    @staticmethod
    def _busy_s() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def __enter__(self) -> MachineLoad:
        self.load_before = [round(x, 2) for x in os.getloadavg()]
        self._sample()
        self._own_start = dict(self._own)
        self._busy_start, self._wall_start = self._busy_s(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._wall_start
        own = sum(t - self._own_start.get(key, 0.0) for key, t in self._own.items())
        other = max(0.0, self._busy_s() - self._busy_start - own)
        self.record = {
            "load_before": self.load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "wall_s": round(wall, 1),
            "own_cpu_s": round(own, 1),
            "other_cpu_s": round(other, 1),
            # Of the machine's CPU time during the run, the share other processes took (0..1).
            "other_cpu_share": round(other / (wall * psutil.cpu_count()), 3) if wall > 0 else None,
        }


def run_noop(stack: Stack, workload: Workload, log: Path) -> dict:
    server = stack.kind.removeprefix("noop-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bench.noop_stacks", server, workload.config, "--port", str(port)]
    if stack.variant:
        command += ["--variant", stack.variant]
    stop = signal.SIGTERM if server == "uvicorn" else signal.SIGINT
    return run_server(command, f"{url}/health", workload, log, lambda: LeanCopilotSender(url, workload), stop, stack.env)


def run_one(stack: Stack, workload: Workload, log: Path) -> dict:
    if stack.kind.startswith("noop-"):
        return run_noop(stack, workload, log)
    if stack.tool == "vllm-bench":
        return run_vllm_bench(stack, workload, log)
    return run_stack(stack.kind, workload, log, stack.env)


def run_vllm_bench(stack: Stack, workload: Workload, log: Path) -> dict:
    bundle = workload.bundle()
    # vllm serve answers to the model's path, LeanServe to the bundle's name.
    model = bundle.model if stack.kind == "vllm-openai" else bundle.name
    env = stack_env(workload, stack.env)

    def measure(url: str) -> list[dict]:
        return vllm_bench.run_levels(url, model, bundle.tokenizer or bundle.model, workload.requests,
                                     input_len=32, output_len=bundle.sampling.max_tokens, env=env,
                                     log=log.with_suffix(".bench.log"))

    result = run_stack(stack.kind, workload, log, stack.env, measure=measure)
    result["levels"] = [vllm_bench.as_level(entry) for entry in result.pop("measured")]
    return result


# -- figures (pure) ----------------------------------------------------------------------------------------------


def level_of(result: dict, level: int) -> dict | None:
    return next((e.get("summary") for e in result.get("levels", []) if e["concurrency"] == level), None)


def summarize(runs: list[dict], suite_levels: tuple[int, ...], ratios: tuple[tuple[str, str], ...],
              requests: dict[int, int] | None = None) -> dict:
    """Medians with min-max over the repeats, failed requests per level, and ratios taken repeat by repeat.

    `runs`: {"stack", "repeat", "result": {...} | {"error": ...}}. A run that failed counts all its requests
    (`requests` per level) as failed: it is never a missing point that would flatter the columns.
    """
    stacks: dict[str, dict] = {}
    by_key = {(r["stack"], r["repeat"]): r["result"] for r in runs}
    repeats = sorted({r["repeat"] for r in runs})
    for name in dict.fromkeys(r["stack"] for r in runs):
        results = [by_key.get((name, i), {"error": "not run"}) for i in repeats]
        per_level = {}
        for level in suite_levels:
            summaries = [level_of(res, level) for res in results]
            per_level[str(level)] = {
                "requests_per_s": spread([s["requests_per_s"] if s else None for s in summaries]),
                "latency_p50_s": spread([s["latency_p50_s"] if s else None for s in summaries]),
                "latency_p99_s": spread([s["latency_p99_s"] if s else None for s in summaries]),
                "failed": sum((s["requests"] - s["ok"]) if s else (requests or {}).get(level, 0) for s in summaries),
                "errors_by_status": [s["errors_by_status"] if s else None for s in summaries],
                "requests": sum(s["requests"] if s else 0 for s in summaries),
            }
        stacks[name] = {
            "runs": len(results),
            "failed_runs": sum(1 for res in results if "error" in res),
            "errors": [res["error"][:300] for res in results if "error" in res],
            "ready_s": spread([res.get("ready_s") for res in results]),
            "peak_memory_gib": spread([res.get("peak_memory_gib") for res in results]),
            "max_requests_per_s": spread([best_rate(res, suite_levels) for res in results]),
            "levels": per_level,
        }
    out_ratios = {}
    for num, den in ratios:
        if num not in stacks or den not in stacks:
            continue
        entry = {}
        for level in suite_levels:
            values = []
            for i in repeats:
                a, b = level_of(by_key.get((num, i), {}), level), level_of(by_key.get((den, i), {}), level)
                values.append(a["requests_per_s"] / b["requests_per_s"] if a and b and b["requests_per_s"] else None)
            entry[str(level)] = spread(values)
        added = {}
        for q in ("p50", "p99"):
            values = []
            for i in repeats:
                a, b = level_of(by_key.get((num, i), {}), 1), level_of(by_key.get((den, i), {}), 1)
                ok = a and b and not math.isnan(a[f"latency_{q}_s"]) and not math.isnan(b[f"latency_{q}_s"])
                values.append(a[f"latency_{q}_s"] - b[f"latency_{q}_s"] if ok else None)
            added[q] = spread(values)
        out_ratios[f"{num} / {den}"] = {"throughput": entry, "latency_added_c1_s": added,
                                        "max_throughput": spread([_max_ratio(by_key, num, den, i, suite_levels)
                                                                  for i in repeats])}
    return {"stacks": stacks, "ratios": out_ratios}


def best_rate(result: dict, levels: tuple[int, ...]) -> float | None:
    """The highest requests/s of one run over its levels (the stack's maximum, as far as the levels reach)."""
    rates = [s["requests_per_s"] for s in (level_of(result, c) for c in levels) if s]
    return max(rates) if rates else None


def _max_ratio(by_key: dict, num: str, den: str, repeat: int, levels: tuple[int, ...]) -> float | None:
    a, b = best_rate(by_key.get((num, repeat), {}), levels), best_rate(by_key.get((den, repeat), {}), levels)
    return a / b if a is not None and b else None


def goals(suite: str, figures: dict) -> list[dict]:
    """The issue's goals that this suite's figures decide, each with its median, spread and verdict."""
    ratios, out = figures["ratios"], []

    def add(goal: str, s: dict, ok) -> None:
        out.append({"goal": goal, "median": s.get("median"), "min": s.get("min"), "max": s.get("max"),
                    "met": None if s.get("median") is None else bool(ok(s["median"]))})

    if suite == "tiny":
        for stack, how in (("tiny-leanserve", ""), ("tiny-leanserve@haproxy", " (HAProxy ingress, opt-in)")):
            r = ratios.get(f"{stack} / tiny-bare")
            if r:
                add(f"tiny c=1: LeanServe{how} adds <= 15 ms p50 over the bare engine", r["latency_added_c1_s"]["p50"],
                    lambda v: v <= 0.015)
                add(f"tiny c=16: LeanServe{how} throughput >= 0.7x the bare engine", r["throughput"].get("16", {}),
                    lambda v: v >= 0.7)
    if suite == "noop":
        r = ratios.get("noop-leanserve / noop-serve")
        if r:
            add("no-op: LeanServe >= 0.8x the trivial Serve app's max requests/s", r["max_throughput"], lambda v: v >= 0.8)
    if suite == "smollm2":
        bare, vllm = ratios.get("smollm2-leanserve / smollm2-bare"), ratios.get("smollm2-leanserve / smollm2-vllm-serve")
        for level in ("16", "64"):
            if bare:
                add(f"SmolLM2 c={level}: >= 0.95x the bare engine", bare["throughput"].get(level, {}), lambda v: v >= 0.95)
            if vllm:
                add(f"SmolLM2 c={level}: >= 1.0x vllm serve", vllm["throughput"].get(level, {}), lambda v: v >= 1.0)
        stacks = figures["stacks"]
        if "smollm2-leanserve" in stacks and "smollm2-vllm-serve" in stacks:
            for level in ("16", "64"):
                theirs = stacks["smollm2-vllm-serve"]["levels"][level]["failed"]
                ours = stacks["smollm2-leanserve"]["levels"][level]["failed"]
                out.append({"goal": f"SmolLM2 c={level}: 0 failed where vllm serve has none", "median": ours, "min": None,
                            "max": None, "met": ours == 0 if theirs == 0 else None})
    return out


# -- the tables ------------------------------------------------------------------------------------------------


def suite_markdown(result: dict) -> str:
    levels = result["levels"]
    figures = result["figures"]
    loads = [r["machine"] for r in result["runs"] if "machine" in r]
    before = [m["load_before"][0] for m in loads] or [math.nan]
    other = [m["other_cpu_share"] for m in loads if m.get("other_cpu_share") is not None] or [math.nan]
    lines = [
        f"**{result['suite']}** — run {result['date']}, {result['repeats']} repeats interleaved "
        f"({' '.join(result['order'])}), {result['machine']['cpus']} CPUs; 1-min load average before the runs "
        f"{min(before):.2f}–{max(before):.2f}, CPU share of other processes {min(other):.2f}–{max(other):.2f}. "
        f"Requests per level and repeat: {result['requests']}. Median (min–max) over the repeats.",
        "",
        "| stack | " + " | ".join(f"req/s c={c}" for c in levels) + " | p50 c=1 (ms) | p99 c=1 (ms) | failed ("
        + "/".join(f"c={c}" for c in levels) + ") | ready (s) |",
        "|---|" + "---|" * len(levels) + "---|---|---|---|",
    ]
    for name, s in figures["stacks"].items():
        one = s["levels"][str(levels[0])]
        cells = [format_spread(s["levels"][str(c)]["requests_per_s"], digits=1) for c in levels]
        failed_cells = "/".join(str(s["levels"][str(c)]["failed"]) for c in levels)
        if s["failed_runs"]:
            failed_cells += f" ({s['failed_runs']} runs failed)"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {format_spread(one['latency_p50_s'], 1000, 1)} | "
                     f"{format_spread(one['latency_p99_s'], 1000, 1)} | {failed_cells} | {format_spread(s['ready_s'], digits=0)} |")
    if figures["ratios"]:
        lines += ["", "| ratio (same repeat) | " + " | ".join(f"req/s c={c}" for c in levels)
                  + " | max req/s | p50 added c=1 (ms) | p99 added c=1 (ms) |",
                  "|---|" + "---|" * len(levels) + "---|---|---|"]
        for key, r in figures["ratios"].items():
            cells = [format_spread(r["throughput"][str(c)]) for c in levels]
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {format_spread(r['max_throughput'])} | "
                         f"{format_spread(r['latency_added_c1_s']['p50'], 1000, 1)} | "
                         f"{format_spread(r['latency_added_c1_s']['p99'], 1000, 1)} |")
    notes = {s["name"]: s["note"] for s in result.get("stack_specs", []) if s.get("note")}
    if notes:
        lines += [""] + [f"- `{k}`: {v}" for k, v in notes.items()]
    for g in result.get("goals", []):
        verdict = {True: "met", False: "NOT met", None: "undecided"}[g["met"]]
        value = "-" if g["median"] is None else f"{g['median']:.3g}"
        if g.get("min") is not None:
            value += f" ({g['min']:.3g}–{g['max']:.3g})"
        lines.append(f"- goal: {g['goal']}: {value} — {verdict}")
    return "\n".join(lines) + "\n"


def docs_section(folder: Path = RESULTS_DIR) -> str:
    """The generated part of docs/benchmarks.md: the latest full run of each suite."""
    parts = []
    for suite in SUITES:
        result = latest_full_run(f"overhead-{suite}", folder)
        if result is not None:
            parts.append(suite_markdown(result))
    return "\n".join(parts) if parts else "No full run yet: `make bench`.\n"


def update_docs(section: str, page: Path = DOCS_PAGE) -> bool:
    text = page.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        return False
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    page.write_text(f"{head}{TABLE_START}\n{section}{TABLE_END}{tail}", encoding="utf-8")
    return True


# -- the run -----------------------------------------------------------------------------------------------------


def run_suite(suite: Suite, repeats: int, quick: bool, logs: Path) -> dict:
    paths = {s.name: configs.write_config(s.config, s.name.replace("@", "-")) for s in suite.stacks}
    workloads = {s.name: workload_for(suite, s, paths[s.name], quick) for s in suite.stacks}
    runs_file = new_results_path(f"overhead-{suite.name}", ".runs.jsonl")
    started, runs = time.perf_counter(), []
    order = [s.name for s in suite.stacks]
    print(f"suite {suite.name}: {repeats} x {order} (runs: {runs_file})", flush=True)
    for repeat in range(repeats):
        for stack in suite.stacks:
            log = logs / f"{suite.name}-{stack.name.replace('@', '-')}-{repeat}.log"
            t0 = time.perf_counter()
            with MachineLoad() as load:
                try:
                    result = run_one(stack, workloads[stack.name], log)
                except Exception as exc:  # noqa: BLE001 - a failed run counts; it must not lose the others
                    result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            run = {"stack": stack.name, "repeat": repeat, "machine": load.record, "result": result}
            runs.append(run)
            append_line(runs_file, run)
            rates = [f"c={e['concurrency']}: {e['summary']['requests_per_s']:.1f}/s p50 "
                     f"{e['summary']['latency_p50_s'] * 1000:.0f} ms fail {e['summary']['requests'] - e['summary']['ok']}"
                     for e in result.get("levels", []) if "summary" in e]
            print(f"  [{repeat}] {stack.name}: {', '.join(rates) or result.get('error', '')[:300]} "
                  f"({time.perf_counter() - t0:.0f} s, load {load.record['load_before'][0]}->{load.record['load_after'][0]}, "
                  f"others {load.record['other_cpu_share']})", flush=True)
    figures = summarize(runs, suite.levels, suite.ratios, suite.requests)
    result = {
        "suite": suite.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "complete": True,
        "repeats": repeats,
        "order": order,
        "levels": list(suite.levels),
        "requests": {str(k): v for k, v in suite.requests.items()},
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "wall_s": round(time.perf_counter() - started, 1),
        "runs_file": runs_file.name,
        "stack_specs": [{"name": s.name, "kind": s.kind, "env": s.env, "variant": s.variant, "note": s.note,
                         "config": s.config} for s in suite.stacks],
        "runs": runs,
        "figures": figures,
        "goals": goals(suite.name, figures),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(DEFAULT_SUITES), help=f"comma-separated, from {','.join(SUITES)}")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every stack (at least 3 for the docs)")
    parser.add_argument("--quick", action="store_true", help="half the requests (not used for the docs' table)")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md alone")
    options = parser.parse_args(argv)
    names = options.suites.split(",")
    if any(name.startswith("smollm2") for name in names):
        subprocess.run([sys.executable, "-m", "models.prepare", "--out", ".models"], cwd=configs.REPO_ROOT, check=True)
    logs = Path(tempfile.mkdtemp(prefix="overhead-"))
    for name in names:
        result = run_suite(make_suite(name, options.quick), options.repeats, options.quick, logs)
        if options.repeats < 3:
            result["complete"] = False  # fewer than 3 repeats: kept, but never the docs' table
        out = write_new(f"overhead-{name}", result)
        print(suite_markdown(result))
        print(f"wrote {out} (logs: {logs})", flush=True)
        if not options.no_docs:  # after every suite: an interrupted run still updates the suites it finished
            update_docs(docs_section())
    return 0


if __name__ == "__main__":
    sys.exit(main())
