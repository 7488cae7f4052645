"""Dependency faults, with real processes: a rendered service (PostgreSQL, every
default flag) run with ``python -m`` while its database stalls, goes away or
was never migrated, and while it is stopped with SIGTERM under load.

The database is reached through `Proxy`, a small TCP proxy in this process
that can hold every byte (existing and new connections alike) or refuse
connections outright; the upstream is `SlowUpstream`, an HTTP server here
that answers after a delay, so that requests are in flight when SIGTERM
comes. Timeouts are small and set through the environment; every wait is
bounded, every process is stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from flag_matrix import render, snapshot

# copier.yml's validators write the regex anchor as '\Z' in a Jinja string,
# which Python reports as an invalid escape sequence; rendering works regardless.
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")

PACKAGE = "example_service"
ITEMS = "/api/v1/items"
DATABASE_TIMEOUT = 1.0
HEALTH_CHECK_TIMEOUT = 0.5
UPSTREAM_DELAY = 1.0
# What a request may take past DATABASE_TIMEOUT: the rest of its work, on a loaded machine.
SLACK = 1.5


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``check`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)  # polling real processes, not faking time


class LoopThread:
    """An asyncio loop in a thread of its own, for the servers this module runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run ``work`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        """Close every server and connection, then stop the loop and its thread."""

        async def close_all() -> None:
            for server in self.servers:
                server.close()
            for writer in self.writers:
                writer.transport.abort()
            for server in self.servers:
                await server.wait_closed()
            # Handlers still waiting (a slow upstream's delay) end with the loop.
            waiting = asyncio.all_tasks() - {asyncio.current_task()}
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)

        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Proxy:
    """A TCP proxy to ``target`` that can stall every connection or refuse them all."""

    loops: LoopThread
    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    _server: asyncio.Server | None = None
    _flowing: asyncio.Event | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def start(self) -> None:
        """Listen on ``port`` and forward, both ways, as long as bytes may flow."""

        async def listen() -> None:
            if self._flowing is None:
                self._flowing = asyncio.Event()
                self._flowing.set()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self.loops.servers.append(self._server)

        self.loops.run(listen())

    def stall(self) -> None:
        """Hold every byte from now on, in existing connections and new ones."""
        self.loops.run(self._set(flowing=False))

    def resume(self) -> None:
        """Let the held bytes, and all after them, through."""
        self.loops.run(self._set(flowing=True))

    def refuse(self) -> None:
        """The database is gone: drop every connection and listen no more."""

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

        self.loops.run(close())

    async def _set(self, *, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self._track(client_writer)
        try:
            await self._flowing.wait()  # a stalled database does not even answer a new connection
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._untrack(client_writer)
            return
        self._track(server_writer)
        await asyncio.gather(
            self._pipe(client_reader, server_writer),
            self._pipe(server_reader, client_writer),
            return_exceptions=True,
        )
        for writer in (client_writer, server_writer):
            self._untrack(writer)

    def _track(self, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.loops.writers.add(writer)

    def _untrack(self, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()
        self._writers.discard(writer)
        self.loops.writers.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@dataclass
class SlowUpstream:
    """An upstream that answers ``GET /api/v1/items/{id}`` after a delay, and counts arrivals."""

    loops: LoopThread
    delay: float
    port: int = field(default_factory=free_port)
    arrived: int = 0

    def start(self) -> None:
        """Listen on ``port``."""

        async def listen() -> None:
            self.loops.servers.append(await asyncio.start_server(self._serve, "127.0.0.1", self.port))

        self.loops.run(listen())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.loops.writers.add(writer)
        while (line := await reader.readline()) and line.strip():
            method_path = line.split()[:2]
            while (await reader.readline()).strip():
                pass  # the headers: this upstream needs none of them
            if method_path[1].startswith(b"/api/v1/items/"):
                self.arrived += 1
                await asyncio.sleep(self.delay)  # the slow upstream itself, not a wait of the test's
                body = json.dumps({"id": 1, "name": "slow"}).encode()
            else:
                body = b'{"status":"pass"}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + b"content-length: %d\r\n\r\n" % len(body)
                + body,
            )
            await writer.drain()
        writer.transport.abort()
        self.loops.writers.discard(writer)


@dataclass
class Service:
    """The rendered service, run with ``python -m`` on a loopback port."""

    tree: Path
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait (at most 20 s) until it is live."""
        env = os.environ | self.env | {"HOST": "127.0.0.1", "PORT": str(self.port), "LOG_FORMAT": "json"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", PACKAGE], cwd=self.tree, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._live, 20.0, f"the service did not start:\n{self.log.read_text()}")

    def _live(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the service exited with {self.process.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/health/live", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
        """One request on a connection of its own; the response and how long it took."""
        started = time.monotonic()
        response = httpx.request(method, f"{self.url}{path}", timeout=30.0, **kwargs)
        return response, time.monotonic() - started

    def stop(self) -> None:
        """Kill it, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_lines(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default service on PostgreSQL, rendered from the working tree."""
    work = tmp_path_factory.mktemp("faults")
    return render(snapshot(work / "template"), work / "service", {"database": "postgresql"})


@pytest.fixture(scope="module")
def loops() -> Iterator[LoopThread]:
    """The loop that runs this module's proxy and upstream."""
    thread = LoopThread()
    yield thread
    thread.close()


@contextmanager
def new_database(postgres_url: str) -> Iterator[str]:
    """A database of its own on the PostgreSQL server, not migrated; its URL."""
    server = urlsplit(postgres_url.replace("+asyncpg", ""))
    name = f"faults_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://{server.netloc}/postgres"

    async def run(statement: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{server.netloc}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def migrated(postgres_url: str, tree: Path) -> Iterator[str]:
    """A database at the migrations' head, shared by the module's tests; its URL."""
    with new_database(postgres_url) as url:
        migrate(tree, url)
        yield url


@pytest.fixture
def unmigrated(postgres_url: str) -> Iterator[str]:
    """A database of the test's own, never migrated; its URL."""
    with new_database(postgres_url) as url:
        yield url


def migrate(tree: Path, url: str) -> None:
    """``alembic upgrade head``, as the init container runs it."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=tree,
        env=os.environ | {"DATABASE_URL": url, "PYTHONPATH": str(tree / "src")},
        check=True,
        capture_output=True,
    )


def settings(**values: object) -> dict[str, str]:
    """The service's environment: small timeouts, a throwaway secret, and ``values``."""
    return {
        "SERVICE_SECRET": secrets.token_urlsafe(32),
        "DATABASE_TIMEOUT": str(DATABASE_TIMEOUT),
        "HEALTH_CHECK_TIMEOUT": str(HEALTH_CHECK_TIMEOUT),
        "PYTHONPATH": "src",
        "PYTHONDONTWRITEBYTECODE": "1",
    } | {name.upper(): str(value) for name, value in values.items()}


@pytest.fixture
def started(tmp_path: Path, tree: Path) -> Iterator[Callable[[dict[str, str]], Service]]:
    """Start services with an environment; each is killed at the end if still running."""
    services: list[Service] = []

    def start(env: dict[str, str]) -> Service:
        service = Service(tree, env, tmp_path / f"service-{len(services)}.log")
        services.append(service)
        service.start()
        return service

    yield start
    for service in services:
        service.stop()


def behind_a_proxy(
    database: str, loops: LoopThread, started: Callable[[dict[str, str]], Service]
) -> tuple[Service, Proxy]:
    """The service, started on ``database`` through a `Proxy` of its own."""
    where = urlsplit(database)
    proxy = Proxy(loops, (where.hostname or "127.0.0.1", where.port or 5432))
    proxy.start()
    return started(settings(database_url=database.replace(f":{where.port}/", f":{proxy.port}/"))), proxy


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 problem that tells the client when to retry."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1


def test_stalled_database_is_503_within_the_timeout_then_recovers(
    migrated: str, loops: LoopThread, started: Callable[[dict[str, str]], Service]
) -> None:
    """With every byte to the database held, each items call is a 503 within DATABASE_TIMEOUT,
    liveness stays fast, readiness fails; once the bytes flow again, it serves by itself."""
    service, proxy = behind_a_proxy(migrated, loops, started)
    created, _ = service.call("POST", ITEMS, json={"name": "before"})
    assert created.status_code == 201, created.text

    proxy.stall()  # the pooled connection and any new one alike
    for method, path, body in [("GET", ITEMS, None), ("POST", ITEMS, {"name": "during"}), ("GET", f"{ITEMS}/1", None)]:
        response, took = service.call(method, path, json=body)
        assert_unavailable(response)
        assert took < DATABASE_TIMEOUT + SLACK, f"{method} {path} took {took:.2f} s"
    live, took_live = service.call("GET", "/health/live")
    # Liveness asks nothing of the database: it answers before a wait for it could end.
    assert (live.status_code, took_live < DATABASE_TIMEOUT) == (200, True), f"/health/live took {took_live:.2f} s"
    ready, took_ready = service.call("GET", "/health/ready")
    assert ready.status_code == 503
    assert took_ready < HEALTH_CHECK_TIMEOUT + SLACK

    proxy.resume()
    wait_until(lambda: service.call("GET", ITEMS)[0].status_code == 200, 15.0, "the service did not recover by itself")
    assert "before" in [item["name"] for item in service.call("GET", ITEMS)[0].json()]
    assert service.call("GET", "/health/ready")[0].status_code == 200


def test_database_gone_is_503_at_once_then_recovers(
    migrated: str, loops: LoopThread, started: Callable[[dict[str, str]], Service]
) -> None:
    """With the database gone (connections dropped, none accepted), items calls are 503s at once;
    back on the same address, the service serves again by itself."""
    service, proxy = behind_a_proxy(migrated, loops, started)
    assert service.call("GET", ITEMS)[0].status_code == 200

    proxy.refuse()
    for _ in range(3):
        response, took = service.call("GET", ITEMS)
        assert_unavailable(response)
        # At once: a refused connection is not waited on until DATABASE_TIMEOUT.
        assert took < DATABASE_TIMEOUT, f"a refused connection took {took:.2f} s"
    assert service.call("GET", "/health/ready")[0].status_code == 503
    assert service.call("GET", "/health/live")[0].status_code == 200
    logged = json.dumps(service.log_lines())
    assert "the database failed to answer" in logged

    proxy.start()
    wait_until(lambda: service.call("GET", ITEMS)[0].status_code == 200, 15.0, "the service did not recover by itself")


def test_unmigrated_database_is_unready_until_migrated(
    unmigrated: str, tree: Path, started: Callable[[dict[str, str]], Service]
) -> None:
    """On a database never migrated the service starts and lives, but is unready, with the reason in
    /health and its log, and answers items calls with 503s; migrated, it turns ready by itself."""
    service = started(settings(database_url=unmigrated))
    ready, _ = service.call("GET", "/health/ready")
    report, _ = service.call("GET", "/health")
    items, _ = service.call("GET", ITEMS)
    assert ready.status_code == 503
    reason = report.json()["checks"]["database"]["output"]
    assert reason.startswith("the database has no schema: run `alembic upgrade head`")
    assert any(reason in str(line["message"]) for line in service.log_lines())
    assert_unavailable(items)

    migrate(tree, unmigrated)
    wait_until(lambda: service.call("GET", "/health/ready")[0].status_code == 200, 10.0, "not ready once migrated")
    assert service.call("POST", ITEMS, json={"name": "migrated"})[0].status_code == 201


@pytest.mark.parametrize(
    ("shutdown_timeout", "upstream_delay", "finished"),
    # Past the timeout, the upstream answers after 30 s: a process that waited
    # for it would take that long, however fast or slow the machine.
    [(10.0, UPSTREAM_DELAY, True), (0.3, 30.0, False)],
    ids=["within-timeout", "past-timeout"],
)
def test_sigterm_during_requests_finishes_them_and_exits_0(
    migrated: str,
    loops: LoopThread,
    started: Callable[[dict[str, str]], Service],
    shutdown_timeout: float,
    upstream_delay: float,
    finished: bool,
) -> None:
    """SIGTERM while requests are in flight: no new connection is taken, those in flight finish
    (within SHUTDOWN_TIMEOUT, else they are cut off), and the process exits 0."""
    upstream = SlowUpstream(loops, upstream_delay)
    upstream.start()
    service = started(
        settings(
            database_url=migrated,
            shutdown_timeout=shutdown_timeout,
            user_service_url=f"http://127.0.0.1:{upstream.port}",
        )
    )
    assert service.process is not None
    in_flight = 6
    with ThreadPoolExecutor(in_flight) as pool:
        calls = [pool.submit(service.call, "GET", "/api/v1/user-service/items/1") for _ in range(in_flight)]
        wait_until(lambda: upstream.arrived >= in_flight, 10.0, "the requests did not reach the upstream")
        stopped_at = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        wait_until(lambda: _refused(service), 2.0, "a new connection was still accepted after SIGTERM")
        outcomes = [_outcome(call.result) for call in calls]
    code = service.process.wait(shutdown_timeout + 10)
    took = time.monotonic() - stopped_at
    assert code == 0, service.log.read_text()
    if finished:
        assert outcomes == [200] * in_flight
    else:
        # Given up on after SHUTDOWN_TIMEOUT: a 503 problem that says to retry.
        assert outcomes == [503] * in_flight
        assert took < upstream_delay, "the process waited for the upstream"
    lines = [str(line["message"]) for line in service.log_lines()]
    assert "Application shutdown complete." in lines


def _refused(service: Service) -> bool:
    try:
        httpx.get(f"{service.url}/health/live", timeout=0.5)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def _outcome(result: Callable[[], tuple[httpx.Response, float]]) -> int | str:
    try:
        response, _ = result()
    except httpx.TransportError:
        return "dropped"
    return response.status_code


def test_host_that_does_not_resolve_stops_start_up(tree: Path) -> None:
    """``python -m`` with a HOST that does not resolve exits at once with one line naming HOST."""
    env = os.environ | settings(host="no-such-host.invalid", database_url="postgresql://db/x")
    result = subprocess.run(
        [sys.executable, "-m", PACKAGE], cwd=tree, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert result.stderr == "Invalid settings: HOST names a host that does not resolve (no-such-host.invalid)\n"
