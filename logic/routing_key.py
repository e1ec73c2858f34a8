"""The routing key of a request: which requests should share a bundle replica, so vLLM's prefix cache hits.

Proof search sends many states of one theorem, and they share long prompt prefixes: the hypotheses (what comes
before the first `⊢`), or for LLMLean the file context between `[CTX]` and `[/CTX]`. An explicit session key
(the client's `X-Session-Id`, or the batch route's `session_id`) wins over anything derived from the text.
The key is a short digest: routers and logs never see a proof state.
"""

from __future__ import annotations

import hashlib

TURNSTILE = "⊢"
CONTEXT_OPEN, CONTEXT_CLOSE = "[CTX]", "[/CTX]"
MAX_SESSION_ID_CHARS = 256


def _digest(kind: str, text: str) -> str:
    return f"{kind}:{hashlib.blake2b(text.encode('utf-8'), digest_size=8).hexdigest()}"


def file_context(text: str) -> str | None:
    """The `[CTX]...[/CTX]` part of an LLMLean prompt, or None."""
    start = text.find(CONTEXT_OPEN)
    if start < 0:
        return None
    end = text.find(CONTEXT_CLOSE, start + len(CONTEXT_OPEN))
    return text[start + len(CONTEXT_OPEN) : end if end >= 0 else len(text)]


def hypotheses(state: str) -> str:
    """What the state's first goal assumes: the text before its first `⊢` (its `case` tag included)."""
    head, found, _ = state.partition(TURNSTILE)
    return head.strip() if found else ""


def routing_key(state: str, session_id: str | None = None) -> str:
    """The key requests with a shared prefix have in common: the session, else the file context, else the
    hypotheses; a state without hypotheses is its own key (so a resent state still finds its cache)."""
    if session_id:
        return _digest("session", session_id)
    context = file_context(state)
    if context:
        return _digest("ctx", context)
    assumed = hypotheses(state)
    return _digest("hyp", assumed) if assumed else _digest("state", state)
