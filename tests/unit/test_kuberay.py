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


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


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
