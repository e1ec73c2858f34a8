"""The pure parts of bench/overhead.py and bench/results_io.py: results files that are never overwritten,
figures from interleaved repeats (medians, spread, failures, same-repeat ratios), and the docs' table."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bench.overhead import (
    TABLE_END,
    TABLE_START,
    docs_section,
    goals,
    make_suite,
    suite_markdown,
    summarize,
    update_docs,
)
from bench.results_io import format_spread, latest_full_run, new_results_path, spread, write_new

NOW = datetime(2026, 12, 1, 22, 30, 5, tzinfo=UTC)


def test_results_are_named_by_utc_timestamp_and_never_overwritten(tmp_path):
    first = write_new("overhead-noop", {"run": 1}, now=NOW, folder=tmp_path)
    second = write_new("overhead-noop", {"run": 2}, now=NOW, folder=tmp_path)  # same second
    assert first.name == "20261201T223005Z-overhead-noop.json"
    assert second.name == "20261201T223005Z-overhead-noop-2.json"
    assert json.loads(first.read_text()) == {"run": 1} and json.loads(second.read_text()) == {"run": 2}
    runs = new_results_path("overhead-noop", ".runs.jsonl", now=NOW, folder=tmp_path)
    assert runs.name == "20261201T223005Z-overhead-noop.runs.jsonl" and runs.read_text() == ""


def test_latest_full_run_skips_quick_partial_and_other_suites(tmp_path):
    write_new("overhead-noop", {"complete": True, "quick": False, "id": "old"}, now=NOW, folder=tmp_path)
    write_new("overhead-noop", {"complete": True, "quick": False, "id": "new"}, now=NOW.replace(minute=40), folder=tmp_path)
    write_new("overhead-noop", {"complete": True, "quick": True, "id": "quick"}, now=NOW.replace(minute=50), folder=tmp_path)
    write_new("overhead-noop", {"complete": False, "quick": False, "id": "partial"}, now=NOW.replace(hour=23),
              folder=tmp_path)
    write_new("overhead-noop-x", {"complete": True, "quick": False, "id": "other"}, now=NOW.replace(hour=23),
              folder=tmp_path)
    assert latest_full_run("overhead-noop", tmp_path)["id"] == "new"
    assert latest_full_run("overhead-tiny", tmp_path) is None


def test_spread_leaves_out_missing_values():
    assert spread([3.0, None, 1.0, float("nan"), 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([None]) == {"median": None, "min": None, "max": None, "n": 0}
    assert format_spread(spread([0.010, 0.012, 0.011]), 1000, 1) == "11.0 (10.0–12.0)"
    assert format_spread(spread([])) == "-"


def level(c: int, rate: float, p50: float, p99: float, requests: int = 10, ok: int | None = None) -> dict:
    ok = requests if ok is None else ok
    errors = {"503": requests - ok} if ok < requests else {}
    return {"concurrency": c, "summary": {"requests_per_s": rate, "latency_p50_s": p50, "latency_p99_s": p99,
                                         "requests": requests, "ok": ok, "errors_by_status": errors}}


def run(stack: str, repeat: int, rates: dict[int, float], p50: float = 0.01, p99: float = 0.02, ok16: int = 10) -> dict:
    levels = [level(c, r, p50, p99, ok=ok16 if c == 16 else None) for c, r in rates.items()]
    return {"stack": stack, "repeat": repeat, "result": {"ready_s": 5.0, "peak_memory_gib": 1.0, "levels": levels},
            "machine": {"load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 1.0, 1.0], "other_cpu_share": 0.1}}


def interleaved_runs() -> list[dict]:
    # Repeat 1 ran on a loaded machine: both stacks are slower there, their ratio is not.
    return [
        run("lean", 0, {1: 80, 16: 200}, p50=0.020, p99=0.040), run("serve", 0, {1: 100, 16: 250}, p50=0.010, p99=0.020),
        run("lean", 1, {1: 40, 16: 100}, p50=0.040, p99=0.060, ok16=7), run("serve", 1, {1: 50, 16: 125}, p50=0.030),
        run("lean", 2, {1: 90, 16: 180}, p50=0.015, p99=0.030), run("serve", 2, {1: 100, 16: 200}, p50=0.010),
    ]


def test_figures_are_medians_with_spread_and_ratios_within_each_repeat():
    figures = summarize(interleaved_runs(), (1, 16), (("lean", "serve"),))
    lean = figures["stacks"]["lean"]
    assert lean["levels"]["1"]["requests_per_s"] == {"median": 80, "min": 40, "max": 90, "n": 3}
    assert lean["levels"]["16"]["failed"] == 3 and lean["levels"]["1"]["failed"] == 0
    assert lean["max_requests_per_s"]["median"] == 180
    ratio = figures["ratios"]["lean / serve"]
    # Repeat by repeat: 0.8, 0.8, 0.9 at c=1 (not median(lean) / median(serve) = 0.8 by accident of the data).
    assert ratio["throughput"]["1"] == pytest.approx({"median": 0.8, "min": 0.8, "max": 0.9, "n": 3})
    assert ratio["throughput"]["16"] == pytest.approx({"median": 0.8, "min": 0.8, "max": 0.9, "n": 3})
    assert ratio["latency_added_c1_s"]["p50"] == pytest.approx({"median": 0.010, "min": 0.005, "max": 0.010, "n": 3})


def test_a_failed_run_counts_and_never_flatters_the_medians():
    runs = interleaved_runs()
    runs[4] = {"stack": "lean", "repeat": 2, "result": {"error": "RuntimeError: never healthy"}, "machine": {}}
    figures = summarize(runs, (1, 16), (("lean", "serve"),), requests={1: 10, 16: 10})
    lean = figures["stacks"]["lean"]
    assert lean["failed_runs"] == 1 and lean["errors"] == ["RuntimeError: never healthy"]
    assert lean["levels"]["1"]["failed"] == 10 and lean["levels"]["16"]["failed"] == 3 + 10
    assert lean["levels"]["1"]["requests_per_s"]["n"] == 2
    assert figures["ratios"]["lean / serve"]["throughput"]["1"]["n"] == 2


def test_goals_are_judged_on_the_median_of_same_repeat_figures():
    runs = [run("tiny-leanserve", i, {1: 5, 16: 30}, p50=0.060) for i in range(3)]
    runs += [run("tiny-bare", i, {1: 6, 16: 40}, p50=0.050) for i in range(3)]
    figures = summarize(runs, (1, 16), (("tiny-leanserve", "tiny-bare"),))
    verdicts = {g["goal"]: g["met"] for g in goals("tiny", figures)}
    assert verdicts == {"tiny c=1: LeanServe adds <= 15 ms p50 over the bare engine": True,
                        "tiny c=16: LeanServe throughput >= 0.7x the bare engine": True}
    runs = [run("noop-leanserve", i, {1: 50, 16: 70}) for i in range(3)] + [run("noop-serve", i, {1: 60, 16: 100})
                                                                            for i in range(3)]
    noop = goals("noop", summarize(runs, (1, 16), (("noop-leanserve", "noop-serve"),)))
    assert [(g["median"], g["met"]) for g in noop] == [(pytest.approx(0.7), False)]


def result_file(suite: str, date: str, quick: bool = False) -> dict:
    runs = interleaved_runs()
    figures = summarize(runs, (1, 16), (("lean", "serve"),))
    return {"suite": suite, "date": date, "quick": quick, "complete": True, "repeats": 3,
            "order": ["lean", "serve"], "levels": [1, 16], "requests": {"1": 10, "16": 10}, "machine": {"cpus": 2},
            "runs": runs, "figures": figures, "goals": [], "stack_specs": [{"name": "lean", "note": "a note"}]}


def test_the_table_shows_spread_failures_and_ratios():
    table = suite_markdown(result_file("noop", "2026-12-01T22:30:05+00:00"))
    assert "| lean | 80.0 (40.0–90.0) | 180.0 (100.0–200.0) | 20.0 (15.0–40.0) | 40.0 (30.0–60.0) | 0/3 | 5 |" in table
    assert "| lean / serve | 0.80 (0.80–0.90) | 0.80 (0.80–0.90) | 0.80 (0.80–0.90) | 10.0 (5.0–10.0) |" in table
    assert "3 repeats interleaved (lean serve)" in table and "- `lean`: a note" in table


def test_the_docs_take_the_latest_full_run_of_each_suite(tmp_path):
    write_new("overhead-noop", result_file("noop", "FIRST"), now=NOW, folder=tmp_path)
    write_new("overhead-noop", result_file("noop", "LATEST"), now=NOW.replace(hour=23), folder=tmp_path)
    write_new("overhead-noop", result_file("noop", "QUICK", quick=True), now=NOW.replace(hour=23, minute=59),
              folder=tmp_path)
    section = docs_section(tmp_path)
    assert "run LATEST" in section and "FIRST" not in section and "QUICK" not in section
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# x\n{TABLE_START}\nold\n{TABLE_END}\nrest\n")
    assert update_docs(section, page)
    assert page.read_text() == f"# x\n{TABLE_START}\n{section}{TABLE_END}\nrest\n"


def test_the_docs_page_holds_the_overhead_table():
    from bench.compare_stacks import DOCS_PAGE

    text = DOCS_PAGE.read_text(encoding="utf-8")
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1, "make bench would not update docs/benchmarks.md"


def test_each_tuning_candidate_changes_one_thing_against_the_default():
    from bench.configs import write_config
    from bench.workload import load_bundle
    from core.config import load_serve_config

    suite = make_suite("tuning", quick=False)
    base = next(s for s in suite.stacks if s.name == "noop-leanserve")
    assert ("noop-leanserve@throughput-optimized", "noop-leanserve") in suite.ratios
    for stack in suite.stacks:
        args = load_serve_config(write_config(stack.config, "test")).applications[0].args  # validates
        changed = {k for k, v in args.ingress.model_dump().items()
                   if v != load_serve_config(write_config(base.config, "test")).applications[0].args.ingress.model_dump()[k]}
        assert len(changed) + len(stack.env) + bool(stack.variant) <= 1, stack.name
        if stack.kind == "noop-leanserve" and stack is not base:
            assert len(changed) + len(stack.env) == 1, f"{stack.name} changes nothing"
    assert load_bundle(write_config(base.config, "test")).model == "bench/noop"


def test_vllm_bench_levels_read_like_the_load_generators():
    from bench.vllm_bench import SHIM, as_level, bench_command

    entry = {"concurrency": 16, "completed": 90, "failed": 6, "request_throughput": 12.5, "p50_e2el_ms": 40.0,
             "p99_e2el_ms": 90.0}
    level = as_level(entry)
    assert level["summary"] == {"requests": 96, "ok": 90, "requests_per_s": 12.5, "latency_p50_s": 0.04,
                                "latency_p99_s": 0.09, "errors_by_status": {"failed": 6}}
    assert as_level({"concurrency": 1, "error": "vllm bench serve exited 1"}) == {"concurrency": 1,
                                                                                  "error": "vllm bench serve exited 1"}
    figures = summarize([{"stack": "a", "repeat": 0, "result": {"levels": [level, as_level({"concurrency": 1, "error": "x"})]}}],
                        (1, 16), (), requests={1: 24, 16: 96})
    assert figures["stacks"]["a"]["levels"]["16"]["failed"] == 6 and figures["stacks"]["a"]["levels"]["1"]["failed"] == 24
    command = bench_command("http://h:1", "tiny", "/tok", 16, 96, 32, 12, "/out", "c16.json")
    assert command[1:3] == ["-c", SHIM] and command[3:5] == ["bench", "serve"]
    assert command[command.index("--endpoint") + 1] == "/v1/completions" and "--ignore-eos" in command


def test_each_tiny_model_candidate_switches_one_serve_setting_on_the_same_engine():
    suite = make_suite("tiny-tuning", quick=False)
    base = suite.stacks[0]
    assert base.name == "tiny-leanserve" and not base.env
    for stack in suite.stacks[1:]:
        assert stack.kind == "leanserve" and stack.config == base.config, stack.name
        assert len(stack.env) == 1 and stack.note, stack.name
        assert (stack.name, base.name) in suite.ratios


def test_the_tiny_suite_puts_serves_floor_around_the_same_engine_call():
    suite = make_suite("tiny", quick=False)
    stacks = {s.name: s for s in suite.stacks}
    floor = stacks["tiny-serve"]
    # bench/noop_stacks.py's trivial Serve app, its deployment holding the engine the bare stack calls
    assert (floor.kind, floor.variant) == ("noop-serve", "vllm")
    assert floor.config == stacks["tiny-bare"].config == stacks["tiny-leanserve"].config
    assert {("tiny-leanserve", "tiny-serve"), ("tiny-serve", "tiny-bare")} <= set(suite.ratios)


def test_the_batched_hop_candidate_changes_only_serves_floors_hop():
    suite = make_suite("batched-hop", quick=False)
    stacks = {s.name: s for s in suite.stacks}
    floor, batched = stacks["tiny-serve"], stacks["tiny-serve@batched-hop"]
    # the same trivial Serve app and engine, its ingress batching the handle calls (bench/noop_stacks.py)
    assert (floor.variant, batched.variant) == ("vllm", "vllm-batched")
    assert batched.kind == floor.kind and batched.config == floor.config == stacks["tiny-bare"].config
    assert not batched.env and batched.note
    assert ("tiny-serve@batched-hop", "tiny-serve") in suite.ratios
