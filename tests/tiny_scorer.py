"""A tiny LeanProgress checkpoint in LeanDojo-v2's format, built directly with transformers (no trainer):
BertForSequenceClassification with one regression output, saved with its tokenizer by save_pretrained."""

from __future__ import annotations

from pathlib import Path

from tiny_models import build_tokenizer


def build_tiny_progress_checkpoint(folder: Path, seed: int = 0, bias: float = 2.0) -> Path:
    """Random weights; `bias` shifts the regression output so predictions sit around a few steps."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder, vocab_size=512)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
        problem_type="regression",
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias.fill_(bias)
    model.save_pretrained(folder)
    return folder
