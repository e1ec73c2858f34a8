"""Overload, faults and locked doors on a real local Ray Serve app with a real vLLM engine (tiny random model).

Its own app (not the contract tests' one): these tests flood it, redeploy it and kill its engine. The bundle
takes 2 requests at a time and queues 2 more, so a flood is easy to make; API keys are on (from an environment
variable), and HTTP listens on every interface so that a request can come from a non-loopback address of this
machine. Tests run in file order: the engine is killed last.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from serve_app import free_port
from support import LEANCOPILOT_HEADERS, descendants, leancopilot_bytes, processes_matching, still_running

from core.config import AppArgs

pytestmark = pytest.mark.serve

APP = f"faults{os.getpid()}"  # unique, so process lookups never reach another cluster's replicas
MODEL = "tiny"
KEYS_ENV = "LEANSERVE_TEST_API_KEYS"
API_KEY = f"key-{uuid.uuid4().hex}"
REQUEST_TIMEOUT_S = 240.0  # generous: a redeploy restarts the engine (about a minute, more on a busy machine)
MAX_ONGOING = 2
MAX_QUEUED = 2
# Far longer than the tiny model takes for a short request, so a flood holds every slot for a while.
SLOW = {"n": 4, "max_tokens": 1500}
QUICK = {"n": 2, "max_tokens": 4}
# Long enough (tens of seconds) to be surely in flight when the engine is killed.
LONGEST = {"n": 4, "max_tokens": 4000}
# Longer than Serve's default drain of 20 s: a redeploy must let it finish.
LONGER_THAN_A_DRAIN = {"n": 24, "max_tokens": 4000}
RECOVERY_TIMEOUT_S = 420


def fault_app_args(tiny_llama, n: int = 4) -> AppArgs:
    return AppArgs.model_validate(
        {
            "ingress": {"num_cpus": 0.1, "request_timeout_s": REQUEST_TIMEOUT_S},
            "security": {"api_keys_env": KEYS_ENV},
            # Overload here is the engine's and the ingress's, not one key's: no per-key budget or rate (its one key
            # sends every request of the module, long ones on purpose).
            "limits": {"max_tokens": 4096,
                       "per_class": {"interactive": {"max_generated_tokens": 0, "requests_per_minute": 0}}},
            "models": [
                {
                    "name": MODEL,
                    "model": str(tiny_llama),
                    "prompt": {"template": "{state}:::"},
                    "sampling": {"n": n, "max_tokens": 8, "stop": []},
                    "engine_args": {
                        "dtype": "float32",
                        "max_model_len": 4096,
                        "kv_cache_memory_bytes": 256 << 20,
                        "max_num_seqs": 8,
                        "enforce_eager": True,
                    },
                    "deployment": {
                        "num_cpus": 0.5,
                        "max_ongoing_requests": MAX_ONGOING,
                        "max_queued_requests": MAX_QUEUED,
                        "health_check_period_s": 1,
                    },
                }
            ],
        }
    )


def non_loopback_address() -> str:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    pytest.fail("this machine has no non-loopback IPv4 address to call the app from")


class FaultApp:
    def __init__(self, port: int, tiny_llama: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.remote_url = f"http://{non_loopback_address()}:{port}"
        self.tiny_llama = tiny_llama
        self.deployment_name = fault_app_args(tiny_llama).models[0].deployment_name

    def unfinished(self) -> int:
        from ray import serve

        return serve.get_deployment_handle(self.deployment_name, app_name=APP).num_unfinished_requests.remote().result()

    def wait_unfinished(self, predicate, timeout_s: float) -> int:
        deadline = time.time() + timeout_s
        while True:
            count = self.unfinished()
            if predicate(count) or time.time() > deadline:
                return count
            time.sleep(0.2)

    def bundle_replicas(self) -> list[psutil.Process]:
        return processes_matching(f"ServeReplica:{APP}:{self.deployment_name}")


@pytest.fixture(scope="module")
def fault_app(tiny_llama):
    import ray
    from ray import serve

    from deployments.app import build_app

    port = free_port()
    # Replicas inherit the job's environment: the key reaches the ingress as an operator would set it.
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {KEYS_ENV: API_KEY}})
    try:
        serve.start(http_options={"host": "0.0.0.0", "port": port})
        serve.run(build_app(fault_app_args(tiny_llama)), name=APP, route_prefix="/", blocking=False)
        yield FaultApp(port, tiny_llama)
    finally:
        serve.shutdown()
        ray.shutdown()


def wait_until_generating(engine_processes: list[psutil.Process], cpu_s: float = 1.0, bound_s: float = 90) -> None:
    """Until vLLM's engine core has spent `cpu_s` more CPU seconds: it is generating (idle, it waits on its
    queue without using CPU). The bundle's own counters are no signal here: a handle call to read them waits
    behind the requests that hold both replica slots."""

    def cpu() -> float:
        total = 0.0
        for process in still_running(engine_processes):
            times = process.cpu_times()
            total += times.user + times.system
        return total

    start, started = cpu(), time.monotonic()
    while cpu() - start < cpu_s:
        assert time.monotonic() - started < bound_s, "the engine never started generating"
        time.sleep(0.1)  # polling the engine's CPU time, bounded


def generate(
    url: str, state: str = "⊢ 1 + 1 = 2", timeout: float = 120, headers: dict | None = None, keyed: bool = True, **extra
) -> httpx.Response:
    """POST /generate, with the app's API key unless `keyed` is False (with keys, loopback needs one too)."""
    key = {"Authorization": f"Bearer {API_KEY}"} if keyed else {}
    return httpx.post(
        f"{url}/generate",
        content=leancopilot_bytes({"input": state, "name": MODEL, "prefix": "", **extra}),
        headers={**LEANCOPILOT_HEADERS, **key, **(headers or {})},
        timeout=timeout,
    )


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str)
    assert response.headers["x-request-id"]


# --- locked doors ---------------------------------------------------------------------------------------------

def test_with_keys_loopback_clients_need_one_too(fault_app):
    # A same-host forwarder (an SSH tunnel, socat) makes any stranger look like loopback: no pass for it.
    refused = generate(fault_app.url, keyed=False, headers={"X-Request-Id": "lean-local-1"})
    assert_json_error(refused, 401)
    response = generate(fault_app.url, headers={"X-Request-Id": "lean-local-2"})
    assert response.status_code == 200 and response.json()["outputs"]
    assert response.headers["x-request-id"] == "lean-local-2"


def test_other_networks_need_a_valid_key(fault_app):
    remote = fault_app.remote_url
    missing = generate(remote, keyed=False)
    assert_json_error(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_json_error(generate(remote, headers={"Authorization": f"Bearer {API_KEY}x"}), 401)
    assert_json_error(generate(remote, headers={"Authorization": f"Basic {API_KEY}"}), 401)
    # Claiming to be loopback does not help: LeanServe never reads X-Forwarded-For, and Serve's proxy (uvicorn)
    # honours it only from a loopback peer.
    assert_json_error(generate(remote, keyed=False, headers={"X-Forwarded-For": "127.0.0.1"}), 401)
    # The key is checked before the body: a stranger learns nothing about the API from a malformed request.
    assert_json_error(httpx.post(f"{remote}/generate", content=b"{", timeout=30), 401)
    assert_json_error(httpx.get(f"{remote}/models", timeout=30), 401)
    authorized = generate(remote)
    assert authorized.status_code == 200 and authorized.json()["outputs"]
    # Health stays open for load balancers; it names models and their state, nothing else.
    assert httpx.get(f"{remote}/health", timeout=30).status_code == 200


def ray_log_files() -> list[Path]:
    import ray

    session = Path(ray._private.worker._global_node.get_session_dir_path())
    return [path for path in (session / "logs").rglob("*") if path.is_file()]


def wait_for_log_lines(*fragments: str, timeout_s: float = 30) -> list[str]:
    """Log lines holding every fragment, once some have reached the session's log files (they flush late)."""
    deadline = time.time() + timeout_s
    while True:
        found = [
            line
            for path in ray_log_files()
            for line in path.read_text(errors="replace").splitlines()
            if all(fragment in line for fragment in fragments)
        ]
        if found or time.time() > deadline:
            return found
        time.sleep(1)


def test_every_log_line_of_a_request_names_its_id(fault_app):
    request_id = f"lean-{uuid.uuid4().hex}"
    response = generate(fault_app.url, headers={"X-Request-Id": request_id})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id
    assert wait_for_log_lines(request_id, "generate model="), "the ingress logs the request with the client's id"
    assert wait_for_log_lines(request_id, "answered sampled="), "the bundle logs the request with the client's id"


def test_info_logs_hold_no_proof_state(fault_app):
    marker = f"leanserve_private_goal_{uuid.uuid4().hex[:12]}"
    secret = f"⊢ {marker} = 42"
    response = generate(fault_app.url, state=secret)
    assert response.status_code == 200
    # Positive control: this request's own INFO line (found by its unique size) reached the files searched.
    assert wait_for_log_lines(f"input_chars={len(secret)} "), "the request's INFO line should be in the logs"
    leaks = [str(path) for path in ray_log_files() if marker in path.read_text(errors="replace")]
    assert not leaks, f"the proof state reached the logs at INFO: {leaks}"


# --- overload ---------------------------------------------------------------------------------------------------

def test_a_flood_gets_quick_503s_with_retry_after_and_the_rest_is_served(fault_app):
    finished: list[tuple[int, httpx.Response]] = []
    order = itertools.count()  # the order in which answers came back (no clock)
    lock = threading.Lock()

    def one(i: int) -> None:
        response = generate(fault_app.url, state=f"⊢ {i} = {i}", timeout=REQUEST_TIMEOUT_S + 30, **SLOW)
        with lock:
            finished.append((next(order), response))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(16)))
    statuses = [r.status_code for _, r in finished]
    assert set(statuses) <= {200, 503}, statuses
    rejected = [(t, r) for t, r in finished if r.status_code == 503]
    served = [(t, r) for t, r in finished if r.status_code == 200]
    # 2 running + 2 queued fit; Serve may reject a little more than strictly needed under a burst.
    assert len(rejected) >= 16 - MAX_ONGOING - MAX_QUEUED - 2 and served, statuses
    for _, response in rejected:
        assert_json_error(response, 503)
        assert int(response.headers["retry-after"]) > 0
    # "At once": every rejection came back before any accepted request finished (an order of events, no clock).
    assert max(k for k, _ in rejected) < min(k for k, _ in served)
    assert fault_app.wait_unfinished(lambda n: n == 0, 30) == 0
    assert generate(fault_app.url, **QUICK).status_code == 200


# --- faults -----------------------------------------------------------------------------------------------------

def test_a_redeploy_with_a_changed_config_drops_no_request(fault_app):
    from ray import serve

    from deployments.app import build_app

    old_replicas = fault_app.bundle_replicas()
    assert len(old_replicas) == 1
    statuses: list[int] = []
    stop = threading.Event()

    def steady_client(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                statuses.append(generate(fault_app.url, state=f"⊢ {k} + {i} = {i} + {k}", timeout=REQUEST_TIMEOUT_S + 30, **QUICK).status_code)
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)
            i += 1

    long_started = []

    def long_request() -> None:
        long_started.append(time.perf_counter())
        try:
            response = generate(fault_app.url, state="⊢ a long one", timeout=REQUEST_TIMEOUT_S + 30, **LONGER_THAN_A_DRAIN)
            long_result.append((response.status_code, time.perf_counter() - long_started[0]))
        except httpx.HTTPError as exc:
            long_result.append((type(exc).__name__, time.perf_counter() - long_started[0]))

    long_result: list = []
    clients = [threading.Thread(target=steady_client, args=(k,)) for k in range(MAX_ONGOING - 1)]
    clients.append(threading.Thread(target=long_request))
    for client in clients:
        client.start()
    try:
        # The long request fills the engine's batch (n > max_num_seqs): quick requests wait behind it, so start
        # the redeploy a few seconds after it, not after a quick one.
        while not long_started:
            time.sleep(0.2)
        wait_until_generating(descendants(old_replicas), cpu_s=2.0)
        assert not long_result, "the long request must still be in flight when the redeploy starts"
        # A changed bundle option (sampling.n): new init args, so Serve replaces the replicas (the `serve deploy` path).
        serve.run(build_app(fault_app_args(fault_app.tiny_llama, n=3)), name=APP, route_prefix="/", blocking=False)
        redeployed_at = len(statuses)
        # Until requests sent after the redeploy began have been answered (by the old replica or the new).
        waited = time.monotonic()
        while len(statuses) < redeployed_at + 2 and time.monotonic() - waited < REQUEST_TIMEOUT_S:
            time.sleep(0.2)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=REQUEST_TIMEOUT_S + 60)
    new_replicas = fault_app.bundle_replicas()
    assert [p.pid for p in new_replicas] != [p.pid for p in old_replicas], "the redeploy should replace the replica"
    assert statuses and all(status == 200 for status in statuses), statuses
    # The long request was in flight on the old replicas when they were told to stop: it must finish, not be cut.
    assert long_result and long_result[0][0] == 200, long_result
    assert len(statuses) > redeployed_at, "requests were sent while the app was redeployed and after"
    response = generate(fault_app.url, n=None)
    # The new config's n=3 answers: at least one candidate (0 would be no answer at all), at most 3.
    assert response.status_code == 200 and 1 <= len(response.json()["outputs"]) <= 3, response.text


def test_a_dead_engine_gives_503s_then_the_service_recovers_by_itself(fault_app):
    replicas = fault_app.bundle_replicas()
    engine_processes = descendants(replicas)
    assert len(replicas) == 1 and engine_processes, "the replica should run vLLM's engine core in a child process"
    results: list[httpx.Response | Exception] = []

    def in_flight(i: int) -> None:
        try:
            results.append(generate(fault_app.url, state=f"⊢ {i} < {i + 1}", timeout=120, **LONGEST))
        except httpx.HTTPError as exc:  # a hang or a dropped connection fails the test below
            results.append(exc)

    senders = [threading.Thread(target=in_flight, args=(i,)) for i in range(MAX_ONGOING)]
    for sender in senders:
        sender.start()
    # They take tens of seconds; kill once the engine is generating them. Had they finished before the kill they
    # would be 200s, and the assertions below would fail.
    wait_until_generating(engine_processes)
    for process in still_running(engine_processes):  # only the engine of this module's own replica
        process.send_signal(signal.SIGKILL)
    for sender in senders:
        sender.join(timeout=150)
    assert len(results) == MAX_ONGOING and all(isinstance(r, httpx.Response) for r in results), results
    for response in results:
        assert_json_error(response, 503)
        assert response.headers["retry-after"]

    # The real engine is dead: /health says so (503) before Serve has replaced the replica.
    health = httpx.get(f"{fault_app.url}/health", timeout=60)
    assert health.status_code == 503, health.text
    assert health.json()["models"][MODEL] != "ok" and health.headers["retry-after"]

    # Serve's health check fails on the dead engine, and Serve replaces the replica: no one restarts anything.
    deadline = time.time() + RECOVERY_TIMEOUT_S
    seen: list[int] = []
    while time.time() < deadline:
        try:
            status = generate(fault_app.url, timeout=60, **QUICK).status_code
        except httpx.HTTPError:
            status = -1
        seen.append(status)
        if status == 200:
            break
        time.sleep(2)
    assert seen[-1] == 200, f"no recovery within {RECOVERY_TIMEOUT_S}s; statuses seen: {seen}"
    assert set(seen) <= {200, 503, 504}, seen
    new_replicas = fault_app.bundle_replicas()
    assert new_replicas and {p.pid for p in new_replicas}.isdisjoint(p.pid for p in replicas)
    assert httpx.get(f"{fault_app.url}/health", timeout=60).status_code == 200
