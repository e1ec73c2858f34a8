"""Whole-proof prompts and proof extraction: the published prompts, and a table of model answers."""

import math

import pytest

from core.payloads import Completion
from logic.whole_proof import PRESETS, completions_to_proofs, extract_proof, whole_proof_messages

THEOREM = "theorem t (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by\n  sorry\n"
PROOF = "theorem t (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by\n  omega"


def test_deepseek_and_goedel_share_the_published_prompt():
    for preset in ("deepseek-prover-v2", "goedel-prover-v2"):
        [message] = whole_proof_messages(preset, THEOREM)
        assert message["role"] == "user"
        assert message["content"] == (
            "Complete the following Lean 4 code:\n\n```lean4\n"
            "theorem t (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by\n  sorry\n```\n\n"
            "Before producing the Lean 4 code to formally prove the given theorem, provide a detailed proof plan "
            "outlining the main proof steps and strategies.\nThe plan should highlight key ideas, intermediate lemmas, "
            "and proof structures that will guide the construction of the final formal proof."
        )


def test_kimina_has_its_system_turn_and_the_informal_problem():
    system, user = whole_proof_messages("kimina-prover", THEOREM, problem="Show that x = 1.")
    assert system == {"role": "system", "content": "You are an expert in mathematics and Lean 4."}
    assert user["content"] == (
        "Think about and solve the following problem step by step in Lean 4.\n# Problem:Show that x = 1.\n"
        "# Formal statement:\n```lean4\ntheorem t (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by\n  sorry\n```\n"
    )


def test_the_seed_prompt_is_leandojo_v2s():
    [message] = whole_proof_messages("leandojo-v2", THEOREM)
    assert message["content"].startswith("Here is a theorem you need to prove in Lean:```lean\ntheorem t")
    assert message["content"].endswith("no theorem, nothing else:")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # DeepSeek / Goedel: a proof plan, then the code.
        (f"### Proof plan\n1. Use omega.\n\n```lean4\n{PROOF}\n```\n", PROOF),
        # The final block wins over drafts earlier in the answer.
        (f"Draft:\n```lean4\ntheorem t : x = 1 := by\n  sorry\n```\nFinal:\n```lean4\n{PROOF}\n```", PROOF),
        # Kimina: reasoning in <think>, drafts inside it do not count.
        (f"<think>try ```lean4\nwrong\n``` hmm</think>\n```lean4\n{PROOF}\n```", PROOF),
        # ```lean and an info string after the language are fine; indentation is kept.
        (f"```lean title\n{PROOF}\n```", PROOF),
        # An unnamed fence holds Lean code too.
        (f"```\n{PROOF}\n```", PROOF),
        # Cut off inside the reasoning: no proof.
        ("<think>Let me think about x + 1 = 2 and", None),
        # Cut off inside the code block (max_tokens): no complete proof.
        (f"Plan.\n```lean4\n{PROOF[:30]}", None),
        # Prose only, or an empty block.
        ("I cannot prove this.", None),
        ("```lean4\n\n```", None),
    ],
)
def test_extract_proof(answer, expected):
    assert extract_proof(answer) == expected


def test_unfenced_answers_count_only_for_unfenced_presets():
    assert not PRESETS["leandojo-v2"].fenced
    assert extract_proof("  intro x\n  omega\n", fenced=False) == "  intro x\n  omega"
    assert extract_proof("  intro x\n  omega\n", fenced=True) is None


def test_proofs_are_scored_deduplicated_and_ranked():
    block = f"```lean4\n{PROOF}\n```"
    completions = [
        Completion(text="no proof here", cumulative_logprob=-0.1, num_tokens=4),
        Completion(text="plan A\n" + block, cumulative_logprob=-8.0, num_tokens=8),
        Completion(text="plan B\n" + block, cumulative_logprob=-2.0, num_tokens=8),
        Completion(text="```lean4\nother\n```", cumulative_logprob=-4.0, num_tokens=4),
        Completion(text="```lean4\nengine scored\n```", cumulative_logprob=None, num_tokens=4, score=0.9),
    ]
    proofs = completions_to_proofs(completions)
    assert [p.output for p in proofs] == ["engine scored", PROOF, "other"]
    assert [p.score for p in proofs] == pytest.approx([0.9, math.exp(-2.0 / 8), math.exp(-1.0)])


def test_every_preset_the_config_accepts_has_a_prompt():
    from typing import get_args

    from core.config import PresetName

    assert set(PRESETS) == set(get_args(PresetName))
