"""Who may call: API keys, the loopback-only default and the client allow-list. Pure logic, no Ray."""

import hmac

import pytest

from core.config import AppArgs, ConfigError, SecuritySettings, parse_app_args
from core.errors import UnauthorizedError
from deployments.http_app import error_response
from logic import auth
from logic.auth import ApiKeyGate, LoopbackOnlyGate, bearer_token, load_api_keys, parse_keys, presented_key

KEYS = ["k-alpha-123", "k-beta-456"]
MODELS = [{"name": "m", "model": "x"}]


def gate(allow=()) -> ApiKeyGate:
    return ApiKeyGate(KEYS, allow)


def security(**settings) -> SecuritySettings:
    return parse_app_args({"models": MODELS, "security": settings}).security


def test_without_keys_the_default_serves_loopback_only():
    settings = AppArgs.model_validate({"models": MODELS}).security
    assert not settings.keys_required and settings.allow_networks == [] and not settings.allow_unauthenticated
    closed = ApiKeyGate.from_settings(settings, environ={})
    assert isinstance(closed, LoopbackOnlyGate)
    for host in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]:
        closed.check("/generate", host, None)  # LeanCopilot on this machine sends no header
    for host in ["192.0.2.7", "10.1.2.3", "fd00::2", None, "testclient", "::ffff:192.0.2.7"]:
        with pytest.raises(UnauthorizedError, match="own machine only"):
            closed.check("/generate", host, None)
    closed.check("/health", "192.0.2.7", None)


def test_allow_unauthenticated_opens_the_door_explicitly():
    assert ApiKeyGate.from_settings(security(allow_unauthenticated=True), environ={}) is None


def test_an_allow_list_without_keys_is_a_config_error():
    # It used to be ignored silently: it would guard nothing.
    with pytest.raises(ConfigError) as caught:
        security(allow_networks=["10.0.0.0/8"])
    assert "allow_networks needs API keys" in str(caught.value)
    with pytest.raises(ConfigError, match="contradicts the configured API keys"):
        security(api_keys_env="K", allow_unauthenticated=True)


def test_an_allow_list_refuses_to_start_behind_serves_haproxy_ingress():
    # Measured on the real stack: behind RAY_SERVE_ENABLE_HA_PROXY=1 a client from 192.0.2.2 with a key got 200
    # through allow_networks ["127.0.0.0/8"], since every request arrives from HAProxy's own address.
    keys = {"LEANSERVE_API_KEYS": KEYS[0]}
    listed = security(api_keys_env="LEANSERVE_API_KEYS", allow_networks=["10.0.0.0/8"])
    with pytest.raises(ConfigError) as caught:
        ApiKeyGate.from_settings(listed, environ={**keys, "RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert "security.allow_networks" in str(caught.value) and "RAY_SERVE_ENABLE_HA_PROXY" in str(caught.value)
    # Serve's own proxy hands the ingress the client's address: the list works there.
    assert not ApiKeyGate.from_settings(listed, environ={**keys, "RAY_SERVE_ENABLE_HA_PROXY": "0"}).client_allowed("192.0.2.2")
    # Keys alone, and the keyless loopback rule (HAProxy binds the loopback host the config must name), still run.
    haproxy = {**keys, "RAY_SERVE_ENABLE_HA_PROXY": "1"}
    assert ApiKeyGate.from_settings(security(api_keys_env="LEANSERVE_API_KEYS"), environ=haproxy).key_valid(KEYS[0])
    assert isinstance(ApiKeyGate.from_settings(security(), environ=haproxy), LoopbackOnlyGate)


def test_keys_come_from_the_named_env_var_or_file(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nfile-key-1\n\nfile-key-2\n")
    settings = SecuritySettings(api_keys_env="LEANSERVE_API_KEYS", api_keys_file=str(key_file))
    assert list(load_api_keys(settings, {"LEANSERVE_API_KEYS": "env-a, env-b"})) == ["env-a", "env-b", "file-key-1", "file-key-2"]
    assert parse_keys("a,b\nc") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("settings", "environ", "fragment"),
    [
        ({"api_keys_env": "LEANSERVE_API_KEYS"}, {}, "LEANSERVE_API_KEYS is unset or empty"),
        ({"api_keys_env": "LEANSERVE_API_KEYS"}, {"LEANSERVE_API_KEYS": "  "}, "unset or empty"),
        ({"api_keys_file": "/nonexistent/keys"}, {}, "cannot read /nonexistent/keys"),
    ],
)
def test_a_missing_key_source_fails_instead_of_opening_the_door(settings, environ, fragment):
    with pytest.raises(ConfigError) as caught:
        ApiKeyGate.from_settings(SecuritySettings(**settings), environ=environ)
    assert fragment in str(caught.value)


def test_an_empty_key_file_fails(tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="hold none"):
        load_api_keys(SecuritySettings(api_keys_file=str(empty)), {})


def test_bad_networks_fail_at_config_time():
    with pytest.raises(ConfigError) as caught:
        security(api_keys_env="K", allow_networks=["10.0.0.0/33"])
    assert "security.allow_networks" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None), (None, None)],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "192.0.2.7", "10.1.2.3", "fd00::2", None])
def test_with_keys_every_client_needs_a_valid_key_loopback_too(host):
    # A same-host forwarder (SSH tunnel, socat) makes any stranger look like loopback: loopback is no pass.
    with pytest.raises(UnauthorizedError, match="API key is required"):
        gate().check("/generate", host, None)
    with pytest.raises(UnauthorizedError, match="not valid"):
        gate().check("/generate", host, presented_key("Bearer k-alpha-12", None))
    with pytest.raises(UnauthorizedError, match="not valid"):
        gate().check("/encode", host, presented_key("Bearer k-alpha-1234", None))
    for key in KEYS:
        gate().check("/generate", host, presented_key(f"Bearer {key}", None))


def test_an_allow_list_narrows_who_may_call_and_never_replaces_the_key():
    listed = gate(allow=("10.0.0.0/8",))
    with pytest.raises(UnauthorizedError, match="API key is required"):
        listed.check("/generate", "10.200.0.1", None)
    listed.check("/generate", "10.200.0.1", presented_key("Bearer k-alpha-123", None))
    for outsider in ["192.0.2.7", "127.0.0.1"]:
        with pytest.raises(UnauthorizedError, match="not valid"):  # a good key outside the list: no hint
            listed.check("/generate", outsider, presented_key(None, "k-alpha-123"))


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_health_stays_open(path):
    gate().check(path, "192.0.2.7", None)
    gate(allow=("10.0.0.0/8",)).check(path, "192.0.2.7", None)


def test_every_key_is_compared_in_constant_time(monkeypatch):
    compared = []
    real_compare = hmac.compare_digest

    def spy(a, b):
        compared.append(b)
        return real_compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    # A match on the first key still compares the rest: no early exit that timing could reveal.
    assert gate().key_valid("k-alpha-123")
    assert compared == [k.encode() for k in KEYS]


def test_non_ascii_tokens_are_simply_invalid():
    assert not gate().key_valid("ключ")


def test_401_is_json_with_a_bearer_challenge():
    response = error_response(UnauthorizedError("The API key is not valid."))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b'{"detail":"The API key is not valid."}'


def test_a_key_source_may_tag_keys_with_a_priority_class():
    from logic.auth import parse_key_classes

    assert parse_key_classes("a, search-1 batch\n# x batch\nb interactive") == {
        "a": "interactive", "search-1": "batch", "b": "interactive"
    }
    with pytest.raises(ConfigError, match="class"):
        parse_key_classes("k urgent")
    with pytest.raises(ConfigError, match="more words"):
        parse_key_classes("k batch extra")
    tagged = ApiKeyGate({"a": "interactive", "s": "batch"})
    assert tagged.check("/generate", "10.0.0.1", "s") == "batch"
    assert tagged.check("/generate", "127.0.0.1", "a") == "interactive"
    assert tagged.check("/health", "127.0.0.1", None) is None


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer sk-1", None, "sk-1"),
        ("Bearer sk-1", "other", "sk-1"),  # the bearer token wins
        ("Bearer ", "", None),  # LLMLean without a key: both empty
        ("Bearer ", "sk-2", "sk-2"),
        (None, " sk-3 ", "sk-3"),
        (None, None, None),
    ],
)
def test_presented_key_takes_bearer_then_x_api_key_and_empty_is_none(authorization, x_api_key, expected):
    assert presented_key(authorization, x_api_key) == expected
