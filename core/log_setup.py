"""Loguru set-up shared by the launcher and every replica: one line per event, with the request id.

Proof states are users' private work: they are logged at DEBUG only, never at INFO.
"""

from __future__ import annotations

import os
import sys

from loguru import logger

LOG_LEVEL_ENV = "LEANSERVE_LOG_LEVEL"
_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[component]}</cyan> [{extra[request_id]}] {message}"
)
_configured = False


def configure_logging(component: str) -> None:
    """Idempotent per process; read the level lazily so a replica honours its runtime_env."""
    global _configured
    if _configured:
        return
    logger.remove()
    logger.configure(extra={"component": component, "request_id": "-"})
    logger.add(sys.stderr, level=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(), format=_FORMAT, enqueue=False)
    _configured = True


def request_logger(request_id: str | None):
    """The logger bound to one request id ("-" when there is none)."""
    return logger.bind(request_id=request_id or "-")
