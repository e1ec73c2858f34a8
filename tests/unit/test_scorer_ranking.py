"""Ranking by LeanProgress predictions, and the paper's progress/log-prob mix."""

import math

import pytest

from core.config import MixingConfig
from logic.progress_ranking import LOGPROB_FLOOR, mean_logprob, mixed_score, normalized_steps, rank_by_progress

CANDIDATES = [("linarith", 0.9), ("simp", 0.5), ("norm_num", 0.7), ("ring", 0.2)]


def test_contract_fields_and_order():
    ranked = rank_by_progress(CANDIDATES, [3.0, 0.4, 1.0, -2.0])
    assert [c.output for c in ranked] == ["ring", "simp", "norm_num", "linarith"]
    ring = ranked[0]
    # Clamped at 0; reward = -steps; score = reward; model_score keeps the generator's score.
    assert (ring.steps_remaining, ring.reward, ring.score, ring.model_score) == (0.0, 0.0, 0.0, 0.2)
    assert math.copysign(1.0, ring.reward) == 1.0, "a closing tactic's reward is 0.0, not -0.0"
    for c in ranked:
        assert c.reward == -c.steps_remaining and c.score == c.reward


def test_ties_keep_the_generators_order():
    ranked = rank_by_progress(CANDIDATES, [1.0, 1.0, 1.0, 1.0])
    assert [c.output for c in ranked] == [c[0] for c in CANDIDATES]


def test_bad_predictions_are_refused():
    with pytest.raises(ValueError):
        rank_by_progress(CANDIDATES, [1.0])
    with pytest.raises(ValueError):
        rank_by_progress(CANDIDATES[:1], [float("nan")])


def test_paper_normalisation_and_mix():
    assert normalized_steps(0.0, 20.0) == 0.0
    assert normalized_steps(20.0, 20.0) == -2.0
    assert mean_logprob(1.0) == 0.0
    assert mean_logprob(math.exp(-1.5)) == pytest.approx(-1.5)
    assert mean_logprob(0.0) == LOGPROB_FLOOR and mean_logprob(float("nan")) == LOGPROB_FLOOR
    mixing = MixingConfig(alpha=0.2, max_steps=10.0)
    # C = 0.2 * (-2 * 5 / 10) + 0.8 * ln(0.5)
    assert mixed_score(5.0, 0.5, mixing) == pytest.approx(0.2 * -1.0 + 0.8 * math.log(0.5))


def test_alpha_moves_the_ranking_between_the_two_signals():
    steps = [3.0, 0.4, 1.0, 0.0]
    by_logprob = rank_by_progress(CANDIDATES, steps, MixingConfig(alpha=0.0))
    assert [c.output for c in by_logprob] == ["linarith", "norm_num", "simp", "ring"]
    by_progress = rank_by_progress(CANDIDATES, steps, MixingConfig(alpha=1.0))
    assert [c.output for c in by_progress] == ["ring", "simp", "norm_num", "linarith"]
    mixed = rank_by_progress(CANDIDATES, steps, MixingConfig(alpha=0.2, max_steps=20.0))
    for c in mixed:
        assert c.score == pytest.approx(mixed_score(c.steps_remaining, c.model_score, MixingConfig(alpha=0.2)))
        assert c.reward == -c.steps_remaining, "mixing changes the score, never the reward"
    assert [c.score for c in mixed] == sorted((c.score for c in mixed), reverse=True)
