"""Wire models of the OpenAI-compatible routes under /v1, as OpenAI documents them (vLLM's
`entrypoints/openai/*/protocol.py` was the field-by-field reference).

Requests ignore fields LeanServe does not use (`user`, `repetition_penalty`, `seed`, ...), as OpenAI-compatible
servers do; the fields it uses are validated, so a bad value is a 422 in OpenAI's error shape.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import LeanServeError


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    model: str = Field(description="A bundle name or alias (GET /v1/models).")
    n: int = Field(default=1, ge=1, description="Choices to sample.")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens per choice (default: the bundle's).")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(default=False, description="vLLM's extension: always sample max_tokens.")

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def _not_empty(value: str | list[str]) -> str | list[str]:
    if isinstance(value, list) and not value:
        raise ValueError("must hold at least one text")
    return value


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(description="The text the model continues, as it is (or several).")
    logprobs: int | None = Field(default=None, ge=0, le=20, description="Alternatives per token to return.")

    _prompt_not_empty = field_validator("prompt")(_not_empty)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="OpenAI's newer name of max_tokens.")
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def turns(self) -> list[dict[str, str]]:
        # `developer` is OpenAI's new name of the system turn; chat templates know `system`.
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str] = Field(description="One text or several (token arrays are not accepted).")
    # The SDK asks for base64 (little-endian float32) unless told otherwise.
    encoding_format: Literal["float", "base64"] = "float"

    _input_not_empty = field_validator("input")(_not_empty)


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "leanserve"
    root: str = Field(description="The bundle the name resolves to (an alias's bundle).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_ERROR_CODES = {
    404: "model_not_found", 401: "invalid_api_key", 413: "input_too_large", 429: "rate_limit_exceeded", 504: "timeout"
}


def error_body(error: LeanServeError) -> dict[str, Any]:
    """OpenAI's error shape, with the status the LeanCopilot routes give the same error."""
    status = error.status_code
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    param = "model" if status == 404 else None
    return ErrorResponse(error=ErrorInfo(message=error.detail, type=kind, param=param, code=_ERROR_CODES.get(status))).model_dump()
