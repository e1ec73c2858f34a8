"""Tiny random models built from a config, for tests: the real loading code on small data, no hub.

The tokenizer is a byte-level BPE trained on the real Lean proof states in ../shared/data, so Lean's
symbols (⊢ ℕ ℝ) tokenize as they would for a real model. head_dim is 32: vLLM's CPU attention needs >= 32.
"""

from __future__ import annotations

import json
from pathlib import Path

from support import shared_data_path

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def lean_texts(limit: int = 400) -> list[str]:
    texts = []
    with shared_data_path("minif2f_proofsteps.jsonl").open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            texts += [row["state_before"], row["tactic"]]
    with shared_data_path("minif2f_goals.jsonl").open(encoding="utf-8") as rows:
        for line in rows:
            texts.append(json.loads(line)["goal"])
    return texts[: limit * 3]


def build_tokenizer(folder: Path, vocab_size: int = 1024, with_eos: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(lean_texts(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        # Without an EOS token a random model never stops early: requests last exactly max_tokens, which
        # makes the long requests of the deadline and disconnect tests reliably long.
        eos_token="<|im_end|>" if with_eos else None,
        unk_token="<|endoftext|>",
        pad_token="<pad>",
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 64, head_dim 32) with random weights, saved as an HF folder."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder, with_eos=False)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    GenerationConfig(bos_token_id=config.bos_token_id).save_pretrained(folder)
    return folder


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT encoder with random weights, saved as an HF folder."""
    import torch
    from transformers import BertModel

    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_bert_config(build_tokenizer(folder, vocab_size=512))
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


def tiny_bert_config(tokenizer, **extra):
    """2 layers, hidden 32: the encoder and the LeanProgress checkpoint share it."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_tiny_byt5(folder: Path, seed: int = 0) -> Path:
    """A 2-layer ByT5 (T5 over UTF-8 bytes, like LeanCopilot's tacgen and retriever) with random weights.

    ByT5's tokenizer needs no vocabulary file: 3 specials (pad 0, eos 1, unk 2) then the 256 bytes, plus
    the 125 extra ids of the real checkpoints (vocab 384).
    """
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=384,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        feed_forward_proj="gated-gelu",  # as in google/byt5-small
        tie_word_embeddings=False,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
