"""Pure summary math of a load test: throughput, latency percentiles, errors by status."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RequestRecord:
    """One request of a load test, as recorded."""

    level: str  # "c=16" (closed loop, 16 concurrent) or "rate=2.0" (open loop, 2 requests/s)
    index: int
    sent_at_s: float  # since the level started
    latency_s: float
    status: int  # 0: no response (connection error, client timeout)
    candidates: int
    state_chars: int
    error: str | None = None
    outputs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    def as_row(self) -> dict:
        row = asdict(self)
        row["outputs"] = list(self.outputs)
        return row


@dataclass(frozen=True)
class Summary:
    requests: int
    ok: int
    wall_s: float
    requests_per_s: float  # successful requests per second of wall time
    candidates_per_s: float
    mean_candidates: float
    latency_p50_s: float
    latency_p90_s: float
    latency_p99_s: float
    latency_max_s: float
    errors_by_status: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation between order statistics (numpy's default).

    NaN for no values, so an empty level shows as missing rather than as a zero latency.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(records: list[RequestRecord], wall_s: float) -> Summary:
    """Throughput counts successful requests only; latency percentiles are over successful requests too
    (a fast 503 would otherwise flatter them); failures are counted by status ("0" means no response)."""
    if wall_s <= 0:
        raise ValueError("wall time must be positive")
    ok = [r for r in records if r.ok]
    latencies = [r.latency_s for r in ok]
    candidates = sum(r.candidates for r in ok)
    errors = Counter(str(r.status) for r in records if not r.ok)
    return Summary(
        requests=len(records),
        ok=len(ok),
        wall_s=wall_s,
        requests_per_s=len(ok) / wall_s,
        candidates_per_s=candidates / wall_s,
        mean_candidates=candidates / len(ok) if ok else math.nan,
        latency_p50_s=percentile(latencies, 0.50),
        latency_p90_s=percentile(latencies, 0.90),
        latency_p99_s=percentile(latencies, 0.99),
        latency_max_s=max(latencies) if latencies else math.nan,
        errors_by_status=dict(sorted(errors.items())),
    )
