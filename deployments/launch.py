"""`make serve`: start a local Ray (no cluster), serve a config file, block until Ctrl-C.

Usage: python -m deployments.launch [CONFIG] [--port PORT]   (default: configs/local.yaml)

The config is the same Ray Serve config file format as serve_config.yaml, validated by the same models
before anything starts. Ray's dashboard is not started, and HTTP binds the host the file names. Serve's proxy
gets LeanServe's edge middlewares (deployments/edge.py: body limit, Ray's client control headers stripped)
and a request timeout (http_options.request_timeout_s, or the ingress deadline + 5 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable

from loguru import logger

from core.config import (
    PROXY_BODY_LIMIT_ENV,
    PROXY_CALLBACK,
    PROXY_CALLBACK_ENV,
    WORKER_NICENESS,
    WORKER_NICENESS_ENV,
    ConfigError,
    ServeConfigFile,
    load_serve_config,
)
from core.log_setup import configure_logging
from logic.auth import check_client_addresses_seen

DEFAULT_CONFIG = "configs/local.yaml"


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def install_stop_handlers() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both end in the clean shutdown of `main`.

    Called again right after `ray.init`, whose core worker installs a C-level SIGTERM handler that aborts the
    driver without cleaning up; SIGINT is set explicitly because a shell starting us in the background ignores it.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def wait_until_healthy(url: str, timeout_s: float, still_starting: Callable[[], bool] = lambda: True) -> float:
    """Poll GET /health until it answers 200; return the seconds it took.

    Raises TimeoutError after `timeout_s`, or RuntimeError as soon as `still_starting()` turns false
    (for example when the process that should serve has exited).
    """
    started = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        if not still_starting():
            raise RuntimeError(f"{url}: the server stopped before it was healthy")
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{url} not healthy after {timeout_s:.0f}s")
        time.sleep(0.5)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def cluster_environment(config: ServeConfigFile) -> dict[str, str]:
    """What the private cluster's processes read from their environment: Serve's HTTP proxy, LeanServe's
    middlewares and their body limit; the raylet, the priority of the worker processes it starts."""
    return {
        PROXY_CALLBACK_ENV: PROXY_CALLBACK,
        PROXY_BODY_LIMIT_ENV: str(config.max_body_bytes),
        WORKER_NICENESS_ENV: os.environ.get(WORKER_NICENESS_ENV, WORKER_NICENESS),  # an operator's own wins
    }


def serve_config(config: ServeConfigFile) -> None:
    import ray
    from ray import serve

    from deployments.app import build_app

    started = time.perf_counter()
    # The raylet and the proxy are processes of the private cluster started below: they inherit this environment.
    os.environ.update(cluster_environment(config))
    # address="local": always a private cluster, even where `ray start` left one running (stop tears it down).
    ray.init(address="local", include_dashboard=False, configure_logging=False)
    install_stop_handlers()
    http = config.http_options
    serve.start(http_options=config.serve_http_options())
    for spec in config.applications:
        if spec.model_extra and spec.model_extra.get("deployments"):
            logger.warning("application {}: `deployments:` overrides are applied by `serve run`, not here", spec.name)
        serve.run(build_app(spec.args), name=spec.name, route_prefix=spec.route_prefix, blocking=False)
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::") else http.host
    base = f"http://{host}:{http.port}{config.applications[0].route_prefix.rstrip('/')}"
    wait_until_healthy(f"{base}/health", timeout_s=600)
    logger.info("LeanServe ready on {} in {:.1f}s; Ctrl-C stops it", base, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    parser.add_argument("--port", type=int, help="serve on this port instead of the file's http_options.port")
    options = parser.parse_args(argv)
    configure_logging("launch")
    try:
        config = load_serve_config(options.config)
        for app in config.applications:  # what the ingress would refuse, before anything starts
            check_client_addresses_seen(app.args.security)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if options.port is not None:
        config = config.model_copy(update={"http_options": config.http_options.model_copy(update={"port": options.port})})
    http = config.http_options
    # Checked before Ray starts: Serve's proxy would otherwise retry the busy port forever.
    if port_in_use(http.host, http.port):
        print(f"{http.host}:{http.port} is already in use (another LeanServe?); stop it or pass --port", file=sys.stderr)
        return 2
    install_stop_handlers()
    try:
        serve_config(config)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        # A second Ctrl-C (or the terminal's SIGINT to the whole process group) must not cut the clean-up short:
        # serve.shutdown stops each replica, whose engine then stops its engine core process.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
