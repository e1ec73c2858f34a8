"""Typed configuration of one model bundle: its engine, prompt, sampling, deployment and optional encoder.

Every default lives here (and in the modules this one imports), once; the docs' reference is generated
from these models (core/config/reference.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import StrictModel, resolve_local_path
from core.config.deployment import BundleDeploymentSettings
from core.config.remote import REMOTE_ENGINES, CrossCallDedupConfig, RemoteEngineConfig

BUNDLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
# The whole-proof prompt presets (their texts live in logic/whole_proof.py, which a test keeps in step).
PresetName = Literal["deepseek-prover-v2", "goedel-prover-v2", "kimina-prover", "leandojo-v2"]
DEFAULT_PRESET: PresetName = "deepseek-prover-v2"
# The LeanServe routes a bundle can answer; which ones it does follows from its config (BundleConfig.routes).
Route = Literal["generate", "prove", "complete", "encode"]


class FewShotExample(StrictModel):
    """One (proof state, tactic) pair shown to a chat model before the real state."""

    state: str
    tactic: str


class PromptConfig(StrictModel):
    """How a proof state becomes the engine's prompt.

    `template` is a format string with `{state}` (and optionally `{name}`); generation continues
    right after it, so a request's prefix is appended to the rendered prompt. With `chat: true` the
    template renders the user turn and the model's own chat template wraps it, after `system` and the
    `few_shot` turns.
    """

    template: str = Field(default="{state}", description="Format string with {state} (and optionally {name}).")
    chat: bool = Field(default=False, description="Wrap the rendered template in the model's chat template.")
    system: str | None = Field(default=None, description="System message (chat only).")
    few_shot: list[FewShotExample] = Field(default_factory=list, description="(state, tactic) turns shown first (chat only).")

    @field_validator("template")
    @classmethod
    def _template_has_state(cls, value: str) -> str:
        if "{state}" not in value:
            raise ValueError("the prompt template must contain the placeholder {state}")
        try:
            value.format(state="", name="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"the prompt template is not a valid format string: {exc!r}") from None
        return value

    @model_validator(mode="after")
    def _chat_only_fields(self) -> PromptConfig:
        if not self.chat and (self.system or self.few_shot):
            raise ValueError("system and few_shot need chat: true")
        return self


class SamplingDefaults(StrictModel):
    """A bundle's default sampling; a request may choose its own `n` and `max_tokens`, up to `limits`."""

    n: int = Field(default=4, ge=1, le=64, description="Candidates sampled in one engine request.")
    temperature: float = Field(default=1.0, ge=0.0, le=5.0, description="Sampling temperature.")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=64, ge=1, le=8192, description="Tokens per candidate.")
    stop: list[str] = Field(default_factory=lambda: ["\n"], description="Stop strings; a tactic is one line.")


class TacticFilterConfig(StrictModel):
    """How completions become tactics (see logic/tactics.py)."""

    # Worth it for chat models that chat; off for trained provers, whose completions are tactics by construction.
    require_tactic_shape: bool = Field(
        default=False, description="Drop candidates that do not look like a tactic (prose, an echoed goal)."
    )


class EngineConfig(StrictModel):
    """Arguments of the generation engine (vLLM's AsyncEngineArgs, by the same names)."""

    dtype: str = Field(default="auto", description="Weights dtype; float32 on AVX2 CPUs.")
    max_model_len: int | None = Field(default=None, ge=16, description="Context length; None: the model's.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one replica shards the model over.")
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0.0, le=1.0, description="GPU memory fraction for weights and KV cache; None: vLLM's 0.92."
    )
    # The CPU build sizes its KV cache from 92% of RAM unless told: set it there.
    kv_cache_memory_bytes: int | None = Field(default=None, ge=1 << 20, description="KV cache size in bytes.")
    max_num_seqs: int = Field(default=64, ge=1, description="Sequences the engine batches at once.")
    enable_prefix_caching: bool = Field(default=True, description="Reuse the KV cache of shared prompt prefixes.")
    enforce_eager: bool = Field(default=False, description="Skip graph capture/compilation (faster start).")
    seed: int = Field(default=0, description="Engine seed (requests are not seeded one by one).")
    # With priority, an interactive request waiting in the engine is scheduled before queued batch ones.
    scheduling_policy: Literal["priority", "fcfs"] = Field(
        default="priority", description="vLLM's scheduler order: by request priority class, or arrival only."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Any other AsyncEngineArgs field, checked by name at engine start."
    )

    @model_validator(mode="after")
    def _one_memory_knob(self) -> EngineConfig:
        if self.gpu_memory_utilization is not None and self.kv_cache_memory_bytes is not None:
            raise ValueError("set gpu_memory_utilization or kv_cache_memory_bytes, not both")
        return self


class EncoderConfig(StrictModel):
    """A transformers encoder whose mean-pooled hidden states answer /encode."""

    model: str = Field(description="Local folder or hub id of a transformers encoder.")
    max_length: int = Field(default=512, ge=1, description="Tokens kept per input (longer inputs are truncated).")
    device: str = Field(default="auto", description="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    max_batch_size: int = Field(default=16, ge=1, description="Concurrent /encode calls sharing one forward pass.")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, description="Wait for a batch to fill.")

    @field_validator("model")
    @classmethod
    def _absolute_local_path(cls, value: str) -> str:
        return resolve_local_path(value)


class TransformersEngineConfig(StrictModel):
    """Settings of the transformers engine (`engine: transformers`): LeanCopilot's ByT5 models, or any
    decoder-only model where vLLM is not installed. Generation runs one request at a time, off the event loop."""

    device: str = Field(default="auto", description="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype; auto: float32 on CPU, the checkpoint's on GPU."
    )
    decoding: Literal["beam_search", "sampling"] | None = Field(
        default=None, description="None: beam search for encoder-decoders (as LeanCopilot), sampling for decoder-only."
    )
    num_beams: int | None = Field(default=None, ge=1, description="Beam width; None: the request's n.")
    # LeanCopilot ranks beams with length_penalty 0 (raw log-prob sums); scores are raw sums either way.
    length_penalty: float = Field(default=0.0, description="Beam ranking: sum of log-probs / length**length_penalty.")
    max_input_tokens: int | None = Field(
        default=None, ge=1, description="Longer prompts get 413; None: the model's max_position_embeddings, if any."
    )


class WholeProofConfig(StrictModel):
    """How /prove turns a theorem into a chat prompt (logic/whole_proof.py holds the published prompts)."""

    preset: PresetName = Field(
        default=DEFAULT_PRESET, description="The model family's published prompt (see \"Whole-proof generation\")."
    )


class BundleConfig(StrictModel):
    """One model bundle: its own autoscaled Ray Serve deployment."""

    name: str = Field(pattern=BUNDLE_NAME_PATTERN, description="The name clients send (LeanCopilot's `name`).")
    aliases: list[str] = Field(default_factory=list, description="Other names that reach this bundle.")
    engine: Literal["vllm", "openai", "anthropic", "gemini", "transformers"] = Field(
        default="vllm", description="The generation engine: vllm, a remote API (openai, anthropic, gemini), transformers."
    )
    task: Literal["tactic", "whole_proof"] = Field(
        default="tactic", description="tactic: answers /generate; whole_proof: answers /prove (complete proofs)."
    )
    model: str | None = Field(default=None, description="Local folder or hub id of the generator; None: encoder only.")
    tokenizer: str | None = Field(default=None, description="Tokenizer folder or id; None: the model's.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="See below.")
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults, description="See below.")
    tactics: TacticFilterConfig = Field(default_factory=TacticFilterConfig, description="See below.")
    engine_args: EngineConfig = Field(default_factory=EngineConfig, description="See below.")
    transformers: TransformersEngineConfig | None = Field(
        default=None, description="Settings of engine: transformers (None: its defaults)."
    )
    whole_proof: WholeProofConfig | None = Field(
        default=None, description="Prompt of a task: whole_proof bundle (None: its defaults)."
    )
    deployment: BundleDeploymentSettings = Field(default_factory=BundleDeploymentSettings, description="See below.")
    encoder: EncoderConfig | None = Field(default=None, description="Answers /encode; None: 400 on /encode.")
    remote: RemoteEngineConfig | None = Field(
        default=None, description="Engines openai, anthropic, gemini: how to reach the API (see below)."
    )
    dedup: CrossCallDedupConfig = Field(default_factory=CrossCallDedupConfig, description="See below.")
    scorer: str | bool = Field(
        default=True, description="use_reward scorer: a name from `scorers`; true: the first one; false: none (400)."
    )

    @field_validator("model", "tokenizer")
    @classmethod
    def _absolute_local_path(cls, value: str | None) -> str | None:
        return resolve_local_path(value)

    @model_validator(mode="after")
    def _serves_something(self) -> BundleConfig:
        if self.model is None and self.encoder is None:
            raise ValueError(f"bundle {self.name!r} needs a model, an encoder, or both")
        for alias in self.aliases:
            if not re.match(BUNDLE_NAME_PATTERN, alias):
                raise ValueError(f"alias {alias!r} of bundle {self.name!r} is not a valid name")
        if self.transformers is not None and self.engine != "transformers":
            raise ValueError(f"bundle {self.name!r}: `transformers` settings need engine: transformers, not {self.engine}")
        if self.task == "whole_proof":
            if self.model is None:
                raise ValueError(f"bundle {self.name!r}: task whole_proof needs a model")
            if any("\n" in stop for stop in self.sampling.stop):
                raise ValueError(
                    f"bundle {self.name!r}: a whole proof spans lines; set sampling.stop to [] (or stop strings without a line break)"
                )
        elif self.whole_proof is not None:
            raise ValueError(f"bundle {self.name!r}: `whole_proof` settings need task: whole_proof")
        return self

    @model_validator(mode="after")
    def _remote_settings_match_engine(self) -> BundleConfig:
        if self.is_remote:
            if self.remote is None:
                raise ValueError(f"bundle {self.name!r} (engine {self.engine}) needs a `remote:` section")
            if self.model is None:
                raise ValueError(f"bundle {self.name!r}: `model` is the model id as the {self.engine} API names it")
            if not self.prompt.chat:
                raise ValueError(f"bundle {self.name!r}: remote APIs take chat messages; set prompt.chat: true")
            if "\n" in self.sampling.stop:
                # The default newline stop suits raw completions; a chat answer opens with "```lean\n".
                raise ValueError(f"bundle {self.name!r}: a newline stop cuts chat answers; set sampling.stop: []")
        elif self.remote is not None:
            raise ValueError(f"bundle {self.name!r}: `remote:` is only for engines openai, anthropic, gemini")
        return self

    @model_validator(mode="after")
    def _tensor_parallel_on_gpus(self) -> BundleConfig:
        tp, gpus = self.engine_args.tensor_parallel_size, self.deployment.num_gpus
        if tp > 1 and gpus == 0:
            raise ValueError(
                f"bundle {self.name!r}: tensor_parallel_size {tp} shards the model over GPUs; "
                f"set deployment.num_gpus: {tp} (vLLM's CPU build runs one shard)"
            )
        if tp > 1 and gpus != tp:
            raise ValueError(
                f"bundle {self.name!r}: tensor_parallel_size {tp} needs one whole GPU per shard; "
                f"set deployment.num_gpus: {tp} (it is {gpus:g})"
            )
        return self

    @property
    def is_remote(self) -> bool:
        """Served by a hosted API: no local weights, no warm-up calls (they cost money)."""
        return self.engine in REMOTE_ENGINES

    @property
    def tokens_are_bytes(self) -> bool:
        """Whether the request limits count UTF-8 bytes rather than characters (logic/validation.py).

        The transformers engine is how LeanServe serves LeanCopilot's ByT5 models, whose tokens are UTF-8
        bytes and whose encoder has no context limit of its own: 65,536 × "𝔸" would be 262,144 tokens. A
        decoder-only model on this engine is covered too, since no tokenizer makes more tokens than bytes
        (byte-fallback ones at most one per byte); vLLM and the remote APIs enforce their own context.
        """
        return self.engine == "transformers"

    @property
    def transformers_settings(self) -> TransformersEngineConfig:
        return self.transformers or TransformersEngineConfig()

    @property
    def whole_proof_settings(self) -> WholeProofConfig:
        return self.whole_proof or WholeProofConfig()

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    @property
    def routes(self) -> list[Route]:
        generates = self.model is not None
        return [
            route
            for route, ok in (
                ("generate", generates and self.task == "tactic"),
                ("prove", generates and self.task == "whole_proof"),
                # Raw completions (/v1/completions, /v1/chat/completions, /api/generate): any model.
                ("complete", generates),
                ("encode", self.encoder is not None),
            )
            if ok
        ]

    @property
    def admitted_sequences_per_class(self) -> int:
        """Sequences one replica may hold per priority class (its batch plus the queued batches): the hard
        bound of admission, whatever the deadline estimate says."""
        return (self.deployment.admission.queued_batches + 1) * self.engine_args.max_num_seqs

    @property
    def answers_chat_turns(self) -> bool:
        """Whether the bundle's own prompt is a chat (a local chat template, or a remote chat API): a client's
        chat prompt (LLMLean's) is then asked as it is, where other bundles get the state taken out of it."""
        return self.is_remote or self.prompt.chat

    @property
    def max_ongoing_requests(self) -> int:
        """Concurrent requests a replica accepts: by default all that admission may send it (a request is at
        least one sequence), so waiting happens in the engine's queue, which is ordered by priority."""
        explicit = self.deployment.max_ongoing_requests
        return explicit if explicit is not None else 2 * self.admitted_sequences_per_class

    @property
    def max_queued_requests(self) -> int:
        """Requests a caller's Serve queue may hold while it routes them; beyond it the client gets 503 at once.
        Admission (deployment.admission) is the gate in front of it, so by default this bound is no tighter
        (a burst of admitted requests waits here for a moment, to be routed)."""
        explicit = self.deployment.max_queued_requests
        return explicit if explicit is not None else self.max_ongoing_requests

    @property
    def deployment_name(self) -> str:
        # Ray Serve deployment names may not hold '/', which hub ids do.
        return "bundle-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.name)
