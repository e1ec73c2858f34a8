"""A LeanCopilot-compatible client for LeanServe, and a load generator built on it.

- `LeanServeClient` / `AsyncLeanServeClient`: send exactly what LeanCopilot's Lean client sends.
- `closed_loop`, `open_loop`, `sweep`: load tests that record every request (latency, status, candidates).
- `summarize`: requests/s, candidates/s, p50/p90/p99 latency and errors by status.
- `load_states`: real Lean proof states from the shared miniF2F data.
"""

from leanserve_client.client import AsyncLeanServeClient, GenerateResult, LeanServeClient
from leanserve_client.loadgen import closed_loop, open_loop, sweep
from leanserve_client.results import write_csv, write_json
from leanserve_client.states import load_states
from leanserve_client.summary import RequestRecord, Summary, percentile, summarize

__all__ = [
    "AsyncLeanServeClient",
    "GenerateResult",
    "LeanServeClient",
    "RequestRecord",
    "Summary",
    "closed_loop",
    "load_states",
    "open_loop",
    "percentile",
    "summarize",
    "sweep",
    "write_csv",
    "write_json",
]
