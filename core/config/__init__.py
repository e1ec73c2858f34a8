"""The typed configuration, one module per part; import the names from here.

- base: StrictModel, ConfigError, local paths
- deployment: Ray Serve settings of one deployment (resources, autoscaling, health checks)
- remote: remote bundles' API settings and cross-call deduplication
- bundle: one model bundle
- scorer: a LeanProgress scorer
- app: the application's `args` (AppArgs) and the Serve config file around it
- reference: the docs' configuration reference, generated from these models
"""

from core.config.app import (
    DEFAULT_HTTP_HOST,
    DEFAULT_HTTP_PORT,
    LOOPBACK_NETWORKS,
    PROXY_BODY_LIMIT_ENV,
    PROXY_CALLBACK,
    PROXY_CALLBACK_ENV,
    AppArgs,
    ApplicationSpec,
    HttpOptions,
    IngressSettings,
    RequestLimits,
    SecuritySettings,
    ServeConfigFile,
    is_loopback_host,
    load_serve_config,
    parse_app_args,
    with_env_scorer,
)
from core.config.base import ConfigError, StrictModel, format_validation_error, resolve_local_path
from core.config.bundle import (
    BUNDLE_NAME_PATTERN,
    DEFAULT_PRESET,
    BundleConfig,
    EncoderConfig,
    EngineConfig,
    FewShotExample,
    PresetName,
    PromptConfig,
    Route,
    SamplingDefaults,
    TacticFilterConfig,
    TransformersEngineConfig,
    WholeProofConfig,
)
from core.config.deployment import AutoscalingSettings, DeploymentSettings
from core.config.remote import REMOTE_ENGINES, CrossCallDedupConfig, RemoteApi, RemoteEngineConfig
from core.config.scorer import (
    DEVICE_ENV,
    MODEL_ENV,
    MixingConfig,
    ScorerConfig,
    ScorerDeploymentSettings,
    TemplateKind,
    expand_checkpoint_path,
    scorer_from_env,
)

__all__ = [
    "BUNDLE_NAME_PATTERN",
    "LOOPBACK_NETWORKS",
    "PROXY_BODY_LIMIT_ENV",
    "PROXY_CALLBACK",
    "PROXY_CALLBACK_ENV",
    "is_loopback_host",
    "DEFAULT_HTTP_HOST",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_PRESET",
    "DEVICE_ENV",
    "MODEL_ENV",
    "REMOTE_ENGINES",
    "AppArgs",
    "ApplicationSpec",
    "AutoscalingSettings",
    "BundleConfig",
    "ConfigError",
    "CrossCallDedupConfig",
    "DeploymentSettings",
    "EncoderConfig",
    "EngineConfig",
    "FewShotExample",
    "HttpOptions",
    "IngressSettings",
    "MixingConfig",
    "PresetName",
    "PromptConfig",
    "RemoteApi",
    "RemoteEngineConfig",
    "RequestLimits",
    "Route",
    "SamplingDefaults",
    "ScorerConfig",
    "ScorerDeploymentSettings",
    "SecuritySettings",
    "ServeConfigFile",
    "StrictModel",
    "TacticFilterConfig",
    "TemplateKind",
    "TransformersEngineConfig",
    "WholeProofConfig",
    "expand_checkpoint_path",
    "format_validation_error",
    "load_serve_config",
    "parse_app_args",
    "resolve_local_path",
    "scorer_from_env",
    "with_env_scorer",
]
