"""make_engine: one dispatch per engine kind, with lazy imports (transformers bundles never import vLLM)."""

import subprocess
import sys

from support import REPO_ROOT

# Runs in a fresh interpreter in which `import vllm` fails, as on a machine without vLLM.
WITHOUT_VLLM = """
import asyncio, sys
sys.modules["vllm"] = None
from core.config import BundleConfig
from core.payloads import SamplingRequest
from models.engine_factory import make_engine

bundle = BundleConfig(name="m", model=sys.argv[1], engine="transformers", transformers={"device": "cpu"})
engine = make_engine(bundle)

async def main():
    await engine.start()
    out = await engine.generate("⊢ True", SamplingRequest(n=2, temperature=1.0, top_p=0.95, max_tokens=4), "r")
    print(len(out.completions), "vllm" in sys.modules and sys.modules["vllm"] is not None)
    engine.shutdown()

asyncio.run(main())
"""


def test_decoder_only_models_run_on_transformers_without_vllm(tiny_llama):
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_VLLM, str(tiny_llama)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["2", "False"]


def test_each_kind_gets_its_engine_unstarted():
    from core.config import BundleConfig
    from models.engine_factory import make_engine
    from models.transformers_engine import TransformersEngine
    from models.vllm_engine import VLLMEngine

    assert isinstance(make_engine(BundleConfig(name="v", model="org/model")), VLLMEngine)
    engine = make_engine(BundleConfig(name="t", model="org/model", engine="transformers"))
    assert isinstance(engine, TransformersEngine) and engine.model is None  # nothing loaded before start()
