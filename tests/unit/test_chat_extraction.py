"""The table of chat-answer extraction cases (remote APIs answer in free form), and the rank-based score."""

import math

import pytest

from core.payloads import Completion
from logic.tactics import extract_chat_tactic, rank_by_agreement, rank_score, tactics_from_chat_answers

EXTRACTION_TABLE = [
    # plain answers
    ("simp", "simp"),
    ("  omega \n", "omega"),
    # fences, closed or cut off, with and without a language tag
    ("```lean\nnorm_num [h₀]\n```", "norm_num [h₀]"),
    ("```lean4\nnlinarith [sq_nonneg (a - b), sq_nonneg (a + b)]\n```", "nlinarith [sq_nonneg (a - b), sq_nonneg (a + b)]"),
    ("```\nring_nf\n```", "ring_nf"),
    ("```lean4\nfield_simp", "field_simp"),
    ("Let me think.\n```lean4\nsimp [clean_up]\n```\nThis closes it.", "simp [clean_up]"),
    # <think> blocks, closed or not
    ("<think>\nThe goal is linear in x.\n</think>\n\nlinarith", "linarith"),
    ("<think>try omega</think>```lean\nomega\n```", "omega"),
    ("<think>still thinking when max_tokens hit", ""),
    # a leading `by`, never touching by_cases / by_contra
    ("by simp", "simp"),
    ("by\n  norm_num", "norm_num"),
    ("```lean4\nby\n  positivity\n```", "positivity"),
    ("by_cases h : x = 0", "by_cases h : x = 0"),
    ("by_contra h", "by_contra h"),
    ("```lean\nby_cases hx : 0 ≤ x\n```", "by_cases hx : 0 ≤ x"),
    # a restated theorem before the proof
    ("```lean4\ntheorem t (x : ℕ) (h : x = 1) : x + 1 = 2 := by\n  subst h\n  rfl\n```", "subst h"),
    ("example : (2 : ℕ) + 2 = 4 := by norm_num", "norm_num"),
    # numbered and bulleted lists, labels, inline code
    ("1. intro x\n2. simp", "intro x"),
    ("1) `rw [h₁]`", "rw [h₁]"),
    ("- exact h", "exact h"),
    ("* apply le_of_lt", "apply le_of_lt"),
    ("Tactic: simp [clean_up]", "simp [clean_up]"),
    ("**Tactic:** `decide`", "decide"),
    ("`simp_all`", "simp_all"),
    ("The next tactic is `linarith`.", "linarith"),
    ("Here is the tactic:\nomega", "omega"),
    # things that must stay whole
    ("simp [clean_up]", "simp [clean_up]"),
    ("rw [Nat.add_comm] at h ⊢", "rw [Nat.add_comm] at h ⊢"),
    ("exact ⟨1, by norm_num⟩", "exact ⟨1, by norm_num⟩"),
    ("simp only [Finset.sum_range_succ] -- expand the sum", "simp only [Finset.sum_range_succ]"),
    ("nlinarith [h₀, h₁, mul_pos (sub_pos.2 h₀) h₁]", "nlinarith [h₀, h₁, mul_pos (sub_pos.2 h₀) h₁]"),
    ("· simp", "· simp"),
    ("", ""),
]


@pytest.mark.parametrize(("answer", "expected"), EXTRACTION_TABLE)
def test_extraction_table(answer, expected):
    assert extract_chat_tactic(answer) == expected


def test_rank_score_is_decreasing_and_in_unit_interval():
    scores = [rank_score(r) for r in range(50)]
    assert scores[0] == 0.5
    assert all(0.0 < s <= 0.5 and math.isfinite(s) for s in scores)
    assert all(a > b for a, b in zip(scores, scores[1:]))
    with pytest.raises(ValueError):
        rank_score(-1)


def test_agreement_orders_before_sampling_order():
    ranked = rank_by_agreement(["simp", "ring", "omega", "ring", "omega", "ring"])
    assert [(t.output, t.score) for t in ranked] == [("ring", 0.5), ("omega", 1 / 3), ("simp", 0.25)]


def test_whole_answers_without_logprobs_are_ranked_and_honour_the_prefix():
    answers = [Completion("```lean\nrw [h₀]\n```", None, 5), Completion("simp", None, 1),
               Completion("by rw [h₁]", None, 3), Completion("rw [h₀]", None, 2)]
    tactics = tactics_from_chat_answers(answers, prefix="rw")
    assert [(t.output, t.score) for t in tactics] == [("rw [h₀]", 0.5), ("rw [h₁]", 1 / 3)]


def test_whole_answers_with_logprobs_are_scored_by_them():
    answers = [Completion("```lean\nsimp\n```", -0.2, 2), Completion("ring", -4.0, 2)]
    tactics = tactics_from_chat_answers(answers)
    assert [t.output for t in tactics] == ["simp", "ring"]
    assert tactics[0].score == pytest.approx(math.exp(-0.1))
