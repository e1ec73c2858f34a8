"""Real Lean proof states for load tests: the miniF2F goals of the shared data folder."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

GOALS_FILE = "minif2f_goals.jsonl"
# Where the data lives: $LEANSERVE_DATA_DIR, else ../shared/data beside the repository (the project layout).
DATA_DIR_ENV = "LEANSERVE_DATA_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or _REPO_ROOT.parent / "shared" / "data")


def load_states(count: int | None = None, seed: int = 0, max_chars: int | None = 2000, path: Path | None = None) -> list[str]:
    """`count` distinct goals in a fixed random order (the same for every run with the same seed).

    `max_chars` leaves out the few very long states (up to 4,300 characters) that would dominate a small sample.
    """
    path = path or data_dir() / GOALS_FILE
    with open(path, encoding="utf-8") as rows:
        goals = [json.loads(line)["goal"] for line in rows if line.strip()]
    if max_chars is not None:
        goals = [g for g in goals if len(g) <= max_chars]
    unique = list(dict.fromkeys(goals))
    random.Random(seed).shuffle(unique)
    return unique if count is None else unique[:count]


def cycle_states(states: list[str], count: int, offset: int = 0) -> list[str]:
    """`count` states taken in order from `offset`, wrapping around when the list is shorter."""
    if not states:
        raise ValueError("no proof states to send")
    return [states[(offset + i) % len(states)] for i in range(count)]
