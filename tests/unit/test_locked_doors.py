"""The launcher's doors: loopback by default, no dashboard, Ray's token auth left on, bounded bundle queues."""

import os

import pytest
from support import REPO_ROOT

from core.config import BundleConfig, HttpOptions, IngressSettings, load_serve_config
from deployments import launch
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

    def fake_init(*args, **kwargs):
        seen["init"] = kwargs
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
