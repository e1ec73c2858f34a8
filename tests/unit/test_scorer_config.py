"""Scorer configuration: env variables, per-bundle choice, deployment options, readable failures."""

from pathlib import Path

import pytest

from core.config import (
    AppArgs,
    ConfigError,
    IngressSettings,
    ScorerConfig,
    parse_app_args,
    scorer_from_env,
    with_env_scorer,
)
from deployments.options import deployment_options, scorer_spec

MODELS = [{"name": "prover", "model": "x"}, {"name": "plain", "model": "y", "scorer": False}]


def test_env_variables_make_a_scorer():
    assert scorer_from_env({}) is None
    assert scorer_from_env({"LEANPROGRESS_MODEL": "  "}) is None
    scorer = scorer_from_env({"LEANPROGRESS_MODEL": "~/ckpt", "LEANPROGRESS_DEVICE": "cuda:1"})
    assert scorer.checkpoint == str(Path("~/ckpt").expanduser()) and scorer.device == "cuda:1"
    assert scorer_from_env({"LEANPROGRESS_MODEL": "/abs/ckpt"}).device == "auto"
    assert scorer_from_env({"LEANPROGRESS_MODEL": "./rel"}).checkpoint == str(Path("rel").resolve())


def test_env_scorer_only_when_the_config_has_none():
    args = AppArgs.model_validate({"models": MODELS})
    assert with_env_scorer(args, {}) is args
    enabled = with_env_scorer(args, {"LEANPROGRESS_MODEL": "/ckpt"})
    assert [s.checkpoint for s in enabled.scorers] == ["/ckpt"]
    assert enabled.scorer_for(enabled.models[0]).checkpoint == "/ckpt"
    assert enabled.scorer_for(enabled.models[1]) is None, "a bundle with scorer: false keeps the 400"
    configured = AppArgs.model_validate({"models": MODELS, "scorers": [{"checkpoint": "/mine"}]})
    assert with_env_scorer(configured, {"LEANPROGRESS_MODEL": "/env"}).scorers[0].checkpoint == "/mine"


def test_bad_env_device_names_the_variables():
    args = AppArgs.model_validate({"models": MODELS})
    with pytest.raises(ConfigError) as caught:
        with_env_scorer(args, {"LEANPROGRESS_MODEL": "/ckpt", "LEANPROGRESS_DEVICE": "gpu0"})
    assert "LEANPROGRESS_DEVICE" in str(caught.value) and "device" in str(caught.value)


def test_each_bundle_chooses_its_scorer():
    args = AppArgs.model_validate(
        {
            "models": [*MODELS, {"name": "big", "model": "z", "scorer": "large"}],
            "scorers": [{"name": "small", "checkpoint": "/s"}, {"name": "large", "checkpoint": "/l", "device": "cuda"}],
        }
    )
    assert [args.scorer_for(b) and args.scorer_for(b).name for b in args.models] == ["small", None, "large"]
    assert AppArgs.model_validate({"models": MODELS}).scorer_for(args.models[0]) is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"models": [{"name": "m", "model": "x", "scorer": "nope"}]}, "names scorer 'nope'"),
        ({"models": MODELS, "scorers": [{"checkpoint": "/a"}, {"checkpoint": "/b"}]}, "unique"),
        ({"models": MODELS, "scorers": [{"checkpoint": "/a", "device": "gpu"}]}, "scorers.0.device"),
        ({"models": MODELS, "scorers": [{"checkpoint": "/a", "mixing": {"alpha": 1.5}}]}, "scorers.0.mixing.alpha"),
        ({"models": MODELS, "scorers": [{"checkpoint": "/a", "templte": "leandojo"}]}, "scorers.0.templte"),
        ({"models": MODELS, "scorers": [{"checkpoint": "/a", "template": "paper"}]}, "scorers.0.template"),
    ],
)
def test_bad_scorer_config_fails_with_a_message_naming_the_field(args, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_app_args(args)
    assert fragment in str(caught.value)


def test_mixing_is_off_by_default_and_deployment_is_its_own():
    scorer = ScorerConfig(checkpoint="/c", deployment={"num_gpus": 0.1, "autoscaling": {"max_replicas": 3}})
    assert scorer.mixing is None and scorer.template == "leandojo"
    options = deployment_options(scorer_spec(scorer), IngressSettings())
    assert options["name"] == "scorer-leanprogress"
    assert options["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.1}
    assert options["autoscaling_config"]["max_replicas"] == 3
    assert options["max_ongoing_requests"] == 64


def test_an_existing_relative_folder_becomes_absolute(tmp_path, monkeypatch):
    (tmp_path / ".models" / "ckpt").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert scorer_from_env({"LEANPROGRESS_MODEL": ".models/ckpt"}).checkpoint == str(tmp_path / ".models" / "ckpt")
    assert scorer_from_env({"LEANPROGRESS_MODEL": "org/hub-model"}).checkpoint == "org/hub-model"
