"""Which chat prompt makes SmolLM2-135M-Instruct write tactic-shaped Lean 4 tactics? A benchmark, not a test.

Each variant is a `PromptConfig` plus sampling, rendered with the repo's own `PromptBuilder` and the model's chat
template, exactly as the serving path does it. Every completion is judged with `models/tactics.py`
(`clean_completion(..., chat=True)` then `looks_like_tactic`). Because that shape check also accepts echoed
hypotheses (`h₀ : 0 < y`) and lowercase prose, a stricter figure is reported beside it: the share of candidates
whose first word is a known tactic name.

Evaluation states are miniF2F *valid* goals; the few-shot examples come from proof steps of miniF2F *test*
theorems, so no example gives away an evaluated state. All prompts go to one `llm.generate` call: vLLM batches
them, which roughly doubles throughput on this CPU.

    python -m bench.prompt_eval --states 30 --model .models/smollm2-135m-instruct --out /tmp/prompt_eval.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runnable as `python bench/prompt_eval.py`

from deployments.config import PromptConfig  # noqa: E402
from models.prompts import PromptBuilder, load_chat_renderer  # noqa: E402
from models.tactics import clean_completion, looks_like_tactic  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Short, diverse (state, tactic) pairs from minif2f_proofsteps.jsonl; a variant with k shots takes the first k.
FEW_SHOT = [
    {"state": "a b : ℝ\nh₁ : a * b = 180\nh₂ : 2 * (a + b) = 54\n⊢ a ^ 2 + b ^ 2 = 369", "tactic": "nlinarith [h₁, h₂]"},
    {"state": "⊢ (29 ^ 13 - 5 ^ 13) % 7 = 3", "tactic": "norm_num"},
    {"state": "x y : ℝ\nh₀ : x + y = 25\nh₁ : x - y = 11\n⊢ x = 18", "tactic": "linarith [h₀, h₁]"},
    {"state": "f : ℝ → ℝ\nh₀ : ∀ (x : ℝ), f x = 5 * x + 4\n⊢ f 1 = 9", "tactic": "simp [h₀]"},
    {"state": "x y : ℕ\nh₀ : x % 3 = 2\nh₁ : y % 5 = 4\nh₂ : x % 10 = y % 10\n⊢ 14 ≤ x", "tactic": "omega"},
    {"state": "x : ℝ\nh₀ : x ≠ 0\n⊢ 12 / (x * x) * (x ^ 4 / (14 * x)) * (35 / (3 * x)) = 10", "tactic": "field_simp <;> ring"},
]
SYSTEM = (
    "You are a Lean 4 and Mathlib expert. Given a tactic state, reply with the single next tactic that makes "
    "progress. Reply with the tactic only, on one line, with no explanation."
)
ZERO_SHOT_SYSTEM = "Reply with exactly one Lean 4 tactic."
# The same instruction, plus the tactic names a 135M model should reach for: a vocabulary to copy from.
LIST_SYSTEM = SYSTEM + (
    " Useful tactics: norm_num, simp, linarith, nlinarith, omega, field_simp, ring_nf, positivity, decide, "
    "interval_cases, rw [...], exact ..."
)
STATE_TEMPLATE = "Tactic state:\n{state}"
STOP = ["\n", "<|im_end|>"]


def variant(system: str | None, template: str, shots: int | tuple[int, ...], temperature: float = 0.8,
            top_p: float = 0.95, stop: list[str] = STOP) -> dict:
    """`shots`: how many of FEW_SHOT (the first k), or which of them in which order."""
    shots = tuple(range(shots)) if isinstance(shots, int) else shots
    return {"system": system, "template": template, "shots": shots, "temperature": temperature, "top_p": top_p,
            "stop": stop}


# Round 1 spans the levers coarsely; round 2 refines around the winner (4 shots, low temperature).
ROUND1: dict[str, dict] = {
    "zero-shot": variant(ZERO_SHOT_SYSTEM, "{state}", 0),
    "k3 raw": variant(None, "{state}", 3),
    "k6 raw": variant(None, "{state}", 6),
    "k6 sys raw": variant(SYSTEM, "{state}", 6),
    "k4 sys tmpl": variant(SYSTEM, STATE_TEMPLATE, 4),
    "k6 sys tmpl": variant(SYSTEM, STATE_TEMPLATE, 6),
    "k6 sys tmpl T0.6": variant(SYSTEM, STATE_TEMPLATE, 6, 0.6),
    "k6 sys tmpl T1.0": variant(SYSTEM, STATE_TEMPLATE, 6, 1.0),
    "k6 sys tmpl no-nl-stop": variant(SYSTEM, STATE_TEMPLATE, 6, stop=["<|im_end|>"]),
    "k6 list tmpl": variant(LIST_SYSTEM, STATE_TEMPLATE, 6),
    "k6 list tmpl T0.6": variant(LIST_SYSTEM, STATE_TEMPLATE, 6, 0.6),
}
ROUND2: dict[str, dict] = {
    "k4 sys tmpl (again)": variant(SYSTEM, STATE_TEMPLATE, 4),
    "k4 sys tmpl T0.6": variant(SYSTEM, STATE_TEMPLATE, 4, 0.6),
    "k4 sys tmpl T0.6 p0.9": variant(SYSTEM, STATE_TEMPLATE, 4, 0.6, 0.9),
    "k4 list tmpl T0.6": variant(LIST_SYSTEM, STATE_TEMPLATE, 4, 0.6),
    "k4 list tmpl T0.8": variant(LIST_SYSTEM, STATE_TEMPLATE, 4, 0.8),
    "k3 sys tmpl T0.6": variant(SYSTEM, STATE_TEMPLATE, 3, 0.6),
    "k5 sys tmpl T0.6": variant(SYSTEM, STATE_TEMPLATE, 5, 0.6),
    "k6 reordered sys tmpl T0.6": variant(SYSTEM, STATE_TEMPLATE, (1, 5, 4, 0, 3, 2), 0.6),
    "k4 sys raw T0.6": variant(SYSTEM, "{state}", 4, 0.6),
    "k4 default-sys tmpl T0.6": variant(None, STATE_TEMPLATE, 4, 0.6),
}
VARIANTS = {**ROUND1, **ROUND2}
MAX_TOKENS, N = 48, 4

# Heads of common Lean 4 / Mathlib tactics: stricter than `looks_like_tactic`, for reporting only.
KNOWN_TACTICS = frozenset(
    """abel aesop all_goals any_goals apply assumption bound by_cases by_contra calc cases change congr constructor
    contradiction contrapose conv conv_lhs conv_rhs decide exact exact_mod_cast exacts ext field_simp fin_cases
    gcongr have induction interval_cases intro intros left let linarith linear_combination native_decide nlinarith
    norm_cast norm_num numbers obtain omega polyrith positivity push_cast push_neg rcases refine revert rfl right
    ring ring_nf rintro rw rwa show simp simp_all simp_arith simpa specialize split split_ifs subst suffices
    tauto trivial unfold use zify qify""".split()
)


def tactic_head(text: str) -> str:
    return text.split(maxsplit=1)[0].rstrip("!?'") if text.strip() else ""


def load_states(count: int, seed: int) -> list[str]:
    rows = [json.loads(line) for line in (DATA / "minif2f_goals.jsonl").open(encoding="utf-8")]
    goals = [row["goal"] for row in rows if row["split"] == "valid"]
    return random.Random(seed).sample(goals, min(count, len(goals)))


def prompt_config(v: dict) -> PromptConfig:
    shots = [FEW_SHOT[i] for i in v["shots"]]
    return PromptConfig(chat=True, system=v["system"], template=v["template"], few_shot=shots)


def judge(texts: list[str], few_shot_tactics: set[str]) -> dict[str, object]:
    cleaned = [clean_completion(text, prefix="", chat=True) for text in texts]
    shaped = [c for c in cleaned if c is not None and looks_like_tactic(c)]
    return {
        "shaped": shaped,
        "known": [c for c in shaped if tactic_head(c) in KNOWN_TACTICS],
        "copied": [c for c in shaped if c in few_shot_tactics],
    }


def summarize(name: str, states: list[str], outputs: list[list[str]], few_shot_tactics: set[str]) -> dict:
    total = n_shaped = n_known = n_copied = distinct = distinct_known = with_any = 0
    samples = []
    for state, texts in zip(states, outputs):
        verdict = judge(texts, few_shot_tactics)
        total += len(texts)
        n_shaped += len(verdict["shaped"])
        n_known += len(verdict["known"])
        n_copied += len(verdict["copied"])
        distinct += len(set(verdict["shaped"]))
        distinct_known += len(set(verdict["known"]))
        with_any += bool(verdict["shaped"])
        samples.append({"state": state, "raw": texts, "shaped": verdict["shaped"]})
    return {
        "variant": name,
        "shaped_frac": n_shaped / total,
        "known_head_frac": n_known / total,
        "copied_few_shot_frac": n_copied / total,
        "distinct_shaped_per_state": distinct / len(states),
        "distinct_known_per_state": distinct_known / len(states),
        "states_with_shaped": with_any / len(states),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=30, help="how many miniF2F valid goals to evaluate")
    parser.add_argument("--model", type=Path, help="HF folder (default: prepare .models/smollm2-135m-instruct)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    parser.add_argument("--latency-requests", type=int, default=3, help="sequential requests timed first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the full results (all completions) as JSON here")
    args = parser.parse_args()

    from models.prepare import prepare_smollm2

    model = args.model or prepare_smollm2(Path(".models"))
    states = load_states(args.states, args.seed)
    render = load_chat_renderer(str(model))

    started = time.perf_counter()
    import vllm

    imported = time.perf_counter()
    llm = vllm.LLM(
        model=str(model), dtype="float32", kv_cache_memory_bytes=1 << 30, enforce_eager=True, seed=args.seed
    )
    ready = time.perf_counter()
    print(f"import vllm {imported - started:.1f} s, engine ready {ready - imported:.1f} s", flush=True)
    try:
        prompts, params, spans = [], [], {}
        for name in args.variants:
            v = VARIANTS[name]
            builder = PromptBuilder(prompt_config(v), render)
            sampling = vllm.SamplingParams(n=N, temperature=v["temperature"], top_p=v["top_p"],
                                           max_tokens=MAX_TOKENS, stop=v["stop"], logprobs=0)
            spans[name] = (len(prompts), len(prompts) + len(states))
            prompts += [builder.build(state) for state in states]
            params += [sampling] * len(states)

        # Latency of one request at a time (concurrency 1), on the first variant's first states.
        latencies = []
        for prompt, sampling in list(zip(prompts, params))[: args.latency_requests]:
            t0 = time.perf_counter()
            llm.generate([prompt], sampling, use_tqdm=False)
            latencies.append(time.perf_counter() - t0)
        if latencies:
            print(f"sequential: {sum(latencies) / len(latencies):.2f} s per request (n={N})", flush=True)

        t0 = time.perf_counter()
        results = llm.generate(prompts, params, use_tqdm=False)
        batch_s = time.perf_counter() - t0
        print(f"batched: {len(prompts)} requests in {batch_s:.0f} s = {len(prompts) / batch_s:.2f} req/s", flush=True)
    finally:
        llm.llm_engine.engine_core.shutdown()  # the engine core is a separate process: never leave it behind

    report = {"model": str(model), "states": len(states), "engine_ready_s": ready - imported,
              "sequential_s": latencies, "batch_req_per_s": len(prompts) / batch_s, "variants": []}
    print(f"\n{'variant':26} shaped  known  copied  distinct/state  known-distinct/state  states-with-any")
    for name, (lo, hi) in spans.items():
        outputs = [[c.text for c in r.outputs] for r in results[lo:hi]]
        few = {FEW_SHOT[i]["tactic"] for i in VARIANTS[name]["shots"]}
        row = summarize(name, states, outputs, few)
        report["variants"].append(row)
        print(f"{name:26} {row['shaped_frac']:6.2f} {row['known_head_frac']:6.2f} {row['copied_few_shot_frac']:7.2f}"
              f" {row['distinct_shaped_per_state']:15.2f} {row['distinct_known_per_state']:21.2f}"
              f" {row['states_with_shaped']:16.2f}")
        for sample in row["samples"][:3]:
            print(f"    {sample['state'][-60:]!r} -> {sample['raw']!r}")
    if args.out:
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
