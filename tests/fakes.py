"""A fake engine for fast tests of the ingress and bundle logic. It never replaces the real-engine tests.

It answers with deterministic completions (candidate i has mean token log-probability -(i + 1) / 4) and
breaks on purpose while the file `$LEANSERVE_FAKE_FLAGS/<bundle>.broken` exists, as a dead engine would.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from core.config import BundleConfig
from core.errors import ServiceUnavailableError
from core.payloads import Completion, EngineLoad, EngineOutput, SamplingRequest

FLAGS_ENV = "LEANSERVE_FAKE_FLAGS"


def broken_flag(flags_dir: Path | str, bundle_name: str) -> Path:
    return Path(flags_dir) / f"{bundle_name}.broken"


class FakeEngine:
    def __init__(self, config: BundleConfig):
        self.config = config
        self.running = 0

    @property
    def broken(self) -> bool:
        flags = os.environ.get(FLAGS_ENV)
        return bool(flags) and broken_flag(flags, self.config.name).exists()

    async def start(self) -> None:
        pass

    async def generate(self, prompt: str, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        if self.broken:
            raise ServiceUnavailableError("The model's engine stopped; its replica is being replaced.")
        self.running += 1
        try:
            await asyncio.sleep(0)
            completions = [
                Completion(text=f" test_{i}\nignored", cumulative_logprob=-0.5 * (i + 1), num_tokens=2, finish_reason="stop")
                for i in range(sampling.n)
            ]
            return EngineOutput(completions=completions, prompt_tokens=len(prompt))
        finally:
            self.running -= 1

    async def check_health(self) -> None:
        if self.broken:
            raise RuntimeError("fake engine is broken")

    async def num_unfinished_requests(self) -> int:
        return self.running

    def load(self) -> EngineLoad:
        return EngineLoad(running=self.running)

    def shutdown(self) -> None:
        pass


class FakeChatProver(FakeEngine):
    """A whole-proof model behind a chat API (as remote bundles are): it takes the chat turns itself.

    Answer i is a proof plan and a ```lean4 block that completes the theorem quoted in the DeepSeek-Prover-V2
    prompt with `exact test_i`; the last answer is cut off inside its block. A prompt it does not recognise
    gets prose, so a test sees whether the preset's prompt reached the engine.
    """

    async def generate(self, prompt, sampling: SamplingRequest, request_id: str) -> EngineOutput:
        user = prompt[-1]["content"]  # chat turns, as a remote bundle gets them
        marker = "Complete the following Lean 4 code:\n\n```lean4\n"
        if not user.startswith(marker):
            return EngineOutput(completions=[Completion(text="I cannot help.", cumulative_logprob=-1.0, num_tokens=3)])
        theorem = user[len(marker):].split("\n```", 1)[0]
        completions = [
            Completion(
                text=f"Plan {i}: close it.\n\n```lean4\n{theorem}\n  exact test_{i}\n```\n",
                cumulative_logprob=-0.5 * (i + 1),
                num_tokens=2,
                finish_reason="stop",
            )
            for i in range(sampling.n - 1)
        ]
        completions.append(Completion(text=f"```lean4\n{theorem}\n  nlin", cumulative_logprob=-0.1, num_tokens=2))
        return EngineOutput(completions=completions, prompt_tokens=len(user))


def fake_engine_for(config: BundleConfig) -> FakeEngine:
    return FakeChatProver(config) if config.task == "whole_proof" else FakeEngine(config)
