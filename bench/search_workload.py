"""The proof-search replay and the editor pattern of bench/proof_search.py: pure (no Ray, no HTTP).

Replayed from the shared proof steps (../shared/data/minif2f_proofsteps.jsonl): a theorem's states share their
hypotheses, as a best-first search's expansions do. Each theorem is searched by one worker that keeps
`in_flight` expansions going at once, and sends every state `resends` times (a search meets the same state
again through other branches); many theorems are searched at once.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PROOF_STEPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "minif2f_proofsteps.jsonl"


@dataclass(frozen=True)
class SearchPlan:
    theorems: int = 24  # theorems searched in one run
    parallel_theorems: int = 6  # searched at once
    in_flight: int = 2  # expansions in flight per theorem
    resends: int = 2  # times each state is sent
    min_states: int = 3  # a theorem's expansions: at least this many (its states, cycled)
    seed: int = 0


def theorem_states(path: Path = PROOF_STEPS) -> dict[str, list[str]]:
    """Each theorem's distinct states, in proof order."""
    states: dict[str, list[str]] = defaultdict(list)
    with path.open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            if row["state_before"] not in states[row["theorem"]]:
                states[row["theorem"]].append(row["state_before"])
    return dict(states)


def expansions(plan: SearchPlan, path: Path = PROOF_STEPS) -> list[list[str]]:
    """The states each theorem's worker sends, in order: its own states cycled to `min_states`, each one sent
    `resends` times, the resends shuffled in among later expansions (a search revisits states)."""
    rng = random.Random(plan.seed)
    by_theorem = theorem_states(path)
    names = sorted(by_theorem)
    rng.shuffle(names)
    plans = []
    for name in names[: plan.theorems]:
        own = by_theorem[name]
        distinct = [own[i % len(own)] + ("" if i < len(own) else f"\n-- branch {i}") for i in range(max(plan.min_states, len(own)))]
        sends = [s for s in distinct for _ in range(plan.resends)]
        first, rest = sends[: plan.in_flight], sends[plan.in_flight :]
        rng.shuffle(rest)
        plans.append(first + rest)
    return plans


def editor_states(count: int, path: Path = PROOF_STEPS, seed: int = 1) -> list[str]:
    """States an editor asks about, one at a time (other theorems than the search's, mostly)."""
    rng = random.Random(seed)
    every = [s for states in theorem_states(path).values() for s in states]
    rng.shuffle(every)
    return every[:count]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float | None]:
    """min / median / max of repeated figures (a ratio's spread over the interleaved repeats)."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"min": None, "median": None, "max": None}
    return {"min": min(clean), "median": percentile(clean, 0.5), "max": max(clean)}
