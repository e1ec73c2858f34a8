"""The texts a LeanProgress checkpoint reads: LeanDojo-v2's and the paper's, character for character."""

import pytest

from logic.scoring_templates import (
    LEANDOJO_TEMPLATE,
    LEANPROGRESS_PROOF_TEMPLATE,
    LEANPROGRESS_STATE_TEMPLATE,
    ScoringInput,
    render,
    render_leandojo,
    render_leanprogress,
)

GOAL = "s : Set ℕ\nh : s = {x | x > 0}\n⊢ 1 ∈ s"


def test_leandojo_text_is_the_contracts_template():
    assert LEANDOJO_TEMPLATE == "Goal:\n{goal}\n\nPrefix:\n{prefix}\n\nCandidate tactic:\n{tactic}"
    expected = LEANDOJO_TEMPLATE.format(goal=GOAL, prefix="simp", tactic="simp [h]")
    assert render_leandojo(GOAL, "simp", "simp [h]") == expected
    # Braces in a goal ({x | x > 0}) pass through verbatim, and no prefix renders as an empty line.
    assert "{x | x > 0}" in expected
    assert render_leandojo(GOAL, None, "rfl") == f"Goal:\n{GOAL}\n\nPrefix:\n\n\nCandidate tactic:\nrfl"


def test_paper_forms_with_and_without_proof_history():
    assert render_leanprogress(GOAL) == LEANPROGRESS_STATE_TEMPLATE.format(state=GOAL)
    assert render_leanprogress(GOAL) == f"---\nSTATE_BEFORE: {GOAL}\n\n---\nSTEPS_TO_NO_GOALS:"
    with_proof = render_leanprogress(GOAL, "intro x\nsimp")
    assert with_proof == LEANPROGRESS_PROOF_TEMPLATE.format(state=GOAL, proof="intro x\nsimp")
    assert with_proof == f"---\nSTATE_BEFORE: {GOAL}\n\n---\nPROOF: intro x\nsimp\n\n---\nSTEPS_TO_NO_GOALS:"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("leandojo", f"Goal:\n{GOAL}\n\nPrefix:\nsi\n\nCandidate tactic:\nsimp [h]"),
        ("leanprogress", f"---\nSTATE_BEFORE: {GOAL}\n\n---\nPROOF: simp [h]\n\n---\nSTEPS_TO_NO_GOALS:"),
        ("leanprogress_state", f"---\nSTATE_BEFORE: {GOAL}\n\n---\nSTEPS_TO_NO_GOALS:"),
    ],
)
def test_render_by_kind(kind, expected):
    assert render(kind, ScoringInput(GOAL, "si", "simp [h]")) == expected


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        render("nope", ScoringInput(GOAL, "", "rfl"))
