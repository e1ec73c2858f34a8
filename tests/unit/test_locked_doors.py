"""The launcher's doors: loopback by default, a network bind only with keys, no dashboard, Ray's token auth left
on, bounded queues, the proxy's timeout and edge middlewares."""

import json
import os

import pytest
from support import REPO_ROOT

from core.config import BundleConfig, ConfigError, HttpOptions, IngressSettings, ServeConfigFile, load_serve_config
from deployments import check_config, launch
from deployments.options import bundle_spec, deployment_options


def test_local_defaults_bind_loopback_only():
    assert HttpOptions().host == "127.0.0.1"
    assert load_serve_config(REPO_ROOT / "configs/local.yaml").http_options.host == "127.0.0.1"


class _Stop(Exception):
    pass


def test_launcher_starts_ray_without_dashboard_and_with_token_auth(monkeypatch):
    import ray
    from ray import serve

    seen = {}
    for name in ("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "LEANSERVE_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)

    def fake_init(*args, **kwargs):
        seen["init"] = kwargs
        seen["proxy_env"] = (
            os.environ.get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"), os.environ.get("LEANSERVE_MAX_BODY_BYTES")
        )
        # Whatever the launcher set up for Ray is in place by now: token auth must not be switched off.
        seen["auth_mode"] = os.environ.get("RAY_AUTH_MODE")
        seen["dashboard_host"] = os.environ.get("RAY_DASHBOARD_HOST")

    def fake_start(*args, **kwargs):
        seen["http_options"] = kwargs["http_options"]
        raise _Stop  # nothing else needs to run

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(serve, "start", fake_start)
    monkeypatch.setattr(launch, "install_stop_handlers", lambda: None)
    with pytest.raises(_Stop):
        launch.serve_config(load_serve_config(REPO_ROOT / "configs/local.yaml"))
    assert seen["init"]["include_dashboard"] is False
    assert seen["auth_mode"] is None and seen["dashboard_host"] is None
    assert "RAY_AUTH_MODE" not in (seen["init"].get("runtime_env") or {}).get("env_vars", {})
    assert seen["http_options"]["host"] == "127.0.0.1"
    # The proxy times out trickling uploads, after the ingress's own deadline (300 s) has had its say.
    assert seen["http_options"]["request_timeout_s"] == 305
    # The proxy (a process of the cluster ray.init starts) inherits LeanServe's edge middlewares.
    assert seen["proxy_env"] == ("deployments.edge:proxy_middlewares", "1048576")


def test_the_proxy_timeout_defaults_to_the_ingress_deadline_plus_a_margin(tmp_path):
    config = write_config(tmp_path, "127.0.0.1", {}, http_extra="")
    assert config.http_options.request_timeout_s is None
    assert config.serve_http_options()["request_timeout_s"] == 300 + 5
    with pytest.raises(ConfigError, match="request_timeout_s .* is shorter than an ingress.request_timeout_s"):
        write_config(tmp_path, "127.0.0.1", {}, http_extra="  request_timeout_s: 60\n")
    for path in ["serve_config.yaml", "configs/local.yaml"]:
        shipped = load_serve_config(REPO_ROOT / path)
        assert shipped.http_options.request_timeout_s > shipped.longest_request_timeout_s, path


def test_the_ingress_queue_is_bounded():
    from deployments.options import ingress_options

    assert ingress_options(IngressSettings())["max_queued_requests"] == IngressSettings().max_queued_requests == 256
    assert ingress_options(IngressSettings(max_queued_requests=9))["max_queued_requests"] == 9


def write_config(tmp_path, host: str, security: dict, http_extra: str = "") -> ServeConfigFile:
    path = tmp_path / "serve.yaml"
    path.write_text(
        f"http_options:\n  host: {json.dumps(host)}\n{http_extra}applications:\n  - import_path: deployments.app:build_app\n"
        f"    args:\n      security: {json.dumps(security)}\n      models: [{{name: m, model: x}}]\n"
    )
    return load_serve_config(path)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "leanserve.example.org"])
def test_a_network_bind_without_keys_refuses_to_start(tmp_path, host):
    with pytest.raises(ConfigError) as caught:
        write_config(tmp_path, host, {})
    assert "security.allow_unauthenticated" in str(caught.value) and "api_keys_env" in str(caught.value)
    # The same check as `make serve` and `python -m deployments.check_config` make.
    assert check_config.main([str(tmp_path / "serve.yaml")]) == 2
    assert launch.main([str(tmp_path / "serve.yaml")]) == 2


@pytest.mark.parametrize(
    ("host", "security"),
    [
        ("0.0.0.0", {"api_keys_env": "LEANSERVE_API_KEYS"}),
        ("0.0.0.0", {"allow_unauthenticated": True}),
        ("127.0.0.1", {}),
        ("::1", {}),
        ("localhost", {}),
    ],
)
def test_keys_an_explicit_opt_out_or_loopback_may_start(tmp_path, host, security):
    assert write_config(tmp_path, host, security).http_options.host == host
    who = check_config.describe(str(tmp_path / "serve.yaml"))[2]
    expected = {"api_keys_env": "API keys from LEANSERVE_API_KEYS", "allow_unauthenticated": "no API keys: every client"}
    assert who.endswith(next((v for k, v in expected.items() if k in security), "no API keys: loopback clients only"))


def test_check_config_refuses_an_allow_list_behind_serves_haproxy_ingress(tmp_path, monkeypatch, capsys):
    write_config(tmp_path, "0.0.0.0", {"api_keys_env": "LEANSERVE_API_KEYS", "allow_networks": ["10.0.0.0/8"]})
    assert check_config.main([str(tmp_path / "serve.yaml")]) == 0
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    assert check_config.main([str(tmp_path / "serve.yaml")]) == 2
    assert "security.allow_networks cannot be enforced with RAY_SERVE_ENABLE_HA_PROXY=1" in capsys.readouterr().err
    # `make serve` refuses it before Ray starts, rather than waiting on an ingress that cannot start.
    monkeypatch.setattr(launch, "serve_config", lambda config: pytest.fail("the launcher started Ray"))
    assert launch.main([str(tmp_path / "serve.yaml")]) == 2
    assert "security.allow_networks cannot be enforced" in capsys.readouterr().err


def test_no_shipped_file_disables_ray_token_auth():
    for path in ["deployments/launch.py", "Makefile", "configs/local.yaml", "serve_config.yaml"]:
        assert "RAY_AUTH_MODE" not in (REPO_ROOT / path).read_text(), path


def test_bundle_queue_is_bounded_by_default():
    bundle = BundleConfig(name="m", model="x", engine_args={"max_num_seqs": 24})
    options = deployment_options(bundle_spec(bundle), IngressSettings())
    # Serve's own default (-1) queues without bound: latency would grow instead of a quick 503.
    # Admission is the gate in front (in sequences, from the deadline); Serve's own bounds are no tighter.
    assert options["max_queued_requests"] == options["max_ongoing_requests"] == bundle.max_ongoing_requests
    explicit = BundleConfig(name="m", model="x", deployment={"max_queued_requests": 3})
    assert deployment_options(bundle_spec(explicit), IngressSettings())["max_queued_requests"] == 3


def test_an_old_ingress_replica_waits_for_its_requests_deadline_before_stopping():
    from core.config import IngressSettings
    from deployments.options import ingress_options

    options = ingress_options(IngressSettings(request_timeout_s=120))
    assert options["graceful_shutdown_timeout_s"] > 120


def test_an_old_bundle_replica_drains_its_requests_until_their_deadline():
    from core.config import IngressSettings

    bundle = BundleConfig(name="m", model="x")
    assert deployment_options(bundle_spec(bundle), IngressSettings(request_timeout_s=120))["graceful_shutdown_timeout_s"] > 120
    explicit = BundleConfig(name="m", model="x", deployment={"graceful_shutdown_timeout_s": 5})
    assert deployment_options(bundle_spec(explicit), IngressSettings())["graceful_shutdown_timeout_s"] == 5
