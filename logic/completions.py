"""Raw completions (the OpenAI and Ollama front doors): the prompt goes to the engine as the client wrote it.

A plain prompt is sent as it is; chat turns go through the model's own chat template, or pass through to a
remote chat API (which takes no plain prompt: one is sent there as a single user turn). Engines that stream
(vLLM) stream; the others answer in one step. Pure: the engine and the chat template are injected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from loguru import logger

from core.engine_protocol import GenerationEngine, StreamingEngine
from core.errors import InvalidRequestError
from core.payloads import ChatMessages, CompletionDelta, CompletionRequest, EngineOutput, StreamChunk
from logic.prompts import ChatRenderer


class RawCompletions:
    def __init__(self, engine: GenerationEngine, takes_turns: bool, load_renderer: Callable[[], ChatRenderer]):
        self.engine = engine
        self.takes_turns = takes_turns  # a remote chat API: it renders turns itself
        self._load_renderer = load_renderer
        self._renderer: ChatRenderer | None = None

    def _render(self, messages: ChatMessages) -> str:
        if self._renderer is None:
            try:
                self._renderer = self._load_renderer()
            except ValueError as exc:  # a base model without a chat template
                raise InvalidRequestError(f"This model has no chat template; send a plain prompt ({exc}).") from None
        return self._renderer(messages)

    def engine_prompt(self, prompt: str | ChatMessages) -> str | ChatMessages:
        if self.takes_turns:
            return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        return self._render(prompt) if isinstance(prompt, list) else prompt

    async def complete(self, request: CompletionRequest) -> EngineOutput:
        prompt = self.engine_prompt(request.prompt)
        logger.bind(request_id=request.request_id).debug("raw prompt: {!r}", prompt)
        return await self.engine.generate(prompt, request.sampling, request.request_id)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        prompt = self.engine_prompt(request.prompt)
        if isinstance(self.engine, StreamingEngine):
            async for chunk in self.engine.generate_stream(prompt, request.sampling, request.request_id):
                yield chunk
            return
        output = await self.engine.generate(prompt, request.sampling, request.request_id)
        deltas = [
            CompletionDelta(i, c.text, c.num_tokens, c.finish_reason, c.token_logprobs)
            for i, c in enumerate(output.completions)
        ]
        yield StreamChunk(deltas, output.prompt_tokens)
