"""LeanServe against the bare engine and its peers: one run, same machine, model, prompt and workload.

Usage: python -m bench.compare_stacks [--quick] [--config configs/local.yaml] [--stacks bare,leanserve,vllm-openai,seed]
       (make bench, make bench QUICK=1)

Stacks, run one after another (never two at once), each in its own process tree:
  (a) bare        vLLM AsyncLLM in-process (bench/bare_engine.py): the ceiling
  (b) leanserve   LeanServe end to end over HTTP (deployments/launch.py, as `make serve`)
  (c) vllm-openai vLLM's own OpenAI server, /v1/completions with n candidates
  (d) seed        one FastAPI process calling transformers `generate` inline (bench/seed_server.py)
Each gets the same closed-loop levels (concurrency 1, 4, 16, 64) over the same miniF2F states, n=4 and the
same max tokens. Reported: throughput ratios b/a, b/c, b/d per level; latency added by b over a at
concurrency 1 (p50, p99); time to ready and peak memory (PSS of the process tree) per stack. Results go to
bench/results/<UTC timestamp>-compare.json and .md (never overwritten), and the generated table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from bench.results_io import append_line, new_results_path, write_new
from bench.workload import LEVELS, Workload, make_workload
from deployments.launch import wait_until_healthy
from deployments.options import engine_process_env
from leanserve_client.client import AsyncLeanServeClient, GenerateResult
from leanserve_client.loadgen import closed_loop
from leanserve_client.states import load_states
from logic.prompts import PromptBuilder
from models.chat_template import load_chat_renderer

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOCS_PAGE = REPO_ROOT / "docs" / "benchmarks.md"
TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
STACKS = ("bare", "leanserve", "vllm-openai", "seed")
LABELS = {"bare": "(a) bare AsyncLLM", "leanserve": "(b) LeanServe", "vllm-openai": "(c) vLLM OpenAI server",
          "seed": "(d) seed-style FastAPI + transformers"}


class PeakMemory:
    """Samples the PSS of a process tree (shared pages counted once) in a thread; keeps the peak."""

    def __init__(self, pid: int, period_s: float = 1.0):
        self.pid, self.period_s, self.peak_bytes = pid, period_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()
                total += getattr(info, "pss", info.rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.period_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return round(self.peak_bytes / 2**30, 2)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_env(workload: Workload, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Every stack runs with the bundle replica's environment (what LeanServe gives its engine processes: the
    allocator, oneDNN's cache off; and the config's own, e.g. OpenMP threads), so engines compute alike;
    `extra_env` is a tuning candidate's switch (bench/overhead.py)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    env.update(engine_process_env(workload.bundle()))
    env.update(workload.bundle().deployment.env_vars)
    env.update(extra_env or {})
    return env


def stop_process(process: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 120) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def run_levels(send, workload: Workload) -> list[dict]:
    states = load_states(seed=workload.seed)
    for state in states[: workload.warmup_requests]:
        await send(state)
    offsets, levels = workload.offsets(), []
    for level in workload.levels:
        result = await closed_loop(
            send, states, level, workload.requests[level], offset=offsets[level],
            deadline_s=workload.level_deadline_s, progress=True,
        )
        print(f"  c={level}: {result.summary.requests_per_s:.3f} req/s, p50 {result.summary.latency_p50_s:.2f} s, "
              f"errors {result.summary.errors_by_status}", flush=True)
        levels.append(result.as_dict(with_records=False))
    return levels


def run_bare(workload: Workload, log: Path, extra_env: dict[str, str] | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "workload.json", Path(tmp) / "out.json"
        spec.write_text(workload.to_json())
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_engine", str(spec), str(out)], cwd=REPO_ROOT, env=stack_env(workload, extra_env),
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        with PeakMemory(process.pid) as memory:
            code = process.wait()
        if code != 0:
            raise RuntimeError(f"bare engine run failed ({code}):\n{log.read_text(errors='replace')[-3000:]}")
        result = json.loads(out.read_text())
    result["peak_memory_gib"] = memory.peak_gib
    return result


def run_server(command: list[str], health_url: str, workload: Workload, log: Path, make_send, stop_signal: int,
               extra_env: dict[str, str] | None = None, measure=None) -> dict:
    """Start a server, run the workload's levels against it (or `measure()`, whose dict becomes the result's
    "measured"), stop it."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=stack_env(workload, extra_env), stdout=log.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with PeakMemory(process.pid) as memory:
            wait_until_healthy(health_url, timeout_s=900, still_starting=lambda: process.poll() is None)
            ready_s = time.perf_counter() - started

            async def go() -> list[dict]:
                async with make_send() as send:
                    return await run_levels(send, workload)

            measured = {"measured": measure()} if measure is not None else {"levels": asyncio.run(go())}
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from exc
    finally:
        stop_process(process, stop_signal)
    return {"ready_s": ready_s, **measured, "peak_memory_gib": memory.peak_gib}


class LeanCopilotSender:
    """Sends the workload as LeanCopilot does (stacks b and d speak its protocol)."""

    def __init__(self, url: str, workload: Workload):
        self.client = AsyncLeanServeClient(url, timeout_s=workload.request_timeout_s, max_connections=max(workload.levels))
        self.workload = workload

    async def __call__(self, state: str) -> GenerateResult:
        return await self.client.generate(state, self.workload.model_name, n=self.workload.n,
                                          max_tokens=self.workload.max_tokens)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()


class OpenAICompletionsSender:
    """vLLM's OpenAI server: the prompt LeanServe would render, /v1/completions with the same sampling."""

    def __init__(self, url: str, workload: Workload):
        bundle = workload.bundle()
        renderer = load_chat_renderer(bundle.tokenizer or bundle.model) if bundle.prompt.chat else None
        self.prompts = PromptBuilder(bundle.prompt, renderer)
        self.bundle, self.workload = bundle, workload
        limits = httpx.Limits(max_connections=max(workload.levels), max_keepalive_connections=max(workload.levels))
        self.http = httpx.AsyncClient(base_url=url, timeout=workload.request_timeout_s, limits=limits)

    async def __call__(self, state: str) -> GenerateResult:
        s = self.bundle.sampling
        body = {"model": self.bundle.model, "prompt": self.prompts.build(state), "n": self.workload.n,
                "max_tokens": self.workload.max_tokens, "temperature": s.temperature, "top_p": s.top_p,
                "stop": list(s.stop), "logprobs": 0}
        started = time.perf_counter()
        try:
            response = await self.http.post("/v1/completions", json=body)
        except httpx.HTTPError as exc:
            return GenerateResult(0, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
        latency = time.perf_counter() - started
        if response.status_code != 200:
            return GenerateResult(response.status_code, latency, error=response.text[:200])
        return GenerateResult(200, latency, candidates=[(c["text"], 0.0) for c in response.json()["choices"]])

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.http.aclose()


def vllm_server_command(workload: Workload, port: int) -> list[str]:
    """vLLM's OpenAI server with the bundle's engine settings (the console script fails on vllm-cpu)."""
    bundle = workload.bundle()
    e = bundle.engine_args
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", bundle.model,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", e.dtype, "--max-num-seqs", str(e.max_num_seqs),
               "--seed", str(e.seed), "--disable-log-stats"]
    if e.max_model_len:
        command += ["--max-model-len", str(e.max_model_len)]
    if e.kv_cache_memory_bytes:
        command += ["--kv-cache-memory-bytes", str(e.kv_cache_memory_bytes)]
    if e.enforce_eager:
        command += ["--enforce-eager"]
    if not e.enable_prefix_caching:
        command += ["--no-enable-prefix-caching"]
    return command


def server_command(name: str, workload: Workload, port: int) -> tuple[list[str], int]:
    """The command that serves stack `name` on `port`, and the signal that stops it cleanly."""
    if name == "leanserve":
        return [sys.executable, "-m", "deployments.launch", workload.config, "--port", str(port)], signal.SIGINT
    if name == "vllm-openai":
        return vllm_server_command(workload, port), signal.SIGTERM
    if name == "seed":
        return [sys.executable, "-m", "bench.seed_server", workload.config, "--port", str(port)], signal.SIGTERM
    raise ValueError(f"unknown stack {name!r}; choose from {STACKS}")


def run_stack(name: str, workload: Workload, log: Path, extra_env: dict[str, str] | None = None, measure=None) -> dict:
    """One stack's run; `measure(base_url)` replaces the closed-loop levels when given (bench/vllm_bench.py)."""
    if name == "bare":
        return run_bare(workload, log, extra_env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command, stop = server_command(name, workload, port)
    sender = OpenAICompletionsSender if name == "vllm-openai" else LeanCopilotSender
    return run_server(command, f"{url}/health", workload, log, lambda: sender(url, workload), stop, extra_env,
                      measure=(lambda: measure(url)) if measure is not None else None)


def throughput(stack: dict, level: int) -> float:
    for entry in stack.get("levels", []):
        if entry["concurrency"] == level:
            return entry["summary"]["requests_per_s"]
    return math.nan


def level_summary(stack: dict, level: int) -> dict:
    return next((e["summary"] for e in stack.get("levels", []) if e["concurrency"] == level), {})


def ratio(numerator: float, denominator: float) -> float | None:
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return None
    return round(numerator / denominator, 3)


def compare(stacks: dict[str, dict], levels: tuple[int, ...]) -> dict:
    """The figures the issue asks for, from each stack's level summaries (pure)."""
    ratios = {}
    for other, key in (("bare", "b/a"), ("vllm-openai", "b/c"), ("seed", "b/d")):
        if "leanserve" in stacks and other in stacks:
            ratios[key] = {str(c): ratio(throughput(stacks["leanserve"], c), throughput(stacks[other], c)) for c in levels}
    added = {}
    if "leanserve" in stacks and "bare" in stacks and 1 in levels:
        b, a = level_summary(stacks["leanserve"], 1), level_summary(stacks["bare"], 1)
        for q in ("p50", "p99"):
            key = f"latency_{q}_s"
            if b.get(key) is not None and a.get(key) is not None:
                added[f"{q}_s"] = round(b[key] - a[key], 3)
    return {"throughput_ratios": ratios, "latency_added_over_bare_c1": added}


def markdown(result: dict) -> str:
    levels = result["workload"]["levels"]
    stacks = result["stacks"]
    w = result["workload"]
    lines = [
        f"Run {result['date']} on {result['machine']['cpus']} CPUs (load average before/after: "
        f"{result['machine']['load_before']} / {result['machine']['load_after']}), {'quick' if result['quick'] else 'full'} mode: "
        f"n={w['n']}, max_tokens={w['max_tokens']}, requests per level {w['requests']}"
        f"{', eager engines' if w['extra'].get('enforce_eager') else ''}, "
        f"OMP threads per stack: {w['extra'].get('omp_threads') or 'as configured'}.",
        "",
        "| stack | ready (s) | peak memory (GiB, PSS) | " + " | ".join(f"req/s c={c}" for c in levels)
        + " | p50 / p99 c=1 (s) | load after |",
        "|---|---|---|" + "---|" * len(levels) + "---|---|",
    ]
    for name, stack in stacks.items():
        if "error" in stack:
            lines.append(f"| {LABELS[name]} | failed: {stack['error'][:80]} |")
            continue
        one = level_summary(stack, 1)
        cells = [f"{throughput(stack, c):.3f}" for c in levels]
        lat = f"{one.get('latency_p50_s', math.nan):.2f} / {one.get('latency_p99_s', math.nan):.2f}" if one else "-"
        lines.append(f"| {LABELS[name]} | {stack['ready_s']:.1f} | {stack['peak_memory_gib']:.2f} | " + " | ".join(cells)
                     + f" | {lat} | {stack.get('load_after', '-').split(' ')[0]} |")
    ratios = result["comparison"]["throughput_ratios"]
    if ratios:
        lines += ["", "| throughput ratio | " + " | ".join(f"c={c}" for c in levels) + " |", "|---|" + "---|" * len(levels)]
        for key, per_level in ratios.items():
            lines.append(f"| {key} | " + " | ".join("-" if per_level[str(c)] is None else f"{per_level[str(c)]:.2f}"
                                                      for c in levels) + " |")
    added = result["comparison"]["latency_added_over_bare_c1"]
    if added:
        lines += ["", f"Latency LeanServe adds over the bare engine at concurrency 1: p50 {added.get('p50_s', 'n/a')} s, "
                      f"p99 {added.get('p99_s', 'n/a')} s."]
    errors = {name: [(e["concurrency"], e["summary"]["errors_by_status"]) for e in s.get("levels", [])
                     if e["summary"]["errors_by_status"]] for name, s in stacks.items()}
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        lines += ["", f"Errors (concurrency, by status): {errors}"]
    return "\n".join(lines) + "\n"


def update_docs_table(table: str, page: Path = DOCS_PAGE) -> bool:
    text = page.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        return False
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    page.write_text(f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}", encoding="utf-8")
    return True


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, max_tokens 24 (about 10 minutes on 2 cores)")
    parser.add_argument("--config", default="configs/local.yaml", help="LeanServe config; its first bundle is the model")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated subset of {','.join(STACKS)}")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="closed-loop concurrency levels")
    parser.add_argument("--omp-threads", type=int, help="compute threads of every stack (default: the config's)")
    parser.add_argument("--label", default="", help="suffix of the results files (variants of a tuning run)")
    parser.add_argument("--no-docs", "--no-readme", dest="no_docs", action="store_true",
                        help="do not update the table in docs/benchmarks.md (--no-readme: the old name)")
    options = parser.parse_args(argv)

    subprocess.run([sys.executable, "-m", "models.prepare", "--out", ".models"], cwd=REPO_ROOT, check=True)
    workload = make_workload(options.config, options.quick, tuple(int(x) for x in options.levels.split(",")),
                             options.omp_threads)
    load_before = load_average()
    started = time.perf_counter()
    stacks: dict[str, dict] = {}
    logs = Path(tempfile.mkdtemp(prefix="compare-stacks-"))
    name = "compare" + (f"-{options.label}" if options.label else "")
    # Every finished stack is appended here at once, so an interrupted run keeps the stacks it measured;
    # the full result goes to a file of its own at the end. No results file is ever overwritten.
    runs_file = new_results_path(name, ".runs.jsonl")

    def result_so_far() -> dict:
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": options.quick,
            "label": options.label,
            "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                        "load_before": load_before, "load_after": load_average()},
            "wall_s": round(time.perf_counter() - started, 1),
            # Serve switches that change the LeanServe stack (RAY_SERVE_THROUGHPUT_OPTIMIZED, HAProxy) when set.
            "ray_serve_env": {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")},
            "workload": json.loads(workload.to_json()),
            "stacks": stacks,
            "comparison": compare(stacks, workload.levels),
        }

    for name in options.stacks.split(","):
        print(f"{LABELS[name]} ... (log: {logs / name}.log)", flush=True)
        t0 = time.perf_counter()
        try:
            stacks[name] = run_stack(name, workload, logs / f"{name}.log")
        except Exception as exc:  # noqa: BLE001 - one failed stack must not lose the others' figures
            stacks[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(f"  failed: {stacks[name]['error'][:2000]}", file=sys.stderr, flush=True)
        stacks[name]["load_after"] = load_average()
        print(f"  done in {time.perf_counter() - t0:.0f} s (load average {load_average()})", flush=True)
        append_line(runs_file, {"stack": name, **stacks[name]})
    result = result_so_far()
    out = write_new(name, result)
    table = markdown(result)
    out.with_suffix(".md").open("x", encoding="utf-8").write(table)
    if not options.no_docs and not options.label:
        update_docs_table(table)
    print(table)
    print(f"wrote {out} and .md in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
