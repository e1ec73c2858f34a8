"""Property tests of extraction and ranking: whatever an engine sends back, the contract holds and nothing crashes."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.payloads import Completion, ScoredTactic
from logic.tactics import (
    clean_completion,
    extract_chat_tactic,
    looks_like_tactic,
    rank_candidates,
    score_from_logprob,
    tactics_from_continuations,
)

# Model output is arbitrary unicode; Lean's own symbols and the characters extraction cares about come up often.
LEANISH = st.sampled_from(list("⊢ℕℝ∀∃→↔¬∧∨⟨⟩()[]{}`·\n\r\t :=<;>_'") + ["```", "```lean\n", "<think>", "</think>", "by ", "1. "])
TEXT = st.lists(st.one_of(st.text(max_size=8), LEANISH), max_size=12).map("".join)
LOGPROB = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
COMPLETION = st.builds(
    Completion,
    text=TEXT,
    cumulative_logprob=LOGPROB,
    num_tokens=st.integers(min_value=-3, max_value=10_000),
    finish_reason=st.sampled_from(["stop", "length", None]),
)
# LeanCopilot's prefixes are what the user typed before the cursor: any text, without a leading blank.
PREFIX = st.one_of(st.just(""), TEXT.map(str.lstrip))

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(LOGPROB, st.integers(min_value=-10, max_value=10**6))
def test_scores_are_finite_and_in_unit_range(logprob, num_tokens):
    score = score_from_logprob(logprob, num_tokens)
    assert math.isfinite(score) and 0.0 <= score <= 1.0


@PROPERTY_SETTINGS
@given(st.lists(COMPLETION, max_size=12), PREFIX, st.booleans(), st.booleans())
def test_ranked_tactics_honour_the_contract(completions, prefix, chat, require_shape):
    tactics = tactics_from_continuations(completions, prefix=prefix, chat=chat, require_tactic_shape=require_shape)
    outputs = [t.output for t in tactics]
    assert len(outputs) == len(set(outputs)), "deduplicated"
    scores = [t.score for t in tactics]
    assert scores == sorted(scores, reverse=True), "best first"
    for tactic in tactics:
        assert tactic.output and tactic.output.strip(), "never empty"
        assert tactic.output.startswith(prefix), "continues the prefix"
        assert tactic.output == tactic.output.rstrip()
        assert "\n" not in tactic.output[len(prefix):], "one line beyond the prefix"
        assert math.isfinite(tactic.score) and 0.0 <= tactic.score <= 1.0
        if not prefix:
            assert tactic.output == tactic.output.strip() and "```" not in tactic.output
    assert len(tactics) <= len(completions)


@PROPERTY_SETTINGS
@given(TEXT, PREFIX, st.booleans())
def test_cleaning_never_crashes_and_keeps_the_prefix(text, prefix, chat):
    tactic = clean_completion(text, prefix=prefix, chat=chat)
    assert tactic is None or (tactic.startswith(prefix) and tactic.strip())
    assert "\n" not in extract_chat_tactic(text)


@PROPERTY_SETTINGS
@given(TEXT)
def test_the_shape_check_rejects_sentences_and_cut_off_candidates(text):
    # Whatever the text, a full stop after a word makes it a sentence, and an open bracket a cut-off candidate.
    if text[-1:].isascii() and text[-1:].isalpha():
        assert not looks_like_tactic(text + ".")
    assert not looks_like_tactic(text + " (")
    assert not looks_like_tactic(text + " [")


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["simp", "ring", "norm_num", "linarith"]), st.floats(0, 1)), max_size=20))
def test_ranking_keeps_the_best_score_of_each_tactic(pairs):
    ranked = rank_candidates(ScoredTactic(output, score) for output, score in pairs)
    best = {}
    for output, score in pairs:
        best[output] = max(score, best.get(output, score))
    assert {t.output: t.score for t in ranked} == best
