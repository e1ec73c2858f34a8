"""Which chat prompt makes SmolLM2-135M-Instruct write tactic-shaped Lean 4 tactics? A benchmark, not a test.

Each variant is a `PromptConfig` plus sampling, rendered with the repo's own `PromptBuilder` and the model's chat
template, exactly as the serving path does it. Every completion is judged with `logic/tactics.py`
(`clean_completion(..., chat=True)` then `looks_like_tactic`). That shape check cannot tell lowercase prose or an
invented tactic name from a tactic, so two stricter figures are reported beside it: `known` (the first word is a
known tactic name) and `plausible` (known, finished, brackets balanced, and every hypothesis it names exists in the
state). Neither runs Lean: a plausible tactic may still fail.

Evaluation states are miniF2F *valid* goals; the few-shot examples come from proof steps of miniF2F *test*
theorems, so no example gives away an evaluated state. The engine is LeanServe's own `VLLMEngine`; all prompts are
sent to it at once and it batches them, which is several times faster on this CPU than one at a time.

    python -m bench.prompt_eval --states 30 --model .models/smollm2-135m-instruct --out /tmp/prompt_eval.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runnable as `python bench/prompt_eval.py`

from core.config import PromptConfig  # noqa: E402
from logic.prompts import PromptBuilder  # noqa: E402
from logic.tactics import clean_completion, looks_like_tactic  # noqa: E402
from models.chat_template import load_chat_renderer  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Short, diverse (state, tactic) pairs from minif2f_proofsteps.jsonl; a variant with k shots takes the first k.
FEW_SHOT = [
    {"state": "a b : ℝ\nh₁ : a * b = 180\nh₂ : 2 * (a + b) = 54\n⊢ a ^ 2 + b ^ 2 = 369",
     "tactic": "nlinarith [h₁, h₂]"},
    {"state": "⊢ (29 ^ 13 - 5 ^ 13) % 7 = 3", "tactic": "norm_num"},
    {"state": "x y : ℝ\nh₀ : x + y = 25\nh₁ : x - y = 11\n⊢ x = 18", "tactic": "linarith [h₀, h₁]"},
    {"state": "f : ℝ → ℝ\nh₀ : ∀ (x : ℝ), f x = 5 * x + 4\n⊢ f 1 = 9", "tactic": "simp [h₀]"},
    {"state": "x y : ℕ\nh₀ : x % 3 = 2\nh₁ : y % 5 = 4\nh₂ : x % 10 = y % 10\n⊢ 14 ≤ x", "tactic": "omega"},
    {"state": "x : ℝ\nh₀ : x ≠ 0\n⊢ 12 / (x * x) * (x ^ 4 / (14 * x)) * (35 / (3 * x)) = 10",
     "tactic": "field_simp <;> ring"},
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
# The list without `ring_nf`, which the list above made the model repeat on nearly every state.
LIST2_SYSTEM = SYSTEM + (
    " Useful tactics: norm_num, linarith, nlinarith, simp, omega, field_simp, positivity, interval_cases, decide."
)
STATE_TEMPLATE = "Tactic state:\n{state}"
STOP = ["\n", "<|im_end|>"]


def variant(system: str | None, template: str, shots: int | tuple[int, ...], temperature: float = 0.8,
            top_p: float = 0.95, stop: list[str] = STOP) -> dict:
    """`shots`: how many of FEW_SHOT (the first k), or which of them in which order."""
    shots = tuple(range(shots)) if isinstance(shots, int) else shots
    return {"system": system, "template": template, "shots": shots, "temperature": temperature, "top_p": top_p,
            "stop": stop}


# Round 1 spans the levers coarsely; round 2 refines around its winner (4 shots), at lower temperature.
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
# Round 3: the best of round 2 against a tactic list without ring_nf.
ROUND3: dict[str, dict] = {
    "k3 list tmpl T0.6": variant(LIST_SYSTEM, STATE_TEMPLATE, 3, 0.6),
    "k4 list2 tmpl T0.6": variant(LIST2_SYSTEM, STATE_TEMPLATE, 4, 0.6),
    "k4 list2 tmpl T0.8": variant(LIST2_SYSTEM, STATE_TEMPLATE, 4, 0.8),
    "k3 list2 tmpl T0.6": variant(LIST2_SYSTEM, STATE_TEMPLATE, 3, 0.6),
}
VARIANTS = {**ROUND1, **ROUND2, **ROUND3}
# The winner over 60 states (the 30 evaluated in all rounds plus 30 held out): most distinct plausible tactics per
# state, and the most states with at least one. `--yaml` prints it as a bundle config snippet.
BEST = "k3 sys tmpl T0.6"
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


_HYP_LINE = re.compile(r"^([^\s:⊢][^:⊢]*?) : ", re.MULTILINE)
_HYP_REF = re.compile(r"(?<![\w.'])(h[\d₀-₉']*|this)(?![\w'])")
# These may name a new hypothesis, so an unknown `h₃` in them is no hallucination.
_BINDING_TACTICS = frozenset("have obtain rcases rintro intro intros cases induction let by_contra by_cases".split())
_PAIRS = ("[]", "()", "⟨⟩", "{}")


def tactic_head(text: str) -> str:
    return text.split(maxsplit=1)[0].rstrip("!?'") if text.strip() else ""


def is_plausible(tactic: str, state: str, finished: bool) -> bool:
    """Stricter than `looks_like_tactic`, for reporting only: a known tactic, not cut off by max_tokens, with
    balanced brackets, naming only hypotheses (`h`, `h₀`, `this`) that the state has."""
    if not finished or tactic_head(tactic) not in KNOWN_TACTICS:
        return False
    if any(tactic.count(left) != tactic.count(right) for left, right in _PAIRS):
        return False
    if tactic_head(tactic) in _BINDING_TACTICS:
        return True
    names = {name for match in _HYP_LINE.finditer(state) for name in match.group(1).split()}
    return all(ref in names for ref in _HYP_REF.findall(tactic))


def load_states(count: int, seed: int, skip: int = 0) -> list[str]:
    """`count` miniF2F valid goals in a seeded random order, after the first `skip` (a disjoint held-out slice)."""
    rows = [json.loads(line) for line in (DATA / "minif2f_goals.jsonl").open(encoding="utf-8")]
    goals = [row["goal"] for row in rows if row["split"] == "valid"]
    return random.Random(seed).sample(goals, len(goals))[skip : skip + count]


def prompt_config(v: dict) -> PromptConfig:
    shots = [FEW_SHOT[i] for i in v["shots"]]
    return PromptConfig(chat=True, system=v["system"], template=v["template"], few_shot=shots)


def judge(state: str, completions: list[tuple[str, bool]], few_shot_tactics: set[str]) -> dict[str, list[str]]:
    """`completions`: (text, finished) pairs. The repo's own checks first, then the stricter report-only ones."""
    shaped, finished = [], []
    for text, done in completions:
        tactic = clean_completion(text, prefix="", chat=True)
        if tactic is not None and looks_like_tactic(tactic):
            shaped.append(tactic)
            finished.append(done)
    return {
        "shaped": shaped,
        "known": [c for c in shaped if tactic_head(c) in KNOWN_TACTICS],
        "plausible": [c for c, done in zip(shaped, finished) if is_plausible(c, state, done)],
        "copied": [c for c in shaped if c in few_shot_tactics],
    }


def summarize(name: str, states: list[str], outputs: list[list[tuple[str, bool]]], few_shot_tactics: set[str]) -> dict:
    counts = {"shaped": 0, "known": 0, "plausible": 0, "copied": 0}
    distinct = {"shaped": 0, "known": 0, "plausible": 0}
    total = with_any = 0
    samples = []
    for state, completions in zip(states, outputs):
        verdict = judge(state, completions, few_shot_tactics)
        total += len(completions)
        for key in counts:
            counts[key] += len(verdict[key])
        for key in distinct:
            distinct[key] += len(set(verdict[key]))
        with_any += bool(verdict["shaped"])
        samples.append({"state": state, "raw": [text for text, _ in completions], **verdict})
    return {
        "variant": name,
        **{f"{key}_frac": value / total for key, value in counts.items()},
        **{f"distinct_{key}_per_state": value / len(states) for key, value in distinct.items()},
        "states_with_shaped": with_any / len(states),
        "samples": samples,
    }


def bundle_yaml(name: str) -> str:
    """The variant as the `prompt:` and `sampling:` sections of a bundle config (core/config/bundle.py)."""
    v = VARIANTS[name]
    q = lambda text: json.dumps(text, ensure_ascii=False)  # noqa: E731 -- a JSON string is a YAML double-quoted one
    lines = ["prompt:", "  chat: true", f"  template: {q(v['template'])}"]
    if v["system"]:
        lines.append(f"  system: {q(v['system'])}")
    lines.append("  few_shot:")
    lines += [f"    - {{state: {q(FEW_SHOT[i]['state'])}, tactic: {q(FEW_SHOT[i]['tactic'])}}}" for i in v["shots"]]
    stop = ", ".join(q(s) for s in v["stop"])
    lines.append(f"sampling: {{n: {N}, temperature: {v['temperature']}, top_p: {v['top_p']}, "
                 f"max_tokens: {MAX_TOKENS}, stop: [{stop}]}}")
    return "\n".join(lines) + "\n"


async def _generate_all(engine, args, states: list[str], render) -> tuple[dict, list[float], float, float]:
    """Start the engine, time a few sequential requests, then send every prompt at once (the engine batches)."""
    from core.payloads import SamplingRequest

    started = time.perf_counter()
    await engine.start()
    ready = time.perf_counter() - started
    print(f"engine ready {ready:.1f} s", flush=True)
    try:
        requests, spans = [], {}
        for name in args.variants:
            v = VARIANTS[name]
            builder = PromptBuilder(prompt_config(v), render)
            sampling = SamplingRequest(n=N, temperature=v["temperature"], top_p=v["top_p"],
                                       max_tokens=MAX_TOKENS, stop=tuple(v["stop"]))
            spans[name] = (len(requests), len(requests) + len(states))
            requests += [(builder.build(state), sampling) for state in states]

        # Latency of one request at a time (concurrency 1), on the first variant's first states.
        latencies = []
        for i, (prompt, sampling) in enumerate(requests[: args.latency_requests]):
            t0 = time.perf_counter()
            await engine.generate(prompt, sampling, f"latency-{i}")
            latencies.append(time.perf_counter() - t0)
        if latencies:
            print(f"sequential: {sum(latencies) / len(latencies):.2f} s per request (n={N})", flush=True)

        t0 = time.perf_counter()
        outputs = await asyncio.gather(*(engine.generate(p, s, f"eval-{i}") for i, (p, s) in enumerate(requests)))
        batch_s = time.perf_counter() - t0
        print(f"batched: {len(requests)} requests in {batch_s:.0f} s = {len(requests) / batch_s:.2f} req/s", flush=True)
    finally:
        engine.shutdown()  # the engine core is a separate process: never leave it behind
    by_variant = {name: outputs[lo:hi] for name, (lo, hi) in spans.items()}
    return by_variant, latencies, ready, len(requests) / batch_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=30, help="how many miniF2F valid goals to evaluate")
    parser.add_argument("--model", type=Path, help="HF folder (default: prepare .models/smollm2-135m-instruct)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    parser.add_argument("--latency-requests", type=int, default=3, help="sequential requests timed first")
    parser.add_argument("--skip", type=int, default=0, help="skip this many states (a held-out slice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the full results (all completions) as JSON here")
    parser.add_argument("--yaml", nargs="?", const=BEST, metavar="VARIANT", help="print a variant as config, exit")
    args = parser.parse_args()
    if args.yaml:
        print(bundle_yaml(args.yaml), end="")
        return

    from models.prepare import prepare_smollm2

    model = args.model or prepare_smollm2(Path(".models"))
    states = load_states(args.states, args.seed, args.skip)
    render = load_chat_renderer(str(model))

    from core.config import BundleConfig
    from models.vllm_engine import VLLMEngine  # the one module that imports vLLM

    bundle = BundleConfig(
        name="prompt-eval",
        model=str(model),
        engine_args={"dtype": "float32", "kv_cache_memory_bytes": 1 << 30, "enforce_eager": True, "seed": args.seed},
    )
    engine = VLLMEngine(bundle)
    results, latencies, ready, requests_per_s = asyncio.run(_generate_all(engine, args, states, render))

    report = {"model": str(model), "states": len(states), "engine_ready_s": ready,
              "sequential_s": latencies, "batch_req_per_s": requests_per_s, "variants": []}
    columns = ["shaped_frac", "known_frac", "plausible_frac", "copied_frac", "distinct_shaped_per_state",
               "distinct_plausible_per_state"]
    print(f"\n{'variant':28}" + "".join(f"{c.replace('_per_state', '/st'):>20}" for c in columns))
    for name, engine_outputs in results.items():
        outputs = [[(c.text, c.finish_reason == "stop") for c in out.completions] for out in engine_outputs]
        few = {FEW_SHOT[i]["tactic"] for i in VARIANTS[name]["shots"]}
        row = summarize(name, states, outputs, few)
        report["variants"].append(row)
        print(f"{name:28}" + "".join(f"{row[c]:20.2f}" for c in columns))
        for sample in row["samples"][:3]:
            print(f"    {sample['state'][-60:]!r} -> {sample['raw']!r}")
    if args.out:
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
