"""The per-caller rules of logic/caller_limits.py: n x max_tokens by the key's class, and requests per minute
of each key (the `limits` library's moving window, in memory)."""

from __future__ import annotations

import time

import pytest

from core.config import PerClassLimits, RequestLimits
from core.errors import InvalidRequestError, RateLimitedError
from core.request_context import PRIORITY_CLASSES
from logic.caller_limits import CallerRateLimiter, check_generated_tokens

PER_CLASS = PerClassLimits.model_validate(
    {"interactive": {"max_generated_tokens": 100, "requests_per_minute": 3},
     "batch": {"max_generated_tokens": 400, "requests_per_minute": 5}}
)


def test_every_priority_class_has_its_own_limits():
    assert {cls: PER_CLASS.of(cls).requests_per_minute for cls in PRIORITY_CLASSES} == {"interactive": 3, "batch": 5}


def test_defaults_bound_the_32_x_1024_request_and_leave_editors_and_search_clients_room():
    limits = RequestLimits().per_class
    with pytest.raises(InvalidRequestError, match="32 x 1024 = 32768 tokens; the limit is 8192 for interactive"):
        check_generated_tokens(32, 1024, 4 * 64, "interactive", limits)
    check_generated_tokens(16, 512, 4 * 64, "interactive", limits)  # LeanCopilot's widest editor requests
    assert limits.interactive.requests_per_minute == 600 and limits.batch.requests_per_minute == 6000


def test_a_request_over_its_class_budget_is_a_422_that_names_the_limit():
    check_generated_tokens(10, 10, 1, "interactive", PER_CLASS)  # at the limit
    with pytest.raises(InvalidRequestError) as refused:
        check_generated_tokens(10, 11, 1, "interactive", PER_CLASS)
    assert refused.value.status_code == 422
    assert refused.value.detail == (
        "n x max_tokens is 10 x 11 = 110 tokens; the limit is 100 for interactive callers "
        "(limits.per_class.interactive.max_generated_tokens)"
    )


def test_the_batch_class_gets_its_own_budget_and_a_keyless_caller_the_interactive_one():
    check_generated_tokens(20, 20, 1, "batch", PER_CLASS)
    with pytest.raises(InvalidRequestError, match="the limit is 400 for batch"):
        check_generated_tokens(20, 21, 1, "batch", PER_CLASS)
    with pytest.raises(InvalidRequestError, match="the limit is 100 for interactive"):
        check_generated_tokens(20, 20, 1, None, PER_CLASS)


def test_the_bundles_own_defaults_always_pass_and_0_is_no_limit():
    check_generated_tokens(32, 1024, 32 * 1024, "interactive", PER_CLASS)  # what the operator configured
    with pytest.raises(InvalidRequestError):
        check_generated_tokens(32, 1025, 32 * 1024, "interactive", PER_CLASS)
    unlimited = PerClassLimits.model_validate({"interactive": {"max_generated_tokens": 0}})
    check_generated_tokens(10**4, 10**4, 1, "interactive", unlimited)


async def test_a_key_over_its_rate_gets_429_with_the_seconds_until_its_window_frees():
    limiter = CallerRateLimiter(PER_CLASS)
    for _ in range(3):
        await limiter.charge("key:aaaa", "interactive")
    with pytest.raises(RateLimitedError) as refused:
        await limiter.charge("key:aaaa", "interactive")
    assert refused.value.status_code == 429
    assert 1 <= refused.value.retry_after_s <= 60
    assert "the limit is 3 a minute for interactive keys (limits.per_class.interactive.requests_per_minute)" in refused.value.detail
    assert refused.value.__reduce__()[1] == (refused.value.detail, refused.value.retry_after_s)


async def test_callers_are_counted_apart_and_each_class_by_its_own_rate():
    limiter = CallerRateLimiter(PER_CLASS)
    for _ in range(3):
        await limiter.charge("key:aaaa", "interactive")
    await limiter.charge("key:bbbb", "interactive")  # another key: its own window
    for _ in range(5):
        await limiter.charge("key:cccc", "batch")
    with pytest.raises(RateLimitedError, match="5 a minute for batch keys"):
        await limiter.charge("key:cccc", "batch")


async def test_a_cost_counts_several_requests_and_one_over_the_window_is_refused_whole():
    limiter = CallerRateLimiter(PER_CLASS)
    await limiter.charge("key:aaaa", "batch", cost=4)
    with pytest.raises(RateLimitedError):
        await limiter.charge("key:aaaa", "batch", cost=2)
    await limiter.charge("key:aaaa", "batch", cost=1)  # the refused cost took nothing
    with pytest.raises(RateLimitedError):
        await limiter.charge("key:aaaa", "batch")


async def test_keyless_callers_and_a_rate_of_0_are_not_counted():
    limiter = CallerRateLimiter(PerClassLimits.model_validate({"interactive": {"requests_per_minute": 0}}))
    for _ in range(100):
        await limiter.charge("host:127.0.0.1", None)
        await limiter.charge("key:aaaa", "interactive")


async def test_the_store_holds_hashed_identities_only_and_forgets_a_key_whose_window_passed(monkeypatch):
    limiter = CallerRateLimiter(PER_CLASS)
    storage = limiter._limiter.storage
    await limiter.charge("key:aaaa", "interactive")
    await limiter.charge("key:bbbb", "batch", cost=5)
    assert all("key:aaaa" in k or "key:bbbb" in k for k in storage.events), list(storage.events)
    # A minute later (the library reads the wall clock): the next request's expiry pass drops both old keys.
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    await limiter.charge("key:cccc", "interactive")
    await storage.timer  # the library's expiry pass, started by that request
    assert [k for k in storage.events if "key:aaaa" in k or "key:bbbb" in k] == []
    assert len(storage.events) == 1
    # And the expired entries no longer count: the batch key may send a full window again.
    await limiter.charge("key:bbbb", "batch", cost=5)


def test_a_rate_below_a_full_batch_is_a_config_error():
    with pytest.raises(ValueError, match=r"per_class.interactive.requests_per_minute \(10\) is below max_batch_items \(64\)"):
        RequestLimits.model_validate({"per_class": {"interactive": {"requests_per_minute": 10}}})
    RequestLimits.model_validate({"max_batch_items": 10, "per_class": {"interactive": {"requests_per_minute": 10}}})
