"""Whole-proof generation: the published prompts of whole-proof provers, and the proof in their answers.

Pure functions, no Ray, no engine (logic/pipelines.py runs them in the bundle). A whole-proof model reads a theorem (Lean code ending in `:= by`, usually
with its imports) and answers with reasoning and then the complete Lean code in a ```lean4 block. `/prove`
returns that final block, never the reasoning around it.

The prompts are the ones the model cards publish:
- DeepSeek-Prover-V2 (deepseek-ai/DeepSeek-Prover-V2-7B, -671B) and Goedel-Prover-V2 (Goedel-LM/Goedel-Prover-V2-8B,
  -32B) share one user turn, "Complete the following Lean 4 code ... provide a detailed proof plan ...".
- Kimina-Prover (AI-MO/Kimina-Prover-*) has a system turn and its own user turn with an optional informal problem.
- `leandojo-v2` is the prompt of LeanDojo-v2's `HFTacticGenerator.generate_whole_proof` (the seed), for chat models
  that are not trained provers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.config import PresetName
from core.payloads import Completion, ScoredTactic
from logic.tactics import rank_candidates, score_from_logprob

_PROOF_PLAN_PROMPT = (
    "Complete the following Lean 4 code:\n\n```lean4\n{theorem}\n```\n\n"
    "Before producing the Lean 4 code to formally prove the given theorem, provide a detailed proof plan outlining "
    "the main proof steps and strategies.\n"
    "The plan should highlight key ideas, intermediate lemmas, and proof structures that will guide the construction "
    "of the final formal proof."
)


@dataclass(frozen=True)
class WholeProofPreset:
    user: str  # format string with {theorem} and {problem}
    system: str | None = None
    # Whether the proof must come in a fenced block; a prover trained to fence it that did not was cut off.
    fenced: bool = True


# Keyed by every PresetName of the config (a unit test keeps the two in step).
PRESETS: dict[PresetName, WholeProofPreset] = {
    "deepseek-prover-v2": WholeProofPreset(user=_PROOF_PLAN_PROMPT),
    "goedel-prover-v2": WholeProofPreset(user=_PROOF_PLAN_PROMPT),
    "kimina-prover": WholeProofPreset(
        system="You are an expert in mathematics and Lean 4.",
        user=(
            "Think about and solve the following problem step by step in Lean 4.\n# Problem:{problem}\n"
            "# Formal statement:\n```lean4\n{theorem}\n```\n"
        ),
    ),
    "leandojo-v2": WholeProofPreset(
        user=(
            "Here is a theorem you need to prove in Lean:```lean\n{theorem}```\nNow you should provide the complete "
            "proof of the theorem in lean code. Only output the proof, no explanation, no comments, no theorem, "
            "nothing else:"
        ),
        fenced=False,
    ),
}

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# A closed ```lean4 / ```lean block (the info string may carry more, e.g. ```lean4 title).
_LEAN_BLOCK = re.compile(r"```lean4?(?:[ \t][^\n]*)?\n(.*?)```", re.DOTALL)
# Any closed fenced block, for answers that fence Lean code without naming the language.
_ANY_BLOCK = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def whole_proof_messages(preset: PresetName, theorem: str, problem: str = "") -> list[dict[str, str]]:
    """The chat turns that ask `preset`'s model to prove `theorem` (Lean code, used verbatim but for trailing space)."""
    spec = PRESETS[preset]
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    messages.append({"role": "user", "content": spec.user.format(theorem=theorem.rstrip(), problem=problem)})
    return messages


def extract_proof(answer: str, fenced: bool = True) -> str | None:
    """The complete Lean code in a model's answer: its final ```lean4 block, after any reasoning.

    None when the answer holds no finished proof: the reasoning (`<think>`) never closed, or no fenced block
    was closed (the answer was cut at max_tokens). With `fenced=False` an answer without any fence is taken whole.
    """
    if _THINK_OPEN in answer or _THINK_CLOSE in answer:
        if _THINK_CLOSE not in answer:
            return None
        # Drafts inside the reasoning are not the answer.
        answer = answer.rsplit(_THINK_CLOSE, 1)[1]
    blocks = _LEAN_BLOCK.findall(answer) or _ANY_BLOCK.findall(answer)
    if blocks:
        proof = blocks[-1]
    elif not fenced and "```" not in answer:
        proof = answer
    else:
        return None
    proof = proof.strip("\n").rstrip()
    return proof if proof.strip() else None


def completions_to_proofs(completions: Iterable[Completion], fenced: bool = True) -> list[ScoredTactic]:
    """Extract, score (like /generate), deduplicate and rank whole-proof completions; unfinished ones are dropped."""
    proofs = []
    for completion in completions:
        proof = extract_proof(completion.text, fenced=fenced)
        if proof is None:
            continue
        score = completion.score
        if score is None:
            score = score_from_logprob(completion.cumulative_logprob, completion.num_tokens)
        proofs.append(ScoredTactic(proof, score))
    return rank_candidates(proofs)
