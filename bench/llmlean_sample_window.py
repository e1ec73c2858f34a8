"""LLMLean's Ollama client against `make serve`, with the sample window on and off, repeated and interleaved.

Usage: python -m bench.llmlean_sample_window [--repeats 3] [--samples 4] [--config configs/local.yaml]

LLMLean (`tacticGenerationOllama`) sends its `numSamples` requests one after another with one prompt (the second
at temperature 0) and keeps the distinct tactics. With `ingress.sample_window_s` on (the default) the first
request samples the bundle's n candidates once and the others are answered from them; off, every request is an
engine request. Two stacks run side by side (on, off), fed the same miniF2F states in turn (on, off, on, off,
...), with the machine's load recorded around each run. Per run: wall time, engine-bound requests and distinct
tactics LLMLean keeps. Results: bench/results/<UTC time>-llmlean-sample-window.json (never overwritten).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from bench.stack_figures import GOALS, REPO_ROOT, start_stack

CONTEXT = "import Mathlib\n\ntheorem bench_goal : True := by\n"


def instruct_prompt(state: str) -> str:
    """LLMLean's `makePromptsInstruct` with no prefix (its Ollama default)."""
    return (
        "/- You are proving a theorem in Lean 4.\nYou are given the following information:\n"
        "- The file contents up to the current tactic, inside [CTX]...[/CTX]\n"
        "- The current proof state, inside [STATE]...[/STATE]\n\n"
        "Your task is to generate the next tactic in the proof.\nPut the next tactic inside [TAC]...[/TAC].\n-/\n"
        f"[CTX]\n{CONTEXT}\n[/CTX]\n[STATE]\n{state}\n[/STATE]\n[TAC]\n"
    )


def split_tac(text: str) -> str:
    parts = text.split("[TAC]")
    return (parts[1] if len(parts) > 1 else text).split("[/TAC]")[0].strip(" \t\r\n")


def llmlean_run(url: str, model: str, state: str, samples: int) -> dict:
    """One `llmstep ""` as LLMLean runs it over the Ollama API."""
    tactics, errors = set(), 0
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        for i in range(samples):
            body = {"model": model, "prompt": instruct_prompt(state), "raw": False, "stream": False,
                    "options": {"temperature": 0.0 if i == 1 else 0.7, "stop": ["[/TAC]"], "num_predict": 128}}
            response = client.post("/api/generate", json=body)
            if response.status_code != 200:
                errors += 1
                continue
            tactic = split_tac(response.json()["response"])
            if tactic and not any(b in tactic for b in ("sorry", "admit", "▅")):
                tactics.add(tactic)
    return {"seconds": time.perf_counter() - started, "distinct_tactics": len(tactics), "errors": errors}


def window_config(base: str, window_s: float) -> str:
    config = yaml.safe_load((REPO_ROOT / base).read_text(encoding="utf-8"))
    config["applications"][0]["args"].setdefault("ingress", {})["sample_window_s"] = window_s
    handle, path = tempfile.mkstemp(suffix=".yaml")  # relative model paths resolve from the cwd (REPO_ROOT)
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(config, out, allow_unicode=True)
    return path


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4, help="LLMLean's numSamples (its Ollama default: 4)")
    options = parser.parse_args()

    states = [json.loads(line)["goal"] for line in GOALS.open(encoding="utf-8")][: options.repeats]
    variants = {"window_on": None, "window_off": 0.0}
    stacks, configs = {}, []
    try:
        for port, (name, window) in zip((23351, 23352), variants.items(), strict=True):
            config = options.config if window is None else window_config(options.config, window)
            if window is not None:
                configs.append(config)
            stacks[name] = start_stack(str(config), port)
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for state in states:
            for name in variants:  # interleaved: on, off, on, off, ...
                load_before = os.getloadavg()[0]
                run = llmlean_run(stacks[name][1], options.model, state, options.samples)
                runs[name].append({**run, "load_before": load_before, "load_after": os.getloadavg()[0]})
                print(name, run, flush=True)
    finally:
        for launcher, _, _ in stacks.values():
            launcher.send_signal(signal.SIGINT)
        for launcher, _, _ in stacks.values():
            launcher.wait(timeout=180)
        for config in configs:
            Path(config).unlink(missing_ok=True)

    summary = {name: {key: spread([r[key] for r in rs]) for key in ("seconds", "distinct_tactics")}
               | {"errors": sum(r["errors"] for r in rs)} for name, rs in runs.items()}
    ratios = [off["seconds"] / on["seconds"] for on, off in zip(runs["window_on"], runs["window_off"], strict=True)]
    result = {"when": datetime.now(UTC).isoformat(), "config": options.config, "samples": options.samples,
              "runs": runs, "summary": summary, "off_over_on_seconds": spread(ratios)}
    out_dir = REPO_ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-llmlean-sample-window.json"
    with out.open("x") as handle:  # never overwrite a result
        handle.write(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": summary, "off_over_on_seconds": result["off_over_on_seconds"]}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
