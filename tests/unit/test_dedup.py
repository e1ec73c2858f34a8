"""Cross-call deduplication, the pure part: skip what was returned, bounded, expiring."""

from logic.dedup import ReturnedTactics, dedup_key


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_later_calls_return_only_new_tactics_in_order():
    memory = ReturnedTactics(max_inputs=10, ttl_s=60, max_tactics_per_input=100)
    key = dedup_key("⊢ x = x", "")
    assert memory.take_new(key, ["rfl", "simp", "rfl"]) == ["rfl", "simp"]
    assert memory.take_new(key, ["simp", "omega", "rfl", "decide"]) == ["omega", "decide"]
    assert memory.take_new(key, ["rfl", "simp"]) == []


def test_inputs_and_prefixes_are_kept_apart():
    memory = ReturnedTactics(max_inputs=10, ttl_s=60, max_tactics_per_input=100)
    assert memory.take_new(dedup_key("a", ""), ["simp"]) == ["simp"]
    assert memory.take_new(dedup_key("b", ""), ["simp"]) == ["simp"]
    assert memory.take_new(dedup_key("a", "si"), ["simp"]) == ["simp"]


def test_entries_expire_after_ttl():
    clock = Clock()
    memory = ReturnedTactics(max_inputs=10, ttl_s=30, max_tactics_per_input=100, timer=clock)
    key = dedup_key("s", "")
    memory.take_new(key, ["simp"])
    clock.now = 29
    assert memory.take_new(key, ["simp"]) == []
    clock.now = 31
    assert memory.take_new(key, ["simp"]) == ["simp"]


def test_memory_is_bounded_in_inputs_and_tactics():
    memory = ReturnedTactics(max_inputs=3, ttl_s=60, max_tactics_per_input=2)
    for i in range(10):
        memory.take_new(dedup_key(f"state {i}", ""), ["simp"])
    assert len(memory) == 3
    key = dedup_key("s", "")
    memory.take_new(key, ["a", "b", "c"])  # at most 2 kept: "a", the oldest, is forgotten
    assert memory.take_new(key, ["c"]) == []
    assert memory.take_new(key, ["a"]) == ["a"]
