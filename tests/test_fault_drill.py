"""Fault drill: two rendered services on loopback, the upstream failed in every way the client guards against.

``order-service`` calls ``user-service`` through the resilient client. Real
processes, real sockets, small timeouts set through the environment; every
wait is bounded and every process is killed at the end. The upstream is
killed and brought back; for the other faults a `FaultProxy` stands between
the two services, holding, failing or passing on each request, and counting
what reaches it. Select it with ``pytest tests/test_fault_drill.py``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from flag_matrix import render, snapshot

# copier.yml's validators write the regex anchor as '\Z' in a Jinja string,
# which Python reports as an invalid escape sequence; that is the
# questionnaire's to fix, and rendering works regardless.
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")

SECRET = "drill-secret-" + "0123456789abcdef" * 2
SERVICE_TIMEOUT = 2.0
BREAKER_TIMEOUT = 1.0
ATTEMPTS = 2
THRESHOLD = 5
ITEM = "/api/v1/user-service/items/1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """A rendered service run with ``python -m`` on a loopback port."""

    tree: Path
    package: str
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait (at most 20 s) until it answers."""
        env = (
            os.environ
            | self.env
            | {
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "LOG_FORMAT": "json",
                "SERVICE_SECRET": SECRET,
                "PYTHONPATH": str(self.tree / "src"),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.package],
                cwd=self.tree,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, 20.0, f"{self.package} did not start; see {self.log}")

    def answers(self) -> bool:
        """Whether it answers HTTP (and has not exited)."""
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"{self.package} exited: {self.log.read_text()}")
        try:
            httpx.get(f"{self.url}/api/v1/items", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def kill(self) -> None:
        """Kill it at once, as a crash would, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log_lines(self) -> list[dict[str, object]]:
        """Its JSON log lines so far."""
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def wait_until(check: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``check`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``user-service``, and ``order-service`` that calls it, rendered from the working tree."""
    work = tmp_path_factory.mktemp("drill")
    template = snapshot(work / "template")
    common = {
        "http_client": True,
        "request_tracing": True,
        "service_auth": True,
        "api_versioning": True,
        "database": "none",
    }
    return {
        slug: render(
            template,
            work / slug,
            common | {"project_name": slug, "service_slug": slug, "upstream_services": upstreams},
        )
        for slug, upstreams in (("user-service", ""), ("order-service", "user-service"))
    }


@contextmanager
def running(
    trees: dict[str, Path],
    tmp_path: Path,
    proxy: FaultProxy | None = None,
    **settings: str,
) -> Iterator[tuple[Service, Service]]:
    """Both services running, the order service pointed at the user service (through
    ``proxy`` when one is given), with ``settings`` over the drill's own."""
    users = Service(trees["user-service"], "user_service", free_port(), {}, tmp_path / "users.log")
    orders = Service(
        trees["order-service"],
        "order_service",
        free_port(),
        {
            "USER_SERVICE_URL": proxy.url if proxy else users.url,
            "SERVICE_TIMEOUT": str(SERVICE_TIMEOUT),
            "RETRY_ATTEMPTS": str(ATTEMPTS),
            "RETRY_BACKOFF": "0.05",
            "RETRY_BACKOFF_MAX": "0.2",
            "CIRCUIT_BREAKER_THRESHOLD": str(THRESHOLD),
            "CIRCUIT_BREAKER_TIMEOUT": str(BREAKER_TIMEOUT),
        }
        | settings,
        tmp_path / "orders.log",
    )
    try:
        users.start()
        if proxy:
            proxy.start(users.url)
        orders.start()
        yield users, orders
    finally:
        orders.kill()
        if proxy:
            proxy.stop()
        users.kill()


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one request: hold it, then answer it itself or pass it on."""

    hold: float = 0.0  # seconds, unless `FaultProxy.release` is called first
    status: int | None = None  # answer this instead of passing the request on
    headers: dict[str, str] = field(default_factory=dict)


PASS = Fault()


@dataclass
class Received:
    """A request that reached the proxy."""

    path: str
    headers: dict[str, str]  # names in lower case
    connection: tuple[str, int]


class FaultProxy:
    """An HTTP server on loopback between the two services, as a network fault would be.

    ``faults(n)`` says what to do with the ``n``-th item request (from 0);
    other requests (health probes) pass. Every request is recorded, and so
    is the largest number held at once.
    """

    def __init__(self, faults: Callable[[int], Fault] = lambda _: PASS) -> None:
        """Choose what each item request meets."""
        self.faults = faults
        self.received: list[Received] = []
        self.most_at_once = 0
        self.released = threading.Event()
        self.stopping = False
        self._at_once = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.target = ""

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def items(self) -> list[Received]:
        """The item requests received so far."""
        with self._lock:
            return [r for r in self.received if "/items/" in r.path]

    def start(self, target: str) -> None:
        """Serve, passing requests on to ``target``."""
        self.target = target
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Let every request held now or later go on at once."""
        self.released.set()

    def stop(self) -> None:
        """Drop what is held and stop serving."""
        self.stopping = True
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _fault(self, path: str, headers: dict[str, str], connection: tuple[str, int]) -> Fault:
        with self._lock:
            number = sum("/items/" in r.path for r in self.received)
            self.received.append(Received(path, headers, connection))
            return self.faults(number) if "/items/" in path else PASS

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so that connections can be counted
            # Headers and body are two writes: without TCP_NODELAY each answer
            # on a kept-alive connection waits for the caller's delayed ACK.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                fault = proxy._fault(self.path, headers, self.client_address[:2])
                with proxy._lock:
                    proxy._at_once += 1
                    proxy.most_at_once = max(proxy.most_at_once, proxy._at_once)
                try:
                    if fault.hold:
                        proxy.released.wait(fault.hold)
                    if proxy.stopping:
                        self.close_connection = True
                        return  # the drill is over: its upstream may be gone already
                    if fault.status is not None:
                        status, headers, body = fault.status, fault.headers, b'{"status": "fail"}'
                    else:
                        answer = httpx.get(proxy.target + self.path, timeout=5.0)
                        status, headers, body = answer.status_code, {}, answer.content
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up on it: an attempt timed out
                finally:
                    with proxy._lock:
                        proxy._at_once -= 1

            def log_message(self, *_: object) -> None:
                pass

        return Handler


def add_item(users: Service) -> None:
    """Give the user service item 1."""
    response = httpx.post(f"{users.url}/api/v1/items", json={"name": "ada"}, timeout=5.0)
    assert response.status_code == 201, response.text


def get(orders: Service, request_id: str = "drill") -> tuple[httpx.Response, float]:
    """Fetch item 1 through the order service; the response and how long it took."""
    started = time.monotonic()
    response = httpx.get(
        f"{orders.url}{ITEM}",
        headers={"X-Request-ID": request_id},
        timeout=SERVICE_TIMEOUT + 5.0,
    )
    return response, time.monotonic() - started


def test_request_id_reaches_the_upstream(trees: dict[str, Path], tmp_path: Path) -> None:
    """The request ID the order service was called with is in the user service's log lines."""
    with running(trees, tmp_path) as (users, orders):
        add_item(users)
        response, _ = get(orders, "drill-request-0042")
        assert response.status_code == 200, response.text
        # The user service logged its access line before it answered.
        ids = {line.get("request_id") for line in users.log_lines()}
        assert "drill-request-0042" in ids, users.log.read_text()


def test_fault_drill(trees: dict[str, Path], tmp_path: Path) -> None:
    """Calls go through; a killed upstream gives 503s, then the open circuit refuses calls without
    trying a connection; once back, the upstream is used again."""
    with running(trees, tmp_path) as (users, orders):
        add_item(users)
        response, _ = get(orders)
        assert response.status_code == 200, response.text
        assert response.json() == {"id": 1, "name": "ada"}

        users.kill()
        # Each call makes ATTEMPTS attempts; the THRESHOLD-th failure opens the circuit.
        calls_to_open = -(-THRESHOLD // ATTEMPTS)
        for call in range(calls_to_open):
            # The circuit opens during the last of these calls: not before it began.
            opened_at = time.monotonic()
            response, took = get(orders)
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert took < SERVICE_TIMEOUT, f"call {call} took {took:.2f} s"
        assert "Retry-After" in response.headers, "the circuit should be open by now"

        # Refused by the open circuit: counted as such, no attempt on the network.
        before = refusals(orders, "circuit")
        response, _ = get(orders)
        assert response.status_code == 503
        assert 1 <= int(response.headers["Retry-After"]) <= BREAKER_TIMEOUT + 1
        assert "circuit is open" in response.json()["detail"]
        assert refusals(orders, "circuit") == before + 1

        users.start()
        add_item(users)

        def recovered() -> bool:
            return get(orders)[0].status_code == 200

        wait_until(recovered, BREAKER_TIMEOUT + 5.0, "the restarted upstream was not used again")
        assert time.monotonic() - opened_at >= BREAKER_TIMEOUT
        retries = [line for line in orders.log_lines() if str(line.get("message", "")).startswith("retrying")]
        assert retries, "the retries should be in the order service's log"
        assert {line["upstream"] for line in retries} == {"user-service"}


def refusals(orders: Service, reason: str) -> float:
    """The order service's ``upstream_refusals_total`` for ``user-service`` and ``reason``."""
    text = httpx.get(f"{orders.url}/metrics", timeout=5.0).text
    for line in text.splitlines():
        if line.startswith("upstream_refusals_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_bulkhead_refuses_at_once_under_load(trees: dict[str, Path], tmp_path: Path) -> None:
    """With the upstream slowed, calls past UPSTREAM_MAX_CONCURRENCY get a 503 at once while the others
    wait; the upstream gets no more than that, and the caller's /health/live stays fast."""
    limit, callers = 4, 12
    proxy = FaultProxy(lambda _: Fault(hold=20.0))
    settings = {
        "UPSTREAM_MAX_CONCURRENCY": str(limit),
        "SERVICE_TIMEOUT": "25",
        "ATTEMPT_TIMEOUT": "25",
        "RETRY_ATTEMPTS": "1",
    }
    with running(trees, tmp_path, proxy, **settings) as (users, orders):
        add_item(users)
        with concurrent.futures.ThreadPoolExecutor(callers) as pool:

            def call() -> tuple[httpx.Response, float]:
                return timed(lambda: httpx.get(f"{orders.url}{ITEM}", timeout=30.0))

            calls = [pool.submit(call) for _ in range(callers)]

            def refused_all_but_the_held() -> bool:
                return sum(call.done() for call in calls) >= callers - limit

            wait_until(refused_all_but_the_held, 20.0, "the calls past the limit were not refused")
            refused = [call.result() for call in calls if call.done()]
            live, live_took = timed(lambda: httpx.get(f"{orders.url}/health/live", timeout=5.0))
            entry = httpx.get(f"{orders.url}/health", timeout=10.0).json()["checks"]["user-service"]
            counted = refusals(orders, "bulkhead")
            reached = len(proxy.items())
            proxy.release()
            held = [call.result() for call in calls if call.result() not in refused]
    assert [r.status_code for r, _ in refused] == [503] * (callers - limit)
    assert {r.headers["Retry-After"] for r, _ in refused} == {"1"}
    slowest = max(took for _, took in refused)
    assert slowest < 2.0, f"a refused call took {slowest:.2f} s: it should not wait for a place"
    assert [r.status_code for r, _ in held] == [200] * limit
    assert min(took for _, took in held) > slowest, "the held calls answered only once released"
    assert reached == limit == len(proxy.items())
    assert (live.status_code, live_took < 1.0) == (200, True), f"/health/live took {live_took:.2f} s"
    assert entry["bulkhead"] == {"inFlight": limit, "limit": limit, "refused": callers - limit}
    assert counted == callers - limit


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """The response of ``call`` and the seconds it took."""
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_budget_caps_what_a_failing_upstream_receives(trees: dict[str, Path], tmp_path: Path) -> None:
    """Against an upstream that fails every call, 100 calls of 3 attempts send it at most 130 requests."""
    proxy = FaultProxy(lambda _: Fault(status=503))
    settings = {
        "RETRY_ATTEMPTS": "3",
        "RETRY_BACKOFF": "0.001",
        "RETRY_BACKOFF_MAX": "0.002",
        "RETRY_BUDGET": "0.2",
        "CIRCUIT_BREAKER_THRESHOLD": "100000",
    }
    with running(trees, tmp_path, proxy, **settings) as (_, orders), httpx.Client(timeout=10.0) as client:
        # One connection for all: the 100 calls fall well inside the budget's 10 s window.
        answers = {client.get(f"{orders.url}{ITEM}").status_code for _ in range(100)}
        counted = refusals(orders, "budget")
    received = len(proxy.items())
    assert answers == {503}
    assert 100 < received <= 130, f"the upstream received {received} requests"
    assert counted > 0


def test_attempt_timeout_then_a_retry_answers(trees: dict[str, Path], tmp_path: Path) -> None:
    """An attempt that hangs is cut off at ATTEMPT_TIMEOUT, and the retry answers within SERVICE_TIMEOUT."""
    proxy = FaultProxy(lambda n: Fault(hold=10.0) if n == 0 else PASS)
    with running(trees, tmp_path, proxy, ATTEMPT_TIMEOUT="0.3", SERVICE_TIMEOUT="2.0") as (users, orders):
        add_item(users)
        response, took = get(orders)
    assert response.status_code == 200, response.text
    assert 0.3 <= took < 2.0, f"the call took {took:.2f} s"
    assert len(proxy.items()) == 2
    retries = [line for line in orders.log_lines() if str(line.get("message", "")).startswith("retrying")]
    assert ["TimeoutError" in str(line["reason"]) for line in retries] == [True]


def test_what_is_retried_and_what_each_call_carries(trees: dict[str, Path], tmp_path: Path) -> None:
    """A 500 and a 404 are sent once; a 503's Retry-After is waited, up to RETRY_BACKOFF_MAX; a hung
    upstream costs SERVICE_TIMEOUT at most; each call carries its request ID and the service token,
    over connections that the one client keeps open.

    Waited in full, the Retry-After, and the hung upstream's attempts one after another, would
    each take a second or more past SERVICE_TIMEOUT: the bounds leave a slow machine that much."""
    plan: list[Fault] = []
    proxy = FaultProxy(lambda _: plan.pop(0) if plan else PASS)
    settings = {
        "ATTEMPT_TIMEOUT": "0.3",
        "SERVICE_TIMEOUT": "2.0",
        "RETRY_ATTEMPTS": "10",
        "RETRY_BACKOFF": "0.01",
        "RETRY_BACKOFF_MAX": "0.5",
        "CIRCUIT_BREAKER_THRESHOLD": "100",
    }
    with running(trees, tmp_path, proxy, **settings) as (users, orders):
        add_item(users)

        def call(request_id: str, *faults: Fault) -> tuple[int, float, int]:
            plan[:] = faults
            before = len(proxy.items())
            response, took = get(orders, request_id)
            return response.status_code, took, len(proxy.items()) - before

        other_5xx = call("rule-500", Fault(status=500))
        not_found = call("rule-404", Fault(status=404))
        asked_to_wait = call("rule-503", Fault(status=503, headers={"Retry-After": "3"}))
        kept_open = {received.connection for received in proxy.items()}
        hung = call("rule-hung", *[Fault(hold=10.0)] * 20)
        items = proxy.items()
    assert other_5xx[::2] == (503, 1)
    assert not_found[::2] == (404, 1)
    status, took, sent = asked_to_wait
    assert (status, sent) == (200, 2)
    assert 0.5 <= took < 2.0, f"Retry-After: 3 capped at 0.5 s, but the call took {took:.2f} s"
    status, took, sent = hung
    assert (status, sent >= 2) == (503, True)
    # Ten attempts of 0.3 s one after another would take over 3 s.
    assert 1.9 <= took < 3.0, f"a hung upstream should cost SERVICE_TIMEOUT (2 s), took {took:.2f} s"
    assert len(kept_open) < 4, "one client, its connections reused"
    assert {r.headers.get("x-service-token") for r in items} == {SECRET}
    assert {r.headers.get("x-request-id") for r in items} == {"rule-500", "rule-404", "rule-503", "rule-hung"}
