"""Who may call: pure logic, unit-tested without Ray. Closed by default.

- No API keys (the default, `make serve`): only loopback clients are served; LeanCopilot on the same machine
  sends no header. `security.allow_unauthenticated: true` serves every client (behind an authenticating gateway).
- API keys: every request but the open health paths carries `Authorization: Bearer <key>` (or
  `x-api-key: <key>`, as LLMLean sends it), loopback's too: a
  same-host forwarder (an SSH tunnel, socat, a sidecar) makes any stranger look like loopback. `allow_networks`
  then narrows who may call at all; it never replaces the key.

Keys come from the environment variable or file that `args.security` names, never from the config itself. The
client address is the one Serve's proxy hands the ingress (`request.client`); LeanServe never reads
X-Forwarded-For itself. The HTTP app applies the gate as its own middleware (deployments/http_app.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.config import LOOPBACK_NETWORKS, ConfigError, SecuritySettings
from core.errors import UnauthorizedError

# Load balancers, KubeRay and LeanServe's own launcher poll these: they say nothing but which models answer,
# and they answer from a cached probe (deployments/health.py), so a flood costs nothing.
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


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


def in_networks(host: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a unix socket path or a test client's name
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _parse_networks(networks: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in networks]


class LoopbackOnlyGate:
    """No keys configured: only clients on this machine are served."""

    _LOOPBACK = _parse_networks(LOOPBACK_NETWORKS)

    def check(self, path: str, client_host: str | None, token: str | None) -> None:  # noqa: ARG002
        if path in OPEN_PATHS or in_networks(client_host, self._LOOPBACK):
            return
        raise UnauthorizedError(
            "This server has no API keys and serves clients on its own machine only; an operator can configure "
            "keys (security.api_keys_env)."
        )


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a client presented: its bearer token, else its `x-api-key`. Empty values count as none (LLMLean
    sends `Bearer ` and an empty `x-api-key` when the user set no key)."""
    token = bearer_token(authorization)
    if token is not None:
        return token
    return x_api_key.strip() or None if x_api_key else None


class ApiKeyGate:
    """Keys configured: every request needs one (loopback too), from an allowed network when a list is set."""

    def __init__(self, keys: Iterable[str], allow_networks: Iterable[str] = ()):
        self._keys = [key.encode("utf-8") for key in keys]
        if not self._keys:
            raise ValueError("an ApiKeyGate needs at least one key")
        self._networks = _parse_networks(allow_networks)

    @classmethod
    def from_settings(
        cls, settings: SecuritySettings, environ: Mapping[str, str] = os.environ
    ) -> ApiKeyGate | LoopbackOnlyGate | None:
        """The gate `settings` ask for; None (every client let in) only with `allow_unauthenticated`."""
        if settings.keys_required:
            return cls(load_api_keys(settings, environ), settings.allow_networks)
        if settings.allow_unauthenticated:
            return None
        return LoopbackOnlyGate()

    def client_allowed(self, host: str | None) -> bool:
        """Whether the client's network may call at all (every network when no list is set)."""
        return not self._networks or in_networks(host, self._networks)

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
        if path in OPEN_PATHS:
            return
        if token is None:
            raise UnauthorizedError("An API key is required: send `Authorization: Bearer <key>`.")
        # Outside the allow-list a good key gets the answer of a bad one: a stranger learns nothing of the list.
        if not self.key_valid(token) or not self.client_allowed(client_host):
            raise UnauthorizedError("The API key is not valid.")


# What the HTTP app's auth middleware calls `check` on (None: every client let in).
Gate = ApiKeyGate | LoopbackOnlyGate
