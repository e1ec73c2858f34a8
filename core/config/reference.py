"""Render the configuration reference (docs/configuration.md) from the pydantic models, so docs and defaults agree.

Usage: python -m core.config.reference [--write docs/configuration.md]   (prints Markdown, or updates the file)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from core.config.app import (
    AppArgs,
    BatchCallerLimits,
    CallerLimits,
    HttpOptions,
    IngressSettings,
    PerClassLimits,
    RequestLimits,
    SecuritySettings,
)
from core.config.bundle import (
    BundleConfig,
    EncoderConfig,
    EngineConfig,
    PromptConfig,
    SamplingDefaults,
    TacticFilterConfig,
    TransformersEngineConfig,
    WholeProofConfig,
)
from core.config.deployment import AdmissionSettings, AffinitySettings, AutoscalingSettings, BundleDeploymentSettings
from core.config.remote import CrossCallDedupConfig, RemoteEngineConfig, RetryBudgetConfig
from core.config.scorer import MixingConfig, ScorerConfig, ScorerDeploymentSettings

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("http_options", HttpOptions),
    ("args", AppArgs),
    ("args.ingress", IngressSettings),
    ("args.limits", RequestLimits),
    ("args.limits.per_class", PerClassLimits),
    ("args.limits.per_class.interactive", CallerLimits),
    ("args.limits.per_class.batch", BatchCallerLimits),
    ("args.security", SecuritySettings),
    ("args.models[]", BundleConfig),
    ("args.models[].prompt", PromptConfig),
    ("args.models[].sampling", SamplingDefaults),
    ("args.models[].tactics", TacticFilterConfig),
    ("args.models[].engine_args", EngineConfig),
    ("args.models[].transformers", TransformersEngineConfig),
    ("args.models[].whole_proof", WholeProofConfig),
    ("args.models[].deployment", BundleDeploymentSettings),
    ("args.models[].deployment.autoscaling", AutoscalingSettings),
    ("args.models[].deployment.affinity", AffinitySettings),
    ("args.models[].deployment.admission", AdmissionSettings),
    ("args.models[].encoder", EncoderConfig),
    ("args.models[].remote", RemoteEngineConfig),
    ("args.models[].remote.retry_budget", RetryBudgetConfig),
    ("args.models[].dedup", CrossCallDedupConfig),
    ("args.scorers[]", ScorerConfig),
    ("args.scorers[].mixing", MixingConfig),
    ("args.scorers[].deployment", ScorerDeploymentSettings),
    ("args.scorers[].deployment.autoscaling", AutoscalingSettings),
]


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        return f"`{field.default!r}`" if field.default is not None else "`None`"
    if field.default_factory is not None:
        value = field.default_factory()
        return f"`{value!r}`" if not isinstance(value, BaseModel) else "(section)"
    return "required"


def _type(field) -> str:
    text = str(field.annotation).replace("typing.", "")
    for prefix in ("<class '", *(f"core.config.{name}." for name in ("app", "bundle", "deployment", "remote", "scorer"))):
        text = text.replace(prefix, "")
    return text.replace("'>", "").replace("|", "\\|")


def render() -> str:
    lines = []
    for path, model in SECTIONS:
        lines += [f"#### `{path}`", "", (model.__doc__ or "").strip().split("\n")[0], ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            lines.append(f"| `{name}` | {_type(field)} | {_default(field)} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def embed(document: str) -> str:
    """`document` with the generated reference between its START and END markers."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(document):
        raise ValueError(f"no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{render()}{END}", document)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        target = Path(sys.argv[2])
        target.write_text(embed(target.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(render(), end="")
