"""LeanCopilot's wire format (see ../shared/CONTRACT.md): what its Lean client sends and what it reads back."""

from __future__ import annotations

import json
from typing import Any

# LeanCopilot runs `curl -X POST URL -H "accept: application/json" -H "Content-Type: application/json" -d JSON`.
LEANCOPILOT_HEADERS = {"accept": "application/json", "Content-Type": "application/json"}


def leancopilot_body(payload: dict[str, Any]) -> bytes:
    """The body as LeanCopilot serialises it, with Lean's `Json.pretty`: keys sorted, a space after every `:` and
    `,`, non-ASCII as raw UTF-8 (past 80 columns Json.pretty also breaks lines, whitespace a parser ignores)."""
    return json.dumps(payload, ensure_ascii=False, separators=(", ", ": "), sort_keys=True).encode("utf-8")


def generate_payload(state: str, name: str, prefix: str = "", **extra: Any) -> dict[str, Any]:
    """LeanCopilot always sends input, name and prefix; `extra` (n, max_tokens, use_reward) is LeanServe's own."""
    return {"input": state, "name": name, "prefix": prefix, **{k: v for k, v in extra.items() if v is not None}}


def parse_candidates(body: Any) -> list[tuple[str, float]]:
    """(output, score) pairs of a /generate answer, as LeanCopilot reads them; ValueError on anything else.

    LeanCopilot needs every candidate to carry a string `output` and a numeric `score`; otherwise the user
    sees only "Failed to parse response".
    """
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        raise ValueError("not a /generate answer: no 'outputs' list")
    candidates = []
    for item in body["outputs"]:
        output = item.get("output") if isinstance(item, dict) else None
        score = item.get("score") if isinstance(item, dict) else None
        if not isinstance(output, str) or isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"candidate without a string output and a numeric score: {item!r}")
        candidates.append((output, float(score)))
    return candidates
