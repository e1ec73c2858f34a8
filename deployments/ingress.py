"""The ingress deployment: one HTTP front (deployments/http_app.py) over the service that composes the bundles.

Serve builds the ASGI app in each replica after the constructor (`__serve_build_asgi_app__`), so the app
closes over this replica's service and API-key gate: no module globals, and nothing pickled with the class.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve

from core.config import AppArgs
from core.log_setup import configure_logging
from deployments.http_app import build_http_app
from deployments.service import TacticService
from logic.auth import ApiKeyGate


@serve.ingress()
class LeanServeIngress:
    def __init__(
        self, args: AppArgs, bundles: dict[str, Any], scorers: dict[str, Any] | None = None, dedup_store: Any = None
    ):
        configure_logging("ingress")
        # Fails the replica's start (Serve reports it) when the configured key source is missing or empty;
        # without keys, only loopback clients pass unless the config says allow_unauthenticated.
        self._gate = ApiKeyGate.from_settings(args.security)
        # Serve replaces the bound deployments in `bundles`, `scorers` and `dedup_store` with their handles.
        self._service = TacticService(args, bundles, scorers, dedup_store)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_http_app(self._service, self._gate)
