"""LeanServe's metrics on Ray's Prometheus endpoint: a real local app (tiny vLLM bundle), real requests,
and a bounded scrape until the series show up with the right labels and values."""

from __future__ import annotations

import time

import httpx
import pytest
from cluster_support import generate, report_figure, tiny_bundle_args
from prometheus_client.parser import text_string_to_metric_families
from serve_app import APP_NAME, GENERATOR, free_port

from deployments import metrics

pytestmark = pytest.mark.serve

# Ray exports custom metrics every few seconds (about 10 s measured here): poll, within a bound.
SCRAPE_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def metrics_app(tiny_llama):
    import ray
    from ray import serve

    from deployments.app import build_app

    # A deadline short enough for a long request to reach it (the 504 the timeout counter must see).
    args = tiny_bundle_args(tiny_llama, ingress={"request_timeout_s": 5})
    port, metrics_port = free_port(), free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _metrics_export_port=metrics_port)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        serve.shutdown()
        ray.shutdown()


def scrape(endpoint: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Series name -> [(labels, value)] of the LeanServe series on the endpoint."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(endpoint, timeout=10).text):
        for sample in family.samples:
            if sample.name.startswith("ray_leanserve_"):
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(series: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(value for found, value in series if all(found.get(k) == v for k, v in labels.items()))


def test_request_metrics_reach_the_prometheus_endpoint(metrics_app):
    url, endpoint = metrics_app
    candidates = 0
    for _ in range(3):
        ok = generate(url, n=4, max_tokens=6)
        assert ok.status_code == 200
        candidates += len(ok.json()["outputs"])  # after deduplication: what the clients really got
    assert generate(url, name="no-such-model").status_code == 404
    # Far longer than the 5 s deadline on the tiny model (it never stops early): 504.
    assert generate(url, n=32, max_tokens=8000).status_code == 504

    requests = metrics.REQUESTS.prometheus_name
    wanted = {
        requests: lambda s: total(s, bundle=GENERATOR, route="generate", status="200") == 3
        and total(s, bundle="unknown", route="generate", status="404") == 1
        and total(s, bundle=GENERATOR, route="generate", status="504") == 1,
        metrics.TIMEOUTS.prometheus_name: lambda s: total(s, bundle=GENERATOR, route="generate") == 1,
        metrics.CANDIDATES.prometheus_name: lambda s: total(s, bundle=GENERATOR) == candidates,
        metrics.TOKENS.prometheus_name: lambda s: total(s, bundle=GENERATOR) >= 3 * 4,
        metrics.REQUEST_LATENCY.prometheus_name + "_count": lambda s: total(s, bundle=GENERATOR, route="generate") == 4,
        metrics.ENGINE_RUNNING.prometheus_name: lambda s: any(labels.get("bundle") == GENERATOR for labels, _ in s),
        metrics.ENGINE_WAITING.prometheus_name: lambda s: any(labels.get("bundle") == GENERATOR for labels, _ in s),
        # vLLM looks every prompt up in its prefix cache (hits need a shared full KV block: none here).
        metrics.PREFIX_CACHE_QUERIES.prometheus_name: lambda s: total(s, bundle=GENERATOR) > 0,
    }
    scraping = time.monotonic()
    deadline = scraping + SCRAPE_TIMEOUT_S
    found: dict = {}
    while time.monotonic() < deadline:
        found = scrape(endpoint)
        if all(name in found and check(found[name]) for name, check in wanted.items()):
            break
        time.sleep(2)
    missing = {name: found.get(name) for name, check in wanted.items() if not (name in found and check(found[name]))}
    assert not missing, f"series missing or wrong after {SCRAPE_TIMEOUT_S}s: {missing}"
    report_figure("last request -> all LeanServe series on the endpoint", time.monotonic() - scraping)

    # Serve's own labels come along: the dashboard filters on the application.
    labels, _ = found[requests][0]
    assert labels["application"] == APP_NAME and labels["deployment"] == "ingress"
