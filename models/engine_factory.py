"""One place that turns a bundle's `engine` kind into its generation engine.

Imports are lazy, per engine kind: a machine without vLLM still serves remote and transformers bundles, a
CPU-only ingress never imports torch or vLLM, and one without the `anthropic` or `google-genai` extras still
serves the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import BundleConfig
    from core.engine_protocol import GenerationEngine

# The extra that provides each optional engine's SDK.
_EXTRAS = {"anthropic": "anthropic", "gemini": "gemini", "openai": "openai"}


def _missing_sdk(bundle: BundleConfig, exc: ImportError) -> ImportError:
    extra = _EXTRAS.get(bundle.engine, bundle.engine)
    return ImportError(
        f"bundle {bundle.name!r} needs the {bundle.engine} engine's SDK ({exc.name}): pip install 'leanserve[{extra}]'"
    )


def make_engine(bundle: BundleConfig) -> GenerationEngine:
    """The (not yet started) engine of `bundle`, by its `engine` kind."""
    try:
        if bundle.engine == "vllm":
            from models.vllm_engine import VLLMEngine  # the only path that imports vLLM

            return VLLMEngine(bundle)
        if bundle.engine == "transformers":
            from models.transformers_engine import TransformersEngine

            return TransformersEngine(bundle)
        if bundle.engine == "openai":
            from models.openai_engine import OpenAIChatEngine

            return OpenAIChatEngine(bundle)
        if bundle.engine == "anthropic":
            from models.anthropic_engine import AnthropicChatEngine

            return AnthropicChatEngine(bundle)
        if bundle.engine == "gemini":
            from models.gemini_engine import GeminiChatEngine

            return GeminiChatEngine(bundle)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in {"anthropic", "google", "openai"}:
            raise _missing_sdk(bundle, exc) from exc
        raise
    raise ValueError(f"bundle {bundle.name!r}: unknown engine kind {bundle.engine!r}")
