"""Results files of the benchmarks: named by UTC timestamp, never overwritten, and the spread of repeated runs.

Pure (files and numbers only), so the unit tests cover it without starting anything.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def timestamp(now: datetime | None = None) -> str:
    """20261201T223000Z: sorts as it happened, and no two runs of one name in the same second collide."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def new_results_path(name: str, suffix: str = ".json", now: datetime | None = None, folder: Path = RESULTS_DIR) -> Path:
    """bench/results/<UTC timestamp>-<name><suffix>, created empty now (mode 'x'), so no later run can take it.

    Two runs started in the same second get -2, -3, ...: a name is never reused, a file never overwritten.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{timestamp(now)}-{name}"
    for attempt in range(1, 1000):
        path = folder / (f"{stem}{suffix}" if attempt == 1 else f"{stem}-{attempt}{suffix}")
        try:
            with path.open("x", encoding="utf-8"):
                return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free name for {stem}{suffix}")


def write_new(name: str, data: dict, now: datetime | None = None, folder: Path = RESULTS_DIR) -> Path:
    """Write `data` to a new timestamped JSON file; an existing file is never touched."""
    path = new_results_path(name, ".json", now, folder)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def append_line(path: Path, record: dict) -> None:
    """One JSON line per finished run (append only): an interrupted benchmark keeps what it measured."""
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def latest_full_run(name: str, folder: Path = RESULTS_DIR) -> dict | None:
    """The newest results file of `name` that a complete, full-size run wrote (quick and partial runs skipped)."""
    pattern = re.compile(rf"\d{{8}}T\d{{6}}Z-{re.escape(name)}(-\d+)?\.json")
    for path in sorted((p for p in folder.glob("*.json") if pattern.fullmatch(p.name)), reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("complete") and not data.get("quick"):
            return data
    return None


def spread(values: list[float | None]) -> dict:
    """Median with its min-max over the repeats; NaN and missing values are left out (and counted)."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept), "n": len(kept)}


def format_spread(s: dict, scale: float = 1.0, digits: int = 2) -> str:
    """'12.3 (11.0–14.1)'; '-' when nothing was measured."""
    if s.get("median") is None:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{s['median'] * scale:.{digits}f}"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"
