"""The pure parts of bench/compare_stacks.py: the workload every stack shares and the figures it reports."""

from __future__ import annotations

import yaml
from support import REPO_ROOT

from bench.compare_stacks import DOCS_PAGE, TABLE_END, TABLE_START, compare, markdown, update_docs_table
from bench.workload import LEVELS, Workload, config_variant, load_bundle, make_workload

LOCAL = str(REPO_ROOT / "configs" / "local.yaml")


def stack(rates: dict[int, float], p50=1.0, p99=2.0) -> dict:
    return {
        "ready_s": 10.0,
        "peak_memory_gib": 1.5,
        "levels": [
            {"concurrency": c, "summary": {"requests_per_s": r, "latency_p50_s": p50, "latency_p99_s": p99,
                                           "errors_by_status": {}}}
            for c, r in rates.items()
        ],
    }


def test_ratios_and_added_latency():
    stacks = {
        "bare": stack({1: 0.5, 16: 2.0}, p50=1.0, p99=1.5),
        "leanserve": stack({1: 0.4, 16: 1.8}, p50=1.2, p99=2.0),
        "vllm-openai": stack({1: 0.5, 16: 1.5}),
        "seed": stack({1: 0.2, 16: 0.0}),
    }
    result = compare(stacks, (1, 16))
    assert result["throughput_ratios"]["b/a"] == {"1": 0.8, "16": 0.9}
    assert result["throughput_ratios"]["b/c"] == {"1": 0.8, "16": 1.2}
    assert result["throughput_ratios"]["b/d"] == {"1": 2.0, "16": None}  # no division by zero
    assert result["latency_added_over_bare_c1"] == {"p50_s": 0.2, "p99_s": 0.5}
    assert compare({"leanserve": stacks["leanserve"]}, (1, 16)) == {"throughput_ratios": {}, "latency_added_over_bare_c1": {}}


def test_markdown_table_and_docs_section(tmp_path):
    stacks = {"bare": stack({1: 0.5}), "leanserve": stack({1: 0.4}), "seed": {"error": "RuntimeError: boom"}}
    workload = make_workload(LOCAL, quick=True, levels=(1,))
    result = {"date": "2026-11-26T01:00:00+00:00", "quick": True, "machine": {"cpus": 2, "load_before": "1.0",
              "load_after": "2.0"}, "workload": yaml.safe_load(workload.to_json()), "stacks": stacks,
              "comparison": compare(stacks, (1,))}
    table = markdown(result)
    assert "| (b) LeanServe | 10.0 | 1.50 | 0.400 |" in table and "| b/a | 0.80 |" in table
    assert "failed: RuntimeError: boom" in table
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# x\n{TABLE_START}\nold\n{TABLE_END}\nrest\n")
    assert update_docs_table(table, page)
    assert page.read_text() == f"# x\n{TABLE_START}\n{table}{TABLE_END}\nrest\n"


def test_the_docs_page_holds_the_generated_table():
    text = DOCS_PAGE.read_text(encoding="utf-8")
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1, "make bench would not update docs/benchmarks.md"


def test_every_stack_gets_the_same_states_per_level():
    workload = make_workload(LOCAL, quick=True)
    assert workload.levels == LEVELS and workload.n == 4
    offsets = workload.offsets()
    assert offsets[1] == workload.warmup_requests
    for low, high in zip(LEVELS, LEVELS[1:]):
        assert offsets[high] == offsets[low] + workload.requests[low]
    assert Workload.from_json(workload.to_json()) == workload


def test_quick_variant_changes_only_eagerness_and_threads():
    original = load_bundle(LOCAL)
    variant = load_bundle(config_variant(LOCAL, eager=True, omp_threads=1))
    assert variant.engine_args.enforce_eager and variant.deployment.env_vars["OMP_NUM_THREADS"] == "1"
    assert variant.model == original.model and variant.prompt == original.prompt
    assert variant.sampling == original.sampling
