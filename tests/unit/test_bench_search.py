"""The pure parts of bench/proof_search.py: the search replay, interleaving and the reported ratios."""

from __future__ import annotations

from bench.proof_search import editor_ratios, interleaved, routing_ratios, search_summary
from bench.search_workload import SearchPlan, expansions, spread, theorem_states
from logic.routing_key import routing_key


def test_the_replay_sends_each_theorems_states_repeatedly_and_they_share_a_key():
    plan = SearchPlan(theorems=10, resends=2, min_states=3)
    theorems = expansions(plan)
    assert len(theorems) == 10
    for sends in theorems:
        assert len(sends) >= 6 and all(sends.count(s) == 2 for s in set(sends))  # every state twice
    # A theorem's states mostly share their hypotheses, so they share routing keys (a tactic that changes a
    # hypothesis starts a new key; a theorem without hypotheses has one key per state).
    shared = [len({routing_key(s) for s in sends}) < len(set(sends)) for sends in theorems]
    assert sum(shared) >= 5
    assert expansions(plan) == theorems  # seeded: every variant replays the same search
    assert len(theorem_states()) > 100


def test_variants_interleave_and_ratios_come_with_their_spread():
    assert interleaved(["a", "b", "c"], 2) == [(0, "a"), (0, "b"), (0, "c"), (1, "c"), (1, "b"), (1, "a")]
    assert spread([2.0, None, 1.0, 3.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    ok = [{"status": 200, "prompt": 100, "cached": 60, "replica": "r1", "latency_s": 1.0},
          {"status": 503, "latency_s": 0.0}]
    summary = search_summary(ok, wall_s=2.0)
    assert summary | {"wall_s": 2.0} == {"requests": 2, "ok": 1, "errors": {"503": 1}, "wall_s": 2.0,
                                         "requests_per_s": 0.5, "hit_rate": 0.6, "per_replica": [1]}
    run = {"requests_per_s": 2.0, "hit_rate": 0.5}
    runs = {"one-replica": [run], "power-of-two": [run], "prefix-affinity": [{"requests_per_s": 3.0, "hit_rate": 0.75}]}
    ratios = routing_ratios(runs)
    assert ratios["throughput_affinity_over_power_of_two"]["median"] == 1.5
    assert ratios["hit_rate_affinity_over_power_of_two"]["median"] == 1.5
    editor = {"alone": [{"p50_s": 1.0, "p99_s": 2.0}], "no-priorities": [{"p50_s": 4.0, "p99_s": 8.0}],
              "priorities": [{"p50_s": 1.5, "p99_s": 3.0}]}
    assert editor_ratios(editor)["priorities_p99_s_over_alone"]["median"] == 1.5
