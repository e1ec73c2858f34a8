"""The health routes every front door shares, for load balancers, KubeRay and the launcher.

- `/health/live`: 200 whenever this ingress replica answers; it asks nothing of any model. A pod (or a load
  balancer) is ready to take traffic when its proxy reaches an ingress.
- `/health` and `/health/ready`: the models' readiness (deployments/health.py): 200 "ok", 200 "degraded"
  (busy, or a remote bundle without its key), 503 "unavailable" when a model's probe failed.
Both are open (logic/auth.py OPEN_PATHS): they name the models and their state, nothing else, and answer from
a cached probe, so a flood costs the models nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.errors import ServiceUnavailableError
from deployments.service import TacticService

router = APIRouter()


@router.get("/health/live")
async def live() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/health")
@router.get("/health/ready")
async def health(request: Request) -> JSONResponse:
    """200 while every model can be reached (`status` "ok" or "degraded"); 503 when one's probe failed."""
    service: TacticService = request.app.state.service
    report = await service.health()
    extra = {"scorers": report.scorers} if report.scorers else {}
    if report.healthy:
        return JSONResponse({"status": report.status, "models": report.models, **extra})
    return JSONResponse(
        status_code=503,
        content={"detail": "Some models cannot answer.", "status": report.status, "models": report.models, **extra},
        headers={"Retry-After": str(ServiceUnavailableError.retry_after_s)},
    )
