"""Paths and request builders shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_path(name: str) -> Path:
    return SHARED_DATA / name


def leancopilot_bytes(payload: dict) -> bytes:
    """The body as LeanCopilot's Lean client sends it: `toString (toJson req)`, which is Lean's `Json.pretty`:
    keys sorted (Lean's JSON objects are ordered maps), a space after every `:` and `,`, raw UTF-8, e.g.
    `{"input": "⊢ True", "name": "tiny", "prefix": ""}`. (Past 80 columns Json.pretty also breaks lines;
    JSON parsers ignore that whitespace, so one line stands for it.)"""
    return json.dumps(payload, ensure_ascii=False, separators=(", ", ": "), sort_keys=True).encode("utf-8")


LEANCOPILOT_HEADERS = {"accept": "application/json", "Content-Type": "application/json"}


def lean_goals(count: int = 16) -> list[str]:
    """`count` real miniF2F goals spread over the range of lengths (multi-goal states included)."""
    with shared_data_path("minif2f_goals.jsonl").open(encoding="utf-8") as rows:
        goals = sorted((json.loads(line)["goal"] for line in rows), key=len)
    step = max(1, len(goals) // count)
    return goals[::step][:count]


def processes_matching(fragment: str):
    """Live processes whose command line holds `fragment` (Ray names replicas `ray::ServeReplica:APP:DEPLOYMENT`)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if fragment in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def descendants(processes) -> list:
    import psutil

    found = []
    for proc in processes:
        try:
            found += proc.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    return found


def still_running(processes) -> list:
    import psutil

    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


# -- LLMLean (cmu-l3/llmlean, LLMlean/API/*.lean) ------------------------------------------------------------


def lean_json_pretty(value) -> str:
    """`(toJson req).pretty UInt64.size`: one line, `", "` and `": "` between items, object keys sorted (Lean's
    Json objects are ordered maps), non-ASCII raw, and floats as Lean prints them (`0.700000`)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {lean_json_pretty(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(lean_json_pretty(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6f}"
    return json.dumps(value, ensure_ascii=False)


def llmlean_headers(key: str = "") -> list[str]:
    """Its curl headers (`LLMlean.post`): both key headers, even when the key is empty."""
    return [
        "accept: application/json",
        "Content-Type: application/json",
        f"Authorization: Bearer {key}",
        f"x-api-key: {key}",
        "anthropic-version: 2023-06-01",
    ]


def llmlean_instruct_prompt(context: str, state: str, prefix: str) -> str:
    """`makePromptsInstruct`, verbatim."""
    return (
        "/- You are proving a theorem in Lean 4.\n"
        "You are given the following information:\n"
        "- The file contents up to the current tactic, inside [CTX]...[/CTX]\n"
        "- The current proof state, inside [STATE]...[/STATE]\n\n"
        "Your task is to generate the next tactic in the proof.\n"
        "Put the next tactic inside [TAC]...[/TAC].\n"
        "-/\n"
        f"[CTX]\n{context}\n[/CTX]\n[STATE]\n{state}\n[/STATE]\n[TAC]\n{prefix}"
    )


_FEW_SHOT_EXAMPLES = (
    "Given the Lean 4 tactic state, suggest a next tactic.\nHere are some examples:\n\n"
    "Tactic state:\n---\nα : Type u_1\nr : α → α → Prop\ninst✝¹ : DecidableEq α\ninst✝ : IsIrrefl α r\n"
    "⊢ CutExpand r ≤ InvImage (Finsupp.Lex (rᶜ ⊓ fun x x_1 => x ≠ x_1) fun x x_1 => x < x_1) ↑toFinsupp\n---\n"
    "Next tactic:\n---\nrintro s t ⟨u, a, hr, he⟩\n---\n\n"
    "Tactic state:\n---\nι : Type u_1\nI✝ J✝ : Box ι\nx y : ι → ℝ\nI J : WithBot (Box ι)\n⊢ ↑I = ↑J ↔ I = J\n---\n"
    "Next tactic:\n---\nsimp only [Subset.antisymm_iff, ← le_antisymm_iff, withBotCoe_subset_iff]\n---\n\n"
    "Tactic state:\n---\nm n : ℕ\nh : Nat.coprime m n\n⊢ Nat.gcd m n = 1\n---\n"
    "Next tactic:\n---\nrw [← h.gcd_eq_one]\n---\n\n"
)


def llmlean_fewshot_prompts(context: str, state: str, prefix: str) -> list[str]:
    """`makePromptsFewShot`, verbatim: without a prefix its second prompt is the file itself."""
    first = _FEW_SHOT_EXAMPLES + f"Tactic state:\n---\n{state}\n---\nNext tactic:\n---\n{prefix}"
    return [first, context if prefix == "" else first]


def llmlean_qed_instruct_prompt(context: str) -> str:
    """`makeQedPromptsInstruct`, verbatim."""
    return (
        "/- You are proving a theorem in Lean 4.\n"
        "You are given the following information:\n"
        "- The current file contents up to and including the theorem statement, inside [CTX]...[/CTX]\n\n"
        "Your task is to generate the proof.\n"
        "Put the proof inside [PROOF]...[/PROOF]\n"
        "-/\n"
        f"[CTX]\n{context}\n[/CTX]\n[PROOF]"
    )


def llmlean_openai_body(model: str, prompt: str, n: int, max_tokens: int, stop=("[/TAC]",)) -> str:
    """`OpenAIGenerationRequest`: the body of `tacticGenerationOpenAI`, as `Json.pretty` prints it."""
    return lean_json_pretty(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "n": n, "temperature": 0.7,
         "max_tokens": max_tokens, "stream": False, "stop": list(stop)}
    )


def llmlean_ollama_body(model: str, prompt: str, temperature: float, num_predict: int, stop=("[/TAC]",)) -> str:
    """`OllamaGenerationRequest`: the body of `tacticGenerationOllama`, as `Json.pretty` prints it."""
    return lean_json_pretty(
        {"model": model, "prompt": prompt, "raw": False, "stream": False,
         "options": {"temperature": temperature, "stop": list(stop), "num_predict": num_predict}}
    )


def llmlean_split_tac(text: str) -> str:
    """`splitTac`: after the first [TAC] (the whole text without one), before the first [/TAC], trimmed.
    Lean's `String.trim` strips ASCII whitespace."""
    parts = text.split("[TAC]")
    text = parts[1] if len(parts) > 1 else text
    return text.split("[/TAC]")[0].strip(" \t\n\r")


def llmlean_keeps(tactic: str) -> bool:
    """`filterGeneration`."""
    return not any(banned in tactic for banned in ("sorry", "admit", "▅"))
