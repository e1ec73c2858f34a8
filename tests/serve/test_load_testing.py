"""Load testing against a real local Ray Serve app (tiny vLLM engine): the notebook runs end to end, and
identical concurrent requests are coalesced into one engine request."""

from __future__ import annotations

import asyncio
import json
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from serve_app import GENERATOR
from support import REPO_ROOT, lean_goals

from leanserve_client import AsyncLeanServeClient

pytestmark = pytest.mark.serve

NOTEBOOK = REPO_ROOT / "notebooks" / "load_test.ipynb"
KERNEL_NAME = "leanserve-test-venv"


def venv_kernel_manager(tmp_path) -> KernelManager:
    """A kernel running this very interpreter (the venv's), whatever kernels the machine has registered:
    a fresh CI clone has no user kernelspec, and a developer's `python3` kernel may be another Python."""
    spec_dir = tmp_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "LeanServe (venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def inject_parameters(notebook, **values) -> None:
    """papermill's convention: a cell right after the one tagged `parameters` overrides its values."""
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))


def test_notebook_runs_a_sweep_and_plots_it(serve_app, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    out_dir = tmp_path / "results"
    inject_parameters(
        notebook, URL=serve_app.url, MODEL=GENERATOR, CONCURRENCY=[1, 2], REQUESTS_PER_LEVEL=2, RATES=[4.0],
        MAX_TOKENS=4, OUT_DIR=str(out_dir),
    )
    client = NotebookClient(
        notebook, km=venv_kernel_manager(tmp_path), timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    results = json.loads((out_dir / "load_test.json").read_text())
    assert [level["level"] for level in results["levels"]] == ["c=1", "c=2", "rate=4"]
    for level in results["levels"]:
        assert level["summary"]["ok"] == level["summary"]["requests"] == 2, level["summary"]
        assert all(r["status"] == 200 and r["candidates"] >= 1 for r in level["records"])
    assert (out_dir / "load_test.csv").read_text().count("\n") == 1 + 6
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("text/markdown" in o.get("data", {}) and "| c=2 |" in o["data"]["text/markdown"] for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot cell drew nothing"


async def engine_requests(serve_app) -> int:
    report = await serve_app.bundle_handle(GENERATOR).health.remote()
    return report["engine_requests"]


async def test_identical_concurrent_requests_share_one_engine_request(serve_app):
    # Long enough (the tiny model has no stop string) that all copies arrive while the first is generating.
    body = {"max_tokens": 300, "n": 4}
    async with AsyncLeanServeClient(serve_app.url, timeout_s=60) as client:
        before = await engine_requests(serve_app)
        same = await asyncio.gather(*(client.generate("x : ℕ\n⊢ x + 0 = x", GENERATOR, **body) for _ in range(6)))
        after_same = await engine_requests(serve_app)
        distinct = await asyncio.gather(*(client.generate(s, GENERATOR, **body) for s in lean_goals(3)))
        after_distinct = await engine_requests(serve_app)
    assert all(r.ok for r in same + distinct), [r.error for r in same + distinct]
    assert after_same - before == 1, "six identical concurrent requests should cost one engine request"
    assert all(r.candidates == same[0].candidates for r in same), "coalesced requests share one answer"
    assert after_distinct - after_same == 3, "different states are never coalesced"
