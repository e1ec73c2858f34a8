"""What the front doors' routes take from the request, as FastAPI dependencies: the service and the context.

Coroutines on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per dependency per
request for an attribute lookup.
"""

from __future__ import annotations

from fastapi import Request

from core.request_context import RequestContext
from deployments.completion_service import CompletionService
from deployments.service import TacticService


async def tactic_service(request: Request) -> TacticService:
    return request.app.state.service


async def completion_service(request: Request) -> CompletionService:
    return request.app.state.completions


async def request_context(request: Request) -> RequestContext:
    """Made by the ingress's request middleware (deployments/request_middleware.py) before routing."""
    return request.state.context
