"""The ingress's request middleware (deployments/request_middleware.py), one pure ASGI layer: driven with raw
ASGI messages, over stand-in apps where a test needs to see exactly what reaches the app, and over the whole HTTP
app with the fake engine for streams and a client that leaves."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import FakeEngine
from test_openai_and_ollama_routes import args, make

from core.payloads import CompletionDelta, StreamChunk
from deployments import request_middleware
from deployments.request_middleware import RequestMiddleware
from logic.auth import ApiKeyGate


def http_scope(path: str, headers: dict[str, str] | None = None) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")]
        + [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
        "client": ("10.0.0.7", 5000), "server": ("leanserve", 80),
    }


async def drive(app, scope: dict, body: bytes = b"{}", events: list | None = None) -> list:
    """Runs one request; returns `events`: what the app sent, in order ("send", message), among whatever else
    the test logs there (the metrics records)."""
    events = [] if events is None else events
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive():
        return next(messages, {"type": "http.disconnect"})

    async def send(message):
        events.append(("send", message))

    await app(scope, receive, send)
    return events


@pytest.fixture()
def records(monkeypatch) -> list:
    """The metrics the middleware records, into a list a test can share with `drive`."""
    recorded: list = []
    monkeypatch.setattr(
        request_middleware, "record_request",
        lambda bundle, route, status, latency: recorded.append(("record", bundle, route, status)),
    )
    return recorded


async def service():
    app, _ = await make(args())
    return app.state.service


def sent(events: list) -> list[dict]:
    return [event[1] for event in events if event[0] == "send"]


def start_of(events: list) -> dict:
    return next(m for m in sent(events) if m["type"] == "http.response.start")


async def test_a_stream_gets_the_headers_its_endpoint_filled_in_and_its_metrics_after_the_last_chunk(records):
    async def streaming_app(scope, receive, send):
        context = scope["state"]["context"]  # the service fills these in while the endpoint runs
        context.bundle, context.replica, context.prompt_tokens = "tiny", "replica-3", 17
        context.degraded += ["scorer-unavailable", "dedup-unavailable", "scorer-unavailable"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for chunk in (b"data: 1\n\n", b"data: [DONE]\n\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    middleware = RequestMiddleware(streaming_app, await service(), gate=None)
    events = await drive(middleware, http_scope("/v1/completions"), events=records)
    headers = start_of(events)["headers"]
    assert headers == [
        (b"content-type", b"text/event-stream"),
        (b"x-leanserve-replica", b"replica-3"),
        (b"x-leanserve-prompt-tokens", b"17"),
        (b"x-leanserve-degraded", b"scorer-unavailable, dedup-unavailable"),
    ]
    # One record, once the whole answer has left: a stream's latency is the whole stream's.
    assert events[-1] == ("record", "tiny", "completions", 200)
    assert [e for e in events if e[0] == "record"] == [events[-1]]
    assert events[-2] == ("send", {"type": "http.response.body", "body": b"", "more_body": False})


async def test_the_whole_apps_stream_is_recorded_once_after_its_last_chunk(records):
    app, _ = await make(args())
    body = json.dumps({"model": "tiny", "prompt": "abc", "n": 2, "max_tokens": 4, "stream": True}).encode()
    events = await drive(app, http_scope("/v1/completions", {"X-Request-Id": "lean-s1"}), body, events=records)
    assert start_of(events)["status"] == 200
    chunks = b"".join(m.get("body", b"") for m in sent(events) if m["type"] == "http.response.body")
    assert chunks.endswith(b"data: [DONE]\n\n") and b"test_1" in chunks
    assert events[-1] == ("record", "tiny", "completions", 200)
    assert [e for e in events if e[0] == "record"] == [events[-1]]


async def test_the_app_gets_the_servers_receive_itself_and_the_context_on_its_state():
    seen = {}

    async def app(scope, receive, send):
        seen["receive"], seen["state"] = receive, scope["state"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        pass

    scope = http_scope("/health", {"X-Request-Id": "lean-9", "X-Session-Id": "s" * 500, "x-api-key": "sk-1"})
    await RequestMiddleware(app, await service(), gate=None)(scope, receive, send)
    assert seen["receive"] is receive  # untouched: the app sees the client's http.disconnect itself
    context = seen["state"]["context"]
    assert (context.request_id, seen["state"]["api_key"]) == ("lean-9", "sk-1")
    assert context.session_id == "s" * request_middleware.MAX_SESSION_ID_CHARS
    assert context.client == request_middleware.client_identity("sk-1", "10.0.0.7") != "host:10.0.0.7"


@pytest.mark.timeout(60)  # a guard only: should the app never see the disconnect, the test hangs, and fails here
async def test_a_client_that_leaves_mid_stream_stops_the_stream_and_its_engine_call():
    app, servers = await make(args())
    first_chunk_sent, engine_stopped = asyncio.Event(), asyncio.Event()

    class EndlessStream(FakeEngine):
        async def generate_stream(self, prompt, sampling, request_id):
            try:
                yield StreamChunk([CompletionDelta(0, "intro", 1)], prompt_tokens=1)
                await asyncio.Event().wait()  # only the client leaving ends this stream
            finally:
                engine_stopped.set()

    servers["tiny"].completer.engine = EndlessStream(servers["tiny"].config)
    body = json.dumps({"model": "tiny", "prompt": "x", "stream": True}).encode()
    sent, body_read = [], []

    async def receive():
        if not body_read:
            body_read.append(True)
            return {"type": "http.request", "body": body, "more_body": False}
        await first_chunk_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and b"intro" in message.get("body", b""):
            first_chunk_sent.set()

    # Returns only once the app has seen the disconnect (a hang here is the failure).
    await app(http_scope("/v1/completions"), receive, send)
    assert engine_stopped.is_set()
    assert sent[0]["status"] == 200 and not any(b"[DONE]" in m.get("body", b"") for m in sent)


async def test_an_app_that_raises_is_recorded_as_500_and_its_error_goes_on_to_the_handlers(records):
    async def failing_app(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await drive(RequestMiddleware(failing_app, await service(), gate=None), http_scope("/generate"), events=records)
    assert records == [("record", "unknown", "generate", 500)]


async def test_metrics_that_fail_never_fail_the_answer_and_unmetered_paths_are_not_recorded(monkeypatch, records):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RequestMiddleware(app, await service(), gate=None)
    assert [e[0] for e in await drive(middleware, http_scope("/health"), events=records)] == ["send", "send"]

    def broken(*_):
        raise RuntimeError("metrics backend down")

    monkeypatch.setattr(request_middleware, "record_request", broken)
    answered = await drive(middleware, http_scope("/generate"))
    assert [m.get("body") for _, m in answered] == [None, b"ok"]


async def test_a_refused_caller_is_answered_here_in_its_doors_shape_and_the_app_is_never_called(records):
    called = []

    async def app(scope, receive, send):
        called.append(scope["path"])

    middleware = RequestMiddleware(app, await service(), gate=ApiKeyGate(["sk-1"]))
    stranger = await drive(middleware, http_scope("/v1/completions"), events=records)
    bad_priority = await drive(middleware, http_scope("/generate", {"Authorization": "Bearer sk-1", "X-Priority": "vip"}))
    assert called == []
    start = start_of(stranger)
    assert start["status"] == 401 and (b"www-authenticate", b"Bearer") in start["headers"]
    assert json.loads(stranger[1][1]["body"])["error"]["code"] == "invalid_api_key"
    assert start_of(bad_priority)["status"] == 422 and "X-Priority" in json.loads(bad_priority[1][1]["body"])["detail"]
    assert [e for e in records if e[0] == "record"] == [
        ("record", "unknown", "completions", 401), ("record", "unknown", "generate", 422)
    ]


async def test_lifespan_passes_straight_through():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], "state" in scope))

    await RequestMiddleware(app, await service(), gate=None)({"type": "lifespan"}, None, None)
    assert seen == [("lifespan", False)]
