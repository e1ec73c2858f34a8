"""The retry budget of remote bundles (logic/retry_budget.py): retries as a bounded share of calls."""

from __future__ import annotations

from core.config import RetryBudgetConfig
from logic.retry_budget import RetryBudget


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spend_all(budget: RetryBudget) -> int:
    spent = 0
    while budget.try_withdraw():
        spent += 1
        assert spent < 1000, "the budget never ran out"
    return spent


def test_it_starts_with_the_saved_retries_and_then_refuses():
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_retries_per_s=0, max_saved=3), Clock())
    assert spend_all(budget) == 3
    assert not budget.try_withdraw()


def test_each_call_earns_ratio_retries():
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_retries_per_s=0, max_saved=3), Clock())
    spend_all(budget)
    for _ in range(4):
        budget.deposit()
    assert not budget.try_withdraw(), "4 calls x 0.2 is less than one retry"
    budget.deposit()
    assert spend_all(budget) == 1  # the fifth call completes one retry
    for _ in range(50):
        budget.deposit()
    assert spend_all(budget) == 3, "deposits are capped at max_saved"


def test_time_earns_the_floor_up_to_the_cap():
    clock = Clock()
    budget = RetryBudget(RetryBudgetConfig(ratio=0, min_retries_per_s=0.1, max_saved=2), clock)
    spend_all(budget)
    clock.now += 9.0
    assert not budget.try_withdraw()
    clock.now += 1.0
    assert spend_all(budget) == 1
    clock.now += 3600
    assert spend_all(budget) == 2


def test_a_flood_of_failing_calls_retries_a_bounded_share_not_max_retries_each():
    # 100 calls that all fail, each wanting 3 retries: the budget allows 10 saved + 0.2 per call, not 300 (the
    # first call's deposit finds the budget full, so 10 + 0.2 x 99).
    budget = RetryBudget(RetryBudgetConfig(), Clock())
    retries = 0
    for _ in range(100):
        budget.deposit()
        for _attempt in range(3):
            if not budget.try_withdraw():
                break
            retries += 1
    assert retries == 10 + 19
