"""The serve config files of bench/overhead.py's suites, written as temporary files (same format as configs/).

- the tiny random model of the tests (tests/tiny_models.py builds it from a config; no hub), as the tests' serve
  app configures it: prompt "{state}:::", n=4, 12 tokens, no stop string (every request samples all 12);
- the no-op bundle: the same bundle shape, answered by bench/noop_stacks.py's NoopEngine.
Variants change one setting each (bench/overhead.py's tuning candidates).
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MAX_TOKENS = 12
TINY_MODEL_DIR = Path(tempfile.gettempdir()) / "leanserve-bench-tiny-llama"


def build_tiny_model(folder: Path = TINY_MODEL_DIR) -> Path:
    """The tests' tiny random Llama (2 layers, hidden 64), built once from its config and kept in /tmp."""
    if (folder / "config.json").exists() and (folder / "tokenizer.json").exists():
        return folder
    sys.path.insert(0, str(REPO_ROOT / "tests"))  # the one builder the tests use too
    from tiny_models import build_tiny_llama

    return build_tiny_llama(folder)


def bundle_dict(name: str, model: str, max_num_seqs: int = 64) -> dict:
    return {
        "name": name,
        "model": model,
        "prompt": {"template": "{state}:::"},
        "sampling": {"n": 4, "temperature": 1.0, "max_tokens": TINY_MAX_TOKENS, "stop": []},
        "engine_args": {
            "dtype": "float32",
            "max_model_len": 4096,
            "kv_cache_memory_bytes": 256 << 20,
            "max_num_seqs": max_num_seqs,
            "enforce_eager": True,
        },
        "deployment": {"num_cpus": 0.5},
    }


def serve_config(bundle: dict, ingress: dict | None = None) -> dict:
    return {
        "http_options": {"host": "127.0.0.1", "port": 23337},
        "applications": [
            {
                "name": "leanserve",
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "args": {"ingress": {"num_cpus": 0.25, **(ingress or {})}, "models": [bundle]},
            }
        ],
    }


def with_changes(config: dict, ingress: dict | None = None, bundle_env: dict | None = None) -> dict:
    """`config` with ingress settings or the bundle replica's environment changed (a tuning candidate)."""
    out = copy.deepcopy(config)
    args = out["applications"][0]["args"]
    args["ingress"].update(ingress or {})
    if bundle_env:
        deployment = args["models"][0].setdefault("deployment", {})
        deployment.setdefault("env_vars", {}).update(bundle_env)
    return out


def write_config(config: dict, prefix: str) -> str:
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"leanserve-bench-{prefix}-", delete=False,
                                         encoding="utf-8")
    with handle:
        yaml.safe_dump(config, handle, allow_unicode=True, sort_keys=False)
    return handle.name


def yaml_config(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def tiny_config() -> dict:
    return serve_config(bundle_dict("tiny", str(build_tiny_model())))


def noop_config() -> dict:
    from bench.noop_stacks import NOOP_MODEL

    return serve_config(bundle_dict("noop", NOOP_MODEL))
