"""The trainer: both row formats, a split by theorem, the paper's metrics, and a checkpoint the scorer loads."""

import json

import pytest
from support import shared_data_path

from core.config import ScorerConfig
from core.payloads import ScoringInput
from scorer.model import ProgressScorer
from scorer.train import Example, example_from_row, main, read_examples, regression_metrics, split_by_group, target

PROOFSTEPS = shared_data_path("minif2f_proofsteps.jsonl")


def test_rows_of_both_formats():
    leandojo = example_from_row({"goal": "⊢ 1 = 1", "prefix": None, "tactic": "rfl", "steps_remaining": 0})
    assert leandojo == Example("⊢ 1 = 1", "", "rfl", 0.0, "⊢ 1 = 1")
    # A proof-step trace counts the tactic itself: 1 step from the state means 0 left after the tactic.
    trace = example_from_row({"theorem": "t", "state_before": "⊢ p", "tactic": "simp", "steps_remaining": 2})
    assert trace == Example("⊢ p", "", "simp", 1.0, "t")
    assert target(trace, "leandojo") == target(trace, "leanprogress") == 1.0
    assert target(trace, "leanprogress_state") == 2.0
    with pytest.raises(ValueError):
        example_from_row({"input": "x"})


def test_shared_proof_steps_are_read_and_split_by_theorem():
    examples = read_examples([PROOFSTEPS])
    assert len(examples) == 277 and all(e.steps_remaining >= 0 for e in examples)
    train, held = split_by_group(examples, 0.2, seed=1)
    assert len(train) + len(held) == 277 and held
    assert not {e.group for e in train} & {e.group for e in held}, "no theorem on both sides"
    assert split_by_group(examples, 0.2, seed=1) == (train, held), "deterministic for a seed"


def test_bad_rows_name_the_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"goal": "g", "tactic": "t", "steps_remaining": 1}\n{"goal": "g"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_examples([data])


def test_metrics():
    metrics = regression_metrics([0.2, 1.6, 3.0], [0.0, 1.0, 3.0])
    assert metrics["mae"] == pytest.approx((0.2 + 0.6 + 0.0) / 3)
    assert metrics["exact_match"] == pytest.approx(2 / 3)


def test_a_tiny_model_trains_and_its_checkpoint_loads_in_the_scorer(tmp_path, tiny_encoder, capsys):
    leandojo_rows = tmp_path / "leandojo.jsonl"
    leandojo_rows.write_text(
        "".join(
            json.dumps({"goal": f"x : ℕ\n⊢ x + {i} = {i} + x", "prefix": "", "tactic": "omega", "steps_remaining": i % 3})
            + "\n"
            for i in range(12)
        ),
        encoding="utf-8",
    )
    out = tmp_path / "ckpt"
    argv = ["--data", str(PROOFSTEPS), "--data", str(leandojo_rows), "--base", str(tiny_encoder), "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--batch-size", "16", "--max-length", "256", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "MAE" in printed and "exact-match" in printed
    report = json.loads((out / "leanprogress.json").read_text(encoding="utf-8"))
    assert report["train_examples"] + report["eval_examples"] == 289
    assert report["eval"]["count"] == report["eval_examples"] and report["eval"]["mae"] >= 0
    # The folder loads in the scorer unchanged and predicts what the report measured.
    scorer = ProgressScorer.from_config(ScorerConfig(checkpoint=str(out), device="cpu", max_input_tokens=256))
    steps = scorer.predict([ScoringInput("x : ℕ\n⊢ x = x", "", "rfl")])
    assert len(steps) == 1 and steps[0] >= 0
