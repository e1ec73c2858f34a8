"""Wire models of Ollama's /api/generate and /api/tags (github.com/ollama/ollama, docs/api.md), as LLMLean and
other Ollama clients send them. Unknown fields and options are ignored, as Ollama ignores them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.errors import LeanServeError


class Options(BaseModel):
    model_config = ConfigDict(extra="ignore")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: list[str] | None = None
    # Ollama: -1 = no limit, -2 = fill the context; LeanServe then uses the bundle's max_tokens.
    num_predict: int | None = None

    def token_limit(self) -> int | None:
        return self.num_predict if self.num_predict is not None and self.num_predict > 0 else None


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="A bundle name or alias (GET /api/tags).")
    prompt: str = ""
    system: str | None = None
    raw: bool = Field(default=False, description="True: the prompt is sent without the model's chat template.")
    stream: bool = Field(default=True, description="Ollama streams by default (newline-delimited JSON).")
    options: Options = Field(default_factory=Options)


class ModelDetails(BaseModel):
    format: str = ""
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class ModelTag(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int = 0
    digest: str
    details: ModelDetails = Field(default_factory=ModelDetails)


class TagsResponse(BaseModel):
    models: list[ModelTag]


class ErrorResponse(BaseModel):
    error: str


def error_body(error: LeanServeError) -> dict[str, Any]:
    """Ollama's error shape: `{"error": "..."}`."""
    return {"error": error.detail}
