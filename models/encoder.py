"""The transformers encoder behind /encode: mean-pooled hidden states, as LeanCopilot's retriever does it.

LeanCopilot averages the encoder's last hidden state over the input's tokens. Batches are padded, so the
attention mask weights the mean: each text gets the vector it would get alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from core.config import EncoderConfig


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TransformersEncoder:
    def __init__(self, config: EncoderConfig):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self._max_length = config.max_length
        self.device = resolve_device(config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        model = AutoModel.from_pretrained(config.model)
        # Encoder-decoder checkpoints (LeanCopilot's ByT5 retriever) are encoded by their encoder alone.
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.model = model.to(self.device).eval()
        self.dimension = int(model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.d_model)
        logger.info("encoder {} loaded on {} (dim {})", config.model, self.device, self.dimension)

    def encode_batch(self, texts: list[str]) -> list[list[float]]:
        torch = self._torch
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self._max_length
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return pooled.float().cpu().tolist()
