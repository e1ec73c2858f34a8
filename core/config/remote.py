"""Typed configuration of remote bundles (hosted chat APIs) and of cross-call deduplication.

Kept apart so the remote feature is one module. Nothing here imports an SDK: configs validate on machines
without them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from core.config.base import StrictModel

RemoteApi = Literal["openai", "anthropic", "gemini"]
REMOTE_ENGINES: frozenset[str] = frozenset({"openai", "anthropic", "gemini"})


class RetryBudgetConfig(StrictModel):
    """How many retries a remote bundle's replica may make, as a share of its calls (logic/retry_budget.py).

    Each call earns `ratio` retries and each retry spends one, so a failing API is called at most about
    (1 + ratio) times per call, never max_retries + 1 times; `min_retries_per_s` lets a quiet bundle still
    retry a lone failure. Like gRPC's retry throttling and Finagle's RetryBudget.
    """

    ratio: float = Field(default=0.2, ge=0, description="Retries earned by each call (0.2: at most one retry per 5 calls).")
    min_retries_per_s: float = Field(
        default=0.1, ge=0, description="Retries earned per second whatever the traffic (a quiet bundle's floor)."
    )
    max_saved: float = Field(
        default=10.0,
        ge=1,
        description="Most retries saved up (and the budget at start): how many a burst of failures after a quiet "
        "spell may retry before the ratio binds.",
    )


class RemoteEngineConfig(StrictModel):
    """How a remote bundle reaches its hosted chat API (engine openai, anthropic or gemini).

    The bundle's `model` is the model id as the API names it. The key is read from the environment
    variable named by `api_key_env`, never from the file; without it the bundle reports "not ready".
    """

    base_url: str | None = Field(
        default=None,
        description="API root, e.g. https://router.huggingface.co/v1 ; None: the SDK's default (the vendor's API).",
    )
    api_key_env: str | None = Field(
        default=None,
        description="NAME of the environment variable holding the API key; None: the server needs no key.",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Deadline of one API call (each retry gets its own).")
    max_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of one call after a 429, a 5xx or a lost connection, within the retry budget."
    )
    retry_budget: RetryBudgetConfig = Field(
        default_factory=RetryBudgetConfig, description="Retries as a bounded share of calls, per replica: see below."
    )
    backoff_initial_s: float = Field(default=0.5, ge=0, description="First retry delay; it doubles, with jitter.")
    backoff_max_s: float = Field(default=8.0, ge=0, description="Longest delay between two retries.")
    n_per_call: bool = Field(
        default=True,
        description="Ask for n candidates in one call (OpenAI `n`, Gemini `candidate_count`); false: n parallel "
        "calls. Anthropic has no such parameter and always makes parallel calls.",
    )
    logprobs: bool = Field(
        default=True,
        description="Request token log-probabilities for the score (OpenAI, Gemini); unsupported ones: set false.",
    )
    send_sampling: bool | None = Field(
        default=None,
        description="Send sampling.temperature and top_p; None: yes for openai and gemini, no for anthropic "
        "(its current Messages API takes neither).",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Further request fields sent as they are (e.g. {top_k: 20})."
    )

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or not value.replace("_", "A").isalnum() or value[0].isdigit()):
            raise ValueError(f"api_key_env must be the NAME of an environment variable (like HF_TOKEN), not {value!r}")
        return value


class CrossCallDedupConfig(StrictModel):
    """Cross-call deduplication: once a tactic was returned for an input, later calls for it skip it.

    The memory is shared by all replicas (one small Serve deployment, deployments/dedup_store.py) and bounded: at most `max_inputs`
    inputs per bundle, each forgotten `ttl_s` seconds after it was first seen.
    """

    enabled: bool = Field(default=False, description="Opt in: later calls for the same input return new tactics only.")
    ttl_s: float = Field(default=3600.0, gt=0, description="Seconds an input's returned tactics are remembered.")
    max_inputs: int = Field(default=10_000, ge=1, description="Inputs remembered per bundle (oldest dropped first).")
    max_tactics_per_input: int = Field(default=256, ge=1, description="Tactics remembered per input.")
