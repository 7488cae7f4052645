"""Server stacks and middleware: ``/health/live`` of the rendered default service
and of a bare FastAPI app, each on uvloop + httptools and on asyncio + h11,
loaded in turn (A B C D A B C D ...) by wrk.

The rendered service runs as its users run it, ``python -m`` (its default
stack, or ``UVICORN_LOOP=asyncio UVICORN_HTTP=h11``); bare FastAPI runs under
``serve.py`` with the same uvicorn settings. The figures are ratios of
requests per second measured seconds apart: the stack's gain (fast / plain)
and what the service's middleware costs (rendered / bare on each stack).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import common

SERVE = Path(__file__).with_name("serve.py")
LIVE = "/health/live"
WRK = "/usr/bin/wrk"  # Debian's
# The default stack (uvicorn's auto: uvloop and httptools, which the test
# group installs) and the pure-Python one.
FAST = {"UVICORN_LOOP": "auto", "UVICORN_HTTP": "auto"}
PLAIN = {"UVICORN_LOOP": "asyncio", "UVICORN_HTTP": "h11"}


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
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


@dataclass(frozen=True)
class Load:
    """How wrk loads a server: threads, connections, seconds per run, and a Lua script."""

    threads: int
    connections: int
    seconds: int
    script: Path | None = None


def wrk(port: int, route: str, load: Load, seconds: int | None = None) -> tuple[float, int]:
    """Requests/s of one wrk run, and how many answers were not 2xx/3xx."""
    command = [WRK, f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds or load.seconds}s"]
    if load.script:
        command += ["-s", str(load.script)]
    done = subprocess.run([*command, f"http://127.0.0.1:{port}{route}"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"wrk failed on port {port}: {done.stderr}{done.stdout}")
    out = done.stdout
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(rate[1]), int(bad[1]) if bad else 0


@contextmanager
def servers(commands: Mapping[str, tuple[Sequence[str], Mapping[str, str]]], cwd: Path) -> Iterator[dict[str, int]]:
    """Start each ``name: (command, environment)`` on a port of its own; yield the ports by name.

    The command's ``{port}`` is replaced by the port, which is also in the
    environment as ``PORT`` (for ``python -m``).
    """
    started: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for name, (command, env) in commands.items():
            port = free_port()
            args = [part.replace("{port}", str(port)) for part in command]
            process_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"}
            started[name] = (port, subprocess.Popen(args, cwd=cwd, env=process_env))
        for port, process in started.values():
            wait_ready(port, process)
        yield {name: port for name, (port, _) in started.items()}
    finally:
        for _, process in started.values():
            process.terminate()
        for _, process in started.values():
            process.wait(timeout=30)


def interleaved(ports: Mapping[str, int], route: str, load: Load, rounds: int) -> dict[str, list[float]]:
    """Each server in turn, ``rounds`` times: the requests/s of every run, by server."""
    statuses = {name: status_of(port, route) for name, port in ports.items()} if not load.script else {}
    failing = {name: code for name, code in statuses.items() if code >= 400}
    if failing:
        raise RuntimeError(f"GET {route} answered {failing}")
    for port in ports.values():  # warm every server up on this route
        wrk(port, route, load, seconds=1)
    rates: dict[str, list[float]] = {name: [] for name in ports}
    for n in range(rounds):
        for name, port in ports.items():
            rate, bad = wrk(port, route, load)
            if bad:
                print(f"  warning: {name} {route}: {bad} answers not 2xx/3xx")
            rates[name].append(rate)
        print(f"  {route} round {n + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()), flush=True)
    return rates


def paired(rates: Mapping[str, list[float]], over: str, under: str) -> float:
    """The median of the rounds' ratios ``over / under``: runs seconds apart, so drifts in load cancel."""
    return common.median([a / b for a, b in zip(rates[over], rates[under], strict=True)])


def verdict(ratio: float, goal: float) -> str:
    """Whether a ratio meets its goal."""
    return "met" if ratio >= goal else "NOT met"


def python_m(tree: Path, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The rendered service as its users run it: ``python -m`` in its tree."""
    return [sys.executable, "-m", common.PACKAGE], {**env, "PYTHONPATH": str(tree / "src")}


def bare(stack: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Bare FastAPI under ``serve.py``, on ``stack``."""
    loop, http = stack["UVICORN_LOOP"], stack["UVICORN_HTTP"]
    return [sys.executable, str(SERVE), "bare", "--port", "{port}", "--loop", loop, "--http", http], {}


def run(template: Path, rounds: int, load: Load) -> dict[str, float]:
    """Render, serve the four, load them in turn; print and return the ratios."""
    common.header("Server stacks and middleware: GET /health/live (wrk)")
    print(
        f"wrk -t{load.threads} -c{load.connections}, {rounds} rounds x {load.seconds} s per server, in turn;"
        " uvicorn: 1 worker, 127.0.0.1, quiet (the rendered service with LOG_LEVEL=WARNING, bare FastAPI with"
        f" log_level=warning and no access log). This machine has {os.cpu_count()} cores, which wrk and the"
        " server under load share."
    )
    with common.workdir("bench-throughput-") as work:
        tree = common.render_default(template, work)
        env = {**common.service_env(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        common.migrate(tree, env)
        commands = {
            "rendered fast": python_m(tree, env | FAST),
            "bare fast": bare(FAST),
            "rendered plain": python_m(tree, env | PLAIN),
            "bare plain": bare(PLAIN),
        }
        with servers(commands, tree) as ports:
            rates = interleaved(ports, LIVE, load, rounds)
    medians = {name: common.median(values) for name, values in rates.items()}
    figures = {
        "stack: rendered fast / rendered plain": paired(rates, "rendered fast", "rendered plain"),
        "stack: bare fast / bare plain": paired(rates, "bare fast", "bare plain"),
        "stack: rendered fast / bare plain": paired(rates, "rendered fast", "bare plain"),
        "middleware: rendered / bare, fast stack": paired(rates, "rendered fast", "bare fast"),
        "middleware: rendered / bare, plain stack": paired(rates, "rendered plain", "bare plain"),
    }
    goals = {
        "stack: rendered fast / rendered plain": 1.8,
        "middleware: rendered / bare, fast stack": 0.95,
        "middleware: rendered / bare, plain stack": 0.95,
    }
    print()
    spread = {name: f"{min(values):.0f}-{max(values):.0f}" for name, values in rates.items()}
    print(
        common.table([[name, f"{medians[name]:.0f}", spread[name]] for name in rates], ["server", "req/s", "min-max"])
    )
    print()
    rows = [
        [
            name,
            f"{ratio:.2f}",
            f">= {goals[name]}" if name in goals else "",
            verdict(ratio, goals[name]) if name in goals else "",
        ]
        for name, ratio in figures.items()
    ]
    print(common.table(rows, ["figure (median of the rounds' ratios)", "ratio", "goal", ""]))
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this benchmark and of ``routes`` (which loads servers the same way)."""
    group = parser.add_argument_group("throughput and routes (wrk)")
    group.add_argument("--rounds", type=int, default=5, help="rounds of runs, servers in turn (5)")
    group.add_argument("--seconds", type=int, default=3, help="seconds per wrk run (3)")
    group.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    group.add_argument("--connections", type=int, default=32, help="wrk connections (32)")


def load_of(args: argparse.Namespace) -> Load:
    """The wrk load the options ask for."""
    return Load(threads=args.threads, connections=args.connections, seconds=args.seconds)


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.rounds, load_of(args))
