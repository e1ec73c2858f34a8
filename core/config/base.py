"""What every config model shares: strictness (a typo fails naming the field), local paths, readable errors."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Unknown keys are errors and values are frozen: a config file means exactly what it says."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file that cannot be served; the message is meant for a person."""


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid LeanServe configuration ({exc.error_count()} error(s))"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "<root>"
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)


def resolve_local_path(value: str | None) -> str | None:
    """`./x` and `../x` are local folders relative to where the app is built; replicas may run elsewhere
    (another cwd, another process), so they get the absolute path. Hub ids pass through unchanged."""
    if value is not None and value.startswith(("./", "../", "~")):
        return str(Path(value).expanduser().resolve())
    return value
