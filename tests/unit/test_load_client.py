"""The load-test client library: summary math, arrivals, the LeanCopilot wire format, result files."""

from __future__ import annotations

import csv
import json
import math

import pytest
from support import LEANCOPILOT_HEADERS as TEST_HEADERS
from support import leancopilot_bytes

from leanserve_client.client import _result
from leanserve_client.loadgen import LevelResult, poisson_arrivals
from leanserve_client.results import markdown_table, summary_rows, write_csv, write_json
from leanserve_client.states import cycle_states, load_states
from leanserve_client.summary import RequestRecord, percentile, summarize
from leanserve_client.wire import LEANCOPILOT_HEADERS, generate_payload, leancopilot_body, parse_candidates


def record(latency, status=200, candidates=4, error=None, index=0):
    return RequestRecord("c=1", index, 0.0, latency, status, candidates, 10, error)


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert percentile(values, 0.5) == pytest.approx(5.5)
    assert percentile(values, 0.9) == pytest.approx(9.1)
    assert percentile(values, 0.99) == pytest.approx(9.91)
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0 and percentile([3.0, 1.0, 2.0], 1.0) == 3.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_summary_counts_successes_and_groups_errors_by_status():
    records = [record(1.0), record(2.0, candidates=2), record(3.0), record(0.01, status=503, candidates=0, error="busy"),
               record(30.0, status=0, candidates=0, error="ReadTimeout"), record(0.5, status=200, candidates=0, error="parse")]
    s = summarize(records, wall_s=4.0)
    assert (s.requests, s.ok) == (6, 3)
    assert s.requests_per_s == pytest.approx(0.75)
    assert s.candidates_per_s == pytest.approx(10 / 4)
    assert s.mean_candidates == pytest.approx(10 / 3)
    assert s.latency_p50_s == pytest.approx(2.0) and s.latency_max_s == 3.0
    assert s.errors_by_status == {"0": 1, "200": 1, "503": 1}


def test_summary_without_successes_has_no_latency():
    s = summarize([record(0.1, status=503, candidates=0, error="busy")], wall_s=1.0)
    assert s.ok == 0 and s.requests_per_s == 0 and math.isnan(s.latency_p50_s)
    with pytest.raises(ValueError):
        summarize([], wall_s=0)


def test_poisson_arrivals_have_the_asked_rate_and_are_reproducible():
    times = poisson_arrivals(4.0, 4000, seed=1)
    assert times == sorted(times) and times == poisson_arrivals(4.0, 4000, seed=1)
    assert 4000 / times[-1] == pytest.approx(4.0, rel=0.1)
    with pytest.raises(ValueError):
        poisson_arrivals(0, 3)


def test_the_client_sends_leancopilots_exact_bytes_and_headers():
    payload = generate_payload("x : ℕ\n⊢ x = x", "default")
    assert leancopilot_body(payload) == leancopilot_bytes({"input": "x : ℕ\n⊢ x = x", "name": "default", "prefix": ""})
    assert LEANCOPILOT_HEADERS == TEST_HEADERS
    assert json.loads(leancopilot_body(generate_payload("s", "m", n=4, max_tokens=None))) == {
        "input": "s", "name": "m", "prefix": "", "n": 4}


def test_responses_are_read_as_leancopilot_reads_them():
    ok = _result(200, b'{"outputs": [{"output": "simp", "score": 0.5}, {"output": "rfl", "score": 1}]}', 0.1)
    assert ok.ok and ok.candidates == [("simp", 0.5), ("rfl", 1.0)]
    null_score = _result(200, b'{"outputs": [{"output": "simp", "score": null}]}', 0.1)
    assert not null_score.ok and null_score.candidates == []
    error = _result(503, b'{"detail": "overloaded"}', 0.1)
    assert (error.status, error.error) == (503, "overloaded")
    assert _result(502, b"<html>bad gateway</html>", 0.1).error == "Failed to parse response"
    with pytest.raises(ValueError):
        parse_candidates({"outputs": [{"output": "x", "score": True}]})


def test_states_are_real_distinct_and_reproducible():
    states = load_states(16, seed=3)
    assert len(states) == len(set(states)) == 16 and states == load_states(16, seed=3)
    assert all("⊢" in s for s in states)
    assert cycle_states(["a", "b"], 5, offset=1) == ["b", "a", "b", "a", "b"]
    with pytest.raises(ValueError):
        cycle_states([], 1)


def test_results_go_to_json_and_csv(tmp_path):
    records = [record(1.0, index=0), record(0.2, status=503, candidates=0, error="busy", index=1)]
    level = LevelResult("c=1", 1, None, summarize(records, 2.0), records)
    data = json.loads(write_json([level], tmp_path / "r.json", meta={"url": "x"}).read_text())
    assert data["meta"] == {"url": "x"} and data["levels"][0]["summary"]["ok"] == 1
    assert len(data["levels"][0]["records"]) == 2
    rows = list(csv.DictReader(write_csv([level], tmp_path / "r.csv").open()))
    assert [r["status"] for r in rows] == ["200", "503"]
    table = markdown_table(summary_rows([level]))
    assert "| c=1 | 2 | 1 |" in table and "503: 1" in table


def test_json_has_no_nan(tmp_path):
    records = [record(0.2, status=503, candidates=0, error="busy")]
    level = LevelResult("c=1", 1, None, summarize(records, 1.0), records)
    text = write_json([level], tmp_path / "r.json").read_text()
    assert "NaN" not in text and json.loads(text)["levels"][0]["summary"]["latency_p50_s"] is None
