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
from core.request_context import PRIORITY_CLASSES, PriorityClass

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 23337  # LeanCopilot's default port for external models
# Without API keys (and without `security.allow_unauthenticated`) only clients on these networks are served:
# LeanCopilot on the same machine sends no Authorization header.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
LOOPBACK_HOSTS = frozenset({"localhost", "ip6-localhost"})
# Serve's HTTP proxy reads its LeanServe middlewares (deployments/edge.py) from Ray's hook, and the body limit
# from the second variable (the launcher and the KubeRay manifest set both).
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "deployments.edge:proxy_middlewares"
PROXY_BODY_LIMIT_ENV = "LEANSERVE_MAX_BODY_BYTES"
# Ray starts every worker process (Serve's proxy, the replicas, and the vLLM engine processes they spawn) at
# niceness 15, so any other process on the machine (a Lean build, a notebook, a load generator) takes the CPU
# from the engine first. The clusters LeanServe starts itself run them at the machine's normal priority, as
# `vllm serve` runs (measured on the tiny model at concurrency 1: docs/benchmarks.md).
WORKER_NICENESS_ENV = "RAY_worker_niceness"
WORKER_NICENESS = "0"
# Serve's HAProxy ingress (Ray's high-throughput mode): HAProxy forwards each request from its own address and
# adds no X-Forwarded-For, so the ingress never sees the client's address (logic/auth.py refuses allow_networks).
HAPROXY_INGRESS_ENV = "RAY_SERVE_ENABLE_HA_PROXY"
# The proxy's own timeout outlasts the ingress's deadline by this much, so the ingress's 504 (JSON, with the
# engine request aborted) wins; the proxy's 408 is left for what the ingress cannot see: a trickling upload.
PROXY_TIMEOUT_MARGIN_S = 5.0


def is_loopback_host(host: str) -> bool:
    """True for a bind address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    max_queued_requests: int = Field(
        default=256,
        ge=1,
        description="Requests each Serve proxy holds waiting for a free ingress slot; beyond it Serve answers 503 "
        "at once (Serve's own default queues without bound).",
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
    health_min_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="/health answers from its last probe this long: a flood of /health costs the bundles and "
        "scorers at most one cheap probe per interval and ingress replica.",
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


class CallerLimits(StrictModel):
    """What one caller may ask of the server, for the priority class of its API key (`<key> batch` in the key
    source; untagged keys and keyless callers are interactive). 0 switches a limit off."""

    max_generated_tokens: int = Field(
        default=8_192,
        ge=0,
        description="Most tokens one engine request may ask for, n x max_tokens (the bundle's defaults where the "
        "request gives none; a /generate_batch item, and each prompt of an OpenAI list, is one engine request); "
        "a request within its bundle's own defaults always passes; 0: no limit (422 beyond).",
    )
    requests_per_minute: int = Field(
        default=600,
        ge=0,
        description="Requests one API key may send in any 60 s, counted per ingress replica (a /generate_batch "
        "counts its items); keyless callers (loopback, or behind a gateway) are not counted; 0: no limit "
        "(429 with Retry-After beyond).",
    )


class BatchCallerLimits(CallerLimits):
    """The limits of keys tagged `batch` (proof-search clients send many states a minute)."""

    requests_per_minute: int = Field(
        default=6_000,
        ge=0,
        description="As for interactive keys, higher: a search expands many states a minute.",
    )


class PerClassLimits(StrictModel):
    """Per-caller limits by the priority class of the caller's key (logic/caller_limits.py)."""

    interactive: CallerLimits = Field(default_factory=CallerLimits, description="See below.")
    batch: BatchCallerLimits = Field(default_factory=BatchCallerLimits, description="See below.")

    def of(self, priority_class: PriorityClass) -> CallerLimits:
        return getattr(self, priority_class)


class RequestLimits(StrictModel):
    """What one request may ask for; beyond it the client gets 413 (size) or 422 (value), and a caller over its
    rate 429."""

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
    max_batch_items: int = Field(default=64, ge=1, description="Most items in one /generate_batch (413 beyond).")
    # 65,536 astral characters as JSON escapes (12 bytes each) and a full prefix fit in 1 MiB.
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body in bytes (413 beyond): Content-Length is checked before anything is "
        "read, and a body without one is counted as it arrives. Serve's proxy applies it too (docs/operations.md).",
    )
    per_class: PerClassLimits = Field(
        default_factory=PerClassLimits,
        description="Per-caller limits by the class of the caller's key: n x max_tokens and request rate.",
    )

    @model_validator(mode="after")
    def _body_fits_the_text_limits(self) -> RequestLimits:
        # A body must be able to carry the longest input and prefix, even in 4-byte UTF-8 characters.
        needed = 4 * (self.max_input_chars + self.max_prefix_chars)
        if self.max_body_bytes < needed:
            raise ValueError(
                f"max_body_bytes ({self.max_body_bytes}) must be at least 4 x (max_input_chars + max_prefix_chars) "
                f"= {needed}: a body must be able to carry the longest input and prefix"
            )
        return self

    @model_validator(mode="after")
    def _a_full_batch_fits_the_rate(self) -> RequestLimits:
        # A /generate_batch counts its items: a rate below max_batch_items would refuse a full batch for ever.
        for name in PRIORITY_CLASSES:
            rate = self.per_class.of(name).requests_per_minute
            if 0 < rate < self.max_batch_items:
                raise ValueError(
                    f"per_class.{name}.requests_per_minute ({rate}) is below max_batch_items ({self.max_batch_items}): "
                    "a full /generate_batch could never pass; raise it, or use 0 for no limit"
                )
        return self


class SecuritySettings(StrictModel):
    """Who may call. Closed by default: without API keys only loopback clients are served, and a config that
    binds a non-loopback address without keys refuses to start. The keys never sit in a config file: it names
    where the ingress reads them. With keys, every request but /health needs one, loopback's too."""

    api_keys_env: str | None = Field(
        default=None, description="Environment variable holding the API keys (one per line or comma-separated)."
    )
    api_keys_file: str | None = Field(default=None, description="File holding the API keys, one per line.")
    allow_networks: list[str] = Field(
        default_factory=list,
        description="With API keys: the only client networks served at all (a key is still required); [] "
        "serves any network. Without keys it is an error (it would guard nothing).",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Serve clients without a key from any address. Off: without keys only loopback clients are "
        "served, and a non-loopback bind refuses to start. Only behind a gateway that authenticates.",
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

    @model_validator(mode="after")
    def _one_way_in(self) -> SecuritySettings:
        if self.allow_networks and not self.keys_required:
            raise ValueError(
                "allow_networks needs API keys (security.api_keys_env or security.api_keys_file): without keys "
                "only loopback clients are served, or every client with security.allow_unauthenticated"
            )
        if self.allow_unauthenticated and self.keys_required:
            raise ValueError("allow_unauthenticated contradicts the configured API keys: choose one")
        return self

    @property
    def keys_required(self) -> bool:
        return self.api_keys_env is not None or self.api_keys_file is not None

    @property
    def closed_to_strangers(self) -> bool:
        """True when a client that is not on loopback cannot call without a key."""
        return not self.allow_unauthenticated


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
    request_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Serve's proxy cuts a request (body upload included) after this long with 408; unset: the "
        "longest ingress request_timeout_s + 5 s. Must not be shorter than an ingress's request_timeout_s.",
    )


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

    @model_validator(mode="after")
    def _no_open_door_on_the_network(self) -> ServeConfigFile:
        if is_loopback_host(self.http_options.host):
            return self
        for index, app in enumerate(self.applications):
            security = app.args.security
            if not security.keys_required and not security.allow_unauthenticated:
                raise ValueError(
                    f"http_options.host {self.http_options.host!r} is reachable from other machines but "
                    f"applications.{index}.args.security has no API keys: set security.api_keys_env (or "
                    f"api_keys_file), or security.allow_unauthenticated: true behind an authenticating gateway"
                )
        return self

    @model_validator(mode="after")
    def _proxy_outlasts_the_ingress(self) -> ServeConfigFile:
        proxy_s = self.http_options.request_timeout_s
        ingress_s = self.longest_request_timeout_s
        if proxy_s is not None and proxy_s < ingress_s:
            raise ValueError(
                f"http_options.request_timeout_s ({proxy_s}) is shorter than an ingress.request_timeout_s "
                f"({ingress_s}): the proxy would cut requests the ingress still serves"
            )
        return self

    @property
    def longest_request_timeout_s(self) -> float:
        return max(app.args.ingress.request_timeout_s for app in self.applications)

    @property
    def max_body_bytes(self) -> int:
        """The proxy's body limit: the largest any application allows (each ingress checks its own too)."""
        return max(app.args.limits.max_body_bytes for app in self.applications)

    def serve_http_options(self) -> dict[str, Any]:
        """`http_options` for `serve.start`, with the proxy's request timeout filled in when the file has none."""
        options = self.http_options.model_dump(exclude_none=True)
        options.setdefault("request_timeout_s", self.longest_request_timeout_s + PROXY_TIMEOUT_MARGIN_S)
        return options


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
