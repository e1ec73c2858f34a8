"""Cross-call deduplication, the pure part: skip what was returned, per caller, under digests, bounded, expiring."""

from logic.dedup import ReturnedTactics, caller_scope, dedup_key, skip_returned, tactic_digest

ALICE, BOB = caller_scope("alice-key", "127.0.0.1"), caller_scope("bob-key", "127.0.0.1")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def take(memory: ReturnedTactics, key: bytes, tactics: list[str]) -> list[str]:
    """What the service does around the store: digests in, the fresh tactics back."""
    return skip_returned(tactics, memory.take_new(key, [tactic_digest(t) for t in tactics]), lambda t: t)


def test_later_calls_return_only_new_tactics_in_order():
    memory = ReturnedTactics(max_inputs=10, ttl_s=60, max_tactics_per_input=100)
    key = dedup_key("tiny", ALICE, "⊢ x = x", "")
    assert memory.take_new(key, [tactic_digest(t) for t in ["rfl", "simp", "rfl"]]) == [tactic_digest("rfl"), tactic_digest("simp")]
    assert take(memory, key, ["simp", "omega", "rfl", "decide"]) == ["omega", "decide"]
    assert take(memory, key, ["rfl", "simp"]) == []


def test_inputs_prefixes_bundles_and_callers_are_kept_apart():
    memory = ReturnedTactics(max_inputs=10, ttl_s=60, max_tactics_per_input=100)
    assert take(memory, dedup_key("tiny", ALICE, "a", ""), ["simp"]) == ["simp"]
    assert take(memory, dedup_key("tiny", ALICE, "b", ""), ["simp"]) == ["simp"]
    assert take(memory, dedup_key("tiny", ALICE, "a", "si"), ["simp"]) == ["simp"]
    assert take(memory, dedup_key("other", ALICE, "a", ""), ["simp"]) == ["simp"]
    # Bob's answer for the state Alice asked about is whole: her calls do not drain his tactics.
    assert take(memory, dedup_key("tiny", BOB, "a", ""), ["simp"]) == ["simp"]
    assert take(memory, dedup_key("tiny", ALICE, "a", ""), ["simp"]) == []


def test_parts_cannot_run_into_each_other():
    # With a plain separator, ("a\x00b", "c") and ("a", "b\x00c") would share a key.
    assert dedup_key("tiny", ALICE, "c", "a\x00b") != dedup_key("tiny", ALICE, "b\x00c", "a")


def test_keys_and_tactics_are_stored_as_fixed_size_digests():
    state, key_text = "⊢ " + "x" * 60_000, "alice-key"
    key = dedup_key("tiny", caller_scope(key_text, None), state, "")
    assert len(key) == 32 and state.encode() not in key
    assert len(tactic_digest("simp" * 1000)) == 16
    assert key_text not in caller_scope(key_text, None)


def test_without_a_key_the_scope_is_the_client_network():
    assert caller_scope(None, "10.0.0.7") == "net:10.0.0.7" != caller_scope(None, "10.0.0.8")
    # IPv6 clients rotate addresses inside their /64.
    assert caller_scope(None, "2001:db8::1") == caller_scope(None, "2001:db8::ffff") == "net:2001:db8::/64"
    assert caller_scope(None, None) == caller_scope(None, "not-an-ip") == "net:unknown"
    assert caller_scope("k", "10.0.0.7") == caller_scope("k", "10.0.0.8"), "one key is one caller anywhere"


def test_entries_expire_after_ttl():
    clock = Clock()
    memory = ReturnedTactics(max_inputs=10, ttl_s=30, max_tactics_per_input=100, timer=clock)
    key = dedup_key("tiny", ALICE, "s", "")
    take(memory, key, ["simp"])
    clock.now = 29
    assert take(memory, key, ["simp"]) == []
    clock.now = 31
    assert take(memory, key, ["simp"]) == ["simp"]


def test_memory_is_bounded_in_inputs_and_tactics():
    memory = ReturnedTactics(max_inputs=3, ttl_s=60, max_tactics_per_input=2)
    for i in range(10):
        take(memory, dedup_key("tiny", ALICE, f"state {i}", ""), ["simp"])
    assert len(memory) == 3
    key = dedup_key("tiny", ALICE, "s", "")
    take(memory, key, ["a", "b", "c"])  # at most 2 kept: "a", the oldest, is forgotten
    assert take(memory, key, ["c"]) == []
    assert take(memory, key, ["a"]) == ["a"]
