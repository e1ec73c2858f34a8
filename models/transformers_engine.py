"""The transformers engine: LeanCopilot's ByT5 models (and any decoder-only model) without vLLM.

Encoder-decoders (`kaiyuy/leandojo-lean4-tacgen-byt5-small`) run beam search with num_beams = n, as LeanCopilot's
own server does, and score each candidate `exp(sequence log-prob)`: the raw sum of the chosen tokens' log-probs
(recomputed from the logits, so neither the beam's length_penalty nor a logits processor changes it). A prefix is
forced on the decoder: its tokens are the start of `decoder_input_ids`, so every candidate continues it.
Decoder-only models sample n candidates (or beam search, when configured) and score like the vLLM engine.

`generate` is blocking torch work: it runs on one worker thread, one request at a time, so the replica's
event loop keeps answering health checks and /encode. Requests wait in the thread's queue in arrival order.
Cancelling a request (client gone, the ingress deadline) drops it from the queue, or, if it is running, stops
it at its next decoding step through a stopping criterion: no engine work outlives its request for long.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from loguru import logger

from core.errors import InputTooLargeError, InvalidRequestError, ServiceUnavailableError
from core.payloads import Completion, EngineLoad, EngineOutput, SamplingRequest
from models.encoder import resolve_device

if TYPE_CHECKING:
    from core.config import BundleConfig


def sequence_probability(token_logprobs: list[float]) -> float:
    """exp(sum of token log-probs), clamped to [0, 1]; 0 for NaN (a broken model never yields a bad score)."""
    total = math.fsum(token_logprobs)
    if math.isnan(total):
        return 0.0
    return min(1.0, math.exp(min(0.0, total)))


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the earliest stop string (excluded), and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersEngine:
    """A transformers model behind the GenerationEngine interface (and PrefixForcingEngine for encoder-decoders)."""

    def __init__(self, bundle: BundleConfig):
        self._bundle = bundle
        self._settings = bundle.transformers_settings
        self._name = bundle.name
        # One worker: torch already uses every core for one generate call; two would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"transformers-{bundle.name}")
        self._unfinished = 0
        self._cancel_events: set[threading.Event] = set()
        self._closed = False
        self.model: Any = None
        self.tokenizer: Any = None
        self.is_encoder_decoder = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        started = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        logger.info(
            "transformers engine for {} ({}, {}) loaded on {} in {:.1f}s",
            self._name, "encoder-decoder" if self.is_encoder_decoder else "decoder-only", self.decoding,
            self.device, time.perf_counter() - started,
        )

    def _load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        self.device = resolve_device(self._settings.device)
        model_config = AutoConfig.from_pretrained(self._bundle.model)
        self.is_encoder_decoder = bool(getattr(model_config, "is_encoder_decoder", False))
        dtype: Any = self._settings.dtype
        if dtype == "auto":
            dtype = torch.float32 if self.device == "cpu" else "auto"
        else:
            dtype = getattr(torch, dtype)
        model_class = AutoModelForSeq2SeqLM if self.is_encoder_decoder else AutoModelForCausalLM
        self.model = model_class.from_pretrained(self._bundle.model, dtype=dtype).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self._bundle.tokenizer or self._bundle.model)
        self.max_input_tokens = self._settings.max_input_tokens or (
            None if self.is_encoder_decoder else getattr(model_config, "max_position_embeddings", None)
        )

    @property
    def decoding(self) -> str:
        return self._settings.decoding or ("beam_search" if self.is_encoder_decoder else "sampling")

    async def check_health(self) -> None:
        if self._closed or self.model is None:
            raise ServiceUnavailableError("The model's engine stopped; its replica is being replaced.")

    async def num_unfinished_requests(self) -> int:
        return self._unfinished

    def load(self) -> EngineLoad:
        # One generation runs at a time on the worker thread; the others wait for it.
        running = min(self._unfinished, 1)
        return EngineLoad(running=running, waiting=self._unfinished - running)

    def shutdown(self) -> None:
        self._closed = True
        for event in list(self._cancel_events):  # the running generate stops at its next step
            event.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- generation ------------------------------------------------------------------------------------------

    async def generate(self, prompt: str, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        return await self.generate_with_prefix(prompt, "", sampling, request_id)

    async def generate_with_prefix(
        self, prompt: str, prefix: str, sampling: SamplingRequest, request_id: str
    ) -> EngineOutput:
        """Decoder-only models see `prompt + prefix`; encoder-decoders get `prefix` forced on the decoder.
        Completion texts are what follows the prefix."""
        if self._closed:
            raise ServiceUnavailableError("The model's engine stopped; its replica is being replaced.")
        cancelled = threading.Event()
        self._cancel_events.add(cancelled)
        self._unfinished += 1
        try:
            loop = asyncio.get_running_loop()
            # Awaiting the executor future directly: a cancellation cancels it while it still waits in the queue.
            return await loop.run_in_executor(self._executor, self._generate, prompt, prefix, sampling, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # a running generate stops at its next step
            logger.bind(request_id=request_id).info("transformers request cancelled")
            raise
        finally:
            self._unfinished -= 1
            self._cancel_events.discard(cancelled)

    def _generate(self, prompt: str, prefix: str, sampling: SamplingRequest, cancelled: threading.Event) -> EngineOutput:
        import torch

        if cancelled.is_set():
            return EngineOutput(completions=[])
        tokenizer, model = self.tokenizer, self.model
        source = prompt if self.is_encoder_decoder else prompt + prefix
        inputs = tokenizer(source, return_tensors="pt")
        prompt_tokens = int(inputs.input_ids.shape[1])
        if self.max_input_tokens is not None and prompt_tokens > self.max_input_tokens:
            raise InputTooLargeError(
                f"The input is too long for this model: {prompt_tokens} tokens; the limit is {self.max_input_tokens}."
            )
        kwargs: dict[str, Any] = {
            "input_ids": inputs.input_ids.to(self.device),
            "attention_mask": inputs.attention_mask.to(self.device),
            "max_new_tokens": sampling.max_tokens,
            "return_dict_in_generate": True,
            "output_logits": True,
            "stopping_criteria": _stop_when(cancelled),
        }
        if self.is_encoder_decoder:
            start = model.generation_config.decoder_start_token_id
            if start is None:
                start = model.config.decoder_start_token_id
            forced = [start] + (tokenizer(prefix, add_special_tokens=False).input_ids if prefix else [])
            kwargs["decoder_input_ids"] = torch.tensor([forced], device=self.device)
        if getattr(tokenizer, "pad_token_id", None) is None and tokenizer.eos_token_id is not None:
            kwargs["pad_token_id"] = tokenizer.eos_token_id
        beam = self.decoding == "beam_search"
        if beam:
            num_beams = max(self._settings.num_beams or sampling.n, sampling.n)
            kwargs.update(
                do_sample=False, num_beams=num_beams, num_return_sequences=sampling.n,
                length_penalty=self._settings.length_penalty, early_stopping=False,
            )
        elif sampling.temperature == 0:
            kwargs.update(do_sample=False, num_beams=1)
        else:
            kwargs.update(
                do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                num_return_sequences=sampling.n,
            )
        if sampling.stop and not beam and not self.is_encoder_decoder:
            # Saves the tokens after a stop string; the text is cut at it below either way.
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
        try:
            with torch.inference_mode():
                out = model.generate(**kwargs)
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(f"The engine rejected the request: {exc}") from exc
        if cancelled.is_set():
            return EngineOutput(completions=[], prompt_tokens=prompt_tokens)
        token_logprobs = model.compute_transition_scores(
            out.sequences, out.logits, getattr(out, "beam_indices", None), normalize_logits=True
        )
        # Everything before the generated steps is the prompt (decoder-only) or the forced decoder start and prefix.
        first = out.sequences.shape[1] - token_logprobs.shape[1]
        # Fewer steps than max_tokens: every sequence of the batch ended by EOS or a stop string. The token
        # that matched a stop string may not decode to it (a partial UTF-8 byte), so the text alone can't tell.
        batch_stopped = token_logprobs.shape[1] < sampling.max_tokens
        completions = [
            self._completion(out.sequences[i, first:], token_logprobs[i], sampling.stop, beam, batch_stopped)
            for i in range(out.sequences.shape[0])
        ]
        if not beam and sampling.temperature == 0:
            completions = completions * sampling.n  # greedy: n identical candidates, as vLLM returns them
        return EngineOutput(completions=completions, prompt_tokens=prompt_tokens)

    def _completion(
        self, token_ids, logprobs, stop: tuple[str, ...], beam: bool, batch_stopped: bool = False
    ) -> Completion:
        tokenizer = self.tokenizer
        eos = tokenizer.eos_token_id
        kept: list[tuple[int, float]] = []
        ended = False
        # A sequence that ended before the longest one is padded after its EOS; its EOS counts (LeanCopilot's
        # scores include it). A generated pad token is a token like any other (random models emit them).
        for token, logprob in zip(token_ids.tolist(), logprobs.tolist()):
            kept.append((token, logprob))
            if token == eos:
                ended = True
                break
        text = tokenizer.decode([t for t, _ in kept], skip_special_tokens=True)
        text, stopped = cut_at_stop(text, stop)
        chosen = [v for _, v in kept]
        total = math.fsum(chosen)
        return Completion(
            text=text,
            cumulative_logprob=total,
            num_tokens=len(chosen),
            finish_reason="stop" if (ended or stopped or batch_stopped) else "length",
            score=sequence_probability(chosen) if beam else None,
        )


def _stop_when(cancelled: threading.Event):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Cancelled()])
