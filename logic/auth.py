"""Who may call: pure logic, unit-tested without Ray. Closed by default.

- No API keys (the default, `make serve`): only loopback clients are served; LeanCopilot on the same machine
  sends no header. `security.allow_unauthenticated: true` serves every client (behind an authenticating gateway).
- API keys: every request but the open health paths carries `Authorization: Bearer <key>` (or
  `x-api-key: <key>`, as LLMLean sends it), loopback's too: a
  same-host forwarder (an SSH tunnel, socat, a sidecar) makes any stranger look like loopback. `allow_networks`
  then narrows who may call at all; it never replaces the key.

Keys come from the environment variable or file that `args.security` names, never from the config itself. The
client address is the one Serve's proxy hands the ingress (`request.client`); LeanServe never reads
X-Forwarded-For itself. The HTTP app applies the gate in its request middleware (deployments/request_middleware.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.config import HAPROXY_INGRESS_ENV, LOOPBACK_NETWORKS, ConfigError, SecuritySettings
from core.errors import InvalidRequestError, UnauthorizedError
from core.request_context import PriorityClass
from logic.priority import DEFAULT_CLASS, parse_class

# Load balancers, KubeRay and LeanServe's own launcher poll these: they say nothing but which models answer,
# and they answer from a cached probe (deployments/health.py), so a flood costs nothing.
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


def parse_keys(text: str) -> list[str]:
    """Keys one per line or comma-separated; blank entries and `#` comment lines are skipped. An entry may
    name its key's priority class after it (`<key> batch`); see `parse_key_classes`."""
    return list(parse_key_classes(text))


def parse_key_classes(text: str) -> dict[str, PriorityClass]:
    """Each key with its priority class: `<key>` is interactive, `<key> batch` a search client's."""
    keys: dict[str, PriorityClass] = {}
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for entry in line.split(","):
            words = entry.split()
            if not words:
                continue
            if len(words) > 2:
                raise ConfigError("an API key entry is `<key>` or `<key> <class>`; one has more words")
            try:
                keys[words[0]] = parse_class(words[1], "an API key's class") if len(words) == 2 else DEFAULT_CLASS
            except InvalidRequestError as exc:
                raise ConfigError(exc.detail) from None
    return keys


def load_api_keys(settings: SecuritySettings, environ: Mapping[str, str] = os.environ) -> dict[str, PriorityClass]:
    """The configured keys and their classes; a named source that is missing or empty is an error, never an
    open door."""
    keys: dict[str, PriorityClass] = {}
    if settings.api_keys_env is not None:
        if not environ.get(settings.api_keys_env, "").strip():
            raise ConfigError(f"security.api_keys_env: environment variable {settings.api_keys_env} is unset or empty")
        keys.update(parse_key_classes(environ[settings.api_keys_env]))
    if settings.api_keys_file is not None:
        try:
            keys.update(parse_key_classes(Path(settings.api_keys_file).read_text(encoding="utf-8")))
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


def check_client_addresses_seen(settings: SecuritySettings, environ: Mapping[str, str] = os.environ) -> None:
    """`allow_networks` reads the client's address. Behind Serve's HAProxy ingress (Ray's high-throughput mode)
    every request arrives from HAProxy's own address, with no X-Forwarded-For, so the list would let anyone
    with a key in: refuse the combination rather than serve it open. (Without keys HAProxy binds the loopback
    address the config must name, so the loopback rule still holds.)"""
    if settings.allow_networks and environ.get(HAPROXY_INGRESS_ENV) == "1":
        raise ConfigError(
            f"security.allow_networks cannot be enforced with {HAPROXY_INGRESS_ENV}=1: Serve's HAProxy ingress "
            "forwards every request from its own address, so the ingress never sees the client's. Unset "
            f"{HAPROXY_INGRESS_ENV}, or drop allow_networks and filter networks in front of HAProxy."
        )


class ApiKeyGate:
    """Keys configured: every request needs one (loopback too), from an allowed network when a list is set.
    A key may carry a priority class (`<key> batch` in its source); untagged keys are interactive."""

    def __init__(self, keys: Iterable[str] | Mapping[str, PriorityClass], allow_networks: Iterable[str] = ()):
        classes = keys if isinstance(keys, Mapping) else dict.fromkeys(keys, DEFAULT_CLASS)
        self._keys = [(key.encode("utf-8"), cls) for key, cls in classes.items()]
        if not self._keys:
            raise ValueError("an ApiKeyGate needs at least one key")
        self._networks = _parse_networks(allow_networks)

    @classmethod
    def from_settings(
        cls, settings: SecuritySettings, environ: Mapping[str, str] = os.environ
    ) -> ApiKeyGate | LoopbackOnlyGate | None:
        """The gate `settings` ask for; None (every client let in) only with `allow_unauthenticated`.
        ConfigError where it would need client addresses that Serve's ingress hides (check_client_addresses_seen)."""
        check_client_addresses_seen(settings, environ)
        if settings.keys_required:
            return cls(load_api_keys(settings, environ), settings.allow_networks)
        if settings.allow_unauthenticated:
            return None
        return LoopbackOnlyGate()

    def client_allowed(self, host: str | None) -> bool:
        """Whether the client's network may call at all (every network when no list is set)."""
        return not self._networks or in_networks(host, self._networks)

    def key_class(self, token: str | None) -> PriorityClass | None:
        """The class of the key `token`, or None when it is no configured key."""
        if token is None:
            return None
        candidate = token.encode("utf-8")
        # Compare with every key, without stopping at a match: the time taken says nothing about which key
        # (or how much of one) matched.
        found: PriorityClass | None = None
        for key, cls in self._keys:
            if hmac.compare_digest(candidate, key):
                found = cls
        return found

    def key_valid(self, token: str | None) -> bool:
        return self.key_class(token) is not None

    def check(self, path: str, client_host: str | None, token: str | None) -> PriorityClass | None:
        """Raise UnauthorizedError unless the request may pass; `token` is the key it presented (presented_key).
        Else the class its key grants (None on the open paths)."""
        if path in OPEN_PATHS:
            return None
        if token is None:
            raise UnauthorizedError("An API key is required: send `Authorization: Bearer <key>`.")
        granted = self.key_class(token)
        # Outside the allow-list a good key gets the answer of a bad one: a stranger learns nothing of the list.
        if granted is None or not self.client_allowed(client_host):
            raise UnauthorizedError("The API key is not valid.")
        return granted


# What the HTTP app's auth middleware calls `check` on (None: every client let in).
Gate = ApiKeyGate | LoopbackOnlyGate
