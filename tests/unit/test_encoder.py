"""The transformers encoder: mean pooling as LeanCopilot's retriever does it, batch-invariant."""

import torch

from core.config import EncoderConfig
from models.encoder import TransformersEncoder

TEXTS = ["x : ℕ\n⊢ x + 0 = x", "⊢ 2 + 2 = 4", "a b : ℝ\nh₀ : a < b\n⊢ a ^ 2 < b ^ 2 ∨ a < 0"]


def test_mean_pooling_matches_leancopilot_single_input(tiny_encoder):
    encoder = TransformersEncoder(EncoderConfig(model=str(tiny_encoder)))
    # LeanCopilot's retriever: mean of the last hidden state over the input's tokens, one text at a time.
    tokens = encoder.tokenizer(TEXTS[2], return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(tokens.input_ids).last_hidden_state
    expected = hidden.mean(dim=1)[0].tolist()
    assert torch.allclose(torch.tensor(encoder.encode_batch([TEXTS[2]])[0]), torch.tensor(expected), atol=1e-5)


def test_padding_does_not_change_a_vector(tiny_encoder):
    encoder = TransformersEncoder(EncoderConfig(model=str(tiny_encoder)))
    batched = encoder.encode_batch(TEXTS)
    for text, vector in zip(TEXTS, batched):
        assert len(vector) == encoder.dimension == 32
        assert torch.allclose(torch.tensor(vector), torch.tensor(encoder.encode_batch([text])[0]), atol=1e-5)
