"""Routing keys and the prefix_affinity choice (rendezvous hashing with a per-replica cap): pure logic."""

from __future__ import annotations

from logic.affinity import choose_ranks, rendezvous_order
from logic.routing_key import hypotheses, routing_key

STATE = "x y : ℕ\nh₀ : x + y = 10\n⊢ x = 6"


def test_the_key_is_the_session_else_the_file_context_else_the_hypotheses():
    assert routing_key(STATE, "thm-1") == routing_key("⊢ other", "thm-1") != routing_key(STATE, "thm-2")
    # A theorem's states share their hypotheses, not their goals.
    assert routing_key(STATE) == routing_key("x y : ℕ\nh₀ : x + y = 10\n⊢ y = 4") != routing_key("z : ℤ\n⊢ z = z")
    llmlean = "[CTX]import Mathlib\ntheorem t : 1 = 1[/CTX][STATE]⊢ 1 = 1[/STATE]"
    assert routing_key(llmlean) == routing_key(llmlean.replace("⊢ 1 = 1", "⊢ 2 = 2")) != routing_key("[CTX]other[/CTX]⊢ 1 = 1")
    # Without hypotheses a state is its own key (a resent state finds its cache), never one shared bucket.
    assert routing_key("⊢ a") == routing_key("⊢ a") != routing_key("⊢ b")
    assert hypotheses("case h\nx : ℕ\n⊢ x = x\n\ncase g\n⊢ True") == "case h\nx : ℕ"


def test_keys_are_digests_that_reveal_no_proof_state():
    key = routing_key("secret_hypothesis : p\n⊢ q")
    assert "secret" not in key and len(key) < 24


def test_rendezvous_moves_only_the_keys_of_a_replica_that_left():
    replicas = ["r1", "r2", "r3", "r4"]
    keys = [routing_key(f"h{i} : p\n⊢ q") for i in range(400)]
    before = {k: rendezvous_order(k, replicas)[0] for k in keys}
    after = {k: rendezvous_order(k, replicas[:3])[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "r4" for k in moved)
    assert 60 < len(moved) < 140  # about a quarter


def test_the_preferred_replica_is_tried_first_until_it_reaches_its_cap():
    loads = {"r1": 0, "r2": 3, "r3": 1}
    key = routing_key(STATE)
    preferred = rendezvous_order(key, list(loads))[0]
    ranks = choose_ranks(key, loads, cap=8)
    assert ranks[0] == [preferred] and sorted(ranks[1]) == sorted(set(loads) - {preferred})
    # Over its cap: the least-loaded replica first, whoever it is; the others are not switched off.
    hot = {**loads, preferred: 8}
    least = min(hot, key=hot.get)
    assert choose_ranks(key, hot, cap=8)[0][0] == least
    # Another key, whose replica is not the hot one, keeps its affinity (no fleet-wide switch).
    cool_key = next(k for k in (routing_key(f"h{i} : p\n⊢ q") for i in range(50)) if rendezvous_order(k, list(hot))[0] != preferred)
    assert choose_ranks(cool_key, hot, cap=8)[0] == [rendezvous_order(cool_key, list(hot))[0]]


def test_requests_without_a_key_go_to_the_least_loaded():
    assert choose_ranks(None, {"a": 5, "b": 1, "c": 3}, cap=8) == [["b", "c", "a"]]
    assert choose_ranks("k", {}, cap=8) == []
