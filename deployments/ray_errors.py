"""What Ray raises on the way back from a replica, as LeanServe's own errors (one mapping, used by every hop)."""

from __future__ import annotations

import asyncio

from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException

from core.errors import GenerationTimeoutError, LeanServeError, ServiceUnavailableError, find_leanserve_error


def as_leanserve_error(exc: BaseException) -> LeanServeError:
    """Map anything a route raised (Ray wraps replica errors) to one LeanServe error."""
    found = find_leanserve_error(exc)
    if found is not None:
        return found
    if isinstance(exc, (BackPressureError, DeploymentUnavailableError)):
        return ServiceUnavailableError("The model is overloaded or not ready; retry shortly.")
    if isinstance(exc, asyncio.TimeoutError):
        return GenerationTimeoutError("Generation timed out.")
    if isinstance(exc, (RayServeException, RayActorError, ActorUnavailableError)):
        return ServiceUnavailableError("A model replica was lost; retry shortly.")
    return LeanServeError("Internal server error.")


def describe_failure(exc: BaseException) -> str:
    """A short, safe reason for /health: ours verbatim, anything else by its type (Ray adds long tracebacks)."""
    found = find_leanserve_error(exc)
    if found is not None:
        return found.detail
    cause = getattr(exc, "cause", None) or exc
    return f"unavailable ({type(cause).__name__})"


def is_overload(exc: BaseException) -> bool:
    """A call refused by a full queue or not answered in time: the replica is busy, not broken (/health)."""
    cause = getattr(exc, "cause", None) or exc
    return isinstance(cause, (BackPressureError, asyncio.TimeoutError, TimeoutError))
