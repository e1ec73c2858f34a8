"""What the three remote engines (OpenAI-compatible, Anthropic, Gemini) share: the API key, bounded
retries with backoff within a retry budget, n candidates by parallel calls, error mapping, the not-ready state.

Each engine subclass only says how to make ONE API call and which of its SDK's errors are transient.
The SDKs' own retry loops are switched off (max_retries=0): one retry policy, from the config, for all.
A call retries a transient failure up to `max_retries` times, and only while the engine's retry budget
(logic/retry_budget.py) holds a retry: a flood of failing calls costs the owner at most about (1 + ratio)
calls per call, not max_retries + 1.
"""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from loguru import logger
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_exponential_jitter

from core.errors import (
    EngineFailureError,
    GenerationTimeoutError,
    InputTooLargeError,
    LeanServeError,
    ServiceUnavailableError,
)
from core.payloads import ChatMessages, Completion, EngineLoad, EngineOutput, SamplingRequest
from logic.retry_budget import RetryBudget

if TYPE_CHECKING:
    from core.config import BundleConfig

# The SDKs insist on some key: this one goes to keyless servers (api_key_env: None). A bundle whose key
# variable is unset never calls out at all (it is not ready), so it never sends this either.
PLACEHOLDER_KEY = "no-key-needed"


class ApiFailure(Exception):
    """One failed API call, reduced to what the retry policy and the error mapping need."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None,
                 timeout: bool = False):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.timeout = timeout

    @property
    def transient(self) -> bool:
        """429, 5xx, 408, a timeout or a lost connection (status None): worth another try."""
        return self.status is None or self.status in (408, 429) or self.status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; HTTP dates are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def backoff_wait(initial_s: float, max_s: float):
    """Exponential backoff with jitter that waits at least what the server's Retry-After asks, up to max_s."""
    exponential = wait_exponential_jitter(initial=initial_s, max=max_s)

    def wait(state: RetryCallState) -> float:
        delay = exponential(state)
        failure = state.outcome.exception() if state.outcome else None
        asked = getattr(failure, "retry_after_s", None)
        return min(max_s, max(delay, asked)) if asked is not None else delay

    return wait


def failure_from_sdk_error(exc: Exception, timeout_error: type, status_error: type) -> ApiFailure:
    """An OpenAI or Anthropic SDK error as an ApiFailure: both SDKs raise a timeout class and a status class
    that carries the HTTP response (for Retry-After), its status code and a message."""
    if isinstance(exc, timeout_error):
        return ApiFailure(f"timed out: {exc}", timeout=True)
    if isinstance(exc, status_error):
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        return ApiFailure(f"HTTP {exc.status_code}: {exc.message}", status=exc.status_code, retry_after_s=retry_after)
    return ApiFailure(f"{type(exc).__name__}: {exc}")


def to_leanserve_error(failure: ApiFailure, bundle: str) -> LeanServeError:
    """The HTTP answer for a call that still failed after the retries. The upstream API's own text stays in the
    DEBUG log: it may quote the request, the account or the key, and it is not the client's business."""
    logger.debug("remote API of {} failed: {}", bundle, failure)
    if failure.timeout:
        return GenerationTimeoutError(f"The remote API of {bundle!r} did not answer in time.")
    if failure.status == 429 or failure.transient:
        return ServiceUnavailableError(f"The remote API of {bundle!r} is unavailable or rate-limited{_status(failure)}.")
    # Gemini refuses a bad key with 400 API_KEY_INVALID ("API key not valid"), not 401.
    if failure.status in (401, 403) or (failure.status == 400 and "api key not valid" in str(failure).lower()):
        return ServiceUnavailableError(f"The remote API of {bundle!r} refused the API key{_status(failure)}.")
    if failure.status in (400, 413) and "context" in str(failure).lower():
        return InputTooLargeError(f"The input is too long for {bundle!r}{_status(failure)}.")
    return EngineFailureError(f"The remote API of {bundle!r} rejected the request{_status(failure)}.")


def failure_summary(failure: BaseException | None) -> str:
    """A failed call as the WARNING and INFO logs name it: its status or kind, never the API's own text (it may
    quote the request, the account or the key; it goes to the DEBUG log)."""
    if not isinstance(failure, ApiFailure):
        return type(failure).__name__
    if failure.timeout:
        return "timed out"
    return f"HTTP {failure.status}" if failure.status is not None else "no response"


def _status(failure: ApiFailure) -> str:
    return f" (HTTP {failure.status})" if failure.status is not None else ""


class RemoteChatEngine(ABC):
    """A hosted chat API behind the GenerationEngine interface; `generate` takes chat messages."""

    # Whether one API call can return n candidates (subclasses that support it also check the config).
    supports_n_per_call = False
    # Whether temperature and top_p are sent unless the config says otherwise.
    sends_sampling_by_default = True

    def __init__(self, bundle: BundleConfig):
        assert bundle.remote is not None and bundle.model is not None
        self.bundle_name = bundle.name
        self.model = bundle.model
        self.settings = bundle.remote
        self.retry_budget = RetryBudget(bundle.remote.retry_budget)  # shared by every call of this replica
        self._running = 0
        self.not_ready_reason: str | None = None
        self.api_key = PLACEHOLDER_KEY
        env = self.settings.api_key_env
        if env is not None:
            value = os.environ.get(env, "").strip()
            if value:
                self.api_key = value
            else:
                self.not_ready_reason = (
                    f"Model {bundle.name!r} is not ready: the environment variable {env} (its API key) is not set "
                    "in the replica's environment."
                )

    async def start(self) -> None:
        # No warm-up call: it would cost money, and a bundle without its key must still deploy.
        if self.not_ready_reason:
            logger.warning(self.not_ready_reason)
        else:
            logger.info("remote bundle {} -> {} at {}", self.bundle_name, self.model, self.settings.base_url or "default")

    @abstractmethod
    async def _call(self, messages: ChatMessages, sampling: SamplingRequest, n: int) -> list[Completion]:
        """One API call for `n` candidates; raise ApiFailure on failure."""

    @property
    def send_sampling(self) -> bool:
        configured = self.settings.send_sampling
        return self.sends_sampling_by_default if configured is None else configured

    @property
    def n_per_call(self) -> bool:
        return self.supports_n_per_call and self.settings.n_per_call

    def _should_retry(self, state: RetryCallState) -> bool:
        """Retry a transient failure while attempts are left and the retry budget holds a retry. The budget is
        asked last, so an attempt that would not be retried anyway spends nothing."""
        failure = state.outcome.exception() if state.outcome else None
        if not (isinstance(failure, ApiFailure) and failure.transient) or state.attempt_number > self.settings.max_retries:
            return False
        if self.retry_budget.try_withdraw():
            return True
        logger.info(
            "{}: attempt {} failed ({}); retry budget spent, not retrying",
            self.bundle_name, state.attempt_number, failure_summary(failure),
        )
        return False

    def _log_retry(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        logger.warning("{}: attempt {} failed ({}); retrying", self.bundle_name, state.attempt_number, failure_summary(failure))
        logger.debug("{}: attempt {} failed: {}", self.bundle_name, state.attempt_number, failure)

    async def _call_with_retries(self, messages: ChatMessages, sampling: SamplingRequest, n: int) -> list[Completion]:
        self.retry_budget.deposit()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=backoff_wait(self.settings.backoff_initial_s, self.settings.backoff_max_s),
            retry=self._should_retry,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call(messages, sampling, n)
        except ApiFailure as failure:
            raise to_leanserve_error(failure, self.bundle_name) from failure
        raise AssertionError("unreachable")  # pragma: no cover

    async def generate(self, prompt: ChatMessages | str, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        if self.not_ready_reason:
            raise ServiceUnavailableError(self.not_ready_reason)
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        self._running += 1
        started = time.perf_counter()
        try:
            if self.n_per_call:
                completions = await self._call_with_retries(messages, sampling, sampling.n)
            else:
                # Cancelling generate (client gone, deadline) cancels every call of the group.
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._call_with_retries(messages, sampling, 1)) for _ in range(sampling.n)]
                completions = [c for task in tasks for c in task.result()]
        except* LeanServeError as group:
            raise group.exceptions[0] from None
        finally:
            self._running -= 1
        logger.bind(request_id=request_id).debug(
            "{}: {} answers in {:.3f}s", self.bundle_name, len(completions), time.perf_counter() - started
        )
        return EngineOutput(completions=completions)

    async def check_health(self) -> None:
        # Never raises for a missing key: Serve would restart the replica in a loop. /health reports
        # not_ready_reason instead (see deployments/bundle.py).
        return None

    async def num_unfinished_requests(self) -> int:
        return self._running

    def load(self) -> EngineLoad:
        # The API's own queue is invisible from here: every call in flight counts as running.
        return EngineLoad(running=self._running)

    def shutdown(self) -> None:
        close = getattr(self, "_close", None)
        if close is None:
            return
        try:
            asyncio.get_running_loop().create_task(close())
        except RuntimeError:  # no loop: the process is going away, sockets close with it
            pass
