"""Typed configuration of a LeanServe application: the ingress, request limits, security, the bundles and
scorers (`AppArgs`), and the Ray Serve config file around it (`ServeConfigFile`).

The one source of truth for every default. Nothing here imports Ray or vLLM, so configs are validated (and
tested) without either. Every model forbids unknown keys, so a typo in `serve_config.yaml` fails at start
with a message that names the field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.config.base import ConfigError, StrictModel, format_validation_error, resolve_local_path
from core.config.bundle import BundleConfig
from core.config.scorer import ScorerConfig, scorer_from_env

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 23337  # LeanCopilot's default port for external models
# LeanCopilot sends no Authorization header: clients on these networks may skip the API key.
DEFAULT_ALLOW_NETWORKS = ("127.0.0.0/8", "::1/128")


class IngressSettings(StrictModel):
    """The FastAPI ingress deployment."""

    num_cpus: float = Field(default=0.25, ge=0, description="CPUs per ingress replica.")
    num_replicas: int = Field(default=1, ge=1, description="Ingress replicas.")
    max_ongoing_requests: int = Field(default=256, ge=1, description="Concurrent requests per ingress replica.")
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Deadline of one request from its arrival, shared by every hop (engine, dedup, scorer): "
        "then 504, and the engine request is aborted. Replicas drain this long (+10 s) when they stop.",
    )
    health_timeout_s: float = Field(default=10.0, gt=0, description="/health waits this long for each bundle.")
    # The optional hops: a lost one degrades the answer (docs/scoring.md) instead of failing or stalling it.
    dedup_timeout_s: float = Field(
        default=1.0, gt=0, description="/generate waits this long for the dedup store; then the candidates go unfiltered."
    )
    scorer_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="use_reward waits this long for the scorer (within the deadline); then unscored candidates, "
        "with the X-LeanServe-Degraded header.",
    )
    breaker_cooldown_s: float = Field(
        default=10.0,
        gt=0,
        description="After the dedup store or a scorer fails, requests skip it this long (answering degraded at "
        "once), then one request tries it again.",
    )
    # Lean re-elaborates a file on every edit and resends the same states while they are still being generated.
    coalesce_identical_requests: bool = Field(
        default=True, description="Concurrent identical /generate requests share one engine call."
    )
    # LLMLean's Ollama client asks for its samples one request after another, with the same prompt.
    sample_window_s: float = Field(
        default=60.0,
        ge=0,
        description="An Ollama tactic-mode request samples the bundle's n candidates once and answers the "
        "identical requests that follow within this many seconds from them, one distinct tactic each; 0: off.",
    )


class RequestLimits(StrictModel):
    """What one request may ask for; beyond it the client gets 413 (size) or 422 (value)."""

    # Lean's curl sends far less; anything bigger is a mistake or an attack.
    # Counted in characters; in UTF-8 bytes where the tokens are bytes (ByT5 bundles, /encode): logic/validation.py.
    max_input_chars: int = Field(
        default=65_536, ge=1, description="Longest `input`, in characters; in UTF-8 bytes for ByT5 bundles and /encode (413 beyond)."
    )
    max_prefix_chars: int = Field(
        default=4_096, ge=0, description="Longest `prefix`, in characters; in UTF-8 bytes for ByT5 bundles (413 beyond)."
    )
    # LLMLean puts the whole file up to the cursor in its prompt.
    max_prompt_chars: int = Field(
        default=262_144, ge=1, description="Longest raw prompt, or all chat turns together (/v1, /api; 413 beyond)."
    )
    max_n: int = Field(default=32, ge=1, description="Largest `n` a request may ask for (422 beyond).")
    max_tokens: int = Field(default=1_024, ge=1, description="Largest `max_tokens` a request may ask for (422 beyond).")


class SecuritySettings(StrictModel):
    """Opt-in API keys. The keys never sit in a config file: it names where the ingress reads them."""

    api_keys_env: str | None = Field(
        default=None, description="Environment variable holding the API keys (one per line or comma-separated)."
    )
    api_keys_file: str | None = Field(default=None, description="File holding the API keys, one per line.")
    allow_networks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOW_NETWORKS),
        description="Client networks that may call without a key (LeanCopilot sends none); [] requires it of all.",
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow_networks: {exc}") from None
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _absolute_key_file(cls, value: str | None) -> str | None:
        return resolve_local_path(value)

    @property
    def keys_required(self) -> bool:
        return self.api_keys_env is not None or self.api_keys_file is not None


class AppArgs(StrictModel):
    """The `args` of a LeanServe application in a Ray Serve config file."""

    models: list[BundleConfig] = Field(min_length=1, description="The model bundles, one deployment each.")
    ingress: IngressSettings = Field(default_factory=IngressSettings, description="See below.")
    limits: RequestLimits = Field(default_factory=RequestLimits, description="See below.")
    scorers: list[ScorerConfig] = Field(
        default_factory=list, description="LeanProgress scorers, one deployment each; none: LEANPROGRESS_MODEL's."
    )
    security: SecuritySettings = Field(default_factory=SecuritySettings, description="See below.")

    @model_validator(mode="after")
    def _scorers_exist(self) -> AppArgs:
        names = [s.name for s in self.scorers]
        if len(set(names)) != len(names):
            raise ValueError(f"scorer names must be unique: {names}")
        for bundle in self.models:
            if isinstance(bundle.scorer, str) and bundle.scorer not in names:
                raise ValueError(f"bundle {bundle.name!r} names scorer {bundle.scorer!r}; scorers: {names}")
        return self

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

    def scorer_for(self, bundle: BundleConfig) -> ScorerConfig | None:
        """The scorer that ranks `use_reward` requests to `bundle`, or None (then the contract's 400)."""
        if bundle.scorer is False or not self.scorers:
            return None
        if bundle.scorer is True:
            return self.scorers[0]
        return next(s for s in self.scorers if s.name == bundle.scorer)


class HttpOptions(BaseModel):
    """Serve's `http_options`; only the fields LeanServe relies on are typed, Serve checks the rest."""

    model_config = ConfigDict(extra="allow", frozen=True)

    host: str = Field(default=DEFAULT_HTTP_HOST, description="Bind address; 0.0.0.0 on a cluster.")
    port: int = Field(default=DEFAULT_HTTP_PORT, ge=1, le=65535, description="LeanCopilot's default port.")


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


def with_env_scorer(args: AppArgs, environ: Mapping[str, str]) -> AppArgs:
    """`args` plus the scorer LEANPROGRESS_MODEL / LEANPROGRESS_DEVICE name, when the config has none.

    Read in the builder, so `make serve` and `serve run` both honour the variables; a config file's own
    `scorers` win (the variables are LeanDojo-v2's way to switch scoring on, not an override).
    """
    if args.scorers:
        return args
    try:
        scorer = scorer_from_env(environ)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "LEANPROGRESS_MODEL / LEANPROGRESS_DEVICE")) from None
    return args if scorer is None else args.model_copy(update={"scorers": [scorer]})


def parse_app_args(args: AppArgs | dict[str, Any], source: str = "application args") -> AppArgs:
    if isinstance(args, AppArgs):
        return args
    try:
        return AppArgs.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
