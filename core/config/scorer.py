"""Typed configuration of the LeanProgress scorer and its Ray Serve deployment.

No Ray, no torch: AppArgs (core/config/app.py) holds these models, so a scorer in serve_config.yaml is
validated like everything else. `LEANPROGRESS_MODEL` / `LEANPROGRESS_DEVICE` (the
LeanDojo-v2 variables) become a `ScorerConfig` through `scorer_from_env` when the config file has none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.config.base import StrictModel
from core.config.deployment import DeploymentSettings

MODEL_ENV = "LEANPROGRESS_MODEL"
DEVICE_ENV = "LEANPROGRESS_DEVICE"
ENV_SCORER_NAME = "leanprogress"
SCORER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# "leandojo": LeanDojo-v2's text over (goal, prefix, tactic). "leanprogress": the paper's layout with the
# candidate as the proof step. "leanprogress_state": the paper's state-only layout (every candidate of
# one state gets the same prediction: a progress read-out; ranking then keeps the generator's order).
TemplateKind = Literal["leandojo", "leanprogress", "leanprogress_state"]
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+|mps)$"


def expand_checkpoint_path(value: str) -> str:
    """`~` is expanded (as LeanDojo-v2 does); `./x`, `../x`, `~` and any relative path that exists here
    (`.models/ckpt`) become absolute, because replicas run in other processes and maybe another cwd.
    Anything else (an absolute folder, a hub id) is kept."""
    path = Path(value).expanduser()
    if value.startswith(("./", "../", "~")) or (not path.is_absolute() and path.exists()):
        return str(path.resolve())
    return value


class MixingConfig(StrictModel):
    """The LeanProgress paper's search score: α·N + (1−α)·P (see logic/progress_ranking.py for the normalisation)."""

    alpha: float = Field(ge=0.0, le=1.0, description="Weight of the progress term; the paper's best was 0.2.")
    max_steps: float = Field(
        default=20.0, gt=0, description="N_max of N = -2·steps/N_max: the longest proof the scorer should expect."
    )


class ScorerDeploymentSettings(DeploymentSettings):
    """The bundles' deployment settings (the same autoscaling rule: target = half a batch), with the defaults of
    a small model: a quarter of a CPU here. Its drain follows from the request deadline, like every replica's."""

    num_cpus: float = Field(default=0.25, ge=0, description="CPUs per replica (fractions fit small machines).")
    num_gpus: float = Field(default=0.0, ge=0, description="GPU fraction per replica (e.g. 0.1 beside a bundle).")
    # Scoring calls are cheap next to generation; Serve's default of 5 starved the batcher (STACK-NOTES).
    max_ongoing_requests: int = Field(default=64, ge=1, description="Concurrent scoring calls per replica.")
    max_queued_requests: int | None = Field(
        default=None, ge=1, description="Scoring calls waiting per caller (503 beyond); None: max_ongoing_requests."
    )


class ScorerConfig(StrictModel):
    """A LeanProgress scorer: a sequence-classification checkpoint with one regression output."""

    name: str = Field(default=ENV_SCORER_NAME, pattern=SCORER_NAME_PATTERN, description="Bundles choose it by this.")
    checkpoint: str = Field(description="Checkpoint folder (`~` expanded) or hub id, as LeanDojo-v2 saves it.")
    device: str = Field(default="auto", pattern=DEVICE_PATTERN, description="auto (CUDA if present), cpu, cuda, cuda:1.")
    template: TemplateKind = Field(default="leandojo", description="Text the checkpoint was trained on.")
    max_input_tokens: int = Field(default=512, ge=8, description="Tokens kept per text (longer ones are truncated).")
    max_batch_size: int = Field(default=32, ge=1, description="Candidates sharing one forward pass (@serve.batch).")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0, description="Wait for a batch to fill.")
    mixing: MixingConfig | None = Field(default=None, description="Paper's progress/log-prob mix; None: score = reward.")
    deployment: ScorerDeploymentSettings = Field(default_factory=ScorerDeploymentSettings, description="See below.")

    @field_validator("checkpoint")
    @classmethod
    def _absolute_local_path(cls, value: str) -> str:
        return expand_checkpoint_path(value)

    @property
    def max_ongoing_requests(self) -> int:
        return self.deployment.max_ongoing_requests

    @property
    def max_queued_requests(self) -> int:
        return self.deployment.max_queued_requests or self.max_ongoing_requests

    @property
    def deployment_name(self) -> str:
        return "scorer-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.name)


def scorer_from_env(environ: Mapping[str, str]) -> ScorerConfig | None:
    """The scorer LeanDojo-v2's variables ask for, or None when LEANPROGRESS_MODEL is unset or blank."""
    checkpoint = environ.get(MODEL_ENV, "").strip()
    if not checkpoint:
        return None
    device = environ.get(DEVICE_ENV, "").strip() or "auto"
    return ScorerConfig(name=ENV_SCORER_NAME, checkpoint=checkpoint, device=device)
