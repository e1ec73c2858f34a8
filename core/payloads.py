"""The data that crosses a process boundary: what the ingress asks of a bundle or a scorer, what an engine
returns, and what a bundle answers. Plain frozen dataclasses, so Ray pickles them cheaply and exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A chat conversation ({"role": ..., "content": ...} turns): what remote engines take instead of a string.
ChatMessages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingRequest:
    """What one engine request samples: `n` candidates for one prompt."""

    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()
    # The engine's scheduling priority (vLLM: lower first); 0 is interactive, the default.
    priority: int = 0
    # Per-token log-probabilities with this many alternatives each (OpenAI's `logprobs`); None: none sent back.
    logprobs: int | None = None
    # Sample max_tokens whatever the model says (vLLM's extension; load tests use it for fixed lengths).
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token of a completion, its log-probability and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """One sampled continuation, with what the score needs."""

    text: str
    cumulative_logprob: float | None
    num_tokens: int
    # "stop" (a stop string or EOS) or "length" (cut at max_tokens); None if the engine does not say.
    finish_reason: str | None = None
    # The engine's own probability in [0, 1], where the model's convention is not exp(mean token log-prob):
    # beam search scores exp(sequence log-prob), as LeanCopilot does. None: scored from the log-prob.
    score: float | None = None
    # Only when the request asked for them (SamplingRequest.logprobs).
    token_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class EngineOutput:
    completions: list[Completion]
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens the engine's prefix cache already held

    @property
    def generated_tokens(self) -> int:
        return sum(c.num_tokens for c in self.completions)


@dataclass(frozen=True)
class CompletionDelta:
    """What one choice of a streamed completion gained since the last delta."""

    index: int
    text: str
    num_tokens: int
    finish_reason: str | None = None
    token_logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class StreamChunk:
    """One step of a streamed completion: the choices that moved, and the prompt's length (first step only)."""

    deltas: list[CompletionDelta]
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class EngineLoad:
    """The engine's own queue, for metrics: requests in the running batch and requests waiting for it."""

    running: int = 0
    waiting: int = 0
    # Running totals since the engine started, in tokens: prompt tokens looked up in the prefix cache, and found.
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    # Requests whose caller left (client gone, deadline passed) before the engine finished them: each was
    # aborted in the engine. A running total.
    abandoned_requests: int = 0


@dataclass(frozen=True)
class TacticRequest:
    """What the ingress asks of a tactic bundle: candidates for the next step of `state` that start with `prefix`."""

    request_id: str
    state: str
    prefix: str = ""
    n: int | None = None
    max_tokens: int | None = None
    priority: int = 0
    # Read by the prefix_affinity router (deployments/prefix_router.py): requests with one key share a replica.
    routing_key: str | None = None
    # The client's own prompt (an LLMLean prompt), asked as the user turn instead of the bundle's prompt.
    # Only for bundles that answer chat turns; the others get the state and prefix taken out of it.
    client_prompt: str | None = None


@dataclass(frozen=True)
class CompletionRequest:
    """A raw completion (/v1/completions, /v1/chat/completions, /api/generate): the prompt goes to the engine as
    it is, or the turns through the model's chat template (passed through to remote chat APIs)."""

    request_id: str
    prompt: str | ChatMessages
    sampling: SamplingRequest
    routing_key: str | None = None  # read by the prefix_affinity router, as on TacticRequest


@dataclass(frozen=True)
class ProofRequest:
    """What the ingress asks of a whole-proof bundle."""

    request_id: str
    theorem: str
    problem: str = ""
    n: int | None = None
    max_tokens: int | None = None
    priority: int = 0
    routing_key: str | None = None


@dataclass(frozen=True)
class ScoredTactic:
    """One cleaned candidate (a tactic, or a whole proof) with its score in [0, 1]."""

    output: str
    score: float


@dataclass(frozen=True)
class BundleAnswer:
    """What a bundle returns: cleaned, deduplicated candidates, best first, and what it took to make them."""

    candidates: list[ScoredTactic] = field(default_factory=list)
    sampled: int = 0  # completions the engine returned (before cleaning and deduplication)
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    replica: str = ""  # Serve's id of the replica that answered (the X-LeanServe-Replica header)


@dataclass(frozen=True)
class ScoringInput:
    """One candidate for the LeanProgress scorer: the goal it acts on, the user's prefix and the tactic."""

    goal: str
    prefix: str
    tactic: str
