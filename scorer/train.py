"""Fine-tune a LeanProgress checkpoint: `python -m scorer.train [--data FILE ...] [--base MODEL] [--out DIR]`.

Reads JSONL rows in LeanDojo-v2's format `{goal, prefix, tactic, steps_remaining}` (steps left after the
tactic) and proof-step traces like ../shared/data/minif2f_proofsteps.jsonl `{theorem, state_before, tactic,
steps_remaining}` (steps counted from state_before, this tactic included; mapped to LeanDojo-v2's meaning
by subtracting 1). It trains AutoModelForSequenceClassification(num_labels=1, regression) with
transformers' own Trainer, the recipe LeanDojo-v2 uses (MSE loss, AdamW, weight decay 0.01), and a tqdm
progress bar. A held-out split (by theorem, as the paper splits, so no proof leaks into both sides) is
scored at the end through ProgressScorer loaded from the saved folder: the MAE and exact-match accuracy
printed are what serving that folder gives.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.config import TemplateKind
from core.payloads import ScoringInput
from logic.scoring_templates import render

DEFAULT_DATA = "../shared/data/minif2f_proofsteps.jsonl"
DEFAULT_BASE = ".models/all-minilm-l6-v2"
DEFAULT_OUT = ".models/leanprogress-minilm"
METADATA_FILE = "leanprogress.json"


@dataclass(frozen=True)
class Example:
    goal: str
    prefix: str
    tactic: str
    steps_remaining: float  # after the tactic, LeanDojo-v2's label: 0 when the tactic closes the goal
    group: str  # rows of one group stay on one side of the split


def example_from_row(row: dict) -> Example:
    """One training example from either supported row format."""
    if "goal" in row:
        return Example(row["goal"], row.get("prefix") or "", row["tactic"], float(row["steps_remaining"]), row["goal"])
    if "state_before" in row:
        steps_from_state = float(row["steps_remaining"])
        if steps_from_state < 1:
            raise ValueError("a proof-step row counts its own tactic: steps_remaining >= 1")
        group = str(row.get("theorem") or row["state_before"])
        return Example(row["state_before"], "", row["tactic"], steps_from_state - 1, group)
    raise ValueError("a row needs `goal` (LeanDojo-v2 format) or `state_before` (proof-step traces)")


def read_examples(paths: Iterable[str | Path]) -> list[Example]:
    examples = []
    for path in paths:
        with Path(path).open(encoding="utf-8") as rows:
            for number, line in enumerate(rows, 1):
                if not line.strip():
                    continue
                try:
                    examples.append(example_from_row(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{number}: {exc}") from None
    return examples


def target(example: Example, template: TemplateKind) -> float:
    """The label a template is trained on: the state-only form predicts steps from the state, the others
    the steps left after the candidate."""
    return example.steps_remaining + 1 if template == "leanprogress_state" else example.steps_remaining


def split_by_group(examples: Sequence[Example], eval_ratio: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out about `eval_ratio` of the groups (at least one, and never all) for evaluation."""
    groups = sorted({e.group for e in examples})
    if len(groups) < 2 or eval_ratio <= 0:
        raise ValueError("evaluation needs at least two theorems (or goals) and eval_ratio > 0")
    random.Random(seed).shuffle(groups)
    held = set(groups[: min(len(groups) - 1, max(1, round(len(groups) * eval_ratio)))])
    return [e for e in examples if e.group not in held], [e for e in examples if e.group in held]


def regression_metrics(predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """MAE and exact-match accuracy of the rounded prediction, the paper's two measures."""
    if not labels:
        return {"mae": float("nan"), "exact_match": float("nan"), "count": 0}
    errors = [abs(p - y) for p, y in zip(predictions, labels)]
    exact = [round(p) == round(y) for p, y in zip(predictions, labels)]
    return {"mae": sum(errors) / len(errors), "exact_match": sum(exact) / len(exact), "count": len(labels)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", help=f"JSONL file (repeatable; default {DEFAULT_DATA})")
    parser.add_argument("--base", default=DEFAULT_BASE, help="model folder (or hub id) to fine-tune")
    parser.add_argument("--out", default=DEFAULT_OUT, help="checkpoint folder to write")
    parser.add_argument("--template", default="leandojo", choices=["leandojo", "leanprogress", "leanprogress_state"])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512, help="tokens kept per text")
    parser.add_argument("--eval-ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto", help="device of the final evaluation (auto, cpu, cuda, ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _encode(tokenizer, examples: Sequence[Example], template: TemplateKind, max_length: int) -> list[dict]:
    texts = [render(template, ScoringInput(e.goal, e.prefix, e.tactic)) for e in examples]
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": float(target(e, template))}
        for ids, mask, e in zip(encoded["input_ids"], encoded["attention_mask"], examples)
    ]


def train(options: argparse.Namespace) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from scorer.model import ProgressScorer

    started = time.perf_counter()
    examples = read_examples(options.data or [DEFAULT_DATA])
    train_set, eval_set = split_by_group(examples, options.eval_ratio, options.seed)
    print(f"{len(examples)} examples: {len(train_set)} train, {len(eval_set)} held out", flush=True)

    set_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(options.base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.cls_token
    model = AutoModelForSequenceClassification.from_pretrained(options.base, num_labels=1, problem_type="regression")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    out = Path(options.out)
    arguments = TrainingArguments(
        output_dir=str(out),
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        num_train_epochs=options.epochs,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        logging_strategy="epoch",
        save_strategy="no",  # one final save below, nothing half-written in the checkpoint folder
        report_to="none",
        seed=options.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=options.quiet,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=_encode(tokenizer, train_set, options.template, options.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))

    # Evaluate the saved folder exactly as the scorer deployment will load and run it.
    scorer = ProgressScorer(out, device=options.device, template=options.template, max_input_tokens=options.max_length)
    labels = [target(e, options.template) for e in eval_set]
    predictions: list[float] = []
    for start in range(0, len(eval_set), 32):
        chunk = eval_set[start : start + 32]
        predictions += scorer.predict([ScoringInput(e.goal, e.prefix, e.tactic) for e in chunk])
    mean_label = sum(target(e, options.template) for e in train_set) / len(train_set)
    report = {
        "checkpoint": str(out.resolve()),
        "base": options.base,
        "template": options.template,
        "max_input_tokens": options.max_length,
        "train_examples": len(train_set),
        "eval_examples": len(eval_set),
        "eval": regression_metrics(predictions, labels),
        # A model that always predicts the training mean: what the checkpoint has to beat.
        "eval_baseline_mean": regression_metrics([mean_label] * len(labels), labels),
        "seconds": round(time.perf_counter() - started, 1),
        "options": {k: v for k, v in vars(options).items() if k != "quiet"},
    }
    (out / METADATA_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        report = train(options)
    except (OSError, ValueError) as exc:
        print(f"scorer.train: {exc}", file=sys.stderr)
        return 2
    metrics, baseline = report["eval"], report["eval_baseline_mean"]
    print(
        f"held-out ({metrics['count']} examples): MAE {metrics['mae']:.3f}, exact-match {metrics['exact_match']:.1%} "
        f"(predicting the training mean: MAE {baseline['mae']:.3f}, exact-match {baseline['exact_match']:.1%})"
    )
    print(f"saved {report['checkpoint']} in {report['seconds']}s; serve it with LEANPROGRESS_MODEL={report['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
