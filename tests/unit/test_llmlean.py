"""LLMLean's prompts taken apart (logic/llmlean.py), on the prompts its Lean code builds (tests/support.py
reproduces `LLMlean/API/Prompts.lean` verbatim), and the Ollama sample window (logic/sample_bank.py)."""

from __future__ import annotations

import asyncio

import pytest
from support import llmlean_fewshot_prompts, llmlean_instruct_prompt, llmlean_qed_instruct_prompt, llmlean_split_tac

from logic.llmlean import LeanPrompt, continuation, parse_prompt, proof_after_statement, split_marked
from logic.sample_bank import SampleBank

CONTEXT = "import Mathlib\n\ntheorem foo (a b : ℕ) (h : a = b) : b = a := by\n  "
STATE = "a b : ℕ\nh : a = b\n⊢ b = a"

REASONING = (
    "/- You are proving a theorem in Lean 4.\nYou are given the following information:\n"
    "- The file contents up to the current tactic, inside [CTX]...[/CTX]\n"
    "- The current proof state, inside [STATE]...[/STATE]\n\n"
    "Your task is to generate the next tactic in the proof.\nPut the next tactic inside [TAC]...[/TAC].\n"
    "If you find it helpful, you can precede the proof with brief thoughts inside [THOUGHTS]...[/THOUGHTS]\n"
    "In summary, your output should be of the form:\n[THOUGHTS]\n...\n[/THOUGHTS]\n[TAC]\n...\n[/TAC]\n\n"
    "[CTX]\n{context}\n[/CTX]\n[STATE]\n{state}\n[/STATE]\n[THOUGHTS]\n{pre}"
)


@pytest.mark.parametrize("prefix", ["", "rw [", "exact h.symm"])
def test_instruction_and_reasoning_prompts_give_back_state_prefix_and_context(prefix):
    expected = LeanPrompt("tactic", STATE, prefix, CONTEXT)
    assert parse_prompt(llmlean_instruct_prompt(CONTEXT, STATE, prefix)) == expected
    assert parse_prompt(REASONING.format(context=CONTEXT, state=STATE, pre=prefix)) == expected


@pytest.mark.parametrize("prefix", ["", "simp"])
def test_few_shot_prompt_gives_back_the_users_state_not_an_examples(prefix):
    first, second = llmlean_fewshot_prompts(CONTEXT, STATE, prefix)
    assert parse_prompt(first) == LeanPrompt("tactic", STATE, prefix)
    # Without a prefix the second prompt is the file itself: a plain prompt.
    assert parse_prompt(second) == (None if prefix == "" else LeanPrompt("tactic", STATE, prefix))


def test_a_multi_goal_state_stays_whole():
    state = "case inl\nh : p\n⊢ p ∨ q\n\ncase inr\nh : q\n⊢ p ∨ q"
    assert parse_prompt(llmlean_instruct_prompt(CONTEXT, state, "")).state == state


def test_the_whole_proof_prompt_gives_back_the_theorem():
    assert parse_prompt(llmlean_qed_instruct_prompt(CONTEXT.rstrip())) == LeanPrompt("proof", context=CONTEXT.rstrip())


@pytest.mark.parametrize("text", ["hello", "[CTX]\nx\n[/CTX]", "Tactic state:\n---\nx", "", "[STATE]\nx\n[/STATE]\n[TAC]\n"])
def test_other_texts_are_plain_prompts(text):
    assert parse_prompt(text) is None


@pytest.mark.parametrize(
    "text", ["simp", "  simp  ", "[TAC]\nsimp\n[/TAC]", "thoughts [TAC] simp [/TAC] more", "simp[/TAC]junk", "a[TAC]b[TAC]c"]
)
def test_split_marked_is_llmleans_split_tac(text):
    assert split_marked(text, "[TAC]", "[/TAC]") == llmlean_split_tac(text)


def test_continuation_leaves_the_prefix_off():
    assert continuation("rw [h]", "rw ") == "[h]"
    assert continuation("simp", "") == "simp"


def test_the_proof_is_what_follows_the_statement():
    statement = "theorem t (n : ℕ) : n + 0 = n := by"
    assert proof_after_statement(f"import Mathlib\n{statement}\n  simp", f"import Mathlib\n{statement}") == "  simp"
    assert proof_after_statement(f"{statement}\n  simp", f"import Mathlib\n\n{statement}") == "  simp"
    assert proof_after_statement("theorem other : True := by\n  trivial", statement) == "  trivial"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


async def test_the_bank_hands_out_one_batch_one_answer_at_a_time_then_samples_again():
    clock, batches = Clock(), []

    async def sample():
        batches.append(len(batches))
        return [f"t{len(batches)}a", f"t{len(batches)}b"]

    bank = SampleBank(window_s=10, clock=clock)
    assert [await bank.take("k", sample) for _ in range(3)] == ["t1a", "t1b", "t2a"]
    assert bank.fills == 2


async def test_the_bank_forgets_after_its_window_and_keeps_clients_apart():
    clock = Clock()

    async def sample():
        return ["x", "y"]

    bank = SampleBank(window_s=10, clock=clock)
    assert await bank.take(("alice", "p"), sample) == "x"
    assert await bank.take(("bob", "p"), sample) == "x"  # bob's own batch, not alice's leftovers
    clock.now = 11
    assert await bank.take(("alice", "p"), sample) == "x"
    assert bank.fills == 3


async def test_concurrent_identical_requests_share_one_sample_and_get_distinct_answers():
    release = asyncio.Event()
    calls = 0

    async def sample():
        nonlocal calls
        calls += 1
        await release.wait()
        return ["a", "b", "c"]

    bank = SampleBank(window_s=10, clock=Clock())
    tasks = [asyncio.create_task(bank.take("k", sample)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    assert sorted(await asyncio.gather(*tasks)) == ["a", "b", "c"] and calls == 1


async def test_the_bank_is_bounded():
    bank = SampleBank(window_s=10, clock=Clock(), max_entries=2)

    async def sample():
        return ["x", "y"]

    for key in range(5):
        await bank.take(key, sample)
    assert len(bank) == 2
