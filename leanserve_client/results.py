"""Load-test results to files: JSON (summaries and every record) and CSV (one row per request)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leanserve_client.loadgen import LevelResult

CSV_FIELDS = ["level", "index", "sent_at_s", "latency_s", "status", "candidates", "state_chars", "error"]


def _finite(value: Any) -> Any:
    """JSON has no NaN: a missing percentile (no successful request) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(results: list[LevelResult], path: str | Path, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta or {}, "levels": [r.as_dict() for r in results]}
    path.write_text(json.dumps(_finite(document), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_csv(results: list[LevelResult], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            for record in result.records:
                writer.writerow(record.as_row())
    return path


def summary_rows(results: list[LevelResult]) -> list[dict]:
    """One flat row per level, for a table (pandas-free)."""
    rows = []
    for result in results:
        s = result.summary
        rows.append(
            {
                "level": result.level,
                "requests": s.requests,
                "ok": s.ok,
                "req/s": round(s.requests_per_s, 3),
                "cand/s": round(s.candidates_per_s, 2),
                "p50 s": round(s.latency_p50_s, 3),
                "p90 s": round(s.latency_p90_s, 3),
                "p99 s": round(s.latency_p99_s, 3),
                "errors": ", ".join(f"{k}: {v}" for k, v in s.errors_by_status.items()) or "-",
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row[h]) for h in headers) + " |" for row in rows]
    return "\n".join(lines)
