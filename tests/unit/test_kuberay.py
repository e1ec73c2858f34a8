"""The KubeRay manifest serves serve_config.yaml itself: the very config the other tests validate."""

import importlib.util

import pytest
import yaml
from support import REPO_ROOT

from core.config import ServeConfigFile, load_serve_config

SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
MANIFEST = REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml"


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_rayservice", REPO_ROOT / "deploy" / "render_rayservice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8"))}


def manifest() -> dict:
    return documents()["RayService"]


def containers(cluster: dict) -> list[dict]:
    pods = [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    return [container for pod in pods for container in pod["spec"]["containers"]]


def test_serve_config_v2_is_serve_config_yaml_verbatim():
    assert manifest()["spec"]["serveConfigV2"] == SERVE_CONFIG.read_text(encoding="utf-8")


def test_manifest_is_up_to_date_with_its_template():
    assert load_renderer().main(["--check"]) == 0, "run `make kuberay`"


def test_manifests_serve_config_validates_with_leanserves_models():
    served = ServeConfigFile.model_validate(yaml.safe_load(manifest()["spec"]["serveConfigV2"]))
    assert served == load_serve_config(SERVE_CONFIG)
    assert served.http_options.port == 23337
    local_bundles = [b for app in served.applications for b in app.args.models if not b.is_remote]
    assert local_bundles and all(bundle.deployment.num_gpus > 0 for bundle in local_bundles)  # ByT5 shares one


def test_cluster_has_a_gpu_worker_group_and_exposes_serve_and_metrics():
    cluster = manifest()["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    head_ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert head_ports["serve"] == 23337 and head_ports["metrics"] == 8080
    (gpu_group,) = cluster["workerGroupSpecs"]
    limits = gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1


def test_renderer_refuses_text_a_block_scalar_would_change():
    render = load_renderer().render
    with pytest.raises(ValueError, match="trailing spaces"):
        render("a: 1   \n", "x: |\n__SERVE_CONFIG__\n")
    assert yaml.safe_load(render("a: 1\n\nb: [2]\n", "x: |\n__SERVE_CONFIG__\n"))["x"] == "a: 1\n\nb: [2]\n"


def test_every_ray_container_gets_the_api_keys_from_a_secret_and_the_proxy_hook():
    served = load_serve_config(SERVE_CONFIG)
    # The cluster config is closed: it names a key variable, and the pods fill it from a Secret.
    (app,) = served.applications
    keys_env = app.args.security.api_keys_env
    assert keys_env and not app.args.security.allow_unauthenticated
    for container in containers(manifest()["spec"]["rayClusterConfig"]):
        env = {e["name"]: e for e in container["env"]}
        assert env[keys_env]["valueFrom"]["secretKeyRef"] == {"name": "leanserve-api-keys", "key": "keys"}
        assert "value" not in env[keys_env]  # never a literal key in the manifest
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"]["value"] == "deployments.edge:proxy_middlewares"
        assert int(env["LEANSERVE_MAX_BODY_BYTES"]["value"]) == served.max_body_bytes


def test_pods_outlast_the_drain_and_workers_are_ready_on_liveness():
    from deployments.options import drain_timeout_s

    cluster = manifest()["spec"]["rayClusterConfig"]
    drain_s = max(drain_timeout_s(app.args.ingress) for app in load_serve_config(SERVE_CONFIG).applications)
    pods = [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        assert pod["spec"]["terminationGracePeriodSeconds"] > drain_s
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "leanserve"
    (worker,) = (group["template"]["spec"]["containers"][0] for group in cluster["workerGroupSpecs"])
    assert worker["readinessProbe"]["httpGet"] == {"path": "/health/live", "port": 23337}


def test_a_network_policy_admits_only_the_cluster_labelled_clients_operator_and_monitoring():
    policy = documents()["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "leanserve"}}
    assert policy["policyTypes"] == ["Ingress"]
    rules = policy["ingress"]
    # Every rule names its sources: no empty `from` (which would admit everyone).
    assert all(rule.get("from") for rule in rules)
    clients = next(r for r in rules if r["from"][0].get("podSelector", {}).get("matchLabels") == {"leanserve.io/client": "true"})
    assert clients["ports"] == [{"port": 23337, "protocol": "TCP"}]
    unrestricted = [r for r in rules if "ports" not in r]
    assert unrestricted == [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "leanserve"}}}]}]
