"""One place that turns a bundle's `engine` kind into an engine. Imports are lazy, one kind at a time, so a
machine without vLLM serves transformers bundles, and a CPU-only ingress never imports torch or vLLM."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployments.config import BundleConfig
    from models.engine import GenerationEngine


def make_engine(bundle: BundleConfig) -> GenerationEngine:
    """The (not yet started) engine of `bundle`, by its `engine` kind."""
    if bundle.engine == "vllm":
        from models.vllm_engine import VLLMEngine  # the only path that imports vLLM

        return VLLMEngine(bundle)
    if bundle.engine == "transformers":
        from models.transformers_engine import TransformersEngine

        return TransformersEngine(bundle)
    raise ValueError(f"bundle {bundle.name!r}: unknown engine kind {bundle.engine!r}")
