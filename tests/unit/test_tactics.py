"""Tactic extraction, cleaning, score math and ranking: pure functions, no Ray, no vLLM."""

import math

import pytest

from core.payloads import Completion, ScoredTactic
from logic.tactics import (
    clean_completion,
    extract_chat_tactic,
    looks_like_tactic,
    rank_candidates,
    score_from_logprob,
    tactics_from_continuations,
)

CHAT_CASES = [
    ("simp", "simp"),
    ("  nlinarith [sq_nonneg (a - b)]  \n", "nlinarith [sq_nonneg (a - b)]"),
    ("```lean\nomega\n```", "omega"),
    ("```lean4\nsimp [clean_up]\n```\nThis closes the goal.", "simp [clean_up]"),
    ("Here you go:\n```\nring_nf\n```", "ring_nf"),
    ("<think>the goal is linear</think>\nlinarith", "linarith"),
    ("<think>unfinished thought", ""),
    ("by_cases h : x = 0", "by_cases h : x = 0"),
    ("by simp", "simp"),
    ("by\n  norm_num", "norm_num"),  # a bare `by` line: the tactic is on the next line
    ("1. field_simp", "field_simp"),
    ("- rw [h₀]", "rw [h₀]"),
    ("`decide`", "decide"),
    ("```lean\ninduction n with\n| zero => simp", "induction n with"),
]


@pytest.mark.parametrize(("answer", "expected"), CHAT_CASES)
def test_extract_chat_tactic(answer, expected):
    assert extract_chat_tactic(answer) == expected


@pytest.mark.parametrize(
    ("completion", "prefix", "expected"),
    [
        (" [h₀, h₁]\nnext line", "rw", "rw [h₀, h₁]"),
        ("[h₀]", "rw ", "rw [h₀]"),
        ("", "simp", "simp"),
        ("\nsimp", "rw ", None),  # nothing after a prefix that ends in a space
        ("  \n", "", None),
        ("norm_num  ", "", "norm_num"),
        ("_cases h : x = 0", "by", "by_cases h : x = 0"),
    ],
)
def test_clean_completion_continues_prefix(completion, prefix, expected):
    assert clean_completion(completion, prefix=prefix) == expected


def test_prefix_is_never_reformatted_even_for_chat_models():
    out = clean_completion("```lean", prefix="exact ", chat=True)
    assert out is not None and out.startswith("exact ")


@pytest.mark.parametrize(
    "text",
    [
        "simp",
        "nlinarith [sq_nonneg (a - b)]",
        "exact?",
        "· simp",
        "<;> simp",
        "by_cases h : x = 0",
        "have h : 0 < x := by linarith",
        "exact (h : 0 < x)",
        "norm_num",
        "norm_num at h ⊢",
        "simp [h₀] at h₂ ⊢",
        "field_simp [Complex.ext_iff] at h₀ ⊢",
        "exact ⟨1, by norm_num⟩",
        "(config := {}) simp",
    ],
)
def test_tactic_shaped(text):
    assert looks_like_tactic(text)


@pytest.mark.parametrize(
    "text",
    [
        "The goal follows from simp.",
        "we can use induction",
        "x : ℕ ⊢ x = x",
        "h₀ : 0 < x",
        "x y : ℝ",
        "f : ℝ → ℝ",
        "To prove this, use ring.",
        "norm_num.",
        "n-12",
        "nlinarith [h₀, h₁, h₃, h₆,",
        "exact ⟨1, by norm_num",
        "⊢ x = 1",
    ],
)
def test_not_tactic_shaped(text):
    assert not looks_like_tactic(text)


@pytest.mark.parametrize(
    ("cumulative", "tokens", "expected"),
    [
        (None, 4, 0.0),
        (-2.0, 0, 0.0),
        (0.0, 3, 1.0),
        (-4.0, 4, math.exp(-1.0)),
        (float("-inf"), 2, 0.0),
        (float("nan"), 2, 0.0),
        (5.0, 2, 1.0),  # never above 1, whatever the engine reports
    ],
)
def test_score_from_logprob(cumulative, tokens, expected):
    score = score_from_logprob(cumulative, tokens)
    assert math.isfinite(score) and 0.0 <= score <= 1.0
    assert score == pytest.approx(expected)


def test_rank_deduplicates_keeping_best_score_and_sorts():
    ranked = rank_candidates(
        [ScoredTactic("simp", 0.2), ScoredTactic("ring", 0.5), ScoredTactic("simp", 0.7), ScoredTactic("omega", 0.5)]
    )
    assert [c.output for c in ranked] == ["simp", "ring", "omega"]
    assert ranked[0].score == 0.7


def test_continuations_become_tactics_by_every_rule():
    completions = [
        Completion("```lean\nsimp\n```", -0.1, 2),
        Completion("simp", -3.0, 1),
        Completion("The answer is simp.", -0.01, 5),
        Completion("", -0.5, 1),
        Completion("linarith", None, 1),
    ]
    tactics = tactics_from_continuations(completions, chat=True, require_tactic_shape=True)
    assert [t.output for t in tactics] == ["simp", "linarith"]
    assert all(0.0 <= t.score <= 1.0 for t in tactics)


def test_every_real_single_line_tactic_passes_the_shape_check():
    import json

    from support import shared_data_path

    with shared_data_path("minif2f_proofsteps.jsonl").open(encoding="utf-8") as rows:
        tactics = [json.loads(line)["tactic"] for line in rows]
    single_line = [t for t in tactics if "\n" not in t]
    assert len(single_line) > 250
    assert [t for t in single_line if not looks_like_tactic(t)] == []
