"""Service throughput: the rendered default service against a bare FastAPI app
and against the seed's style, loaded in turn (A B C A B C ...) by wrk."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import common

SERVE = Path(__file__).with_name("serve.py")
ROUTES = ["/health/live", "/api/v1/items"]
KINDS = ["rendered", "bare", "seed"]
WRK = "/usr/bin/wrk"  # Debian's


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until the server answers on ``port``; fail if it stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} stopped (exit {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not start in {timeout} s")


def status_of(port: int, route: str) -> int:
    """The HTTP status of one GET, to tell a missing route from a served one."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wrk(port: int, route: str, seconds: int, threads: int, connections: int) -> tuple[float, int]:
    """Requests/s of one wrk run, and how many answers were not 2xx/3xx."""
    out = subprocess.run(
        [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}{route}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(rate[1]), int(bad[1]) if bad else 0


def run(template: Path, rounds: int, seconds: int, threads: int, connections: int) -> dict[str, dict[str, float]]:
    """Render, serve the three apps, load them in turn; print and return the medians."""
    common.header("Service throughput (wrk)")
    with common.workdir("bench-throughput-") as work:
        tree = common.render_default(template, work)
        env = {**os.environ, **common.service_env(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        common.migrate(tree, env)
        servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for kind in KINDS:
                port = free_port()
                command = [sys.executable, str(SERVE), kind, "--port", str(port), "--src", str(tree / "src")]
                servers[kind] = (port, subprocess.Popen(command, cwd=tree, env=env))
            for port, process in servers.values():
                wait_ready(port, process)
            return _measure(servers, rounds, seconds, threads, connections)
        finally:
            for _, process in servers.values():
                process.terminate()
            for _, process in servers.values():
                process.wait(timeout=30)


def _measure(
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]],
    rounds: int,
    seconds: int,
    threads: int,
    connections: int,
) -> dict[str, dict[str, float]]:
    print(
        f"wrk -t{threads} -c{connections}, {rounds} rounds x {seconds} s per app and route, apps in turn"
        " (rendered, bare, seed, rendered, ...); uvicorn: 1 worker, 127.0.0.1, log_level=warning,"
        " access_log=False; rendered service with LOG_LEVEL=WARNING LOG_FORMAT=json.\n"
        f"NOTE: this machine has {os.cpu_count()} cores: wrk and the server under load share them,"
        " so the figures are lower than on a machine where the load generator runs apart."
    )
    results: dict[str, dict[str, float]] = {}
    rows = []
    for route in ROUTES:
        statuses = {kind: status_of(port, route) for kind, (port, _) in servers.items()}
        missing = [kind for kind, code in statuses.items() if code >= 400]
        if missing:
            print(f"{route}: skipped, answered {statuses} (the route is missing from this template)")
            continue
        for port, _ in servers.values():  # warm up every server on this route
            wrk(port, route, 1, threads, connections)
        rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for n in range(rounds):
            for kind in KINDS:
                rate, bad = wrk(servers[kind][0], route, seconds, threads, connections)
                if bad:
                    print(f"  warning: {kind} {route}: {bad} answers not 2xx/3xx")
                rates[kind].append(rate)
            print(f"  {route} round {n + 1}: " + ", ".join(f"{k} {rates[k][-1]:.0f}" for k in KINDS), flush=True)
        medians = {kind: common.median(values) for kind, values in rates.items()}
        results[route] = medians
        for kind in KINDS:
            spread = f"{min(rates[kind]):.0f}-{max(rates[kind]):.0f}"
            # Each round's ratio pairs runs seconds apart, so drifts in the
            # machine's other load cancel better than in the ratio of medians.
            paired = common.median([a / b for a, b in zip(rates[kind], rates["bare"], strict=True)])
            results[route][f"{kind}/bare paired"] = paired
            rows.append(
                [route, kind, f"{medians[kind]:.0f}", spread, f"{medians[kind] / medians['bare']:.2f}", f"{paired:.2f}"]
            )
    print()
    print(common.table(rows, ["route", "app", "req/s median", "min-max", "x bare", "x bare, paired by round"]))
    live = results.get("/health/live")
    if live:
        ratio, paired = live["rendered"] / live["bare"], live["rendered/bare paired"]
        verdict = "met" if min(ratio, paired) >= 0.90 else "NOT met" if max(ratio, paired) < 0.90 else "unclear"
        print(f"goal rendered >= 0.90 x bare on /health/live: {ratio:.2f} (medians), {paired:.2f} (paired): {verdict}")
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    group = parser.add_argument_group("throughput")
    group.add_argument("--rounds", type=int, default=5, help="rounds of A B C per route (5)")
    group.add_argument("--seconds", type=int, default=3, help="seconds per wrk run (3)")
    group.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    group.add_argument("--connections", type=int, default=32, help="wrk connections (32)")


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.rounds, args.seconds, args.threads, args.connections)
