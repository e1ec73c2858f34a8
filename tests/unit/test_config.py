"""Configuration: defaults, derived settings, readable failures, and the shipped config files."""

import pytest
from support import REPO_ROOT

from core.config import AppArgs, BundleConfig, ConfigError, load_serve_config, parse_app_args

SHIPPED_CONFIGS = ["serve_config.yaml", "configs/local.yaml"]


def test_defaults_size_the_replica_for_batching():
    bundle = BundleConfig(name="m", model="org/model", engine_args={"max_num_seqs": 48})
    # Serve's own default of 5 ongoing requests would starve a batching engine.
    assert bundle.max_ongoing_requests == 48
    assert bundle.routes == ["generate", "complete"]
    assert bundle.deployment_name == "bundle-m"


def test_hub_ids_become_valid_deployment_names():
    bundle = BundleConfig(name="ByteDance-Seed/BFS-Prover-V2-7B", model="x")
    assert "/" not in bundle.deployment_name


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"models": [{"name": "m", "model": "x", "sampling": {"temprature": 1}}]}, "models.0.sampling.temprature"),
        ({"models": [{"name": "m", "modle": "x"}]}, "models.0.modle"),
        ({"models": []}, "models"),
        ({"models": [{"name": "m"}]}, "needs a model, an encoder, or both"),
        ({"models": [{"name": "a", "model": "x"}, {"name": "b", "model": "y", "aliases": ["a"]}]}, "'a'"),
        ({"models": [{"name": "m", "model": "x", "prompt": {"template": "no placeholder"}}]}, "{state}"),
        ({"models": [{"name": "m", "model": "x", "deployment": {"autoscaling": {"min_replicas": 3}}}]}, "min_replicas"),
    ],
)
def test_bad_args_fail_with_a_message_naming_the_field(args, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_app_args(args)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_config_files_validate(name):
    config = load_serve_config(REPO_ROOT / name)
    assert config.http_options.port == 23337
    assert all(isinstance(app.args, AppArgs) for app in config.applications)


def test_gpu_config_serves_real_provers_with_autoscaling():
    args = load_serve_config(REPO_ROOT / "serve_config.yaml").applications[0].args
    models = {bundle.model for bundle in args.models}
    assert "ByteDance-Seed/BFS-Prover-V2-7B" in models and len(models) >= 2
    bfs = next(b for b in args.models if b.model == "ByteDance-Seed/BFS-Prover-V2-7B")
    assert bfs.prompt.template == "{state}:::"
    # vLLM bundles get whole GPUs; ByT5 (300M parameters) on the transformers engine shares one; remote bundles
    # are light CPU deployments.
    vllm_bundles = [b for b in args.models if b.engine == "vllm"]
    assert all(b.deployment.num_gpus >= 1 and b.deployment.autoscaling.max_replicas > 1 for b in vllm_bundles)


def test_relative_model_paths_are_made_absolute():
    bundle = BundleConfig(name="m", model="./.models/x", encoder={"model": "./.models/e"})
    assert bundle.model.startswith("/") and bundle.encoder.model.startswith("/")


def test_docs_configuration_reference_matches_the_models():
    from core.config.reference import embed

    page = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert embed(page) == page, "docs/configuration.md's configuration reference is stale: run `make docs`"


def test_check_config_cli_accepts_shipped_files_and_names_a_typo(tmp_path, capsys):
    from deployments.check_config import main

    assert main([str(REPO_ROOT / name) for name in SHIPPED_CONFIGS]) == 0
    assert "bundle-bfs-prover-v2-7b" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO_ROOT / "serve_config.yaml").read_text().replace("top_p", "topp", 1))
    assert main([str(bad)]) == 2
    assert "applications.0.args.models.0.sampling.topp: Extra inputs are not permitted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bundle", "fragment"),
    [
        ({"name": "m", "model": "x", "transformers": {"device": "cpu"}}, "need engine: transformers"),
        ({"name": "m", "model": "x", "engine": "transformers", "transformers": {"decoding": "greedy"}}, "decoding"),
        ({"name": "m", "model": "x", "engine": "tensorrt"}, "engine"),
        ({"name": "m", "model": "x", "task": "whole_proof"}, "set sampling.stop to []"),
        ({"name": "m", "encoder": {"model": "e"}, "task": "whole_proof", "sampling": {"stop": []}}, "needs a model"),
        ({"name": "m", "model": "x", "whole_proof": {"preset": "deepseek-prover-v2"}}, "need task: whole_proof"),
        ({"name": "m", "model": "x", "task": "whole_proof", "sampling": {"stop": []}, "whole_proof": {"preset": "gpt"}}, "preset"),
    ],
)
def test_engine_and_task_settings_must_match_their_kind(bundle, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_app_args({"models": [bundle]})
    assert fragment in str(caught.value)


def test_routes_follow_the_task():
    tactic = BundleConfig(name="t", model="x", engine="transformers", encoder={"model": "e"})
    assert tactic.routes == ["generate", "complete", "encode"]
    assert tactic.transformers_settings.decoding is None and tactic.transformers_settings.length_penalty == 0.0
    prover = BundleConfig(name="p", model="x", task="whole_proof", sampling={"stop": []})
    assert prover.routes == ["prove", "complete"]
    assert prover.whole_proof_settings.preset == "deepseek-prover-v2"


def test_shipped_config_serves_leancopilots_byt5_models_under_their_names():
    args = load_serve_config(REPO_ROOT / "serve_config.yaml").applications[0].args
    by_name = {name: bundle for bundle in args.models for name in bundle.names}
    tacgen = by_name["kaiyuy/leandojo-lean4-tacgen-byt5-small"]
    assert tacgen.engine == "transformers" and tacgen.model == "kaiyuy/leandojo-lean4-tacgen-byt5-small"
    assert by_name["kaiyuy/leandojo-lean4-retriever-byt5-small"].encoder.model == "kaiyuy/leandojo-lean4-retriever-byt5-small"
    assert any(b.task == "whole_proof" for b in args.models)


def test_documented_yaml_examples_are_valid_configs():
    import re
    import textwrap

    import yaml

    # Every ```yaml block in the README and the docs pages: a list of bundles (`- name:`, indented or not), or an
    # `args:` fragment whose bundles show only the keys the example is about (they get a placeholder model).
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    blocks = [
        (page.relative_to(REPO_ROOT), textwrap.dedent(block))
        for page in pages
        for block in re.findall(r"^```yaml\n(.*?)^```", page.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    ]
    bundle_lists = [(page, block) for page, block in blocks if block.startswith("- name:")]
    fragments = [(page, block) for page, block in blocks if block.startswith("args:")]
    assert len(bundle_lists) + len(fragments) == len(blocks), "a ```yaml example neither a bundle list nor `args:`"
    assert len(bundle_lists) >= 6 and len(fragments) >= 2  # the README held these 8 before the split into docs/
    for page, block in bundle_lists:
        parse_app_args({"models": yaml.safe_load(block)}, source=f"example in {page}")
    for page, block in fragments:
        args = yaml.safe_load(block)["args"]
        for bundle in args.get("models", []):
            bundle.setdefault("model", bundle["name"])
        parse_app_args(args, source=f"example in {page}")
