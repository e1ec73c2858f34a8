"""The LeanCopilot / LeanDojo-v2 routes: each translates its wire model (protocol.py) to a service call and back."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from core.request_context import RequestContext
from deployments.leancopilot.protocol import (
    Candidate,
    EncodeRequest,
    EncodeResponse,
    GenerateRequest,
    GenerateResponse,
    ModelInfo,
    ModelsResponse,
    ProofCandidate,
    ProveRequest,
    ProveResponse,
)
from deployments.service import ProofQuery, TacticQuery, TacticService

router = APIRouter()


def get_service(request: Request) -> TacticService:
    return request.app.state.service


def get_context(request: Request) -> RequestContext:
    return request.state.context


@router.post("/generate", response_model=GenerateResponse)
async def generate(
    body: GenerateRequest, service: TacticService = Depends(get_service), ctx: RequestContext = Depends(get_context)
) -> GenerateResponse:
    query = TacticQuery(body.name, body.input, body.prefix or "", body.use_reward, body.n, body.max_tokens)
    ranked = await service.suggest_tactics(query, ctx)
    return GenerateResponse(outputs=[Candidate.model_validate(c, from_attributes=True) for c in ranked])


@router.post("/prove", response_model=ProveResponse)
async def prove(
    body: ProveRequest, service: TacticService = Depends(get_service), ctx: RequestContext = Depends(get_context)
) -> ProveResponse:
    """Complete proof candidates of `theorem` from a whole-proof bundle, best first (shaped like /generate)."""
    query = ProofQuery(body.name, body.theorem, body.problem or "", body.n, body.max_tokens)
    proofs = await service.prove(query, ctx)
    return ProveResponse(outputs=[ProofCandidate(output=p.output, score=p.score) for p in proofs])


@router.post("/encode", response_model=EncodeResponse)
async def encode(
    body: EncodeRequest, service: TacticService = Depends(get_service), ctx: RequestContext = Depends(get_context)
) -> EncodeResponse:
    return EncodeResponse(outputs=await service.encode(body.name, body.input, ctx))


@router.get("/models", response_model=ModelsResponse)
async def models(service: TacticService = Depends(get_service)) -> ModelsResponse:
    return ModelsResponse(
        models=[ModelInfo(name=b.name, aliases=list(b.aliases), routes=list(b.routes)) for b in service.models()]
    )
