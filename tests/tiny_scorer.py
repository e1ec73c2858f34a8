"""A tiny LeanProgress checkpoint in LeanDojo-v2's format, built directly with transformers (no trainer):
BertForSequenceClassification with one regression output, saved with its tokenizer by save_pretrained."""

from __future__ import annotations

from pathlib import Path

from tiny_models import build_tokenizer, tiny_bert_config


def build_tiny_progress_checkpoint(folder: Path, seed: int = 0, bias: float = 2.0) -> Path:
    """Random weights; `bias` shifts the regression output so predictions sit around a few steps."""
    import torch
    from transformers import BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_bert_config(build_tokenizer(folder, vocab_size=512), num_labels=1, problem_type="regression")
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias.fill_(bias)
    model.save_pretrained(folder)
    return folder
