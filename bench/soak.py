"""A bounded soak: a steady LeanCopilot load on the launched `make serve` stack, watching for drift.

Usage: python -m bench.soak [--minutes 10] [--concurrency 4] [--window-s 60] [--config configs/local.yaml]
                            [--port 23339] [--model default] [--label NAME]

It starts the launcher as `make serve` does (run `make models` first for the default config), keeps `concurrency` clients posting real miniF2F states to
/generate for `minutes`, and per window records the latency percentiles, the statuses, and the memory of the
whole process tree (PSS: shared pages count once). It reports errors (anything but 200, besides intended
503s, which are counted apart), the p99 drift (last window / first window) and the memory drift (last minus
first window), the RSS and PSS after warm-up and their slope since, then stops the stack with SIGINT.
Results: bench/results/soak-<UTC date and time>[-<label>].json, never overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from bench.stack_figures import GOALS, REPO_ROOT, percentile, start_stack

# The first windows load the model, fill the KV cache and warm the allocators: the slope is fitted after them.
WARMUP_WINDOWS = 3


def load_states() -> list[str]:
    return [json.loads(line)["goal"] for line in GOALS.open(encoding="utf-8")]


class Recorder:
    """Requests by the window they finished in."""

    def __init__(self, started: float, window_s: float):
        self.started = started
        self.window_s = window_s
        self.windows: dict[int, list[tuple[float, str]]] = {}

    def add(self, latency_s: float, outcome: str) -> None:
        index = int((time.perf_counter() - self.started) // self.window_s)
        self.windows.setdefault(index, []).append((latency_s, outcome))


async def client_loop(client: httpx.AsyncClient, states: list[str], offset: int, stride: int, model: str,
                      recorder: Recorder, stop_at: float) -> None:
    i = offset
    while time.perf_counter() < stop_at:
        body = json.dumps({"input": states[i % len(states)], "name": model, "prefix": ""}, ensure_ascii=False)
        i += stride
        t0 = time.perf_counter()
        try:
            response = await client.post("/generate", content=body.encode(), headers={"Content-Type": "application/json"})
            outcome = str(response.status_code)
            if response.status_code == 200 and not isinstance(response.json().get("outputs"), list):
                outcome = "200-bad-body"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        recorder.add(time.perf_counter() - t0, outcome)
        if outcome == "503":  # intended backpressure: honour Retry-After like a polite client
            await asyncio.sleep(1)


async def sample_memory(root: psutil.Process, recorder: Recorder, memory: dict[int, list[float]],
                        rss: dict[int, list[float]], loads: dict[int, list[float]],
                        by_process: dict[int, list[dict[str, float]]], stop_at: float) -> None:
    while time.perf_counter() < stop_at:
        index = int((time.perf_counter() - recorder.started) // recorder.window_s)
        # One read of every process's memory a sample: the tree's totals are the per-process figures summed.
        pss_mib, rss_mib = await asyncio.to_thread(memory_by_process_mib, root)
        memory.setdefault(index, []).append(sum(pss_mib.values()) / 1024)
        rss.setdefault(index, []).append(sum(rss_mib.values()) / 1024)
        loads.setdefault(index, []).append(os.getloadavg()[0])
        by_process.setdefault(index, []).append(pss_mib)
        await asyncio.sleep(10)  # a sampling period, not a wait for an event


def process_label(proc: psutil.Process) -> str:
    """The process's title (Ray and vLLM set theirs: `ray::ServeReplica:...`, `VLLM::Worker`), shortened."""
    cmdline = proc.cmdline()
    return (cmdline[0] if cmdline else proc.name())[:48]


def memory_by_process_mib(root: psutil.Process) -> tuple[dict[str, float], dict[str, float]]:
    """PSS and RSS per process title of the tree, summed over processes of the same title: where growth lives,
    not just how much (PSS counts shared pages once, so its sum is the tree's footprint)."""
    pss: dict[str, float] = {}
    rss: dict[str, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            label, info = process_label(proc), proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss[label] = pss.get(label, 0.0) + getattr(info, "pss", info.rss) / 2**20
        rss[label] = rss.get(label, 0.0) + info.rss / 2**20
    return pss, rss


def preloaded_allocators(root: psutil.Process) -> dict[str, list[str]]:
    """Which malloc replacement (jemalloc, tcmalloc) each vLLM process has mapped: proof the preload took."""
    found: dict[str, list[str]] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            label = process_label(proc)
            if "VLLM" not in label and "vllm" not in label.lower():
                continue
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
        found[label] = sorted({name for name in ("jemalloc", "tcmalloc") if name in maps})
    return found


def window_breakdown(samples: list[dict[str, float]]) -> dict[str, float]:
    labels = {label for sample in samples for label in sample}
    return {label: round(statistics.mean(sample.get(label, 0.0) for sample in samples), 1) for label in sorted(labels)}


def slope_mib_per_min(windows: list[dict], key: str, window_s: float) -> float | None:
    """Least-squares slope of `key` (GiB) over the windows after warm-up, in MiB per minute."""
    points = [(w["window"] * window_s / 60, w[key] * 1024) for w in windows
              if w["window"] >= WARMUP_WINDOWS and w.get(key) is not None]
    if len(points) < 3:
        return None
    mean_x = statistics.mean(x for x, _ in points)
    mean_y = statistics.mean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return round(sum((x - mean_x) * (y - mean_y) for x, y in points) / spread, 2)


async def soak(url: str, root: psutil.Process, options) -> dict:
    states = load_states()
    started = time.perf_counter()
    stop_at = started + options.minutes * 60
    recorder = Recorder(started, options.window_s)
    memory: dict[int, list[float]] = {}
    rss: dict[int, list[float]] = {}
    loads: dict[int, list[float]] = {}
    by_process: dict[int, list[dict[str, float]]] = {}
    allocators = preloaded_allocators(root)
    limits = httpx.Limits(max_connections=options.concurrency * 2)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await asyncio.gather(
            sample_memory(root, recorder, memory, rss, loads, by_process, stop_at),
            *(client_loop(client, states, k, options.concurrency, options.model, recorder, stop_at)
              for k in range(options.concurrency)),
        )
    windows = []
    for index in sorted(recorder.windows):
        rows = recorder.windows[index]
        ok = [latency for latency, outcome in rows if outcome == "200"]
        windows.append({
            "window": index,
            "requests": len(rows),
            "outcomes": dict(Counter(outcome for _, outcome in rows)),
            "p50_s": round(statistics.median(ok), 3) if ok else None,
            "p99_s": round(percentile(ok, 0.99), 3) if ok else None,
            "pss_gib": round(statistics.mean(memory[index]), 3) if memory.get(index) else None,
            "rss_sum_gib": round(statistics.mean(rss[index]), 3) if rss.get(index) else None,
            "loadavg_1m": round(statistics.mean(loads[index]), 2) if loads.get(index) else None,
            "pss_mib_by_process": window_breakdown(by_process[index]) if by_process.get(index) else None,
        })
    # A last window cut short by the end of the run holds few requests: compare full windows only.
    full = [w for w in windows if w["window"] < options.minutes * 60 // options.window_s and w["p99_s"] is not None]
    outcomes = Counter()
    for w in windows:
        outcomes.update(w["outcomes"])
    with_memory = [w for w in full if w["pss_gib"] is not None]
    first, last = (full[0], full[-1]) if len(full) >= 2 else (None, None)
    first_pss, last_pss = (with_memory[0]["pss_gib"], with_memory[-1]["pss_gib"]) if len(with_memory) >= 2 else (None, None)
    return {
        "requests": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "errors": sum(n for outcome, n in outcomes.items() if outcome not in ("200", "503")),
        "intended_503": outcomes.get("503", 0),
        "throughput_rps": round(outcomes.get("200", 0) / (options.minutes * 60), 3),
        # None when fewer than two full windows served a request: too short a run to speak of drift.
        "p99_first_window_s": first and first["p99_s"],
        "p99_last_window_s": last and last["p99_s"],
        "p99_drift_ratio": round(last["p99_s"] / first["p99_s"], 3) if first else None,
        # With few requests a window's p99 is its slowest request; the median drifts less by chance.
        "p50_drift_ratio": round(last["p50_s"] / first["p50_s"], 3) if first else None,
        "pss_first_window_gib": first_pss,
        "pss_last_window_gib": last_pss,
        "pss_drift_mib": round((last_pss - first_pss) * 1024, 1) if first_pss is not None else None,
        # The bound: after warm-up the tree's memory should stay flat (a slope near 0 MiB/min).
        "warmup_windows": WARMUP_WINDOWS,
        "pss_after_warmup_gib": next((w["pss_gib"] for w in full if w["window"] == WARMUP_WINDOWS), None),
        "rss_first_window_gib": with_memory[0]["rss_sum_gib"] if with_memory else None,
        "rss_after_warmup_gib": next((w["rss_sum_gib"] for w in full if w["window"] == WARMUP_WINDOWS), None),
        "rss_last_window_gib": with_memory[-1]["rss_sum_gib"] if with_memory else None,
        "pss_slope_after_warmup_mib_per_min": slope_mib_per_min(full, "pss_gib", options.window_s),
        "rss_slope_after_warmup_mib_per_min": slope_mib_per_min(full, "rss_sum_gib", options.window_s),
        "allocators_preloaded": allocators,
        "windows": windows,
    }


def write_soak_result(label: str, result: dict) -> Path:
    """bench/results/soak-<UTC date and time>[-<label>].json, created anew: a result is never overwritten."""
    out_dir = REPO_ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"-{label}" if label else ""
    out = out_dir / f"soak-{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}{suffix}.json"
    with out.open("x", encoding="utf-8") as handle:  # "x": fail rather than overwrite
        handle.write(json.dumps(result, indent=2) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--window-s", type=float, default=60)
    parser.add_argument("--port", type=int, default=23339)
    parser.add_argument("--model", default="default")
    parser.add_argument("--label", default="")
    options = parser.parse_args()

    try:
        launcher, url, _ = start_stack(options.config, options.port)
    except (RuntimeError, TimeoutError):
        return 1
    try:
        load_before = os.getloadavg()
        report = asyncio.run(soak(url, psutil.Process(launcher.pid), options))
        load_after = os.getloadavg()
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(timeout=180)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": options.config,
        "label": options.label,
        "minutes": options.minutes,
        "concurrency": options.concurrency,
        "window_s": options.window_s,
        # The machine may be shared: the load average says how much else ran meanwhile.
        "machine": {"cpus": psutil.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        **report,
    }
    out = write_soak_result(options.label, result)
    print(out)
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
