"""Admission in sequences, sized from the deadline and the measured service rate: pure logic, a fake clock."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequestError
from logic.admission import AdmissionGate, OverloadedError, ServiceRate
from logic.priority import engine_priority, resolve_class


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, bound: int = 1000, saturation: int = 4) -> AdmissionGate:
    return AdmissionGate(bound, saturation, ServiceRate(window_s=1.0, smoothing=1.0), clock)


def measure(g: AdmissionGate, clock: Clock, work_per_s: float) -> None:
    """Run the bundle saturated for 2 s, completing `work_per_s` units a second."""
    tickets = [g.admit("interactive", 1, int(work_per_s), budget_s=100) for _ in range(g.saturation + 2)]
    for ticket in tickets[:2]:
        clock.now += 1.0
        g.release(ticket, completed=True)
    for ticket in tickets[2:]:
        g.release(ticket, completed=False)


def test_without_a_measured_rate_only_the_hard_bound_refuses():
    clock = Clock()
    g = gate(clock, bound=8)
    tickets = [g.admit("interactive", 4, 4000, budget_s=1) for _ in range(2)]
    with pytest.raises(OverloadedError) as refused:
        g.admit("interactive", 1, 10, budget_s=1000)
    assert "bound of 8" in refused.value.detail and refused.value.retry_after_s >= 1
    for t in tickets:
        g.release(t, completed=True)
    assert g.sequences["interactive"] == 0 and g.rate.work_per_s is None  # never saturated long enough


def test_work_that_can_finish_waits_and_work_that_cannot_is_refused_with_the_same_estimate():
    clock = Clock()
    g = gate(clock)
    measure(g, clock, work_per_s=100)
    assert g.rate.work_per_s == pytest.approx(100)
    held = [g.admit("interactive", 4, 2000, budget_s=300) for _ in range(2)]  # 40 s of work in flight
    assert g.estimated_wait_s("interactive", 1000) == pytest.approx(50)
    g.admit("interactive", 4, 1000, budget_s=60)  # 50 s: it can finish, so it waits
    with pytest.raises(OverloadedError) as refused:
        g.admit("interactive", 4, 3000, budget_s=60)  # (5000 + 3000) / 100 = 80 s > 60 s
    assert "deadline" in refused.value.detail
    assert refused.value.retry_after_s == 20  # 80 s of work, 60 s left: in 20 s it would fit
    assert len(held) == 2


def test_work_within_the_batch_is_never_refused_for_time():
    clock = Clock()
    g = gate(clock, saturation=4)
    measure(g, clock, work_per_s=1)
    assert g.admit("interactive", 2, 1000, budget_s=1).sequences == 2  # 1000 s of work, but it fits the batch


def test_a_batch_flood_cannot_refuse_or_delay_the_editor():
    clock = Clock()
    g = gate(clock, bound=64)
    measure(g, clock, work_per_s=100)
    for _ in range(16):
        g.admit("batch", 4, 400, budget_s=300)  # 64 s of batch work, the whole batch bound
    with pytest.raises(OverloadedError):
        g.admit("batch", 4, 400, budget_s=300)
    # The editor's class has its own bound, and only its own class is ahead of it in the engine.
    assert g.estimated_wait_s("interactive", 100) == pytest.approx(1)
    g.admit("interactive", 4, 100, budget_s=5)
    assert g.estimated_wait_s("batch", 0) == pytest.approx(65)


def test_a_lone_request_always_goes_however_large():
    g = gate(Clock(), bound=8)
    assert g.admit("batch", 32, 32_000, budget_s=1).sequences == 32


def test_an_unsaturated_bundle_measures_no_rate():
    clock = Clock()
    g = gate(clock, saturation=4)
    ticket = g.admit("interactive", 1, 100, budget_s=10)
    clock.now += 5
    g.release(ticket, completed=True)
    assert g.rate.work_per_s is None  # one request at a time says nothing about the engine's capacity


def test_the_priority_class_can_be_lowered_by_a_header_but_never_raised():
    assert resolve_class(None, None) == "interactive"
    assert resolve_class(None, "batch") == "batch"
    assert resolve_class("batch", "interactive") == "batch"  # a search client's key cannot claim the editor's lane
    assert resolve_class("interactive", " Batch ") == "batch"
    assert engine_priority("interactive") < engine_priority("batch")
    with pytest.raises(InvalidRequestError):
        resolve_class(None, "urgent")


def test_make_serves_default_admits_64_concurrent_clients_that_the_deadline_allows():
    from support import REPO_ROOT

    from core.config import load_serve_config
    from deployments.service import admission_gate

    local = load_serve_config(REPO_ROOT / "configs" / "local.yaml").applications[0].args
    bundle, deadline_s = local.models[0], local.ingress.request_timeout_s
    request = (bundle.sampling.n, bundle.sampling.n * bundle.sampling.max_tokens)
    # Cold (no rate yet), and at the rate the issue measured (32 requests served in 30 s): all 64 wait.
    for measured in (None, 32 * request[1] / 30):
        clock = Clock()
        g = admission_gate(bundle, clock)
        g.rate.work_per_s = measured
        tickets = [g.admit("interactive", *request, budget_s=deadline_s) for _ in range(64)]
        assert len(tickets) == 64
    # Serve's own bounds in front of the replica never refuse them first.
    assert bundle.max_ongoing_requests >= 64 and bundle.max_queued_requests >= 64
    # But a flood that cannot finish in time is refused, at once.
    with pytest.raises(OverloadedError):
        for _ in range(1000):
            g.admit("interactive", *request, budget_s=deadline_s)
