"""The texts a LeanProgress checkpoint reads: a scorer must see exactly what its checkpoint was trained on.

- "leandojo": LeanDojo-v2's training text over (goal, prefix, tactic), character for character
  (`lean_dojo_v2/lean_progress/train_steps_model.py`, build_text); the label is the steps left after the
  tactic (0: it closes the goal).
- "leanprogress" / "leanprogress_state": the LeanProgress paper's layout (section 4.2), `---`-separated
  fields ending in `STEPS_TO_NO_GOALS:`, with or without the proof history. /generate has no history, so the
  candidate tactic stands in as the one proof step; the state-only form ignores the candidate.
"""

from __future__ import annotations

from core.config import TemplateKind
from core.payloads import ScoringInput

LEANDOJO_TEMPLATE = "Goal:\n{goal}\n\nPrefix:\n{prefix}\n\nCandidate tactic:\n{tactic}"
LEANPROGRESS_STATE_TEMPLATE = "---\nSTATE_BEFORE: {state}\n\n---\nSTEPS_TO_NO_GOALS:"
LEANPROGRESS_PROOF_TEMPLATE = "---\nSTATE_BEFORE: {state}\n\n---\nPROOF: {proof}\n\n---\nSTEPS_TO_NO_GOALS:"


def render_leandojo(goal: str, prefix: str | None, tactic: str) -> str:
    # str.format is not used on purpose: goals hold braces ({x | x > 0}), which must pass through verbatim.
    return "Goal:\n" + goal + "\n\nPrefix:\n" + (prefix or "") + "\n\nCandidate tactic:\n" + tactic


def render_leanprogress(state: str, proof: str | None = None) -> str:
    """The paper's prompt; `proof` is the tactics applied so far (one per line), None for state only."""
    if proof is None:
        return "---\nSTATE_BEFORE: " + state + "\n\n---\nSTEPS_TO_NO_GOALS:"
    return "---\nSTATE_BEFORE: " + state + "\n\n---\nPROOF: " + proof + "\n\n---\nSTEPS_TO_NO_GOALS:"


def render(kind: TemplateKind, item: ScoringInput) -> str:
    if kind == "leandojo":
        return render_leandojo(item.goal, item.prefix, item.tactic)
    if kind == "leanprogress":
        return render_leanprogress(item.goal, item.tactic)
    if kind == "leanprogress_state":
        return render_leanprogress(item.goal)
    raise ValueError(f"unknown template kind {kind!r}")
