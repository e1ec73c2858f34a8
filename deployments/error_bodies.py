"""Each front door's error body, chosen by path: one owner for the HTTP app's errors and for the edge's 413 in
Serve's proxy (deployments/edge.py), which runs before any app and must not import one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import LeanServeError
from deployments.ollama import protocol as ollama_protocol
from deployments.openai import protocol as openai_protocol

# By path prefix; the contract's `{"detail": ...}` elsewhere.
ERROR_BODIES: list[tuple[str, Callable[[LeanServeError], dict[str, Any]]]] = [
    ("/v1/", openai_protocol.error_body),
    ("/api/", ollama_protocol.error_body),
]


def error_body(error: LeanServeError, path: str) -> dict[str, Any]:
    return next((shape(error) for prefix, shape in ERROR_BODIES if path.startswith(prefix)), {"detail": error.detail})
