"""Remote bundle configuration: engine kinds and their sections, readable errors, the lazy engine factory."""

import subprocess
import sys

import pytest
from pydantic import ValidationError
from support import REPO_ROOT

from core.config import AppArgs, BundleConfig, ConfigError, load_serve_config, parse_app_args

REMOTE = {"base_url": "https://router.huggingface.co/v1", "api_key_env": "HF_TOKEN"}


def remote_bundle(**overrides):
    spec = {"name": "r", "engine": "openai", "model": "org/m", "prompt": {"chat": True}, "sampling": {"stop": []},
            "remote": REMOTE}
    spec.update(overrides)
    return {"models": [spec]}


def test_a_remote_bundle_validates():
    bundle = parse_app_args(remote_bundle()).models[0]
    assert bundle.is_remote and bundle.routes == ["generate", "complete"]
    assert bundle.remote.max_retries >= 0 and bundle.remote.timeout_s > 0
    assert not bundle.dedup.enabled  # opt-in


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"remote": None}, "needs a `remote:` section"),
        ({"prompt": {"chat": False}}, "set prompt.chat: true"),
        ({"sampling": {"stop": ["\n"]}}, "set sampling.stop: []"),
        ({"model": None}, "needs a model"),
        ({"engine": "vllm", "sampling": {}, "prompt": {}}, "only for engines openai, anthropic, gemini"),
        ({"remote": {**REMOTE, "api_key_env": "hf_abc123 secret"}}, "NAME of an environment variable"),
        ({"remote": {**REMOTE, "max_retries": 1000}}, "max_retries"),
        ({"remote": {**REMOTE, "base_ulr": "x"}}, "base_ulr"),
        ({"engine": "cohere"}, "engine"),
    ],
)
def test_mismatched_remote_settings_fail_readably(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        parse_app_args(remote_bundle(**overrides))
    assert fragment in str(info.value)


def test_shipped_serve_config_has_the_seed_default_deepseek_bundle():
    config = load_serve_config(REPO_ROOT / "serve_config.yaml")
    bundle = next(b for b in config.applications[0].args.models if b.name == "deepseek")
    assert bundle.engine == "openai"
    assert bundle.model == "deepseek-ai/DeepSeek-Prover-V2-671B:novita"
    assert bundle.remote.base_url == "https://router.huggingface.co/v1"
    assert bundle.remote.api_key_env == "HF_TOKEN"
    assert (bundle.sampling.temperature, bundle.sampling.top_p, bundle.sampling.max_tokens, bundle.sampling.n) == (
        0.6, 0.9, 256, 4)
    assert bundle.deployment.num_gpus == 0


def test_remote_engines_never_import_vllm():
    # A machine without vLLM serves remote bundles: the factory imports per engine kind.
    code = (
        "from core.config import BundleConfig\n"
        "from models.engine_factory import make_engine\n"
        "import sys\n"
        "for kind in ('openai', 'anthropic', 'gemini'):\n"
        "    make_engine(BundleConfig(name=kind, engine=kind, model='m', prompt={'chat': True},"
        " sampling={'stop': []}, remote={'api_key_env': 'X'}))\n"
        "assert 'vllm' not in sys.modules, 'vllm imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_bundle_config_sections_are_typed():
    bundle = BundleConfig.model_validate(remote_bundle()["models"][0])
    with pytest.raises(ValidationError):
        bundle.remote.timeout_s = 1  # frozen, like every config model
    assert AppArgs.model_validate(remote_bundle()).models[0] == bundle
