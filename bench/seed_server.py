"""Stack (d) of compare_stacks.py: a seed-style server, as LeanCopilot's own python server is built.

Usage: python -m bench.seed_server CONFIG --port PORT

One FastAPI process; each /generate calls transformers `generate` inline, so requests run one at a time
and the event loop blocks meanwhile. Same model, prompt (the config's first bundle) and sampling as LeanServe.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.workload import load_bundle
from logic.prompts import PromptBuilder
from logic.validation import resolve_sampling
from models.chat_template import load_chat_renderer


class GenerateBody(BaseModel):
    input: str
    name: str
    prefix: str | None = ""
    n: int | None = None
    max_tokens: int | None = None


def build_app(config: str) -> FastAPI:
    bundle = load_bundle(config)
    tokenizer = AutoTokenizer.from_pretrained(bundle.tokenizer or bundle.model)
    dtype = torch.float32 if bundle.engine_args.dtype in ("float32", "auto") else getattr(torch, bundle.engine_args.dtype)
    model = AutoModelForCausalLM.from_pretrained(bundle.model, dtype=dtype).eval()
    renderer = load_chat_renderer(bundle.tokenizer or bundle.model) if bundle.prompt.chat else None
    prompts = PromptBuilder(bundle.prompt, renderer)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/generate")
    async def generate(body: GenerateBody) -> dict:
        # Inline and blocking, as in LeanCopilot's python server: no batching across requests.
        sampling = resolve_sampling(bundle.sampling, body.n, body.max_tokens)
        prefix = body.prefix or ""
        inputs = tokenizer(prompts.build(body.input, prefix), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                num_return_sequences=sampling.n,
                max_new_tokens=sampling.max_tokens,
                stop_strings=list(sampling.stop) or None,
                tokenizer=tokenizer,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tokenizer.eos_token_id,
            )
        scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        prompt_len = inputs["input_ids"].shape[1]
        outputs = []
        for seq, seq_scores in zip(out.sequences, scores):
            generated = seq[prompt_len:]
            keep = generated != tokenizer.pad_token_id if tokenizer.pad_token_id is not None else generated == generated
            mean = float(seq_scores[keep[: len(seq_scores)]].mean()) if keep.any() else -math.inf
            text = tokenizer.decode(generated, skip_special_tokens=True).strip()
            if text:
                outputs.append({"output": prefix + text, "score": math.exp(mean) if math.isfinite(mean) else 0.0})
        outputs.sort(key=lambda c: c["score"], reverse=True)
        return {"outputs": outputs}

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    # A long keep-alive: the blocked event loop would otherwise drop the load generator's pooled connections.
    uvicorn.run(build_app(options.config), host="127.0.0.1", port=options.port, log_level="warning", timeout_keep_alive=600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
