"""The edge middlewares (deployments/edge.py): a body over the limit is refused before it is read whole, and Ray's
client control headers never reach the proxy's own parsing. Through the real FastAPI app, and through Ray's own
code that wraps the proxy in its middlewares."""

from __future__ import annotations

import json

import httpx
import pytest
from support import LEANCOPILOT_HEADERS
from test_service import FakeClock, Scorer, app_args, client, make_app

from deployments.edge import (
    BodyLimit,
    LostReplicaAs503,
    StripClientControlHeaders,
    proxy_body_limit,
    proxy_middlewares,
)

LIMIT = 1 << 20  # RequestLimits' default
CHUNK = 64 << 10
HUGE = 64 << 20  # 64 MiB: were it read whole, the test would see it


class CountingBody:
    """A streaming request body that counts what the server pulled from it."""

    def __init__(self, total: int, chunk: int = CHUNK):
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self):
        while self.sent < self.total:
            self.sent += self.chunk
            yield b"x" * self.chunk


async def test_a_chunked_body_over_the_limit_gets_413_without_being_read_whole():
    app = await make_app(app_args(), FakeClock(), Scorer())
    body = CountingBody(HUGE)
    async with client(app) as http:
        # A generator body has no Content-Length: the app can only count it as it comes.
        response = await http.post("/generate", content=body, headers=LEANCOPILOT_HEADERS)
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body too large: the limit is {LIMIT} bytes."}
    assert LIMIT < body.sent <= LIMIT + CHUNK, f"the app read {body.sent} bytes of a {HUGE}-byte body"


async def test_a_declared_length_over_the_limit_gets_413_before_one_byte_is_read():
    app = await make_app(app_args(), FakeClock(), Scorer())
    body = CountingBody(HUGE)
    async with client(app) as http:
        response = await http.post(
            "/generate", content=body, headers={**LEANCOPILOT_HEADERS, "Content-Length": str(10 << 30)}
        )
    assert response.status_code == 413 and response.json()["detail"].startswith("Request body too large")
    assert body.sent == 0


async def test_the_limit_is_the_configs_and_a_body_within_it_is_served():
    args = app_args(limits={"max_input_chars": 1024, "max_prefix_chars": 0, "max_body_bytes": 4096})
    app = await make_app(args, FakeClock(), Scorer())
    async with client(app) as http:
        within = await http.post(
            "/generate", content=json.dumps({"input": "⊢ True", "name": "tiny", "prefix": ""}), headers=LEANCOPILOT_HEADERS
        )
        over = await http.post("/generate", content=CountingBody(8192, chunk=1024), headers=LEANCOPILOT_HEADERS)
    assert within.status_code == 200 and within.json()["outputs"]
    assert over.status_code == 413 and over.json()["detail"] == "Request body too large: the limit is 4096 bytes."


async def test_an_app_that_answered_before_the_limit_keeps_its_answer():
    async def early(scope, receive, send):  # answers, then reads on: a late refusal must not send a second start
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"done", "more_body": False})

    sent = []

    async def capture(message):
        sent.append(message)

    chunks = iter([{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3)

    async def receive():
        return next(chunks)

    await BodyLimit(early, max_body_bytes=1000)({"type": "http", "headers": []}, receive, capture)
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert sent[0]["status"] == 200


async def test_ray_no_longer_sees_the_client_control_headers():
    from ray.serve._private.http_util import parse_disconnect_disabled_header, parse_request_timeout_header

    seen = {}

    async def inner(scope, receive, send):
        seen["headers"] = dict(scope["headers"])

    scope = {
        "type": "http",
        "headers": [
            (b"x-request-timeout-seconds", b"0"),  # 0 switches Serve's request timeout off
            (b"X-Request-Disconnect-Disabled", b"?1"),  # keeps the request running after the client left
            (b"x-request-id", b"lean-1"),
        ],
    }
    await StripClientControlHeaders(inner)(scope, None, None)
    # Ray's own parsing, as its proxy runs it on the request: the configured timeout and disconnect policy hold.
    assert parse_request_timeout_header(seen["headers"], 125.0) == 125.0
    assert parse_disconnect_disabled_header(seen["headers"]) is False
    assert seen["headers"] == {b"x-request-id": b"lean-1"}
    # Without the middleware Ray honours them: the test above would see None and True.
    assert parse_request_timeout_header(dict(scope["headers"]), 125.0) is None


async def test_rays_proxy_wrapping_applies_both_and_the_413_carries_a_request_id(monkeypatch):
    from ray.serve._private.http_util import _apply_middlewares

    monkeypatch.setenv("LEANSERVE_MAX_BODY_BYTES", "2048")
    assert proxy_body_limit() == 2048
    reached = []

    async def proxy(scope, receive, send):  # stands for Serve's HTTPProxy: it must see neither
        reached.append(dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    app = _apply_middlewares(proxy, proxy_middlewares())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        refused = await http.post("/generate", content=b"x" * 4096, headers={"X-Request-Id": "lean-big"})
        served = await http.post("/generate", content=b"{}", headers={"x-request-timeout-seconds": "0"})
    assert refused.status_code == 413 and refused.json() == {"detail": "Request body too large: the limit is 2048 bytes."}
    assert refused.headers["x-request-id"] == "lean-big"
    assert served.status_code == 200 and len(reached) == 1
    assert b"x-request-timeout-seconds" not in reached[0]


async def run_asgi(app, path: str = "/generate", disconnect: bool = False) -> list[dict]:
    """The messages `app` sends for one request; `disconnect`: the client has gone when the app reads on."""
    sent = []

    async def capture(message):
        sent.append(message)

    messages = iter([{"type": "http.request", "body": b"{}", "more_body": False}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"x-request-id", b"lean-7")]}
    await app(scope, receive, capture)
    return sent


async def rays_proxy_after_a_lost_replica(scope, receive, send):
    """What Ray 2.60's proxy does when the replica dies mid-request: a RayActorError maps to 500, and
    send_http_response_on_exception sends nothing for a 500 (the HTTP server would answer a bare 500)."""
    from ray.exceptions import RayActorError
    from ray.serve._private.http_util import get_http_response_status, send_http_response_on_exception

    await receive()
    status = get_http_response_status(RayActorError(), 125.0, "lean-7")
    assert status.code == 500
    for message in send_http_response_on_exception(status, response_started=False):
        await send(message)


@pytest.mark.parametrize(("path", "shape"), [("/generate", "detail"), ("/v1/completions", "error")])
async def test_a_request_left_unanswered_by_a_lost_replica_gets_503_with_retry_after(path, shape):
    sent = await run_asgi(LostReplicaAs503(rays_proxy_after_a_lost_replica), path)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 503 and headers[b"retry-after"] == b"1" and headers[b"x-request-id"] == b"lean-7"
    body = json.loads(sent[1]["body"])
    assert shape in body and "replica serving this request was lost" in json.dumps(body)


async def test_the_apps_own_answers_pass_untouched_and_a_gone_client_gets_nothing():
    async def app_500(scope, receive, send):  # the app's own 500 is an answer: it stays a 500
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    async def client_left(scope, receive, send):  # the proxy's 499: nobody is there to answer
        await receive()
        assert (await receive())["type"] == "http.disconnect"

    answered = await run_asgi(LostReplicaAs503(app_500))
    assert [m.get("status") for m in answered] == [500, None]
    assert await run_asgi(LostReplicaAs503(client_left)) == []


def test_the_proxy_hook_maps_lost_replicas_outermost():
    assert [m.cls for m in proxy_middlewares()] == [BodyLimit, StripClientControlHeaders, LostReplicaAs503]


def test_the_proxys_default_limit_is_the_configs_default(monkeypatch):
    from core.config import RequestLimits

    monkeypatch.delenv("LEANSERVE_MAX_BODY_BYTES", raising=False)
    assert proxy_body_limit() == RequestLimits().max_body_bytes == LIMIT


def test_the_body_limit_must_carry_the_longest_input():
    from core.config import ConfigError, parse_app_args

    with pytest.raises(ConfigError, match="max_body_bytes"):
        parse_app_args({"models": [{"name": "m", "model": "x"}], "limits": {"max_input_chars": 1 << 20}})


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/completions", lambda detail: {"error": {"message": detail, "type": "invalid_request_error", "param": None, "code": "input_too_large"}}),
        ("/api/generate", lambda detail: {"error": detail}),
        ("/encode", lambda detail: {"detail": detail}),
    ],
)
async def test_each_front_door_gets_its_413_in_its_own_error_shape(path, shape):
    app = await make_app(app_args(), FakeClock(), Scorer())
    async with client(app) as http:
        response = await http.post(path, content=CountingBody(2 * LIMIT), headers=LEANCOPILOT_HEADERS)
    assert response.status_code == 413
    assert response.json() == shape(f"Request body too large: the limit is {LIMIT} bytes.")
