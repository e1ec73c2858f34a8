"""LLMLean's prompts and answers (cmu-l3/llmlean, `LLMlean/API/Prompts.lean`, `TacticGen.lean`, `ProofGen.lean`).

LLMLean builds its own prompt around the proof state and sends it as a chat turn (OpenAI API) or as an Ollama
prompt. Tactic mode takes the state and the prefix back out of it, so a bundle with its own prompt (BFS-Prover's
`{state}:::`, ByT5) answers as /generate would, and shapes the tactics as LLMLean reads them: it takes the text
after `[TAC]`, cuts it at `[/TAC]`, trims it and puts the prefix back in front itself.

Pure: no Ray, no engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PromptKind = Literal["tactic", "proof"]

_CONTEXT = re.compile(r"\[CTX\]\n(.*?)\n\[/CTX\]", re.DOTALL)
_STATE = re.compile(r"\[STATE\]\n(.*?)\n\[/STATE\]", re.DOTALL)
# The instruction and reasoning prompts end with the marker the answer goes in, then the user's prefix.
_TACTIC_TAIL = re.compile(r"\n\[(?:TAC|THOUGHTS)\]\n(.*)\Z", re.DOTALL)
_PROOF_TAIL = re.compile(r"\n\[/CTX\]\n\[PROOF\]\Z")
# The few-shot prompt: its last example is the user's state, followed by the prefix.
_FEW_SHOT_HEAD = "Given the Lean 4 tactic state, suggest a next tactic."
_FEW_SHOT_STATE = "Tactic state:\n---\n"
_FEW_SHOT_NEXT = "\n---\nNext tactic:\n---\n"

TACTIC_OPEN, TACTIC_CLOSE = "[TAC]", "[/TAC]"
PROOF_OPEN, PROOF_CLOSE = "[PROOF]", "[/PROOF]"

LEAN_WHITESPACE = " \t\r\n"  # Char.isWhitespace

# LLMLean drops every candidate holding one of these (`filterGeneration`).
BANNED = ("sorry", "admit", "▅")


@dataclass(frozen=True)
class LeanPrompt:
    """What an LLMLean prompt asks: the next tactic of `state` starting with `prefix`, or a whole proof of the
    theorem that ends `context`."""

    kind: PromptKind
    state: str = ""
    prefix: str = ""
    context: str = ""


def parse_prompt(text: str) -> LeanPrompt | None:
    """The request inside one of LLMLean's prompts, or None for any other text (it is then a plain prompt).

    Recognised: the tactic prompts `Instruction` and `Reasoning` (`[CTX]`, `[STATE]`, then `[TAC]` or
    `[THOUGHTS]` and the prefix), `FewShot` (its examples, then the user's state and prefix), and the whole-proof
    prompt `Instruction` (`[CTX]` and `[PROOF]`). The markdown prompts carry no markers and stay plain prompts.
    """
    context = _CONTEXT.search(text)
    state = _STATE.search(text, context.end()) if context else None
    if context and state:
        tail = _TACTIC_TAIL.match(text, state.end())
        if tail:
            return LeanPrompt("tactic", state.group(1), tail.group(1), context.group(1))
        if text.rstrip().endswith("[/STATE]") and "[PROOF]" in text:  # the reasoning whole-proof prompt
            return LeanPrompt("proof", state.group(1), context=context.group(1))
    if context and _PROOF_TAIL.search(text):
        return LeanPrompt("proof", context=context.group(1))
    if text.startswith(_FEW_SHOT_HEAD) and _FEW_SHOT_STATE in text:
        state_text, found, prefix = text.rsplit(_FEW_SHOT_STATE, 1)[1].partition(_FEW_SHOT_NEXT)
        if found:
            return LeanPrompt("tactic", state_text, prefix)
    return None


def split_marked(text: str, opening: str, closing: str) -> str:
    """LLMLean's `splitTac`/`splitProof`: the text between the first and the second `opening` (all of it
    without one), up to the first `closing`, trimmed as Lean's `String.trim` trims."""
    parts = text.split(opening)
    inner = parts[1] if len(parts) > 1 else text
    return inner.split(closing, 1)[0].strip(LEAN_WHITESPACE)


def continuation(tactic: str, prefix: str) -> str:
    """What LeanServe answers for `tactic`: LLMLean prepends the prefix itself, so it is left off."""
    return tactic[len(prefix):] if prefix and tactic.startswith(prefix) else tactic


def kept_by_llmlean(tactic: str) -> bool:
    """Whether LLMLean keeps the candidate (it drops `sorry`, `admit` and `▅`): dropped ones are not sent."""
    return not any(banned in tactic for banned in BANNED)


def theorem_from_context(context: str) -> str:
    """The theorem to prove: LLMLean's context is the file up to and including the statement (`... := by`)."""
    return context.rstrip()


def proof_after_statement(proof: str, context: str) -> str:
    """The tactic proof that follows the statement: a prover answers the whole theorem again, and LLMLean
    wants what comes after the context (as its own `extractProofFromMarkdownResponse` does)."""
    statement = context.rstrip()
    if statement and statement in proof:
        return proof.split(statement, 1)[1].strip("\n").rstrip()
    last_line = next((line.strip() for line in reversed(statement.splitlines()) if line.strip()), "")
    if last_line and last_line in proof:
        return proof.split(last_line, 1)[1].strip("\n").rstrip()
    head, found, body = proof.partition(":= by")
    return body.strip("\n").rstrip() if found else proof.strip()
