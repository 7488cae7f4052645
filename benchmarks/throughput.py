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

from benchmarks import common

# benchmarks/serve.py, run as a module of this repository from any folder.
SERVE = [sys.executable, "-m", "benchmarks.serve"]
SERVE_ENV = {"PYTHONPATH": str(common.REPO)}
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


def wrk(port: int, route: str, load: Load, seconds: int | None = None) -> tuple[float, int, int]:
    """Requests/s of one wrk run, the requests it made, and how many answers were not 2xx/3xx."""
    command = [WRK, f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds or load.seconds}s"]
    if load.script:
        command += ["-s", str(load.script)]
    done = subprocess.run([*command, f"http://127.0.0.1:{port}{route}"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"wrk failed on port {port}: {done.stderr}{done.stdout}")
    out = done.stdout
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    made = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if rate is None or made is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(rate[1]), int(made[1]), int(bad[1]) if bad else 0


@dataclass(frozen=True)
class Server:
    """A server under load: where it listens, and its process."""

    port: int
    pid: int

    def cpu(self) -> float:
        """The CPU seconds (user and system) the process has used so far; NaN where /proc is not."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def servers(commands: Mapping[str, tuple[Sequence[str], Mapping[str, str]]], cwd: Path) -> Iterator[dict[str, Server]]:
    """Start each ``name: (command, environment)`` on a port of its own; yield them by name.

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
        yield {name: Server(port, process.pid) for name, (port, process) in started.items()}
    finally:
        for _, process in started.values():
            process.terminate()
        for _, process in started.values():
            process.wait(timeout=30)


@dataclass
class Runs:
    """Every run of each server: its requests/s, and its CPU seconds per request."""

    rates: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def paired(self, over: str, under: str) -> float:
        """The median of the rounds' ratios of requests/s ``over / under`` (runs seconds apart)."""
        return common.median([a / b for a, b in zip(self.rates[over], self.rates[under], strict=True)])

    def paired_cpu(self, over: str, under: str) -> float:
        """The same ratio in requests per CPU second of each server: the machine's other load counts less."""
        return common.median([b / a for a, b in zip(self.cpu[over], self.cpu[under], strict=True)])


def interleaved(servers: Mapping[str, Server], route: str, load: Load, rounds: int) -> Runs:
    """Each server in turn, ``rounds`` times."""
    statuses = {name: status_of(server.port, route) for name, server in servers.items()} if not load.script else {}
    failing = {name: code for name, code in statuses.items() if code >= 400}
    if failing:
        raise RuntimeError(f"GET {route} answered {failing}")
    for server in servers.values():  # warm every server up on this route
        wrk(server.port, route, load, seconds=1)
    runs = Runs({name: [] for name in servers}, {name: [] for name in servers})
    for n in range(rounds):
        for name, server in servers.items():
            before = server.cpu()
            rate, made, bad = wrk(server.port, route, load)
            runs.cpu[name].append((server.cpu() - before) / made)
            if bad:
                print(f"  warning: {name} {route}: {bad} answers not 2xx/3xx")
            runs.rates[name].append(rate)
        print(
            f"  {route} round {n + 1}: "
            + ", ".join(f"{k} {v[-1]:.0f}/s ({runs.cpu[k][-1] * 1e6:.0f} us CPU)" for k, v in runs.rates.items()),
            flush=True,
        )
    return runs


def verdict(ratio: float, goal: float) -> str:
    """Whether a ratio meets its goal."""
    return "met" if ratio >= goal else "NOT met"


def python_m(tree: Path, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The rendered service as its users run it: ``python -m`` in its tree."""
    return [sys.executable, "-m", common.PACKAGE], {**env, "PYTHONPATH": str(tree / "src")}


def bare(stack: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Bare FastAPI under ``serve.py``, on ``stack``."""
    loop, http = stack["UVICORN_LOOP"], stack["UVICORN_HTTP"]
    return [*SERVE, "bare", "--port", "{port}", "--loop", loop, "--http", http], SERVE_ENV


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
        with servers(commands, tree) as started:
            runs = interleaved(started, LIVE, load, rounds)
    pairs = {
        "stack: rendered fast / rendered plain": ("rendered fast", "rendered plain"),
        "stack: bare fast / bare plain": ("bare fast", "bare plain"),
        "stack: rendered fast / bare plain": ("rendered fast", "bare plain"),
        "middleware: rendered / bare, fast stack": ("rendered fast", "bare fast"),
        "middleware: rendered / bare, plain stack": ("rendered plain", "bare plain"),
    }
    goals = {
        "stack: rendered fast / rendered plain": 1.8,
        "middleware: rendered / bare, fast stack": 0.95,
        "middleware: rendered / bare, plain stack": 0.95,
    }
    figures = {name: runs.paired(*pair) for name, pair in pairs.items()}
    print()
    rows = [
        [
            name,
            f"{common.median(runs.rates[name]):.0f}",
            f"{min(runs.rates[name]):.0f}-{max(runs.rates[name]):.0f}",
            f"{common.median(runs.cpu[name]) * 1e6:.0f}",
        ]
        for name in runs.rates
    ]
    print(common.table(rows, ["server", "req/s", "min-max", "server CPU us/request"]))
    print()
    rows = []
    for name, pair in pairs.items():
        goal = goals.get(name)
        rows.append(
            [
                name,
                f"{figures[name]:.2f}",
                f"{runs.paired_cpu(*pair):.2f}",
                f">= {goal}" if goal else "",
                verdict(figures[name], goal) if goal else "",
            ]
        )
    print(common.table(rows, ["figure (median of the rounds' ratios)", "req/s", "req per CPU s", "goal", "(req/s)"]))
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
