"""One error hierarchy, one mapping to HTTP statuses (see ../shared/CONTRACT.md).

Client errors (4xx) are logged as warnings, server errors (5xx) as errors. Every error reaches the
client as JSON `{"detail": "..."}`; 503 also carries `Retry-After`.
"""

from __future__ import annotations

SCORER_NOT_CONFIGURED = "LeanProgress scoring requested but no model configured."


# A client's own name (of a model) as error details and logs repeat it: enough to recognise, never its whole
# length (a 100 MB `name` must not become a 100 MB error body and log line).
MAX_ECHOED_CHARS = 100


def echoed(name: str) -> str:
    return name if len(name) <= MAX_ECHOED_CHARS else name[:MAX_ECHOED_CHARS] + f"… ({len(name)} characters)"


class LeanServeError(Exception):
    status_code = 500
    retry_after_s: int | None = None

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self):
        # Errors cross Ray process boundaries: keep them picklable with their detail.
        return (type(self), (self.detail,))


class UnauthorizedError(LeanServeError):
    """No valid API key from a client outside the allow-list."""

    status_code = 401
    # RFC 6750: a 401 names the scheme the client should use.
    challenge = "Bearer"


class UnknownModelError(LeanServeError):
    status_code = 404

    @classmethod
    def for_name(cls, name: str, known: list[str]) -> UnknownModelError:
        return cls(f"Unknown model {echoed(name)!r}. Known models: {', '.join(sorted(known))}.")


class UnsupportedRouteError(LeanServeError):
    status_code = 400

    @classmethod
    def encoding(cls, name: str) -> UnsupportedRouteError:
        return cls(f"Model '{echoed(name)}' does not support encoding requests.")

    @classmethod
    def generation(cls, name: str) -> UnsupportedRouteError:
        return cls(f"Model '{echoed(name)}' does not support generation requests.")

    @classmethod
    def proving(cls, name: str) -> UnsupportedRouteError:
        return cls(f"Model '{echoed(name)}' does not support whole-proof requests (/prove needs a bundle with task: whole_proof).")

    @classmethod
    def tactic_generation(cls, name: str) -> UnsupportedRouteError:
        return cls(f"Model '{echoed(name)}' generates whole proofs: use /prove, not /generate.")


class ScorerNotConfiguredError(LeanServeError):
    status_code = 400

    def __init__(self, detail: str = SCORER_NOT_CONFIGURED):
        super().__init__(detail)


class InvalidRequestError(LeanServeError):
    status_code = 422


class InputTooLargeError(LeanServeError):
    status_code = 413


class RateLimitedError(LeanServeError):
    """A caller over its request rate (logic/caller_limits.py): 429, retry after the given seconds."""

    status_code = 429

    def __init__(self, detail: str, retry_after_s: int = 60):
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (type(self), (self.detail, self.retry_after_s))


class ServiceUnavailableError(LeanServeError):
    """Overloaded, starting, or a replica was lost: the client may retry."""

    status_code = 503
    retry_after_s = 5


class GenerationTimeoutError(LeanServeError):
    status_code = 504


class EngineFailureError(LeanServeError):
    status_code = 500


def find_leanserve_error(exc: BaseException) -> LeanServeError | None:
    """The LeanServeError behind `exc`, also when Ray wrapped it on the way back from a replica."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, LeanServeError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    return None
