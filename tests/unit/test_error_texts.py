"""What error details repeat of the client's and the upstream API's text: a capped name, never the upstream's."""

from __future__ import annotations

import json

from test_openai_and_ollama_routes import args, make, post_bytes

from core.errors import MAX_ECHOED_CHARS, ServiceUnavailableError
from models.remote_engine import ApiFailure, to_leanserve_error


async def test_a_huge_model_name_is_echoed_capped_in_every_front_door():
    app, _ = await make(args())
    name = "x" * 1_000_000
    leancopilot = await post_bytes(app, "/generate", json.dumps({"input": "⊢ True", "name": name}))
    openai = await post_bytes(app, "/v1/completions", json.dumps({"model": name, "prompt": "x"}))
    assert leancopilot.status_code == openai.status_code == 404
    for detail in (leancopilot.json()["detail"], openai.json()["error"]["message"]):
        assert len(detail) < MAX_ECHOED_CHARS + 200 and "1000000 characters" in detail and "tiny" in detail


def test_upstream_error_texts_stay_out_of_client_details():
    upstream = ApiFailure("HTTP 401: Incorrect API key provided: sk-proj-abc123 for org-secret", status=401)
    error = to_leanserve_error(upstream, "deepseek")
    assert isinstance(error, ServiceUnavailableError) and "refused the API key" in error.detail
    assert "sk-proj" not in error.detail and "org-secret" not in error.detail and "(HTTP 401)" in error.detail
