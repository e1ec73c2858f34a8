"""Sync and async LeanCopilot-compatible clients (httpx): the bytes LeanCopilot sends, its view of the answer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx

from leanserve_client.wire import LEANCOPILOT_HEADERS, generate_payload, leancopilot_body, parse_candidates

DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class GenerateResult:
    """One /generate call as a load test sees it: never raises for a bad status, a bad body or a lost connection."""

    status: int  # HTTP status; 0 when no response came back (connection error, client timeout)
    latency_s: float
    candidates: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None  # the server's `detail`, a parse failure, or the transport error

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def _result(status: int, content: bytes, latency_s: float) -> GenerateResult:
    try:
        body = json.loads(content)
    except ValueError:
        return GenerateResult(status, latency_s, error="Failed to parse response")
    if status != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        return GenerateResult(status, latency_s, error=str(detail or "error without detail"))
    try:
        return GenerateResult(status, latency_s, candidates=parse_candidates(body))
    except ValueError as exc:
        return GenerateResult(status, latency_s, error=str(exc))


def _transport_failure(exc: Exception, latency_s: float) -> GenerateResult:
    return GenerateResult(0, latency_s, error=f"{type(exc).__name__}: {exc}")


class LeanServeClient:
    """Blocking client: `LeanServeClient("http://127.0.0.1:23337").generate(state, "default")`."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def generate(self, state: str, name: str, prefix: str = "", **extra) -> GenerateResult:
        body = leancopilot_body(generate_payload(state, name, prefix, **extra))
        started = time.perf_counter()
        try:
            response = self._http.post("/generate", content=body, headers=LEANCOPILOT_HEADERS)
        except httpx.HTTPError as exc:
            return _transport_failure(exc, time.perf_counter() - started)
        return _result(response.status_code, response.content, time.perf_counter() - started)

    def encode(self, text: str, name: str) -> list[float]:
        body = leancopilot_body({"input": text, "name": name})
        response = self._http.post("/encode", content=body, headers=LEANCOPILOT_HEADERS)
        response.raise_for_status()
        return [float(x) for x in response.json()["outputs"]]

    def health(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LeanServeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncLeanServeClient:
    """Asyncio client; one connection pool shared by all concurrent requests (sized by `max_connections`)."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = 256):
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s, limits=limits)

    async def generate(self, state: str, name: str, prefix: str = "", **extra) -> GenerateResult:
        body = leancopilot_body(generate_payload(state, name, prefix, **extra))
        started = time.perf_counter()
        try:
            response = await self._http.post("/generate", content=body, headers=LEANCOPILOT_HEADERS)
        except httpx.HTTPError as exc:
            return _transport_failure(exc, time.perf_counter() - started)
        return _result(response.status_code, response.content, time.perf_counter() - started)

    async def encode(self, text: str, name: str) -> list[float]:
        body = leancopilot_body({"input": text, "name": name})
        response = await self._http.post("/encode", content=body, headers=LEANCOPILOT_HEADERS)
        response.raise_for_status()
        return [float(x) for x in response.json()["outputs"]]

    async def health(self) -> bool:
        try:
            return (await self._http.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLeanServeClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
