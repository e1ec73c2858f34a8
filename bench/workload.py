"""The one workload every stack of compare_stacks.py serves: same model, prompt, sampling and states.

Pure (no vLLM, no Ray), so the child processes of the benchmark and its tests share it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from core.config import BundleConfig, load_serve_config

LEVELS = (1, 4, 16, 64)


@dataclass(frozen=True)
class Workload:
    config: str  # the LeanServe config file whose first bundle defines model, prompt and engine settings
    model_name: str  # the bundle name LeanServe answers to
    n: int
    max_tokens: int
    levels: tuple[int, ...]
    requests: dict[int, int]  # concurrency -> requests at that level
    warmup_requests: int = 2
    level_deadline_s: float = 120.0  # no new request starts after this; in-flight ones finish
    request_timeout_s: float = 300.0
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def offsets(self) -> dict[int, int]:
        """Where each level starts in the state list: every stack sends the same states at the same level."""
        out, at = {}, self.warmup_requests
        for level in self.levels:
            out[level] = at
            at += self.requests[level]
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        data = json.loads(text)
        data["levels"] = tuple(data["levels"])
        data["requests"] = {int(k): v for k, v in data["requests"].items()}
        return cls(**data)

    def bundle(self) -> BundleConfig:
        return load_bundle(self.config)


def make_workload(config: str, quick: bool, levels: tuple[int, ...] = LEVELS, omp_threads: int | None = None) -> Workload:
    source = config
    if quick or omp_threads:
        config = str(config_variant(config, eager=quick, omp_threads=omp_threads))
    bundle = load_bundle(config)
    if quick:
        # Bounded wall time on 2 cores: short generations, one wave at the top level, and a 120 s client timeout
        # (a one-at-a-time server would otherwise take 64 x its latency at concurrency 64; timeouts count as errors).
        requests = {c: max(4, 2 * c) if c < 64 else c for c in levels}
        return Workload(config, bundle.name, n=4, max_tokens=24, levels=levels, requests=requests,
                        level_deadline_s=90.0, request_timeout_s=120.0, extra={"source_config": source, "enforce_eager": True,
                                                         "omp_threads": omp_threads})
    requests = {c: max(8, 3 * c) for c in levels}
    return Workload(config, bundle.name, n=4, max_tokens=bundle.sampling.max_tokens, levels=levels, requests=requests,
                    level_deadline_s=300.0, extra={"source_config": source, "omp_threads": omp_threads})


def load_bundle(config: str | Path) -> BundleConfig:
    spec = load_serve_config(str(config))
    return spec.applications[0].args.models[0]


def config_variant(config: str | Path, eager: bool, omp_threads: int | None) -> Path:
    """The config with its first bundle changed for a benchmark variant, as a temporary file.

    `eager` (--quick): vLLM's CPU build compiles the model for about a minute at every start (its compile cache
    fails to reload here); eager mode skips that for all three vLLM stacks alike. `omp_threads`: the compute
    threads of every stack (the bundle's OMP_NUM_THREADS, which bench passes to all of them); on a machine
    shared with other work, spinning OpenMP threads slow each other down. The file keeps the original's relative
    paths, so it is read from the repository root like the original.
    """
    raw = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    bundle = raw["applications"][0]["args"]["models"][0]
    if eager:
        bundle.setdefault("engine_args", {})["enforce_eager"] = True
    if omp_threads:
        deployment = bundle.setdefault("deployment", {})
        deployment.setdefault("env_vars", {})["OMP_NUM_THREADS"] = str(omp_threads)
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="leanserve-bench-", delete=False, encoding="utf-8")
    with handle:
        yaml.safe_dump(raw, handle, allow_unicode=True, sort_keys=False)
    return Path(handle.name)
