"""Opt-in API keys with an allow-list of client networks: pure logic, unit-tested without Ray.

Keys come from the environment variable or file that `args.security` names, never from the config itself.
A request passes when its client address is in an allowed network (LeanCopilot sends no header; loopback by
default) or when it carries `Authorization: Bearer <key>` with a configured key. The client address is the
one Serve's proxy hands the ingress (`request.client`); LeanServe never reads X-Forwarded-For itself. The
HTTP app applies the gate as its own middleware (deployments/http_app.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.config import ConfigError, SecuritySettings
from core.errors import UnauthorizedError

# Load balancers and LeanServe's own launcher poll this: it says nothing but which models answer.
OPEN_PATHS = frozenset({"/health"})


def parse_keys(text: str) -> list[str]:
    """Keys one per line or comma-separated; blank entries and `#` comment lines are skipped."""
    keys = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        keys += [part.strip() for part in line.split(",") if part.strip()]
    return keys


def load_api_keys(settings: SecuritySettings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The configured keys; a named source that is missing or empty is an error, never an open door."""
    keys: list[str] = []
    if settings.api_keys_env is not None:
        if not environ.get(settings.api_keys_env, "").strip():
            raise ConfigError(f"security.api_keys_env: environment variable {settings.api_keys_env} is unset or empty")
        keys += parse_keys(environ[settings.api_keys_env])
    if settings.api_keys_file is not None:
        try:
            keys += parse_keys(Path(settings.api_keys_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"security.api_keys_file: cannot read {settings.api_keys_file}: {exc}") from None
    if not keys:
        raise ConfigError("security: API keys are required but the configured sources hold none")
    return keys


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a client presented: its bearer token, else its `x-api-key`. Empty values count as none (LLMLean
    sends `Bearer ` and an empty `x-api-key` when the user set no key)."""
    token = bearer_token(authorization)
    if token is not None:
        return token
    return x_api_key.strip() or None if x_api_key else None


class ApiKeyGate:
    def __init__(self, keys: Iterable[str], allow_networks: Iterable[str]):
        self._keys = [key.encode("utf-8") for key in keys]
        if not self._keys:
            raise ValueError("an ApiKeyGate needs at least one key")
        self._networks = [ipaddress.ip_network(n, strict=False) for n in allow_networks]

    @classmethod
    def from_settings(cls, settings: SecuritySettings, environ: Mapping[str, str] = os.environ) -> ApiKeyGate | None:
        """None when no keys are configured: then every client is let in, as before keys existed."""
        if not settings.keys_required:
            return None
        return cls(load_api_keys(settings, environ), settings.allow_networks)

    def client_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a unix socket path or a test client's name
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def key_valid(self, token: str | None) -> bool:
        if token is None:
            return False
        candidate = token.encode("utf-8")
        # Compare with every key, without stopping at a match: the time taken says nothing about which key
        # (or how much of one) matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched

    def check(self, path: str, client_host: str | None, token: str | None) -> None:
        """Raise UnauthorizedError unless the request may pass; `token` is the key it presented (presented_key)."""
        if path in OPEN_PATHS or self.client_allowed(client_host):
            return
        if token is None:
            raise UnauthorizedError("An API key is required: send `Authorization: Bearer <key>`.")
        if not self.key_valid(token):
            raise UnauthorizedError("The API key is not valid.")
