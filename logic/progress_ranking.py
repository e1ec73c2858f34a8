"""From LeanProgress predictions to ranked candidates (pure: no Ray, no torch).

Per ../shared/CONTRACT.md: `steps_remaining` is the prediction (>= 0), `reward = -steps_remaining`,
`score = reward`, `model_score` keeps the generator's score, and candidates come best first.

Optional mixing (the LeanProgress paper, section 4.3.3): score = α·N + (1−α)·P with
- N = −2·steps_remaining / N_max (the paper's normalised steps: 0 for a closing tactic, −2 at N_max), and
- P = the candidate's mean token log-probability, recovered from the generator's score
  (LeanServe's score is exp(mean token log-prob)), floored at LOGPROB_FLOOR when the engine gave none.
α = 0 is pure log-probability, α = 1 pure progress; the paper's best was α = 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.config import MixingConfig

# exp(-30) ≈ 1e-13: a generator score of 0 means "no log-prob known", not minus infinity.
LOGPROB_FLOOR = -30.0


@dataclass(frozen=True)
class ProgressCandidate:
    output: str
    score: float
    model_score: float
    steps_remaining: float
    reward: float


def normalized_steps(steps_remaining: float, max_steps: float) -> float:
    return -2.0 * steps_remaining / max_steps


def mean_logprob(model_score: float) -> float:
    """The mean token log-probability behind a generator score in [0, 1]."""
    if not model_score > 0.0:  # 0, negative or NaN
        return LOGPROB_FLOOR
    return max(LOGPROB_FLOOR, math.log(min(model_score, 1.0)))


def mixed_score(steps_remaining: float, model_score: float, mixing: MixingConfig) -> float:
    progress = normalized_steps(steps_remaining, mixing.max_steps)
    return mixing.alpha * progress + (1.0 - mixing.alpha) * mean_logprob(model_score)


def rank_by_progress(
    candidates: Sequence[tuple[str, float]],
    steps_remaining: Sequence[float],
    mixing: MixingConfig | None = None,
) -> list[ProgressCandidate]:
    """`candidates` are (output, generator score) in the generator's order; ties keep that order."""
    if len(candidates) != len(steps_remaining):
        raise ValueError(f"{len(candidates)} candidates but {len(steps_remaining)} predictions")
    ranked = []
    for (output, model_score), steps in zip(candidates, steps_remaining):
        if not math.isfinite(steps):
            raise ValueError(f"non-finite prediction {steps!r}")
        steps = max(0.0, float(steps))
        reward = 0.0 - steps  # not -steps: a closing tactic gets 0.0, not -0.0
        score = reward if mixing is None else mixed_score(steps, model_score, mixing)
        ranked.append(ProgressCandidate(output, score, model_score, steps, reward))
    order = {id(c): i for i, c in enumerate(ranked)}
    return sorted(ranked, key=lambda c: (-c.score, order[id(c)]))
