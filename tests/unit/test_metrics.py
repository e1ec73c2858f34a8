"""The metric definitions, what the recorders send, and the Grafana dashboard that queries them."""

import json
import re

import pytest
from support import REPO_ROOT

from deployments import metrics

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "leanserve.json"


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    queries += [variable.get("query", "") for variable in board["templating"]["list"]]
    return queries


def series_of(spec: metrics.MetricSpec) -> set[str]:
    if spec.kind == "histogram":
        return {f"{spec.prometheus_name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return {spec.prometheus_name}


def test_every_defined_metric_is_on_the_dashboard_and_nothing_else():
    text = "\n".join(dashboard_queries())
    used = set(re.findall(r"\bray_leanserve_\w+", text))
    for spec in metrics.METRICS:
        assert used & series_of(spec), f"{spec.prometheus_name} is not on the dashboard"
    defined = set().union(*(series_of(spec) for spec in metrics.METRICS))
    assert used <= defined, f"the dashboard queries undefined series: {sorted(used - defined)}"


def test_names_are_unique_and_prometheus_safe():
    names = [spec.name for spec in metrics.METRICS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"leanserve_[a-z0-9_]+", name) for name in names)


def test_exported_names_follow_rays_convention():
    assert metrics.REQUESTS.prometheus_name == "ray_leanserve_requests_total"
    assert metrics.ENGINE_RUNNING.prometheus_name == "ray_leanserve_engine_running_requests"
    assert metrics.SCORER_BATCH_SIZE.prometheus_name == "ray_leanserve_scorer_batch_size"


class FakeMetric:
    def __init__(self):
        self.calls = []

    def inc(self, value=1.0, tags=None):
        self.calls.append(("inc", value, tags))

    def set(self, value, tags=None):
        self.calls.append(("set", value, tags))

    def observe(self, value, tags=None):
        self.calls.append(("observe", value, tags))


@pytest.fixture()
def recorded(monkeypatch):
    fakes = {spec.name: FakeMetric() for spec in metrics.METRICS}
    monkeypatch.setattr(metrics, "_instances", fakes)
    return lambda spec: fakes[spec.name].calls


@pytest.mark.parametrize(("status", "special"), [(504, metrics.TIMEOUTS), (503, metrics.UNAVAILABLE)])
def test_timeouts_and_503s_have_their_own_counters(recorded, status, special):
    metrics.record_request("b", "generate", status, 1.5)
    assert recorded(metrics.REQUESTS) == [("inc", 1, {"bundle": "b", "route": "generate", "status": str(status)})]
    assert recorded(metrics.REQUEST_LATENCY) == [("observe", 1.5, {"bundle": "b", "route": "generate"})]
    assert recorded(special) == [("inc", 1, {"bundle": "b", "route": "generate"})]
    other = metrics.UNAVAILABLE if special is metrics.TIMEOUTS else metrics.TIMEOUTS
    assert recorded(other) == []


def test_a_success_counts_only_as_a_request(recorded):
    metrics.record_request("b", "encode", 200, 0.1)
    assert recorded(metrics.TIMEOUTS) == recorded(metrics.UNAVAILABLE) == []


def test_engine_load_candidates_tokens_and_scorer_hook(recorded):
    metrics.record_engine_load("b", running=3, waiting=7)
    metrics.record_candidates("b", 4)
    metrics.record_tokens("b", 0)  # nothing generated: no empty increment
    metrics.record_scorer_batch(12)
    assert recorded(metrics.ENGINE_RUNNING) == [("set", 3, {"bundle": "b"})]
    assert recorded(metrics.ENGINE_WAITING) == [("set", 7, {"bundle": "b"})]
    assert recorded(metrics.CANDIDATES) == [("inc", 4, {"bundle": "b"})]
    assert recorded(metrics.TOKENS) == []
    assert recorded(metrics.SCORER_BATCH_SIZE) == [("observe", 12, {"scorer": "scorer"})]
