"""Client overhead: one GET through the resilient client against one through a
raw ``httpx.AsyncClient``, and the latency of a call an open circuit refuses.

The rendered default service's own modules are imported from its ``src``: its
``load_settings()`` reads the upstream's URL from the environment, and the
upstream is the one its app's lifespan builds (bulkhead, retry policy and
budget, circuit breaker, service token, and the events that logging and
metrics subscribe to).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from benchmarks import common, throughput

ITEM_PATH = "/api/v1/items/1"


def _import_service() -> tuple[ModuleType, Any]:
    """The rendered ``outbound`` module and the settings (inside `common.inside_service`)."""
    outbound = importlib.import_module(f"{common.PACKAGE}.outbound")
    settings = importlib.import_module(f"{common.PACKAGE}.settings").load_settings()
    return outbound, settings


@asynccontextmanager
async def _app_upstream(settings: Any) -> AsyncIterator[Any]:
    """The ``user-service`` upstream of a new app of the rendered service, its lifespan running."""
    app = importlib.import_module(f"{common.PACKAGE}.main").create_app(settings)
    async with app.router.lifespan_context(app):
        # The breaker logs when it opens; that one line is not a figure.
        logging.getLogger(common.PACKAGE).setLevel(logging.ERROR)
        yield importlib.import_module(f"{common.PACKAGE}.deps").app_resources(app).upstreams["user-service"]


async def _per_call(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float]:
    """Mean wall and CPU seconds (of this process) per call over ``calls`` sequential calls."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


async def _compare(http: httpx.AsyncClient, upstream: Any, base_url: str, rounds: int, calls: int) -> dict[str, float]:
    """Raw and resilient GETs, interleaved block by block; medians of the blocks' means."""

    async def raw() -> object:
        response = await http.get(base_url + ITEM_PATH)
        response.raise_for_status()
        return response

    async def resilient() -> object:
        response = await upstream.request(http, "GET", ITEM_PATH)
        response.raise_for_status()
        return response

    await _per_call(raw, 50)  # warm up both paths and the connection pool
    await _per_call(resilient, 50)
    blocks: dict[str, list[tuple[float, float]]] = {"raw": [], "resilient": []}
    for n in range(rounds):
        order = [("raw", raw), ("resilient", resilient)]
        for name, call in order if n % 2 == 0 else reversed(order):
            blocks[name].append(await _per_call(call, calls))
    figures = {name: common.median([wall for wall, _ in values]) for name, values in blocks.items()}
    figures |= {f"{name} cpu": common.median([cpu for _, cpu in values]) for name, values in blocks.items()}
    return figures


async def _open_circuit(
    outbound: ModuleType, upstream: Any, http: httpx.AsyncClient, calls: int
) -> tuple[list[float], float]:
    """Seconds each refused call took once the circuit is open, and CPU seconds per call."""
    breaker = upstream.breaker
    while breaker.state != "open":
        breaker.record(breaker.admit(), success=False)
    seconds = []
    cpu = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        try:
            await upstream.request(http, "GET", ITEM_PATH)
        except outbound.UpstreamUnavailableError:
            seconds.append(time.perf_counter() - start)
        else:
            raise RuntimeError("the open circuit let a call through")
    return seconds, (time.process_time() - cpu) / calls


def _mock_transport() -> httpx.MockTransport:
    body = b'{"id":1,"name":"an item"}'
    return httpx.MockTransport(
        lambda _: httpx.Response(200, content=body, headers={"content-type": "application/json"})
    )


async def _measure(outbound: ModuleType, settings: Any, base_url: str, rounds: int, calls: int) -> None:
    rows = []
    async with outbound.new_http_client(settings) as http, _app_upstream(settings) as upstream:
        socket = await _compare(http, upstream, base_url, rounds, calls)
    async with httpx.AsyncClient(transport=_mock_transport()) as http, _app_upstream(settings) as upstream:
        mock = await _compare(http, upstream, base_url, rounds, calls)
        refused, refused_cpu = await _open_circuit(outbound, upstream, http, calls * 5)
    for where, figures in (("loopback uvicorn", socket), ("in-process MockTransport", mock)):
        raw, res = figures["raw"], figures["resilient"]
        cpu_raw, cpu_res = figures["raw cpu"], figures["resilient cpu"]
        rows.append(
            [
                where,
                f"{raw * 1e6:.0f}",
                f"{res * 1e6:.0f}",
                f"{(res - raw) * 1e6:+.0f}",
                f"{raw / res:.3f}",
                f"{cpu_raw * 1e6:.0f} / {cpu_res * 1e6:.0f}",
            ]
        )
    print(
        common.table(
            rows,
            [
                "upstream",
                "raw us/call",
                "resilient us/call",
                "overhead us",
                "resilient/raw speed",
                "client CPU us/call raw / resilient",
            ],
        )
    )
    ratio = socket["raw"] / socket["resilient"]
    print(f"goal resilient >= 0.95 x raw (loopback): {ratio:.3f}, {'met' if ratio >= 0.95 else 'NOT met'}")
    refused.sort()
    p50, p99 = common.median(refused), refused[int(len(refused) * 0.99) - 1]
    print(
        f"open circuit, in process: median {p50 * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us, max {refused[-1] * 1e6:.1f} us"
        f" wall, {refused_cpu * 1e6:.1f} us CPU per call, over {len(refused)} refused calls;"
        f" goal < 1 ms: {'met' if p50 < 1e-3 else 'NOT met'} (median; p99 and max include the moments another"
        " process had the core)"
    )


def run(template: Path, rounds: int, calls: int) -> None:
    """Render, start the upstream, and compare the clients."""
    common.header("Client overhead (resilient client against raw httpx)")
    print(
        "The ratio that the goal names is measured against a real upstream (uvicorn on loopback, in another"
        " process): that is the cost a service pays. The same comparison on an in-process MockTransport"
        " shows the client's own cost in microseconds, without the network's noise around it."
        f" {rounds} interleaved blocks of {calls} sequential GETs each; medians of the blocks' means."
    )
    with common.workdir("bench-client-") as work:
        tree = common.render_default(template, work)
        port = throughput.free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = {**common.service_env(tree), "USER_SERVICE_URL": base_url}
        if not (tree / "src" / common.PACKAGE / "outbound.py").exists():
            print("skipped: the rendered default service has no resilient client (no outbound.py)")
            return
        command = [*throughput.SERVE, "upstream", "--port", str(port)]
        server = subprocess.Popen(command, cwd=work, env={**os.environ, **throughput.SERVE_ENV})
        try:
            throughput.wait_ready(port, server)
            with common.inside_service(tree, env):
                asyncio.run(_measure(*_import_service(), base_url, rounds, calls))
        finally:
            server.terminate()
            server.wait(timeout=30)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    group = parser.add_argument_group("client")
    group.add_argument("--client-rounds", type=int, default=20, help="interleaved blocks per client (20)")
    group.add_argument("--client-calls", type=int, default=200, help="sequential GETs per block (200)")


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.client_rounds, args.client_calls)
