"""ProgressScorer: a LeanProgress checkpoint (sequence classification, one regression output) on a device.

It loads a folder exactly as LeanDojo-v2 saves it (model + tokenizer, `save_pretrained`), renders each
candidate with the checkpoint's template, and predicts steps remaining in padded batches, clamped at 0.
No Ray here: the deployment (deployments/scorer_server.py) and the trainer's evaluation both use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from core.config import ScorerConfig, TemplateKind, expand_checkpoint_path
from core.payloads import ScoringInput
from logic.scoring_templates import render

# Padded tokens in one forward pass (count x longest): bounds the padding waste and the activation memory.
TOKENS_PER_PASS = 8192


def resolve_device(device: str | None) -> str:
    """LEANPROGRESS_DEVICE semantics: auto (or empty) is CUDA when present, else CPU; anything else as given."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ProgressScorer:
    def __init__(
        self,
        checkpoint: str | Path,
        device: str | None = "auto",
        template: TemplateKind = "leandojo",
        max_input_tokens: int = 512,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        path = expand_checkpoint_path(str(checkpoint))
        self.template = template
        self.max_input_tokens = max_input_tokens
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Decoder checkpoints (Qwen, DeepSeek Coder) often lack a pad token; batching needs one.
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.cls_token
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, problem_type="regression")
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(self.device).eval()
        logger.info("LeanProgress checkpoint {} loaded on {} (template {})", path, self.device, template)

    @classmethod
    def from_config(cls, config: ScorerConfig) -> ProgressScorer:
        return cls(config.checkpoint, config.device, config.template, config.max_input_tokens)

    def predict_texts(self, texts: Sequence[str]) -> list[float]:
        """Raw regression outputs (not clamped) for already rendered texts.

        Texts are sorted by token length and cut into padded forward passes of at most TOKENS_PER_PASS tokens:
        a batch mixing a 20-token goal with a 512-token one would otherwise pad every text to 512, and the
        pass size stays bounded on a GPU. Attention masks make each result independent of its neighbours.
        """
        if not texts:
            return []
        torch = self._torch
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_input_tokens)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[float] = [0.0] * len(ids)
        start = 0
        while start < len(order):
            end = start + 1
            # Sorted ascending: the chunk's last text is its longest, so count * longest is its padded size.
            while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= TOKENS_PER_PASS:
                end += 1
            chunk = order[start:end]
            batch = self.tokenizer.pad(
                {"input_ids": [ids[i] for i in chunk], "attention_mask": [masks[i] for i in chunk]},
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            for i, value in zip(chunk, logits.reshape(-1).float().cpu().tolist()):
                results[i] = float(value)
            start = end
        return results

    def predict(self, items: Sequence[ScoringInput]) -> list[float]:
        """Steps remaining after each candidate, >= 0 (LeanDojo-v2 clamps the same way)."""
        raw = self.predict_texts([render(self.template, item) for item in items])
        for value in raw:
            if not math.isfinite(value):
                raise ValueError(f"the LeanProgress model predicted {value!r}")
        return [max(0.0, value) for value in raw]
