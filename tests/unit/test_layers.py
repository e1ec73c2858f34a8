"""The layer contracts of pyproject.toml hold (import-linter): each layer imports only the ones below it,
only models/vllm_engine.py imports vLLM, nothing below the Serve layer imports Ray, and no two modules
import each other. `make lint` runs the same check; here it runs with every `make test`."""

import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
