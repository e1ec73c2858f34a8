"""The no-op stacks of bench/overhead.py: an engine that answers at once, behind three servers.

Usage: python -m bench.noop_stacks {leanserve,serve,uvicorn} CONFIG --port PORT [--variant NAME]

- leanserve: LeanServe itself (deployments.app.bind_app, the config's bundles) with `NoopEngine` injected
  through the engine factory: every hop, middleware and validation of a real /generate, no model compute;
- serve: the trivial Ray Serve app of the same shape, a FastAPI ingress and one handle hop to a deployment
  that answers: Serve's own floor;
- uvicorn: one uvicorn + FastAPI process answering inline: the HTTP floor.
All three answer LeanCopilot's /generate with n candidates, so one load generator drives them alike. The
variants (`--variant`) are the tuning candidates that need code rather than an environment variable, and
`serve --variant vllm`: the trivial Serve app whose deployment holds the config's real vLLM engine (the bare
engine's call: the bundle's prompt and sampling, models/vllm_engine.py), Serve's floor with a real engine;
`serve --variant vllm-batched` is that floor with the handle hop batched: the ingress gathers concurrent
requests with Serve's `@serve.batch` and sends each batch in one handle call (a candidate, not LeanServe's way).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid

from bench.bare_engine import start_engine
from core.config import AppArgs, BundleConfig, load_serve_config
from core.payloads import Completion, EngineLoad, EngineOutput, SamplingRequest
from logic.validation import resolve_sampling

NOOP_MODEL = "bench/noop"  # a name only: nothing loads it


class NoopEngine:
    """Answers every request at once with n distinct one-line tactics (the GenerationEngine interface)."""

    def __init__(self, config: BundleConfig):
        self.config = config

    async def start(self) -> None:
        pass

    async def generate(self, prompt: str, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        completions = [
            Completion(text=f" noop_{i}", cumulative_logprob=-0.25 * (i + 1), num_tokens=2, finish_reason="stop")
            for i in range(sampling.n)
        ]
        return EngineOutput(completions=completions, prompt_tokens=len(prompt))

    async def check_health(self) -> None:
        pass

    async def num_unfinished_requests(self) -> int:
        return 0

    def load(self) -> EngineLoad:
        return EngineLoad()

    def shutdown(self) -> None:
        pass


def noop_engine(config: BundleConfig) -> NoopEngine:
    """The engine factory LeanServe's bundles get here (module level: Ray pickles it by reference)."""
    return NoopEngine(config)


def noop_outputs(n: int) -> list[dict]:
    """What the floors answer: LeanCopilot's candidates, as LeanServe's no-op bundle returns them."""
    return [{"output": f"noop_{i}", "score": 0.5 ** (i + 1)} for i in range(n)]


def app_args(config: str) -> AppArgs:
    return load_serve_config(config).applications[0].args


# -- the three servers ---------------------------------------------------------------------------------------


def leanserve_app(args: AppArgs, variant: str):
    from deployments.app import bind_app

    if variant not in ("", "default"):
        raise ValueError(f"unknown LeanServe variant {variant!r}")
    return bind_app(args, engine_factory=noop_engine)


def trivial_serve_app(args: AppArgs, variant: str = ""):
    """A FastAPI ingress and one handle hop, with LeanServe's ingress and bundle limits."""
    from fastapi import FastAPI
    from ray import serve

    bundle = args.models[0]
    web = FastAPI()

    @serve.deployment(
        name="answer",
        max_ongoing_requests=bundle.max_ongoing_requests,
        max_queued_requests=bundle.max_queued_requests,
        ray_actor_options={"num_cpus": bundle.deployment.num_cpus},
    )
    class Answer:
        async def __init__(self):
            self.engine = None
            if variant.startswith("vllm"):  # the engine starts on the replica's loop, as in a LeanServe bundle
                self.engine, self.prompts = await start_engine(bundle)

        async def ready(self) -> bool:
            return True

        async def answer(self, state: str, n: int, max_tokens: int | None = None) -> list[dict]:
            if self.engine is None:
                return noop_outputs(n)
            sampling = resolve_sampling(bundle.sampling, n, max_tokens)
            output = await self.engine.generate(self.prompts.build(state), sampling, uuid.uuid4().hex)
            return [{"output": c.text, "score": 0.0} for c in output.completions]

        async def answer_many(self, calls: list[tuple[str, int, int | None]]) -> list[list[dict]]:
            """One handle call for a batch of requests: the engine still gets each on its own, at once."""
            return list(await asyncio.gather(*(self.answer(*call) for call in calls)))

    @serve.deployment(
        name="ingress",
        num_replicas=args.ingress.num_replicas,
        max_ongoing_requests=args.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": args.ingress.num_cpus},
    )
    @serve.ingress(web)
    class Ingress:
        def __init__(self, answer):
            self.answer = answer

        @web.post("/generate")
        async def generate(self, body: dict) -> dict:
            call = (body["input"], body.get("n") or bundle.sampling.n, body.get("max_tokens"))
            if variant == "vllm-batched":
                return {"outputs": await self.answer_batched(call)}
            return {"outputs": await self.answer.answer.remote(*call)}

        # Requests that arrive within a millisecond share one handle call; several batches may be in flight, so
        # a batch waits for the engine only as long as its slowest request.
        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001, max_concurrent_batches=8)
        async def answer_batched(self, calls: list[tuple[str, int, int | None]]) -> list[list[dict]]:
            return await self.answer.answer_many.remote(calls)

        @web.get("/health")
        async def health(self) -> dict:
            # Healthy once the deployment (and its engine) is up, as LeanServe's /health reports its bundles.
            return {"status": "ok" if await self.answer.ready.remote() else "starting"}

    return Ingress.bind(Answer.bind())


def run_serve(app, port: int) -> None:
    import ray
    from ray import serve

    from core.config import WORKER_NICENESS, WORKER_NICENESS_ENV
    from deployments.launch import install_stop_handlers

    # The trivial Serve app's workers at the priority LeanServe's launcher gives its own: the floor compares alike.
    os.environ.setdefault(WORKER_NICENESS_ENV, WORKER_NICENESS)
    ray.init(address="local", include_dashboard=False, configure_logging=False)
    install_stop_handlers()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app, name="bench", route_prefix="/", blocking=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        serve.shutdown()
        ray.shutdown()


def run_uvicorn(args: AppArgs, port: int, variant: str) -> None:
    """`variant` asyncio-h11: the pure-Python event loop and HTTP parser instead of uvloop and httptools."""
    import uvicorn
    from fastapi import FastAPI

    bundle = args.models[0]
    web = FastAPI()

    @web.post("/generate")
    async def generate(body: dict) -> dict:
        return {"outputs": noop_outputs(body.get("n") or bundle.sampling.n)}

    @web.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    if variant not in ("", "default", "asyncio-h11"):
        raise ValueError(f"unknown uvicorn variant {variant!r}")
    loop, http = ("asyncio", "h11") if variant == "asyncio-h11" else ("auto", "auto")
    uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning", loop=loop, http=http)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=("leanserve", "serve", "uvicorn"))
    parser.add_argument("config", help="a serve config file whose first application's args hold the no-op bundle")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", default="")
    options = parser.parse_args(argv)
    args = app_args(options.config)
    if options.server == "uvicorn":
        run_uvicorn(args, options.port, options.variant)
    elif options.server == "serve":
        if options.variant not in ("", "default", "vllm", "vllm-batched"):
            raise ValueError(f"unknown Serve variant {options.variant!r}")
        run_serve(trivial_serve_app(args, options.variant), options.port)
    else:
        run_serve(leanserve_app(args, options.variant), options.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
