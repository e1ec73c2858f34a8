"""Paths and request builders shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_path(name: str) -> Path:
    return SHARED_DATA / name


def leancopilot_bytes(payload: dict) -> bytes:
    """The body as LeanCopilot's Lean client sends it: `toString (toJson req)`, which is Lean's `Json.pretty`:
    keys sorted (Lean's JSON objects are ordered maps), a space after every `:` and `,`, raw UTF-8, e.g.
    `{"input": "⊢ True", "name": "tiny", "prefix": ""}`. (Past 80 columns Json.pretty also breaks lines;
    JSON parsers ignore that whitespace, so one line stands for it.)"""
    return json.dumps(payload, ensure_ascii=False, separators=(", ", ": "), sort_keys=True).encode("utf-8")


LEANCOPILOT_HEADERS = {"accept": "application/json", "Content-Type": "application/json"}


def lean_goals(count: int = 16) -> list[str]:
    """`count` real miniF2F goals spread over the range of lengths (multi-goal states included)."""
    with shared_data_path("minif2f_goals.jsonl").open(encoding="utf-8") as rows:
        goals = sorted((json.loads(line)["goal"] for line in rows), key=len)
    step = max(1, len(goals) // count)
    return goals[::step][:count]


def processes_matching(fragment: str):
    """Live processes whose command line holds `fragment` (Ray names replicas `ray::ServeReplica:APP:DEPLOYMENT`)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if fragment in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def descendants(processes) -> list:
    import psutil

    found = []
    for proc in processes:
        try:
            found += proc.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    return found


def still_running(processes) -> list:
    import psutil

    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive
