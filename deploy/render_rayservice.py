"""Write deploy/kuberay/rayservice.yaml: the template with serve_config.yaml verbatim as serveConfigV2.

Usage: python deploy/render_rayservice.py [--check]   (--check: exit 1 if the manifest is out of date)
The config is validated with core.config first, so a manifest is never rendered from a bad config. What the
pods need from it is filled in too: the proxy's body limit, and a termination grace that outlasts the drain.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
TEMPLATE = REPO_ROOT / "deploy" / "kuberay" / "rayservice.template.yaml"
MANIFEST = REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml"
PLACEHOLDER = "__SERVE_CONFIG__"
INDENT = " " * 4  # serveConfigV2's block scalar sits under `spec:`
# Kubernetes kills a pod this long after SIGTERM, replicas drained or not: beyond the longest drain, so Ray's
# own shutdown of the replicas (and of their engines) finishes first.
GRACE_MARGIN_S = 30


def pod_values(config) -> dict[str, str]:
    """The template's other placeholders, from the validated ServeConfigFile."""
    from deployments.options import drain_timeout_s  # Ray-free: the drain rule has one owner

    drain_s = max(drain_timeout_s(app.args.ingress) for app in config.applications)
    return {"__MAX_BODY_BYTES__": str(config.max_body_bytes), "__GRACE_S__": str(int(drain_s) + GRACE_MARGIN_S)}


def render(serve_config_text: str, template_text: str, values: dict[str, str] | None = None) -> str:
    if serve_config_text != serve_config_text.rstrip() + "\n" or any(
        line != line.rstrip() for line in serve_config_text.splitlines()
    ):
        # A YAML block scalar keeps the text exactly only without trailing spaces and with one final newline.
        raise ValueError("serve_config.yaml must have no trailing spaces and end with exactly one newline")
    block = "\n".join(INDENT + line if line else "" for line in serve_config_text.splitlines())
    for placeholder, value in (values or {}).items():
        template_text = template_text.replace(placeholder, value)
    return template_text.replace(PLACEHOLDER, block)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from core.config import ConfigError, load_serve_config

    try:
        config = load_serve_config(SERVE_CONFIG)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    text = render(SERVE_CONFIG.read_text(encoding="utf-8"), TEMPLATE.read_text(encoding="utf-8"), pod_values(config))
    if "--check" in argv:
        if MANIFEST.read_text(encoding="utf-8") != text:
            print(f"{MANIFEST} is out of date: run `make kuberay`", file=sys.stderr)
            return 1
        return 0
    MANIFEST.write_text(text, encoding="utf-8")
    print(f"wrote {MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
