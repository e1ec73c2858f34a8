"""Typed configuration of a LeanServe application: the one source of truth for every default.

Nothing here imports Ray or vLLM, so configs are validated (and tested) without either. Every model
forbids unknown keys, so a typo in `serve_config.yaml` fails at start with a message that names the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 23337  # LeanCopilot's default port for external models
BUNDLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FewShotExample(StrictModel):
    """One (proof state, tactic) pair shown to a chat model before the real state."""

    state: str
    tactic: str


class PromptConfig(StrictModel):
    """How a proof state becomes the engine's prompt.

    `template` is a format string with `{state}` (and optionally `{name}`); generation continues
    right after it, so a request's prefix is appended to the rendered prompt. With `chat: true` the
    template renders the user turn and the model's own chat template wraps it, after `system` and the
    `few_shot` turns.
    """

    template: str = "{state}"
    chat: bool = False
    system: str | None = None
    few_shot: list[FewShotExample] = Field(default_factory=list)

    @field_validator("template")
    @classmethod
    def _template_has_state(cls, value: str) -> str:
        if "{state}" not in value:
            raise ValueError("the prompt template must contain the placeholder {state}")
        try:
            value.format(state="", name="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"the prompt template is not a valid format string: {exc!r}") from None
        return value

    @model_validator(mode="after")
    def _chat_only_fields(self) -> PromptConfig:
        if not self.chat and (self.system or self.few_shot):
            raise ValueError("system and few_shot need chat: true")
        return self


class SamplingDefaults(StrictModel):
    """A bundle's default sampling; a request may lower `n` and `max_tokens` within `limits`."""

    n: int = Field(default=4, ge=1, le=64)
    temperature: float = Field(default=1.0, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=64, ge=1, le=8192)
    stop: list[str] = Field(default_factory=lambda: ["\n"])


class TacticFilterConfig(StrictModel):
    """How completions become tactics (see models/tactics.py)."""

    # Drop candidates that do not look like a tactic (English prose, an echoed goal). Worth it for chat
    # models that chat; off for trained provers, whose completions are tactics by construction.
    require_tactic_shape: bool = False


class EngineConfig(StrictModel):
    """Arguments of the generation engine (vLLM's AsyncEngineArgs, by the same names)."""

    dtype: str = "auto"
    max_model_len: int | None = Field(default=None, ge=16)
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0.0, le=1.0)
    # The CPU build sizes its KV cache from 92% of RAM unless told: set it there.
    kv_cache_memory_bytes: int | None = Field(default=None, ge=1 << 20)
    max_num_seqs: int = Field(default=64, ge=1)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    seed: int = 0
    # Anything else AsyncEngineArgs takes; names are checked against it when the engine starts.
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_memory_knob(self) -> EngineConfig:
        if self.gpu_memory_utilization is not None and self.kv_cache_memory_bytes is not None:
            raise ValueError("set gpu_memory_utilization or kv_cache_memory_bytes, not both")
        return self


class AutoscalingSettings(StrictModel):
    min_replicas: int = Field(default=1, ge=0)
    initial_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    # None: derived from the engine's batch size (see BundleConfig.target_ongoing_requests).
    target_ongoing_requests: float | None = Field(default=None, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class DeploymentSettings(StrictModel):
    """Ray Serve settings of one deployment."""

    num_cpus: float = Field(default=0.5, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    # None: derived from the engine's batch size, so that the engine can batch (Serve's default of 5 starves it).
    max_ongoing_requests: int | None = Field(default=None, ge=1)
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings)
    # A busy engine can miss a short health check: keep the timeout generous.
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)
    env_vars: dict[str, str] = Field(default_factory=dict)


def resolve_local_path(value: str | None) -> str | None:
    """`./x` and `../x` are local folders relative to where the app is built; replicas may run elsewhere
    (another cwd, another process), so they get the absolute path. Hub ids pass through unchanged."""
    if value is not None and value.startswith(("./", "../", "~")):
        return str(Path(value).expanduser().resolve())
    return value


class EncoderConfig(StrictModel):
    """A transformers encoder whose mean-pooled hidden states answer /encode."""

    model: str
    max_length: int = Field(default=512, ge=1)
    device: str = "auto"
    max_batch_size: int = Field(default=16, ge=1)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)

    @field_validator("model")
    @classmethod
    def _absolute_local_path(cls, value: str) -> str:
        return resolve_local_path(value)


class BundleConfig(StrictModel):
    """One model bundle: its own autoscaled Ray Serve deployment."""

    name: str = Field(pattern=BUNDLE_NAME_PATTERN)
    aliases: list[str] = Field(default_factory=list)
    engine: Literal["vllm"] = "vllm"
    # Local folder or hub id of the generator; None for an encoder-only bundle.
    model: str | None = None
    tokenizer: str | None = None
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    tactics: TacticFilterConfig = Field(default_factory=TacticFilterConfig)
    engine_args: EngineConfig = Field(default_factory=EngineConfig)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    encoder: EncoderConfig | None = None

    @field_validator("model", "tokenizer")
    @classmethod
    def _absolute_local_path(cls, value: str | None) -> str | None:
        return resolve_local_path(value)

    @model_validator(mode="after")
    def _serves_something(self) -> BundleConfig:
        if self.model is None and self.encoder is None:
            raise ValueError(f"bundle {self.name!r} needs a model, an encoder, or both")
        for alias in self.aliases:
            if not re.match(BUNDLE_NAME_PATTERN, alias):
                raise ValueError(f"alias {alias!r} of bundle {self.name!r} is not a valid name")
        return self

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    @property
    def routes(self) -> list[str]:
        return [route for route, ok in (("generate", self.model), ("encode", self.encoder)) if ok]

    @property
    def max_ongoing_requests(self) -> int:
        """Concurrent requests a replica accepts: enough to fill the engine's batch."""
        explicit = self.deployment.max_ongoing_requests
        return explicit if explicit is not None else self.engine_args.max_num_seqs

    @property
    def target_ongoing_requests(self) -> float:
        """Autoscaling target: scale out when replicas run at about half their batch size."""
        explicit = self.deployment.autoscaling.target_ongoing_requests
        return explicit if explicit is not None else max(1.0, self.engine_args.max_num_seqs / 2)

    @property
    def deployment_name(self) -> str:
        # Ray Serve deployment names may not hold '/', which hub ids do.
        return "bundle-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.name)


class IngressSettings(StrictModel):
    """The FastAPI ingress deployment."""

    num_cpus: float = Field(default=0.25, ge=0)
    num_replicas: int = Field(default=1, ge=1)
    max_ongoing_requests: int = Field(default=256, ge=1)
    # The longest a /generate may take before the client gets 504 and the engine request is aborted.
    request_timeout_s: float = Field(default=300.0, gt=0)
    # /health waits this long for each bundle's own engine check.
    health_timeout_s: float = Field(default=10.0, gt=0)


class RequestLimits(StrictModel):
    """What one request may ask for; beyond it the client gets 413 (size) or 422 (value)."""

    # Lean's curl sends far less; anything bigger is a mistake or an attack.
    max_input_chars: int = Field(default=65_536, ge=1)
    max_prefix_chars: int = Field(default=4_096, ge=0)
    max_n: int = Field(default=32, ge=1)
    max_tokens: int = Field(default=1_024, ge=1)


class AppArgs(StrictModel):
    """The `args` of a LeanServe application in a Ray Serve config file."""

    models: list[BundleConfig] = Field(min_length=1)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    limits: RequestLimits = Field(default_factory=RequestLimits)

    @model_validator(mode="after")
    def _unique_names(self) -> AppArgs:
        seen: dict[str, str] = {}
        for bundle in self.models:
            for name in bundle.names:
                if name in seen:
                    raise ValueError(f"model name {name!r} is used by bundles {seen[name]!r} and {bundle.name!r}")
                seen[name] = bundle.name
        deployment_names = [b.deployment_name for b in self.models]
        if len(set(deployment_names)) != len(deployment_names):
            raise ValueError(f"bundle names map to clashing deployment names: {deployment_names}")
        return self


class HttpOptions(BaseModel):
    """Serve's `http_options`; only the fields LeanServe relies on are typed, Serve checks the rest."""

    model_config = ConfigDict(extra="allow", frozen=True)

    host: str = DEFAULT_HTTP_HOST
    port: int = Field(default=DEFAULT_HTTP_PORT, ge=1, le=65535)


class ApplicationSpec(BaseModel):
    """One entry of a Serve config file's `applications` that runs the LeanServe builder."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "leanserve"
    route_prefix: str = "/"
    import_path: str
    args: AppArgs


class ServeConfigFile(BaseModel):
    """A whole Ray Serve config file, as `serve run` / `serve deploy` and `make serve` read it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    http_options: HttpOptions = Field(default_factory=HttpOptions)
    applications: list[ApplicationSpec] = Field(min_length=1)


class ConfigError(ValueError):
    """A config file that cannot be served; the message is meant for a person."""


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid LeanServe configuration ({exc.error_count()} error(s))"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "<root>"
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)


def load_serve_config(path: str | Path) -> ServeConfigFile:
    """Read and validate a Serve config file; raise ConfigError with a readable message."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        return ServeConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None


def parse_app_args(args: AppArgs | dict[str, Any], source: str = "application args") -> AppArgs:
    if isinstance(args, AppArgs):
        return args
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
