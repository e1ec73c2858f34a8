"""Stack (a) of compare_stacks.py: the bare vLLM AsyncLLM in this process, no HTTP, no Ray: the ceiling.

Usage (compare_stacks.py runs it as a child process): python -m bench.bare_engine WORKLOAD.json OUT.json

It builds the engine exactly as a LeanServe bundle does (models/vllm_engine.py, the same engine arguments and
prompt), warms it up, then runs the workload's closed-loop levels in-process and writes their summaries.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import psutil

from bench.workload import Workload
from core.config import BundleConfig
from leanserve_client.client import GenerateResult
from leanserve_client.loadgen import closed_loop
from leanserve_client.states import load_states
from logic.prompts import PromptBuilder
from logic.validation import resolve_sampling
from models.chat_template import load_chat_renderer


async def start_engine(bundle: BundleConfig):
    """The bundle's vLLM engine, started, and its prompt builder (also the trivial Serve app's engine)."""
    from models.vllm_engine import VLLMEngine  # the one module that imports vLLM

    renderer = load_chat_renderer(bundle.tokenizer or bundle.model) if bundle.prompt.chat else None
    engine = VLLMEngine(bundle)
    await engine.start()
    return engine, PromptBuilder(bundle.prompt, renderer)


async def run(workload: Workload) -> dict:
    engine, prompts = await start_engine(workload.bundle())
    sampling = resolve_sampling(workload.bundle().sampling, workload.n, workload.max_tokens)

    async def send(state: str) -> GenerateResult:
        started = time.perf_counter()
        try:
            # The prompt is rendered per request, as the bundle does.
            output = await asyncio.wait_for(
                engine.generate(prompts.build(state), sampling, uuid.uuid4().hex), workload.request_timeout_s
            )
        except TimeoutError:
            # Like the HTTP clients' timeout (status 0: no answer); cancelling aborts the engine request.
            return GenerateResult(0, time.perf_counter() - started, error="timed out")
        except Exception as exc:  # noqa: BLE001 - recorded, like an HTTP error
            return GenerateResult(500, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
        return GenerateResult(200, time.perf_counter() - started, candidates=[(c.text, 0.0) for c in output.completions])

    states = load_states(seed=workload.seed)
    for state in states[: workload.warmup_requests]:
        await send(state)
    # Ready as the HTTP stacks count it: from process start to answering requests (imports included).
    ready_s = time.time() - psutil.Process().create_time()
    offsets = workload.offsets()
    levels = []
    try:
        for level in workload.levels:
            result = await closed_loop(
                send, states, level, workload.requests[level], offset=offsets[level],
                deadline_s=workload.level_deadline_s, progress=False,
            )
            print(f"c={level}: {result.summary.requests_per_s:.3f} req/s, p50 {result.summary.latency_p50_s:.2f} s",
                  flush=True)
            levels.append(result.as_dict(with_records=False))
    finally:
        engine.shutdown()
    return {"ready_s": ready_s, "levels": levels}


def main() -> int:
    workload = Workload.from_json(open(sys.argv[1], encoding="utf-8").read())
    result = asyncio.run(run(workload))
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    sys.exit(main())
