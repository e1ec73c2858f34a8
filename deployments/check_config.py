"""Validate Serve config files without starting anything, with the models the app itself uses.

Usage: python -m deployments.check_config serve_config.yaml [configs/local.yaml ...]

`serve run` reports a bad `args` block in its log but keeps running; this exits 2 with the same
field-by-field message, so check a file here (or in CI) before you deploy it.
"""

from __future__ import annotations

import sys

from core.config import ConfigError, load_serve_config


def describe(path: str) -> list[str]:
    config = load_serve_config(path)
    lines = [f"{path}: ok (http {config.http_options.host}:{config.http_options.port})"]
    for app in config.applications:
        for bundle in app.args.models:
            scaling = bundle.deployment.autoscaling
            lines.append(
                f"  {app.name}/{bundle.deployment_name}: {bundle.model or '-'} routes={','.join(bundle.routes)} "
                f"replicas={scaling.min_replicas}..{scaling.max_replicas} gpus={bundle.deployment.num_gpus} "
                f"max_ongoing={bundle.max_ongoing_requests}"
            )
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    for path in argv:
        try:
            print("\n".join(describe(path)))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
