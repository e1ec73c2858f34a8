"""Remote engines against local stand-ins of the paid APIs (real HTTP on loopback, no Ray)."""

from __future__ import annotations

import pytest
from api_standins import StandinServer

STANDIN_KEY = "sk-test-123"  # what tests/remote/test_remote_engines.py puts in the engines' key variable


@pytest.fixture(scope="module")
def standin():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with StandinServer(port, api_key=STANDIN_KEY) as server:
        yield server


@pytest.fixture
def api(standin):
    standin.state.reset()
    yield standin
    standin.state.reset()
