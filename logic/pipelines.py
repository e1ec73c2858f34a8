"""How one bundle turns a request into cleaned candidates: prompt, engine call and extraction.

A bundle replica picks its pipeline once, when it starts (`build_pipeline`, the one place that branches on
the bundle's kind):
- Continuation: a local model continues the prompt (a raw template or the model's chat template) and, right
  after it, the user's prefix; each completion is cut to one tactic that starts with the prefix.
- ForcedPrefix: the same for an encoder-decoder (LeanCopilot's ByT5): the prompt goes to the encoder and the
  prefix is forced on the decoder.
- ChatAnswers: a remote chat API answers whole turns; the prefix is asked for in the user turn, and the
  tactic is extracted from each answer.
- WholeProofs: a prover answers its preset's prompt (rendered by the chat template, or sent as turns to a
  remote API); the final ```lean4 block of each answer is the proof.
No Ray and no engine import: the engine comes in through core/engine_protocol.py.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from loguru import logger

from core.config import BundleConfig, PresetName, SamplingDefaults
from core.engine_protocol import GenerationEngine, PrefixForcingEngine
from core.payloads import (
    BundleAnswer,
    ChatMessages,
    Completion,
    EngineOutput,
    ProofRequest,
    SamplingRequest,
    ScoredTactic,
    TacticRequest,
)
from logic.completions import RawCompletions
from logic.llmlean import TACTIC_CLOSE, TACTIC_OPEN, split_marked
from logic.prompts import ChatRenderer, PromptBuilder
from logic.tactics import tactics_from_chat_answers, tactics_from_continuations
from logic.validation import resolve_sampling
from logic.whole_proof import PRESETS, completions_to_proofs, whole_proof_messages

# A short real state: the first requests of a fresh CPU engine are slow (seconds), so a replica sends these
# before it reports ready rather than making the first user wait.
WARMUP_STATE = "x : ℕ\nh₀ : x + 1 = 2\n⊢ x = 1"
WARMUP_THEOREM = "theorem warmup (x : ℕ) (h₀ : x + 1 = 2) : x = 1 := by\n  sorry"
WARMUP_REQUESTS = 2
# Warm-up compiles and fills caches; it need not sample a whole proof's thousands of tokens.
WARMUP_MAX_TOKENS = 128

RequestT = TypeVar("RequestT", TacticRequest, ProofRequest)
ChatRendererLoader = Callable[[str], ChatRenderer]


class Pipeline(ABC, Generic[RequestT]):
    """request -> engine -> cleaned, ranked candidates, for one bundle."""

    # False for remote APIs: a warm-up call costs money and proves nothing about this replica.
    warms_up = True

    def __init__(self, engine: GenerationEngine, sampling: SamplingDefaults):
        self.engine = engine
        self.sampling = sampling

    async def answer(self, request: RequestT) -> BundleAnswer:
        sampling = self._sampling_for(request, resolve_sampling(self.sampling, request.n, request.max_tokens))
        output = await self._sample(request, sampling)
        return BundleAnswer(
            candidates=self._extract(output.completions, request),
            sampled=len(output.completions),
            prompt_tokens=output.prompt_tokens,
            generated_tokens=output.generated_tokens,
        )

    async def warm_up(self) -> None:
        if not self.warms_up:
            return
        started = time.perf_counter()
        max_tokens = min(self.sampling.max_tokens, WARMUP_MAX_TOKENS)
        for i in range(WARMUP_REQUESTS):
            await self.answer(self._warmup_request(f"warmup-{i}-{id(self)}", max_tokens))
        logger.info("engine warm-up took {:.1f}s", time.perf_counter() - started)

    def _sampling_for(self, request: RequestT, sampling: SamplingRequest) -> SamplingRequest:
        return sampling

    @abstractmethod
    async def _sample(self, request: RequestT, sampling) -> EngineOutput: ...

    @abstractmethod
    def _extract(self, completions: list[Completion], request: RequestT) -> list[ScoredTactic]: ...

    @abstractmethod
    def _warmup_request(self, request_id: str, max_tokens: int) -> RequestT: ...


class TacticPipeline(Pipeline[TacticRequest]):
    def __init__(self, engine, sampling, prompts: PromptBuilder, require_tactic_shape: bool):
        super().__init__(engine, sampling)
        self.prompts = prompts
        self.require_tactic_shape = require_tactic_shape

    def _warmup_request(self, request_id: str, max_tokens: int) -> TacticRequest:
        return TacticRequest(request_id, WARMUP_STATE, max_tokens=max_tokens)

    # A client's own prompt (LLMLean's, in tactic mode) is asked as one user turn; its answer is the tactic
    # inside [TAC]...[/TAC], so that marker ends the sample rather than the bundle's stop strings.
    def _sampling_for(self, request: TacticRequest, sampling: SamplingRequest) -> SamplingRequest:
        if request.client_prompt is None:
            return sampling
        return dataclasses.replace(sampling, stop=(TACTIC_CLOSE,))

    @staticmethod
    def _client_turns(request: TacticRequest) -> ChatMessages:
        return [{"role": "user", "content": request.client_prompt or ""}]

    def _client_prompt_tactics(self, completions: list[Completion], request: TacticRequest) -> list[ScoredTactic]:
        inner = [dataclasses.replace(c, text=split_marked(c.text, TACTIC_OPEN, TACTIC_CLOSE)) for c in completions]
        return tactics_from_chat_answers(inner, request.prefix, self.require_tactic_shape)


class Continuation(TacticPipeline):
    """The prefix is appended to the prompt, so the model continues what the user typed."""

    def __init__(self, engine, sampling, prompts, require_tactic_shape, chat: bool):
        super().__init__(engine, sampling, prompts, require_tactic_shape)
        self.chat = chat  # a completion without a prefix is then a chat answer, decorations and all

    async def _sample(self, request: TacticRequest, sampling) -> EngineOutput:
        if request.client_prompt is not None:
            prompt = self.prompts.render(self._client_turns(request))
        else:
            prompt = self.prompts.build(request.state, request.prefix)
        logger.bind(request_id=request.request_id).debug("prompt: {!r}", prompt)
        return await self.engine.generate(prompt, sampling, request.request_id)

    def _extract(self, completions, request: TacticRequest) -> list[ScoredTactic]:
        if request.client_prompt is not None:
            return self._client_prompt_tactics(completions, request)
        return tactics_from_continuations(completions, request.prefix, self.chat, self.require_tactic_shape)


class ForcedPrefix(Continuation):
    """Encoder-decoders: the state is the encoder's input, the prefix the start of the decoder's output."""

    engine: PrefixForcingEngine

    async def _sample(self, request: TacticRequest, sampling) -> EngineOutput:
        prompt = self.prompts.build(request.state)
        logger.bind(request_id=request.request_id).debug("prompt: {!r} forced prefix: {!r}", prompt, request.prefix)
        return await self.engine.generate_with_prefix(prompt, request.prefix, sampling, request.request_id)


class ChatAnswers(TacticPipeline):
    """Remote chat APIs answer whole turns: the prefix is asked for in the user turn."""

    warms_up = False

    async def _sample(self, request: TacticRequest, sampling) -> EngineOutput:
        if request.client_prompt is not None:
            messages = self._client_turns(request)
        else:
            messages = self.prompts.build_messages(request.state, request.prefix)
        logger.bind(request_id=request.request_id).debug("prompt: {!r}", messages)
        return await self.engine.generate(messages, sampling, request.request_id)

    def _extract(self, completions, request: TacticRequest) -> list[ScoredTactic]:
        if request.client_prompt is not None:
            return self._client_prompt_tactics(completions, request)
        return tactics_from_chat_answers(completions, request.prefix, self.require_tactic_shape)


class WholeProofs(Pipeline[ProofRequest]):
    """The preset's published prompt; `render_chat` None sends the turns as they are (remote chat APIs)."""

    def __init__(self, engine, sampling, preset: PresetName, render_chat: ChatRenderer | None):
        super().__init__(engine, sampling)
        self.preset = preset
        self.render_chat = render_chat
        self.warms_up = render_chat is not None  # rendered here: a local model

    async def _sample(self, request: ProofRequest, sampling) -> EngineOutput:
        messages: ChatMessages = whole_proof_messages(self.preset, request.theorem, request.problem)
        prompt = self.render_chat(messages) if self.render_chat is not None else messages
        logger.bind(request_id=request.request_id).debug("prompt: {!r}", prompt)
        return await self.engine.generate(prompt, sampling, request.request_id)

    def _extract(self, completions, request: ProofRequest) -> list[ScoredTactic]:
        return completions_to_proofs(completions, fenced=PRESETS[self.preset].fenced)

    def _warmup_request(self, request_id: str, max_tokens: int) -> ProofRequest:
        return ProofRequest(request_id, WARMUP_THEOREM, max_tokens=max_tokens)


def build_pipeline(
    config: BundleConfig, engine: GenerationEngine, load_chat_renderer: ChatRendererLoader
) -> Pipeline[TacticRequest] | Pipeline[ProofRequest]:
    """The pipeline of a bundle that generates (`config.model` is set), for its kind."""
    assert config.model is not None, "an encoder-only bundle has no generation pipeline"
    tokenizer = config.tokenizer or config.model
    if config.task == "whole_proof":
        render = None if config.is_remote else load_chat_renderer(tokenizer)
        return WholeProofs(engine, config.sampling, config.whole_proof_settings.preset, render)
    shape = config.tactics.require_tactic_shape
    if config.is_remote:
        return ChatAnswers(engine, config.sampling, PromptBuilder(config.prompt, messages_only=True), shape)
    prompts = PromptBuilder(config.prompt, load_chat_renderer(tokenizer) if config.prompt.chat else None)
    kind = ForcedPrefix if isinstance(engine, PrefixForcingEngine) else Continuation
    return kind(engine, config.sampling, prompts, shape, chat=config.prompt.chat)


def build_completer(config: BundleConfig, engine: GenerationEngine, load_chat_renderer: ChatRendererLoader) -> RawCompletions:
    """Raw completions of a bundle that generates: turns pass through to remote APIs, else the chat template."""
    tokenizer = config.tokenizer or config.model
    assert tokenizer is not None, "an encoder-only bundle completes nothing"
    return RawCompletions(engine, takes_turns=config.is_remote, load_renderer=lambda: load_chat_renderer(tokenizer))
