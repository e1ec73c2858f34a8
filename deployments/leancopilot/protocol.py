"""Wire models of the LeanCopilot / LeanDojo-v2 routes (../shared/CONTRACT.md).

Requests ignore unknown fields; responses always carry the LeanDojo-v2 extras, `null` unless scored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str = Field(description="The pretty-printed Lean tactic state.")
    name: str = Field(description="A bundle name or alias (see GET /models).")
    prefix: str | None = Field(default=None, description="Every output starts with it; '' or null: none.")
    use_reward: bool = Field(default=False, description="Rank by the LeanProgress scorer.")
    # LeanServe extensions: fewer candidates or tokens than the bundle's defaults.
    n: int | None = Field(default=None, ge=1, description="Candidates to sample (default: the bundle's).")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens per candidate (default: the bundle's).")


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str = Field(description="The pretty-printed Lean tactic state.")
    prefix: str | None = Field(default=None, description="Every output starts with it; '' or null: none.")


class GenerateBatchRequest(BaseModel):
    """POST /generate_batch: many states of one search at once (a LeanServe route), one answer per item."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="A bundle name or alias (see GET /models).")
    items: list[BatchItem] = Field(description="The states to expand; at most limits.max_batch_items.")
    use_reward: bool = Field(default=False, description="Rank by the LeanProgress scorer.")
    n: int | None = Field(default=None, ge=1, description="Candidates per item (default: the bundle's).")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens per candidate (default: the bundle's).")
    session_id: str | None = Field(
        default=None, max_length=256, description="Routes every item to one replica (e.g. the theorem's name)."
    )


class Candidate(BaseModel):
    output: str
    score: float
    model_score: float | None = None
    steps_remaining: float | None = None
    reward: float | None = None


class GenerateResponse(BaseModel):
    outputs: list[Candidate]


class ItemError(BaseModel):
    status: int
    detail: str


class BatchResult(BaseModel):
    """One item's answer: its `outputs` as /generate gives them, or the `error` it alone met."""

    outputs: list[Candidate] | None = None
    error: ItemError | None = None


class GenerateBatchResponse(BaseModel):
    results: list[BatchResult]


class ProveRequest(BaseModel):
    """POST /prove: complete proof candidates of a theorem from a whole-proof bundle (a LeanServe route)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="A whole-proof bundle's name or alias (see GET /models).")
    theorem: str = Field(description="The Lean 4 theorem to prove, e.g. `theorem t ... := by` (imports included if the model expects them).")
    problem: str | None = Field(default=None, description="The informal problem, for prompts that show one (Kimina).")
    n: int | None = Field(default=None, ge=1, description="Candidates to sample (default: the bundle's).")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens per candidate (default: the bundle's).")


class ProofCandidate(BaseModel):
    output: str = Field(description="Complete Lean 4 code: the final ```lean4 block of the model's answer.")
    score: float = Field(description="exp(mean token log-prob) of the whole answer, in [0, 1].")


class ProveResponse(BaseModel):
    outputs: list[ProofCandidate]


class EncodeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str
    name: str


class EncodeResponse(BaseModel):
    outputs: list[float]


class ModelInfo(BaseModel):
    name: str
    aliases: list[str]
    routes: list[str]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ErrorResponse(BaseModel):
    detail: str
