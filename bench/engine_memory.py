"""Where the vLLM CPU worker's memory grows: one engine, no Ray, requests in interleaved phases.

Usage: python -m bench.engine_memory [--config configs/local.yaml | --tiny] [--rounds 4] [--per-phase 8]
                                     [--concurrency 1] [--env NAME=VALUE ...] [--label NAME]

The engine is built as a LeanServe bundle builds it (models/vllm_engine.py from the config's first bundle). Each
round runs three phases, and the PSS of each vLLM process (by title: VLLM::EngineCore, VLLM::Worker) is sampled
before and after each phase:
- `repeat`: one fixed proof state, again and again (after its first request, no new batch shape);
- `new`: proof states never sent before (new prompt lengths, so new batch token counts M);
- `seen`: states the `new` phase of an earlier round sent (the same lengths again).
Each request's uncached prompt tokens (prompt - prefix-cache hits) is the M of its prefill step when it runs
alone (concurrency 1); a phase records how many such M it met for the first time. Throughput per phase (tokens/s)
comes from the same run, so an `--env` knob's cost can be read off against a run without it.

`--env` values are set in this process before the engine starts: the engine core and worker processes that vLLM
spawns inherit them (e.g. ONEDNN_PRIMITIVE_CACHE_CAPACITY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

import psutil

from bench.results_io import new_results_path
from leanserve_client.states import load_states

PHASES = ("repeat", "new", "seen")


def vllm_pss_mib(root: psutil.Process) -> dict[str, float]:
    """PSS (MiB) per vLLM process title among `root`'s descendants (vLLM sets `VLLM::EngineCore`, `VLLM::Worker`)."""
    totals: dict[str, float] = {}
    for proc in root.children(recursive=True):
        try:
            cmdline = proc.cmdline()
            label = (cmdline[0] if cmdline else proc.name())[:40]
            if "VLLM" not in label:
                continue
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        totals[label] = round(totals.get(label, 0.0) + info.pss / 2**20, 1)
    return totals


def load_bundle(options):
    if options.tiny:
        from bench.configs import build_tiny_model, bundle_dict
        from core.config import BundleConfig

        return BundleConfig.model_validate(bundle_dict("tiny", str(build_tiny_model())))
    from bench.workload import load_bundle as from_config

    bundle = from_config(options.config)
    if options.eager:
        engine_args = bundle.engine_args.model_copy(update={"enforce_eager": True})
        bundle = bundle.model_copy(update={"engine_args": engine_args})
    return bundle


async def run(options) -> dict:
    from logic.prompts import PromptBuilder
    from logic.validation import resolve_sampling
    from models.chat_template import load_chat_renderer
    from models.vllm_engine import VLLMEngine  # the one module that imports vLLM

    bundle = load_bundle(options)
    renderer = load_chat_renderer(bundle.tokenizer or bundle.model) if bundle.prompt.chat else None
    prompts = PromptBuilder(bundle.prompt, renderer)
    sampling = resolve_sampling(bundle.sampling, None, options.max_tokens)
    engine = VLLMEngine(bundle)
    await engine.start()
    me = psutil.Process()
    states = load_states(seed=options.seed)
    fixed, pool = states[0], states[1:]
    sent_new: list[str] = []
    seen_m: set[int] = set()

    async def send_all(batch: list[str]) -> dict:
        queue = list(batch)
        tokens, uncached = 0, []

        async def worker() -> None:
            nonlocal tokens
            while queue:
                out = await engine.generate(prompts.build(queue.pop()), sampling, uuid.uuid4().hex)
                tokens += sum(c.num_tokens for c in out.completions)
                uncached.append(out.prompt_tokens - out.cached_prompt_tokens)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(options.concurrency)))
        wall = time.perf_counter() - started
        first_seen = sorted(set(uncached) - seen_m)
        seen_m.update(uncached)
        return {"requests": len(batch), "tokens": tokens, "wall_s": round(wall, 2),
                "tokens_per_s": round(tokens / wall, 2), "uncached_prompt_tokens": uncached,
                "new_prefill_m": len(first_seen)}

    try:
        await send_all([fixed] * options.concurrency)  # warm-up: the first shapes, the fixed prompt cached
        start_pss = vllm_pss_mib(me)
        phases = []
        cursor = 0
        for round_index in range(options.rounds):
            for phase in PHASES:
                if phase == "repeat":
                    batch = [fixed] * options.per_phase
                elif phase == "new":
                    batch = pool[cursor: cursor + options.per_phase]
                    cursor += options.per_phase
                    sent_new.extend(batch)
                else:
                    if round_index == 0:
                        continue  # nothing seen yet
                    earlier = sent_new[: -options.per_phase]  # sent in an earlier round, not this one
                    batch = [earlier[(round_index * 7 + i) % len(earlier)] for i in range(options.per_phase)]
                before = vllm_pss_mib(me)
                result = await send_all(batch)
                after = vllm_pss_mib(me)
                result |= {"round": round_index, "phase": phase, "pss_after_mib": after,
                           "pss_delta_mib": {k: round(after[k] - before.get(k, 0.0), 1) for k in after}}
                phases.append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "uncached_prompt_tokens"}), flush=True)
    finally:
        engine.shutdown()
    return {"pss_start_mib": start_pss, "phases": phases, "summary": summarize(phases)}


def summarize(phases: list[dict]) -> dict:
    """Per phase kind: PSS growth per vLLM process title, per request and per first-seen prefill M (the
    worker's), and tokens/s per run of it. Titles are kept apart: the engine core's PSS moves when pages it
    shares with the worker change hands, which is not growth."""
    out = {}
    for phase in PHASES:
        rows = [p for p in phases if p["phase"] == phase]
        if not rows:
            continue
        titles = sorted({title for r in rows for title in r["pss_delta_mib"]})
        grown = {t: round(sum(r["pss_delta_mib"].get(t, 0.0) for r in rows), 1) for t in titles}
        # The process the model runs in: the worker, or the engine core where vLLM runs none (one process on CPUs
        # with VLLM_ENABLE_V1_MULTIPROCESSING=0, deployments/options.py).
        worker = grown.get("VLLM::Worker", grown.get("VLLM::EngineCore", 0.0))
        requests = sum(r["requests"] for r in rows)
        new_m = sum(r["new_prefill_m"] for r in rows)
        out[phase] = {"requests": requests, "pss_growth_mib": grown,
                      "worker_mib_per_request": round(worker / requests, 3), "new_prefill_m": new_m,
                      "worker_mib_per_new_m": round(worker / new_m, 3) if new_m else None,
                      "tokens_per_s": [r["tokens_per_s"] for r in rows]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random model instead of --config")
    parser.add_argument("--eager", action="store_true", help="enforce_eager (skip the minute of torch.compile)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-phase", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the engine's processes")
    parser.add_argument("--label", default="")
    options = parser.parse_args()
    env = dict(item.split("=", 1) for item in options.env)
    os.environ.update(env)  # before the engine core is spawned: it inherits them
    started = datetime.now(UTC)
    report = asyncio.run(run(options))
    result = {"date": started.isoformat(timespec="seconds"), "label": options.label,
              "model": "tiny" if options.tiny else options.config, "eager": options.eager or options.tiny,
              "concurrency": options.concurrency, "per_phase": options.per_phase, "rounds": options.rounds,
              "env": env, "machine": {"cpus": psutil.cpu_count(), "loadavg_after": os.getloadavg()}, **report}
    name = "engine-memory" + (f"-{options.label}" if options.label else "")
    path = new_results_path(name, ".json", started)  # claimed with mode "x": a result is never overwritten
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(path)
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    sys.exit(main())
