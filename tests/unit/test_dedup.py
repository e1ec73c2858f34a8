"""Cross-call deduplication, the pure part: skip what was returned, per caller, under digests, bounded, expiring."""

from logic.dedup import ReturnedTactics, dedup_key, skip_returned, tactic_digest

ALICE, BOB = "key:a1ice", "key:b0b"  # RequestContext.client of two callers


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
    state = "⊢ " + "x" * 60_000
    key = dedup_key("tiny", ALICE, state, "")
    assert len(key) == 32 and state.encode() not in key
    assert len(tactic_digest("simp" * 1000)) == 16


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
