"""The scorer deployment: one LeanProgress checkpoint in its own autoscaled Ray Serve deployment.

It is separate from the bundles, so it gets its own resources (a GPU fraction on a cluster, a fraction
of a CPU here) and its own replicas. Candidates from concurrent /generate requests share one forward
pass: each candidate is one `@serve.batch` call, so the batch holds up to max_batch_size candidates from
however many requests are in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from loguru import logger
from ray import serve

from core.config import ScorerConfig
from core.log_setup import configure_logging
from core.payloads import ScoringInput
from deployments.metrics import record_scorer_batch

ScorerFactory = Callable[[ScorerConfig], Any]

WARMUP_INPUT = ScoringInput("x : ℕ\nh₀ : x + 1 = 2\n⊢ x = 1", "", "omega")


def _default_scorer_factory(config: ScorerConfig):
    from scorer.model import ProgressScorer  # lazy: torch/transformers load in the replica only

    return ProgressScorer.from_config(config)


class ScorerServer:
    def __init__(self, config: ScorerConfig, scorer_factory: ScorerFactory | None = None):
        configure_logging(f"scorer:{config.name}")
        started = time.perf_counter()
        self.config = config
        self.scorer = (scorer_factory or _default_scorer_factory)(config)
        self._score_one.set_max_batch_size(config.max_batch_size)
        self._score_one.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        # The first forward pass allocates and initialises kernels: pay it before reporting ready.
        self.scorer.predict([WARMUP_INPUT])
        self.batches = 0
        self.batched_items = 0
        logger.info("scorer {} ready in {:.1f}s", config.name, time.perf_counter() - started)

    async def score(self, request_id: str, items: list[ScoringInput]) -> list[float]:
        """Steps remaining (>= 0) for each candidate, in order."""
        started = time.perf_counter()
        steps = await asyncio.gather(*(self._score_one(item) for item in items))
        logger.bind(request_id=request_id).info(
            "scored {} candidates in {:.3f}s", len(items), time.perf_counter() - started
        )
        return list(steps)

    # Sizes are set from the config in __init__.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _score_one(self, items: list[ScoringInput]) -> list[float]:
        self.batches += 1
        self.batched_items += len(items)
        record_scorer_batch(len(items), scorer=self.config.name)
        # The forward pass blocks: run it off the event loop so new calls keep joining the next batch.
        return await asyncio.to_thread(self.scorer.predict, items)

    async def batch_stats(self) -> dict[str, float]:
        """Forward passes and candidates so far (the benchmark reads the mean batch size from it)."""
        return {"batches": self.batches, "items": self.batched_items}

    async def check_health(self) -> None:
        """Called by Serve every health_check_period_s; a model that cannot score gets the replica replaced."""
        await asyncio.to_thread(self.scorer.predict, [WARMUP_INPUT])

    async def health(self) -> dict[str, object]:
        """What /health reports: the replica answers, so its model is loaded (warmed up in __init__). No forward
        pass here: Serve's own check_health runs one every health_check_period_s, whatever /health is asked."""
        return {"status": "ok", "batches": self.batches}
