"""Validate Serve config files without starting anything, with the models the app itself uses.

Usage: python -m deployments.check_config serve_config.yaml [configs/local.yaml ...]

`serve run` reports a bad `args` block in its log but keeps running; this exits 2 with the same
field-by-field message, so check a file here (or in CI) before you deploy it.
"""

from __future__ import annotations

import sys

from core.config import PROXY_CALLBACK, PROXY_CALLBACK_ENV, ConfigError, load_serve_config
from logic.auth import check_client_addresses_seen


def describe(path: str) -> list[str]:
    config = load_serve_config(path)
    lines = [f"{path}: ok (http {config.http_options.host}:{config.http_options.port})"]
    # `serve run` / `serve deploy` start Serve's proxy without the launcher: it needs the hook in its environment.
    lines.append(
        f"  proxy: request_timeout_s={config.serve_http_options()['request_timeout_s']} body limit "
        f"{config.max_body_bytes} bytes with {PROXY_CALLBACK_ENV}={PROXY_CALLBACK} in the Ray nodes' environment"
    )
    for app in config.applications:
        security = app.args.security
        check_client_addresses_seen(security)  # the environment `ray start` will pass on, as the ingress checks it
        who = (
            f"API keys from {security.api_keys_env or security.api_keys_file}" if security.keys_required
            else "no API keys: every client" if security.allow_unauthenticated else "no API keys: loopback clients only"
        )
        lines.append(f"  {app.name}: {who}")
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
