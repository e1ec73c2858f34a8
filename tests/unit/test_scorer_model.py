"""ProgressScorer on a LeanDojo-v2-format checkpoint built directly with transformers."""

import pytest
import torch
from support import lean_goals
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from core.config import ScorerConfig
from core.payloads import ScoringInput
from logic.scoring_templates import render_leandojo
from scorer.model import ProgressScorer, resolve_device

ITEMS = [
    ScoringInput(goal, prefix, tactic)
    for goal, (prefix, tactic) in zip(lean_goals(4), [("", "norm_num"), ("nlin", "nlinarith [sq_nonneg x]"), ("", "simp"), ("", "omega")])
]


def raw_forward(folder, item: ScoringInput) -> float:
    """What LeanDojo-v2's own scorer computes: one text, the tokenizer's defaults, the regression logit."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokens = tokenizer(render_leandojo(item.goal, item.prefix, item.tactic), return_tensors="pt", truncation=True)
    with torch.no_grad():
        return float(model(**tokens).logits.squeeze())


def test_checkpoint_scores_identically_to_the_raw_forward_pass(tiny_progress_checkpoint):
    scorer = ProgressScorer.from_config(ScorerConfig(checkpoint=str(tiny_progress_checkpoint), device="cpu"))
    batched = scorer.predict(ITEMS)  # one padded batch of different lengths
    for item, value in zip(ITEMS, batched):
        expected = max(0.0, raw_forward(tiny_progress_checkpoint, item))
        assert value == pytest.approx(expected, abs=1e-5)
        assert value == pytest.approx(scorer.predict([item])[0], abs=1e-5), "padding must not change a score"
    assert len(set(round(v, 6) for v in batched)) > 1, "different candidates get different predictions"


def test_predictions_are_clamped_at_zero(tmp_path):
    from tiny_scorer import build_tiny_progress_checkpoint

    folder = build_tiny_progress_checkpoint(tmp_path / "negative", bias=-100.0)
    scorer = ProgressScorer(folder, device="cpu")
    assert scorer.predict_texts(["⊢ True"])[0] < 0
    assert scorer.predict(ITEMS) == [0.0] * len(ITEMS)
    assert scorer.predict([]) == []


def test_device_semantics():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("") == resolve_device(None) == resolve_device("auto")
    assert resolve_device("cuda:1") == "cuda:1"


def test_passes_cut_by_length_give_the_same_scores(tiny_progress_checkpoint, monkeypatch):
    import scorer.model

    scorer_ = ProgressScorer(tiny_progress_checkpoint, device="cpu")
    whole = scorer_.predict(ITEMS)
    monkeypatch.setattr(scorer.model, "TOKENS_PER_PASS", 64)  # every text in a pass of its own, or nearly
    assert scorer_.predict(ITEMS) == pytest.approx(whole, abs=1e-5)
