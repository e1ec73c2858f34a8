"""Ray Serve settings of one deployment (resources, autoscaling, health checks), typed.

Shared by the bundles (core/config/bundle.py) and the LeanProgress scorer (core/config/scorer.py);
deployments/options.py turns them into Serve options.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config.base import StrictModel


class AutoscalingSettings(StrictModel):
    """Ray Serve autoscaling of one deployment: replicas follow the ongoing requests.

    Defaults scale up fast (a queue builds in seconds) and down slowly (a new GPU replica takes minutes to
    load its model, so releasing one on a short lull costs more than it saves). The bundles and the
    scorer share this model; deployments/options.py turns it into Serve's `autoscaling_config`.
    """

    min_replicas: int = Field(default=1, ge=0, description="0 lets an idle bundle release its GPU.")
    initial_replicas: int | None = Field(default=None, ge=0, description="Replicas at deploy time; None: min_replicas.")
    max_replicas: int = Field(default=1, ge=1, description="Upper bound of replicas.")
    target_ongoing_requests: float | None = Field(
        default=None, gt=0, description="Ongoing requests per replica to aim for; None: half the batch size."
    )
    upscale_delay_s: float = Field(default=5.0, ge=0, description="Sustained load before adding a replica.")
    downscale_delay_s: float = Field(default=300.0, ge=0, description="Sustained idleness before removing one.")
    # Only with min_replicas 0: a cold start from zero loads the model again, so the last replica stays longer.
    downscale_to_zero_delay_s: float = Field(
        default=900.0, ge=0, description="Idleness before the last replica goes (min_replicas: 0)."
    )
    # Serve's replicas push their queue lengths every 10 s: the window must be longer than that.
    look_back_period_s: float = Field(default=15.0, gt=10.0, description="Window the load is averaged over.")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self


RequestRouterName = Literal["power_of_two", "prefix_affinity"]


class AdmissionSettings(StrictModel):
    """How much work the ingress admits for one bundle, counted in sequences (requests x n), per priority class.

    A request is admitted when the work ahead of it (its class and those above) plus its own can finish within
    what is left of its deadline at the bundle's measured service rate; else 503 with a Retry-After from the
    same estimate. The hard bound below holds whatever the estimate says (deployments/service.py, logic/admission.py).
    """

    queued_batches: int = Field(
        default=32, ge=1,
        description="Waiting work per replica and priority class, in engine batches (max_num_seqs sequences each).",
    )
    rate_window_s: float = Field(
        default=1.0, gt=0, description="Shortest saturated interval one service-rate sample is measured over."
    )
    rate_smoothing: float = Field(
        default=0.3, gt=0, le=1, description="Weight of the newest sample in the service rate's moving average."
    )


class AffinitySettings(StrictModel):
    """The prefix_affinity router: a key's requests go to its rendezvous-hashed replica until that one is full."""

    # A replica past its cap gets no more affinity traffic: the request goes to the least-loaded replica.
    load_cap: int | None = Field(
        default=None, ge=1, description="Sequences in flight on a replica before its keys spill; None: max_num_seqs."
    )


class DeploymentSettings(StrictModel):
    """Ray Serve settings of one deployment."""

    num_cpus: float = Field(default=0.5, ge=0, description="CPUs per replica (fractions fit small machines).")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs per replica; 0 runs vLLM's CPU build.")
    # Serve's default of 5 starves a batching engine.
    max_ongoing_requests: int | None = Field(
        default=None, ge=1, description="Concurrent requests per replica; None: the engine's max_num_seqs."
    )
    # Bounded, so a flood gets a quick 503 instead of a latency that grows without bound.
    max_queued_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests waiting per caller for a free replica slot (503 beyond); None: max_num_seqs.",
    )
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings, description="See below.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources per replica (node labels such as a GPU type)."
    )
    placement_strategy: Literal["STRICT_PACK", "PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        default="STRICT_PACK", description="Placement of a tensor-parallel replica's GPUs (one node by default)."
    )
    # A busy engine can miss a short health check: keep the timeout generous.
    health_check_period_s: float = Field(default=10.0, gt=0, description="Seconds between engine health checks.")
    health_check_timeout_s: float = Field(default=30.0, gt=0, description="A check slower than this fails.")
    # A redeploy stops old replicas; draining shorter than the request deadline would cut long requests off.
    graceful_shutdown_timeout_s: float | None = Field(
        default=None, ge=0, description="Drain time before a replica stops; None: the request deadline + 10 s."
    )
    env_vars: dict[str, str] = Field(default_factory=dict, description="Environment of the replica process.")


class BundleDeploymentSettings(DeploymentSettings):
    """A bundle's deployment: the shared settings, plus how callers route to its replicas and admit work."""

    # Serve's queue in front of a replica is first come, first served; the engine's is ordered by priority.
    # So by default a replica takes all the work admission may send it, and an interactive request overtakes
    # queued batch work inside the engine.
    max_ongoing_requests: int | None = Field(
        default=None, ge=1,
        description="Concurrent requests per replica; None: all that admission may send it (both classes' bounds).",
    )
    max_queued_requests: int | None = Field(
        default=None, ge=1,
        description="Requests waiting per caller to be routed (503 beyond); None: as many as max_ongoing_requests.",
    )

    request_router: RequestRouterName = Field(
        default="power_of_two",
        description="How a caller picks a replica: Serve's power-of-two, or prefix_affinity (same key, same "
        "replica, so vLLM's prefix cache hits; bundles only).",
    )
    affinity: AffinitySettings = Field(default_factory=AffinitySettings, description="See below.")
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings, description="See below.")
