"""The LeanCopilot / LeanDojo-v2 routes: each translates its wire model (protocol.py) to a service call and back."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from core.errors import LeanServeError
from core.request_context import RequestContext
from deployments.leancopilot.protocol import (
    BatchResult,
    Candidate,
    EncodeRequest,
    EncodeResponse,
    GenerateBatchRequest,
    GenerateBatchResponse,
    GenerateRequest,
    GenerateResponse,
    ItemError,
    ModelInfo,
    ModelsResponse,
    ProofCandidate,
    ProveRequest,
    ProveResponse,
)
from deployments.route_dependencies import request_context, tactic_service
from deployments.service import ProofQuery, TacticQuery, TacticService

router = APIRouter()


@router.post("/generate", response_model=GenerateResponse)
async def generate(
    body: GenerateRequest, service: TacticService = Depends(tactic_service), ctx: RequestContext = Depends(request_context)
) -> GenerateResponse:
    query = TacticQuery(body.name, body.input, body.prefix or "", body.use_reward, body.n, body.max_tokens)
    ranked = await service.suggest_tactics(query, ctx)
    return GenerateResponse(outputs=[Candidate.model_validate(c, from_attributes=True) for c in ranked])


@router.post("/generate_batch", response_model=GenerateBatchResponse)
async def generate_batch(
    body: GenerateBatchRequest, service: TacticService = Depends(tactic_service), ctx: RequestContext = Depends(request_context)
) -> JSONResponse:
    """One /generate answer per item, in order; an item's own error (413, 422, 503, 504...) stays in its slot.
    Each result holds `outputs` or `error`, never both (so the other key is left out, not null)."""
    queries = [
        TacticQuery(body.name, item.input, item.prefix or "", body.use_reward, body.n, body.max_tokens, body.session_id)
        for item in body.items
    ]
    results = await service.suggest_tactics_batch(queries, ctx)
    return JSONResponse(
        {
            "results": [
                BatchResult(error=ItemError(status=r.status_code, detail=r.detail)).model_dump(exclude_none=True)
                if isinstance(r, LeanServeError)
                else {"outputs": [Candidate.model_validate(c, from_attributes=True).model_dump() for c in r]}
                for r in results
            ]
        }
    )


@router.post("/prove", response_model=ProveResponse)
async def prove(
    body: ProveRequest, service: TacticService = Depends(tactic_service), ctx: RequestContext = Depends(request_context)
) -> ProveResponse:
    """Complete proof candidates of `theorem` from a whole-proof bundle, best first (shaped like /generate)."""
    query = ProofQuery(body.name, body.theorem, body.problem or "", body.n, body.max_tokens)
    proofs = await service.prove(query, ctx)
    return ProveResponse(outputs=[ProofCandidate(output=p.output, score=p.score) for p in proofs])


@router.post("/encode", response_model=EncodeResponse)
async def encode(
    body: EncodeRequest, service: TacticService = Depends(tactic_service), ctx: RequestContext = Depends(request_context)
) -> EncodeResponse:
    return EncodeResponse(outputs=await service.encode(body.name, body.input, ctx))


@router.get("/models", response_model=ModelsResponse)
async def models(service: TacticService = Depends(tactic_service)) -> ModelsResponse:
    return ModelsResponse(
        models=[ModelInfo(name=b.name, aliases=list(b.aliases), routes=list(b.routes)) for b in service.models()]
    )
